//! Hostile clients and hostile backends around what the hub relays: progress, resource
//! updates, server-to-client requests, logging, duplicate ids and floods (issues #10, #11).

mod common;

use std::time::{Duration, Instant};

use common::*;
use mcprouter::Session;
use serde_json::{Value, json};

/// A test-server backend that lists the hostile-fixture tools.
fn hostile(name: &str, flags: &[&str]) -> String {
    let mut all = vec!["--hostile-tools"];
    all.extend_from_slice(flags);
    backend(name, &all)
}

/// `hostile(...)` with a per-backend request timeout.
fn backend_with_timeout(name: &str, flags: &[&str], timeout_ms: u64) -> String {
    format!("{}    timeout_ms: {timeout_ms}\n", hostile(name, flags))
}

/// Every event that arrives within `within`, parsed.
fn drain(s: &Session, within: Duration) -> Vec<Value> {
    let end = Instant::now() + within;
    let mut out = Vec::new();
    while Instant::now() < end {
        if let Ok(Some(ev)) = s.next_event(Duration::from_millis(50)) {
            out.push(serde_json::from_str(&ev).unwrap());
        }
    }
    out
}

fn count(events: &[Value], method: &str) -> usize {
    events.iter().filter(|e| e["method"] == method).count()
}

fn tools_call(id: &str, name: &str, args: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": args}}).to_string()
}

#[test]
fn progress_for_a_token_is_accepted_only_from_the_backend_it_was_issued_to() {
    let dir = std::env::temp_dir().join(format!("mcprouter-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("token");
    let _ = std::fs::remove_file(&token_file);
    let path = token_file.to_str().unwrap();
    let r = router("", &[backend_with_timeout("alpha", &["--record-progress-token", path], 800), hostile("beta", &[])]);
    let s = r.session(None).unwrap();
    std::thread::scope(|sc| {
        let slow = sc.spawn(|| {
            let msg = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "alpha__slow", "arguments": {"ms": 2500}, "_meta": {"progressToken": "mine"}}});
            let began = Instant::now();
            let reply: Value = serde_json::from_str(&s.handle(&msg.to_string()).unwrap().unwrap()).unwrap();
            (reply, began.elapsed())
        });
        let end = Instant::now() + Duration::from_secs(5);
        let token = loop {
            if let Ok(t) = std::fs::read_to_string(&token_file)
                && !t.is_empty()
            {
                break serde_json::from_str::<Value>(&t).unwrap();
            }
            assert!(Instant::now() < end, "alpha never saw a progress token");
            std::thread::sleep(Duration::from_millis(10));
        };
        let t = token.as_str().unwrap();
        assert_ne!(t, "mine", "the backend sees the router's token, not the client's");
        // Beta learnt (or guessed) alpha's token and pushes progress into alpha's call.
        let spoof = tool_text(&s, "beta__spoof_progress", json!({"token": t, "count": 150})).unwrap();
        assert_eq!(spoof, "spoofed");
        let (reply, took) = slow.join().unwrap();
        assert_eq!(reply["error"]["code"], -32001, "beta's progress must not keep alpha's call alive: {reply}");
        assert!(took < Duration::from_millis(2000), "timed out at alpha's timeout, took {took:?}");
        let hex = t.trim_start_matches("mcprouter-p");
        assert!(hex.len() == 32 && hex.bytes().all(|c| c.is_ascii_hexdigit()), "128 random bits: {t}");
    });
    let events = drain(&s, Duration::from_millis(200));
    assert_eq!(count(&events, "notifications/progress"), 0, "no forged progress reaches the client: {events:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn resource_updates_come_only_from_the_backend_holding_the_subscription() {
    let r = router("", &[hostile("alpha", &[]), hostile("beta", &[])]);
    let s = r.session(None).unwrap();
    let v = call(&s, 1, "resources/subscribe", json!({"uri": "test://alpha/counter"}));
    assert_eq!(v["result"], json!({}), "{v}");
    tool_text(&s, "beta__touch", json!({"uri": "test://alpha/counter"})).unwrap();
    assert!(wait_event(&s, "notifications/resources/updated", Duration::from_millis(400)).is_none());
    tool_text(&s, "alpha__touch", json!({"uri": "test://alpha/counter"})).unwrap();
    let ev = wait_event(&s, "notifications/resources/updated", Duration::from_secs(3)).expect("alpha's update");
    assert_eq!(ev["params"]["uri"], "test://alpha/counter");
}

#[test]
fn subscriptions_match_the_exact_uri_not_a_prefix() {
    let r = router("", &[hostile("alpha", &[])]);
    let s = r.session(None).unwrap();
    let v = call(&s, 1, "resources/subscribe", json!({"uri": "test://alpha/item/1"}));
    assert_eq!(v["result"], json!({}), "{v}");
    tool_text(&s, "touch", json!({"uri": "test://alpha/item/10"})).unwrap();
    assert!(wait_event(&s, "notifications/resources/updated", Duration::from_millis(400)).is_none());
    tool_text(&s, "touch", json!({"uri": "test://alpha/item/1"})).unwrap();
    assert!(wait_event(&s, "notifications/resources/updated", Duration::from_secs(3)).is_some());
}

#[test]
fn one_session_unsubscribing_keeps_another_sessions_subscription() {
    let r = router("", &[hostile("alpha", &["--track-subscriptions"])]);
    let (a, b) = (r.session(None).unwrap(), r.session(None).unwrap());
    let uri = json!({"uri": "test://alpha/counter"});
    for s in [&a, &b] {
        assert_eq!(call(s, 1, "resources/subscribe", uri.clone())["result"], json!({}));
    }
    assert_eq!(call(&a, 2, "resources/unsubscribe", uri.clone())["result"], json!({}));
    tool_text(&a, "touch", json!({"uri": "test://alpha/counter"})).unwrap();
    assert!(wait_event(&b, "notifications/resources/updated", Duration::from_secs(3)).is_some(), "b still subscribed");
    assert!(wait_event(&a, "notifications/resources/updated", Duration::from_millis(300)).is_none(), "a left");
    let seen = |s: &Session| -> Vec<String> {
        let log: Vec<Value> = serde_json::from_str(&tool_text(s, "sub_log", json!({})).unwrap()).unwrap();
        log.iter().map(|e| e["method"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(seen(&a), ["resources/subscribe"], "the backend holds one subscription for both");
    assert_eq!(call(&b, 3, "resources/unsubscribe", uri.clone())["result"], json!({}));
    assert_eq!(seen(&a), ["resources/subscribe", "resources/unsubscribe"], "the last one out unsubscribes");
    // A session that closes leaves its subscriptions like an unsubscribe would.
    let c = r.session(None).unwrap();
    assert_eq!(call(&c, 4, "resources/subscribe", uri.clone())["result"], json!({}));
    drop(c);
    assert_eq!(
        seen(&a),
        ["resources/subscribe", "resources/unsubscribe", "resources/subscribe", "resources/unsubscribe"]
    );
}

#[test]
fn sampling_goes_only_to_the_session_whose_call_is_in_flight() {
    let r = router("", &[hostile("alpha", &[])]);
    let (s1, s2) = (r.session(Some("one")).unwrap(), r.session(Some("two")).unwrap());
    initialize(&s1, json!({"sampling": {}}));
    initialize(&s2, json!({"sampling": {}}));
    std::thread::scope(|sc| {
        let caller = sc.spawn(|| tool_text(&s1, "sample_after", json!({"prompt": "s1's secret", "ms": 500})));
        std::thread::sleep(Duration::from_millis(100));
        // s2 is now the most recent caller of alpha, but its call is over.
        assert_eq!(tool_text(&s2, "whoami", json!({})).unwrap(), "alpha");
        let ev = wait_event(&s1, "sampling/createMessage", Duration::from_secs(5)).expect("relayed to s1");
        assert_eq!(ev["params"]["messages"][0]["content"]["text"], "s1's secret");
        let answer = json!({"jsonrpc": "2.0", "id": ev["id"], "result": {"role": "assistant", "content": {"type": "text", "text": "ok"}, "model": "m"}});
        assert!(s1.handle(&answer.to_string()).unwrap().is_none());
        assert_eq!(caller.join().unwrap().unwrap(), "ok");
    });
    let leaked = drain(&s2, Duration::from_millis(200));
    assert_eq!(count(&leaked, "sampling/createMessage"), 0, "s2 must never see s1's prompt: {leaked:?}");
}

#[test]
fn sampling_is_refused_when_several_sessions_have_calls_in_flight() {
    let r = router("", &[hostile("alpha", &[])]);
    let (s1, s2) = (r.session(Some("one")).unwrap(), r.session(Some("two")).unwrap());
    initialize(&s1, json!({"sampling": {}}));
    initialize(&s2, json!({"sampling": {}}));
    std::thread::scope(|sc| {
        let other = sc.spawn(|| tool_text(&s2, "slow", json!({"ms": 1500})));
        std::thread::sleep(Duration::from_millis(100));
        let err = tool_text(&s1, "sample_after", json!({"prompt": "secret", "ms": 200})).unwrap();
        assert!(err.contains("cannot be attributed to a client"), "{err}");
        assert_eq!(other.join().unwrap().unwrap(), "slept 1500");
    });
    for s in [&s1, &s2] {
        let events = drain(s, Duration::from_millis(100));
        assert_eq!(count(&events, "sampling/createMessage"), 0, "{events:?}");
    }
}

#[test]
fn sampling_with_no_call_in_flight_is_refused_when_several_clients_could_be_meant() {
    let r = router("", &[hostile("alpha", &[])]);
    let s = r.session(None).unwrap();
    let _idle = r.session(None).unwrap();
    initialize(&s, json!({"sampling": {}}));
    assert_eq!(tool_text(&s, "sample_later", json!({"prompt": "p", "ms": 200})).unwrap(), "later");
    let events = drain(&s, Duration::from_millis(700));
    assert_eq!(count(&events, "sampling/createMessage"), 0, "{events:?}");
    let asked: Vec<String> = serde_json::from_str(&tool_text(&s, "asked", json!({})).unwrap()).unwrap();
    assert_eq!(asked.len(), 1);
    assert!(asked[0].contains("cannot be attributed to a client"), "{asked:?}");
}

#[test]
fn with_one_client_what_a_backend_sends_outside_a_call_reaches_it() {
    // As `mcprouter serve` runs: nobody else could be meant, so a direct connection's
    // behaviour is kept (server-everything logs "Roots updated" outside any call).
    let r = router("", &[hostile("alpha", &[])]);
    let s = r.session(None).unwrap();
    initialize(&s, json!({"sampling": {}}));
    assert_eq!(tool_text(&s, "log_later", json!({"message": "after the call", "ms": 200})).unwrap(), "later");
    let ev = wait_event(&s, "notifications/message", Duration::from_secs(5)).expect("the log line");
    assert_eq!(ev["params"]["data"], "after the call");
    assert_eq!(tool_text(&s, "sample_later", json!({"prompt": "p", "ms": 200})).unwrap(), "later");
    let ask = wait_event(&s, "sampling/createMessage", Duration::from_secs(5)).expect("the sampling request");
    assert_eq!(ask["params"]["messages"][0]["content"]["text"], "p", "{ask}");
}

#[test]
fn log_messages_without_a_single_calling_session_are_dropped() {
    let r = router("", &[hostile("alpha", &[])]);
    let (s1, s2) = (r.session(None).unwrap(), r.session(None).unwrap());
    assert_eq!(tool_text(&s1, "log_later", json!({"message": "s1 private", "ms": 300})).unwrap(), "later");
    assert_eq!(tool_text(&s2, "whoami", json!({})).unwrap(), "alpha");
    for s in [&s2, &s1] {
        let events = drain(s, Duration::from_millis(500));
        assert_eq!(count(&events, "notifications/message"), 0, "{events:?}");
    }
    // While a call is in flight its session is the one concerned.
    assert_eq!(tool_text(&s1, "log", json!({"message": "mine"})).unwrap(), "logged");
    let ev = wait_event(&s1, "notifications/message", Duration::from_secs(3)).expect("s1's log");
    assert_eq!(ev["params"]["data"], "mine");
    assert!(wait_event(&s2, "notifications/message", Duration::from_millis(200)).is_none());
}

#[test]
fn a_duplicate_request_id_in_flight_is_refused_and_cancel_still_works() {
    let r = router("", &[hostile("alpha", &[])]);
    let s = r.session(None).unwrap();
    std::thread::scope(|sc| {
        let first = sc.spawn(|| s.handle(&tools_call("dup", "slow", json!({"ms": 5000}))));
        std::thread::sleep(Duration::from_millis(200));
        let began = Instant::now();
        let v: Value =
            serde_json::from_str(&s.handle(&tools_call("dup", "whoami", json!({}))).unwrap().unwrap()).unwrap();
        assert_eq!(v["error"]["code"], -32600, "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("duplicate id in flight"), "{v}");
        assert_eq!(v["id"], "dup");
        assert!(began.elapsed() < Duration::from_millis(500), "refused at once");
        let cancel = r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"dup"}}"#;
        assert!(s.handle(cancel).unwrap().is_none());
        assert_eq!(first.join().unwrap().unwrap(), None, "the first request was cancelled");
    });
    // The id is free again once its request is done.
    let v: Value = serde_json::from_str(&s.handle(&tools_call("dup", "whoami", json!({}))).unwrap().unwrap()).unwrap();
    assert_eq!(v["result"]["content"][0]["text"], "alpha");
}

#[test]
fn a_log_flood_from_one_backend_leaves_room_for_another_backends_progress_and_list_changed() {
    let r = router("", &[hostile("alpha", &[]), hostile("beta", &[])]);
    let s = r.session(None).unwrap();
    assert_eq!(tool_text(&s, "alpha__flood_log", json!({"count": 20000})).unwrap(), "flooded");
    let msg = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "beta__progress", "arguments": {"steps": 3}, "_meta": {"progressToken": "p"}}});
    assert!(s.handle(&msg.to_string()).unwrap().unwrap().contains("done 3"));
    assert_eq!(tool_text(&s, "beta__notify_changed", json!({})).unwrap(), "changed");
    std::thread::sleep(Duration::from_millis(500));
    let events = drain(&s, Duration::from_millis(500));
    let logs = count(&events, "notifications/message");
    assert!(logs > 0 && logs <= 2048, "logging gets at most half the queue: {logs}");
    assert_eq!(count(&events, "notifications/progress"), 3, "beta's progress got through");
    assert_eq!(count(&events, "notifications/tools/list_changed"), 1, "list_changed got through");
}

#[test]
fn relayed_requests_the_client_never_answers_expire() {
    let r = router("", &[backend_with_timeout("alpha", &[], 700)]);
    let s = r.session(None).unwrap();
    initialize(&s, json!({"sampling": {}}));
    std::thread::scope(|sc| {
        let caller = sc.spawn(|| tool_text(&s, "sample", json!({"prompt": "ignored"})));
        let ev = wait_event(&s, "sampling/createMessage", Duration::from_secs(5)).expect("relayed");
        let cancelled = wait_event(&s, "notifications/cancelled", Duration::from_secs(3)).expect("the relay expires");
        assert_eq!(cancelled["params"]["requestId"], ev["id"], "{cancelled}");
        // The call ends one way or the other (its own timeout, or the backend's error).
        let _ = caller.join().unwrap();
        // A late answer goes nowhere and harms nothing.
        let answer = json!({"jsonrpc": "2.0", "id": ev["id"], "result": {"role": "assistant", "content": {"type": "text", "text": "late"}, "model": "m"}});
        assert!(s.handle(&answer.to_string()).unwrap().is_none());
    });
    assert_eq!(tool_text(&s, "whoami", json!({})).unwrap(), "alpha");
}
