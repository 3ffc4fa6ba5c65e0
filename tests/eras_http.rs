//! The HTTP gateway's 2026-07-28 shape: a POST whose `MCP-Protocol-Version` is 2026-07-28
//! is one stateless request (no session id required or minted), its `Mcp-Method` and
//! `Mcp-Name` headers must match its body (-32020, HTTP 400; `=?base64?…?=` for values
//! outside the header-safe characters), an unknown method is 404 with -32601, and GET or
//! DELETE are 405.

mod common;

use std::net::SocketAddr;

use mcprouter::Gateway;
use mcprouter::config::GatewaySettings;
use serde_json::{Value, json};

use common::http::Reply;

fn send(addr: SocketAddr, method: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    common::http::request(addr, method, "/mcp", headers, body.as_bytes())
}

fn gateway() -> (mcprouter::Router, Gateway) {
    let router = common::router("", &[common::backend("alpha", &[])]);
    let mut settings = GatewaySettings::from_yaml("").unwrap();
    settings.listen = Some("127.0.0.1:0".into());
    let g = Gateway::start(router.clone(), settings).expect("gateway starts");
    (router, g)
}

fn envelope(caps: Value) -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": caps,
    })
}

/// A 2026-07-28 POST with the headers a conforming client sends (`name`: Mcp-Name).
fn modern(addr: SocketAddr, body: &Value, name: Option<&str>) -> Reply {
    let method = body["method"].as_str().unwrap().to_owned();
    let mut h = vec![
        ("Accept", "application/json, text/event-stream"),
        ("Content-Type", "application/json"),
        ("MCP-Protocol-Version", "2026-07-28"),
        ("Mcp-Method", method.as_str()),
    ];
    if let Some(n) = name {
        h.push(("Mcp-Name", n));
    }
    send(addr, "POST", &h, &body.to_string())
}

fn code(r: &Reply) -> i64 {
    r.json()["error"]["code"].as_i64().unwrap_or_else(|| panic!("no error code in {}", r.body))
}

#[test]
fn a_modern_post_is_answered_without_a_session() {
    let (_r, g) = gateway();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": envelope(json!({}))}});
    let r = modern(g.addr(), &body, None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("Mcp-Session-Id").is_none(), "no session is minted");
    let v = r.json();
    assert_eq!((v["result"]["resultType"].as_str(), v["result"]["ttlMs"].as_i64()), (Some("complete"), Some(0)));
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": "hi"}, "_meta": envelope(json!({}))}});
    let r = modern(g.addr(), &call, Some("echo"));
    assert_eq!((r.status, r.json()["result"]["content"][0]["text"].as_str()), (200, Some("hi")), "{}", r.body);
    // The same name as a base64 sentinel.
    let r = modern(g.addr(), &call, Some("=?base64?ZWNobw==?="));
    assert_eq!(r.status, 200, "{}", r.body);
    let discover =
        json!({"jsonrpc": "2.0", "id": 3, "method": "server/discover", "params": {"_meta": envelope(json!({}))}});
    let r = modern(g.addr(), &discover, None);
    assert_eq!(r.json()["result"]["supportedVersions"][0], "2026-07-28", "{}", r.body);
}

#[test]
fn headers_must_match_the_body() {
    let (_r, g) = gateway();
    let a = g.addr();
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": "hi"}, "_meta": envelope(json!({}))}});
    let r = modern(a, &call, None);
    assert_eq!((r.status, code(&r)), (400, -32020), "Mcp-Name is required: {}", r.body);
    let r = modern(a, &call, Some("other"));
    assert_eq!((r.status, code(&r)), (400, -32020));
    let r = modern(a, &call, Some("=?base64?!!?="));
    assert_eq!((r.status, code(&r)), (400, -32020));
    let h = [
        ("Accept", "application/json, text/event-stream"),
        ("Content-Type", "application/json"),
        ("MCP-Protocol-Version", "2026-07-28"),
        ("Mcp-Name", "echo"),
    ];
    let r = send(a, "POST", &h, &call.to_string());
    assert_eq!((r.status, code(&r)), (400, -32020), "Mcp-Method is required");
    let mut wrong_meta = call.clone();
    wrong_meta["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2025-11-25");
    let r = modern(a, &wrong_meta, Some("echo"));
    assert_eq!((r.status, code(&r)), (400, -32020), "header and _meta versions differ");
    let no_meta = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}});
    let r = modern(a, &no_meta, None);
    assert_eq!((r.status, code(&r)), (400, -32602), "{}", r.body);
}

#[test]
fn unknown_methods_are_404_and_get_or_delete_are_405() {
    let (_r, g) = gateway();
    let a = g.addr();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"_meta": envelope(json!({}))}});
    let r = modern(a, &body, None);
    assert_eq!((r.status, code(&r)), (404, -32601), "{}", r.body);
    for m in ["GET", "DELETE"] {
        let r = send(a, m, &[("Accept", "text/event-stream"), ("MCP-Protocol-Version", "2026-07-28")], "");
        assert_eq!(r.status, 405, "{m}: {}", r.body);
    }
}

#[test]
fn a_backends_question_is_asked_and_answered_across_two_stateless_posts() {
    let (_r, g) = gateway();
    let a = g.addr();
    let params = json!({"name": "sample", "arguments": {"prompt": "q?"}, "_meta": envelope(json!({"sampling": {}}))});
    let r = modern(a, &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}), Some("sample"));
    let v = r.json();
    assert_eq!(v["result"]["resultType"], "input_required", "{}", r.body);
    let key = v["result"]["inputRequests"].as_object().unwrap().keys().next().unwrap().clone();
    let mut retry = params;
    retry["requestState"] = v["result"]["requestState"].clone();
    retry["inputResponses"] =
        json!({key: {"role": "assistant", "content": {"type": "text", "text": "answered"}, "model": "m"}});
    let r = modern(a, &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": retry}), Some("sample"));
    assert_eq!(r.json()["result"]["content"][0]["text"], "answered", "{}", r.body);
}
