//! Per-session backends (`scope: session`, issue #13): each client session gets its own
//! process of such a backend, started on its first call, stopped when the session closes,
//! and capped in number; a shared backend keeps one process for everyone. Against real
//! child processes of the test server (its `pid` tool and its `counter` resource, whose
//! reads count per process).

mod common;

use std::time::{Duration, Instant};

use common::*;
use mcprouter::{Router, Session};
use serde_json::{Value, json};

fn scoped(name: &str) -> String {
    format!("{}    scope: session\n", backend(name, &[]))
}

fn session_backends(st: &Value) -> u64 {
    st["router"]["session_backends"].as_u64().expect("status counts session backends")
}

fn pid(s: &Session, tool: &str) -> u32 {
    tool_text(s, tool, json!({})).expect("pid answers").parse().expect("a pid")
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

fn read_counter(s: &Session, uri: &str) -> String {
    let v = call(s, 7, "resources/read", json!({"uri": uri}));
    v["result"]["contents"][0]["text"].as_str().unwrap_or_else(|| panic!("counter reads: {v}")).to_owned()
}

#[test]
fn each_session_gets_its_own_process_and_shared_backends_stay_shared() {
    let r = router("", &[scoped("mine"), backend("ours", &[])]);
    let (a, b) = (r.session(Some("a")).unwrap(), r.session(Some("b")).unwrap());
    initialize(&a, json!({}));
    initialize(&b, json!({}));
    let template = r.status()["backends"].as_array().unwrap().iter().find(|x| x["name"] == "mine").unwrap()["pid"]
        .as_u64()
        .unwrap() as u32;
    assert_eq!(session_backends(&r.status()), 0, "started on first use, not before");

    let (pa, pb) = (pid(&a, "mine__pid"), pid(&b, "mine__pid"));
    assert_ne!(pa, pb, "two sessions, two processes");
    assert_ne!(pa, template, "the catalog's process serves no session's calls");
    assert_eq!(pid(&a, "mine__pid"), pa, "a session keeps its process");
    assert_eq!(pid(&a, "ours__pid"), pid(&b, "ours__pid"), "a shared backend is shared");
    assert_eq!(session_backends(&r.status()), 2);

    // State lives per session: each counter counts that session's reads only.
    let uri = counter_uri(&a);
    assert_eq!(read_counter(&a, &uri), "1");
    assert_eq!(read_counter(&a, &uri), "2");
    assert_eq!(read_counter(&b, &uri), "1");

    a.close();
    wait_status(&r, "a's process stopped", |st| session_backends(st) == 1);
    let end = Instant::now() + Duration::from_secs(30);
    while alive(pa) {
        assert!(Instant::now() < end, "process {pa} of a closed session still runs");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(alive(pb), "the other session's process is untouched");
    assert_eq!(pid(&b, "mine__pid"), pb);
}

/// The counter's URI as the catalog lists it.
fn counter_uri(s: &Session) -> String {
    let v = call(s, 3, "resources/list", json!({}));
    let all = v["result"]["resources"].as_array().unwrap_or_else(|| panic!("resources: {v}"));
    let uri = all.iter().filter_map(|x| x["uri"].as_str()).find(|u| u.ends_with("mine/counter"));
    uri.unwrap_or_else(|| panic!("a counter resource: {v}")).to_owned()
}

#[test]
fn the_cap_refuses_a_session_clearly_until_another_one_leaves() {
    let r = router("max_session_backends: 1", &[scoped("mine")]);
    let (a, b) = (r.session(Some("a")).unwrap(), r.session(Some("b")).unwrap());
    initialize(&a, json!({}));
    initialize(&b, json!({}));
    pid(&a, "pid");
    let (code, msg) = tool_text(&b, "pid", json!({})).expect_err("over the cap");
    assert_eq!(code, -32000);
    assert!(msg.contains("max_session_backends"), "{msg}");
    drop(a);
    wait_status(&r, "a's process stopped", |st| session_backends(st) == 0);
    pid(&b, "pid");
}

#[test]
fn a_sessions_process_that_died_is_replaced_on_its_next_call() {
    let r = router("", &[scoped("mine")]);
    let a = r.session(Some("a")).unwrap();
    initialize(&a, json!({}));
    let first = pid(&a, "pid");
    let _ = tool_text(&a, "crash", json!({}));
    let end = Instant::now() + Duration::from_secs(30);
    while alive(first) {
        assert!(Instant::now() < end, "the crashed process still runs");
        std::thread::sleep(Duration::from_millis(5));
    }
    // The reader may not have seen the exit yet: the first call after it may still fail.
    let end = Instant::now() + Duration::from_secs(30);
    let second = loop {
        match tool_text(&a, "pid", json!({})) {
            Ok(p) => break p.parse::<u32>().unwrap(),
            Err(e) => assert!(Instant::now() < end, "no new process: {e:?}"),
        }
    };
    assert_ne!(first, second);
    assert_eq!(session_backends(&r.status()), 1, "the dead one was let go");
}

#[test]
fn shutdown_stops_every_sessions_process() {
    let r = router("", &[scoped("mine")]);
    let a = r.session(Some("a")).unwrap();
    initialize(&a, json!({}));
    let p = pid(&a, "pid");
    r.shutdown(Duration::from_millis(500));
    assert!(!alive(p), "shutdown returned with a session's process alive");
}

#[test]
fn the_config_rejects_an_unknown_scope_and_a_zero_cap() {
    let bad_scope = config("", &[format!("{}    scope: user\n", backend("x", &[]))]);
    assert!(Router::from_yaml(&bad_scope).unwrap_err().to_string().contains("scope"));
    let zero = config("max_session_backends: 0", &[scoped("x")]);
    assert!(Router::from_yaml(&zero).unwrap_err().to_string().contains("max_session_backends"));
}

/// What a per-session process sends with no call in flight is its session's alone: here a
/// sampling request sent after its call returned, with a second session open (to which a
/// shared backend's traffic could not be attributed either way).
#[test]
fn what_a_sessions_process_sends_on_its_own_reaches_that_session() {
    let r = router("", &[format!("{}    scope: session\n", backend("mine", &["--hostile-tools"]))]);
    let (a, b) = (r.session(Some("a")).unwrap(), r.session(Some("b")).unwrap());
    initialize(&a, json!({"sampling": {}}));
    initialize(&b, json!({"sampling": {}}));
    tool_text(&a, "sample_later", json!({"prompt": "for a", "ms": 50})).expect("the call returns at once");
    let asked = wait_event(&a, "sampling/createMessage", Duration::from_secs(30)).expect("a is asked");
    assert!(asked.to_string().contains("for a"), "{asked}");
    assert!(b.next_event(Duration::from_millis(0)).unwrap().is_none(), "b hears nothing of it");
}

/// A cancellation that arrives before its call is sent (here while the session's process
/// is still starting) cancels the send: the client gets no reply and the backend never
/// sees the call.
#[test]
fn a_call_cancelled_before_it_is_sent_is_never_sent() {
    let dir = std::env::temp_dir().join(format!("mcprouter-scoped-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let record = dir.join("requests.log");
    let _ = std::fs::remove_file(&record);
    let flags = ["--delay-ms", "300", "--record-requests", record.to_str().unwrap()];
    let r = router("", &[format!("{}    scope: session\n", backend("mine", &flags))]);
    let a = r.session(Some("a")).unwrap();
    initialize(&a, json!({}));
    let call = json!({"jsonrpc": "2.0", "id": 77, "method": "tools/call", "params": {"name": "pid", "arguments": {}}});
    std::thread::scope(|sc| {
        let caller = sc.spawn(|| a.handle(&call.to_string()).unwrap());
        // The session's process is being started for this call: it has not been sent.
        wait_status(&r, "the session's process starting", |st| session_backends(st) == 1);
        let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 77}});
        assert!(a.handle(&cancel.to_string()).unwrap().is_none());
        assert_eq!(caller.join().unwrap(), None, "a cancelled request gets no reply");
    });
    // The process did start (its initialize is recorded) but never got the call.
    let seen = std::fs::read_to_string(&record).unwrap_or_default();
    assert_eq!(seen.matches("\"initialize\"").count(), 2, "the shared and the session's process: {seen}");
    assert!(!seen.contains("tools/call"), "the cancelled call was sent: {seen}");
    assert!(pid(&a, "pid") > 0, "the session goes on");
    let _ = std::fs::remove_dir_all(&dir);
}
