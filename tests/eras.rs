//! Both protocol eras through the library `Session`: the modern (2026-07-28) front
//! (`server/discover`, the per-request `_meta` envelope, -32602 / -32022, `resultType`,
//! caching fields), the backend era probe, and the era in status and metrics.
//!
//! The modern backend is `tests/interop/fixtures/modern_server.py` (the Python SDK's
//! `MCPServer`, dual-era), run by `MCPROUTER_PYTHON` or the `.deps` venv; the legacy one is
//! the project's test server. A missing interpreter fails the test.

mod common;

use common::modern::modern_backend;
use mcprouter::{Router, Session};
use serde_json::{Value, json};

/// A Python interpreter importing the SDK can take seconds on a loaded machine, and the
/// era probe gets half the start time: enough either way.
const SLOW_START: &str = "init_timeout_ms: 60000";
/// Calls to cancel must not time out first, however slow the machine.
const LONG_CALLS: &str = "init_timeout_ms: 60000\nrequest_timeout_ms: 600000";

fn envelope() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "eras-test", "version": "1"},
    })
}

/// `params` with the modern envelope added to its `_meta`.
fn modern(mut params: Value) -> Value {
    params["_meta"] = envelope();
    params
}

fn both() -> (Router, Session) {
    let r = common::router(SLOW_START, &[modern_backend("modern", "auto"), common::backend("alpha", &[])]);
    let s = r.session(None).expect("session");
    (r, s)
}

#[test]
fn server_discover_answers_what_initialize_would_and_every_version() {
    let (r, s) = both();
    let v = common::call(&s, 1, "server/discover", json!({"_meta": envelope()}));
    let res = &v["result"];
    assert_eq!(res["resultType"], "complete", "{v}");
    assert_eq!(res["supportedVersions"][0], "2026-07-28");
    assert!(res["supportedVersions"].as_array().unwrap().iter().any(|x| x == "2025-11-25"));
    assert_eq!((res["ttlMs"].as_i64(), res["cacheScope"].as_str()), (Some(0), Some("public")));
    assert_eq!(res["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "mcprouter");
    assert!(res["instructions"].as_str().unwrap().contains("modern speaks both eras"));
    let legacy = common::initialize(&r.session(None).unwrap(), json!({}));
    assert_eq!(res["capabilities"], legacy["result"]["capabilities"], "the same merge as initialize");
}

#[test]
fn a_modern_request_needs_its_envelope_and_a_version_the_router_speaks() {
    let (_r, s) = both();
    let v = common::call(&s, 1, "server/discover", json!({}));
    assert_eq!(v["error"]["code"], -32602, "{v}");
    let v =
        common::call(&s, 2, "tools/list", json!({"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}));
    assert_eq!(v["error"]["code"], -32602, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("clientCapabilities"));
    let v = common::call(
        &s,
        3,
        "tools/list",
        json!({"_meta": {"io.modelcontextprotocol/protocolVersion": "2031-01-01", "io.modelcontextprotocol/clientCapabilities": {}}}),
    );
    assert_eq!(v["error"]["code"], -32022, "{v}");
    assert_eq!(v["error"]["data"]["requested"], "2031-01-01");
    assert_eq!(v["error"]["data"]["supported"][0], "2026-07-28");
}

#[test]
fn modern_results_carry_their_type_and_caching_and_legacy_ones_stay_as_they_were() {
    let (r, s) = both();
    let v = common::call(&s, 1, "tools/list", modern(json!({})));
    let res = &v["result"];
    assert_eq!((res["resultType"].as_str(), res["ttlMs"].as_i64()), (Some("complete"), Some(0)), "{v}");
    assert_eq!(res["cacheScope"], "public");
    // A legacy backend's answer to a modern client gets its resultType.
    let v = common::call(&s, 2, "tools/call", modern(json!({"name": "echo", "arguments": {"message": "x"}})));
    assert_eq!(v["result"]["resultType"], "complete", "{v}");
    assert!(v["result"].get("ttlMs").is_none(), "a call result is not cacheable: {v}");
    // The modern backend saw a modern request: the envelope reached it.
    let v = common::call(&s, 3, "tools/call", modern(json!({"name": "era-echo", "arguments": {"message": "m"}})));
    let text = v["result"]["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.contains("version 2026-07-28"), "{v}");
    // A legacy client on another session: no modern fields added, and the modern backend
    // is reached with the router's envelope on its behalf.
    let l = r.session(None).unwrap();
    common::initialize(&l, json!({}));
    let v = common::call(&l, 4, "tools/list", json!({}));
    assert!(v["result"].get("resultType").is_none(), "{v}");
    let text = common::tool_text(&l, "era-echo", json!({"message": "l"})).expect("call");
    assert!(text.contains("version 2026-07-28"), "{text}");
    // What a modern backend's own result carries passes through to a legacy client, which
    // ignores what it does not know.
    let v = common::call(&l, 5, "resources/read", json!({"uri": "era://static"}));
    assert!(v["result"]["contents"][0]["text"].as_str().unwrap_or_default().contains("static text"), "{v}");
    assert_eq!(v["result"]["resultType"], "complete", "{v}");
}

#[test]
fn status_and_metrics_show_each_backends_era_and_a_pin_is_obeyed() {
    let r = common::router(
        SLOW_START,
        &[modern_backend("modern", "auto"), modern_backend("pinned", "legacy"), common::backend("alpha", &[])],
    );
    let st = r.status();
    let era =
        |n: &str| st["backends"].as_array().unwrap().iter().find(|b| b["name"] == n).map(|b| b["era"].clone()).unwrap();
    assert_eq!(
        (era("modern"), era("pinned"), era("alpha")),
        (json!("modern"), json!("legacy"), json!("legacy")),
        "{st}"
    );
    let m = r.metrics();
    assert!(m.contains("mcprouter_backend_modern{backend=\"modern\"} 1"), "{m}");
    assert!(m.contains("mcprouter_backend_modern{backend=\"pinned\"} 0"));
    assert!(m.contains("mcprouter_backend_modern{backend=\"alpha\"} 0"));
}

#[test]
fn a_backend_pinned_modern_that_is_not_fails_to_start_with_the_reason() {
    let r = common::router(
        "init_timeout_ms: 3000",
        &[common::backend("alpha", &[]).replace("\n    command", "\n    era: modern\n    command")],
    );
    let st = r.status();
    let b = &st["backends"][0];
    assert_ne!(b["state"], "ready", "{st}");
    assert!(b["last_error"].as_str().unwrap_or_default().contains("server/discover"), "{st}");
}

fn modern_with(capabilities: Value, mut params: Value) -> Value {
    params["_meta"] = envelope();
    params["_meta"]["io.modelcontextprotocol/clientCapabilities"] = capabilities;
    params
}

#[test]
fn a_legacy_backends_question_becomes_input_required_and_the_retry_delivers_the_answer() {
    let r = common::router("", &[common::backend("alpha", &[])]);
    let s = r.session(None).unwrap();
    let call = json!({"name": "sample", "arguments": {"prompt": "q?"}});
    let v = common::call(&s, 1, "tools/call", modern_with(json!({"sampling": {}}), call.clone()));
    let res = &v["result"];
    assert_eq!(res["resultType"], "input_required", "{v}");
    let state = res["requestState"].as_str().expect("a requestState");
    assert!(state.starts_with("mcprouter-mrtr-") && state.len() >= 15 + 32, "{state}");
    let asks = res["inputRequests"].as_object().expect("inputRequests");
    assert_eq!(asks.len(), 1, "{v}");
    let (key, ask) = asks.iter().next().unwrap();
    assert_eq!(ask["method"], "sampling/createMessage");
    assert_eq!(ask["params"]["messages"][0]["content"]["text"], "q?");
    // The state is bound to this call: another tool's retry, or a forged state, is refused.
    let mut wrong = modern_with(json!({"sampling": {}}), json!({"name": "echo", "arguments": {"text": "x"}}));
    wrong["requestState"] = json!(state);
    let e = common::call(&s, 2, "tools/call", wrong);
    assert_eq!(e["error"]["code"], -32602, "{e}");
    let mut forged = modern_with(json!({"sampling": {}}), call.clone());
    forged["requestState"] = json!("mcprouter-mrtr-00000000000000000000000000000000");
    assert_eq!(common::call(&s, 3, "tools/call", forged)["error"]["code"], -32602);
    // The retry, under a new id, answers and gets the real result.
    let mut retry = modern_with(json!({"sampling": {}}), call);
    retry["requestState"] = json!(state);
    retry["inputResponses"] =
        json!({key: {"role": "assistant", "content": {"type": "text", "text": "the answer"}, "model": "m"}});
    let v = common::call(&s, 4, "tools/call", retry.clone());
    assert_eq!(v["result"]["resultType"], "complete", "{v}");
    assert_eq!(v["result"]["content"][0]["text"], "the answer", "{v}");
    // Spent: the same state again is unknown.
    assert_eq!(common::call(&s, 5, "tools/call", retry)["error"]["code"], -32602);
}

#[test]
fn a_modern_client_that_did_not_declare_the_capability_is_not_asked() {
    let r = common::router("", &[common::backend("alpha", &[])]);
    let s = r.session(None).unwrap();
    let v = common::call(&s, 1, "tools/call", modern(json!({"name": "sample", "arguments": {"prompt": "q"}})));
    assert_eq!(v["result"]["isError"], true, "{v}");
    let text = v["result"]["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.contains("did not declare the sampling capability"), "{v}");
}

#[test]
fn a_modern_backends_input_required_is_asked_of_a_legacy_client_and_retried() {
    let r = common::router(SLOW_START, &[modern_backend("modern", "auto")]);
    let s = std::sync::Arc::new(r.session(None).unwrap());
    common::initialize(&s, json!({"sampling": {}}));
    let caller = std::sync::Arc::clone(&s);
    let call = std::thread::spawn(move || common::tool_text(&caller, "era-sample", json!({"prompt": "p"})));
    let ask = common::wait_event(&s, "sampling/createMessage", std::time::Duration::from_secs(30)).expect("asked");
    assert!(ask["id"].as_str().unwrap().starts_with("mcprouter-ask-"), "{ask}");
    let answer = json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"role": "assistant", "content": {"type": "text", "text": "yes"}, "model": "m"}});
    assert!(s.handle(&answer.to_string()).unwrap().is_none());
    let text = call.join().unwrap().expect("the call's result");
    assert_eq!(text, "sampled: yes");
}

/// Sends `tools/call` on a thread, cancels it by the client's id, and returns what the
/// call's `handle` gave back (no reply: None).
fn cancelled_call(s: &std::sync::Arc<Session>, params: Value, ready: impl Fn() -> bool) -> Option<String> {
    let caller = std::sync::Arc::clone(s);
    let msg = json!({"jsonrpc": "2.0", "id": "to-cancel", "method": "tools/call", "params": params}).to_string();
    let call = std::thread::spawn(move || caller.handle(&msg).expect("open"));
    while !ready() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // A cancellation that lands between the call's registration and its send is ignored
    // (a cancellation of an unknown id is): sent again until the call has ended.
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "to-cancel", "reason": "test"}});
    while !call.is_finished() {
        assert!(s.handle(&cancel.to_string()).unwrap().is_none());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    call.join().unwrap()
}

#[test]
fn a_modern_clients_cancellation_reaches_a_legacy_backend() {
    let r = common::router(LONG_CALLS, &[common::backend("alpha", &[])]);
    let s = std::sync::Arc::new(r.session(None).unwrap());
    let params = modern_with(json!({"sampling": {}}), json!({"name": "slow", "arguments": {"ms": 600000}}));
    let in_flight = || r.status()["backends"][0]["in_flight"].as_u64() == Some(1);
    assert_eq!(cancelled_call(&s, params, in_flight), None, "a cancelled call gets no reply");
    assert_eq!(r.status()["backends"][0]["in_flight"], 0);
}

#[test]
fn a_legacy_clients_cancellation_reaches_a_modern_backend() {
    let r = common::router(LONG_CALLS, &[modern_backend("modern", "auto")]);
    let s = std::sync::Arc::new(r.session(None).unwrap());
    common::initialize(&s, json!({}));
    let params = json!({"name": "era-wait", "arguments": {"ms": 600000}});
    let in_flight = || r.status()["backends"][0]["in_flight"].as_u64() == Some(1);
    assert_eq!(cancelled_call(&s, params, in_flight), None);
    assert_eq!(r.status()["backends"][0]["in_flight"], 0);
    // The backend is still usable: it took the cancellation, not the connection down.
    assert!(common::tool_text(&s, "era-echo", json!({"message": "after"})).unwrap().contains("after"));
}

#[test]
fn a_legacy_backends_roots_request_reaches_a_modern_client_as_input_required() {
    let r = common::router("", &[common::backend("alpha", &[])]);
    let s = r.session(None).unwrap();
    let call = modern_with(json!({"roots": {}}), json!({"name": "roots", "arguments": {}}));
    let v = common::call(&s, 1, "tools/call", call.clone());
    let (key, ask) = v["result"]["inputRequests"].as_object().expect("input requests").iter().next().unwrap();
    assert_eq!(ask["method"], "roots/list", "{v}");
    let mut retry = call;
    retry["requestState"] = v["result"]["requestState"].clone();
    retry["inputResponses"] = json!({key: {"roots": [{"uri": "file:///modern-root"}]}});
    let v = common::call(&s, 2, "tools/call", retry);
    assert!(v["result"]["content"][0]["text"].as_str().unwrap_or_default().contains("file:///modern-root"), "{v}");
}

#[test]
fn a_modern_clients_listen_gets_list_changes_tagged_and_ends_on_cancel() {
    let r = common::router("", &[common::backend("alpha", &[])]);
    let s = std::sync::Arc::new(r.session(None).unwrap());
    let listener = std::sync::Arc::clone(&s);
    let listen = json!({"jsonrpc": "2.0", "id": "L1", "method": "subscriptions/listen",
        "params": modern(json!({"notifications": {"toolsListChanged": true}}))});
    let held = std::thread::spawn(move || listener.handle(&listen.to_string()).expect("open"));
    let ack = common::wait_event(&s, "notifications/subscriptions/acknowledged", std::time::Duration::from_secs(20))
        .expect("acknowledged");
    assert_eq!(ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "L1", "{ack}");
    assert_eq!(ack["params"]["notifications"]["toolsListChanged"], true);
    let v = common::call(&s, 2, "tools/call", modern(json!({"name": "notify_changed", "arguments": {}})));
    assert_eq!(v["result"]["content"][0]["text"], "changed", "{v}");
    let changed = common::wait_event(&s, "notifications/tools/list_changed", std::time::Duration::from_secs(20))
        .expect("tools/list_changed");
    assert_eq!(changed["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "L1", "{changed}");
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "L1"}});
    assert!(s.handle(&cancel.to_string()).unwrap().is_none());
    assert_eq!(held.join().unwrap(), None, "a cancelled listen gets no answer");
}

#[test]
fn a_modern_clients_cancellation_reaches_a_modern_backend() {
    let r = common::router(LONG_CALLS, &[modern_backend("modern", "auto")]);
    let s = std::sync::Arc::new(r.session(None).unwrap());
    let params = modern(json!({"name": "era-wait", "arguments": {"ms": 600000}}));
    let in_flight = || r.status()["backends"][0]["in_flight"].as_u64() == Some(1);
    assert_eq!(cancelled_call(&s, params, in_flight), None);
    assert_eq!(r.status()["backends"][0]["in_flight"], 0);
}

#[test]
fn a_modern_client_gets_log_messages_only_when_its_request_asks() {
    let r = common::router("", &[common::backend("alpha", &[])]);
    let s = r.session(None).unwrap();
    let v = common::call(&s, 1, "tools/call", modern(json!({"name": "log", "arguments": {"message": "quiet"}})));
    assert_eq!(v["result"]["content"][0]["text"], "logged", "{v}");
    let mut asks = modern(json!({"name": "log", "arguments": {"message": "loud"}}));
    asks["_meta"]["io.modelcontextprotocol/logLevel"] = json!("debug");
    common::call(&s, 2, "tools/call", asks);
    // Events keep their order: the first log message delivered is the second call's.
    let m = common::wait_event(&s, "notifications/message", std::time::Duration::from_secs(20)).expect("a log message");
    assert_eq!(m["params"]["data"], "loud", "{m}");
}

#[test]
fn a_modern_backend_asking_a_legacy_client_for_what_it_did_not_declare_gets_32021() {
    let r = common::router(SLOW_START, &[modern_backend("modern", "auto")]);
    // The backend asks whatever the client declared (`era-ask-anyway`): the router does
    // not relay it to a client that did not declare sampling, and answers the call the way
    // a modern server would.
    let s = r.session(None).unwrap();
    common::initialize(&s, json!({"roots": {}}));
    let v = common::call(&s, 1, "tools/call", json!({"name": "era-ask-anyway", "arguments": {"prompt": "p"}}));
    assert_eq!(v["error"]["code"], -32021, "{v}");
    assert_eq!(v["error"]["data"], json!({"requiredCapabilities": {"sampling": {}}}), "{v}");
    // Declared, the same call is asked of the client and retried with its answer.
    let s = std::sync::Arc::new(r.session(None).unwrap());
    common::initialize(&s, json!({"sampling": {}}));
    let caller = std::sync::Arc::clone(&s);
    let call = std::thread::spawn(move || common::tool_text(&caller, "era-ask-anyway", json!({"prompt": "p"})));
    let ask = common::wait_event(&s, "sampling/createMessage", std::time::Duration::from_secs(30)).expect("asked");
    let answer = json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"role": "assistant", "content": {"type": "text", "text": "ok"}, "model": "m"}});
    assert!(s.handle(&answer.to_string()).unwrap().is_none());
    let text = call.join().unwrap().expect("the call's result");
    assert!(text.starts_with("answered:") && text.contains("ok"), "{text}");
}

#[test]
fn ping_and_set_level_are_answered_in_either_era_and_the_level_reaches_a_modern_backend_per_call() {
    let r = common::router(SLOW_START, &[modern_backend("modern", "auto"), common::backend("alpha", &[])]);
    let s = r.session(None).unwrap();
    // Not 2026-07-28 methods, but the router answers them on stdio and in the library.
    let v = common::call(&s, 1, "ping", modern(json!({})));
    assert!(v["result"].is_object(), "{v}");
    let v = common::call(&s, 2, "logging/setLevel", modern(json!({"level": "info"})));
    assert!(v["result"].is_object(), "{v}");
    // A legacy client's level goes to the legacy backend as logging/setLevel, and to the
    // modern one with each call (a modern server has no such method).
    let l = r.session(None).unwrap();
    common::initialize(&l, json!({}));
    assert!(common::call(&l, 3, "ping", json!({}))["result"].is_object());
    assert!(common::call(&l, 4, "logging/setLevel", json!({"level": "error"}))["result"].is_object());
    let text = common::tool_text(&l, "era-log", json!({"message": "x"})).expect("call");
    assert!(text.contains("logLevel error"), "{text}");
}

/// A router whose legacy backend records what it receives, whose 2026-07-28 parked calls
/// expire after 400 ms (`request_timeout_ms`) while the backend call itself has ten minutes,
/// and whose client `bot` may have one call in flight.
fn short_parking(record: &std::path::Path) -> Router {
    let backend =
        common::backend("alpha", &["--record-requests", record.to_str().unwrap()]) + "    timeout_ms: 600000\n";
    let mut yaml = common::config("request_timeout_ms: 400\nmax_call_ms: 600000", &[backend]);
    yaml.push_str("clients:\n  - name: bot\nlimits:\n  clients:\n    - {client: bot, concurrency: 1}\n");
    common::watchdog(240);
    Router::from_yaml(&yaml).expect("router starts")
}

fn record_path(name: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("mcprouter-eras-{name}-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

/// The lines the backend received, parsed.
fn received(record: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(record).unwrap_or_default();
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn wait_until(what: &str, fact: impl Fn() -> bool) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !fact() {
        assert!(std::time::Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Parks `bot`'s `sample` call: the parked call's facts, checked, and its state.
fn park_one(r: &Router, s: &Session) -> (String, String) {
    let call = modern_with(json!({"sampling": {}}), json!({"name": "sample", "arguments": {"prompt": "q?"}}));
    let v = common::call(s, 1, "tools/call", call);
    assert_eq!(v["result"]["resultType"], "input_required", "{v}");
    let state = v["result"]["requestState"].as_str().unwrap().to_owned();
    let key = v["result"]["inputRequests"].as_object().unwrap().keys().next().unwrap().clone();
    let st = r.status();
    assert_eq!(st["router"]["mrtr"], json!({"parked": 1, "helpers": 1}), "{st}");
    assert_eq!(st["backends"][0]["in_flight"], 1, "{st}");
    assert_eq!(st["limits"]["clients"][0]["in_flight"], 1, "{st}");
    (state, key)
}

/// Everything the parked call held is given back: the parked slot, its helper thread, the
/// client's concurrency slot and the backend's pending call; and the backend was told, both
/// of the call (cancelled) and of its question (answered -32001).
fn freed(r: &Router, record: &std::path::Path) {
    wait_until("the parked call to be let go", || {
        let st = r.status();
        st["router"]["mrtr"] == json!({"parked": 0, "helpers": 0})
            && st["limits"]["clients"][0]["in_flight"] == 0
            && st["backends"][0]["in_flight"] == 0
    });
    wait_until("the backend to hear of it", || {
        let lines = received(record);
        let call_id = lines.iter().find(|l| l["method"] == "tools/call").map(|l| l["id"].clone());
        let cancelled = lines
            .iter()
            .any(|l| l["method"] == "notifications/cancelled" && Some(&l["params"]["requestId"]) == call_id.as_ref());
        let refused = lines.iter().any(|l| l["id"] == "s-1" && l["error"]["code"] == -32001);
        cancelled && refused
    });
}

#[test]
fn a_parked_call_whose_client_never_comes_back_expires_and_gives_back_what_it_held() {
    let record = record_path("expiry");
    let r = short_parking(&record);
    let s = r.session(Some("bot")).unwrap();
    let (state, key) = park_one(&r, &s);
    // It expires no later than request_timeout_ms after the client was answered.
    let expired_by = std::time::Instant::now() + std::time::Duration::from_millis(400);
    // Meanwhile the parked call holds the client's one concurrency slot.
    let v = common::call(&s, 2, "tools/call", modern(json!({"name": "echo", "arguments": {"message": "x"}})));
    assert_eq!(v["error"]["data"]["limit"], "concurrency", "{v}");
    while std::time::Instant::now() < expired_by {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // The client comes back too late: its state is unknown now (-32602), and the call is over.
    let mut retry = modern_with(json!({"sampling": {}}), json!({"name": "sample", "arguments": {"prompt": "q?"}}));
    retry["requestState"] = json!(state);
    retry["inputResponses"] =
        json!({key: {"role": "assistant", "content": {"type": "text", "text": "late"}, "model": "m"}});
    let v = common::call(&s, 3, "tools/call", retry);
    assert_eq!(v["error"]["code"], -32602, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("unknown, expired"), "{v}");
    freed(&r, &record);
    // The slot is back: the client's next call goes through.
    let v = common::call(&s, 4, "tools/call", modern(json!({"name": "echo", "arguments": {"message": "after"}})));
    assert_eq!(v["result"]["resultType"], "complete", "{v}");
}

#[test]
fn an_idle_router_lets_a_parked_call_go_by_itself() {
    let record = record_path("idle");
    let r = short_parking(&record);
    let s = r.session(Some("bot")).unwrap();
    let (state, key) = park_one(&r, &s);
    // No request of any client comes: the dispatcher's tick alone ends the call.
    freed(&r, &record);
    let mut retry = modern_with(json!({"sampling": {}}), json!({"name": "sample", "arguments": {"prompt": "q?"}}));
    retry["requestState"] = json!(state);
    retry["inputResponses"] =
        json!({key: {"role": "assistant", "content": {"type": "text", "text": "late"}, "model": "m"}});
    assert_eq!(common::call(&s, 2, "tools/call", retry)["error"]["code"], -32602);
}

/// Every event the session holds now (pushed before the reply that was just returned).
fn events_now(s: &Session) -> Vec<Value> {
    std::iter::from_fn(|| s.next_event(std::time::Duration::ZERO).ok().flatten())
        .filter_map(|e| serde_json::from_str(&e).ok())
        .collect()
}

fn progress_of(events: &[Value]) -> Vec<(Value, Value)> {
    events
        .iter()
        .filter(|e| e["method"] == "notifications/progress")
        .map(|e| (e["params"]["progressToken"].clone(), e["params"]["progress"].clone()))
        .collect()
}

#[test]
fn a_parked_calls_progress_goes_to_the_retry_under_its_own_token_and_never_to_the_completed_request() {
    // The dual-era fixture pinned legacy: it asks mid-call, with progress before and after.
    let r = common::router(SLOW_START, &[modern_backend("legacy", "legacy")]);
    let s = r.session(None).unwrap();
    let mut call =
        modern_with(json!({"sampling": {}}), json!({"name": "era-progress-sample", "arguments": {"prompt": "q"}}));
    call["_meta"]["progressToken"] = json!("first");
    let v = common::call(&s, 1, "tools/call", call.clone());
    assert_eq!(v["result"]["resultType"], "input_required", "{v}");
    // What the backend reported before it asked reaches the first request, under its token.
    assert_eq!(progress_of(&events_now(&s)), [(json!("first"), json!(1))]);
    // The first request is complete now; the retry is a request of its own, with its token.
    let key = v["result"]["inputRequests"].as_object().unwrap().keys().next().unwrap().clone();
    let mut retry = call.clone();
    retry["_meta"]["progressToken"] = json!("second");
    retry["requestState"] = v["result"]["requestState"].clone();
    retry["inputResponses"] =
        json!({key: {"role": "assistant", "content": {"type": "text", "text": "a"}, "model": "m"}});
    let v = common::call(&s, 2, "tools/call", retry);
    assert_eq!(v["result"]["content"][0]["text"], "sampled: a", "{v}");
    assert_eq!(
        progress_of(&events_now(&s)),
        [(json!("second"), json!(2))],
        "the completed request's token hears no more"
    );
    // A retry without a token gets no progress at all.
    let v = common::call(&s, 3, "tools/call", call);
    assert_eq!(progress_of(&events_now(&s)), [(json!("first"), json!(1))]);
    let key = v["result"]["inputRequests"].as_object().unwrap().keys().next().unwrap().clone();
    let mut retry =
        modern_with(json!({"sampling": {}}), json!({"name": "era-progress-sample", "arguments": {"prompt": "q"}}));
    retry["requestState"] = v["result"]["requestState"].clone();
    retry["inputResponses"] =
        json!({key: {"role": "assistant", "content": {"type": "text", "text": "b"}, "model": "m"}});
    let v = common::call(&s, 4, "tools/call", retry);
    assert_eq!(v["result"]["content"][0]["text"], "sampled: b", "{v}");
    assert_eq!(progress_of(&events_now(&s)), []);
}
