//! Fuzz target 1: what a client sends. Messages are built from the MCP schema's shapes, then
//! spoiled (wrong types, missing and extra fields, odd ids, batches, huge and deep values,
//! garbage) and run through `Session::handle` against two test-server backends. After each
//! case: no panic on any thread, exactly one well-formed answer per request (none for
//! notifications and responses), and no call left pending. At the end: the router's
//! threads are back to where they started, and after shutdown none is left and every child
//! is reaped.
//!
//! `./scripts/test` runs a bounded number of cases with a fixed seed; `scripts/fuzz` runs
//! longer with a random seed and saves failures to `tests/fuzz/regressions/`, which are
//! always replayed first. See tests/fuzz/harness.rs for the environment variables.

mod common;
#[path = "fuzz/harness.rs"]
mod harness;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use harness::{Failure, Target, panic_count, panics_since, wait_for};
use mcprouter::{Router, Session};
use proptest::prelude::*;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// Saved cases that fail on the current code because of a bug someone is fixing. Each entry
/// names the bug; delete it when the fix lands (the replay then says "now PASSES").
/// Saved cases that still fail, each with the bug it shows. The cases of issue #10's
/// array-params panic (session-7538f0cc86ff1bd2, -1f26925ae085c543, -9adf8008cb1e9753) and
/// the array-form message (session-e052138300d6fbd2) are fixed and replay as regressions.
const KNOWN_UNFIXED: &[(&str, &str)] = &[];

/// Keeps the bounded run (in `./scripts/test`) near 30 s of debug build on two cores.
const DEFAULT_CASES: u32 = 1200;
/// The router's `max_message_bytes` in this target: small, so oversize input is cheap.
const MAX_MESSAGE: usize = 65_536;

// ---------------------------------------------------------------------------------------
// The oracle: what JSON-RPC 2.0 says the answer to a text must look like.

/// The fields of a JSON object in order, values raw (duplicates kept, so they can be seen).
struct Fields(Vec<(String, Box<RawValue>)>);

impl<'de> serde::Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Fields, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Fields, A::Error> {
                let mut out = Vec::new();
                while let Some(kv) = m.next_entry::<String, Box<RawValue>>()? {
                    out.push(kv);
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl Fields {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.get())
    }
    fn count(&self, key: &str) -> usize {
        self.0.iter().filter(|(k, _)| k == key).count()
    }
}

/// What one message (not a batch) must be answered with.
#[derive(Debug, Clone)]
enum Expect {
    /// A request: a reply with exactly this id (raw JSON).
    Reply(String),
    /// Not a valid message: an error reply whose id is null or this one.
    Error(Option<String>),
    /// A notification or a response: no reply.
    Silent,
    /// Not a JSON object at all (e.g. an array): an error reply with a null id.
    NotObject,
}

fn valid_id(raw: &str) -> bool {
    match raw.as_bytes().first() {
        Some(b'"') => true,
        Some(b'-' | b'0'..=b'9') => !raw.contains(['.', 'e', 'E']),
        _ => false,
    }
}

/// JSON-RPC 2.0 §4–5 for one message: a request has `jsonrpc:"2.0"`, a string `method`,
/// an id that is a string or an integer (null and fractions are refused here, as MCP
/// requires), and params that are structured if present.
fn expect_one(text: &str) -> Expect {
    if serde_json::from_str::<&RawValue>(text).is_ok_and(|r| !r.get().starts_with('{')) {
        return Expect::NotObject;
    }
    let Ok(f) = serde_json::from_str::<Fields>(text) else { return Expect::Error(None) };
    // The router answers an invalid object with its id when the id itself is readable and
    // valid (issue #10); null is always acceptable too.
    let readable = (f.count("id") == 1).then(|| f.get("id")).flatten().filter(|r| valid_id(r)).map(str::to_owned);
    if ["jsonrpc", "id", "method", "params", "result", "error"].iter().any(|k| f.count(k) > 1) {
        return Expect::Error(readable);
    }
    let method = match f.get("method") {
        None | Some("null") => None,
        Some(raw) if raw.starts_with('"') => match serde_json::from_str::<String>(raw) {
            Ok(m) => Some(m),
            Err(_) => return Expect::Error(readable),
        },
        Some(_) => return Expect::Error(readable),
    };
    let id = match f.get("id") {
        None => None,
        Some(raw) if valid_id(raw) => Some(raw.to_owned()),
        Some("null") if method.is_none() => Some("null".to_owned()),
        Some(_) => return Expect::Error(None),
    };
    if f.get("jsonrpc") != Some("\"2.0\"") {
        return Expect::Error(id);
    }
    if f.get("params").is_some_and(|p| !p.starts_with(['{', '['])) {
        return Expect::Error(id);
    }
    match (method.is_some(), id, f.get("result").is_some(), f.get("error").is_some()) {
        (true, Some(id), false, false) => Expect::Reply(id),
        (true, None, false, false) => Expect::Silent,
        (false, Some(_), true, false) | (false, Some(_), false, true) => Expect::Silent,
        (_, id, _, _) => Expect::Error(id),
    }
}

/// Request ids a batch cancels with `notifications/cancelled` (their reply may be left out).
fn cancelled_ids(items: &[&RawValue]) -> Vec<Value> {
    items
        .iter()
        .filter_map(|i| serde_json::from_str::<Value>(i.get()).ok())
        .filter(|v| v["method"] == "notifications/cancelled")
        .filter_map(|v| v.pointer("/params/requestId").cloned())
        .collect()
}

fn same_id(a: &str, b: &str) -> bool {
    match (serde_json::from_str::<Value>(a), serde_json::from_str::<Value>(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// Checks one reply object against what was expected of it.
fn check_reply(reply: &RawValue, want: &Expect) -> Result<(), Failure> {
    let text = reply.get();
    let fail = |sig: &str, why: String| Err(Failure::new(sig, format!("{why}; reply: {}", clip(text))));
    let Ok(f) = serde_json::from_str::<Fields>(text) else {
        return fail("reply is not a JSON object", String::new());
    };
    if f.0.iter().any(|(k, _)| f.count(k) > 1) {
        return fail("reply has a duplicate key", String::new());
    }
    if f.get("jsonrpc") != Some("\"2.0\"") {
        return fail("reply lacks jsonrpc 2.0", String::new());
    }
    let Some(id) = f.get("id") else { return fail("reply has no id", String::new()) };
    match (f.get("result"), f.get("error")) {
        (Some(_), None) => {}
        (None, Some(e)) => {
            let e: Value = serde_json::from_str(e).unwrap_or(Value::Null);
            if !(e["code"].is_i64() && e["message"].is_string()) {
                return fail("error object malformed (code integer, message string)", String::new());
            }
        }
        _ => return fail("reply must have exactly one of result and error", String::new()),
    }
    if let Some(extra) = f.0.iter().find(|(k, _)| !["jsonrpc", "id", "result", "error"].contains(&k.as_str())) {
        return fail("reply has an extra member", format!("member {:?}", extra.0));
    }
    match want {
        Expect::Reply(want_id) if !same_id(id, want_id) => {
            fail("reply id differs from request id", format!("want {want_id}"))
        }
        Expect::NotObject if f.get("error").is_none() || id != "null" => {
            fail("a message that is not an object was handled as one", String::new())
        }
        Expect::Error(want_id) => {
            if f.get("error").is_none() {
                return fail("invalid message answered with a result", String::new());
            }
            if id != "null" && !want_id.as_deref().is_some_and(|w| same_id(id, w)) {
                return fail("error reply to an invalid message has a wrong id", format!("want null or {want_id:?}"));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn clip(s: &str) -> String {
    let mut end = s.len().min(300);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    if end < s.len() { format!("{}…({} bytes)", &s[..end], s.len()) } else { s.to_owned() }
}

/// The whole answer to `text`: the JSON-RPC batch rules on top of `expect_one`.
fn check_answer(text: &str, answer: Option<&str>) -> Result<(), Failure> {
    let fail = |sig: &str, why: String| Err(Failure::new(sig, why));
    let single = |want: Expect| -> Result<(), Failure> {
        match (want, answer) {
            (Expect::Silent, None) => Ok(()),
            (Expect::Silent, Some(a)) => fail("a notification or response was answered", clip(a)),
            (_, None) => fail("a request got no reply", String::new()),
            (w, Some(a)) => match serde_json::from_str::<&RawValue>(a) {
                Ok(r) if !r.get().starts_with('[') => check_reply(r, &w),
                Ok(_) => fail("one message answered with an array", clip(a)),
                Err(e) => fail("reply is not JSON", format!("{e}: {}", clip(a))),
            },
        }
    };
    if text.len() > MAX_MESSAGE {
        // Too large to parse: the reply carries the id when it leads the message.
        let prefix = &text.as_bytes()[..text.len().min(4096)];
        return single(Expect::Error(mcprouter::jsonrpc::id_in_prefix(prefix)));
    }
    if !text.trim_start().starts_with('[') {
        return single(expect_one(text));
    }
    let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(text) else { return single(Expect::Error(None)) };
    if items.is_empty() {
        return single(Expect::Error(None));
    }
    let cancelled = cancelled_ids(&items);
    // (expectation, may be missing because the batch cancelled it)
    let wants: Vec<(Expect, bool)> = items
        .iter()
        .map(|i| expect_one(i.get()))
        .filter(|e| !matches!(e, Expect::Silent))
        .map(|e| {
            let optional = matches!(&e, Expect::Reply(id) if serde_json::from_str::<Value>(id).is_ok_and(|v| cancelled.contains(&v)));
            (e, optional)
        })
        .collect();
    let Some(answer) = answer else {
        return if wants.iter().all(|(_, optional)| *optional) {
            Ok(())
        } else {
            fail("batch with requests got no reply", format!("{} replies expected", wants.len()))
        };
    };
    if wants.is_empty() {
        return fail("batch of notifications/responses was answered", clip(answer));
    }
    let replies = match serde_json::from_str::<Vec<&RawValue>>(answer) {
        Ok(r) => r,
        Err(e) => return fail("batch reply is not a JSON array", format!("{e}: {}", clip(answer))),
    };
    // Replies come in the order of the requests; a cancelled one may be missing.
    let mut next = 0;
    for (want, optional) in &wants {
        match replies.get(next) {
            Some(r) if check_reply(r, want).is_ok() => next += 1,
            _ if *optional => {}
            Some(r) => {
                return check_reply(r, want).map_err(|f| Failure::new(format!("batch: {}", f.signature), f.detail));
            }
            None => {
                return fail(
                    "batch reply lacks a reply for a request",
                    format!("{} replies for {} requests: {}", replies.len(), wants.len(), clip(answer)),
                );
            }
        }
    }
    if next != replies.len() {
        return fail(
            "batch reply has extra replies",
            format!("{} replies for {} requests", replies.len(), wants.len()),
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The router under test and one case.

fn start_router() -> Router {
    let settings = format!(
        "request_timeout_ms: 1500\n\
         max_message_bytes: {MAX_MESSAGE}\n\
         shutdown_grace_ms: 300\n\
         restart: {{initial_backoff_ms: 100}}\n\
         health: {{interval_ms: 0, failure_threshold: 10000}}\n\
         breaker: {{failure_threshold: 10000}}"
    );
    // Two test servers with the same tools: every name collides and is prefixed `a__`/`b__`.
    common::router(&settings, &[common::backend("a", &[]), common::backend("b", &[])])
}

/// Waits until no backend has a pending call or a queued line, nor an in-flight gauge above 0.
fn quiescent(r: &Router) -> Result<(), Failure> {
    wait_for(Duration::from_secs(3), || {
        let st = r.status();
        for b in st["backends"].as_array().into_iter().flatten() {
            if b["in_flight"] != 0 || b["queue_depth"] != 0 {
                return Err(format!(
                    "backend {}: in_flight {}, queue_depth {}",
                    b["name"], b["in_flight"], b["queue_depth"]
                ));
            }
        }
        let m = r.metrics();
        if let Some(l) = m.lines().find(|l| l.starts_with("mcprouter_in_flight{") && !l.ends_with(" 0")) {
            return Err(format!("metric {l}"));
        }
        Ok(())
    })
    .map_err(|e| Failure::new("pending calls not back to zero", e))
}

/// Answers what the router relays to this client (sampling, elicitation, roots) while the
/// case runs, as a client would, in turn with a result, an error and a malformed answer.
/// A response must never be answered itself.
fn pump(s: &Session, stop: &AtomicBool) -> Result<(), Failure> {
    let mut n = 0u32;
    while !stop.load(Ordering::Acquire) {
        let Ok(Some(ev)) = s.next_event(Duration::from_millis(20)) else { continue };
        let Ok(v) = serde_json::from_str::<Value>(&ev) else {
            return Err(Failure::new("an event is not JSON", clip(&ev)));
        };
        let (Some(id), Some(_)) = (v.get("id"), v.get("method")) else { continue };
        n += 1;
        let answer = match n % 3 {
            0 => {
                json!({"jsonrpc": "2.0", "id": id, "result": {"role": "assistant", "content": {"type": "text", "text": "ok"}, "model": "m"}})
            }
            1 => json!({"jsonrpc": "2.0", "id": id, "error": {"code": -1, "message": "no"}}),
            _ => json!({"jsonrpc": "2.0", "id": id, "result": [1, {"x": null}]}),
        };
        match s.handle(&answer.to_string()) {
            Ok(None) | Err(_) => {}
            Ok(Some(r)) => return Err(Failure::new("the answer to a relayed request was answered", clip(&r))),
        }
    }
    Ok(())
}

/// Runs the messages of a case one after the other on one new session.
fn run_case(r: &Router, texts: &[String]) -> Result<(), Failure> {
    let mark = (panic_count(), harness::bad_log_count());
    let s = r.session(None).map_err(|e| Failure::new("router closed", e.to_string()))?;
    let stop = AtomicBool::new(false);
    let (answers, pumped) = std::thread::scope(|sc| {
        let pumper = sc.spawn(|| pump(&s, &stop));
        let answers: Vec<_> = texts.iter().map(|t| catch_unwind(AssertUnwindSafe(|| s.handle(t)))).collect();
        if std::env::var_os("MCPROUTER_FUZZ_VERBOSE").is_some() {
            for (t, a) in texts.iter().zip(&answers) {
                let a = match a {
                    Ok(Ok(a)) => a.as_deref().map_or("(none)".to_owned(), clip),
                    other => format!("{other:?}"),
                };
                println!("  {} -> {a}", clip(t));
            }
        }
        stop.store(true, Ordering::Release);
        (answers, pumper.join())
    });
    drop(s);
    let settled = quiescent(r);
    if let Some(p) = panics_since(mark.0) {
        return Err(p);
    }
    for (text, answer) in texts.iter().zip(answers) {
        let answer = match answer {
            Err(_) => return Err(Failure::new("handle panicked", "no panic recorded by the hook")),
            Ok(Err(e)) => return Err(Failure::new("handle returned Err", e.to_string())),
            Ok(Ok(a)) => a,
        };
        check_answer(text, answer.as_deref())
            .map_err(|f| Failure::new(f.signature, format!("{}; message: {}", f.detail, clip(text))))?;
    }
    match pumped {
        Ok(r) => r?,
        Err(_) => return Err(Failure::new("the relay pump panicked", String::new())),
    }
    if let Some(f) = harness::bad_logs_since(mark.1) {
        return Err(f);
    }
    settled
}

// ---------------------------------------------------------------------------------------
// The generator: MCP shapes, then spoiled.

type S = BoxedStrategy<String>;

fn q(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn obj(fields: &[(String, String)]) -> String {
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("{}:{v}", q(k))).collect();
    format!("{{{}}}", body.join(","))
}

fn lit(items: &'static [&'static str]) -> S {
    proptest::sample::select(items).prop_map(str::to_owned).boxed()
}

/// Any JSON scalar, including the awkward ones.
fn leaf() -> S {
    prop_oneof![
        lit(&[
            "null",
            "true",
            "false",
            "0",
            "-1",
            "1.5",
            "-0",
            "1e308",
            "18446744073709551616",
            "\"\"",
            "\"x\"",
            "\"\\ud800\"",
            "\"\\u0000\"",
            "\"a\\nb\"",
            "\"é🦀\"",
            "{}",
            "[]"
        ]),
        any::<i64>().prop_map(|n| n.to_string()),
        "[a-z]{0,8}".prop_map(|s| q(&s)),
    ]
    .boxed()
}

/// Any small JSON value.
fn value() -> S {
    leaf()
        .prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec(("[a-z_]{0,6}", inner), 0..4).prop_map(|v| obj(&v)),
            ]
        })
        .boxed()
}

/// Nested arrays or objects, deeper than any parser's default limit at the high end.
fn deep() -> S {
    (proptest::sample::select(&[16usize, 127, 128, 129, 300, 10_000][..]), any::<bool>())
        .prop_map(|(n, arrays)| {
            if arrays {
                format!("{}{}", "[".repeat(n), "]".repeat(n))
            } else {
                format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n))
            }
        })
        .boxed()
}

/// A long string; the largest make the message exceed `max_message_bytes`.
fn huge() -> S {
    proptest::sample::select(&[1_000usize, 30_000, 64_000, 70_000][..]).prop_map(|n| q(&"x".repeat(n))).boxed()
}

fn id() -> BoxedStrategy<Option<String>> {
    prop_oneof![
        8 => (0i64..40).prop_map(|n| Some(n.to_string())),
        3 => "[a-z0-9-]{0,6}".prop_map(|s| Some(q(&s))),
        2 => any::<i64>().prop_map(|n| Some(n.to_string())),
        1 => Just(None),
        3 => lit(&["-1", "0", "1.0", "1.5", "1e3", "18446744073709551616", "-9223372036854775809",
                   "99999999999999999999999999", "null", "true", "{}", "[]", "[1]", "{\"a\":1}", "\"\"", "\"\\ud800\"",
                   "\"\\u0031\"", "\"1\"", "\"mcprouter-1\""]).prop_map(Some),
    ]
    .boxed()
}

const TOOLS: &[&str] = &[
    "echo",
    "add",
    "whoami",
    "env",
    "pid",
    "slow",
    "fail",
    "progress",
    "log",
    "sample",
    "elicit",
    "roots",
    "notify_changed",
    "touch",
    "stderr_flood",
    "garbage",
    "huge",
    "last_initialize",
    "cancelled",
    "meta",
    "hang",
];

/// A tool name as a client could spell it: mostly a real prefixed one.
fn tool_name() -> S {
    prop_oneof![
        8 => (proptest::sample::select(&["a", "b"][..]), proptest::sample::select(TOOLS))
            .prop_filter("hang is slow: rare", |(_, t)| *t != "hang")
            .prop_map(|(b, t)| format!("{b}__{t}")),
        1 => lit(&["a__hang", "echo", "nope", "", "a__", "__echo", "a__ECHO", "c__echo", "a__echo ", "a__dynamic", "a____echo"]),
    ]
    .boxed()
}

/// Arguments that suit the tool, most of the time.
fn arguments(tool: &str) -> S {
    let t = tool.rsplit("__").next().unwrap_or("").to_owned();
    let good: S = match t.as_str() {
        "echo" | "log" => prop_oneof![value(), huge(), "[a-z ]{0,20}".prop_map(|s| q(&s))]
            .prop_map(|m| format!("{{\"message\":{m}}}"))
            .boxed(),
        "add" => (value(), value()).prop_map(|(a, b)| format!("{{\"a\":{a},\"b\":{b}}}")).boxed(),
        "slow" => {
            prop_oneof![(0u32..60).prop_map(|n| n.to_string()), leaf()].prop_map(|n| format!("{{\"ms\":{n}}}")).boxed()
        }
        "progress" => (0u32..4).prop_map(|n| format!("{{\"steps\":{n}}}")).boxed(),
        "huge" => proptest::sample::select(&[0usize, 10, 60_000, 70_000][..])
            .prop_map(|n| format!("{{\"bytes\":{n}}}"))
            .boxed(),
        "stderr_flood" => (0u32..5000).prop_map(|n| format!("{{\"bytes\":{n}}}")).boxed(),
        "touch" => lit(&["\"test://a/static\"", "\"test://b/counter\"", "\"\"", "5"])
            .prop_map(|u| format!("{{\"uri\":{u}}}"))
            .boxed(),
        "sample" => value().prop_map(|p| format!("{{\"prompt\":{p}}}")).boxed(),
        "elicit" => value().prop_map(|p| format!("{{\"message\":{p}}}")).boxed(),
        "env" => lit(&["\"HOME\"", "\"NOPE_NOT_SET\"", "\"\"", "1"]).prop_map(|n| format!("{{\"name\":{n}}}")).boxed(),
        _ => Just("{}".to_owned()).boxed(),
    };
    prop_oneof![6 => good, 1 => value(), 1 => deep()].boxed()
}

fn progress_meta() -> S {
    prop_oneof![
        3 => Just(String::new()),
        1 => prop_oneof![leaf(), "[a-z]{1,4}".prop_map(|s| q(&s))]
            .prop_map(|t| format!(",\"_meta\":{{\"progressToken\":{t}}}")),
    ]
    .boxed()
}

fn uri() -> S {
    lit(&[
        "\"test://a/static\"",
        "\"test://b/static\"",
        "\"test://a/counter\"",
        "\"test://b/item/42\"",
        "\"test://a/item/\"",
        "\"test://a/item/x/y\"",
        "\"test://nowhere/x\"",
        "\"\"",
        "\"test://a/\"",
        "\"test://\"",
        "5",
        "null",
        "[\"test://a/static\"]",
        "\"test://a/item/{id}\"",
    ])
}

/// Params in the shape the method's schema gives (names real, values mostly right).
fn good_params(method: &'static str) -> S {
    match method {
        "initialize" => (
            lit(&["\"2025-11-25\"", "\"2025-06-18\"", "\"2024-11-05\"", "\"1999-01-01\"", "\"\"", "5", "null"]),
            prop_oneof![Just("{}".to_owned()), Just("{\"sampling\":{},\"roots\":{\"listChanged\":true},\"elicitation\":{}}".to_owned()), value()],
        )
            .prop_map(|(v, c)| format!("{{\"protocolVersion\":{v},\"capabilities\":{c},\"clientInfo\":{{\"name\":\"fuzz\",\"version\":\"1\"}}}}"))
            .boxed(),
        "tools/call" => tool_name()
            .prop_flat_map(|n| (arguments(&n), progress_meta(), Just(n)))
            .prop_map(|(a, m, n)| format!("{{\"name\":{},\"arguments\":{a}{m}}}", q(&n)))
            .boxed(),
        "prompts/get" => (
            lit(&["\"a__greet\"", "\"b__greet\"", "\"a__plain\"", "\"greet\"", "\"nope\"", "5", "\"\""]),
            prop_oneof![Just("{\"who\":\"you\"}".to_owned()), Just("{}".to_owned()), value()],
        )
            .prop_map(|(n, a)| format!("{{\"name\":{n},\"arguments\":{a}}}"))
            .boxed(),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            uri().prop_map(|u| format!("{{\"uri\":{u}}}")).boxed()
        }
        "completion/complete" => (
            prop_oneof![
                lit(&["\"a__greet\"", "\"b__greet\"", "\"greet\"", "\"nope\""]).prop_map(|n| format!("{{\"type\":\"ref/prompt\",\"name\":{n}}}")),
                uri().prop_map(|u| format!("{{\"type\":\"ref/resource\",\"uri\":{u}}}")),
                value(),
            ],
            prop_oneof![Just("{\"name\":\"who\",\"value\":\"w\"}".to_owned()), value()],
        )
            .prop_map(|(r, a)| format!("{{\"ref\":{r},\"argument\":{a}}}"))
            .boxed(),
        "logging/setLevel" => lit(&["\"debug\"", "\"info\"", "\"emergency\"", "\"bogus\"", "5", "null"])
            .prop_map(|l| format!("{{\"level\":{l}}}"))
            .boxed(),
        "tools/list" | "prompts/list" | "resources/list" | "resources/templates/list" => prop_oneof![
            Just("{}".to_owned()),
            lit(&["\"0\"", "\"3\"", "\"garbage\"", "\"\"", "5", "null", "\"99999999999999999999\""]).prop_map(|c| format!("{{\"cursor\":{c}}}")),
        ]
        .boxed(),
        "notifications/cancelled" => (id(), value())
            .prop_map(|(i, r)| format!("{{\"requestId\":{},\"reason\":{r}}}", i.unwrap_or_else(|| "1".into())))
            .boxed(),
        "notifications/progress" => (leaf(), leaf()).prop_map(|(t, p)| format!("{{\"progressToken\":{t},\"progress\":{p}}}")).boxed(),
        _ => prop_oneof![Just("{}".to_owned()), value()].boxed(),
    }
}

/// Params: right, missing, of the wrong type, with extra fields, huge or deep.
fn params(method: &'static str) -> BoxedStrategy<Option<String>> {
    prop_oneof![
        12 => good_params(method).prop_map(Some),
        2 => Just(None),
        2 => lit(&["[]", "\"s\"", "5", "null", "true", "{}", "[\"a__echo\"]", "[\"a__echo\",{\"message\":\"m\"}]",
                   "[{\"name\":\"a__echo\"}]", "[\"a__greet\"]"]).prop_map(Some),
        1 => (good_params(method), "[a-z_]{1,8}", value())
            .prop_map(|(p, k, v)| Some(if p.len() > 2 { format!("{{{}:{v},{}", q(&k), &p[1..]) } else { format!("{{{}:{v}}}", q(&k)) })),
        // Positional params: JSON-RPC allows them, MCP never uses them.
        1 => (prop_oneof![tool_name(), lit(&["a__greet", "b__plain", "nope"])], prop::collection::vec(value(), 0..3))
            .prop_map(|(n, rest)| Some(format!("[{}]", std::iter::once(q(&n)).chain(rest).collect::<Vec<_>>().join(",")))),
        1 => deep().prop_map(|d| Some(format!("{{\"name\":\"a__echo\",\"arguments\":{{\"message\":{d}}}}}"))),
        1 => huge().prop_map(|h| Some(format!("{{\"name\":\"a__echo\",\"arguments\":{{\"message\":{h}}}}}"))),
    ]
    .boxed()
}

const METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "tools/call",
    "tools/call",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "sampling/createMessage",
    "unknown/method",
    "",
    "tools/call ",
    "TOOLS/CALL",
];

/// One message object: mostly a request or notification of an MCP method, with its fields
/// now and then wrong or missing, plus the odd response or extra member.
fn message() -> S {
    let jsonrpc = prop_oneof![
        20 => Just(Some("\"2.0\"".to_owned())),
        1 => Just(None),
        1 => lit(&["\"1.0\"", "2.0", "null", "\"2.0 \"", "\"2\\u002e0\""]).prop_map(Some),
    ];
    let method =
        proptest::sample::select(METHODS).prop_flat_map(|m| (Just(m), params(m))).prop_map(|(m, p)| (Some(q(m)), p));
    let kind = prop_oneof![
        16 => method.prop_flat_map(|(m, p)| (Just(m), Just(p), id())),
        // Responses, as if to a server-to-client request.
        2 => (id(), value()).prop_map(|(i, r)| (None, None, i.map(|i| format!("{i},\"result\":{r}")))),
        1 => (id(), value()).prop_map(|(i, e)| (None, None, i.map(|i| format!("{i},\"error\":{e}")))),
        1 => (leaf(), id()).prop_map(|(m, i)| (Some(m), None, i)),
    ];
    let extra = prop_oneof![
        10 => Just(None),
        1 => ("[a-z]{1,6}", value()).prop_map(|(k, v)| Some((k, v))),
        1 => (lit(&["result", "error", "id", "method", "jsonrpc", "params"]), value()).prop_map(|(k, v)| Some((k, v))),
    ];
    (jsonrpc, kind, extra)
        .prop_map(|(j, (m, p, i), x)| {
            let mut f: Vec<(String, String)> = Vec::new();
            if let Some(j) = j {
                f.push(("jsonrpc".into(), j));
            }
            if let Some(i) = i {
                // Responses carry "id,"result":…" in one piece; split it back.
                match i.split_once(",\"result\":").or_else(|| i.split_once(",\"error\":")) {
                    Some((id, rest)) if m.is_none() => {
                        f.push(("id".into(), id.to_owned()));
                        let key = if i.contains(",\"result\":") { "result" } else { "error" };
                        f.push((key.into(), rest.to_owned()));
                    }
                    _ => f.push(("id".into(), i)),
                }
            }
            if let Some(m) = m {
                f.push(("method".into(), m));
            }
            if let Some(p) = p {
                f.push(("params".into(), p));
            }
            if let Some(x) = x {
                f.push(x);
            }
            obj(&f)
        })
        .boxed()
}

/// Text that is not a message: garbage, cut-off messages, bare values, deep nesting.
fn garbage() -> S {
    prop_oneof![
        "[ -~]{0,40}",
        (message(), any::<prop::sample::Index>()).prop_map(|(m, i)| {
            let mut at = i.index(m.len().max(1));
            while !m.is_char_boundary(at) {
                at -= 1;
            }
            m[..at].to_owned()
        }),
        lit(&[
            "",
            " ",
            "\n",
            "\u{feff}{}",
            "{}",
            "[]",
            "[[]]",
            "[1]",
            "[null]",
            "\"str\"",
            "123",
            "null",
            "[{}]",
            "{\"jsonrpc\":\"2.0\"}",
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"} x",
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}",
            "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"},]",
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",}",
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"id\":2,\"method\":\"ping\"}",
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"method\":\"x\"}",
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\\ud800\"}",
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{\"a\":\"\\udc00\"}}"
        ]),
        deep(),
        // A message written as an array of its members' values (a struct's sequence form).
        (id(), proptest::sample::select(METHODS), params("ping")).prop_map(|(i, m, p)| {
            let mut v = vec!["\"2.0\"".to_owned(), i.unwrap_or_else(|| "1".into()), q(m)];
            v.extend(p);
            format!("[{}]", v.join(","))
        }),
        deep().prop_map(|d| format!("{{\"jsonrpc\":\"2.0\",\"id\":{d},\"method\":\"ping\"}}")),
        deep().prop_map(|d| format!("{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{{\"x\":{d}}}}}")),
        huge().prop_map(|h| format!("{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{{\"x\":{h}}}}}")),
    ]
    .boxed()
}

/// A whole case: one to three texts sent in turn on one session (state carries over:
/// initialize, subscriptions, relayed requests).
fn case() -> BoxedStrategy<Vec<String>> {
    prop_oneof![4 => one().prop_map(|t| vec![t]), 1 => prop::collection::vec(one(), 2..4)].boxed()
}

/// One text: a message, a batch (mixed, nested, of many), or garbage.
fn one() -> S {
    prop_oneof![
        10 => message(),
        4 => prop::collection::vec(prop_oneof![8 => message(), 1 => garbage().prop_filter("batch element must be JSON", |g| serde_json::from_str::<&RawValue>(g).is_ok())], 1..6)
            .prop_map(|v| format!("[{}]", v.join(","))),
        1 => prop::collection::vec(message(), 1..3).prop_map(|v| format!("[[{}]]", v.join(","))),
        1 => (20usize..120).prop_map(|n| {
            let pings: Vec<String> = (0..n).map(|i| format!("{{\"jsonrpc\":\"2.0\",\"id\":{i},\"method\":\"ping\"}}")).collect();
            format!("[{}]", pings.join(","))
        }),
        3 => garbage(),
    ]
    .boxed()
}

#[test]
fn fuzz_session() {
    harness::watchdog(DEFAULT_CASES, Duration::from_millis(25));
    harness::install_panic_hook();
    let r = start_router();
    // Warm up: the catalog is complete and lazily started threads exist before the baseline.
    harness::install_logger();
    let warm =
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a__echo","arguments":{"message":"hi"}}}"#;
    run_case(&r, &[warm.to_owned()]).expect("warm-up call");
    let baseline = harness::all_threads();
    let check = |texts: &Vec<String>| run_case(&r, texts);
    let target = Target {
        name: "session",
        default_cases: DEFAULT_CASES,
        known_unfixed: KNOWN_UNFIXED,
        check: &check,
        // One text is saved as a string, a sequence as an array of strings.
        to_json: |t: &Vec<String>| match t.as_slice() {
            [one] => Value::String(one.clone()),
            many => Value::from(many.to_vec()),
        },
        from_json: |v: &Value| match v {
            Value::String(s) => Some(vec![s.clone()]),
            Value::Array(a) => a.iter().map(|s| s.as_str().map(str::to_owned)).collect(),
            _ => None,
        },
    };
    harness::run(&target, case());

    // The router's own threads come and go with restarts, but must not accumulate.
    let threads = harness::threads_back_to(baseline, Duration::from_secs(5));
    r.shutdown(Duration::from_millis(300));
    drop(r);
    let after = harness::nothing_left(Duration::from_secs(5));
    assert!(threads.is_ok(), "threads accumulated: {threads:?}");
    assert!(after.is_ok(), "after shutdown: {after:?}");
}
