//! Issue #11's standing check: one scripted MCP session run directly against a real server
//! and through `mcprouter serve`, comparing what the client observes, in order.
//!
//! The client here is a plain JSON-RPC peer on stdio that records every message it receives:
//! each step's messages up to and including its response, in order; and a "background" set
//! for messages that no step causes and whose timing is the server's own (its `roots/list`
//! request after `initialized`, the log line that follows it, `list_changed`). It answers
//! server-to-client requests (sampling, elicitation, roots, ping) with fixed answers.
//!
//! Every difference fails unless `tests/differential/allow.json` lists it with a reason.
//! Coverage: server-everything over stdio and over Streamable HTTP behind the router, and
//! server-filesystem over stdio (it has no network transport), each against the server
//! spoken to directly on stdio.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn package_script(package: &str) -> PathBuf {
    let script = root().join(".deps/node/node_modules/@modelcontextprotocol").join(package).join("dist/index.js");
    assert!(script.exists(), "{package} is missing: run scripts/deps.sh");
    script
}

/// A peer on the other end of a pipe: the server itself, or `mcprouter serve`.
struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    rx: mpsc::Receiver<Value>,
}

impl Peer {
    fn spawn(mut cmd: Command) -> Peer {
        let mut child =
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("peer starts");
        let stdin = child.stdin.take();
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        Peer { child, stdin, rx }
    }

    fn send(&mut self, v: &Value) {
        writeln!(self.stdin.as_mut().unwrap(), "{v}").unwrap();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One scripted step: a request, or a notification followed by a `ping` that closes it.
struct Step {
    name: &'static str,
    method: &'static str,
    params: Value,
    /// Sent after the first progress notification of this step: the step's request is
    /// then cancelled, and a `ping` closes the step instead of its response.
    cancel_after_progress: bool,
    notification: bool,
}

fn req(name: &'static str, method: &'static str, params: Value) -> Step {
    Step { name, method, params, cancel_after_progress: false, notification: false }
}

fn note(name: &'static str, method: &'static str, params: Value) -> Step {
    Step { name, method, params, cancel_after_progress: false, notification: true }
}

fn cancelled(name: &'static str, method: &'static str, params: Value) -> Step {
    Step { name, method, params, cancel_after_progress: true, notification: false }
}

/// What the client saw.
#[derive(Default)]
struct Observed {
    steps: Vec<(String, Vec<Value>)>,
    background: Vec<Value>,
}

/// Whether a message is the server's own business rather than a step's.
fn is_background(v: &Value) -> bool {
    let m = v["method"].as_str().unwrap_or_default();
    m == "roots/list" || m.ends_with("/list_changed") || (m == "notifications/message" && v.get("id").is_none())
}

/// The harness's fixed answers to server-to-client requests.
fn answer(method: &str, params: &Value, roots: &Value) -> Value {
    match method {
        "roots/list" => json!({"roots": roots}),
        "sampling/createMessage" => {
            json!({"role": "assistant", "content": {"type": "text", "text": "sampled"}, "model": "harness"})
        }
        "elicitation/create" if params["mode"] == "url" => json!({"action": "accept"}),
        "elicitation/create" => {
            json!({"action": "accept", "content": {"color": "blue", "name": "harness", "check": true,
            "firstLine": "harness", "email": "h@example.com", "homepage": "https://example.com",
            "birthdate": "2000-01-01", "integer": 7, "number": 1.5, "untitledSingleSelectEnum": "option1",
            "titledSingleSelectEnum": "option1", "untitledMultipleSelectEnum": ["option1"],
            "titledMultipleSelectEnum": ["option1"], "legacyTitledEnum": "option1"}})
        }
        _ => json!({}),
    }
}

/// A condition the server must reach before the script goes on (waited for by repeating an
/// unrecorded call): the tool call to repeat, and the test on its result.
type Settle<'a> = Option<(Value, &'a dyn Fn(&Value) -> bool)>;

/// Sends an unrecorded request and returns its response, answering the server's requests.
fn unrecorded(peer: &mut Peer, id: u64, method: &str, params: &Value, roots: &Value, seen: &mut Observed) -> Value {
    peer.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
    loop {
        let v = peer.rx.recv_timeout(Duration::from_secs(60)).expect("a reply to an unrecorded call");
        if let (Some(m), Some(rid)) = (v["method"].as_str(), v.get("id")) {
            let reply = answer(m, &v["params"], roots);
            peer.send(&json!({"jsonrpc": "2.0", "id": rid, "result": reply}));
        }
        if v.get("method").is_none() && v["id"] == id {
            return v;
        }
        if is_background(&v) {
            seen.background.push(strip_id(v));
        }
    }
}

/// Runs `script` against `peer`: `initialize` first (with `caps`), then each step.
fn run(peer: &mut Peer, caps: &Value, roots: &Value, script: &[Step], settle: Settle<'_>) -> Observed {
    let mut seen = Observed::default();
    let init = json!({"protocolVersion": "2025-11-25", "capabilities": caps, "clientInfo": {"name": "differential", "version": "1"}});
    let mut steps: Vec<Step> =
        vec![req("initialize", "initialize", init), note("initialized", "notifications/initialized", json!({}))];
    steps.extend(script.iter().map(|s| Step { params: s.params.clone(), ..*s }));
    for (n, step) in steps.iter().enumerate() {
        let id = 1000 + n as u64;
        let mut got = Vec::new();
        if step.notification {
            peer.send(&json!({"jsonrpc": "2.0", "method": step.method, "params": step.params}));
        } else {
            peer.send(&json!({"jsonrpc": "2.0", "id": id, "method": step.method, "params": step.params}));
        }
        // A notification or a cancelled request is closed by a ping: everything the peer
        // sent before the ping's reply belongs to the step.
        let mut closing = if step.notification {
            peer.send(&json!({"jsonrpc": "2.0", "id": id + 500, "method": "ping"}));
            id + 500
        } else {
            id
        };
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let v = peer.rx.recv_timeout(left).unwrap_or_else(|_| panic!("step {}: no reply", step.name));
            if let (Some(method), Some(rid)) = (v["method"].as_str(), v.get("id")) {
                let reply = answer(method, &v["params"], roots);
                peer.send(&json!({"jsonrpc": "2.0", "id": rid, "result": reply}));
            }
            let is_progress = v["method"] == "notifications/progress";
            if v.get("method").is_none() && v["id"] == closing {
                got.push(json!({"response": strip_id(v)}));
                break;
            }
            if is_background(&v) {
                seen.background.push(strip_id(v));
                continue;
            }
            if step.cancel_after_progress && is_progress && closing == id {
                peer.send(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": id, "reason": "differential"}}));
                peer.send(&json!({"jsonrpc": "2.0", "id": id + 500, "method": "ping"}));
                closing = id + 500;
            }
            got.push(strip_id(v));
        }
        seen.steps.push((step.name.to_owned(), got));
        if n == 1
            && let Some((params, done)) = &settle
        {
            let end = Instant::now() + Duration::from_secs(30);
            for k in 0.. {
                let v = unrecorded(peer, 900_000 + k, "tools/call", params, roots, &mut seen);
                if done(&v) {
                    break;
                }
                assert!(Instant::now() < end, "the server never settled: {v}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    seen
}

/// Ids of server-to-client requests are the sender's business (the router renumbers them);
/// the client's own ids are the same on both sides and kept.
fn strip_id(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        if o.contains_key("method") {
            o.remove("id");
        }
        o.remove("jsonrpc");
    }
    mask(v)
}

/// Masks what differs between any two runs even directly: times and random UUIDs.
fn mask(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(mask_text(&s)),
        Value::Array(a) => Value::Array(a.into_iter().map(mask).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, mask(v))).collect()),
        other => other,
    }
}

fn mask_text(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if is_uuid(&b[i..]) {
            out.push_str("<uuid>");
            i += 36;
        } else if is_timestamp(&b[i..]) {
            out.push_str("<time>");
            i += 19;
            while i < b.len() && (b[i].is_ascii_digit() || matches!(b[i], b'.' | b'Z' | b'+' | b':' | b'-')) {
                i += 1;
            }
        } else {
            let ch = s[i..].chars().next().unwrap_or_default();
            out.push(ch);
            i += ch.len_utf8().max(1);
        }
    }
    out
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() >= 36
        && (0..36).all(|i| if matches!(i, 8 | 13 | 18 | 23) { b[i] == b'-' } else { b[i].is_ascii_hexdigit() })
}

/// `YYYY-MM-DDTHH:MM:SS`
fn is_timestamp(b: &[u8]) -> bool {
    let shape = b"dddd-dd-ddTdd:dd:dd";
    b.len() >= shape.len() && shape.iter().zip(b).all(|(s, c)| if *s == b'd' { c.is_ascii_digit() } else { s == c })
}

/// Paths (`/step/index/key/...`) where `a` and `b` differ.
fn diff(a: &Value, b: &Value, path: String, out: &mut Vec<(String, String)>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let (va, vb) = (x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null));
                diff(va, vb, format!("{path}/{k}"), out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                diff(va, vb, format!("{path}/{i}"), out);
            }
        }
        _ if a == b => {}
        _ => out.push((path, format!("direct {} | routed {}", short(a), short(b)))),
    }
}

fn short(v: &Value) -> String {
    let t = v.to_string();
    if t.len() > 300 { format!("{}…", &t[..t.char_indices().nth(300).map_or(t.len(), |(i, _)| i)]) } else { t }
}

/// One documented difference, for a server (or `*`) over a transport (or `*`): a `path`
/// prefix (`/<step>/<message index>/...`) where values may differ, a `remove`d text, taken
/// out of every string before comparing, or a `background` message that may be missing.
struct Allowed {
    server: String,
    transport: String,
    path: Option<String>,
    remove: Option<String>,
    /// A background message (canonical JSON) that may be seen on one side only.
    background: Option<String>,
}

fn allowed(server: &str, transport: &str) -> Vec<Allowed> {
    let text = std::fs::read_to_string(root().join("tests/differential/allow.json")).expect("the allow-list");
    let list: Value = serde_json::from_str(&text).expect("the allow-list is JSON");
    let field = |e: &Value, k: &str| e[k].as_str().map(str::to_owned);
    list.as_array()
        .expect("an array")
        .iter()
        .map(|e| {
            assert!(e["reason"].as_str().is_some_and(|r| r.len() > 20), "every allowed difference says why: {e}");
            Allowed {
                server: field(e, "server").unwrap_or_else(|| "*".into()),
                transport: field(e, "transport").unwrap_or_else(|| "*".into()),
                path: field(e, "path"),
                remove: field(e, "remove"),
                background: e.get("background").map(|b| canonical(b, &[]).to_string()),
            }
        })
        .filter(|a| (a.server == "*" || a.server == server) && (a.transport == "*" || a.transport == transport))
        .collect()
}

/// `v` with object keys sorted, so that key order never counts as a difference.
fn canonical(v: &Value, remove: &[&str]) -> Value {
    match v {
        Value::String(s) => Value::String(remove.iter().fold(s.clone(), |s, r| s.replace(r, ""))),
        Value::Array(a) => Value::Array(a.iter().map(|v| canonical(v, remove)).collect()),
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            Value::Object(keys.into_iter().map(|k| (k.clone(), canonical(&o[k], remove))).collect())
        }
        other => other.clone(),
    }
}

fn compare(server: &str, transport: &str, direct: &Observed, routed: &Observed) {
    let allow = allowed(server, transport);
    let remove: Vec<&str> = allow.iter().filter_map(|a| a.remove.as_deref()).collect();
    let as_value = |o: &Observed| {
        let mut steps = serde_json::Map::new();
        for (name, msgs) in &o.steps {
            steps.insert(name.clone(), canonical(&Value::Array(msgs.clone()), &remove));
        }
        // The background is compared as a set: its timing and repetitions are the server's.
        let mut bg: Vec<String> = o
            .background
            .iter()
            .map(|v| canonical(v, &remove).to_string())
            .filter(|m| !allow.iter().any(|a| a.background.as_ref() == Some(m)))
            .collect();
        bg.sort();
        bg.dedup();
        steps.insert("background".into(), Value::Array(bg.into_iter().map(Value::String).collect()));
        Value::Object(steps)
    };
    let (d, r) = (as_value(direct), as_value(routed));
    let mut found = Vec::new();
    diff(&d, &r, String::new(), &mut found);
    // The background differs as sets: name what is on one side only.
    if let Some(i) = found.iter().position(|(p, _)| p == "/background") {
        let set = |v: &Value| v["background"].as_array().cloned().unwrap_or_default();
        let (ds, rs) = (set(&d), set(&r));
        let only =
            |a: &[Value], b: &[Value]| a.iter().filter(|x| !b.contains(x)).map(Value::to_string).collect::<Vec<_>>();
        found[i].1 = format!("only direct {:?} | only routed {:?}", only(&ds, &rs), only(&rs, &ds));
    }
    let unexplained: Vec<String> = found
        .iter()
        .filter(|(path, _)| !allow.iter().any(|a| a.path.as_ref().is_some_and(|p| path.starts_with(p.as_str()))))
        .map(|(path, what)| format!("  {path}: {what}"))
        .collect();
    eprintln!(
        "differential {server} over {transport}: {} steps, {} differences, {} allowed",
        direct.steps.len(),
        found.len(),
        found.len() - unexplained.len()
    );
    assert!(
        unexplained.is_empty(),
        "{server} through the router over {transport} differs from direct:\n{}",
        unexplained.join("\n")
    );
}

fn node(args: &[&Path], tail: &[&str]) -> Command {
    let mut c = Command::new("node");
    c.arg("--require").arg(root().join("tests/support/loopback.cjs"));
    c.args(args).args(tail);
    c
}

fn serve(name: &str, backend_yaml: &str) -> Peer {
    let path = std::env::temp_dir().join(format!("mcprouter-diff-{name}-{}.yaml", std::process::id()));
    std::fs::write(&path, format!("backends:\n{backend_yaml}")).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--config"]).arg(&path).args(["--log-level", "error"]);
    Peer::spawn(cmd)
}

fn stdio_backend(script: &Path, args: &[&str]) -> String {
    let mut all = vec!["--require".to_owned(), root().join("tests/support/loopback.cjs").display().to_string()];
    all.push(script.display().to_string());
    all.extend(args.iter().map(|a| (*a).to_owned()));
    format!("  - name: srv\n    command: node\n    args: {}\n", serde_json::to_string(&all).unwrap())
}

fn everything_script() -> Vec<Step> {
    let uri = "demo://resource/static/document/architecture.md";
    vec![
        req("tools/list", "tools/list", json!({})),
        req("resources/list", "resources/list", json!({})),
        req("resources/templates/list", "resources/templates/list", json!({})),
        req("prompts/list", "prompts/list", json!({})),
        req("call echo", "tools/call", json!({"name": "echo", "arguments": {"message": "hello"}})),
        req("call get-sum", "tools/call", json!({"name": "get-sum", "arguments": {"a": 2, "b": 3}})),
        req(
            "call structured",
            "tools/call",
            json!({"name": "get-structured-content", "arguments": {"location": "New York"}}),
        ),
        req("call image", "tools/call", json!({"name": "get-tiny-image", "arguments": {}})),
        req("call unknown tool", "tools/call", json!({"name": "no-such-tool", "arguments": {}})),
        req("call bad arguments", "tools/call", json!({"name": "get-sum", "arguments": {"a": "x"}})),
        req(
            "progress",
            "tools/call",
            json!({"name": "trigger-long-running-operation", "arguments": {"duration": 0.3, "steps": 3}, "_meta": {"progressToken": "p1"}}),
        ),
        req("read resource", "resources/read", json!({"uri": uri})),
        req("read unknown resource", "resources/read", json!({"uri": "demo://nowhere/x"})),
        req("prompt", "prompts/get", json!({"name": "simple-prompt"})),
        req("prompt with arguments", "prompts/get", json!({"name": "args-prompt", "arguments": {"city": "Paris"}})),
        req(
            "completion",
            "completion/complete",
            json!({"ref": {"type": "ref/prompt", "name": "completable-prompt"}, "argument": {"name": "department", "value": "E"}}),
        ),
        req("set log level", "logging/setLevel", json!({"level": "debug"})),
        req(
            "sampling",
            "tools/call",
            json!({"name": "trigger-sampling-request", "arguments": {"prompt": "hi", "maxTokens": 10}}),
        ),
        req("elicitation", "tools/call", json!({"name": "trigger-elicitation-request", "arguments": {}})),
        req("roots", "tools/call", json!({"name": "get-roots-list", "arguments": {}})),
        req("subscribe", "resources/subscribe", json!({"uri": uri})),
        req("unsubscribe", "resources/unsubscribe", json!({"uri": uri})),
        note("roots changed", "notifications/roots/list_changed", json!({})),
        cancelled(
            "cancel",
            "tools/call",
            json!({"name": "trigger-long-running-operation", "arguments": {"duration": 3, "steps": 30}, "_meta": {"progressToken": "p2"}}),
        ),
        req("unknown method", "no/such/method", json!({})),
        req("ping", "ping", json!({})),
    ]
}

/// The script did exercise what it claims: each (step, method) was observed in that step
/// on both sides (so a comparison of two empty observations cannot pass).
fn assert_covers(o: &Observed, want: &[(&str, &str)]) {
    for (step, method) in want {
        let msgs = &o.steps.iter().find(|(n, _)| n == step).unwrap_or_else(|| panic!("no step {step}")).1;
        assert!(msgs.iter().any(|m| m["method"] == *method), "step {step} saw no {method}: {msgs:?}");
    }
}

const EVERYTHING_COVERS: &[(&str, &str)] = &[
    ("progress", "notifications/progress"),
    ("sampling", "sampling/createMessage"),
    ("elicitation", "elicitation/create"),
    ("cancel", "notifications/progress"),
];

fn everything_caps() -> (Value, Value) {
    let caps = json!({"roots": {"listChanged": true}, "sampling": {}, "elicitation": {"form": {}}});
    (caps, json!([{"uri": "file:///differential/root", "name": "harness root"}]))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn server_everything_over_stdio_looks_the_same_through_the_router() {
    watchdog(600);
    let script = package_script("server-everything");
    let (caps, roots) = everything_caps();
    let direct = run(&mut Peer::spawn(node(&[&script], &["stdio"])), &caps, &roots, &everything_script(), None);
    let routed = run(
        &mut serve("everything-stdio", &stdio_backend(&script, &["stdio"])),
        &caps,
        &roots,
        &everything_script(),
        None,
    );
    compare("server-everything", "stdio", &direct, &routed);
    assert_covers(&direct, EVERYTHING_COVERS);
    assert_covers(&routed, EVERYTHING_COVERS);
}

#[test]
fn server_everything_over_streamable_http_looks_the_same_through_the_router() {
    watchdog(600);
    let script = package_script("server-everything");
    let port = free_port();
    let mut server = node(&[&script], &["streamableHttp"]);
    server.env("PORT", port.to_string()).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let mut server = server.spawn().expect("node starts");
    let end = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "server-everything did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (caps, roots) = everything_caps();
    let direct = run(&mut Peer::spawn(node(&[&script], &["stdio"])), &caps, &roots, &everything_script(), None);
    let backend = format!("  - name: srv\n    transport: streamable_http\n    url: http://127.0.0.1:{port}/mcp\n");
    let routed = run(&mut serve("everything-http", &backend), &caps, &roots, &everything_script(), None);
    let _ = server.kill();
    let _ = server.wait();
    compare("server-everything", "streamable_http", &direct, &routed);
    assert_covers(&routed, EVERYTHING_COVERS);
}

#[test]
fn server_filesystem_over_stdio_looks_the_same_through_the_router() {
    watchdog(600);
    let script = package_script("server-filesystem");
    let base = std::env::temp_dir().join(format!("mcprouter-diff-fs-{}", std::process::id()));
    let (inside, outside) = (base.join("inside"), base.join("outside"));
    std::fs::create_dir_all(&inside).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(inside.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(outside.join("secret.txt"), "not for this client").unwrap();
    let base = base.canonicalize().unwrap();
    let inside = inside.canonicalize().unwrap();
    let caps = json!({"roots": {"listChanged": true}});
    let roots = json!([{"uri": format!("file://{}", inside.display()), "name": "inside"}]);
    let p = |f: &Path| f.display().to_string();
    let steps = vec![
        req("tools/list", "tools/list", json!({})),
        req("allowed directories", "tools/call", json!({"name": "list_allowed_directories", "arguments": {}})),
        req(
            "read inside",
            "tools/call",
            json!({"name": "read_text_file", "arguments": {"path": p(&inside.join("a.txt"))}}),
        ),
        req("list inside", "tools/call", json!({"name": "list_directory", "arguments": {"path": p(&inside)}})),
        req(
            "read outside",
            "tools/call",
            json!({"name": "read_text_file", "arguments": {"path": p(&base.join("outside/secret.txt"))}}),
        ),
        req(
            "write inside",
            "tools/call",
            json!({"name": "write_file", "arguments": {"path": p(&inside.join("b.txt")), "content": "beta"}}),
        ),
        req("unknown tool", "tools/call", json!({"name": "no_such_tool", "arguments": {}})),
        req("ping", "ping", json!({})),
    ];
    let args = [base.to_str().unwrap()];
    // The server narrows its directories to the client's roots once it has them.
    let narrowed = |v: &Value| {
        let text = v["result"]["content"][0]["text"].as_str().unwrap_or_default();
        text.contains(&p(&inside)) && !text.lines().any(|l| l.trim() == p(&base))
    };
    let settle =
        || Some((json!({"name": "list_allowed_directories", "arguments": {}}), &narrowed as &dyn Fn(&Value) -> bool));
    let direct = run(&mut Peer::spawn(node(&[&script], &args)), &caps, &roots, &steps, settle());
    std::fs::remove_file(inside.join("b.txt")).unwrap();
    let routed = run(&mut serve("filesystem", &stdio_backend(&script, &args)), &caps, &roots, &steps, settle());
    let _ = std::fs::remove_dir_all(&base);
    compare("server-filesystem", "stdio", &direct, &routed);
}

#[test]
fn server_everything_offers_each_client_what_it_would_offer_it_directly() {
    // Issue #11 item 4: the tools a server lists depend on the client's capabilities (no
    // sampling tool for a client without sampling, a URL-elicitation tool only for a client
    // with URL elicitation). Through serve, the backend is told the client's own.
    watchdog(600);
    let script = package_script("server-everything");
    let steps = vec![req("tools/list", "tools/list", json!({}))];
    for caps in [json!({}), json!({"sampling": {}}), json!({"elicitation": {"url": {}}}), json!({"elicitation": {}})] {
        let direct = run(&mut Peer::spawn(node(&[&script], &["stdio"])), &caps, &json!([]), &steps, None);
        let routed =
            run(&mut serve("everything-caps", &stdio_backend(&script, &["stdio"])), &caps, &json!([]), &steps, None);
        compare("server-everything", "stdio", &direct, &routed);
    }
}
