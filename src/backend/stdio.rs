//! The stdio transport: spawn, and the writer and reader threads; stderr goes to the
//! shared drain ([`stderr`]).

mod stderr;

use std::io::{BufReader, BufWriter, Write};
use std::os::unix::process::CommandExt;
use std::process::{ChildStdin, Command as Proc, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering};

use crossbeam_channel::{Receiver, bounded};
use parking_lot::Mutex;

use super::life::{Connection, Inline, Link};
use super::process::Child;
use super::{Command, Reply};
use crate::framing::{Line, read_line_limited};

pub(super) use stderr::Drained;

/// Starts the child with the router's environment plus the configured variables (lesson 1
/// in docs/lessons.md: never from an empty environment), the two threads that serve it and
/// the drain of its stderr.
pub(super) fn spawn(backend: &Link) -> Result<Connection, String> {
    let cfg = &backend.config;
    let mut cmd = Proc::new(&cfg.command);
    cmd.args(&cfg.args)
        .envs(&cfg.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(dir) = &cfg.cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot start {:?}: {e}", cfg.command))?;
    let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err("child pipes missing".into());
    };
    let (tx, rx) = bounded(backend.queue_capacity);
    let pipe = Arc::new(Pipe::new(stdin));
    // Owned by the connection from here on: an error below drops it, which ends the child.
    let mut conn = Connection::new(tx);
    conn.child = Some(Child::new(child));
    conn.inline = Some(Arc::clone(&pipe) as Arc<dyn Inline>);
    let p = Arc::clone(&pipe);
    conn.threads.push(backend.spawn_thread("-w", move |b| writer(b, &p, rx))?);
    conn.threads.push(backend.spawn_thread("-r", move |b| reader(b, stdout, &pipe))?);
    conn.stderr = Some(stderr::register(backend.name(), stderr, backend.max_message_bytes)?);
    Ok(conn)
}

/// The least a pipe holds (one page): a line that fits in what is left of it below this
/// cannot block its writer.
const PIPE_ROOM: u64 = 4096;

/// The child's stdin, shared by the writer thread and callers writing their own line.
struct Pipe {
    /// `None` once the writer has ended (stdin closed).
    out: Mutex<Option<BufWriter<ChildStdin>>>,
    /// Commands queued for the writer thread and not written yet.
    queued: AtomicIsize,
    /// Bytes written so far, and a lower bound of what the child has read: the end of the
    /// last request line written, once its answer came (the child read it to answer).
    written: AtomicU64,
    read: AtomicU64,
    /// The last request line written: its id and where it ended.
    last_call: Mutex<(u64, u64)>,
}

impl Pipe {
    fn new(stdin: ChildStdin) -> Pipe {
        Pipe {
            out: Mutex::new(Some(BufWriter::with_capacity(4 * 1024, stdin))),
            queued: AtomicIsize::new(0),
            written: AtomicU64::new(0),
            read: AtomicU64::new(0),
            last_call: Mutex::new((0, 0)),
        }
    }

    /// Writes one line (making any line break in it a space: a break inside a message can
    /// only be JSON whitespace, but on stdio it would split the message in two).
    fn put(&self, out: &mut BufWriter<ChildStdin>, line: &str, call: Option<u64>) -> std::io::Result<()> {
        // `contains` on bytes is memchr: a scan per message that costs next to nothing.
        let bytes = line.as_bytes();
        let line = if bytes.contains(&b'\n') || bytes.contains(&b'\r') {
            std::borrow::Cow::Owned(line.replace(['\n', '\r'], " "))
        } else {
            std::borrow::Cow::Borrowed(line)
        };
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
        let len = line.len() as u64 + 1;
        let end = self.written.fetch_add(len, Ordering::AcqRel) + len;
        if let Some(id) = call {
            *self.last_call.lock() = (id, end);
        }
        Ok(())
    }

    /// The reader saw the answer to `id`: the child has read at least up to its line.
    fn answered(&self, id: u64) {
        let (last, end) = *self.last_call.lock();
        if last == id {
            self.read.fetch_max(end, Ordering::AcqRel);
        }
    }
}

impl Inline for Pipe {
    fn try_write(&self, id: u64, line: &str) -> bool {
        if self.queued.load(Ordering::Acquire) != 0 {
            return false;
        }
        let Some(mut out) = self.out.try_lock() else { return false };
        // Checked again under the lock: the writer counts a command done only after its
        // flush, under this lock, so zero here means nothing is queued or half-written.
        let unread = self.written.load(Ordering::Acquire).saturating_sub(self.read.load(Ordering::Acquire));
        if self.queued.load(Ordering::Acquire) != 0 || unread + line.len() as u64 + 1 > PIPE_ROOM {
            return false;
        }
        let Some(w) = out.as_mut() else { return false };
        // A failed write leaves the pipe broken: the line is lost with it, and the reader's
        // end of file (or the writer's next write) reports the exit and fails this call.
        let _ = self.put(w, line, Some(id)).and_then(|()| w.flush());
        true
    }

    fn queued(&self, n: isize) {
        self.queued.fetch_add(n, Ordering::AcqRel);
    }
}

fn writer(backend: &Link, pipe: &Pipe, rx: Receiver<Command>) {
    let close = || drop(pipe.out.lock().take());
    while let Ok(cmd) = rx.recv() {
        let mut out = pipe.out.lock();
        let Some(w) = out.as_mut() else { break };
        let mut next = Some(cmd);
        let mut done = 0;
        // Coalesce what is already queued into one flush: one syscall under load.
        let mut ok = true;
        let mut stop = false;
        while let Some(cmd) = next.take() {
            let call = match &cmd {
                Command::Call { id, .. } => Some(*id),
                _ => None,
            };
            let Some(line) = cmd.into_line() else {
                stop = true;
                break;
            };
            done += 1;
            if pipe.put(w, &line, call).is_err() {
                ok = false;
                break;
            }
            next = rx.try_recv().ok();
        }
        ok = ok && w.flush().is_ok();
        pipe.queued(-done);
        drop(out);
        if !ok {
            close();
            write_failed(backend);
            return;
        }
        if stop {
            break;
        }
    }
    close();
}

/// Stdin is gone: the process most likely exited, and its status says more than the pipe.
fn write_failed(backend: &Link) {
    let why = match backend.exit_status() {
        Some(st) => format!("the process exited ({st})"),
        None => "writing to its stdin failed".to_owned(),
    };
    backend.on_exit(why);
}

fn reader(backend: &Link, stdout: std::process::ChildStdout, pipe: &Pipe) {
    let mut input = BufReader::with_capacity(LINE, stdout);
    let mut buf = Vec::with_capacity(LINE);
    loop {
        match read_line_limited(&mut input, &mut buf, backend.max_message_bytes) {
            Ok(Line::Eof) => break,
            Ok(Line::TooLong(prefix)) => {
                let why = format!("sent a message larger than {} bytes", backend.max_message_bytes);
                log::error!(target: "mcprouter::backend", "[{}] {why}", backend.name());
                // The reply it was meant to be is still owed to its caller: fail that call now.
                if let Some(id) = leading_id(&prefix) {
                    backend.complete(id, Reply::Failed(why));
                }
            }
            Ok(Line::Complete) => match std::str::from_utf8(&buf) {
                Ok(text) if !text.trim().is_empty() => {
                    if let Some(id) = backend.dispatch(text) {
                        pipe.answered(id);
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    log::warn!(target: "mcprouter::backend", "[{}] sent a line that is not UTF-8", backend.name())
                }
            },
            Err(e) => {
                log::warn!(target: "mcprouter::backend", "[{}] read error: {e}", backend.name());
                break;
            }
        }
        // A long message (a list page, a big result) is not worth keeping room for while the
        // backend idles: every idle backend would hold its largest message's buffer.
        if buf.capacity() > 2 * LINE {
            buf = Vec::with_capacity(LINE);
        }
    }
    let why = match backend.exit_status() {
        Some(st) => format!("the process exited ({st})"),
        None => "the process closed its stdout".to_owned(),
    };
    backend.on_exit(why);
}

/// The reader's line buffer, kept between messages.
const LINE: usize = 4 * 1024;

/// The integer id at the start of a (truncated) response, e.g. `{"jsonrpc":"2.0","id":7,…`.
fn leading_id(prefix: &[u8]) -> Option<u64> {
    let s = String::from_utf8_lossy(prefix);
    let at = s.find("\"id\"")? + 4;
    let rest = s[at..].trim_start().strip_prefix(':')?.trim_start();
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_never_writes_more_than_the_child_is_known_to_have_read_plus_a_page() {
        // A child that never reads its stdin: a caller's own write must never block on it.
        let mut child = Proc::new("sleep").arg("30").stdin(Stdio::piped()).spawn().expect("sleep");
        let pipe = Pipe::new(child.stdin.take().expect("stdin"));
        let line = "x".repeat(999);
        let fitted = (0..100).take_while(|&id| pipe.try_write(id, &line)).count();
        assert_eq!(fitted, 4, "four 1,000-byte lines fit in one page");
        pipe.answered(2);
        assert!(!pipe.try_write(4, &line), "an answer to an older request proves nothing");
        pipe.answered(3);
        assert!(pipe.try_write(4, &line), "the child read through the last request it answered");
        pipe.queued(1);
        assert!(!pipe.try_write(5, "{}"), "never ahead of a queued command");
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn finds_the_id_of_a_truncated_reply() {
        assert_eq!(leading_id(br#"{"jsonrpc":"2.0","id": 17,"result":{"content":"xxxx"#), Some(17));
        assert_eq!(leading_id(br#"{"jsonrpc":"2.0","method":"x""#), None);
    }
}
