//! A child process in its own process group, so that shutdown reaches grandchildren too
//! (`npx` and shell wrappers start the real server as a grandchild that holds the pipes).

use std::time::{Duration, Instant};

pub(crate) struct Child {
    inner: std::process::Child,
}

impl Child {
    pub(crate) fn new(inner: std::process::Child) -> Child {
        Child { inner }
    }

    pub(crate) fn id(&self) -> u32 {
        self.inner.id()
    }

    /// The exit status, if the child has exited (it stays reapable by `terminate`).
    pub(crate) fn try_status(&mut self) -> Option<String> {
        match self.inner.try_wait() {
            Ok(Some(st)) => Some(st.to_string()),
            _ => None,
        }
    }

    /// Waits for the exit that closing stdin should cause, then SIGTERM, then SIGKILL,
    /// always reaping the child so no zombie is left.
    pub(crate) fn terminate(mut self, grace: Duration) {
        if self.wait_for(grace) {
            return;
        }
        signal_group(self.inner.id(), libc::SIGTERM);
        if self.wait_for(grace.max(Duration::from_millis(100))) {
            return;
        }
        signal_group(self.inner.id(), libc::SIGKILL);
        let _ = self.inner.kill();
        let _ = self.inner.wait();
    }

    fn wait_for(&mut self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        loop {
            match self.inner.try_wait() {
                Ok(Some(_)) => {
                    // The leader is gone; make sure nothing it left behind keeps running.
                    signal_group(self.inner.id(), libc::SIGKILL);
                    return true;
                }
                Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(5)),
                Ok(None) => return false,
                Err(_) => return true,
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Ok(None) = self.inner.try_wait() {
            signal_group(self.inner.id(), libc::SIGKILL);
            let _ = self.inner.wait();
        }
    }
}

/// Signals the process group led by `pid` (the child was spawned with `process_group(0)`).
#[allow(unsafe_code)]
fn signal_group(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; a stale pgid is
    // harmless because the group id is only reused after every member has been reaped.
    unsafe {
        libc::kill(-pid, sig);
    }
}
