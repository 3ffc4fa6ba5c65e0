//! `mcprouter test-server --http ADDR --http-fault FAULT`: a minimal Streamable HTTP MCP
//! server whose `echo` tool behaves and whose `fault` tool misbehaves as asked, for the
//! router's bad-peer tests.
//!
//! Plain std sockets rather than tiny_http: the faults are about the bytes on the wire (a
//! body cut short, an event that never ends, a request never answered), which a server
//! library exists to prevent. One thread per connection; every response closes it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

pub const FAULTS: [&str; 6] =
    ["close-mid-stream", "bad-sse", "endless-event", "status-500", "redirect-offsite", "never-answer"];

pub fn serve(addr: &str, fault: &str, name: &str) -> i32 {
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("test-server: cannot listen on {addr}: {e}");
            return 1;
        }
    };
    match listener.local_addr() {
        Ok(a) => eprintln!("listening on http://{a}"),
        Err(e) => {
            eprintln!("test-server: {e}");
            return 1;
        }
    }
    for stream in listener.incoming().flatten() {
        let (fault, name) = (fault.to_owned(), name.to_owned());
        let _ = thread::Builder::new().name("http-conn".into()).spawn(move || {
            let _ = connection(stream, &fault, &name);
        });
    }
    0
}

fn respond(out: &mut TcpStream, status: &str, headers: &[(&str, &str)], body: &str) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    out.write_all(body.as_bytes())?;
    out.flush()
}

fn sse_head(out: &mut TcpStream) -> std::io::Result<()> {
    out.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/event-stream\r\n\r\n")?;
    out.flush()
}

fn connection(stream: TcpStream, fault: &str, name: &str) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut input = BufReader::new(stream);
    let mut line = String::new();
    input.read_line(&mut line)?;
    let method = line.split(' ').next().unwrap_or("").to_owned();
    let mut length = 0usize;
    let mut session = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            } else if k.trim().eq_ignore_ascii_case("mcp-session-id") {
                v.trim().clone_into(&mut session);
            }
        }
    }
    if method == "DELETE" {
        // Tests read this to see the session was ended.
        eprintln!("DELETE session {session}");
    }
    if method != "POST" {
        let status = if method == "DELETE" { "200 OK" } else { "405 Method Not Allowed" };
        return respond(&mut out, status, &[], "");
    }
    let mut body = vec![0; length.min(1 << 20)];
    input.read_exact(&mut body)?;
    let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(id) = msg.get("id").cloned().filter(|_| msg.get("method").is_some()) else {
        return respond(&mut out, "202 Accepted", &[], "");
    };
    let ok = |result: Value| json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string();
    let json_ct = [("Content-Type", "application/json"), ("Mcp-Session-Id", "fault-session")];
    let result = match msg["method"].as_str().unwrap_or("") {
        "initialize" => json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                               "serverInfo": {"name": name, "version": "1"}}),
        "tools/list" => json!({"tools": [
            {"name": "echo", "inputSchema": {"type": "object"}},
            {"name": "fault", "description": format!("misbehaves: {fault}"), "inputSchema": {"type": "object"}}]}),
        "tools/call" if msg["params"]["name"] == "fault" => return misbehave(&mut out, fault, &id),
        "tools/call" => json!({"content": [{"type": "text", "text": format!("echo from {name}")}]}),
        _ => json!({}),
    };
    respond(&mut out, "200 OK", &json_ct, &ok(result))
}

fn misbehave(out: &mut TcpStream, fault: &str, id: &Value) -> std::io::Result<()> {
    let progress = json!({"jsonrpc": "2.0", "method": "notifications/message",
                          "params": {"level": "info", "data": "working"}});
    match fault {
        "close-mid-stream" => {
            sse_head(out)?;
            write!(out, "event: message\ndata: {progress}\n\ndata: {{\"jsonrpc\":\"2.0\",\"id\":{id},\"res")?;
            out.flush()
        }
        "bad-sse" => {
            sse_head(out)?;
            write!(out, "event: message\ndata: {{this is not json\n\n")?;
            out.flush()?;
            thread::sleep(Duration::from_secs(30));
            Ok(())
        }
        "endless-event" => {
            sse_head(out)?;
            out.write_all(b"event: message\ndata: ")?;
            let chunk = vec![b'x'; 64 * 1024];
            // Until the client hangs up (its size cap), or 1 GiB.
            for _ in 0..16 * 1024 {
                out.write_all(&chunk)?;
            }
            Ok(())
        }
        "status-500" => respond(out, "500 Internal Server Error", &[], "boom"),
        "redirect-offsite" => respond(out, "307 Temporary Redirect", &[("Location", "http://example.invalid/mcp")], ""),
        _ => {
            // never-answer: hold the connection without a byte until the client gives up.
            let mut sink = [0u8; 1];
            let _ = out.set_read_timeout(Some(Duration::from_secs(60)));
            let _ = (&*out).read(&mut sink);
            Ok(())
        }
    }
}
