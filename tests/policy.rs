//! Who may call what, and how much (issue #14), end to end: two clients with different
//! groups over the library and over `mcprouter serve`, the annotation rule against
//! server-filesystem, and rate limits, caps and quotas judged by counts.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use mcprouter::{Router, Session};
use serde_json::{Value, json};

const NOT_PERMITTED: i64 = -32005;
const RATE_LIMITED: i64 = -32006;

/// Two test servers (alpha and beta, whose shared tool names get prefixed) and a team:
/// `reader` may call only echo and whoami, and nothing on beta; `writer` anything but crash.
fn team(extra: &str) -> String {
    let mut y = config("", &[backend("alpha", &[]), backend("beta", &["--many-tools", "2"])]);
    y.push_str(
        "clients:\n  - name: reader\n    groups: [readers]\n  - name: writer\n    groups: [writers]\n  - name: bot\n    groups: [bots]\n",
    );
    y.push_str(
        "policy:\n  rules:\n    - groups: [readers]\n      tools: {allow: [\"*echo\", \"*whoami\"]}\n      backends: {deny: [beta]}\n    - groups: [writers, bots]\n      tools: {deny: [\"*crash\"]}\n",
    );
    y.push_str(extra);
    y
}

fn start(yaml: &str) -> Router {
    watchdog(240);
    Router::from_yaml(yaml).expect("router starts")
}

fn opened(r: &Router, who: &str) -> Session {
    let s = r.session(Some(who)).expect("session");
    initialize(&s, json!({}));
    s
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn two_clients_see_different_lists_and_a_denied_call_is_refused() {
    let r = start(&team(""));
    let (reader, writer, stranger) = (opened(&r, "reader"), opened(&r, "writer"), opened(&r, "stranger"));
    assert_eq!(sorted(tool_names(&reader)), ["alpha__echo", "alpha__whoami"]);
    let w = tool_names(&writer);
    assert!(w.contains(&"beta__echo".to_owned()) && w.contains(&"t0001".to_owned()), "{w:?}");
    assert!(!w.iter().any(|n| n.ends_with("crash")), "{w:?}");
    assert!(tool_names(&stranger).is_empty(), "default_client is deny");

    assert_eq!(tool_text(&reader, "alpha__echo", json!({"message": "hi"})).as_deref(), Ok("hi"));
    let refused = call(&reader, 1, "tools/call", json!({"name": "alpha__add", "arguments": {"a": 1, "b": 2}}));
    assert_eq!(refused["error"]["code"], NOT_PERMITTED, "{refused}");
    assert_eq!(refused["error"]["data"]["rule"], "policy.rules[0].tools.allow", "{refused}");
    let refused = call(&reader, 2, "tools/call", json!({"name": "beta__echo", "arguments": {"message": "x"}}));
    assert_eq!(refused["error"]["data"]["rule"], "policy.rules[0].backends.deny", "{refused}");
    let refused = call(&stranger, 3, "tools/call", json!({"name": "alpha__echo", "arguments": {"message": "x"}}));
    assert_eq!(
        (refused["error"]["code"].as_i64(), refused["error"]["data"]["rule"].as_str()),
        (Some(NOT_PERMITTED), Some("default_client"))
    );
    assert_eq!(tool_text(&writer, "beta__echo", json!({"message": "w"})).as_deref(), Ok("w"));
    assert_eq!(tool_text(&writer, "alpha__crash", json!({})).map_err(|e| e.0), Err(NOT_PERMITTED));
    // A name that does not exist is still "unknown", not a denial.
    assert_eq!(tool_text(&reader, "nope", json!({})).map_err(|e| e.0), Err(-32602));

    let m = r.metrics();
    assert!(m.contains("mcprouter_policy_denials_total{client=\"reader\",backend=\"alpha\"} 1"), "{m}");
    assert!(m.contains("mcprouter_policy_denials_total{client=\"reader\",backend=\"beta\"} 1"), "{m}");
    assert!(m.contains("mcprouter_policy_denials_total{client=\"\",backend=\"alpha\"} 1"), "{m}");
    assert!(!m.contains("stranger"), "an unknown client id never becomes a label");
    r.shutdown(Duration::from_secs(1));
}

#[test]
fn a_named_fallback_serves_unknown_clients_and_prompts_and_resources_are_filtered() {
    let extra = "default_client: reader\n";
    let r = start(&team(extra).replace(
        "      backends: {deny: [beta]}\n",
        "      backends: {deny: [beta]}\n      prompts: {deny: [\"*greet\"]}\n      resources: {allow: [\"*a\"]}\n",
    ));
    let anon = opened(&r, "someone");
    assert_eq!(sorted(tool_names(&anon)), ["alpha__echo", "alpha__whoami"]);
    let prompts = call(&anon, 1, "prompts/list", json!({}));
    let names: Vec<&str> =
        prompts["result"]["prompts"].as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    assert!(!names.iter().any(|n| n.ends_with("greet")) && !names.is_empty(), "{prompts}");
    let greet = call(&anon, 2, "prompts/get", json!({"name": "alpha__greet", "arguments": {"who": "x"}}));
    assert_eq!(greet["error"]["code"], NOT_PERMITTED, "{greet}");
    let all = call(&opened(&r, "writer"), 3, "resources/list", json!({}));
    let mine = call(&anon, 4, "resources/list", json!({}));
    let uris = |v: &Value| -> Vec<String> {
        v["result"]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|x| x["uri"].as_str().map(str::to_owned))
            .collect()
    };
    let (all, mine) = (uris(&all), uris(&mine));
    assert!(mine.len() < all.len() && mine.iter().all(|u| u.ends_with('a')), "{mine:?} of {all:?}");
    if let Some(hidden) = all.iter().find(|u| !u.ends_with('a')) {
        let read = call(&anon, 5, "resources/read", json!({"uri": hidden}));
        assert_eq!(read["error"]["code"], NOT_PERMITTED, "{read}");
    }
    r.shutdown(Duration::from_secs(1));
}

#[test]
fn list_changed_reaches_only_the_sessions_whose_view_changed() {
    let r = start(&team(""));
    let (reader, writer) = (opened(&r, "reader"), opened(&r, "writer"));
    assert_eq!(tool_text(&writer, "alpha__notify_changed", json!({})).map(|_| ()), Ok(()));
    assert!(wait_event(&writer, "notifications/tools/list_changed", Duration::from_secs(10)).is_some());
    assert!(r.settle(Duration::from_secs(10)));
    assert!(tool_names(&writer).contains(&"dynamic".to_owned()));
    // The reader's view (echo and whoami) did not change: it is not told.
    assert!(wait_event(&reader, "notifications/tools/list_changed", Duration::from_millis(300)).is_none());
    r.shutdown(Duration::from_secs(1));
}

#[test]
fn a_burst_over_the_client_limit_is_refused_at_once_and_other_clients_are_untouched() {
    // The bot's bucket refills one call an hour: nothing comes back during the test.
    let r = start(&team("limits:\n  clients:\n    - {client: bot, rate: 0.0003, burst: 3}\n"));
    let (bot, writer) = (opened(&r, "bot"), opened(&r, "writer"));
    let results: Vec<Result<String, (i64, String)>> =
        (0..6).map(|i| tool_text(&bot, "alpha__echo", json!({"message": i.to_string()}))).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 3, "{results:?}");
    assert!(results.iter().skip(3).all(|r| matches!(r, Err((RATE_LIMITED, _)))), "{results:?}");
    let refused = call(&bot, 7, "tools/call", json!({"name": "alpha__echo", "arguments": {"message": "x"}}));
    assert_eq!(refused["error"]["data"]["limit"], "client_rate", "{refused}");
    assert!(refused["error"]["data"]["retryAfterMs"].as_u64().is_some_and(|ms| ms > 1000), "{refused}");
    for i in 0..6 {
        assert!(
            tool_text(&writer, "alpha__echo", json!({"message": i.to_string()})).is_ok(),
            "the writer has no limit"
        );
    }
    let status = r.status();
    let bucket = &status["limits"]["clients"][0];
    assert_eq!(bucket["client"], "bot", "{status}");
    assert!(bucket["bucket"]["tokens"].as_f64().is_some_and(|t| t < 1.0), "{status}");
    let m = r.metrics();
    assert!(m.contains("mcprouter_limit_hits_total{client=\"bot\",backend=\"alpha\",limit=\"client_rate\"} 4"), "{m}");
    r.shutdown(Duration::from_secs(1));
}

#[test]
fn the_bucket_recovers_at_its_refill_rate() {
    // 20 a second, one at a time: after a refusal, the wait it names is enough.
    let r = start(&team("limits:\n  clients:\n    - {client: bot, rate: 20, burst: 1}\n"));
    let bot = opened(&r, "bot");
    let mut admitted = 0;
    for round in 0..3 {
        assert!(tool_text(&bot, "alpha__echo", json!({"message": "a"})).is_ok(), "round {round}");
        admitted += 1;
        let refused =
            call(&bot, 10 + round, "tools/call", json!({"name": "alpha__echo", "arguments": {"message": "b"}}));
        let Some(ms) = refused["error"]["data"]["retryAfterMs"].as_u64() else {
            // The call took longer than a refill: it was admitted, which is right too.
            admitted += 1;
            continue;
        };
        assert!(ms <= 50, "{refused}");
        std::thread::sleep(Duration::from_millis(ms + 5));
    }
    assert!(admitted >= 3);
    r.shutdown(Duration::from_secs(1));
}

#[test]
fn backend_buckets_are_shared_and_quotas_and_caps_hold() {
    let limits = "limits:\n  backends:\n    - {backend: beta, rate: 0.0003, burst: 2}\n  clients:\n    - {client: bot, quota: {calls: 2, window_ms: 3600000}}\n    - {client: writer, concurrency: 1}\n";
    let r = start(&team(limits));
    let (bot, writer) = (opened(&r, "bot"), opened(&r, "writer"));
    // beta allows two calls in all, whoever makes them.
    assert!(tool_text(&writer, "t0000", json!({})).is_ok());
    assert!(tool_text(&bot, "t0000", json!({})).is_ok());
    let refused = call(&writer, 1, "tools/call", json!({"name": "t0001", "arguments": {}}));
    assert_eq!(refused["error"]["data"]["limit"], "backend_rate", "{refused}");
    // The bot's quota: one more call (the first counted), then the window is used up.
    assert!(tool_text(&bot, "alpha__echo", json!({"message": "q"})).is_ok());
    let refused = call(&bot, 2, "tools/call", json!({"name": "alpha__echo", "arguments": {"message": "q"}}));
    assert_eq!(refused["error"]["data"]["limit"], "quota", "{refused}");
    // The writer's cap of one call in flight.
    let w2 = std::sync::Arc::new(writer);
    let slow = {
        let w = std::sync::Arc::clone(&w2);
        std::thread::spawn(move || tool_text(&w, "alpha__slow", json!({"ms": 1500})))
    };
    // Once the slow call holds the writer's one slot (status shows it), a second is refused.
    let holding = || {
        r.status()["limits"]["clients"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["client"] == "writer" && c["in_flight"] == 1)
    };
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while !holding() && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    let v = call(&w2, 100, "tools/call", json!({"name": "alpha__echo", "arguments": {"message": "c"}}));
    assert_eq!(v["error"]["data"]["limit"], "concurrency", "{v}");
    assert_eq!(slow.join().unwrap().as_deref(), Ok("slept 1500"));
    assert!(tool_text(&w2, "alpha__echo", json!({"message": "after"})).is_ok(), "the slot came back");
    r.shutdown(Duration::from_secs(1));
}

/// `mcprouter serve --client NAME` (or `serve_client:`): initialize, list tools, try a
/// call; returns the names, the call's error code and serve's log (JSON lines).
fn serve_logged(config: &str, client: Option<&str>) -> (Vec<String>, Option<i64>, String) {
    let dir = std::env::temp_dir().join(format!("mcprouter-policy-{}-{}", std::process::id(), client.unwrap_or("cfg")));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config.yaml");
    std::fs::write(&file, config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcprouter"));
    cmd.arg("serve").arg("--config").arg(&file).args(["--log-format", "json", "--log-level", "warn"]);
    if let Some(c) = client {
        cmd.args(["--client", c]);
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut ask = |id: u64, method: &str, params: Value| -> Value {
        let line = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        writeln!(stdin, "{line}").unwrap();
        loop {
            let mut l = String::new();
            assert!(out.read_line(&mut l).unwrap() > 0, "serve ended");
            let v: Value = serde_json::from_str(&l).unwrap();
            if v["id"] == id {
                return v;
            }
        }
    };
    ask(
        0,
        "initialize",
        json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}),
    );
    let list = ask(1, "tools/list", json!({}));
    let names = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    let called = ask(2, "tools/call", json!({"name": "alpha__add", "arguments": {"a": 1, "b": 1}}));
    drop(stdin);
    let _ = child.wait();
    let mut log = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log);
    let _ = std::fs::remove_dir_all(&dir);
    (sorted(names), called["error"]["code"].as_i64(), log)
}

fn serve_as(config: &str, client: Option<&str>) -> (Vec<String>, Option<i64>) {
    let (names, code, _) = serve_logged(config, client);
    (names, code)
}

#[test]
fn a_denied_call_leaves_one_audit_record_naming_client_tool_and_rule() {
    watchdog(240);
    let (_, refused, log) = serve_logged(&team(""), Some("reader"));
    assert_eq!(refused, Some(NOT_PERMITTED));
    let audit: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["target"] == "mcprouter::audit")
        .collect();
    assert_eq!(audit.len(), 1, "{log}");
    let r = &audit[0];
    assert_eq!((r["client"].as_str(), r["name"].as_str()), (Some("reader"), Some("alpha__add")), "{r}");
    assert!(r["rule"].as_str().is_some_and(|rule| rule.starts_with("policy.")), "{r}");
}

#[test]
fn serve_on_stdio_takes_its_identity_from_the_flag_or_the_config() {
    watchdog(240);
    let y = team("");
    let (reader, refused) = serve_as(&y, Some("reader"));
    assert_eq!((reader, refused), (vec!["alpha__echo".to_owned(), "alpha__whoami".to_owned()], Some(NOT_PERMITTED)));
    let (writer, refused) = serve_as(&y, Some("writer"));
    assert!(writer.len() > 4 && refused.is_none(), "{writer:?} {refused:?}");
    let (configured, _) = serve_as(&format!("{y}serve_client: reader\n"), None);
    assert_eq!(configured, ["alpha__echo", "alpha__whoami"]);
    let (anonymous, refused) = serve_as(&y, None);
    assert!(anonymous.is_empty() && refused == Some(NOT_PERMITTED), "without an identity, serve is an unknown client");
}

fn filesystem_backend(dir: &std::path::Path) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(".deps/node/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js");
    assert!(script.exists(), "server-filesystem is missing: run scripts/deps.sh");
    let args = vec![script.to_string_lossy().into_owned(), dir.to_string_lossy().into_owned()];
    format!("  - name: fs\n    command: node\n    args: {}\n", serde_json::to_string(&args).unwrap())
}

#[test]
fn annotation_rules_follow_what_server_filesystem_declares() {
    let dir = std::env::temp_dir().join(format!("mcprouter-policy-fs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.txt"), "hello").unwrap();
    let mut y = config("", &[filesystem_backend(&dir)]);
    y.push_str("clients:\n  - {name: admin, groups: [admins]}\n  - {name: writer, groups: [writers]}\n  - {name: reader, groups: [readers]}\n");
    y.push_str("policy:\n  rules:\n    - groups: [readers]\n      read_only: true\n  destructive_needs: [admins]\n");
    let r = start(&y);
    let (admin, writer, reader) = (opened(&r, "admin"), opened(&r, "writer"), opened(&r, "reader"));
    let all = call(&admin, 1, "tools/list", json!({}));
    let tools = all["result"]["tools"].as_array().expect("tools").clone();
    let hint = |t: &Value, k: &str| t["annotations"][k].as_bool();
    let read_only: Vec<String> = tools
        .iter()
        .filter(|t| hint(t, "readOnlyHint") == Some(true))
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    let destructive: Vec<String> = tools
        .iter()
        .filter(|t| hint(t, "readOnlyHint") != Some(true) && hint(t, "destructiveHint") != Some(false))
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        read_only.contains(&"read_text_file".to_owned()) || read_only.contains(&"read_file".to_owned()),
        "{read_only:?}"
    );
    assert!(
        destructive.contains(&"write_file".to_owned()),
        "server-filesystem marks write_file destructive: {destructive:?}"
    );
    assert_eq!(sorted(tool_names(&reader)), sorted(read_only.clone()), "readers see only read-only tools");
    let w = tool_names(&writer);
    assert!(
        w.iter().all(|n| !destructive.contains(n)) && w.len() > read_only.len(),
        "writers: all but destructive: {w:?}"
    );
    assert_eq!(tool_names(&admin).len(), tools.len());
    let path = dir.join("b.txt").to_string_lossy().into_owned();
    let denied =
        call(&writer, 2, "tools/call", json!({"name": "write_file", "arguments": {"path": path, "content": "x"}}));
    assert_eq!(denied["error"]["data"]["rule"], "policy.destructive_needs", "{denied}");
    let denied = call(&reader, 3, "tools/call", json!({"name": "create_directory", "arguments": {"path": path}}));
    assert_eq!(denied["error"]["data"]["rule"], "policy.rules[0].read_only", "{denied}");
    assert!(tool_text(&admin, "write_file", json!({"path": path, "content": "x"})).is_ok());
    r.shutdown(Duration::from_secs(1));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_policy_config_is_refused_naming_the_field() {
    for (extra, field) in [
        ("policy:\n  rules:\n    - groups: [admins]\n", "policy.rules[0].groups"),
        ("policy:\n  rules:\n    - tools: {allow: [\"fs.read\"]}\n", "policy.rules[0].tools.allow"),
        ("limits:\n  clients:\n    - {client: bot, rate: 0}\n", "limits.clients[0].rate"),
    ] {
        // The team without its own policy section, plus the bad one.
        let base = team("");
        let base = base.split("policy:").next().unwrap_or_default();
        let e = Router::from_yaml(&format!("{base}{extra}")).map(|_| ()).unwrap_err().to_string();
        assert!(e.contains(field) && e.contains("line"), "{extra}: {e}");
    }
}
