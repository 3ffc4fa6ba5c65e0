//! The gateway's legacy HTTP+SSE endpoints (2024-11-05): `GET /sse` opens a session whose
//! first event names the POST URL; replies and everything else come on the stream; bad
//! input gets a clear status; the stream cap holds; a client that leaves ends its session
//! and cancels its calls.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use mcprouter::Gateway;
use mcprouter::config::GatewaySettings;
use serde_json::{Value, json};

use common::http::Reply;

/// One request on its own connection, read to the end.
fn send(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    common::http::request(addr, method, target, headers, body.as_bytes())
}

const CT: (&str, &str) = ("Content-Type", "application/json");

/// An open legacy SSE stream, read event by event (the body is chunked).
struct Sse {
    r: BufReader<TcpStream>,
    pending: String,
    /// The POST target the `endpoint` event named.
    endpoint: String,
    /// Headers sent with every request of this client (its token).
    auth: Vec<(&'static str, &'static str)>,
}

impl Sse {
    fn open(addr: SocketAddr, headers: &[(&'static str, &'static str)]) -> Result<Sse, u16> {
        let all: Vec<(&str, &str)> = [("Accept", "text/event-stream")].iter().chain(headers).copied().collect();
        let s = common::http::send(addr, "GET /sse HTTP/1.1", &all, b"");
        let mut r = BufReader::new(s);
        let mut status_line = String::new();
        r.read_line(&mut status_line).unwrap();
        let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut content_type = String::new();
        loop {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            if l == "\r\n" || l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-type")
            {
                content_type = v.trim().to_owned();
            }
        }
        if status != 200 {
            return Err(status);
        }
        assert_eq!(content_type, "text/event-stream");
        let auth = headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("authorization")).copied().collect();
        let mut sse = Sse { r, pending: String::new(), endpoint: String::new(), auth };
        let (event, data) = sse.next().expect("an endpoint event");
        assert_eq!(event, "endpoint");
        let id = data.strip_prefix("/messages?sessionId=").unwrap_or_else(|| panic!("endpoint {data}"));
        assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        sse.endpoint = data;
        Ok(sse)
    }

    fn session_id(&self) -> &str {
        self.endpoint.split_once('=').map(|(_, id)| id).unwrap_or_default()
    }

    /// The next event (name, data), skipping comments; None when the stream ends.
    fn next(&mut self) -> Option<(String, String)> {
        loop {
            if let Some(i) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..i + 2).collect();
                let (mut event, mut data) = ("message".to_owned(), Vec::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push(v);
                    }
                }
                if data.is_empty() && event == "message" {
                    continue;
                }
                return Some((event, data.join("\n")));
            }
            let mut size = String::new();
            if self.r.read_line(&mut size).ok()? == 0 {
                return None;
            }
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            if n == 0 {
                return None;
            }
            let mut chunk = vec![0u8; n + 2];
            self.r.read_exact(&mut chunk).ok()?;
            self.pending.push_str(std::str::from_utf8(&chunk[..n]).ok()?);
        }
    }

    /// The next JSON-RPC message on the stream.
    fn message(&mut self) -> Value {
        let (event, data) = self.next().expect("the stream is open");
        assert_eq!(event, "message");
        serde_json::from_str(&data).expect("JSON")
    }

    /// POSTs `body` with the client's token, or with `headers` in its place.
    fn post(&self, addr: SocketAddr, body: &str, headers: &[(&str, &str)]) -> Reply {
        let mut h = vec![CT];
        if headers.is_empty() {
            h.extend(self.auth.iter().copied());
        }
        h.extend_from_slice(headers);
        send(addr, "POST", &self.endpoint, &h, body)
    }

    /// POSTs a request, checks the 202, and returns what the stream says up to its reply.
    fn request(&mut self, addr: SocketAddr, msg: Value) -> Vec<Value> {
        let r = self.post(addr, &msg.to_string(), &[]);
        assert_eq!(r.status, 202, "{}", r.body);
        let mut seen = Vec::new();
        loop {
            let m = self.message();
            let done = m.get("id") == msg.get("id") && m.get("method").is_none();
            seen.push(m);
            if done {
                return seen;
            }
        }
    }

    fn initialize(&mut self, addr: SocketAddr) {
        let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion":"2024-11-05","capabilities":{"sampling":{}},"clientInfo":{"name":"t","version":"1"}}});
        assert_eq!(self.post(addr, &init.to_string(), &[]).status, 202);
        let reply = self.message();
        assert_eq!(reply["result"]["protocolVersion"], "2024-11-05", "{reply}");
        let r = self.post(addr, r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#, &[]);
        assert_eq!(r.status, 202);
    }
}

fn gateway(yaml: &str) -> (mcprouter::Router, Gateway) {
    let router = common::router("", &[common::backend("alpha", &[])]);
    let mut settings = GatewaySettings::from_yaml(yaml).unwrap();
    settings.listen = Some("127.0.0.1:0".into());
    let g = Gateway::start(router.clone(), settings).expect("gateway starts");
    (router, g)
}

/// Waits (bounded by the watchdog) until `f` holds.
fn until(mut f: impl FnMut() -> bool) {
    while !f() {
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_legacy_session_round_trip_and_bad_input() {
    let (router, g) = gateway("");
    let a = g.addr();
    let mut sse = Sse::open(a, &[]).expect("a stream");
    sse.initialize(a);
    let seen = sse.request(a, json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}));
    assert_eq!(seen.last().unwrap()["result"]["tools"].as_array().map(Vec::len), Some(common::TEST_SERVER_TOOLS));

    // Progress travels on the stream, before the result.
    let call = json!({"jsonrpc":"2.0","id":2,"method":"tools/call",
        "params":{"name":"progress","arguments":{"steps":2},"_meta":{"progressToken":"p1"}}});
    let seen = sse.request(a, call);
    let progress: Vec<&Value> = seen.iter().filter(|m| m["method"] == "notifications/progress").collect();
    assert_eq!(progress.len(), 2, "{seen:?}");
    assert!(progress.iter().all(|p| p["params"]["progressToken"] == "p1"));
    assert_eq!(seen.last().unwrap()["result"]["content"][0]["text"], "done 2");

    // A batch (2024-11-05 allows them): both replies on the stream.
    let batch = r#"[{"jsonrpc":"2.0","id":3,"method":"ping"},{"jsonrpc":"2.0","id":4,"method":"ping"}]"#;
    assert_eq!(sse.post(a, batch, &[]).status, 202);
    let replies = sse.message();
    assert_eq!(replies.as_array().map(Vec::len), Some(2), "{replies}");

    let ping = r#"{"jsonrpc":"2.0","id":5,"method":"ping"}"#;
    let r = send(a, "POST", "/messages", &[CT], ping);
    assert_eq!((r.status, r.code()), (400, -32000), "no session id");
    let r = send(a, "POST", "/messages?sessionId=00112233445566778899aabbccddeeff", &[CT], ping);
    assert_eq!((r.status, r.code()), (404, -32001), "forged session id");
    let r = sse.post(a, "{not json", &[]);
    assert_eq!((r.status, r.code()), (400, -32700));
    let r = send(a, "POST", &sse.endpoint, &[("Content-Type", "text/plain")], ping);
    assert_eq!(r.status, 415);
    let giant = format!(r#"{{"jsonrpc":"2.0","id":6,"method":"ping","params":{{"pad":"{}"}}}}"#, "x".repeat(5 << 20));
    assert_eq!(sse.post(a, &giant, &[]).status, 413);
    let r = send(a, "GET", &sse.endpoint, &[], "");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow"), Some("POST, OPTIONS"));
    let r = send(a, "POST", &sse.endpoint, &[CT, ("Host", "evil.example.com")], ping);
    assert_eq!(r.status, 403, "DNS rebinding: Host");
    let r = send(a, "POST", &sse.endpoint, &[CT, ("Origin", "http://evil.example.com")], ping);
    assert_eq!(r.status, 403, "DNS rebinding: Origin");
    assert_eq!(Sse::open(a, &[("Host", "evil.example.com")]).err(), Some(403));
    // A legacy session id is no Streamable HTTP session, and the reverse.
    let r = send(
        a,
        "POST",
        "/mcp",
        &[CT, ("Accept", "application/json, text/event-stream"), ("Mcp-Session-Id", sse.session_id())],
        ping,
    );
    assert_eq!(r.status, 404);

    // The session survived all of that.
    let seen = sse.request(a, json!({"jsonrpc":"2.0","id":7,"method":"ping"}));
    assert_eq!(seen.last().unwrap()["result"], json!({}));

    // Shutdown ends the stream.
    g.shutdown(Duration::from_secs(1));
    assert!(sse.next().is_none(), "the stream ends at shutdown");
    router.shutdown(Duration::from_secs(1));
}

#[test]
fn a_client_that_leaves_ends_its_session_and_its_calls() {
    let (router, g) = gateway("");
    let a = g.addr();
    let mut leaving = Sse::open(a, &[]).unwrap();
    leaving.initialize(a);
    let hang = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hang","arguments":{}}});
    assert_eq!(leaving.post(a, &hang.to_string(), &[]).status, 202);
    let endpoint = leaving.endpoint.clone();
    let mut watcher = Sse::open(a, &[]).unwrap();
    watcher.initialize(a);
    assert_eq!(g.session_count(), 2);
    drop(leaving);
    until(|| g.session_count() == 1);
    let r = send(a, "POST", &endpoint, &[CT], r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#);
    assert_eq!(r.status, 404, "the departed client's session is gone");
    // The backend was told to cancel the hanging call.
    let mut id = 10;
    until(|| {
        id += 1;
        let ask = json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"cancelled","arguments":{}}});
        let seen = watcher.request(a, ask);
        let text = seen.last().unwrap()["result"]["content"][0]["text"].as_str().unwrap_or_default().to_owned();
        serde_json::from_str::<Value>(&text).ok().and_then(|v| v.as_array().map(|c| !c.is_empty())).unwrap_or(false)
    });
    g.shutdown(Duration::from_secs(1));
    router.shutdown(Duration::from_secs(1));
}

#[test]
fn tokens_and_the_stream_cap() {
    // SAFETY of set_var: this test binary's tests read no other variable of this name.
    unsafe { std::env::set_var("MCPROUTER_GW_SSE_TOKEN", "s3cret-sse") };
    let (router, g) = gateway("tokens: [{env: MCPROUTER_GW_SSE_TOKEN}]\nmax_connections: 8\nmax_sse_streams: 2\n");
    let a = g.addr();
    let auth = ("Authorization", "Bearer s3cret-sse");
    assert_eq!(Sse::open(a, &[]).err(), Some(401));
    assert_eq!(Sse::open(a, &[("Authorization", "Bearer wrong")]).err(), Some(401));
    let mut one = Sse::open(a, &[auth]).expect("with the token");
    one.initialize(a);
    let r = one.post(a, r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, &[("Authorization", "Bearer wrong")]);
    assert_eq!(r.status, 401);
    assert!(r.header("WWW-Authenticate").is_some_and(|v| v.starts_with("Bearer")));
    let two = Sse::open(a, &[auth]).expect("a second stream");
    assert_eq!(Sse::open(a, &[auth]).err(), Some(503), "past max_sse_streams");
    drop(two);
    until(|| g.session_count() == 1);
    let _three = Sse::open(a, &[auth]).expect("a freed slot is usable");
    // The first session still works.
    let seen = one.request(a, json!({"jsonrpc":"2.0","id":2,"method":"ping"}));
    assert_eq!(seen.last().unwrap()["result"], json!({}));
    // Not larger than max_connections - 1: POSTs need a thread.
    let bad = GatewaySettings::from_yaml("max_connections: 4\nmax_sse_streams: 4\n").unwrap_err().to_string();
    assert!(bad.contains("max_sse_streams"), "{bad}");
    g.shutdown(Duration::from_secs(1));
    router.shutdown(Duration::from_secs(1));
}
