//! A minimal HTTP/1.1 client for the gateway tests: one request per connection
//! (`Connection: close`), read to the end, so a test sees exactly the bytes the gateway sent.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

#[derive(Debug)]
pub struct Reply {
    /// 0 when the connection was reset before any head arrived.
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The JSON answer, or the last event of an SSE answer.
    pub fn json(&self) -> Value {
        let text = match self.body.rfind("data: ") {
            Some(i) if self.header("content-type") == Some("text/event-stream") => self.body[i + 6..].trim(),
            _ => self.body.trim(),
        };
        serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// The JSON-RPC error code of the answer.
    pub fn code(&self) -> i64 {
        self.json()["error"]["code"].as_i64().unwrap_or_else(|| panic!("no error code in {}", self.body))
    }
}

/// One request to `target` (a `Host` header is added unless given), read to the end.
pub fn request(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let len = body.len().to_string();
    let framing = [("Connection", "close"), ("Content-Length", len.as_str())];
    let all: Vec<(&str, &str)> = framing.iter().chain(headers).copied().collect();
    let mut s = send(addr, &format!("{method} {target} HTTP/1.1"), &all, body);
    read_reply(&mut s)
}

/// Connects, sends `request_line`, the `headers` (with `Host` unless given) and `body`,
/// and hands back the connection unread (60 s read timeout).
pub fn send(addr: SocketAddr, request_line: &str, headers: &[(&str, &str)], body: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!("{request_line}\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // The gateway may answer (413, 400) and close before reading it all.
    let _ = s.write_all(body);
    s
}

/// Reads a whole reply from `s` (which the server closes after it).
pub fn read_reply(s: &mut TcpStream) -> Reply {
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse(&raw)
}

pub fn parse(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw).into_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Reply { status: 0, headers: Vec::new(), body: text };
    };
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect();
    let chunked = headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v == "chunked");
    let body = if chunked { dechunk(body) } else { body.to_owned() };
    Reply { status, headers, body }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n + 2 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}
