//! The HTTP gateway under bad input: every mistake gets a clear status (and a JSON-RPC
//! error body), other sessions are unaffected, and the thread count stays bounded.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use mcprouter::Gateway;
use mcprouter::config::GatewaySettings;
use serde_json::json;

use common::http::{Reply, parse};

/// One request to /mcp on its own connection, read to the end.
fn send(addr: SocketAddr, method: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    common::http::request(addr, method, "/mcp", headers, body.as_bytes())
}

const JSON_AND_SSE: (&str, &str) = ("Accept", "application/json, text/event-stream");
const CT: (&str, &str) = ("Content-Type", "application/json");

fn post(addr: SocketAddr, session: Option<&str>, body: &str) -> Reply {
    let mut h = vec![JSON_AND_SSE, CT];
    if let Some(s) = session {
        h.push(("Mcp-Session-Id", s));
    }
    send(addr, "POST", &h, body)
}

fn initialize(addr: SocketAddr) -> String {
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{"sampling":{}},"clientInfo":{"name":"t","version":"1"}}});
    let r = post(addr, None, &init.to_string());
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.header("Mcp-Session-Id").expect("a session id").to_owned();
    assert!(id.len() >= 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    let r = post(addr, Some(&id), r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    assert_eq!(r.status, 202);
    id
}

fn gateway(yaml: &str) -> (mcprouter::Router, Gateway) {
    let router = common::router("", &[common::backend("alpha", &[])]);
    let mut settings = GatewaySettings::from_yaml(yaml).unwrap();
    settings.listen = Some("127.0.0.1:0".into());
    let g = Gateway::start(router.clone(), settings).expect("gateway starts");
    (router, g)
}

fn error_code(r: &Reply) -> i64 {
    r.json()["error"]["code"].as_i64().unwrap_or_else(|| panic!("no error code in {}", r.body))
}

/// CORS is off by default; configured, a preflight names every header a client of either
/// era sends (the 2026-07-28 shape adds Mcp-Method and Mcp-Name).
#[test]
fn cors_preflight_is_off_by_default_and_lists_both_eras_headers_when_on() {
    let (_r, g) = gateway("");
    let origin = ("Origin", "http://localhost:5173");
    assert_eq!(send(g.addr(), "OPTIONS", &[origin], "").status, 405);
    let (_r, g) = gateway("cors_origins: [\"http://localhost:5173\"]");
    let r = send(g.addr(), "OPTIONS", &[origin, ("Access-Control-Request-Method", "POST")], "");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some("http://localhost:5173"));
    let allowed = r.header("Access-Control-Allow-Headers").unwrap_or_default().to_ascii_lowercase();
    for h in ["mcp-session-id", "mcp-protocol-version", "last-event-id", "mcp-method", "mcp-name", "authorization"] {
        assert!(allowed.split(',').any(|a| a.trim() == h), "{h} missing from {allowed}");
    }
}

#[test]
fn protocol_errors_get_clear_statuses() {
    let (router, g) = gateway("");
    let a = g.addr();
    let sid = initialize(a);
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    let ok = post(a, Some(&sid), list);
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["result"]["tools"].as_array().map(Vec::len), Some(common::TEST_SERVER_TOOLS));

    assert_eq!(post(a, None, list).status, 400, "missing session id");
    let forged = post(a, Some("00112233445566778899aabbccddeeff"), list);
    assert_eq!((forged.status, error_code(&forged)), (404, -32001));
    let r = send(a, "POST", &[("Accept", "application/json"), CT, ("Mcp-Session-Id", &sid)], list);
    assert_eq!(r.status, 406);
    let r = send(a, "POST", &[JSON_AND_SSE, ("Content-Type", "text/plain"), ("Mcp-Session-Id", &sid)], list);
    assert_eq!(r.status, 415);
    let r = post(a, Some(&sid), "{not json");
    assert_eq!((r.status, error_code(&r)), (400, -32700));
    let r = post(a, Some(&sid), &format!("[{list}]"));
    assert_eq!((r.status, error_code(&r)), (400, -32600), "no batches in 2025-11-25");
    let r =
        send(a, "POST", &[JSON_AND_SSE, CT, ("Mcp-Session-Id", &sid), ("MCP-Protocol-Version", "1999-01-01")], list);
    assert_eq!(r.status, 400);
    let r = send(a, "PUT", &[("Mcp-Session-Id", &sid)], "");
    assert_eq!(r.status, 405);
    assert!(r.header("Allow").is_some_and(|v| v.contains("POST")));
    let r = send(a, "POST", &[JSON_AND_SSE, CT, ("Host", "evil.example.com")], list);
    assert_eq!(r.status, 403, "DNS rebinding: Host");
    let r = send(a, "POST", &[JSON_AND_SSE, CT, ("Origin", "http://evil.example.com"), ("Mcp-Session-Id", &sid)], list);
    assert_eq!(r.status, 403, "DNS rebinding: Origin");
    let giant = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\",\"params\":{{\"pad\":\"{}\"}}}}",
        "x".repeat(5 << 20)
    );
    let r = post(a, Some(&sid), &giant);
    assert_eq!(r.status, 413);
    // A bad request on one session leaves it, and the others, working.
    assert_eq!(post(a, Some(&sid), list).status, 200);

    // Progress before the result: an SSE stream, progress first.
    let call = r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"progress","arguments":{"steps":2},"_meta":{"progressToken":"p1"}}}"#;
    let r = post(a, Some(&sid), call);
    assert_eq!(r.header("Content-Type"), Some("text/event-stream"));
    let progress = r.body.find("notifications/progress").expect("progress on the stream");
    let result = r.body.find("\"result\"").expect("the result on the stream");
    assert!(progress < result, "{}", r.body);

    let r = send(a, "DELETE", &[("Mcp-Session-Id", &sid)], "");
    assert_eq!(r.status, 200);
    assert_eq!(post(a, Some(&sid), list).status, 404, "a deleted session is gone");
    g.shutdown(Duration::from_secs(1));
    router.shutdown(Duration::from_secs(1));
}

#[test]
fn slow_clients_are_cut_off_and_idle_sessions_expire() {
    let (router, g) = gateway("read_timeout_ms: 300\nsession_idle_ms: 100\n");
    let a = g.addr();
    // Half a request head, then nothing: the gateway answers 408 and closes.
    let mut s = TcpStream::connect(a).unwrap();
    s.write_all(b"POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Le").unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    assert_eq!(parse(&raw).status, 408);
    // Others were served meanwhile and after.
    let sid = initialize(a);
    // Wait for the fact (expiry), not for a time: the session answers 404 once reaped.
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    loop {
        let r = post(a, Some(&sid), list);
        if r.status == 404 {
            break;
        }
        assert_eq!(r.status, 200);
        std::thread::sleep(Duration::from_millis(100));
    }
    g.shutdown(Duration::from_secs(1));
    router.shutdown(Duration::from_secs(1));
}

#[test]
fn tokens_are_required_when_configured() {
    // SAFETY of set_var: this test binary's tests read no other variable of this name.
    unsafe { std::env::set_var("MCPROUTER_GW_TEST_TOKEN", "s3cret-token") };
    let (router, g) = gateway("tokens: [{env: MCPROUTER_GW_TEST_TOKEN}]\n");
    let a = g.addr();
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let r = send(a, "POST", &[JSON_AND_SSE, CT], init);
    assert_eq!(r.status, 401);
    assert!(r.header("WWW-Authenticate").is_some_and(|v| v.starts_with("Bearer")));
    let r = send(a, "POST", &[JSON_AND_SSE, CT, ("Authorization", "Bearer wrong")], init);
    assert_eq!(r.status, 401);
    let r = send(a, "POST", &[JSON_AND_SSE, CT, ("Authorization", "Bearer s3cret-token")], init);
    assert_eq!(r.status, 200);
    g.shutdown(Duration::from_secs(1));

    // No tokens: only loopback may be bound.
    let mut s = GatewaySettings::default();
    s.listen = Some("0.0.0.0:0".into());
    let e = Gateway::start(router.clone(), s).unwrap_err().to_string();
    assert!(e.contains("loopback"), "{e}");
    router.shutdown(Duration::from_secs(1));
}

#[test]
fn many_concurrent_sessions_with_a_bounded_thread_count() {
    let (router, g) = gateway("max_connections: 8\n");
    let a = g.addr();
    let ok = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|sc| {
        for _ in 0..16 {
            sc.spawn(|| {
                for _ in 0..8 {
                    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
                        "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
                    let r = post(a, None, &init.to_string());
                    // Past max_connections the answer is 503 at once, never a hang.
                    assert!(r.status == 200 || r.status == 503, "{} {}", r.status, r.body);
                    if r.status == 200 {
                        let sid = r.header("Mcp-Session-Id").unwrap().to_owned();
                        let r = post(a, Some(&sid), r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#);
                        assert!(r.status == 200 || r.status == 503);
                        ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert!(ok.into_inner() > 0);
    // Connection workers are capped at 8; pumps run only while a request is in flight.
    let workers = g.worker_threads();
    assert!((1..=8).contains(&workers), "{workers} connection threads");
    assert!(g.session_count() > 0);
    g.shutdown(Duration::from_secs(1));
    router.shutdown(Duration::from_secs(1));
}

#[test]
fn tls_files_that_cannot_be_read_stop_the_start() {
    let router = common::router("", &[common::backend("alpha", &[])]);
    let mut s = GatewaySettings::default();
    s.listen = Some("127.0.0.1:0".into());
    s.tls = Some(mcprouter::config::gateway::TlsFiles::new("/nonexistent/cert.pem", "/nonexistent/key.pem"));
    let e = Gateway::start(router.clone(), s.clone()).unwrap_err().to_string();
    assert!(e.contains("gateway.tls.cert"), "{e}");
    // A file that holds no certificate.
    let empty = std::env::temp_dir().join(format!("mcprouter-gw-empty-{}.pem", std::process::id()));
    std::fs::write(&empty, "not a certificate\n").unwrap();
    s.tls = Some(mcprouter::config::gateway::TlsFiles::new(&empty, &empty));
    let e = Gateway::start(router.clone(), s).unwrap_err().to_string();
    assert!(e.contains("gateway.tls.cert") && e.contains("no certificate"), "{e}");
    let _ = std::fs::remove_file(&empty);
    router.shutdown(Duration::from_secs(1));
}

#[test]
fn a_client_that_does_not_read_is_cut_off_and_others_go_on() {
    let (router, g) = gateway("write_timeout_ms: 300\n");
    let a = g.addr();
    let slow = initialize(a);
    // A 12 MB result to a client that never reads: more than the sockets' buffers hold.
    let call =
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"huge","arguments":{"bytes":12000000}}}"#;
    let mut stalled = TcpStream::connect(a).unwrap();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: {a}\r\nAccept: application/json, text/event-stream\r\nContent-Type: application/json\r\nMcp-Session-Id: {slow}\r\nContent-Length: {}\r\n\r\n{call}",
        call.len()
    );
    stalled.write_all(head.as_bytes()).unwrap();
    // Another session is served meanwhile.
    let other = initialize(a);
    assert_eq!(post(a, Some(&other), r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#).status, 200);
    // The write makes no progress for write_timeout_ms: the gateway drops that connection
    // (the helpers' own connections close after each answer).
    while g.connection_count() > 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut got = Vec::new();
    let _ = stalled.read_to_end(&mut got);
    assert!(got.len() < 12_000_000, "the answer was cut ({} bytes arrived)", got.len());
    // The slow client's session itself is still there for its next request.
    assert_eq!(post(a, Some(&slow), r#"{"jsonrpc":"2.0","id":6,"method":"ping"}"#).status, 200);
    g.shutdown(Duration::from_secs(1));
    router.shutdown(Duration::from_secs(1));
}
