//! Shared helpers for the integration tests: real child processes of the project's own
//! test server, a watchdog so no test can hang CI, and small JSON-RPC helpers.
#![allow(dead_code)]

pub mod http;
pub mod logs;
pub mod modern;

use std::io::BufRead;
use std::sync::Once;
use std::time::Duration;

use mcprouter::{Router, Session};
use serde_json::Value;

/// The `mcprouter` binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_mcprouter");

/// Aborts the whole test process if it runs longer than `secs`: a hang must fail, not stall.
pub fn watchdog(secs: u64) {
    static START: Once = Once::new();
    START.call_once(|| {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(secs));
            eprintln!("watchdog: test process exceeded {secs} s; aborting");
            std::process::abort();
        });
    });
}

/// One backend entry running the test server with `flags`.
pub fn backend(name: &str, flags: &[&str]) -> String {
    let mut args = vec!["test-server".to_owned(), "--name".to_owned(), name.to_owned()];
    args.extend(flags.iter().map(|s| (*s).to_owned()));
    format!(
        "  - name: {name}\n    command: {}\n    args: {}\n",
        serde_json::to_string(BIN).unwrap(),
        serde_json::to_string(&args).unwrap()
    )
}

/// A config with router settings (YAML lines under `router:`) and backend entries.
pub fn config(router: &str, backends: &[String]) -> String {
    let mut y = String::from("router:\n");
    let given: Vec<&str> = router.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    // Restarts are slowed so a test can observe a failed backend before it comes back;
    // the resilience tests set their own policy.
    for default in [
        "init_timeout_ms: 5000",
        "request_timeout_ms: 5000",
        "shutdown_grace_ms: 500",
        "restart: {initial_backoff_ms: 4000}",
    ] {
        let key = default.split(':').next().unwrap();
        if !given.iter().any(|l| l.starts_with(key)) {
            y.push_str(&format!("  {default}\n"));
        }
    }
    for l in given {
        y.push_str("  ");
        y.push_str(l);
        y.push('\n');
    }
    y.push_str("backends:\n");
    for b in backends {
        y.push_str(b);
    }
    y
}

pub fn router(router_settings: &str, backends: &[String]) -> Router {
    watchdog(240);
    Router::from_yaml(&config(router_settings, backends)).expect("router starts")
}

/// Sends a request and parses the reply.
pub fn call(s: &Session, id: u64, method: &str, params: Value) -> Value {
    let msg = serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    let reply = s.handle(&msg.to_string()).expect("session open").expect("a reply");
    serde_json::from_str(&reply).expect("reply is JSON")
}

/// `tools/call` and the text of its first content block (or the error message). Each call
/// gets its own id: a session refuses a second request under an id still in flight.
pub fn tool_text(s: &Session, name: &str, args: Value) -> Result<String, (i64, String)> {
    static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1_000_000);
    let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let v = call(s, id, "tools/call", serde_json::json!({"name": name, "arguments": args}));
    if let Some(e) = v.get("error") {
        return Err((e["code"].as_i64().unwrap_or(0), e["message"].as_str().unwrap_or("").to_owned()));
    }
    Ok(v["result"]["content"][0]["text"].as_str().unwrap_or("").to_owned())
}

pub fn initialize(s: &Session, capabilities: Value) -> Value {
    let v = call(
        s,
        0,
        "initialize",
        serde_json::json!({"protocolVersion": "2025-11-25", "capabilities": capabilities, "clientInfo": {"name": "t", "version": "1"}}),
    );
    assert!(s.handle(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap().is_none());
    v
}

/// Waits for the first event whose method is `method`.
pub fn wait_event(s: &Session, method: &str, within: Duration) -> Option<Value> {
    let end = std::time::Instant::now() + within;
    while std::time::Instant::now() < end {
        if let Ok(Some(ev)) = s.next_event(Duration::from_millis(100)) {
            let v: Value = serde_json::from_str(&ev).ok()?;
            if v["method"] == method {
                return Some(v);
            }
        }
    }
    None
}

pub fn tool_names(s: &Session) -> Vec<String> {
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let params = match &cursor {
            Some(c) => serde_json::json!({"cursor": c}),
            None => serde_json::json!({}),
        };
        let v = call(s, 1, "tools/list", params);
        for t in v["result"]["tools"].as_array().unwrap() {
            names.push(t["name"].as_str().unwrap().to_owned());
        }
        match v["result"]["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return names,
        }
    }
}

/// The router's own threads (all named `mcprouter-…`), so the test harness's threads,
/// which come and go, are not counted.
pub fn router_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with("mcprouter")))
        .count()
}

/// How many tools the test server lists without `--many-tools` (its table in test_server.rs).
pub const TEST_SERVER_TOOLS: usize = 23;

/// A test server listening on a network address, killed on drop.
pub struct Listening {
    pub child: std::process::Child,
    pub url: String,
    /// What the server writes on stderr after its `listening on` line.
    pub stderr: std::sync::mpsc::Receiver<String>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `mcprouter test-server ARGS` and waits for its `listening on URL` line.
pub fn listen(args: &[&str]) -> Listening {
    let mut child = std::process::Command::new(BIN)
        .arg("test-server")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("test server starts");
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("{line}")).to_owned();
    // Keep draining so the server never blocks on a full stderr pipe.
    let (tx, stderr) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in err.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    Listening { child, url, stderr }
}

/// Waits for `fact` about the router's status, failing with the last status seen.
pub fn wait_status(r: &Router, what: &str, fact: impl Fn(&Value) -> bool) -> Value {
    let end = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let st = r.status();
        if fact(&st) {
            return st;
        }
        assert!(std::time::Instant::now() < end, "waited for {what}; status: {st}");
        std::thread::sleep(Duration::from_millis(5));
    }
}
