//! Issue #10, hostile clients over the library: each test is one case the issue lists.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

fn two() -> mcprouter::Router {
    router("", &[backend("a", &[]), backend("b", &[])])
}

fn reply(s: &mcprouter::Session, text: &str) -> Value {
    serde_json::from_str(&s.handle(text).unwrap().expect("a reply")).unwrap()
}

#[test]
fn array_params_with_a_prefixed_tool_name_get_invalid_params_not_a_panic() {
    let r = two();
    let s = r.session(None).unwrap();
    let v = reply(&s, r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["a__echo"]}"#);
    assert_eq!((v["id"].clone(), v["error"]["code"].clone()), (json!(1), json!(-32602)), "{v}");
    // In a batch, the element's reply is there too, in order.
    let v = reply(
        &s,
        r#"[{"jsonrpc":"2.0","id":"x","method":"tools/call","params":["a__echo"]},{"jsonrpc":"2.0","id":2,"method":"ping"}]"#,
    );
    assert_eq!(v[0]["id"], "x");
    assert_eq!(v[0]["error"]["code"], -32602);
    assert_eq!(v[1]["result"], json!({}));
    // The session still works.
    assert_eq!(tool_text(&s, "a__echo", json!({"message": "hi"})).unwrap(), "hi");
    r.shutdown(Duration::from_secs(2));
}

#[test]
fn a_field_of_the_wrong_type_is_answered_with_the_callers_id() {
    let r = two();
    let s = r.session(None).unwrap();
    let v = reply(&s, r#"{"jsonrpc":"2.0","id":41,"method":7}"#);
    assert_eq!((v["id"].clone(), v["error"]["code"].clone()), (json!(41), json!(-32600)), "{v}");
    r.shutdown(Duration::from_secs(2));
}

#[test]
fn an_oversized_message_is_answered_with_its_id_when_the_id_comes_first() {
    let r = router("max_message_bytes: 2048", &[backend("a", &[])]);
    let s = r.session(None).unwrap();
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":"big-1","method":"tools/call","params":{{"name":"echo","arguments":{{"message":"{}"}}}}}}"#,
        "x".repeat(4096)
    );
    let v = reply(&s, &big);
    assert_eq!((v["id"].clone(), v["error"]["code"].clone()), (json!("big-1"), json!(-32600)), "{v}");
    r.shutdown(Duration::from_secs(2));
}

#[test]
fn batches_are_capped_in_size_and_in_threads() {
    let r = two();
    let s = r.session(None).unwrap();
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let huge = format!("[{}]", vec![ping; mcprouter::MAX_BATCH + 1].join(","));
    let v = reply(&s, &huge);
    assert_eq!(v["error"]["code"], -32600, "an oversized batch is refused whole");

    // 64 calls that each take a while: the batch runs them on a bounded number of threads.
    let calls: Vec<String> = (0..64)
        .map(|i| {
            json!({"jsonrpc":"2.0","id":i,"method":"tools/call","params":{"name":"a__slow","arguments":{"ms":50}}})
                .to_string()
        })
        .collect();
    let batch = format!("[{}]", calls.join(","));
    // Batch threads only: other tests in this binary run routers of their own meanwhile.
    let batch_threads = || {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with("mcprouter-batch")))
            .count()
    };
    let baseline = batch_threads();
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (done, peak) = (Arc::clone(&done), Arc::clone(&peak));
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                peak.fetch_max(batch_threads(), Ordering::AcqRel);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let v = reply(&s, &batch);
    done.store(true, Ordering::Release);
    watcher.join().unwrap();
    let ids: Vec<i64> = v.as_array().unwrap().iter().map(|x| x["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, (0..64).collect::<Vec<_>>(), "one reply per element, in order");
    assert!(v.as_array().unwrap().iter().all(|x| x["result"].is_object()), "{v}");
    let extra = peak.load(Ordering::Acquire).saturating_sub(baseline);
    // At most 15 besides the caller's own thread (one more if another test's small batch
    // runs at the same moment).
    assert!(extra <= 16, "a batch used {extra} extra threads");
    r.shutdown(Duration::from_secs(2));
}

#[test]
fn a_backend_that_stops_reading_costs_a_healthy_backend_nothing() {
    // A long timeout: if the healthy call waited on the deaf backend it would not come back
    // before the deaf calls do, which is what the test judges (facts, not a stopwatch).
    let r = router("request_timeout_ms: 60000\nqueue_capacity: 64", &[backend("deaf", &[]), backend("ok", &[])]);
    let s = Arc::new(r.session(None).unwrap());
    assert_eq!(tool_text(&s, "deaf__stop_reading", json!({})).unwrap(), "stopped reading");
    let payload = "y".repeat(2000);
    let answered = Arc::new(AtomicUsize::new(0));
    let overloaded = Arc::new(AtomicUsize::new(0));
    let mut callers = Vec::new();
    for i in 0..400 {
        let (s, answered, overloaded, payload) =
            (Arc::clone(&s), Arc::clone(&answered), Arc::clone(&overloaded), payload.clone());
        callers.push(std::thread::spawn(move || {
            let msg = json!({"jsonrpc":"2.0","id":i,"method":"tools/call","params":{"name":"deaf__echo","arguments":{"message": payload}}});
            // After the router shuts down below, a call still waiting gets `Err(Closed)`.
            let Ok(Some(out)) = s.handle(&msg.to_string()) else { return };
            let v: Value = serde_json::from_str(&out).unwrap();
            if v["error"]["code"] == -32003 {
                overloaded.fetch_add(1, Ordering::AcqRel);
            } else {
                answered.fetch_add(1, Ordering::AcqRel);
            }
        }));
    }
    // The calls beyond the deaf backend's caps are refused at once, so this waits for a fact.
    while overloaded.load(Ordering::Acquire) + answered.load(Ordering::Acquire) < 400 - 2 * 64 {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(tool_text(&s, "ok__echo", json!({"message": "fine"})).unwrap(), "fine");
    assert_eq!(answered.load(Ordering::Acquire), 0, "no deaf call finished before the healthy one");
    assert!(overloaded.load(Ordering::Acquire) >= 400 - 2 * 64);
    r.shutdown(Duration::from_secs(2));
    for c in callers {
        c.join().unwrap();
    }
}

#[test]
fn pretty_printed_params_reach_a_stdio_backend_as_one_message() {
    // A line break is JSON whitespace; on stdio it would split the message in two and the
    // call would wait out its deadline.
    let r = router("request_timeout_ms: 10000", &[backend("a", &[])]);
    let s = r.session(None).unwrap();
    let pretty = "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{\n  \"name\": \"echo\",\r\n  \"arguments\": {\"message\": \"two\\nlines\"}\n}}";
    let v = reply(&s, pretty);
    assert_eq!(v["result"]["content"][0]["text"], "two\nlines", "{v}");
}
