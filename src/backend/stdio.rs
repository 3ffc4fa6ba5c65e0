//! The stdio transport: spawn, and the writer, reader and stderr threads.

use std::io::{BufReader, BufWriter, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command as Proc, Stdio};

use crossbeam_channel::{Receiver, bounded};

use super::life::{Connection, Link};
use super::process::Child;
use super::{Command, Reply};
use crate::framing::{Line, read_line_limited};

/// Starts the child with the router's environment plus the configured variables (lesson 1
/// in docs/lessons.md: never from an empty environment) and the three threads that serve it.
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
    // Owned by the connection from here on: an error below drops it, which ends the child.
    let mut conn = Connection::new(tx);
    conn.child = Some(Child::new(child));
    conn.threads.push(backend.spawn_thread("-w", move |b| writer(b, stdin, rx))?);
    conn.threads.push(backend.spawn_thread("-r", move |b| reader(b, stdout))?);
    conn.threads.push(backend.spawn_thread("-e", move |b| drain_stderr(b.name(), stderr, b.max_message_bytes))?);
    Ok(conn)
}

fn writer(backend: &Link, stdin: std::process::ChildStdin, rx: Receiver<Command>) {
    // Small buffers: they are allocated per backend up front, and a long line simply takes
    // several reads or writes.
    let mut out = BufWriter::with_capacity(4 * 1024, stdin);
    while let Ok(cmd) = rx.recv() {
        let Some(mut line) = cmd.into_line() else { break };
        // Coalesce what is already queued into one flush: one syscall under load.
        loop {
            // A line break inside a message can only be JSON whitespace (in strings it is
            // escaped), but on stdio it would split the message in two: make it a space.
            // `contains` on bytes is memchr: a scan per message that costs next to nothing
            // (a byte-by-byte `any` cost ~650 instructions a call, measured with callgrind).
            if line.as_bytes().contains(&b'\n') || line.as_bytes().contains(&b'\r') {
                line = line.replace(['\n', '\r'], " ");
            }
            line.push('\n');
            if out.write_all(line.as_bytes()).is_err() {
                write_failed(backend);
                return;
            }
            match rx.try_recv().map(Command::into_line) {
                Ok(Some(next)) => line = next,
                Ok(None) => {
                    let _ = out.flush();
                    return;
                }
                Err(_) => break,
            }
        }
        if out.flush().is_err() {
            write_failed(backend);
            return;
        }
    }
    let _ = out.flush();
}

/// Stdin is gone: the process most likely exited, and its status says more than the pipe.
fn write_failed(backend: &Link) {
    let why = match backend.exit_status() {
        Some(st) => format!("the process exited ({st})"),
        None => "writing to its stdin failed".to_owned(),
    };
    backend.on_exit(why);
}

fn reader(backend: &Link, stdout: std::process::ChildStdout) {
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
                    backend.dispatch(text);
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

fn drain_stderr(name: &str, stderr: std::process::ChildStderr, max: usize) {
    let mut input = BufReader::with_capacity(2 * 1024, stderr);
    let mut buf = Vec::new();
    // Never stop reading: a child blocked on a full stderr pipe stops answering.
    while let Ok(l) = read_line_limited(&mut input, &mut buf, max.min(64 * 1024)) {
        if buf.capacity() > 4 * LINE {
            buf.shrink_to(LINE);
        }
        match l {
            Line::Eof => break,
            Line::TooLong(_) => log::info!(target: "mcprouter::backend::stderr", "[{name}] (long stderr line skipped)"),
            Line::Complete => {
                let s = String::from_utf8_lossy(&buf);
                log::info!(target: "mcprouter::backend::stderr", "[{name}] {}", s.trim_end());
            }
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
    fn finds_the_id_of_a_truncated_reply() {
        assert_eq!(leading_id(br#"{"jsonrpc":"2.0","id": 17,"result":{"content":"xxxx"#), Some(17));
        assert_eq!(leading_id(br#"{"jsonrpc":"2.0","method":"x""#), None);
    }
}
