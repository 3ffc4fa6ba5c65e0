//! Fuzz target 3: the 2026-07-28 (modern) era through `Session::handle`. Requests carry
//! valid and broken `_meta` envelopes (a missing or ill-typed protocol version, client
//! capabilities, client info or log level; unknown and huge versions; params of the wrong
//! type), and exercise `server/discover`, `subscriptions/listen` and the multi-round-trip
//! flow: `tools/call` whose legacy backend asks for sampling, elicitation or roots, retried
//! with forged, garbage, spent or another client's `requestState` and `inputResponses` of
//! every wrong shape. Behind the router: the project's test server (legacy) and the Python
//! SDK's dual-era fixture (modern, `tests/interop/fixtures/modern_server.py`).
//!
//! Each case runs on three sessions: two of client A (as a stateless front gives each
//! request a session of its own, one client's retry may come on another session) and one of
//! client B. After each case:
//! - no panic on any thread, and every log record is one line of JSON;
//! - a reply for every request (a listen ends without one once cancelled), none for a
//!   notification; each well-formed JSON-RPC with the request's id;
//! - every error code in the documented set (JSON-RPC's, the router's -32000…-32006, the
//!   modern era's -32020…-32022);
//! - a broken envelope is refused with -32602 or -32022, never served;
//! - a modern result says its `resultType`; `input_required` carries `inputRequests`;
//! - a `requestState` minted for client A is refused (-32602) when client B sends it, and
//!   never appears in anything B receives;
//! - a client that only ever spoke 2026-07-28 is never sent a JSON-RPC request;
//! - no request outlives its deadline by far (`HANG`), and helper threads stay under their
//!   cap.
//!
//! At the end: every backend call has ended (parked calls expire), the router's threads are
//! back to their baseline, and after shutdown none is left and every child is reaped.
//!
//! `./scripts/test` runs a bounded number of cases with a fixed seed; `scripts/fuzz N eras`
//! runs longer. See tests/fuzz/harness.rs for the environment variables. Besides the fuzz
//! target, two deterministic tests pin what the fuzzer can only sample: a state refused to
//! another client stays good for its own, and a state nobody comes back for expires and its
//! backend call is cancelled.

mod common;
#[path = "fuzz/harness.rs"]
mod harness;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::{Failure, Target, panic_count, panics_since, wait_for};
use mcprouter::{Router, Session};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Saved cases that still fail, each with the bug it shows (see tests/fuzz_session.rs).
const KNOWN_UNFIXED: &[(&str, &str)] = &[];

/// Keeps the bounded run (in `./scripts/test`) short on two cores: a case holds several
/// requests, some of which wait for a backend's question.
const DEFAULT_CASES: u32 = 300;
const MAX_MESSAGE: usize = 65_536;
const REQUEST_TIMEOUT_MS: u64 = 1500;
/// Far past any request's deadline: a request not answered by then hangs.
const HANG: Duration = Duration::from_secs(30);
/// `crate::mrtr::MAX_HELPERS`: threads running modern clients' calls at once.
const MAX_HELPERS: usize = 256;

const V: &str = "io.modelcontextprotocol/protocolVersion";
const CAPS: &str = "io.modelcontextprotocol/clientCapabilities";
const INFO: &str = "io.modelcontextprotocol/clientInfo";
const LEVEL: &str = "io.modelcontextprotocol/logLevel";
const MODERN: &str = "2026-07-28";
const STATE_PREFIX: &str = "mcprouter-mrtr-";

/// Codes a client may get: JSON-RPC's, the router's (README "Errors"), the modern era's.
const CODES: &[i64] = &[
    -32700, -32600, -32601, -32602, -32603, -32000, -32001, -32002, -32003, -32004, -32005, -32006, -32020, -32021,
    -32022,
];

// ---------------------------------------------------------------------------------------
// A case.

/// What a request's envelope is, as the generator made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A usable 2026-07-28 envelope.
    Valid,
    /// Modern keys, but unusable: must be refused.
    Bad,
    /// No modern key: legacy semantics (taints the session: it may then get requests).
    Legacy,
}

/// How a retry answers the input requests it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answers {
    /// The right shape for each request's method.
    Good,
    /// Each answer a scalar, array or null.
    WrongShape,
    /// None of them (`{}`).
    Missing,
    /// Keys the router never asked.
    Unknown,
    /// `inputResponses` not an object.
    NotObject,
}

#[derive(Debug, Clone)]
enum Step {
    /// A message on session `s`.
    Send { s: usize, text: String, kind: Kind },
    /// On session `s`, a valid call of `tool` (one that asks its client something), with
    /// every capability declared.
    Ask { s: usize, tool: String },
    /// On session `s`, a retry of the last `input_required` session `from` got (a forged
    /// state when it got none; `from == SESSIONS`: the session that got one last);
    /// `rename`: for another tool than the one asked about.
    Retry { s: usize, from: usize, answers: Answers, rename: bool },
}

const SESSIONS: usize = 3;
/// Sessions 0 and 1 are client A's, session 2 client B's.
fn client_of(s: usize) -> usize {
    usize::from(s == 2)
}

fn step_to_json(s: &Step) -> Value {
    match s {
        Step::Send { s, text, kind } => json!({"send": s, "text": text, "kind": format!("{kind:?}")}),
        Step::Ask { s, tool } => json!({"ask": s, "tool": tool}),
        Step::Retry { s, from, answers, rename } => {
            json!({"retry": s, "from": from, "answers": format!("{answers:?}"), "rename": rename})
        }
    }
}

fn step_from_json(v: &Value) -> Option<Step> {
    let idx = |k: &str| v.get(k).and_then(Value::as_u64).map(|n| n as usize % SESSIONS);
    if let Some(s) = idx("send") {
        let kind = match v["kind"].as_str()? {
            "Valid" => Kind::Valid,
            "Bad" => Kind::Bad,
            _ => Kind::Legacy,
        };
        return Some(Step::Send { s, text: v["text"].as_str()?.to_owned(), kind });
    }
    if let Some(s) = idx("ask") {
        return Some(Step::Ask { s, tool: v["tool"].as_str()?.to_owned() });
    }
    let answers = match v["answers"].as_str()? {
        "Good" => Answers::Good,
        "WrongShape" => Answers::WrongShape,
        "Missing" => Answers::Missing,
        "Unknown" => Answers::Unknown,
        _ => Answers::NotObject,
    };
    let from = v.get("from").and_then(Value::as_u64).map(|n| (n as usize).min(SESSIONS))?;
    Some(Step::Retry { s: idx("retry")?, from, answers, rename: v["rename"].as_bool()? })
}

// ---------------------------------------------------------------------------------------
// Running a case.

/// An `input_required` a session got: enough to retry it.
#[derive(Debug, Clone)]
struct Asked {
    state: String,
    /// Input request keys and their methods.
    keys: Vec<(String, String)>,
    /// The call's params (name, arguments, envelope), as sent.
    params: Value,
    /// The client it was minted for.
    client: usize,
}

/// What one session's event pump saw.
#[derive(Default)]
struct Seen {
    events: Vec<String>,
    /// Methods of JSON-RPC requests the session was sent.
    requests: Vec<String>,
}

fn clip(s: &str) -> String {
    let mut end = s.len().min(300);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    if end < s.len() { format!("{}…({} bytes)", &s[..end], s.len()) } else { s.to_owned() }
}

/// Reads the session's events while the case runs: a listen is cancelled once
/// acknowledged (it would otherwise stay open), a request is answered as a client would.
fn pump(s: &Session, stop: &AtomicBool, seen: &Mutex<Seen>) {
    while !stop.load(Ordering::Acquire) {
        let Ok(Some(ev)) = s.next_event(Duration::from_millis(20)) else { continue };
        let v: Value = serde_json::from_str(&ev).unwrap_or(Value::Null);
        if let Ok(mut seen) = seen.lock() {
            seen.events.push(ev.clone());
        }
        let method = v["method"].as_str().unwrap_or_default();
        if method == "notifications/subscriptions/acknowledged" {
            let sub = &v["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"];
            let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": sub}});
            let _ = s.handle(&cancel.to_string());
        } else if let (Some(id), false) = (v.get("id"), method.is_empty()) {
            if let Ok(mut seen) = seen.lock() {
                seen.requests.push(method.to_owned());
            }
            let answer = json!({"jsonrpc": "2.0", "id": id, "result": good_answer(method)});
            let _ = s.handle(&answer.to_string());
        }
    }
}

fn good_answer(method: &str) -> Value {
    match method {
        "sampling/createMessage" => {
            json!({"role": "assistant", "content": {"type": "text", "text": "fuzzed"}, "model": "m"})
        }
        "elicitation/create" => json!({"action": "accept", "content": {"name": "Ada"}}),
        "roots/list" => json!({"roots": [{"uri": "file:///tmp", "name": "tmp"}]}),
        _ => json!({}),
    }
}

/// Handles `text` on its own thread; `None` when it hangs past `HANG`.
fn handle(s: &Arc<Session>, text: &str) -> Option<Result<Option<String>, String>> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let (session, text) = (Arc::clone(s), text.to_owned());
    std::thread::Builder::new()
        .name("fuzz-eras-call".into())
        .spawn(move || {
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| session.handle(&text)));
            let _ = tx.send(match out {
                Ok(Ok(r)) => Ok(r),
                Ok(Err(e)) => Err(format!("handle returned Err: {e}")),
                Err(_) => Err("handle panicked".to_owned()),
            });
        })
        .ok()?;
    rx.recv_timeout(HANG).ok()
}

/// Builds the retry text of a `Retry` step, and the state it carries with whom it was for.
fn retry_text(id: u64, asked: Option<&Asked>, answers: Answers, rename: bool) -> (String, Option<usize>) {
    let (mut params, keys, client) = match asked {
        Some(a) => (a.params.clone(), a.keys.clone(), Some(a.client)),
        None => {
            let p =
                json!({"name": "sample", "arguments": {"prompt": "p"}, "_meta": valid_meta(json!({"sampling": {}}))});
            (p, vec![("r1".to_owned(), "sampling/createMessage".to_owned())], None)
        }
    };
    let state = asked.map_or_else(|| format!("{STATE_PREFIX}{}", "0".repeat(32)), |a| a.state.clone());
    if rename {
        params["name"] = json!("echo");
        params["arguments"] = json!({"message": "renamed"});
    }
    params["requestState"] = json!(state);
    params["inputResponses"] = match answers {
        Answers::Good => keys.iter().map(|(k, m)| (k.clone(), good_answer(m))).collect::<Map<_, _>>().into(),
        Answers::WrongShape => {
            let bad = [json!("x"), json!(5), Value::Null, json!([1]), json!({"error": {"code": 1}})];
            keys.iter()
                .enumerate()
                .map(|(i, (k, _))| (k.clone(), bad[i % bad.len()].clone()))
                .collect::<Map<_, _>>()
                .into()
        }
        Answers::Missing => json!({}),
        Answers::Unknown => json!({"r999999": good_answer("sampling/createMessage"), "": null}),
        Answers::NotObject => json!(["not", "an", "object"]),
    };
    let text = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}).to_string();
    (text, client)
}

fn ask_text(id: u64, tool: &str) -> String {
    let all = json!({"sampling": {}, "elicitation": {"form": {}}, "roots": {}});
    let args = match tool {
        "sample" | "era-sample" => json!({"prompt": "q?"}),
        "elicit" => json!({"message": "who?"}),
        _ => json!({}),
    };
    let params = json!({"name": tool, "arguments": args, "_meta": valid_meta(all)});
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}).to_string()
}

fn valid_meta(caps: Value) -> Value {
    json!({V: MODERN, CAPS: caps, INFO: {"name": "fuzz", "version": "1"}})
}

/// Checks one reply against what its request must get.
fn check_reply(reply: &str, id: &Value, method: &str, kind: Kind, oversize: bool) -> Result<Value, Failure> {
    let fail = |sig: &str, why: String| Err(Failure::new(sig, format!("{why}; reply: {}", clip(reply))));
    let Ok(v) = serde_json::from_str::<Value>(reply) else { return fail("reply is not JSON", String::new()) };
    if v["jsonrpc"] != "2.0" {
        return fail("reply lacks jsonrpc 2.0", String::new());
    }
    if oversize {
        // Too large to parse: an error, with the id when it leads the message.
        return match v["error"]["code"].as_i64() {
            Some(-32600) => Ok(v),
            _ => fail("an oversize message was not refused with -32600", String::new()),
        };
    }
    if &v["id"] != id {
        return fail("reply id differs from request id", format!("want {id}"));
    }
    match (v.get("result"), v.get("error")) {
        (Some(_), None) | (None, Some(_)) => {}
        _ => return fail("reply must have exactly one of result and error", String::new()),
    }
    if let Some(e) = v.get("error") {
        let Some(code) = e["code"].as_i64().filter(|_| e["message"].is_string()) else {
            return fail("error object malformed (code integer, message string)", String::new());
        };
        if !CODES.contains(&code) {
            return fail("error code outside the documented set", format!("code {code}"));
        }
        return Ok(v);
    }
    if kind == Kind::Bad {
        return fail("a broken envelope was served", String::new());
    }
    let r = &v["result"];
    if kind == Kind::Valid && method != "initialize" {
        match r["resultType"].as_str() {
            Some("complete") => {}
            Some("input_required") if r["inputRequests"].is_object() => {}
            Some("input_required") => return fail("input_required without inputRequests", String::new()),
            _ => return fail("a modern result lacks resultType", String::new()),
        }
    }
    Ok(v)
}

struct Run<'a> {
    router: &'a Router,
    next_case: AtomicU64,
}

fn run_case(run: &Run<'_>, steps: &[Step]) -> Result<(), Failure> {
    let mark = (panic_count(), harness::bad_log_count());
    let case = run.next_case.fetch_add(1, Ordering::Relaxed);
    let clients = [format!("fuzz-a-{case}"), format!("fuzz-b-{case}")];
    let mut sessions = Vec::new();
    for s in 0..SESSIONS {
        let session = run
            .router
            .session(Some(&clients[client_of(s)]))
            .map_err(|e| Failure::new("router closed", e.to_string()))?;
        sessions.push(Arc::new(session));
    }
    let seen: Vec<Mutex<Seen>> = (0..SESSIONS).map(|_| Mutex::new(Seen::default())).collect();
    let stop = AtomicBool::new(false);
    let mut tainted = [false; SESSIONS];
    let mut replies: Vec<Vec<String>> = vec![Vec::new(); SESSIONS];
    let mut minted: Vec<(String, usize)> = Vec::new();
    let outcome = std::thread::scope(|sc| {
        for (s, session) in sessions.iter().enumerate() {
            let (stop, seen) = (&stop, &seen[s]);
            sc.spawn(move || pump(session, stop, seen));
        }
        let mut last: [Option<Asked>; SESSIONS] = [None, None, None];
        let mut latest: Option<usize> = None;
        let mut all_asked: Vec<Asked> = Vec::new();
        let mut result = Ok(());
        for (n, step) in steps.iter().enumerate() {
            let id = 1000 + n as u64;
            let (s, text, kind, cross) = match step {
                Step::Send { s, text, kind } => (*s, text.clone(), *kind, false),
                Step::Ask { s, tool } => (*s, ask_text(id, tool), Kind::Valid, false),
                Step::Retry { s, from, answers, rename } => {
                    let from = if *from == SESSIONS { latest.unwrap_or(0) } else { *from };
                    let (text, minted_for) = retry_text(id, last[from].as_ref(), *answers, *rename);
                    let cross = minted_for.is_some_and(|c| c != client_of(*s));
                    (*s, text, Kind::Valid, cross || *rename || minted_for.is_none())
                }
            };
            // The id the generator wrote (Send steps carry their own).
            let msg: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let method = msg["method"].as_str().unwrap_or_default().to_owned();
            if kind == Kind::Legacy || method == "initialize" {
                tainted[s] = true;
            }
            let answer = match handle(&sessions[s], &text) {
                None => {
                    result = Err(Failure::new("a request hung past its deadline", clip(&text)));
                    break;
                }
                Some(Err(e)) => {
                    result = Err(Failure::new(e, clip(&text)));
                    break;
                }
                Some(Ok(a)) => a,
            };
            if std::env::var_os("MCPROUTER_FUZZ_VERBOSE").is_some() {
                println!("  [{s}] {} -> {}", clip(&text), answer.as_deref().map_or("(none)".to_owned(), clip));
            }
            let Some(req_id) = msg.get("id").filter(|_| !method.is_empty()) else {
                if let Some(a) = answer {
                    result = Err(Failure::new("a notification was answered", clip(&a)));
                    break;
                }
                continue;
            };
            let Some(reply) = answer else {
                if method == "subscriptions/listen" {
                    continue;
                }
                result = Err(Failure::new("a request got no reply", clip(&text)));
                break;
            };
            replies[s].push(reply.clone());
            let oversize = text.len() > MAX_MESSAGE;
            let v = match check_reply(&reply, req_id, &method, kind, oversize) {
                Ok(v) => v,
                Err(f) => {
                    result = Err(Failure::new(f.signature, format!("{}; message: {}", f.detail, clip(&text))));
                    break;
                }
            };
            if cross && v["error"]["code"] != -32602 {
                let why = format!("message: {}; reply: {}", clip(&text), clip(&reply));
                result = Err(Failure::new("a requestState was taken by another client or call", why));
                break;
            }
            if let Some(a) = asked_of(&v, &msg["params"], client_of(s)) {
                minted.push((a.state.clone(), a.client));
                latest = Some(s);
                all_asked.push(a.clone());
                last[s] = Some(a);
            }
        }
        // Parked calls hold their backend (a stdio backend's question can only be
        // attributed to a lone caller): answer what is left, so the next case starts clean.
        let mut left: Vec<Asked> = all_asked.clone();
        for round in 0..4 {
            let mut again = Vec::new();
            for a in left.drain(..) {
                let s = if a.client == 0 { 0 } else { 2 };
                let (text, _) = retry_text(90_000 + round, Some(&a), Answers::Good, false);
                let Some(Ok(Some(reply))) = handle(&sessions[s], &text) else { continue };
                replies[s].push(reply.clone());
                let v: Value = serde_json::from_str(&reply).unwrap_or(Value::Null);
                if let Some(next) = asked_of(&v, &a.params, a.client) {
                    minted.push((next.state.clone(), a.client));
                    again.push(next);
                }
            }
            left = again;
        }
        stop.store(true, Ordering::Release);
        result
    });
    for s in &sessions {
        s.close();
    }
    if let Some(p) = panics_since(mark.0) {
        return Err(p);
    }
    outcome?;
    // Nothing of client A's states reaches client B, and B's none of A.
    for (s, seen) in seen.iter().enumerate() {
        let seen = seen.lock().map_err(|_| Failure::new("a pump panicked", String::new()))?;
        let mine = client_of(s);
        for (state, owner) in &minted {
            if *owner == mine {
                continue;
            }
            if let Some(t) = seen.events.iter().chain(&replies[s]).find(|t| t.contains(state.as_str())) {
                return Err(Failure::new("a requestState reached another client", clip(t)));
            }
        }
        if !tainted[s]
            && let Some(m) = seen.requests.first()
        {
            return Err(Failure::new("a 2026-07-28 client was sent a JSON-RPC request", m.clone()));
        }
    }
    let helpers = mrtr_threads();
    if helpers > MAX_HELPERS {
        return Err(Failure::new("more helper threads than their cap", format!("{helpers}")));
    }
    if let Some(f) = harness::bad_logs_since(mark.1) {
        return Err(f);
    }
    Ok(())
}

/// The router-minted `input_required` in a reply to a call with `params`, if any.
fn asked_of(v: &Value, params: &Value, client: usize) -> Option<Asked> {
    let r = &v["result"];
    if r["resultType"] != "input_required" {
        return None;
    }
    let state = r["requestState"].as_str().filter(|st| st.starts_with(STATE_PREFIX))?;
    let keys = r["inputRequests"]
        .as_object()
        .map(|o| o.iter().map(|(k, q)| (k.clone(), q["method"].as_str().unwrap_or("").to_owned())).collect())
        .unwrap_or_default();
    let mut params = params.clone();
    if let Some(p) = params.as_object_mut() {
        p.remove("requestState");
        p.remove("inputResponses");
    }
    Some(Asked { state: state.to_owned(), keys, params, client })
}

fn mrtr_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.flatten()
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with("mcprouter-mrtr"))
                })
                .count()
        })
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// The generator.

fn lit_values(items: &'static [&'static str]) -> BoxedStrategy<Value> {
    proptest::sample::select(items).prop_map(|s| serde_json::from_str(s).unwrap_or(Value::Null)).boxed()
}

fn capabilities() -> BoxedStrategy<Value> {
    lit_values(&[
        "{}",
        r#"{"sampling":{}}"#,
        r#"{"elicitation":{}}"#,
        r#"{"roots":{"listChanged":true}}"#,
        r#"{"sampling":{},"elicitation":{"form":{}},"roots":{}}"#,
        r#"{"sampling":null}"#,
        r#"{"experimental":{"x":[1,2]}}"#,
    ])
}

/// A `_meta` object and what it makes of the request.
fn meta() -> BoxedStrategy<(Option<Value>, Kind)> {
    let info = prop_oneof![
        3 => Just(Some(json!({"name": "fuzz", "version": "1"}))),
        1 => Just(None),
        1 => lit_values(&["\"fuzz\"", "5", "null", "[]", r#"{"name":5}"#]).prop_map(Some),
    ];
    let level = prop_oneof![
        3 => Just(None),
        1 => lit_values(&["\"debug\"", "\"info\"", "\"emergency\"", "\"bogus\"", "5", "null", "{}"]).prop_map(Some),
    ];
    let progress = prop_oneof![4 => Just(None), 1 => lit_values(&["\"tok\"", "7", "null", "{}"]).prop_map(Some)];
    let valid = (capabilities(), info.clone(), level.clone(), progress.clone()).prop_map(|(c, i, l, p)| {
        let mut m = json!({V: MODERN, CAPS: c});
        if let Some(i) = i {
            m[INFO] = i;
        }
        if let Some(l) = l {
            m[LEVEL] = l;
        }
        if let Some(p) = p {
            m["progressToken"] = p;
        }
        (Some(m), Kind::Valid)
    });
    let bad_version = prop_oneof![
        lit_values(&[
            "\"2025-11-25\"",
            "\"2024-11-05\"",
            "\"2030-01-01\"",
            "\"\"",
            "\"2026-07-28 \"",
            "\"2026-07-28\\u0000\"",
            "5",
            "null",
            "true",
            "[\"2026-07-28\"]",
            "{\"v\":\"2026-07-28\"}"
        ]),
        proptest::sample::select(&[1_000usize, 30_000, 70_000][..]).prop_map(|n| Value::String("9".repeat(n))),
    ];
    let bad = prop_oneof![
        // An unknown or ill-typed version (the capabilities are fine).
        (bad_version, capabilities()).prop_map(|(v, c)| json!({V: v, CAPS: c})),
        // The version alone, or capabilities alone.
        Just(json!({V: MODERN})),
        capabilities().prop_map(|c| json!({CAPS: c})),
        // Capabilities of the wrong type.
        lit_values(&["[]", "\"all\"", "null", "1", "[{}]"]).prop_map(|c| json!({V: MODERN, CAPS: c})),
    ]
    .prop_map(|m| (Some(m), Kind::Bad));
    let legacy = prop_oneof![
        Just((None, Kind::Legacy)),
        Just((Some(json!({"progressToken": 1})), Kind::Legacy)),
        Just((Some(json!({"io.modelcontextprotocol/other": 1})), Kind::Legacy)),
    ];
    prop_oneof![12 => valid, 5 => bad, 1 => legacy].boxed()
}

/// A tool and arguments that mostly suit it, of either backend.
fn tool_call() -> BoxedStrategy<Value> {
    let good = prop_oneof![
        Just(json!({"name": "echo", "arguments": {"message": "hi"}})),
        Just(json!({"name": "sample", "arguments": {"prompt": "q?"}})),
        Just(json!({"name": "elicit", "arguments": {"message": "who?"}})),
        Just(json!({"name": "roots", "arguments": {}})),
        (0u32..40).prop_map(|ms| json!({"name": "slow", "arguments": {"ms": ms}})),
        (0u32..4).prop_map(|n| json!({"name": "progress", "arguments": {"steps": n}})),
        Just(json!({"name": "log", "arguments": {"message": "l"}})),
        Just(json!({"name": "fail", "arguments": {}})),
        Just(json!({"name": "meta", "arguments": {}})),
        Just(json!({"name": "era-echo", "arguments": {"message": "m"}})),
        Just(json!({"name": "era-sample", "arguments": {"prompt": "p"}})),
        Just(json!({"name": "era-elicit", "arguments": {}})),
        Just(json!({"name": "era-roots", "arguments": {}})),
        (0u32..3).prop_map(|n| json!({"name": "era-progress", "arguments": {"steps": n}})),
        (0u32..40).prop_map(|ms| json!({"name": "era-wait", "arguments": {"ms": ms}})),
    ];
    let odd = lit_values(&[
        r#"{"name":"nope"}"#,
        r#"{"name":""}"#,
        r#"{"name":5}"#,
        r#"{"arguments":{}}"#,
        r#"{"name":"echo","arguments":"x"}"#,
        r#"{"name":"sample","arguments":{"prompt":{"deep":[1,2,3]}}}"#,
        r#"{"name":"era-sample","arguments":[]}"#,
    ]);
    prop_oneof![8 => good, 1 => odd].boxed()
}

/// A forged or garbage `requestState`, and `inputResponses` of any shape, to add to a call.
fn retry_fields() -> BoxedStrategy<Option<(Value, Option<Value>)>> {
    let state = prop_oneof![
        "[0-9a-f]{32}".prop_map(|h| Value::String(format!("{STATE_PREFIX}{h}"))),
        lit_values(&[
            "\"mcprouter-mrtr-\"",
            "\"mcprouter-mrtr-zz\"",
            "\"backend-own-state\"",
            "\"\"",
            "5",
            "null",
            "{}",
            "[\"mcprouter-mrtr-0\"]"
        ]),
        Just(Value::String(format!("{STATE_PREFIX}{}", "f".repeat(40_000)))),
    ];
    let responses = prop_oneof![
        2 => Just(None),
        1 => lit_values(&[
            "{}",
            r#"{"r1":{"role":"assistant","content":{"type":"text","text":"x"},"model":"m"}}"#,
            r#"{"r1":null,"r2":[1],"r3":"s"}"#,
            "[]",
            "\"x\"",
            "null",
            "5"
        ]).prop_map(Some),
    ];
    prop_oneof![5 => Just(None), 1 => (state, responses).prop_map(Some)].boxed()
}

fn listen_params() -> BoxedStrategy<Value> {
    lit_values(&[
        r#"{"notifications":{"toolsListChanged":true}}"#,
        r#"{"notifications":{"resourceSubscriptions":["test://a/static","era://static","nowhere://x"]}}"#,
        r#"{"notifications":{"promptsListChanged":true,"resourcesListChanged":true}}"#,
        r#"{"notifications":{}}"#,
        "{}",
        r#"{"notifications":"all"}"#,
        r#"{"notifications":{"toolsListChanged":"yes"}}"#,
        r#"{"notifications":{"resourceSubscriptions":"test://a/static"}}"#,
        r#"{"notifications":null}"#,
    ])
}

/// Method and params (without `_meta`), or params that are not an object at all.
fn body() -> BoxedStrategy<(String, Value)> {
    let m = |s: &'static str| Just(s.to_owned());
    prop_oneof![
        3 => (m("server/discover"), Just(json!({}))),
        2 => (m("tools/list"), lit_values(&["{}", r#"{"cursor":"0"}"#, r#"{"cursor":5}"#])),
        8 => (m("tools/call"), tool_call(), retry_fields()).prop_map(|(m, mut p, r)| {
            if let Some((state, responses)) = r {
                p["requestState"] = state;
                if let Some(x) = responses {
                    p["inputResponses"] = x;
                }
            }
            (m, p)
        }),
        1 => (m("prompts/get"), lit_values(&[r#"{"name":"greet","arguments":{"who":"w"}}"#, r#"{"name":"era-greet","arguments":{"who":"w"}}"#, r#"{"name":"nope"}"#])),
        1 => (m("resources/read"), lit_values(&[r#"{"uri":"test://a/static"}"#, r#"{"uri":"era://static"}"#, r#"{"uri":5}"#, r#"{"uri":"nowhere://x"}"#])),
        1 => (m("resources/list"), Just(json!({}))),
        1 => (m("resources/templates/list"), Just(json!({}))),
        1 => (m("prompts/list"), Just(json!({}))),
        1 => (m("completion/complete"), lit_values(&[r#"{"ref":{"type":"ref/prompt","name":"greet"},"argument":{"name":"who","value":"w"}}"#, r#"{"ref":5}"#])),
        2 => (m("subscriptions/listen"), listen_params()),
        1 => (prop_oneof![m("ping"), m("logging/setLevel"), m("initialize"), m("resources/subscribe"), m("unknown/method"), m("sampling/createMessage")], Just(json!({}))),
    ]
    .boxed()
}

fn send_step() -> BoxedStrategy<Step> {
    let params_shape = prop_oneof![12 => Just(None), 1 => lit_values(&["[]", "\"s\"", "5", "null"]).prop_map(Some)];
    (0..SESSIONS, body(), meta(), params_shape, any::<bool>(), 0u32..1000)
        .prop_map(|(s, (method, mut params), (meta, kind), shape, notify, id)| {
            if let (Some(m), Some(p)) = (meta, params.as_object_mut()) {
                p.insert("_meta".into(), m);
            }
            // Params that are not an object: refused before the envelope is read.
            let (params, kind) = match shape {
                Some(odd) => (odd, Kind::Bad),
                None => (params, kind),
            };
            let mut msg = json!({"jsonrpc": "2.0", "method": method, "params": params});
            // A notification now and then (modern clients send none but cancellations).
            if notify && id % 7 == 0 {
                msg["method"] =
                    json!(if id % 2 == 0 { "notifications/cancelled" } else { "notifications/initialized" });
                msg["params"] = json!({"requestId": id % 5 + 1000});
            } else {
                msg["id"] = if id % 3 == 0 { json!(format!("s{id}")) } else { json!(id + 5000) };
            }
            let text = msg.to_string();
            Step::Send { s, text, kind }
        })
        .boxed()
}

fn ask_step() -> BoxedStrategy<Step> {
    let tools = &["sample", "sample", "elicit", "roots", "era-sample", "era-elicit", "era-roots"][..];
    (0..SESSIONS, proptest::sample::select(tools)).prop_map(|(s, t)| Step::Ask { s, tool: t.to_owned() }).boxed()
}

fn retry_step() -> BoxedStrategy<Step> {
    let answers = proptest::sample::select(
        &[Answers::Good, Answers::Good, Answers::WrongShape, Answers::Missing, Answers::Unknown, Answers::NotObject][..],
    );
    (0..SESSIONS, 0..=SESSIONS, answers, proptest::bool::weighted(0.15))
        .prop_map(|(s, from, answers, rename)| Step::Retry { s, from, answers, rename })
        .boxed()
}

/// A case: a few steps, most of them calls and retries.
fn case() -> BoxedStrategy<Vec<Step>> {
    prop::collection::vec(prop_oneof![3 => send_step(), 2 => ask_step(), 3 => retry_step()], 1..8).boxed()
}

// ---------------------------------------------------------------------------------------

fn start_router(extra: &str) -> Router {
    let settings = format!(
        "request_timeout_ms: {REQUEST_TIMEOUT_MS}\n\
         init_timeout_ms: 60000\n\
         max_message_bytes: {MAX_MESSAGE}\n\
         shutdown_grace_ms: 300\n\
         restart: {{initial_backoff_ms: 100}}\n\
         health: {{interval_ms: 0, failure_threshold: 10000}}\n\
         breaker: {{failure_threshold: 10000}}\n{extra}"
    );
    common::router(&settings, &[common::backend("a", &[]), common::modern::modern_backend("m", "auto")])
}

fn quiescent(r: &Router, within: Duration) -> Result<(), String> {
    wait_for(within, || {
        let st = r.status();
        for b in st["backends"].as_array().into_iter().flatten() {
            if b["in_flight"] != 0 || b["queue_depth"] != 0 {
                return Err(format!(
                    "backend {}: in_flight {}, queue_depth {}",
                    b["name"], b["in_flight"], b["queue_depth"]
                ));
            }
        }
        Ok(())
    })
}

#[test]
fn fuzz_eras() {
    harness::watchdog(DEFAULT_CASES, Duration::from_millis(400));
    harness::install_panic_hook();
    harness::install_logger();
    let r = start_router("");
    let st = r.status();
    assert!(st["backends"].as_array().unwrap().iter().all(|b| b["state"] == "ready"), "both backends must be up: {st}");
    assert_eq!(st["backends"][1]["era"], "modern", "{st}");
    let run = Run { router: &r, next_case: AtomicU64::new(0) };
    let warm = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": "hi"}, "_meta": valid_meta(json!({}))}});
    run_case(&run, &[Step::Send { s: 0, text: warm.to_string(), kind: Kind::Valid }]).expect("warm-up call");
    let baseline = harness::all_threads();
    let check = |steps: &Vec<Step>| run_case(&run, steps);
    let target = Target {
        name: "eras",
        default_cases: DEFAULT_CASES,
        known_unfixed: KNOWN_UNFIXED,
        check: &check,
        to_json: |steps: &Vec<Step>| Value::Array(steps.iter().map(step_to_json).collect()),
        from_json: |v: &Value| v.as_array()?.iter().map(step_from_json).collect(),
    };
    harness::run(&target, case());

    // Every call ended: parked ones time out on their backends, helpers end.
    let settled = quiescent(&r, Duration::from_secs(20));
    let threads = harness::threads_back_to(baseline, Duration::from_secs(20));
    r.shutdown(Duration::from_millis(300));
    drop(r);
    let after = harness::nothing_left(Duration::from_secs(10));
    assert!(settled.is_ok(), "calls left in flight: {settled:?}");
    assert!(threads.is_ok(), "threads accumulated: {threads:?}");
    assert!(after.is_ok(), "after shutdown: {after:?}");
}

// ---------------------------------------------------------------------------------------
// What the fuzzer can only sample, pinned.

fn call(s: &Session, id: u64, params: Value) -> Value {
    common::call(s, id, "tools/call", params)
}

fn sample_call() -> Value {
    json!({"name": "sample", "arguments": {"prompt": "q?"}, "_meta": valid_meta(json!({"sampling": {}}))})
}

fn asked(v: &Value) -> (String, String) {
    let r = &v["result"];
    assert_eq!(r["resultType"], "input_required", "{v}");
    let key = r["inputRequests"].as_object().and_then(|o| o.keys().next().cloned()).expect("an input request");
    (r["requestState"].as_str().expect("a requestState").to_owned(), key)
}

#[test]
fn a_state_refused_to_another_client_stays_good_for_its_own() {
    let r = common::router("", &[common::backend("a", &[])]);
    let (a1, b, a2) =
        (r.session(Some("alice")).unwrap(), r.session(Some("bob")).unwrap(), r.session(Some("alice")).unwrap());
    let (state, key) = asked(&call(&a1, 1, sample_call()));
    let mut retry = sample_call();
    retry["requestState"] = json!(state);
    retry["inputResponses"] = json!({&key: good_answer("sampling/createMessage")});
    let v = call(&b, 2, retry.clone());
    assert_eq!(v["error"]["code"], -32602, "another client's retry is refused: {v}");
    assert!(!v.to_string().contains(&state));
    // The same client on another session (a stateless front's next request) resumes it.
    let v = call(&a2, 3, retry);
    assert_eq!(
        (v["result"]["resultType"].as_str(), v["result"]["content"][0]["text"].as_str()),
        (Some("complete"), Some("fuzzed")),
        "{v}"
    );
}

#[test]
fn a_state_nobody_comes_back_for_expires_and_its_call_is_cancelled() {
    // The backend's own deadline is long: only the state's expiry (the router's request
    // timeout after the answer) can end the call.
    let backend = common::backend("a", &[]).replace("\n    command", "\n    timeout_ms: 120000\n    command");
    let r = common::router("request_timeout_ms: 400", &[backend]);
    let s = r.session(Some("alice")).unwrap();
    let (state, key) = asked(&call(&s, 1, sample_call()));
    assert_eq!(r.status()["backends"][0]["in_flight"], 1);
    // Expiry is looked at whenever a state is presented: present a forged one until the
    // parked call has been refused and ended.
    let mut forged = sample_call();
    forged["requestState"] = json!(format!("{STATE_PREFIX}{}", "0".repeat(32)));
    let mut n = 10;
    let ended = wait_for(Duration::from_secs(30), || {
        n += 1;
        assert_eq!(call(&s, n, forged.clone())["error"]["code"], -32602);
        match r.status()["backends"][0]["in_flight"].as_u64() {
            Some(0) => Ok(()),
            other => Err(format!("in_flight {other:?}")),
        }
    });
    assert!(ended.is_ok(), "the parked call never ended: {ended:?}");
    let mut retry = sample_call();
    retry["requestState"] = json!(state);
    retry["inputResponses"] = json!({key: good_answer("sampling/createMessage")});
    let v = call(&s, 2, retry);
    assert_eq!(v["error"]["code"], -32602, "an expired state is unknown: {v}");
}

#[test]
fn closing_a_session_ends_its_modern_call_and_cancels_it_on_the_backend() {
    // A deadline far away: only the close can end the call in time.
    let r = common::router("request_timeout_ms: 120000", &[common::backend("a", &[])]);
    let s = Arc::new(r.session(Some("alice")).unwrap());
    // A call that can take input runs on a helper (session/mrtr.rs).
    let params = json!({"name": "slow", "arguments": {"ms": 600_000}, "_meta": valid_meta(json!({"sampling": {}}))});
    let caller = Arc::clone(&s);
    let call = std::thread::spawn(move || {
        let msg = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params});
        caller.handle(&msg.to_string())
    });
    let in_flight = || r.status()["backends"][0]["in_flight"].as_u64().unwrap_or(0);
    wait_for(Duration::from_secs(30), || if in_flight() == 1 { Ok(()) } else { Err("not yet".to_owned()) }).unwrap();
    s.close();
    let ended = wait_for(Duration::from_secs(20), || {
        if in_flight() == 0 { Ok(()) } else { Err(format!("in_flight {}", in_flight())) }
    });
    assert!(ended.is_ok(), "the backend call outlived its session: {ended:?}");
    assert!(call.join().is_ok());
}

#[test]
fn a_parked_call_expires_on_its_own() {
    let backend = common::backend("a", &[]).replace("\n    command", "\n    timeout_ms: 120000\n    command");
    let r = common::router("request_timeout_ms: 400", &[backend]);
    let s = r.session(Some("alice")).unwrap();
    asked(&call(&s, 1, sample_call()));
    assert_eq!(r.status()["backends"][0]["in_flight"], 1);
    // Nobody presents any state: the router alone must end the call, 0.4 s after the answer.
    let ended = wait_for(Duration::from_secs(20), || match r.status()["backends"][0]["in_flight"].as_u64() {
        Some(0) => Ok(()),
        other => Err(format!("in_flight {other:?}")),
    });
    assert!(ended.is_ok(), "the parked call outlived its state: {ended:?}");
}
