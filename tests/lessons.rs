//! Regression tests for the lessons of the team that built this system before (written
//! down in docs/lessons.md), each named after its lesson. Lessons 2, 3 and 7 (breaker and balancer)
//! live in `lessons_resilience.rs`, lesson 5 (metric labels) in `lessons_metrics.rs`.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::*;
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

#[test]
fn lesson_4_the_callers_request_is_never_mutated_at_the_transport_boundary() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let r = router("", &[backend("alpha", &[])]);
    let s = r.session(None).unwrap();
    // The same text, handled twice and concurrently, keeps its own id every time, while the
    // backend saw ids the router assigned (its `cancelled` record and the reply mapping
    // prove the mapping lives on the router's side).
    let msg = String::from(
        r#"{"jsonrpc":"2.0","id":"mine","method":"tools/call","params":{"name":"meta","arguments":{},"_meta":{"progressToken":"p"}}}"#,
    );
    let before = msg.clone();
    // One session per copy: within one session a second request under an id still in
    // flight is refused (-32600, issue #10).
    let sessions: Vec<_> = (0..8).map(|_| r.session(None).unwrap()).collect();
    let replies: Vec<String> = std::thread::scope(|sc| {
        let hs: Vec<_> = sessions.iter().map(|s| sc.spawn(|| s.handle(&msg).unwrap().unwrap())).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(msg, before, "the caller's message is untouched");
    for reply in replies {
        let v: Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(v["id"], "mine");
        // The backend saw the router's progress token, never the client's.
        let meta: Value = serde_json::from_str(v["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
        assert_ne!(meta["progressToken"], "p", "{meta}");
    }
    // A notification stays a notification: no id is invented for it.
    assert_eq!(s.handle(r#"{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}"#).unwrap(), None);
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
