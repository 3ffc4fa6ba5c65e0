//! Fuzz target 2: a hostile backend. The test server's `--emit-file` writes generated lines
//! to its stdout once initialized (valid and invalid JSON-RPC, responses to ids the router
//! never sent, duplicate responses, notifications with wrong params, floods, server-to-client
//! requests with odd ids, giant lines, bytes that are not UTF-8) and then keeps serving.
//! Each case starts a router with that backend (`h`) and a normal one (`n`), drives a few
//! calls to both and checks: no panic on any thread, every call answered once, in time and
//! well formed, the normal backend's calls succeed, nothing left pending, and after
//! shutdown no router thread and no child process is left.
//!
//! Starting processes is slow, so the bounded run (in `./scripts/test`) is small; see
//! tests/fuzz/harness.rs for the environment variables and `scripts/fuzz` for longer runs.

mod common;
#[path = "fuzz/harness.rs"]
mod harness;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use harness::{Failure, Target, panic_count, panics_since, wait_for};
use mcprouter::{Router, Session};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Saved cases that fail on the current code because of a bug someone is fixing. Each entry
/// names the bug; delete it when the fix lands.
const KNOWN_UNFIXED: &[(&str, &str)] = &[];

/// About 20 s of debug build on two cores (each case starts two processes and restarts one).
const DEFAULT_CASES: u32 = 40;
const MAX_MESSAGE: usize = 65_536;
const TIMEOUT_MS: u64 = 2000;

/// One line the hostile backend writes, `repeat` times.
#[derive(Debug, Clone)]
struct Item {
    line: Vec<u8>,
    repeat: u32,
}

fn to_json(items: &[Item]) -> Value {
    let lines: Vec<Value> = items
        .iter()
        .map(|i| match std::str::from_utf8(&i.line) {
            Ok(t) => json!({"text": t, "repeat": i.repeat}),
            Err(_) => json!({"hex": i.line.iter().map(|b| format!("{b:02x}")).collect::<String>(), "repeat": i.repeat}),
        })
        .collect();
    Value::Array(lines)
}

fn from_json(v: &Value) -> Option<Vec<Item>> {
    v.as_array()?
        .iter()
        .map(|i| {
            let repeat = u32::try_from(i["repeat"].as_u64()?).ok()?;
            let line = match (i["text"].as_str(), i["hex"].as_str()) {
                (Some(t), _) => t.as_bytes().to_vec(),
                (None, Some(h)) => (0..h.len() / 2)
                    .map(|k| u8::from_str_radix(h.get(2 * k..2 * k + 2)?, 16).ok())
                    .collect::<Option<_>>()?,
                _ => return None,
            };
            Some(Item { line, repeat })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The generator.

type S = BoxedStrategy<String>;

fn lit(items: &'static [&'static str]) -> S {
    proptest::sample::select(items).prop_map(str::to_owned).boxed()
}

fn q(s: &str) -> String {
    Value::from(s).to_string()
}

/// Ids a backend might use: the router's own small integers (so a reply can land on a real
/// pending call), far ones, and every wrong type.
fn id() -> S {
    prop_oneof![
        6 => (0u64..30).prop_map(|n| n.to_string()),
        2 => any::<u64>().prop_map(|n| n.to_string()),
        3 => lit(&["-1", "1.0", "1e2", "18446744073709551616", "null", "true", "{}", "[1]", "\"1\"", "\"abc\"", "\"\"",
                   "\"s-1\"", "\"mcprouter-1\"", "\"\\ud800\""]),
    ]
    .boxed()
}

fn value() -> S {
    prop_oneof![
        lit(&[
            "null",
            "{}",
            "[]",
            "1",
            "\"x\"",
            "true",
            "{\"content\":[]}",
            "{\"tools\":[]}",
            "{\"tools\":\"no\"}",
            "{\"tools\":[{\"name\":\"echo\"}],\"nextCursor\":\"1\"}",
            "{\"tools\":[{\"name\":5}]}",
            "{\"tools\":[{\"name\":\"echo\",\"inputSchema\":{}},{\"name\":\"echo\",\"inputSchema\":{}}]}",
            "{\"resources\":[{\"uri\":\"test://n/static\",\"name\":\"steal\"}]}",
            "{\"resourceTemplates\":[{\"uriTemplate\":\"{+x}\",\"name\":\"t\"}]}",
            "{\"prompts\":[{\"name\":\"\"}]}",
            "{\"content\":[{\"type\":\"text\",\"text\":\"hostile\"}]}",
            "{\"protocolVersion\":\"1999-01-01\"}",
            "{\"code\":-32000,\"message\":\"m\"}",
            "{\"code\":\"x\"}",
            "{\"code\":1.5,\"message\":null}"
        ]),
        "[a-z]{0,8}".prop_map(|s| q(&s)),
        any::<i64>().prop_map(|n| n.to_string()),
    ]
    .boxed()
}

fn token() -> S {
    prop_oneof![
        lit(&["\"mcprouter-p1\"", "\"mcprouter-p2\"", "\"mcprouter-p3\"", "1", "null", "{}", "\"nope\""]),
        (1u32..20).prop_map(|n| format!("\"mcprouter-p{n}\"")),
    ]
    .boxed()
}

/// One hostile line: (bytes, how many times).
fn item() -> BoxedStrategy<Item> {
    let text = |s: S| s.prop_map(|t| Item { line: t.into_bytes(), repeat: 1 }).boxed();
    let flood = |s: S, max: u32| (s, 1..max).prop_map(|(t, n)| Item { line: t.into_bytes(), repeat: n }).boxed();
    prop_oneof![
        // Responses to ids the router never sent (or did): results, errors, both, neither.
        4 => text((id(), value()).prop_map(|(i, r)| format!("{{\"jsonrpc\":\"2.0\",\"id\":{i},\"result\":{r}}}")).boxed()),
        2 => text((id(), value()).prop_map(|(i, e)| format!("{{\"jsonrpc\":\"2.0\",\"id\":{i},\"error\":{e}}}")).boxed()),
        1 => text((id(), value(), value()).prop_map(|(i, r, e)| format!("{{\"jsonrpc\":\"2.0\",\"id\":{i},\"result\":{r},\"error\":{e}}}")).boxed()),
        // The same response twice or more.
        1 => flood((0u64..30).prop_map(|i| format!("{{\"jsonrpc\":\"2.0\",\"id\":{i},\"result\":{{}}}}")).boxed(), 4),
        // Notifications, with params right and wrong.
        2 => text((token(), value()).prop_map(|(t, p)| format!("{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"progressToken\":{t},\"progress\":{p}}}}}")).boxed()),
        1 => text(lit(&["\"test://h/static\"", "\"test://n/static\"", "5", "null", "\"\""]).prop_map(|u| format!("{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/resources/updated\",\"params\":{{\"uri\":{u}}}}}")).boxed()),
        1 => flood(lit(&["tools", "prompts", "resources"]).prop_map(|k| format!("{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/{k}/list_changed\"}}")).boxed(), 200),
        1 => flood(value().prop_map(|d| format!("{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{{\"level\":\"info\",\"data\":{d}}}}}")).boxed(), 3000),
        1 => text((id(), value()).prop_map(|(i, r)| format!("{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{{\"requestId\":{i},\"reason\":{r}}}}}")).boxed()),
        1 => text((lit(&["notifications/unknown", "notifications/initialized", "x"]), value()).prop_map(|(m, p)| format!("{{\"jsonrpc\":\"2.0\",\"method\":{},\"params\":{p}}}", q(&m))).boxed()),
        // Server-to-client requests with odd ids and params.
        2 => text((lit(&["sampling/createMessage", "roots/list", "elicitation/create", "ping", "tools/call", "unknown/x"]), id(), value())
            .prop_map(|(m, i, p)| format!("{{\"jsonrpc\":\"2.0\",\"id\":{i},\"method\":{},\"params\":{p}}}", q(&m))).boxed()),
        1 => flood((0u64..1000).prop_map(|i| format!("{{\"jsonrpc\":\"2.0\",\"id\":\"r{i}\",\"method\":\"roots/list\"}}")).boxed(), 100),
        // A response written as an array of member values (jsonrpc, id, method, params, result).
        1 => text((0u64..30, value()).prop_map(|(i, r)| format!("[\"2.0\",{i},null,{{}},{r}]")).boxed()),
        // Not JSON-RPC at all.
        2 => text(prop_oneof![
            "[ -~]{0,60}",
            lit(&["", " ", "[]", "[{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}]", "{}", "null", "{\"jsonrpc\":\"1.0\",\"id\":1,\"result\":{}}",
                  "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}} trailing", "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":", "\r", "\u{feff}{}"]),
        ].boxed()),
        // Giant lines, the largest over max_message_bytes, with an id in front.
        1 => text((0u64..30, proptest::sample::select(&[1_000usize, 60_000, 70_000, 200_000][..]))
            .prop_map(|(i, n)| format!("{{\"jsonrpc\":\"2.0\",\"id\":{i},\"result\":{{\"content\":[{{\"type\":\"text\",\"text\":\"{}\"}}]}}}}", "x".repeat(n))).boxed()),
        1 => text(proptest::sample::select(&[100usize, 129, 10_000][..]).prop_map(|n| format!("{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}{}}}", "[".repeat(n), "]".repeat(n))).boxed()),
        // Bytes that are not UTF-8, inside and outside a message.
        1 => prop::collection::vec(any::<u8>(), 1..40)
            .prop_map(|mut b| {
                b.retain(|&c| c != b'\n');
                b.push(0xff);
                Item { line: b, repeat: 1 }
            })
            .boxed(),
        1 => Just(Item { line: b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"data\":\"\xc3\x28\xfe\"}}".to_vec(), repeat: 1 }).boxed(),
    ]
    .boxed()
}

fn case() -> BoxedStrategy<Vec<Item>> {
    prop::collection::vec(item(), 0..12).boxed()
}

// ---------------------------------------------------------------------------------------
// One case.

fn write_lines(items: &[Item]) -> std::io::Result<std::path::PathBuf> {
    static N: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "mcprouter-fuzz-backend-{}-{}.lines",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let mut bytes = Vec::new();
    for i in items {
        for _ in 0..i.repeat {
            bytes.extend_from_slice(&i.line);
            bytes.push(b'\n');
        }
    }
    std::fs::write(&path, bytes)?;
    Ok(path)
}

fn start_router(emit: &std::path::Path) -> Result<Router, String> {
    let path = emit.to_str().ok_or("temp path is not UTF-8")?;
    let settings = format!(
        "prefix: always\n\
         request_timeout_ms: {TIMEOUT_MS}\n\
         init_timeout_ms: 3000\n\
         max_message_bytes: {MAX_MESSAGE}\n\
         shutdown_grace_ms: 200\n\
         restart: {{initial_backoff_ms: 100}}\n\
         health: {{interval_ms: 0, failure_threshold: 10000}}\n\
         breaker: {{failure_threshold: 10000}}"
    );
    let backends = [common::backend("h", &["--emit-file", path]), common::backend("n", &[])];
    Router::from_yaml(&common::config(&settings, &backends)).map_err(|e| e.to_string())
}

/// Sends one request; checks the reply is one well-formed answer with our id, in time.
/// Relayed server-to-client requests that arrive meanwhile are answered, as a client would.
fn call(s: &Session, id: u64, method: &str, params: Value) -> Result<Value, Failure> {
    let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
    let began = Instant::now();
    let reply = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.handle(&msg)));
    let took = began.elapsed();
    answer_relays(s)?;
    let what = format!("{method} {params}");
    let reply = match reply {
        Err(_) => return Err(Failure::new("handle panicked", what)),
        Ok(Err(e)) => return Err(Failure::new("handle returned Err", format!("{what}: {e}"))),
        Ok(Ok(None)) => return Err(Failure::new("a request got no reply", what)),
        Ok(Ok(Some(r))) => r,
    };
    // The router's own deadline plus room for a slow, loaded machine.
    if took > Duration::from_millis(TIMEOUT_MS + 3000) {
        return Err(Failure::new("reply came after the deadline", format!("{what}: {took:?}")));
    }
    if std::env::var_os("MCPROUTER_FUZZ_VERBOSE").is_some() {
        println!("  {what} -> {} in {took:?}", reply.chars().take(300).collect::<String>());
    }
    let v: Value =
        serde_json::from_str(&reply).map_err(|e| Failure::new("reply is not JSON", format!("{what}: {e}")))?;
    let well_formed = v["jsonrpc"] == "2.0"
        && v["id"] == json!(id)
        && (v.get("result").is_some() != v.get("error").is_some())
        && v.get("error").is_none_or(|e| e["code"].is_i64() && e["message"].is_string());
    if !well_formed {
        return Err(Failure::new("reply is malformed", format!("{what}: {reply}")));
    }
    Ok(v)
}

/// Reads what the router sent this client on its own, checks each is a JSON-RPC
/// notification or request the client may see, and answers relayed requests.
fn answer_relays(s: &Session) -> Result<(), Failure> {
    while let Ok(Some(ev)) = s.next_event(Duration::ZERO) {
        let bad = |why: &str| {
            Err(Failure::new(format!("event to the client is {why}"), ev.chars().take(300).collect::<String>()))
        };
        // Raw parsing: what a backend wrote may pass through byte for byte, and only has to
        // be JSON, not text serde_json's `Value` can hold (e.g. a lone surrogate escape).
        let Ok(raw) = serde_json::from_str::<&serde_json::value::RawValue>(&ev) else { return bad("not JSON") };
        if !raw.get().starts_with('{') || !ev.contains("\"jsonrpc\":\"2.0\"") {
            return bad("not a JSON-RPC object");
        }
        if std::env::var_os("MCPROUTER_FUZZ_VERBOSE").is_some() {
            println!("  event {}", ev.chars().take(200).collect::<String>());
        }
        let Ok(v) = serde_json::from_str::<Value>(&ev) else { continue };
        if !v["method"].is_string() {
            return bad("without a method");
        }
        // The client used one progress token; a router-internal one must never leak out.
        if v["method"] == "notifications/progress" && v["params"]["progressToken"] != "p" {
            return bad("progress under a token the client never used");
        }
        if let Some(id) = v.get("id") {
            if !(id.is_string() || id.is_i64() || id.is_u64()) {
                return bad("a request with an invalid id");
            }
            let _ = s.handle(&json!({"jsonrpc": "2.0", "id": id, "result": {}}).to_string());
        }
    }
    Ok(())
}

fn text_of(v: &Value) -> Option<&str> {
    v.pointer("/result/content/0/text").and_then(Value::as_str)
}

fn drive(r: &Router) -> Result<(), Failure> {
    let s = r.session(None).map_err(|e| Failure::new("router closed", e.to_string()))?;
    let caps = json!({"sampling": {}, "roots": {"listChanged": true}, "elicitation": {}});
    call(
        &s,
        1,
        "initialize",
        json!({"protocolVersion": "2025-11-25", "capabilities": caps, "clientInfo": {"name": "fuzz", "version": "1"}}),
    )?;
    let _ = s.handle(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    let normal = |v: Value, want: &str, what: &str| -> Result<(), Failure> {
        if text_of(&v) == Some(want) {
            Ok(())
        } else {
            Err(Failure::new("a call to the normal backend failed", format!("{what}: {v}")))
        }
    };
    let calls = |base: u64| -> Result<(), Failure> {
        let n = |k: u64| base + k;
        normal(
            call(&s, n(0), "tools/call", json!({"name": "n__echo", "arguments": {"message": "hello"}}))?,
            "hello",
            "n__echo",
        )?;
        call(&s, n(1), "tools/call", json!({"name": "h__echo", "arguments": {"message": "hello"}}))?;
        call(&s, n(2), "tools/list", json!({}))?;
        normal(
            call(&s, n(3), "tools/call", json!({"name": "n__add", "arguments": {"a": 2, "b": 40}}))?,
            "42",
            "n__add",
        )?;
        call(&s, n(4), "tools/call", json!({"name": "h__slow", "arguments": {"ms": 30}}))?;
        call(
            &s,
            n(5),
            "tools/call",
            json!({"name": "h__progress", "arguments": {"steps": 2}, "_meta": {"progressToken": "p"}}),
        )?;
        call(&s, n(6), "resources/subscribe", json!({"uri": "test://h/static"}))?;
        call(&s, n(7), "resources/read", json!({"uri": "test://h/static"}))?;
        let v = call(&s, n(8), "resources/read", json!({"uri": "test://n/static"}))?;
        if v.pointer("/result/contents/0/text").and_then(Value::as_str) != Some("static n") {
            return Err(Failure::new("a call to the normal backend failed", format!("resources/read n: {v}")));
        }
        call(&s, n(9), "ping", json!({}))?;
        normal(call(&s, n(10), "tools/call", json!({"name": "n__whoami", "arguments": {}}))?, "n", "n__whoami")
    };
    calls(10)?;
    // The lines were written while the router started, before this session existed. Crash
    // the hostile backend so its restart writes them again now that a client is listening
    // (and is the backend's last caller, to whom its requests and logs go).
    call(&s, 30, "tools/call", json!({"name": "h__crash", "arguments": {}}))?;
    let back = wait_for(Duration::from_secs(3), || {
        let st = r.status();
        let h = st["backends"].as_array().and_then(|b| b.iter().find(|b| b["name"] == "h").cloned());
        match h {
            Some(h) if h["state"] == "ready" && h["restarts"].as_u64() >= Some(1) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    if std::env::var_os("MCPROUTER_FUZZ_VERBOSE").is_some() {
        println!("  restarted: {back:?}");
    }
    calls(40)?;
    answer_relays(&s)?;
    // Nothing may stay pending once every call has its answer.
    wait_for(Duration::from_secs(3), || {
        let st = r.status();
        match st["backends"].as_array().into_iter().flatten().find(|b| b["in_flight"] != 0 || b["queue_depth"] != 0) {
            Some(b) => {
                Err(format!("backend {}: in_flight {}, queue_depth {}", b["name"], b["in_flight"], b["queue_depth"]))
            }
            None => Ok(()),
        }
    })
    .map_err(|e| Failure::new("pending calls not back to zero", e))?;
    drop(s);
    Ok(())
}

fn run_case(items: &[Item]) -> Result<(), Failure> {
    let mark = panic_count();
    let path = write_lines(items).map_err(|e| Failure::new("cannot write the lines file", e.to_string()))?;
    let result = match start_router(&path) {
        Err(e) => Err(Failure::new("router did not start", e)),
        Ok(r) => {
            let driven = drive(&r);
            let began = Instant::now();
            r.shutdown(Duration::from_millis(200));
            drop(r);
            let stopped = began.elapsed();
            let clean = harness::nothing_left(Duration::from_secs(5))
                .map_err(|e| Failure::new("shutdown left threads or children", e));
            driven.and(clean).and_then(|()| {
                if stopped > Duration::from_secs(5) {
                    Err(Failure::new("shutdown was slow", format!("{stopped:?}")))
                } else {
                    Ok(())
                }
            })
        }
    };
    let _ = std::fs::remove_file(&path);
    match panics_since(mark) {
        Some(p) => Err(p),
        None => result,
    }
}

#[test]
fn fuzz_backend() {
    harness::watchdog(DEFAULT_CASES, Duration::from_millis(600));
    let check = |items: &Vec<Item>| run_case(items);
    let target = Target {
        name: "backend",
        default_cases: DEFAULT_CASES,
        known_unfixed: KNOWN_UNFIXED,
        check: &check,
        to_json: |items: &Vec<Item>| to_json(items),
        from_json,
    };
    harness::run(&target, case());
}
