//! One thread drains the stderr of every stdio backend: it waits in poll(2) on all their
//! pipes at once and logs each line, where a thread per backend cost about 10 KiB of
//! touched stack and buffers per idle backend. A child blocked on a full stderr pipe stops
//! answering, so nothing here ever stops reading a pipe that is registered.
//!
//! The thread exists while some pipe is registered: the first [`register`] starts it, and
//! the [`Drained::finish`] (or drop) of the last handle stops and joins it, so no thread
//! outlives the backends (lesson 8).

use std::fs::File;
use std::io::{PipeReader, PipeWriter, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

/// Longest stderr line logged whole (a longer one, or one over the backend's message
/// limit, is reported as skipped).
const MAX_LINE: usize = 64 * 1024;
/// What one read takes from one pipe: a flooding child gets this much per round, then
/// the others get their turn.
const CHUNK: usize = 64 * 1024;

/// Where a line goes: the log, or a test's collector.
pub(crate) type Sink = fn(name: &str, line: &str);

fn log_line(name: &str, line: &str) {
    log::info!(target: "mcprouter::backend::stderr", "[{name}] {line}");
}

/// A registered pipe. Finishing it (or dropping it) drains what the pipe still holds and
/// closes it.
pub(crate) struct Drained {
    id: u64,
    /// Disconnected once the drain has closed the pipe.
    closed: Receiver<()>,
    /// How long finishing waits for the end of file.
    limit: Duration,
}

/// The drain thread and how to reach it.
struct Drain {
    tx: Sender<Msg>,
    wake: Arc<Wake>,
    thread: JoinHandle<()>,
    /// Handles not finished yet.
    live: usize,
}

enum Msg {
    Add(Entry),
    /// Close the pipe at its end of file, or at the deadline whatever it still holds.
    Finish(u64, Instant),
    Quit,
}

/// Wakes the thread from poll(2): at most one byte is ever in flight.
struct Wake {
    pending: AtomicBool,
    tx: Mutex<PipeWriter>,
}

impl Wake {
    fn wake(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            let _ = self.tx.lock().write(&[1]);
        }
    }
}

static DRAIN: Mutex<Option<Drain>> = Mutex::new(None);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Hands `pipe` to the drain thread (started if need be); its lines (at most `max` bytes
/// each) are logged as `[name] line` under `mcprouter::backend::stderr`.
pub(crate) fn register(name: &str, pipe: impl Into<OwnedFd>, max: usize) -> Result<Drained, String> {
    register_to(name, pipe.into(), max, log_line)
}

pub(crate) fn register_to(name: &str, pipe: OwnedFd, max: usize, sink: Sink) -> Result<Drained, String> {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let (done, closed) = crossbeam_channel::bounded(0);
    let entry = Entry {
        id,
        name: name.into(),
        pipe: File::from(pipe),
        max: max.min(MAX_LINE),
        partial: Vec::new(),
        skipping: false,
        until: None,
        sink,
        _done: done,
    };
    let mut drain = DRAIN.lock();
    if drain.is_none() {
        *drain = Some(start()?);
    }
    let Some(d) = drain.as_mut() else { return Err("no stderr drain".into()) };
    d.live += 1;
    let _ = d.tx.send(Msg::Add(entry));
    d.wake.wake();
    Ok(Drained { id, closed, limit: Duration::from_millis(200) })
}

impl Drained {
    /// Logs what the pipe still holds up to its end of file (which comes once the child and
    /// whatever it started have exited) or for at most `limit`, then closes it. The last
    /// handle finished stops the drain thread. (Dropping a handle finishes it too.)
    pub(crate) fn finish(mut self, limit: Duration) {
        self.limit = limit;
    }
}

impl Drop for Drained {
    fn drop(&mut self) {
        let until = Instant::now() + self.limit;
        let last = {
            let mut drain = DRAIN.lock();
            let Some(d) = drain.as_mut() else { return };
            let _ = d.tx.send(Msg::Finish(self.id, until));
            d.wake.wake();
            d.live -= 1;
            if d.live == 0 { drain.take() } else { None }
        };
        // The thread closes the pipe by the deadline; a thread stuck in a logger that
        // blocks is not waited for much longer.
        let _ = self.closed.recv_deadline(until + Duration::from_secs(1));
        if let Some(d) = last {
            let _ = d.tx.send(Msg::Quit);
            d.wake.wake();
            let _ = d.thread.join();
        }
    }
}

fn start() -> Result<Drain, String> {
    let (wake_rx, wake_tx) = std::io::pipe().map_err(|e| format!("cannot create a pipe: {e}"))?;
    let wake = Arc::new(Wake { pending: AtomicBool::new(false), tx: Mutex::new(wake_tx) });
    let (tx, rx) = crossbeam_channel::unbounded();
    let w = Arc::clone(&wake);
    let thread = std::thread::Builder::new()
        .name("mcprouter-stderr".into())
        .stack_size(super::super::THREAD_STACK)
        .spawn(move || run(&rx, &w, wake_rx))
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    Ok(Drain { tx, wake, thread, live: 0 })
}

/// One backend's pipe, owned by the drain thread.
struct Entry {
    id: u64,
    name: Box<str>,
    pipe: File,
    max: usize,
    /// The start of a line whose end has not come yet (empty, unallocated, between lines).
    partial: Vec<u8>,
    /// Inside a line longer than [`MAX_LINE`], until its end.
    skipping: bool,
    /// Finishing: closed at end of file or at this deadline.
    until: Option<Instant>,
    sink: Sink,
    /// Dropped with the entry: tells the finishing caller the pipe is closed.
    _done: Sender<()>,
}

impl Entry {
    /// Takes the lines out of `data` (what one read gave).
    fn feed(&mut self, mut data: &[u8]) {
        while let Some(nl) = data.iter().position(|&b| b == b'\n') {
            let (head, rest) = data.split_at(nl);
            data = &rest[1..];
            if self.skipping || self.partial.len() + head.len() > self.max {
                self.skipped();
            } else if self.partial.is_empty() {
                self.emit(head);
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(head);
                self.emit(&line);
            }
        }
        if self.skipping || self.partial.len() + data.len() > self.max {
            if !self.skipping {
                self.partial = Vec::new();
                self.skipping = true;
            }
        } else {
            self.partial.extend_from_slice(data);
        }
    }

    fn skipped(&mut self) {
        self.partial = Vec::new();
        self.skipping = false;
        (self.sink)(&self.name, "(long stderr line skipped)");
    }

    fn emit(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        (self.sink)(&self.name, text.trim_end());
    }

    /// End of file: the last line may lack its newline.
    fn close(&mut self) {
        if self.skipping {
            self.skipped();
        } else if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.emit(&line);
        }
    }
}

/// Reads once from `e`'s pipe (poll said it would not block); false at end of file or on
/// an error (the pipe is done).
fn read_once(e: &mut Entry, buf: &mut [u8]) -> bool {
    loop {
        match (&e.pipe).read(buf) {
            Ok(0) => return false,
            Ok(n) => {
                e.feed(&buf[..n]);
                return true;
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

fn run(rx: &Receiver<Msg>, wake: &Wake, wake_rx: PipeReader) {
    let mut entries: Vec<Entry> = Vec::new();
    loop {
        let ended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| serve(rx, wake, &wake_rx, &mut entries)));
        match ended {
            Ok(()) => return,
            Err(payload) => log::error!(
                target: "mcprouter::backend",
                "internal error: the stderr drain panicked: {}",
                crate::guard::panic_message(payload.as_ref())
            ),
        }
    }
}

fn serve(rx: &Receiver<Msg>, wake: &Wake, mut wake_rx: &PipeReader, entries: &mut Vec<Entry>) {
    let mut buf = vec![0u8; CHUNK];
    let mut fds: Vec<libc::pollfd> = Vec::new();
    loop {
        // The flag first, then the messages: a message sent after this sees the flag
        // down and writes a byte, so poll cannot sleep through it. Each time the flag goes
        // up one byte is written, and each time it comes down one byte is read (it may
        // still be on its way): reading more could take the next one's byte, and leave a
        // later read waiting for a byte that never comes.
        if wake.pending.swap(false, Ordering::AcqRel) {
            while let Err(e) = wake_rx.read(&mut [0u8; 1]) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    break;
                }
            }
        }
        while let Ok(msg) = rx.try_recv() {
            match msg {
                Msg::Add(e) => entries.push(e),
                Msg::Finish(id, until) => {
                    if let Some(e) = entries.iter_mut().find(|e| e.id == id) {
                        e.until = Some(until);
                    }
                }
                Msg::Quit => return,
            }
        }
        let now = Instant::now();
        // Finishing pipes past their deadline: what they hold now, then closed.
        entries.retain_mut(|e| {
            if e.until.is_some_and(|t| t <= now) {
                // Bounded: a child still flooding at its deadline is not waited for.
                for _ in 0..16 {
                    if !(readable(e, 0) && read_once(e, &mut buf)) {
                        break;
                    }
                }
                e.close();
                false
            } else {
                true
            }
        });
        let timeout = entries
            .iter()
            .filter_map(|e| e.until)
            .min()
            .map_or(-1, |t| t.saturating_duration_since(now).as_millis().clamp(1, 60_000) as libc::c_int);
        fds.clear();
        fds.push(pollfd(wake_rx.as_raw_fd()));
        fds.extend(entries.iter().map(|e| pollfd(e.pipe.as_raw_fd())));
        if poll(&mut fds, timeout) <= 0 {
            continue;
        }
        let mut i = 0;
        entries.retain_mut(|e| {
            i += 1;
            let ready = fds.get(i).is_some_and(|p| p.revents != 0);
            if ready && !read_once(e, &mut buf) {
                e.close();
                return false;
            }
            true
        });
    }
}

fn pollfd(fd: libc::c_int) -> libc::pollfd {
    libc::pollfd { fd, events: libc::POLLIN, revents: 0 }
}

/// Whether `e`'s pipe has something to read (or its end) within `timeout` ms.
fn readable(e: &Entry, timeout: libc::c_int) -> bool {
    let mut one = [pollfd(e.pipe.as_raw_fd())];
    poll(&mut one, timeout) > 0
}

/// poll(2); interrupted counts as nothing ready.
#[allow(unsafe_code)]
fn poll(fds: &mut [libc::pollfd], timeout: libc::c_int) -> libc::c_int {
    // SAFETY: `fds` is a valid, exclusively borrowed array of `fds.len()` pollfd structs,
    // which poll(2) only reads and whose `revents` it writes; every fd in it is owned by
    // this thread for the duration of the call.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;

    static LINES: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

    fn collect(name: &str, line: &str) {
        LINES.lock().push((name.to_owned(), line.to_owned()));
    }

    fn lines_of(name: &str) -> Vec<String> {
        LINES.lock().iter().filter(|(n, _)| n == name).map(|(_, l)| l.clone()).collect()
    }

    #[test]
    fn many_pipes_are_drained_line_by_line_and_closed_when_finished() {
        let mut pipes = Vec::new();
        for i in 0..40 {
            let (r, w) = std::io::pipe().expect("pipe");
            let d = register_to(&format!("drain-test-{i}"), r.into(), 100, collect).expect("registered");
            pipes.push((w, d));
        }
        for (i, (w, _)) in pipes.iter_mut().enumerate() {
            // A line in two writes, a line with \r\n, a line over the limit, and a last
            // line without its newline.
            w.write_all(format!("first {i}").as_bytes()).unwrap();
            w.write_all(b" half\nsecond\r\n").unwrap();
            w.write_all(&[b'x'; 250]).unwrap();
            w.write_all(format!("\nlast {i}").as_bytes()).unwrap();
        }
        let mut ends = Vec::new();
        for (i, (w, d)) in pipes.into_iter().enumerate() {
            if i % 2 == 0 {
                // The writer closed first: the end of file closes the pipe.
                drop(w);
                d.finish(Duration::from_secs(30));
            } else {
                // The writer still open (a grandchild that kept stderr): closed at the
                // deadline, with what it held logged.
                d.finish(Duration::from_millis(50));
                ends.push(w);
            }
        }
        for i in 0..40 {
            let want =
                [format!("first {i} half"), "second".into(), "(long stderr line skipped)".into(), format!("last {i}")];
            assert_eq!(lines_of(&format!("drain-test-{i}")), want, "pipe {i}");
        }
        // The drain's end of each pipe is closed: the writer gets EPIPE, not a full pipe.
        for mut w in ends {
            assert_eq!(w.write_all(b"more\n").map_err(|e| e.kind()), Err(ErrorKind::BrokenPipe));
        }
    }

    #[test]
    fn registrations_and_finishes_from_many_threads_never_stall_the_drain() {
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        for t in 0..8 {
            let done = done_tx.clone();
            std::thread::spawn(move || {
                for i in 0..60 {
                    let (r, mut w) = std::io::pipe().expect("pipe");
                    let name = format!("stress-{t}-{i}");
                    let d = register_to(&name, r.into(), 100, collect).expect("registered");
                    w.write_all(b"one\n").unwrap();
                    drop(w);
                    d.finish(Duration::from_secs(30));
                    assert_eq!(lines_of(&name), ["one"]);
                }
                let _ = done.send(());
            });
        }
        for _ in 0..8 {
            done_rx.recv_timeout(Duration::from_secs(60)).expect("every thread finished its pipes");
        }
    }
}
