//! The stdio transport: spawn, and the writer and reader threads; stderr goes to the
//! shared drain ([`stderr`]).

mod stderr;

use std::borrow::Cow;
use std::io::{IoSlice, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{ChildStdin, Command as Proc, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering};

use crossbeam_channel::{Receiver, bounded};
use parking_lot::Mutex;

use super::life::{Connection, Inline, Link};
use super::process::Child;
use super::{Command, Reply};
use crate::framing::Line;

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
    let (tx, rx) = bounded::<Box<Command>>(backend.queue_capacity);
    let pipe = Arc::new(Pipe::new(stdin));
    // Owned by the connection from here on: an error below drops it, which ends the child.
    let mut conn = Connection::boxed(tx);
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
    /// `None` once the writer has ended (stdin closed). Unbuffered: a batch of lines goes
    /// out in one writev(2) as they are, where a 4 KiB `BufWriter` per idle backend cost
    /// memory and a copy of every line.
    out: Mutex<Option<ChildStdin>>,
    /// Commands queued for the writer thread and not written yet.
    queued: AtomicIsize,
    /// Bytes written so far, and a lower bound of what the child has read: the end of the
    /// last request line written, once its answer came (the child read it to answer).
    written: AtomicU64,
    read: AtomicU64,
    /// The last request line written: its id and where it ended.
    last_call: Mutex<(u64, u64)>,
}

/// Lines the writer thread puts in one writev(2) at most.
const BATCH: usize = 16;

/// One message as one line: a line break inside a message can only be JSON whitespace,
/// but on stdio it would split the message in two, so it becomes a space.
fn one_line(line: &str) -> Cow<'_, str> {
    // `contains` on bytes is memchr: a scan per message that costs next to nothing.
    let bytes = line.as_bytes();
    if bytes.contains(&b'\n') || bytes.contains(&b'\r') {
        Cow::Owned(line.replace(['\n', '\r'], " "))
    } else {
        Cow::Borrowed(line)
    }
}

impl Pipe {
    fn new(stdin: ChildStdin) -> Pipe {
        Pipe {
            out: Mutex::new(Some(stdin)),
            queued: AtomicIsize::new(0),
            written: AtomicU64::new(0),
            read: AtomicU64::new(0),
            last_call: Mutex::new((0, 0)),
        }
    }

    /// Writes `lines` (at most [`BATCH`], each one message made [`one_line`]; the id of
    /// those that are requests), each followed by a newline.
    fn put(&self, out: &mut ChildStdin, lines: &[(Option<u64>, Cow<'_, str>)]) -> std::io::Result<()> {
        let mut slices = [IoSlice::new(b""); 2 * BATCH];
        for (i, (_, line)) in lines.iter().take(BATCH).enumerate() {
            slices[2 * i] = IoSlice::new(line.as_bytes());
            slices[2 * i + 1] = IoSlice::new(b"\n");
        }
        write_all_vectored(out, &mut slices[..2 * lines.len().min(BATCH)])?;
        for (call, line) in lines {
            let len = line.len() as u64 + 1;
            let end = self.written.fetch_add(len, Ordering::AcqRel) + len;
            if let Some(id) = call {
                *self.last_call.lock() = (*id, end);
            }
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

/// `write_all` for a vectored write: the pipe may take part of it at a time.
fn write_all_vectored(out: &mut impl Write, mut slices: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    while !slices.is_empty() {
        match out.write_vectored(slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Inline for Pipe {
    fn try_write(&self, id: u64, line: &str) -> bool {
        if self.queued.load(Ordering::Acquire) != 0 {
            return false;
        }
        let Some(mut out) = self.out.try_lock() else { return false };
        // Checked again under the lock: the writer counts a command done only after it
        // wrote it, under this lock, so zero here means nothing is queued or half-written.
        let unread = self.written.load(Ordering::Acquire).saturating_sub(self.read.load(Ordering::Acquire));
        if self.queued.load(Ordering::Acquire) != 0 || unread + line.len() as u64 + 1 > PIPE_ROOM {
            return false;
        }
        let Some(w) = out.as_mut() else { return false };
        // A failed write leaves the pipe broken: the line is lost with it, and the reader's
        // end of file (or the writer's next write) reports the exit and fails this call.
        let _ = self.put(w, &[(Some(id), one_line(line))]);
        true
    }

    fn queued(&self, n: isize) {
        self.queued.fetch_add(n, Ordering::AcqRel);
    }
}

fn writer(backend: &Link, pipe: &Pipe, rx: Receiver<Box<Command>>) {
    let close = || drop(pipe.out.lock().take());
    // Allocated the first time the queue is used (a backend whose callers always write
    // their own lines never needs it).
    let mut batch: Vec<(Option<u64>, Cow<'static, str>)> = Vec::new();
    while let Ok(cmd) = rx.recv() {
        let mut out = pipe.out.lock();
        let Some(w) = out.as_mut() else { break };
        let mut next = Some(cmd);
        let mut done = 0;
        // Coalesce what is already queued: one syscall per [`BATCH`] lines under load.
        let mut ok = true;
        let mut stop = false;
        while ok && !stop && next.is_some() {
            while let Some(cmd) = next.take() {
                let call = match &*cmd {
                    Command::Call { id, .. } => Some(*id),
                    _ => None,
                };
                let Some(line) = (*cmd).into_line() else {
                    stop = true;
                    break;
                };
                done += 1;
                let line = match one_line(&line) {
                    Cow::Borrowed(_) => line,
                    Cow::Owned(fixed) => fixed,
                };
                batch.push((call, Cow::Owned(line)));
                if batch.len() == BATCH {
                    next = rx.try_recv().ok();
                    break;
                }
                next = rx.try_recv().ok();
            }
            ok = batch.is_empty() || pipe.put(w, &batch).is_ok();
            batch.clear();
        }
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
    let mut input = Input::new(stdout, backend.max_message_bytes);
    loop {
        match input.next_line() {
            Ok(Line::Eof) => break,
            Ok(Line::TooLong(prefix)) => {
                let why = format!("sent a message larger than {} bytes", backend.max_message_bytes);
                log::error!(target: "mcprouter::backend", "[{}] {why}", backend.name());
                // The reply it was meant to be is still owed to its caller: fail that call now.
                if let Some(id) = leading_id(&prefix) {
                    backend.complete(id, Reply::Failed(why));
                }
            }
            Ok(Line::Complete) => match std::str::from_utf8(input.line()) {
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
    }
    let why = match backend.exit_status() {
        Some(st) => format!("the process exited ({st})"),
        None => "the process closed its stdout".to_owned(),
    };
    backend.on_exit(why);
}

/// The reader's buffer while idle; a long message grows it for as long as it takes.
const LINE: usize = 4 * 1024;

/// The child's stdout, read into one buffer that also holds the line being taken (no
/// separate `BufReader`): newline-delimited messages of at most `max` bytes.
struct Input<R> {
    from: R,
    /// `buf[start..end]` is read and not taken yet; `buf[..]` is all initialized.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// `buf[start..scanned]` holds no newline.
    scanned: usize,
    /// The line [`Input::next_line`] found last.
    line: std::ops::Range<usize>,
    max: usize,
}

impl<R: Read> Input<R> {
    fn new(from: R, max: usize) -> Input<R> {
        Input { from, buf: vec![0; LINE], start: 0, end: 0, scanned: 0, line: 0..0, max }
    }

    /// The line found by the last [`Line::Complete`] (without its `\n` or a trailing `\r`).
    fn line(&self) -> &[u8] {
        self.buf.get(self.line.clone()).unwrap_or_default()
    }

    /// Finds the next line, reading as needed; an oversized line is consumed and reported
    /// with its first bytes; a last line without its newline still counts.
    fn next_line(&mut self) -> std::io::Result<Line> {
        let mut too_long: Option<Vec<u8>> = None;
        loop {
            if let Some(at) = self.buf[self.scanned..self.end].iter().position(|&b| b == b'\n') {
                let nl = self.scanned + at;
                let line = self.start..nl;
                self.start = nl + 1;
                self.scanned = self.start;
                if let Some(prefix) = too_long {
                    return Ok(Line::TooLong(prefix));
                }
                if line.len() > self.max {
                    let mut prefix = self.buf[line.clone()].to_vec();
                    prefix.truncate(256);
                    return Ok(Line::TooLong(prefix));
                }
                let end = if nl > line.start && self.buf[nl - 1] == b'\r' { nl - 1 } else { nl };
                self.line = line.start..end;
                return Ok(Line::Complete);
            }
            self.scanned = self.end;
            if too_long.is_none() && self.end - self.start > self.max {
                too_long = Some(self.buf[self.start..self.start + 256.min(self.max)].to_vec());
            }
            if too_long.is_some() {
                // Skipping: what was read of it is dropped as it comes.
                (self.start, self.end, self.scanned) = (0, 0, 0);
            }
            self.make_room();
            let n = loop {
                match self.from.read(&mut self.buf[self.end..]) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    other => break other?,
                }
            };
            if n == 0 {
                let rest = self.start..self.end;
                (self.start, self.end, self.scanned) = (0, 0, 0);
                return Ok(match too_long {
                    Some(p) => Line::TooLong(p),
                    None if rest.is_empty() => Line::Eof,
                    None if rest.len() > self.max => {
                        Line::TooLong(self.buf[rest.start..rest.start + 256.min(rest.len())].to_vec())
                    }
                    None => {
                        let end = if self.buf[rest.end - 1] == b'\r' { rest.end - 1 } else { rest.end };
                        self.line = rest.start..end;
                        Line::Complete
                    }
                });
            }
            self.end += n;
        }
    }

    /// Before a read: what is not taken yet moves to the front, and a full buffer grows
    /// (up to what one message may need). A buffer a long message grew goes back to
    /// [`LINE`] once it is empty: every idle backend would keep its largest message's.
    fn make_room(&mut self) {
        if self.start == self.end {
            (self.start, self.end, self.scanned) = (0, 0, 0);
            if self.buf.len() > 2 * LINE {
                self.buf = vec![0; LINE];
            }
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            (self.end, self.scanned) = (self.end - self.start, self.scanned - self.start);
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let grown = (self.buf.len() * 2).min(self.max.saturating_add(2).max(LINE));
            self.buf.resize(grown.max(self.end + LINE), 0);
        }
    }
}

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

    /// Reads as a pipe does: at most `chunk` bytes at a time.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(buf.len()).min(self.1);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// Every line `Input` gives for `data` read `chunk` bytes at a time; a skipped line
    /// shows as `TooLong:` and its first bytes' length.
    fn lines(data: &[u8], chunk: usize, max: usize) -> Vec<String> {
        let mut input = Input::new(Trickle(data, chunk), max);
        let mut out = Vec::new();
        loop {
            match input.next_line().expect("read") {
                Line::Complete => out.push(String::from_utf8(input.line().to_vec()).expect("utf-8")),
                Line::TooLong(p) => out.push(format!("TooLong:{}", p.len())),
                Line::Eof => return out,
            }
        }
    }

    #[test]
    fn lines_are_read_whole_however_the_pipe_splits_them() {
        let big = "b".repeat(50_000);
        let data = format!("one\ntwo\r\n\n{big}\n{}\nthree\nlast", "x".repeat(70_000));
        for chunk in [1, 7, 4096, 1 << 20] {
            let got = lines(data.as_bytes(), chunk, 60_000);
            assert_eq!(got, ["one", "two", "", big.as_str(), "TooLong:256", "three", "last"], "chunk {chunk}");
        }
        assert_eq!(lines(b"", 10, 100), Vec::<String>::new());
        assert_eq!(lines(b"abc\r", 10, 100), ["abc"]);
        assert_eq!(lines(&[b'y'; 300], 64, 100), ["TooLong:100"], "an unterminated line over the limit");
    }

    #[test]
    fn a_long_message_does_not_keep_its_buffer() {
        let data = format!("{}\nsmall\n", "z".repeat(100_000));
        let mut input = Input::new(Trickle(data.as_bytes(), 1 << 20), 1 << 20);
        assert!(matches!(input.next_line().expect("read"), Line::Complete));
        assert_eq!(input.line().len(), 100_000);
        assert!(matches!(input.next_line().expect("read"), Line::Complete));
        assert_eq!(input.line(), b"small");
        assert!(matches!(input.next_line().expect("read"), Line::Eof));
        assert_eq!(input.buf.len(), LINE, "back to the idle size before waiting for more");
    }

    #[test]
    fn finds_the_id_of_a_truncated_reply() {
        assert_eq!(leading_id(br#"{"jsonrpc":"2.0","id": 17,"result":{"content":"xxxx"#), Some(17));
        assert_eq!(leading_id(br#"{"jsonrpc":"2.0","method":"x""#), None);
    }
}
