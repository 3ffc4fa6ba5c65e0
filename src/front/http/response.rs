//! Writing responses: whole ones (JSON, status only) and SSE streams (`Sink`).
//!
//! An SSE stream is sent with chunked transfer coding, so the connection can carry the
//! next request once the stream ends.

use std::io::{self, Write};
use std::net::Shutdown;

use parking_lot::Mutex;

use super::conn::Conn;

/// Headers added to a response beyond the fixed ones (session id, CORS, `Allow`, ...).
pub(crate) type Headers = Vec<(&'static str, String)>;

pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

fn head(status: u16, headers: &Headers, content_type: Option<&str>, length: Option<usize>, close: bool) -> String {
    let mut h = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    if let Some(ct) = content_type {
        h.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    match length {
        Some(n) => h.push_str(&format!("Content-Length: {n}\r\n")),
        None => h.push_str("Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n"),
    }
    for (k, v) in headers {
        h.push_str(k);
        h.push_str(": ");
        h.push_str(v);
        h.push_str("\r\n");
    }
    if close {
        h.push_str("Connection: close\r\n");
    }
    h.push_str("\r\n");
    h
}

/// Writes a whole response.
pub(crate) fn write_full(
    stream: &mut impl Write,
    status: u16,
    headers: &Headers,
    content_type: Option<&str>,
    body: &[u8],
    close: bool,
) -> io::Result<()> {
    let mut out = head(status, headers, content_type, Some(body.len()), close).into_bytes();
    out.extend_from_slice(body);
    stream.write_all(&out)?;
    stream.flush()
}

/// One SSE event as text: `data` split into lines (a JSON text may hold newlines).
pub(crate) fn sse_event(id: Option<u64>, retry: Option<u64>, data: &str) -> String {
    let mut ev = String::with_capacity(data.len() + 48);
    if let Some(r) = retry {
        ev.push_str(&format!("retry: {r}\n"));
    }
    if let Some(id) = id {
        ev.push_str(&format!("id: {id}\n"));
    }
    ev.push_str("event: message\n");
    for line in data.split('\n') {
        ev.push_str("data: ");
        ev.push_str(line.strip_suffix('\r').unwrap_or(line));
        ev.push('\n');
    }
    ev.push('\n');
    ev
}

fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing written yet: the answer may still be plain JSON.
    Pending,
    /// SSE headers sent; events follow.
    Streaming,
    /// The response is complete; the connection may carry the next request.
    Done,
    /// A write failed or the peer left; nothing more is written.
    Broken,
}

struct State {
    stream: Conn,
    mode: Mode,
}

/// The response of one POST (or GET stream): plain JSON until something must be sent
/// before the result, then an SSE stream. Writers (the session's event pump, the thread
/// that ran the call) take its lock for each write, so events and the result never
/// interleave. Writes are bounded by the socket's write timeout.
pub(crate) struct Sink {
    state: Mutex<State>,
    headers: Headers,
}

impl Sink {
    /// `stream` is a clone of the connection's socket; `headers` go on the response head.
    pub fn new(stream: Conn, headers: Headers) -> Sink {
        Sink { state: Mutex::new(State { stream, mode: Mode::Pending }), headers }
    }

    fn write(st: &mut State, bytes: &[u8]) -> bool {
        if st.stream.write_all(bytes).and_then(|()| st.stream.flush()).is_err() {
            st.mode = Mode::Broken;
            // Unblocks a reader of the same connection too.
            let _ = st.stream.tcp().shutdown(Shutdown::Both);
            return false;
        }
        true
    }

    /// Sends the SSE head now (and `first`, an initial event) if nothing was sent yet.
    pub fn open_stream(&self, first: Option<&str>) -> bool {
        let mut st = self.state.lock();
        if st.mode != Mode::Pending {
            return st.mode == Mode::Streaming;
        }
        let mut out = head(200, &self.headers, Some("text/event-stream"), None, false).into_bytes();
        if let Some(f) = first {
            out.extend_from_slice(&chunk(f.as_bytes()));
        }
        st.mode = Mode::Streaming;
        Self::write(&mut st, &out)
    }

    /// Sends one event (already formatted by [`sse_event`]), opening the stream if needed.
    /// False when the stream is over or broken.
    pub fn send(&self, event: &str) -> bool {
        let mut st = self.state.lock();
        let mut out = Vec::new();
        match st.mode {
            Mode::Pending => {
                out = head(200, &self.headers, Some("text/event-stream"), None, false).into_bytes();
                st.mode = Mode::Streaming;
            }
            Mode::Streaming => {}
            Mode::Done | Mode::Broken => return false,
        }
        out.extend_from_slice(&chunk(event.as_bytes()));
        Self::write(&mut st, &out)
    }

    /// Sends an SSE comment (a keep-alive); false when the peer is gone.
    pub fn comment(&self) -> bool {
        let mut st = self.state.lock();
        if st.mode != Mode::Streaming {
            return st.mode != Mode::Broken;
        }
        Self::write(&mut st, &chunk(b": keep-alive\n\n"))
    }

    /// Completes the response with `reply`: as JSON when nothing was streamed yet, else as
    /// the stream's last event. True when the connection is still usable.
    pub fn finish(&self, reply: &str) -> bool {
        let mut st = self.state.lock();
        let out = match st.mode {
            Mode::Pending => {
                let mut out = head(200, &self.headers, Some("application/json"), Some(reply.len()), false).into_bytes();
                out.extend_from_slice(reply.as_bytes());
                out
            }
            Mode::Streaming => {
                let mut out = chunk(sse_event(None, None, reply).as_bytes());
                out.extend_from_slice(b"0\r\n\r\n");
                out
            }
            Mode::Done | Mode::Broken => return false,
        };
        let ok = Self::write(&mut st, &out);
        if ok {
            st.mode = Mode::Done;
        }
        ok
    }

    /// Completes the response with `reply` under another status and `extra` headers, if
    /// nothing was streamed yet (`None` otherwise: the status line is long gone).
    pub fn finish_status(&self, status: u16, extra: &Headers, reply: &str) -> Option<bool> {
        let mut st = self.state.lock();
        if st.mode != Mode::Pending {
            return None;
        }
        let mut headers = self.headers.clone();
        headers.extend(extra.iter().cloned());
        let mut out = head(status, &headers, Some("application/json"), Some(reply.len()), false).into_bytes();
        out.extend_from_slice(reply.as_bytes());
        let ok = Self::write(&mut st, &out);
        if ok {
            st.mode = Mode::Done;
        }
        Some(ok)
    }

    /// Completes a response that has no result (its requests were cancelled): 202 when
    /// nothing was streamed, else the stream's end.
    pub fn finish_empty(&self) -> bool {
        let mut st = self.state.lock();
        let out = match st.mode {
            Mode::Pending => head(202, &self.headers, None, Some(0), false).into_bytes(),
            Mode::Streaming => b"0\r\n\r\n".to_vec(),
            Mode::Done | Mode::Broken => return false,
        };
        let ok = Self::write(&mut st, &out);
        if ok {
            st.mode = Mode::Done;
        }
        ok
    }

    /// Ends a stream without a further event (shutdown, a replaced GET stream). True when
    /// the connection is still usable.
    pub fn end(&self) -> bool {
        let mut st = self.state.lock();
        match st.mode {
            Mode::Streaming => {
                let ok = Self::write(&mut st, b"0\r\n\r\n");
                if ok {
                    st.mode = Mode::Done;
                }
                ok
            }
            Mode::Pending => {
                st.mode = Mode::Done;
                true
            }
            Mode::Done => true,
            Mode::Broken => false,
        }
    }

    /// Whether the stream can take more.
    pub fn is_open(&self) -> bool {
        matches!(self.state.lock().mode, Mode::Pending | Mode::Streaming)
    }

    /// Whether the peer has closed its side. Looks without blocking; only while no one else
    /// reads the socket (the connection's thread is waiting on the call, not reading).
    pub fn peer_gone(&self) -> bool {
        let mut st = self.state.lock();
        if st.mode == Mode::Broken {
            return true;
        }
        let tcp = st.stream.tcp();
        if tcp.set_nonblocking(true).is_err() {
            return false;
        }
        let mut b = [0u8; 1];
        let gone = match tcp.peek(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted),
        };
        let _ = tcp.set_nonblocking(false);
        if gone {
            st.mode = Mode::Broken;
        }
        gone
    }

    /// Cuts the connection (shutdown after the grace period).
    pub fn abort(&self) {
        let mut st = self.state.lock();
        st.mode = Mode::Broken;
        st.stream.shutdown();
    }
}
