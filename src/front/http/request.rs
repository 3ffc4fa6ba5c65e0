//! Reading one HTTP/1.1 request off a connection: the head parsed by `httparse`, the body
//! by `Content-Length` or chunked, both under one deadline and one size cap.

use super::conn::Conn;
use std::io::{self, Read};
use std::time::{Duration, Instant};

/// Largest request head (request line and headers).
const MAX_HEAD: usize = 32 * 1024;
/// Most headers in one request.
const MAX_HEADERS: usize = 64;

/// One parsed request. Header names are lower-cased.
#[derive(Debug)]
pub(crate) struct Request {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query, without the `?` (empty when there is none).
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// HTTP/1.0, or `Connection: close`: the connection ends after the response.
    pub close: bool,
}

impl Request {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The raw value of query parameter `name` (the first one), not percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.split('&').find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v))
    }
}

/// Why no request could be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The peer closed (or the keep-alive wait ended) before a request began: nothing to answer.
    Idle,
    /// The request did not arrive in time: 408.
    Timeout,
    /// Not HTTP, or a malformed head or body: 400 with the reason.
    Bad(&'static str),
    /// The head is too large: 431.
    HeadTooLarge,
    /// The body is larger than the cap: 413. The connection must be closed (the body was
    /// not read).
    BodyTooLarge,
    /// A transfer coding other than chunked: 501.
    Unsupported,
}

/// Bytes read past a request (the start of a pipelined next one), kept for the next read.
#[derive(Default)]
pub(crate) struct Carry(Vec<u8>);

/// Reads one request. `first_wait` bounds the wait for its first byte (keep-alive idle);
/// from then on the whole request must arrive within `read_timeout`.
pub(crate) fn read_request(
    stream: &mut Conn,
    carry: &mut Carry,
    first_wait: Duration,
    read_timeout: Duration,
    max_body: usize,
) -> Result<Request, ReadError> {
    let mut buf = std::mem::take(&mut carry.0);
    let mut deadline: Option<Instant> = (!buf.is_empty()).then(|| Instant::now() + read_timeout);
    // The head.
    let (head_len, mut req) = loop {
        if !buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Request::new(&mut headers);
            match parsed.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => break (n, to_request(&parsed)?),
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => return Err(ReadError::HeadTooLarge),
                Err(_) => return Err(ReadError::Bad("malformed request head")),
            }
            if buf.len() > MAX_HEAD {
                return Err(ReadError::HeadTooLarge);
            }
        }
        let wait = match deadline {
            None => first_wait,
            Some(d) => d.saturating_duration_since(Instant::now()),
        };
        let n = match read_some(stream, &mut buf, wait, MAX_HEAD + 1) {
            // Nothing of a request yet: the keep-alive wait ended.
            Err(ReadError::Timeout) if buf.is_empty() => return Err(ReadError::Idle),
            r => r?,
        };
        if n == 0 {
            return Err(if buf.is_empty() { ReadError::Idle } else { ReadError::Bad("connection closed mid-request") });
        }
        deadline.get_or_insert_with(|| Instant::now() + read_timeout);
    };
    let deadline = deadline.unwrap_or_else(|| Instant::now() + read_timeout);
    let rest = buf.split_off(head_len);
    let chunked = match req.header("transfer-encoding") {
        None => false,
        Some(te) if te.eq_ignore_ascii_case("chunked") => true,
        Some(_) => return Err(ReadError::Unsupported),
    };
    let (body, extra) = if chunked {
        read_chunked(stream, rest, deadline, max_body)?
    } else {
        let len = match req.header("content-length") {
            None => 0,
            Some(v) => v.trim().parse::<usize>().map_err(|_| ReadError::Bad("bad Content-Length"))?,
        };
        if len > max_body {
            return Err(ReadError::BodyTooLarge);
        }
        let mut body = rest;
        while body.len() < len {
            let left = deadline.saturating_duration_since(Instant::now());
            if read_some(stream, &mut body, left, len)? == 0 {
                return Err(ReadError::Bad("connection closed mid-body"));
            }
        }
        let extra = body.split_off(len);
        (body, extra)
    };
    carry.0 = extra;
    req.body = body;
    Ok(req)
}

fn to_request(p: &httparse::Request<'_, '_>) -> Result<Request, ReadError> {
    let method = p.method.ok_or(ReadError::Bad("no method"))?.to_owned();
    let target = p.path.ok_or(ReadError::Bad("no target"))?;
    let target = target.split('#').next().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (path, query) = (path.to_owned(), query.to_owned());
    let mut headers = Vec::with_capacity(p.headers.len());
    for h in p.headers.iter() {
        let value = std::str::from_utf8(h.value).map_err(|_| ReadError::Bad("a header value is not UTF-8"))?;
        headers.push((h.name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    let mut req = Request { method, path, query, headers, body: Vec::new(), close: p.version == Some(0) };
    if let Some(c) = req.header("connection") {
        if c.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")) {
            req.close = true;
        } else if c.split(',').any(|t| t.trim().eq_ignore_ascii_case("keep-alive")) {
            req.close = false;
        }
    }
    Ok(req)
}

/// Reads what is available (at most up to `limit` bytes in `buf`) within `wait`; 0 at EOF.
fn read_some(stream: &mut Conn, buf: &mut Vec<u8>, wait: Duration, limit: usize) -> Result<usize, ReadError> {
    if wait.is_zero() {
        return Err(ReadError::Timeout);
    }
    stream.set_read_timeout(Some(wait)).map_err(|_| ReadError::Idle)?;
    let want = limit.saturating_sub(buf.len()).clamp(1, 64 * 1024);
    let mut chunk = vec![0u8; want];
    loop {
        match stream.read(&mut chunk) {
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(ReadError::Timeout);
            }
            Err(_) => return Err(ReadError::Idle),
        }
    }
}

/// Decodes a chunked body; returns it and the bytes after it.
fn read_chunked(
    stream: &mut Conn,
    mut buf: Vec<u8>,
    deadline: Instant,
    max_body: usize,
) -> Result<(Vec<u8>, Vec<u8>), ReadError> {
    let mut body = Vec::new();
    let mut pos = 0;
    let more = |stream: &mut Conn, buf: &mut Vec<u8>| -> Result<(), ReadError> {
        let left = deadline.saturating_duration_since(Instant::now());
        let cap = buf.len() + 64 * 1024;
        if read_some(stream, buf, left, cap)? == 0 {
            return Err(ReadError::Bad("connection closed mid-body"));
        }
        Ok(())
    };
    loop {
        // A size line.
        let line_end = loop {
            if let Some(i) = buf[pos..].windows(2).position(|w| w == b"\r\n") {
                break pos + i;
            }
            if buf.len() - pos > 1024 {
                return Err(ReadError::Bad("bad chunk size line"));
            }
            more(stream, &mut buf)?;
        };
        let line = std::str::from_utf8(&buf[pos..line_end]).map_err(|_| ReadError::Bad("bad chunk size"))?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| ReadError::Bad("bad chunk size"))?;
        pos = line_end + 2;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                if let Some(i) = buf[pos..].windows(2).position(|w| w == b"\r\n") {
                    let empty = i == 0;
                    pos += i + 2;
                    if empty {
                        return Ok((body, buf.split_off(pos)));
                    }
                } else {
                    if buf.len() - pos > MAX_HEAD {
                        return Err(ReadError::HeadTooLarge);
                    }
                    more(stream, &mut buf)?;
                }
            }
        }
        if body.len().saturating_add(size) > max_body {
            return Err(ReadError::BodyTooLarge);
        }
        while buf.len() < pos + size + 2 {
            more(stream, &mut buf)?;
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Err(ReadError::Bad("bad chunk terminator"));
        }
        pos += size + 2;
        // Drop what is consumed so a long body does not keep its chunks twice.
        buf.drain(..pos);
        pos = 0;
    }
}
