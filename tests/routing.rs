//! The core router end to end over stdio, against real child processes.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

#[test]
fn merged_catalog_prefixes_only_collisions_and_routes_calls() {
    let r = router("", &[backend("alpha", &[]), backend("beta", &["--many-tools", "3"])]);
    let s = r.session(None).unwrap();
    let init = initialize(&s, json!({}));
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
    assert_eq!(init["result"]["serverInfo"]["name"], "mcprouter");
    assert!(init["result"]["capabilities"]["tools"].is_object());
    let names = tool_names(&s);
    assert!(names.contains(&"alpha__echo".to_owned()) && names.contains(&"beta__echo".to_owned()), "{names:?}");
    assert!(names.contains(&"t0001".to_owned()), "unique names stay unprefixed: {names:?}");
    assert!(!names.contains(&"echo".to_owned()));
    assert_eq!(tool_text(&s, "alpha__whoami", json!({})).unwrap(), "alpha");
    assert_eq!(tool_text(&s, "beta__whoami", json!({})).unwrap(), "beta");
    assert_eq!(tool_text(&s, "t0002", json!({})).unwrap(), "t0002");
    assert_eq!(tool_text(&s, "alpha__add", json!({"a": 2, "b": 40})).unwrap(), "42");
    let err = tool_text(&s, "nope", json!({})).unwrap_err();
    assert_eq!(err.0, -32602);
    assert!(err.1.contains("nope"), "{err:?}");

    let v = call(&s, 2, "resources/read", json!({"uri": "test://beta/static"}));
    assert_eq!(v["result"]["contents"][0]["text"], "static beta");
    let v = call(&s, 3, "resources/read", json!({"uri": "test://alpha/item/42"}));
    assert_eq!(v["result"]["contents"][0]["text"], "item 42", "template routing: {v}");
    let v = call(&s, 4, "resources/read", json!({"uri": "test://nowhere/x"}));
    assert_eq!(v["error"]["code"], -32602);
    let v = call(&s, 5, "prompts/get", json!({"name": "beta__greet", "arguments": {"who": "you"}}));
    assert_eq!(v["result"]["messages"][0]["content"]["text"], "Hello, you, from beta");
    let v = call(
        &s,
        6,
        "completion/complete",
        json!({"ref": {"type": "ref/prompt", "name": "alpha__greet"}, "argument": {"name": "who", "value": "w"}}),
    );
    assert_eq!(v["result"]["completion"]["values"], json!(["world", "wide", "wonder"]), "{v}");
    let v = call(&s, 8, "logging/setLevel", json!({"level": "debug"}));
    assert_eq!(v["result"], json!({}));
    let v = call(&s, 9, "resources/templates/list", json!({}));
    assert_eq!(v["result"]["resourceTemplates"].as_array().unwrap().len(), 2);
}

#[test]
fn pagination_is_followed_towards_backends_and_offered_to_clients() {
    let r = router("page_size: 7", &[backend("alpha", &["--page-size", "4", "--many-tools", "30"])]);
    let s = r.session(None).unwrap();
    let names = tool_names(&s);
    let first = call(&s, 1, "tools/list", json!({}));
    assert_eq!(first["result"]["tools"].as_array().unwrap().len(), 7);
    assert!(first["result"]["nextCursor"].is_string());
    assert_eq!(names.len(), TEST_SERVER_TOOLS + 30, "the fixed tools + 30 extra, all pages: {names:?}");
    let v = call(&s, 2, "tools/list", json!({"cursor": "garbage"}));
    assert_eq!(v["error"]["code"], -32602);
}

#[test]
fn prefix_modes_always_and_never() {
    let r = router("prefix: always\nseparator: \"-\"", &[backend("alpha", &[])]);
    let s = r.session(None).unwrap();
    assert!(tool_names(&s).iter().all(|n| n.starts_with("alpha-")));
    assert_eq!(tool_text(&s, "alpha-whoami", json!({})).unwrap(), "alpha");
    drop(s);
    r.shutdown(Duration::from_millis(500));

    let r = router("prefix: never", &[backend("alpha", &[]), backend("beta", &[])]);
    let s = r.session(None).unwrap();
    let names = tool_names(&s);
    assert_eq!(names.iter().filter(|n| *n == "echo").count(), 1);
    let err = tool_text(&s, "echo", json!({"message": "x"})).unwrap_err();
    assert!(err.1.contains("ambiguous") && err.1.contains("alpha") && err.1.contains("beta"), "{err:?}");
}

#[test]
fn allow_and_deny_lists_filter_the_catalog() {
    let mut b = backend("alpha", &[]);
    b.push_str("    tools:\n      allow: [\"e*\", whoami]\n      deny: [env]\n");
    let r = router("", &[b]);
    let s = r.session(None).unwrap();
    let mut names = tool_names(&s);
    names.sort();
    assert_eq!(names, ["echo", "elicit", "whoami"]);
    assert_eq!(tool_text(&s, "env", json!({"name": "PATH"})).unwrap_err().0, -32602);
}

#[test]
fn ids_come_back_exactly_and_meta_passes_through() {
    let r = router("", &[backend("alpha", &[])]);
    let s = r.session(None).unwrap();
    for id in [r#""a-string""#, "0", "-5", "12345678901234567890", r#""\u00e9""#] {
        let msg = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"m"}}}}}}"#
        );
        let reply = s.handle(&msg).unwrap().unwrap();
        assert!(reply.contains(&format!(r#""id":{id}"#)), "{reply}");
    }
    let msg = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"meta","arguments":{},"_meta":{"custom.example/key":{"z":1,"a":[2]},"other":"x"}}}"#;
    let v: Value = serde_json::from_str(&s.handle(msg).unwrap().unwrap()).unwrap();
    let seen: Value = serde_json::from_str(v["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(seen, json!({"custom.example/key": {"z": 1, "a": [2]}, "other": "x"}));
}

#[test]
fn progress_tokens_are_mapped_per_session() {
    let r = router("", &[backend("alpha", &[])]);
    let (s1, s2) = (r.session(Some("one")).unwrap(), r.session(Some("two")).unwrap());
    std::thread::scope(|sc| {
        for s in [&s1, &s2] {
            sc.spawn(move || {
                let msg = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"progress","arguments":{"steps":3},"_meta":{"progressToken":"tok"}}}"#;
                let reply = s.handle(msg).unwrap().unwrap();
                assert!(reply.contains("done 3"), "{reply}");
            });
        }
    });
    for s in [&s1, &s2] {
        let mut got = Vec::new();
        while let Ok(Some(ev)) = s.next_event(Duration::from_millis(200)) {
            let v: Value = serde_json::from_str(&ev).unwrap();
            if v["method"] == "notifications/progress" {
                assert_eq!(v["params"]["progressToken"], "tok", "client sees its own token: {v}");
                got.push(v["params"]["progress"].as_f64().unwrap());
            }
        }
        assert_eq!(got, [1.0, 2.0, 3.0], "each session gets exactly its own progress");
    }
}

#[test]
fn sampling_requests_are_relayed_to_the_calling_client_and_answered() {
    let r = router("", &[backend("alpha", &[])]);
    let s = r.session(None).unwrap();
    initialize(&s, json!({"sampling": {}}));
    std::thread::scope(|sc| {
        let caller = sc.spawn(|| tool_text(&s, "sample", json!({"prompt": "hi"})));
        let ev = wait_event(&s, "sampling/createMessage", Duration::from_secs(5)).expect("relayed request");
        assert_eq!(ev["params"]["messages"][0]["content"]["text"], "hi");
        let answer = json!({"jsonrpc": "2.0", "id": ev["id"], "result": {"role": "assistant", "content": {"type": "text", "text": "sampled!"}, "model": "m"}});
        assert!(s.handle(&answer.to_string()).unwrap().is_none(), "a response gets no reply");
        assert_eq!(caller.join().unwrap().unwrap(), "sampled!");
    });
}

#[test]
fn client_cancellation_reaches_the_backend_under_its_own_id() {
    let r = router("", &[backend("alpha", &[])]);
    let s = r.session(None).unwrap();
    std::thread::scope(|sc| {
        let slow = sc.spawn(|| s.handle(r#"{"jsonrpc":"2.0","id":"slow-1","method":"tools/call","params":{"name":"slow","arguments":{"ms":10000}}}"#));
        // Wait for the fact, not for time: the call is pending on the backend.
        let end = Instant::now() + Duration::from_secs(10);
        while r.status()["backends"][0]["in_flight"] != 1 {
            assert!(Instant::now() < end, "the call never went out: {}", r.status());
            std::thread::sleep(Duration::from_millis(5));
        }
        let cancel =
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"slow-1","reason":"user"}}"#;
        // The session records the call just after the backend's pending entry, and a cancel
        // for an id it has not recorded yet is ignored (as the protocol allows): repeat the
        // cancel until the call returns. Only one can reach the backend.
        while !slow.is_finished() {
            assert!(s.handle(cancel).unwrap().is_none());
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(slow.join().unwrap().unwrap(), None, "a cancelled request gets no reply");
    });
    let ids = tool_text(&s, "cancelled", json!({})).unwrap();
    let ids: Vec<Value> = serde_json::from_str(&ids).unwrap();
    assert_eq!(ids.len(), 1);
    assert!(ids[0].is_u64(), "the backend was told the router's id, not the client's: {ids:?}");
}

#[test]
fn list_changed_refreshes_the_catalog_and_tells_clients() {
    let r = router("", &[backend("alpha", &[])]);
    let s = r.session(None).unwrap();
    assert!(!tool_names(&s).contains(&"dynamic".to_owned()));
    assert_eq!(tool_text(&s, "notify_changed", json!({})).unwrap(), "changed");
    let ev = wait_event(&s, "notifications/tools/list_changed", Duration::from_secs(5));
    assert!(ev.is_some(), "clients are told");
    assert!(tool_names(&s).contains(&"dynamic".to_owned()));
    assert_eq!(tool_text(&s, "dynamic", json!({})).unwrap(), "dynamic");
}

#[test]
fn resource_updates_reach_subscribed_sessions_only() {
    let r = router("", &[backend("alpha", &[])]);
    let (a, b) = (r.session(None).unwrap(), r.session(None).unwrap());
    let v = call(&a, 1, "resources/subscribe", json!({"uri": "test://alpha/counter"}));
    assert_eq!(v["result"], json!({}));
    tool_text(&b, "touch", json!({"uri": "test://alpha/counter"})).unwrap();
    assert!(wait_event(&a, "notifications/resources/updated", Duration::from_secs(3)).is_some());
    assert!(wait_event(&b, "notifications/resources/updated", Duration::from_millis(300)).is_none());
}

#[test]
fn batches_reply_in_one_array_without_notifications() {
    let r = router("", &[backend("alpha", &[])]);
    let s = r.session(None).unwrap();
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami"}}]"#;
    let v: Value = serde_json::from_str(&s.handle(batch).unwrap().unwrap()).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    assert_eq!(arr[1]["result"]["content"][0]["text"], "alpha");
    assert_eq!(
        s.handle("[]").unwrap().unwrap(),
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Invalid Request: empty batch"}}"#
    );
}

#[test]
fn status_reports_every_backend() {
    let r = router("", &[backend("alpha", &[]), backend("down", &["--exit-on-start", "1"])]);
    let st = r.status();
    let b = st["backends"].as_array().unwrap();
    assert_eq!(b[0]["state"], "ready");
    assert_eq!(b[0]["protocol_version"], "2025-11-25");
    assert_eq!(b[0]["tools"], TEST_SERVER_TOOLS);
    assert_eq!(b[1]["state"], "failed");
    assert!(b[1]["last_error"].as_str().unwrap().contains("exit"), "{st}");
}

#[test]
fn backends_are_initialized_with_the_configured_client_capabilities() {
    let r = router("", &[backend("alpha", &[])]);
    let s = r.session(None).unwrap();
    let seen: Value = serde_json::from_str(&tool_text(&s, "last_initialize", json!({})).unwrap()).unwrap();
    assert_eq!(seen["protocolVersion"], "2025-11-25");
    // Unset, the library declares everything it can relay (sessions that did not declare a
    // capability get an error for the relayed request).
    let relayable = json!({"roots": {"listChanged": true}, "sampling": {}, "elicitation": {"form": {}, "url": {}}});
    assert_eq!(seen["capabilities"], relayable);
    assert_eq!(seen["clientInfo"]["name"], "mcprouter");
    drop(s);
    let r = router("client_capabilities: {roots: {}}", &[backend("alpha", &[])]);
    let s = r.session(None).unwrap();
    let seen: Value = serde_json::from_str(&tool_text(&s, "last_initialize", json!({})).unwrap()).unwrap();
    assert_eq!(seen["capabilities"], json!({"roots": {}}));
}

#[test]
fn a_batch_runs_its_calls_at_once() {
    // Two calls that each wait for the client's answer to a sampling request: run one after
    // the other, only one request could be outstanding; run at once, both are.
    let r = router("", &[backend("alpha", &[])]);
    let s = r.session(None).unwrap();
    initialize(&s, json!({"sampling": {}}));
    let call = |id: u32| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"sample","arguments":{{"prompt":"p{id}"}}}}}}"#
        )
    };
    let batch = format!("[{},{}]", call(1), call(2));
    std::thread::scope(|sc| {
        let caller = sc.spawn(|| s.handle(&batch));
        let mut requests = Vec::new();
        while requests.len() < 2 {
            let ev =
                wait_event(&s, "sampling/createMessage", Duration::from_secs(10)).expect("both outstanding at once");
            requests.push(ev);
        }
        for ev in requests {
            let text = ev["params"]["messages"][0]["content"]["text"].clone();
            let answer = json!({"jsonrpc": "2.0", "id": ev["id"], "result": {"role": "assistant", "content": {"type": "text", "text": text}, "model": "m"}});
            assert!(s.handle(&answer.to_string()).unwrap().is_none());
        }
        let v: Value = serde_json::from_str(&caller.join().unwrap().unwrap().unwrap()).unwrap();
        let got: Vec<(u64, String)> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["id"].as_u64().unwrap(), r["result"]["content"][0]["text"].as_str().unwrap().to_owned()))
            .collect();
        assert_eq!(got, [(1, "p1".to_owned()), (2, "p2".to_owned())], "replies keep the batch's order");
    });
}
