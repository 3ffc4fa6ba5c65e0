//! Bad input and misbehaving backends: each gives a clear error in bounded time, and the
//! other backends keep serving.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

fn reply(s: &mcprouter::Session, msg: &str) -> Value {
    serde_json::from_str(&s.handle(msg).unwrap().expect("a reply")).unwrap()
}

#[test]
fn malformed_input_gets_the_right_json_rpc_errors() {
    let r = router("max_message_bytes: 4096", &[backend("alpha", &[])]);
    let s = r.session(None).unwrap();
    let cases: &[(&str, i64)] = &[
        ("{not json", -32700),
        ("", -32700),
        ("[1,2", -32700),
        (r#"{"jsonrpc":"2.0","id":1,"method":42}"#, -32600),
        (r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, -32600),
        (r#"{"id":1,"method":"ping"}"#, -32600),
        (r#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#, -32600),
        (r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}"#, -32600),
        (r#"{"jsonrpc":"2.0","id":1,"method":"no/such/method"}"#, -32601),
        (r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}"#, -32602),
        (r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#, -32602),
        (r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":[]}}"#, -32602),
        (r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":7}}"#, -32602),
        (r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/x"}}}"#, -32602),
    ];
    for (msg, code) in cases {
        let v = reply(&s, msg);
        assert_eq!(v["error"]["code"], *code, "{msg} -> {v}");
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(reply(&s, "{not json")["id"], Value::Null);
    assert_eq!(reply(&s, r#"{"jsonrpc":"2.0","id":"x","method":"nope"}"#)["id"], "x");
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"{}"}}}}}}"#,
        "x".repeat(5000)
    );
    let v = reply(&s, &big);
    assert_eq!(v["error"]["code"], -32600);
    assert!(v["error"]["message"].as_str().unwrap().contains("exceeds"), "{v}");
    // The session still works afterwards.
    assert_eq!(tool_text(&s, "whoami", json!({})).unwrap(), "alpha");
}

#[test]
fn a_backend_that_crashes_mid_call_fails_that_call_at_once() {
    let r = router("request_timeout_ms: 20000", &[backend("alpha", &[]), backend("beta", &[])]);
    let s = r.session(None).unwrap();
    // The error names the exit, not a timeout: the call failed when the process died,
    // not at its 20 s deadline.
    let err = tool_text(&s, "beta__crash", json!({})).unwrap_err();
    assert_eq!(err.0, -32000, "{err:?}");
    assert!(err.1.contains("beta") && err.1.contains("exit"), "{err:?}");
    let err = tool_text(&s, "beta__echo", json!({"message": "x"})).unwrap_err();
    assert!(err.0 == -32000 || err.0 == -32602, "down backend fails fast: {err:?}");
    assert_eq!(tool_text(&s, "alpha__whoami", json!({})).unwrap(), "alpha");
    assert_eq!(r.status()["backends"][1]["state"], "failed");
}

#[test]
fn a_hung_call_times_out_and_the_backend_is_told() {
    let mut b = backend("alpha", &[]);
    b.push_str("    timeout_ms: 300\n");
    let r = router("", &[b]);
    let s = r.session(None).unwrap();
    let err = tool_text(&s, "hang", json!({})).unwrap_err();
    assert_eq!(err.0, -32001, "{err:?}");
    assert!(err.1.contains("timed out"));
    let ids: Vec<Value> = serde_json::from_str(&tool_text(&s, "cancelled", json!({})).unwrap()).unwrap();
    assert_eq!(ids.len(), 1, "notifications/cancelled reached the backend");
}

#[test]
fn a_backend_that_never_answers_initialize_does_not_block_the_others() {
    let r = router("init_timeout_ms: 500", &[backend("alpha", &[]), backend("mute", &["--hang-initialize"])]);
    let s = r.session(None).unwrap();
    assert_eq!(tool_text(&s, "whoami", json!({})).unwrap(), "alpha", "alpha's names stay unprefixed: mute serves none");
    let st = r.status();
    assert_eq!(st["backends"][1]["state"], "failed");
    assert!(st["backends"][1]["last_error"].as_str().unwrap().contains("initialize"), "{st}");
}

#[test]
fn garbage_huge_lines_and_stderr_floods_are_survived() {
    let r = router(
        "max_message_bytes: 65536",
        &[
            backend("garbage", &["--garbage-on-start"]),
            backend("huge", &["--huge-line", "200000"]),
            backend("noisy", &["--stderr-flood", "2000000"]),
        ],
    );
    let s = r.session(None).unwrap();
    for b in ["garbage", "huge", "noisy"] {
        assert_eq!(tool_text(&s, &format!("{b}__whoami"), json!({})).unwrap(), b);
    }
    // Garbage mid-session is logged and skipped; the reply that follows it still arrives.
    tool_text(&s, "garbage__garbage", json!({})).unwrap();
    assert_eq!(tool_text(&s, "garbage__whoami", json!({})).unwrap(), "garbage");
}

#[test]
fn an_oversized_reply_fails_its_call_not_the_router() {
    let r = router("max_message_bytes: 65536", &[backend("alpha", &[])]);
    let s = r.session(None).unwrap();
    // Failed for its size (not left to time out).
    let err = tool_text(&s, "huge", json!({"bytes": 1_000_000})).unwrap_err();
    assert_eq!(err.0, -32000, "{err:?}");
    assert!(err.1.contains("larger than"), "{err:?}");
    assert_eq!(tool_text(&s, "whoami", json!({})).unwrap(), "alpha");
}

#[test]
fn stderr_floods_mid_call_never_block_the_backend() {
    let r = router("", &[backend("alpha", &[])]);
    let s = r.session(None).unwrap();
    assert_eq!(tool_text(&s, "stderr_flood", json!({"bytes": 5_000_000})).unwrap(), "flooded");
}

#[test]
fn a_full_queue_is_an_overload_error_not_a_hang() {
    let r = router("queue_capacity: 1", &[backend("alpha", &["--delay-ms", "50"])]);
    let s = r.session(None).unwrap();
    let outcomes: Vec<Result<String, (i64, String)>> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..32).map(|_| sc.spawn(|| tool_text(&s, "whoami", json!({})))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = outcomes.iter().filter(|o| o.is_ok()).count();
    let overloaded = outcomes.iter().filter(|o| matches!(o, Err((-32003, _)))).count();
    assert_eq!(ok + overloaded, 32, "{outcomes:?}");
    assert!(ok >= 1);
}

#[test]
fn calls_after_shutdown_and_close_are_refused() {
    let r = router("", &[backend("alpha", &[])]);
    let s = r.session(None).unwrap();
    s.close();
    assert_eq!(s.handle(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#), Err(mcprouter::Error::Closed));
    assert_eq!(s.next_event(Duration::from_millis(10)), Err(mcprouter::Error::Closed));
    let s2 = r.session(None).unwrap();
    r.shutdown(Duration::from_millis(200));
    assert_eq!(s2.handle(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#), Err(mcprouter::Error::Closed));
    assert!(r.session(None).is_err());
}

#[test]
fn config_errors_name_the_field_and_line() {
    let e = mcprouter::Router::from_yaml("router:\n  prefx: always\n").unwrap_err().to_string();
    assert!(e.contains("prefx") && e.contains("line 2"), "{e}");
    let e = mcprouter::Router::from_yaml("backends:\n  - name: a\n    command: x\n    weight: heavy\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("backends[0].weight") && e.contains("line 4"), "{e}");
}
