//! Hostile input to the gateway's 2026-07-28 shape (`front/http/modern.rs`): headers that
//! disagree with the body (`Mcp-Method`, `Mcp-Name`, `MCP-Protocol-Version` against
//! `_meta`, duplicated, or in broken `=?base64?…?=` sentinels), missing or wrong headers,
//! other HTTP methods, bodies that are not one JSON-RPC request, giant bodies and heads, a
//! client that closes its stream mid-call (the backend call must be cancelled) or mid-listen,
//! and a flood of stateless requests (threads and router sessions stay bounded). Each gets
//! a clear HTTP status and JSON-RPC error; nothing hangs and nothing is left behind.
//! (tests/eras_http.rs has the well-behaved cases; tests/gateway_legacy_sse.rs the legacy
//! HTTP+SSE endpoints.)

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use mcprouter::Gateway;
use mcprouter::config::GatewaySettings;
use serde_json::{Value, json};

use common::http::{Reply, read_reply};

/// Sends one request to /mcp (`body` as is) and reads the whole reply.
fn send_raw(addr: SocketAddr, method: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    common::http::request(addr, method, "/mcp", headers, body)
}

const BASE: [(&str, &str); 3] = [
    ("Accept", "application/json, text/event-stream"),
    ("Content-Type", "application/json"),
    ("MCP-Protocol-Version", "2026-07-28"),
];

/// A 2026-07-28 POST with the base headers plus `extra`.
fn post(addr: SocketAddr, extra: &[(&str, &str)], body: &str) -> Reply {
    let mut h: Vec<(&str, &str)> = BASE.to_vec();
    h.extend_from_slice(extra);
    send_raw(addr, "POST", &h, body.as_bytes())
}

fn envelope() -> Value {
    json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}})
}

fn request(id: u64, method: &str, mut params: Value) -> String {
    params["_meta"] = envelope();
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

fn echo(id: u64) -> String {
    request(id, "tools/call", json!({"name": "echo", "arguments": {"message": "hi"}}))
}

/// The tests of this file run one at a time: the flood test counts the process's threads.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn gateway(gateway_yaml: &str, router_settings: &str) -> (mcprouter::Router, Gateway) {
    common::watchdog(300);
    let router = common::router(router_settings, &[common::backend("alpha", &[])]);
    let mut settings = GatewaySettings::from_yaml(gateway_yaml).unwrap();
    settings.listen = Some("127.0.0.1:0".into());
    let g = Gateway::start(router.clone(), settings).expect("gateway starts");
    (router, g)
}

fn until(what: &str, mut f: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(std::time::Instant::now() < end, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn headers_that_disagree_with_the_body_are_400_header_mismatch() {
    let _serial = serial();
    let (_r, g) = gateway("", "");
    let a = g.addr();
    let m = ("Mcp-Method", "tools/call");
    let ok = post(a, &[m, ("Mcp-Name", "echo")], &echo(1));
    assert_eq!((ok.status, ok.json()["result"]["content"][0]["text"].as_str()), (200, Some("hi")), "{}", ok.body);
    // Mcp-Method itself may travel as a sentinel.
    let r = post(a, &[("Mcp-Method", "=?base64?dG9vbHMvY2FsbA==?="), ("Mcp-Name", "echo")], &echo(2));
    assert_eq!(r.status, 200, "{}", r.body);
    let mismatches: &[(&str, &[(&str, &str)])] = &[
        ("method in another case", &[("Mcp-Method", "TOOLS/CALL"), ("Mcp-Name", "echo")]),
        ("name in another case", &[m, ("Mcp-Name", "ECHO")]),
        ("empty name", &[m, ("Mcp-Name", "")]),
        ("'=' inside the base64", &[m, ("Mcp-Name", "=?base64?ZW=Nobw==?=")]),
        ("a base64 that decodes to nothing", &[m, ("Mcp-Name", "=?base64?Z?=")]),
        ("base64 of bytes that are not UTF-8", &[m, ("Mcp-Name", "=?base64?/w==?=")]),
        ("an unterminated sentinel", &[m, ("Mcp-Name", "=?base64?ZWNobw==")]),
        ("an upper-case marker (the markers are case-sensitive)", &[m, ("Mcp-Name", "=?BASE64?ZWNobw==?=")]),
        ("base64 of another name", &[m, ("Mcp-Name", "=?base64?ZWNobzI=?=")]),
        ("a second, different Mcp-Method", &[m, ("Mcp-Method", "tools/list"), ("Mcp-Name", "echo")]),
        ("a second, different Mcp-Name", &[m, ("Mcp-Name", "echo"), ("Mcp-Name", "fail")]),
        ("no Mcp-Method", &[("Mcp-Name", "echo")]),
        ("no Mcp-Name", &[m]),
    ];
    for (n, (what, h)) in mismatches.iter().enumerate() {
        let r = post(a, h, &echo(10 + n as u64));
        assert_eq!((r.status, r.code()), (400, -32020), "{what}: {}", r.body);
        assert_eq!(r.json()["id"], 10 + n as u64, "{what}: the error names the request");
    }
    // The version header against the body's, and a second version header.
    let mut body: Value = serde_json::from_str(&echo(30)).unwrap();
    body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2030-01-01");
    let r = post(a, &[m, ("Mcp-Name", "echo")], &body.to_string());
    assert_eq!((r.status, r.code()), (400, -32020), "{}", r.body);
    let r = post(a, &[m, ("Mcp-Name", "echo"), ("MCP-Protocol-Version", "2025-11-25")], &echo(31));
    assert_eq!((r.status, r.code()), (400, -32020), "two versions: {}", r.body);
    // A value that itself looks like a sentinel is compared decoded, never as text.
    let r = post(a, &[m, ("Mcp-Name", "=?base64?=?=")], &echo(32));
    assert_eq!((r.status, r.code()), (400, -32020), "{}", r.body);
}

#[test]
fn wrong_shapes_methods_and_missing_headers_get_clear_statuses() {
    let _serial = serial();
    let (_r, g) = gateway("", "");
    let a = g.addr();
    let list = request(1, "tools/list", json!({}));
    let tl = ("Mcp-Method", "tools/list");
    // (what, headers, body, HTTP status, JSON-RPC code)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16, Option<i64>);
    let cases: Vec<Case<'_>> = vec![
        (
            "no Accept",
            vec![("Content-Type", "application/json"), ("MCP-Protocol-Version", "2026-07-28"), tl],
            list.clone().into_bytes(),
            406,
            Some(-32000),
        ),
        (
            "Accept without SSE",
            vec![
                ("Accept", "application/json"),
                ("Content-Type", "application/json"),
                ("MCP-Protocol-Version", "2026-07-28"),
                tl,
            ],
            list.clone().into_bytes(),
            406,
            Some(-32000),
        ),
        (
            "a text body",
            vec![("Accept", "*/*"), ("Content-Type", "text/plain"), ("MCP-Protocol-Version", "2026-07-28"), tl],
            list.clone().into_bytes(),
            415,
            Some(-32000),
        ),
        ("not JSON", [&BASE[..], &[tl]].concat(), b"{\"jsonrpc\":".to_vec(), 400, Some(-32700)),
        ("not UTF-8", [&BASE[..], &[tl]].concat(), b"{\"a\":\"\xff\xfe\"}".to_vec(), 400, Some(-32700)),
        (
            "nested past the parser's limit",
            [&BASE[..], &[tl]].concat(),
            format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
            400,
            Some(-32700),
        ),
        ("a batch", [&BASE[..], &[tl]].concat(), format!("[{list}]").into_bytes(), 400, Some(-32600)),
        ("a bare string", [&BASE[..], &[tl]].concat(), b"\"tools/list\"".to_vec(), 400, Some(-32600)),
        (
            "a response",
            [&BASE[..], &[tl]].concat(),
            br#"{"jsonrpc":"2.0","id":1,"result":{}}"#.to_vec(),
            400,
            Some(-32600),
        ),
        (
            "a method that is not a string",
            [&BASE[..], &[tl]].concat(),
            br#"{"jsonrpc":"2.0","id":1,"method":5}"#.to_vec(),
            400,
            Some(-32600),
        ),
        (
            "no _meta",
            [&BASE[..], &[tl]].concat(),
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#.to_vec(),
            400,
            Some(-32602),
        ),
        (
            "params not an object",
            [&BASE[..], &[tl]].concat(),
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":[1]}"#.to_vec(),
            400,
            Some(-32602),
        ),
        (
            "an unknown method",
            [&BASE[..], &[("Mcp-Method", "nope/x")]].concat(),
            request(1, "nope/x", json!({})).into_bytes(),
            404,
            Some(-32601),
        ),
        (
            "a legacy-only method",
            [&BASE[..], &[("Mcp-Method", "initialize")]].concat(),
            request(1, "initialize", json!({})).into_bytes(),
            404,
            Some(-32601),
        ),
        (
            "a notification",
            [&BASE[..], &[("Mcp-Method", "notifications/cancelled")]].concat(),
            br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#.to_vec(),
            202,
            None,
        ),
    ];
    for (what, h, body, status, code) in cases {
        let r = send_raw(a, "POST", &h, &body);
        assert_eq!(r.status, status, "{what}: {}", r.body);
        if let Some(c) = code {
            assert_eq!(r.code(), c, "{what}: {}", r.body);
        }
        assert!(r.header("Mcp-Session-Id").is_none(), "{what}: a stateless request mints no session");
    }
    for m in ["GET", "DELETE", "PUT", "PATCH"] {
        let r = send_raw(a, m, &BASE, b"");
        assert_eq!(r.status, 405, "{m}: {}", r.body);
        assert!(r.header("Allow").is_some_and(|v| v.contains("POST")), "{m}");
    }
    // An unknown version header is not this shape: the legacy rules answer (no session).
    let r = send_raw(a, "POST", &[BASE[0], BASE[1], ("MCP-Protocol-Version", "2031-01-01"), tl], list.as_bytes());
    assert_eq!(r.status, 400, "{}", r.body);
}

#[test]
fn giant_bodies_and_heads_are_refused_and_the_gateway_goes_on() {
    let _serial = serial();
    let (_r, g) = gateway("max_body_bytes: 65536", "max_message_bytes: 16384");
    let a = g.addr();
    let m = [("Mcp-Method", "tools/call"), ("Mcp-Name", "echo")];
    // Over the gateway's cap: 413, announced or chunked.
    let big = request(1, "tools/call", json!({"name": "echo", "arguments": {"message": "x".repeat(200_000)}}));
    let r = post(a, &m, &big);
    assert_eq!(r.status, 413, "{}", r.body);
    let mut s = TcpStream::connect(a).unwrap();
    let mut head = format!("POST /mcp HTTP/1.1\r\nHost: {a}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n");
    for (k, v) in BASE.iter().chain(&m) {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    for chunk in big.as_bytes().chunks(16_384) {
        if s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .and_then(|()| s.write_all(chunk))
            .and_then(|()| s.write_all(b"\r\n"))
            .is_err()
        {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n");
    assert_eq!(read_reply(&mut s).status, 413);
    // Under the gateway's cap, over the router's message cap: a JSON-RPC refusal.
    let mid = request(2, "tools/call", json!({"name": "echo", "arguments": {"message": "x".repeat(30_000)}}));
    let r = post(a, &m, &mid);
    assert_eq!(r.code(), -32600, "{}", r.body);
    // A head too large: 431.
    let huge_name = "n".repeat(40_000);
    let r = post(a, &[("Mcp-Method", "tools/call"), ("Mcp-Name", &huge_name)], &echo(3));
    assert_eq!(r.status, 431, "{}", r.body);
    // The gateway still serves.
    let r = post(a, &m, &echo(4));
    assert_eq!(r.json()["result"]["content"][0]["text"], "hi", "{}", r.body);
}

/// Opens a modern POST and returns its connection without reading the answer.
fn open_post(addr: SocketAddr, extra: &[(&str, &str)], body: &str) -> TcpStream {
    let len = body.len().to_string();
    let framing = [("Connection", "close"), ("Content-Length", len.as_str())];
    let headers: Vec<(&str, &str)> = framing.iter().chain(&BASE).chain(extra).copied().collect();
    common::http::send(addr, "POST /mcp HTTP/1.1", &headers, body.as_bytes())
}

fn tool_text(addr: SocketAddr, id: u64, name: &str, args: Value) -> String {
    let body = request(id, "tools/call", json!({"name": name, "arguments": args}));
    let r = post(addr, &[("Mcp-Method", "tools/call"), ("Mcp-Name", name)], &body);
    r.json()["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("{}", r.body)).to_owned()
}

#[test]
fn a_client_that_closes_its_stream_cancels_the_call_on_the_backend() {
    let _serial = serial();
    let (r, g) = gateway("", "");
    let a = g.addr();
    let in_flight = || r.status()["backends"][0]["in_flight"].as_u64().unwrap_or(0);
    let body = request(7, "tools/call", json!({"name": "slow", "arguments": {"ms": 600_000}}));
    let s = open_post(a, &[("Mcp-Method", "tools/call"), ("Mcp-Name", "slow")], &body);
    until("the call reaches the backend", || in_flight() == 1);
    drop(s);
    until("the call is cancelled", || in_flight() == 0);
    let cancelled: Value = serde_json::from_str(&tool_text(a, 8, "cancelled", json!({}))).unwrap();
    assert_eq!(cancelled.as_array().map(Vec::len), Some(1), "the backend was told: {cancelled}");
    // A call whose backend asks the client something runs on a helper: closing the stream
    // while it waits there cancels it too.
    let mut params = json!({"name": "slow", "arguments": {"ms": 600_000}});
    params["_meta"] = envelope();
    params["_meta"]["io.modelcontextprotocol/clientCapabilities"] = json!({"sampling": {}});
    let body = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": params}).to_string();
    let s = open_post(a, &[("Mcp-Method", "tools/call"), ("Mcp-Name", "slow")], &body);
    until("the helper's call reaches the backend", || in_flight() == 1);
    drop(s);
    until("the helper's call is cancelled", || in_flight() == 0);
    let cancelled: Value = serde_json::from_str(&tool_text(a, 10, "cancelled", json!({}))).unwrap();
    assert_eq!(cancelled.as_array().map(Vec::len), Some(2), "{cancelled}");
    until("the gateway's sessions are closed", || r.status()["router"]["sessions"] == 0);
}

#[test]
fn a_client_that_closes_a_listen_stream_ends_the_listen() {
    let _serial = serial();
    let (r, g) = gateway("", "");
    let a = g.addr();
    let body = request(
        1,
        "subscriptions/listen",
        json!({"notifications": {"resourceSubscriptions": ["test://a/static"], "toolsListChanged": true}}),
    );
    let s = open_post(a, &[("Mcp-Method", "subscriptions/listen")], &body);
    let mut lines = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    let mut acked = false;
    while lines.read_line(&mut line).is_ok_and(|n| n > 0) {
        if line.contains("notifications/subscriptions/acknowledged") {
            acked = true;
            break;
        }
        line.clear();
    }
    assert!(acked, "the listen was acknowledged on its stream");
    assert_eq!(g.connection_count(), 1);
    assert_eq!(r.status()["router"]["sessions"], 1, "the listen holds its session");
    drop(lines);
    drop(s);
    until("the listen's connection is gone", || g.connection_count() == 0);
    until("its session is closed", || r.status()["router"]["sessions"] == 0);
    // The router let go of the subscription it took for the listen.
    let r2 = post(a, &[("Mcp-Method", "tools/list")], &request(2, "tools/list", json!({})));
    assert_eq!(r2.status, 200, "{}", r2.body);
}

/// The gateway's threads and the helpers its stateless calls run on. (A thread shows its
/// creator's name until it names itself, so a new helper may briefly count as "gw".)
fn gateway_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .filter(|c| c.starts_with("mcprouter-gw") || c.starts_with("mcprouter-mrtr"))
        .count()
}

#[test]
fn a_flood_of_stateless_requests_keeps_threads_and_sessions_bounded() {
    let _serial = serial();
    const CAP: usize = 6;
    let (r, g) = gateway(&format!("max_connections: {CAP}"), "");
    let a = g.addr();
    let before = common::router_threads();
    let peak = std::sync::atomic::AtomicUsize::new(0);
    let peak_workers = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::atomic::AtomicBool::new(false);
    let (mut ok, mut busy) = (0, 0);
    std::thread::scope(|sc| {
        sc.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                peak.fetch_max(gateway_threads(), std::sync::atomic::Ordering::Relaxed);
                peak_workers.fetch_max(g.worker_threads(), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let clients: Vec<_> = (0..48u64)
            .map(|c| {
                sc.spawn(move || {
                    let mut statuses = Vec::new();
                    for i in 0..4 {
                        let id = c * 100 + i;
                        let body = if i % 2 == 0 {
                            echo(id)
                        } else {
                            request(id, "tools/call", json!({"name": "slow", "arguments": {"ms": 20}}))
                        };
                        let name = if i % 2 == 0 { "echo" } else { "slow" };
                        let r = post(a, &[("Mcp-Method", "tools/call"), ("Mcp-Name", name)], &body);
                        if r.status == 200 {
                            assert_eq!(r.json()["id"], id, "{}", r.body);
                        }
                        statuses.push(r.status);
                    }
                    statuses
                })
            })
            .collect();
        for c in clients {
            for s in c.join().unwrap() {
                match s {
                    200 => ok += 1,
                    // Refused at once (a reset is a refusal the client could not read).
                    503 | 0 => busy += 1,
                    other => panic!("unexpected status {other}"),
                }
            }
        }
        done.store(true, std::sync::atomic::Ordering::Release);
    });
    assert!(ok > 0, "some requests are served ({ok} served, {busy} refused)");
    // Per connection worker at most a request's pump and the helper its call runs on;
    // plus accept and reaper.
    let peak = peak.into_inner();
    assert!(peak_workers.into_inner() <= CAP, "connection workers over the cap");
    assert!(peak <= 3 * CAP + 2, "{peak} gateway threads at the peak, cap {CAP}");
    assert!(g.worker_threads() <= CAP);
    until("every stateless session is closed", || r.status()["router"]["sessions"] == 0);
    until("the router's threads are back", || common::router_threads() <= before + CAP + 2);
    g.shutdown(Duration::from_secs(1));
    until("the gateway's threads are gone", || gateway_threads() == 0);
}

/// Opens a listen and waits for its acknowledgement; `Err` with the reply when refused.
fn open_listen(addr: SocketAddr, id: u64) -> Result<(TcpStream, BufReader<TcpStream>), Reply> {
    let body = request(id, "subscriptions/listen", json!({"notifications": {"toolsListChanged": true}}));
    let s = open_post(addr, &[("Mcp-Method", "subscriptions/listen")], &body);
    let mut lines = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    let mut head = String::new();
    while lines.read_line(&mut line).is_ok_and(|n| n > 0) {
        if line.contains("notifications/subscriptions/acknowledged") {
            return Ok((s, lines));
        }
        head.push_str(&line);
        if line.starts_with("HTTP/1.1 503") {
            let mut rest = Vec::new();
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = lines.read_to_end(&mut rest);
            let text = format!("{head}{}", String::from_utf8_lossy(&rest));
            return Err(common::http::parse(text.as_bytes()));
        }
        line.clear();
    }
    let _ = s.shutdown(std::net::Shutdown::Both);
    panic!("the listen neither opened nor was refused: {head}");
}

#[test]
fn listens_cannot_take_every_connection_thread() {
    let _serial = serial();
    // Streams that hold a thread: at most 2 of the 4 connection threads.
    let (_r, g) = gateway("max_connections: 4\nmax_sse_streams: 2", "");
    let a = g.addr();
    let first = open_listen(a, 1).expect("a first listen");
    let second = open_listen(a, 2).expect("a second listen");
    let refused = open_listen(a, 3).expect_err("a third listen is refused");
    assert_eq!((refused.status, refused.code()), (503, -32003), "{}", refused.body);
    // Requests still find a thread.
    let r = post(a, &[("Mcp-Method", "tools/list")], &request(4, "tools/list", json!({})));
    assert_eq!(r.status, 200, "{}", r.body);
    // A closed listen frees its slot.
    drop(first);
    until("the first listen's connection is gone", || g.connection_count() <= 1);
    let again = open_listen(a, 5).expect("a listen once one closed");
    drop((second, again));
}
