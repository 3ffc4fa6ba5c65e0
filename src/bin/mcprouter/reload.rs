//! `mcprouter serve`'s reload triggers: SIGHUP, and with `--watch` a change of the config
//! file. One thread (`mcprouter-reload`) notices both and calls `Router::reload`; a bad
//! config is refused there (logged and counted) and the running one keeps serving.
//!
//! The file is polled (mtime, size and a hash of its content, every 250 ms) rather than
//! watched with inotify: no new dependency, it works on every filesystem, and an editor
//! that replaces the file (write to a temporary, rename) is seen like one that rewrites it.
#![allow(unsafe_code)]

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use mcprouter::{Config, Router};

/// Set by the SIGHUP handler, taken by the reload thread. A static: a signal handler can
/// reach nothing else, and may only do async-signal-safe work (an atomic store is).
static HANGUP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_hangup(_: libc::c_int) {
    HANGUP.store(true, Ordering::Release);
}

/// How often the thread looks at the flag and the file.
const POLL: Duration = Duration::from_millis(250);

/// The reload thread; stopped and joined on drop.
pub struct Reloader {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Reloader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the file looks like: a change of any part means "reload".
#[derive(PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    hash: u64,
}

fn stamp(path: &PathBuf) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    let text = std::fs::read(path).ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    Some(Stamp { modified: meta.modified().ok(), len: meta.len(), hash: h.finish() })
}

/// Installs the SIGHUP handler and starts the reload thread. `adjust` is applied to every
/// config read from `path` before it is applied, as serve does at start (the client's
/// capabilities), so an unchanged backend stays unchanged.
pub fn start(
    router: Router,
    path: PathBuf,
    watch: bool,
    adjust: impl Fn(&mut Config) + Send + 'static,
) -> Option<Reloader> {
    // SAFETY: `on_hangup` only stores to an atomic, which is async-signal-safe; the
    // sigaction struct is zeroed, then given the handler and an empty mask.
    let installed = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_hangup as extern "C" fn(libc::c_int) as libc::sighandler_t;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGHUP, &sa, std::ptr::null_mut()) == 0
    };
    if !installed {
        log::error!(target: "mcprouter", "cannot install the SIGHUP handler; reload on SIGHUP is off");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let thread = std::thread::Builder::new().name("mcprouter-reload".into()).stack_size(256 * 1024).spawn(move || {
        let mut seen = if watch { stamp(&path) } else { None };
        while !flag.load(Ordering::Acquire) {
            std::thread::sleep(POLL);
            let mut why = HANGUP.swap(false, Ordering::AcqRel).then_some("SIGHUP");
            if watch {
                let now = stamp(&path);
                // A file that is missing or half-written for a moment is not a change
                // to act on; the next poll sees it whole.
                if now.is_some() && now != seen {
                    seen = now;
                    why = why.or(Some("the config file changed"));
                }
            }
            if let Some(why) = why {
                reload(&router, &path, why, &adjust);
            }
        }
    });
    match thread {
        Ok(t) => Some(Reloader { stop, thread: Some(t) }),
        Err(e) => {
            log::error!(target: "mcprouter", "cannot start the reload thread: {e}");
            None
        }
    }
}

fn reload(router: &Router, path: &PathBuf, why: &str, adjust: &dyn Fn(&mut Config)) {
    log::info!(target: "mcprouter", "reloading {} ({why})", path.display());
    let outcome = match Config::from_file(path) {
        Ok(mut config) => {
            adjust(&mut config);
            router.reload(config)
        }
        // Refused through the router, so it is counted and shown like any bad config.
        Err(_) => router.reload_from_file(path),
    };
    match outcome {
        Ok(generation) => log::info!(target: "mcprouter", "config generation {generation} is serving"),
        Err(e) => log::error!(target: "mcprouter", "reload refused, the running config stays: {e}"),
    }
}
