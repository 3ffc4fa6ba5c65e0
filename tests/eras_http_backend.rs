//! A 2026-07-28 Streamable HTTP backend behind the library: the Python SDK 2.3's `MCPServer`
//! (`tests/interop/fixtures/modern_server.py NAME --http`). With `concurrency: 1` one worker
//! carries every call, so these tests also show that the router's own listens (the fixture
//! offers tools `listChanged`) never take that worker.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use serde_json::json;

/// The fixture over HTTP; killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn modern_http(name: &str) -> Server {
    let python = common::modern::python();
    let mut child = Command::new(&python)
        .args([common::modern::MODERN_SERVER, name, "--http"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{python} (the Python SDK 2.3 venv) is needed: {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("announcement");
    let url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("no URL announced: {line:?}"));
    Server { url: url.to_owned(), child }
}

fn router(server: &Server) -> mcprouter::Router {
    let backend =
        format!("  - name: mh\n    url: {}\n    concurrency: 1\n", serde_json::to_string(&server.url).unwrap());
    common::router("init_timeout_ms: 60000\nrequest_timeout_ms: 600000", &[backend])
}

#[test]
fn a_modern_http_backend_is_probed_modern_and_called_without_a_session() {
    let server = modern_http("mh");
    let r = router(&server);
    let b = &r.status()["backends"][0];
    assert_eq!((b["era"].as_str(), b["protocol_version"].as_str()), (Some("modern"), Some("2026-07-28")), "{b}");
    let s = r.session(None).unwrap();
    common::initialize(&s, json!({}));
    for i in 0..3 {
        let text = common::tool_text(&s, "era-echo", json!({"message": format!("m{i}")})).expect("answer");
        assert!(text.contains(&format!("m{i} (version 2026-07-28)")), "{text}");
    }
}

#[test]
fn a_cancelled_call_frees_its_worker_by_closing_its_stream() {
    let server = modern_http("mh");
    let r = router(&server);
    let s = Arc::new(r.session(None).unwrap());
    common::initialize(&s, json!({}));
    let caller = Arc::clone(&s);
    let msg = json!({"jsonrpc": "2.0", "id": "to-cancel", "method": "tools/call",
        "params": {"name": "era-wait", "arguments": {"ms": 600000}}})
    .to_string();
    let call = std::thread::spawn(move || caller.handle(&msg).expect("open"));
    while r.status()["backends"][0]["in_flight"].as_u64() != Some(1) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": "to-cancel", "reason": "test"}});
    while !call.is_finished() {
        assert!(s.handle(&cancel.to_string()).unwrap().is_none());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(call.join().unwrap(), None, "a cancelled call gets no reply");
    // The one worker was held by the cancelled call's stream: this answer needs it back
    // (and needs the backend's answer to a cancelled call not to have taken it down).
    let text = common::tool_text(&s, "era-echo", json!({"message": "after"})).expect("answer");
    assert!(text.contains("after"), "{text}");
    assert_eq!(r.status()["backends"][0]["state"], "ready");
}
