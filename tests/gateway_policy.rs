//! Issue #14 at the HTTP gateway: the bearer token says which client is calling; two
//! clients see different lists, a denied call is refused with -32005, and a client over its
//! rate limit gets HTTP 429 with `Retry-After` while the other is untouched.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use mcprouter::Gateway;
use mcprouter::config::GatewaySettings;
use serde_json::{Value, json};

/// Status, headers (lower-case names) and the JSON-RPC reply (from JSON or the last SSE
/// `data:` line) of one POST on its own connection.
fn post(addr: SocketAddr, token: &str, session: Option<&str>, body: &Value) -> (u16, Vec<(String, String)>, Value) {
    let body = body.to_string();
    let mut s = TcpStream::connect(addr).expect("connect");
    let mut head = format!(
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(sid) = session {
        head.push_str(&format!("Mcp-Session-Id: {sid}\r\nMCP-Protocol-Version: 2025-11-25\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").expect("an HTTP head");
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    // Chunked or not, the JSON-RPC reply is the last line that parses as JSON (after `data:`).
    let reply = rest
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l.strip_prefix("data:").unwrap_or(l).trim()).ok())
        .find(Value::is_object)
        .unwrap_or(Value::Null);
    (status, headers, reply)
}

fn open(addr: SocketAddr, token: &str) -> String {
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let (status, headers, reply) = post(addr, token, None, &init);
    assert_eq!(status, 200, "{reply}");
    let sid = headers.iter().find(|(k, _)| k == "mcp-session-id").expect("a session id").1.clone();
    let (status, _, _) = post(addr, token, Some(&sid), &json!({"jsonrpc":"2.0","method":"notifications/initialized"}));
    assert_eq!(status, 202);
    sid
}

fn tools(addr: SocketAddr, token: &str, sid: &str) -> Vec<String> {
    let (_, _, reply) = post(addr, token, Some(sid), &json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}));
    let mut names: Vec<String> = reply["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn the_token_names_the_client_its_policy_and_its_limits() {
    watchdog(240);
    // SAFETY of set_var: no other test in this binary reads these variables.
    unsafe {
        std::env::set_var("MCPROUTER_GWP_READER", "reader-secret-token");
        std::env::set_var("MCPROUTER_GWP_WRITER", "writer-secret-token");
    }
    let mut yaml = config("", &[backend("alpha", &[])]);
    yaml.push_str(
        "clients:\n  - {name: reader, credential: {env: MCPROUTER_GWP_READER}, groups: [readers]}\n  \
         - {name: writer, credential: {env: MCPROUTER_GWP_WRITER}, groups: [writers]}\n\
         policy:\n  rules:\n    - groups: [readers]\n      tools: {allow: [echo, whoami]}\n\
         limits:\n  clients:\n    - {client: reader, rate: 0.001, burst: 2}\n",
    );
    let router = mcprouter::Router::from_yaml(&yaml).expect("router");
    let mut settings = GatewaySettings::default();
    settings.listen = Some("127.0.0.1:0".into());
    let g = Gateway::start(router.clone(), settings).expect("gateway");
    let a = g.addr();
    let (reader, writer) = ("reader-secret-token", "writer-secret-token");
    let (rs, ws) = (open(a, reader), open(a, writer));
    assert_eq!(tools(a, reader, &rs), ["echo", "whoami"]);
    assert_eq!(tools(a, writer, &ws).len(), TEST_SERVER_TOOLS);

    let call = |token: &str, sid: &str, id: u64, tool: &str| {
        post(
            a,
            token,
            Some(sid),
            &json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":{}}}),
        )
    };
    let (status, _, reply) = call(reader, &rs, 3, "pid");
    assert_eq!((status, reply["error"]["code"].as_i64()), (200, Some(-32005)), "{reply}");
    // A burst of 2, refilled at one call per 1000 s: the third call is refused at once.
    assert_eq!(call(reader, &rs, 4, "whoami").2["result"]["content"][0]["text"], "alpha");
    assert_eq!(call(reader, &rs, 5, "whoami").2["result"]["content"][0]["text"], "alpha");
    let (status, headers, reply) = call(reader, &rs, 6, "whoami");
    assert_eq!(status, 429, "{reply}");
    assert!(headers.iter().any(|(k, v)| k == "retry-after" && v.parse::<u64>().is_ok_and(|s| s >= 1)), "{headers:?}");
    assert_eq!(reply["error"]["code"], -32006, "{reply}");
    // The other client is untouched, and a session answers only its opener's token.
    assert_eq!(call(writer, &ws, 7, "whoami").2["result"]["content"][0]["text"], "alpha");
    assert_eq!(call(writer, &rs, 8, "whoami").0, 404, "a session is its opener's");
    g.shutdown(Duration::from_secs(1));
    router.shutdown(Duration::from_secs(1));
}
