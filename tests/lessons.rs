//! Regression tests for the lessons of the team that built this system before (written
//! down in docs/lessons.md), each named after its lesson. Lessons 2, 3 and 7 (breaker and balancer)
//! live in `lessons_resilience.rs`, lesson 5 (metric labels) in `lessons_metrics.rs`.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use common::*;
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// These tests count threads, descriptors and children of the whole process: run them one
/// at a time.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn lesson_1_child_env_is_the_parents_plus_the_configured_never_empty() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut b = backend("alpha", &[]);
    b.push_str("    env:\n      MCPROUTER_TEST_ADDED: \"from-config\"\n      HOME: /overridden\n");
    let r = router("", &[b]);
    let s = r.session(None).unwrap();
    let path = std::env::var("PATH").unwrap();
    assert_eq!(tool_text(&s, "env", json!({"name": "PATH"})).unwrap(), path, "inherited from the parent");
    assert_eq!(tool_text(&s, "env", json!({"name": "MCPROUTER_TEST_ADDED"})).unwrap(), "from-config");
    assert_eq!(tool_text(&s, "env", json!({"name": "HOME"})).unwrap(), "/overridden", "configured wins");
}

/// The lines the backend received, as written by `test-server --record-requests`, that
/// carry `method`, each split into its top-level members (values kept as raw bytes).
fn received(record: &std::path::Path, method: &str) -> Vec<HashMap<String, Box<RawValue>>> {
    let text = std::fs::read_to_string(record).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str::<HashMap<String, Box<RawValue>>>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|m| m.get("method").is_some_and(|v| v.get() == format!("\"{method}\"")))
        .collect()
}

#[test]
fn lesson_4_the_callers_request_is_never_mutated_at_the_transport_boundary() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let record = std::env::temp_dir().join(format!("mcprouter-lesson4-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&record);
    let r = router("", &[backend("alpha", &["--record-requests", record.to_str().unwrap()])]);
    // Params spelled as no serializer would write them (spaces, escapes, an exponent, an
    // integer beyond u64, member order): re-encoding them anywhere on the way shows.
    const PARAMS: &str = r#"{ "name" : "echo", "arguments": {"message":"caf\u00e9 \"q\"\n", "z":1.50e2, "big":123456789012345678901234567890, "a":[ ]} }"#;
    let msg = format!(r#"{{"jsonrpc":"2.0","id":"mine","method":"tools/call","params":{PARAMS}}}"#);
    // The same text, handled concurrently in eight sessions (within one session a second
    // request under an id still in flight is refused: -32600, issue #10).
    let sessions: Vec<_> = (0..8).map(|_| r.session(None).unwrap()).collect();
    let replies: Vec<String> = std::thread::scope(|sc| {
        let hs: Vec<_> = sessions.iter().map(|s| sc.spawn(|| s.handle(&msg).unwrap().unwrap())).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for reply in &replies {
        let v: Value = serde_json::from_str(reply).unwrap();
        assert_eq!(v["id"], "mine", "the caller's id comes back: {reply}");
        assert_eq!(v["result"]["content"][0]["text"], "caf\u{e9} \"q\"\n", "{reply}");
    }
    let calls = received(&record, "tools/call");
    assert_eq!(calls.len(), 8, "one backend request per call");
    let mut ids = std::collections::HashSet::new();
    for call in &calls {
        assert_eq!(call["params"].get(), PARAMS, "the backend got the caller's params byte for byte");
        let id: Value = serde_json::from_str(call["id"].get()).unwrap();
        assert!(id.is_u64(), "the backend saw an id the router assigned, not the caller's: {id}");
        assert!(ids.insert(id.as_u64()), "router ids are unique: {id}");
    }

    // A progress token is the one thing the router replaces, on its own copy: the backend
    // sees everything else as the caller wrote it, and the caller's token is not sent.
    let s = r.session(None).unwrap();
    let with_token = json!({"name": "meta", "arguments": {}, "_meta": {"progressToken": "p", "other": [1, "x"]}});
    let msg = json!({"jsonrpc": "2.0", "id": "mine", "method": "tools/call", "params": with_token}).to_string();
    let v: Value = serde_json::from_str(&s.handle(&msg).unwrap().unwrap()).unwrap();
    assert_eq!(v["id"], "mine", "{v}");
    let calls = received(&record, "tools/call");
    let sent = calls.last().expect("the meta call was received");
    let mut got: Value = serde_json::from_str(sent["params"].get()).unwrap();
    let token = got["_meta"]["progressToken"].take();
    assert!(!token.is_null() && token != "p", "the backend gets the router's token, never the caller's: {token}");
    got["_meta"]["progressToken"] = "p".into();
    assert_eq!(got, with_token, "apart from the token, the backend got what the caller sent");
    // A notification stays a notification: no id is invented for it.
    assert_eq!(s.handle(r#"{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}"#).unwrap(), None);
    // Forwarded asynchronously: wait until the backend has it, then look at what it got.
    let end = std::time::Instant::now() + Duration::from_secs(10);
    let roots = loop {
        let roots = received(&record, "notifications/roots/list_changed");
        if !roots.is_empty() || std::time::Instant::now() > end {
            break roots;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(roots.len(), 1, "the notification is forwarded once");
    assert!(!roots[0].contains_key("id"), "a notification reached the backend with an id");
    let _ = std::fs::remove_file(&record);
}

#[test]
fn lesson_6_a_notification_never_gets_a_response() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let r = router("", &[backend("alpha", &[])]);
    let s = r.session(None).unwrap();
    for n in [
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":99}}"#,
        r#"{"jsonrpc":"2.0","method":"no/such/notification"}"#,
        r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo","arguments":{"message":"x"}}}"#,
        r#"{"jsonrpc":"2.0","method":"ping"}"#,
    ] {
        assert_eq!(s.handle(n).unwrap(), None, "{n}");
    }
    let all = r#"[{"jsonrpc":"2.0","method":"a"},{"jsonrpc":"2.0","method":"notifications/initialized"}]"#;
    assert_eq!(s.handle(all).unwrap(), None, "an all-notification batch gets no reply");
    let mixed = r#"[{"jsonrpc":"2.0","method":"a"},{"jsonrpc":"2.0","id":5,"method":"ping"}]"#;
    let v: Value = serde_json::from_str(&s.handle(mixed).unwrap().unwrap()).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["id"], 5);
    // Nor do they leave anything in the event queue.
    assert_eq!(s.next_event(Duration::from_millis(100)).unwrap(), None);
}

fn count_dir(path: &str) -> usize {
    std::fs::read_dir(path).map(|d| d.count()).unwrap_or(0)
}

/// Our live and zombie children.
fn children() -> Vec<String> {
    let me = std::process::id().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        // pid (comm) state ppid ...; comm may contain spaces, so split after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.get(1) == Some(&me.as_str()) {
            out.push(format!("{} {}", e.file_name().to_string_lossy(), f[0]));
        }
    }
    out
}

#[test]
fn lesson_8_no_thread_fd_or_child_is_leaked() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    watchdog(240);
    // Warm up once so lazily created process-wide threads are already counted.
    {
        let r = router("", &[backend("warm", &[])]);
        r.shutdown(Duration::from_millis(500));
    }
    let (threads0, fds0) = (router_threads(), count_dir("/proc/self/fd"));
    for round in 0..5 {
        let r = router("", &[backend("alpha", &[]), backend("beta", &[]), backend("dies", &["--crash-after", "0"])]);
        let s = r.session(None).unwrap();
        assert_eq!(tool_text(&s, "alpha__whoami", json!({})).unwrap(), "alpha");
        let _ = tool_text(&s, "dies__whoami", json!({}));
        let _ = tool_text(&s, "beta__slow", json!({"ms": 50}));
        if round % 2 == 0 {
            r.shutdown(Duration::from_millis(300));
        }
        drop(s);
        drop(r); // the last handle shuts down too
    }
    let (threads1, fds1) = (router_threads(), count_dir("/proc/self/fd"));
    let kids = children();
    println!("threads {threads0} -> {threads1}, fds {fds0} -> {fds1}, children left: {kids:?}");
    assert_eq!(threads0, 0, "no router thread outlives its router");
    assert_eq!(threads1, threads0, "threads leaked");
    assert_eq!(fds1, fds0, "descriptors leaked");
    assert!(kids.is_empty(), "children or zombies left: {kids:?}");
}
