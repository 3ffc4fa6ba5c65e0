//! Observability end to end: `mcprouter serve` as a real child process with JSON logs and
//! the metrics endpoint, canary secrets that must never reach a log line, `/status` or
//! `/metrics`, and metric cardinality under hostile method and tool names.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

fn write_config(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mcprouter-obs-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("config.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

/// A running `mcprouter serve` with its three pipes taken over.
struct Serve {
    child: Child,
    stdin: Option<ChildStdin>,
    replies: mpsc::Receiver<Value>,
    stderr: Arc<Mutex<Vec<String>>>,
    stderr_thread: Option<JoinHandle<()>>,
    metrics: Option<SocketAddr>,
}

impl Serve {
    /// Starts serve; when `args` has `--metrics-listen`, waits for the announced address.
    fn start(config: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Serve {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--config"]).arg(config).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child =
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("serve starts");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, replies) = mpsc::channel::<Value>();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line).expect("stdout carries only JSON-RPC");
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = mpsc::channel::<SocketAddr>();
        let lines = Arc::clone(&stderr);
        let err = BufReader::new(child.stderr.take().unwrap());
        let stderr_thread = std::thread::spawn(move || {
            for line in err.lines().map_while(Result::ok) {
                if let Some(i) = line.find("metrics listening on http://") {
                    let rest = &line[i + "metrics listening on http://".len()..];
                    let addr = rest.split(|c: char| c.is_whitespace() || c == '"').next().unwrap_or("");
                    let _ = addr_tx.send(addr.parse().expect("announced address parses"));
                }
                lines.lock().unwrap().push(line);
            }
        });
        let metrics = args.contains(&"--metrics-listen").then(|| {
            addr_rx.recv_timeout(Duration::from_secs(30)).expect("serve announces the metrics address on stderr")
        });
        Serve { child, stdin, replies, stderr, stderr_thread: Some(stderr_thread), metrics }
    }

    fn send(&mut self, v: Value) {
        writeln!(self.stdin.as_mut().unwrap(), "{v}").unwrap();
    }

    /// Sends a request and waits for the reply with its id (events in between are skipped).
    fn request(&mut self, id: u64, method: &str, params: Value) -> Value {
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let v = self.replies.recv_timeout(Duration::from_secs(15)).expect("a reply from serve");
            if v["id"] == id && v.get("method").is_none() {
                return v;
            }
        }
    }

    fn initialize(&mut self) {
        let v = self.request(
            1,
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}),
        );
        assert!(v.get("result").is_some(), "{v}");
        self.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    }

    /// Closes stdin, waits for a clean exit and returns every stderr line.
    fn finish(mut self) -> Vec<String> {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "serve exits cleanly on stdin EOF: {status}");
        if let Some(t) = self.stderr_thread.take() {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.stderr.lock().unwrap())
    }
}

/// A plain HTTP/1.1 GET (or other method) over std's TcpStream: status, headers, body.
fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete HTTP response");
    let code = head.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("a status code");
    (code, head.to_owned(), body.to_owned())
}

const CANARIES: [&str; 6] =
    ["canary-env-XYZ", "canary-hdr-XYZ", "canary-url-XYZ", "canary-userinfo-XYZ", "canary-extra-XYZ", "canary-arg-XYZ"];

#[test]
fn canary_secrets_never_reach_logs_status_or_metrics() {
    watchdog(240);
    // `sec` prints three canaries on stderr before it becomes the test server: a header, its
    // configured secret env value, a URL with userinfo, and one only MCPROUTER_REDACT names.
    let script = format!(
        "echo 'Authorization: Bearer canary-hdr-XYZ' >&2; echo \"my token is $API_TOKEN\" >&2; \
         echo 'connecting to https://bob:canary-userinfo-XYZ@db.example/x' >&2; \
         echo 'extra: canary-extra-XYZ' >&2; exec {} test-server --name sec",
        serde_json::to_string(BIN).unwrap()
    );
    let sec = format!(
        "  - name: sec\n    command: sh\n    args: {}\n    env: {{API_TOKEN: canary-env-XYZ}}\n",
        serde_json::to_string(&["-c", &script]).unwrap()
    );
    // `bad` cannot start; the error quotes its command path.
    let bad = "  - name: bad\n    command: /nonexistent/token=canary-url-XYZ/mcp-server\n".to_owned();
    let cfg = write_config("canary", &config("", &[sec, bad]));
    let mut serve = Serve::start(
        &cfg,
        &["--log-format", "json", "--log-level", "trace", "--metrics-listen", "127.0.0.1:0"],
        &[("MCPROUTER_REDACT", "canary-extra-XYZ, unrelated-value")],
    );
    serve.initialize();
    let tools = serve.request(2, "tools/list", json!({}));
    assert!(tools["result"]["tools"].as_array().is_some_and(|t| !t.is_empty()), "{tools}");
    let echo =
        serve.request(3, "tools/call", json!({"name": "echo", "arguments": {"message": "password=canary-arg-XYZ"}}));
    assert_eq!(echo["result"]["content"][0]["text"], "password=canary-arg-XYZ", "the client still gets its data");
    let unknown = serve.request(4, "tools/call", json!({"name": "nope", "arguments": {"token": "canary-arg-XYZ"}}));
    assert!(unknown.get("error").is_some(), "{unknown}");

    let addr = serve.metrics.unwrap();
    assert!(addr.ip().is_loopback());
    let (code, _, status) = http(addr, "GET", "/status");
    assert_eq!(code, 200);
    let (code, _, metrics) = http(addr, "GET", "/metrics");
    assert_eq!(code, 200);
    let lines = serve.finish();

    for canary in CANARIES {
        for line in &lines {
            assert!(!line.contains(canary), "{canary} leaked into the log: {line}");
        }
        assert!(!status.contains(canary), "{canary} leaked into /status: {status}");
        assert!(!metrics.contains(canary), "{canary} leaked into /metrics");
    }

    // Every line is one JSON object with the four fixed keys.
    let records: Vec<Value> = lines
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {l}"));
            for key in ["ts", "level", "target", "msg"] {
                assert!(v[key].is_string(), "{key} missing in {l}");
            }
            v
        })
        .collect();
    // Not vacuous: the canaries did reach the logger, and were masked there.
    let stderr_masked = records
        .iter()
        .filter(|r| r["target"] == "mcprouter::backend::stderr" && r["msg"].as_str().unwrap().contains("[REDACTED]"))
        .count();
    assert!(stderr_masked >= 4, "the backend's four secret lines, masked:\n{}", lines.join("\n"));
    assert!(
        records.iter().any(|r| r["msg"].as_str().unwrap().contains("[bad] failed to start")
            && r["msg"].as_str().unwrap().contains("token=[REDACTED]")),
        "the start failure is logged, masked:\n{}",
        lines.join("\n")
    );
    let bad_status: Value = serde_json::from_str(&status).expect("/status is JSON");
    let bad_entry = bad_status["backends"].as_array().unwrap().iter().find(|b| b["name"] == "bad").unwrap();
    assert!(bad_entry["last_error"].as_str().unwrap().contains("[REDACTED]"), "{bad_entry}");

    // The access record of the tool call, with its fields as top-level keys.
    let access = records
        .iter()
        .find(|r| r["target"] == "mcprouter::access" && r["method"] == "tools/call" && r["name"] == "echo")
        .unwrap_or_else(|| panic!("no access record for the call:\n{}", lines.join("\n")));
    assert_eq!(access["outcome"], "ok", "{access}");
    assert_eq!(access["backend"], "sec", "{access}");
    assert_eq!(access["session"], "stdio", "{access}");
    assert!(access["duration_ms"].as_f64().is_some_and(|d| d >= 0.0), "{access}");
    assert!(
        records.iter().any(|r| r["target"] == "mcprouter::access" && r["name"] == "nope" && r["outcome"] == "error"),
        "the failed call is logged too"
    );
    println!("{} log lines, e.g.\n{}", lines.len(), serde_json::to_string(access).unwrap());
}

/// Parses an exposition with `prometheus_client` and prints one JSON sample per line.
const PARSE_PY: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        print(json.dumps({"name": s.name, "labels": s.labels, "value": s.value}))
"#;

/// The interpreter that parses the exposition: `MCPROUTER_PYTHON`, else the venv that
/// `scripts/deps.sh` fills from tests/deps/requirements.txt. The real parser is required:
/// a hand-written fallback would only agree with our own renderer, so without it the test fails.
fn python_with_prometheus_client() -> String {
    let python = std::env::var("MCPROUTER_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/.deps/venv/bin/python").to_owned());
    let ok = Command::new(&python)
        .args(["-c", "import prometheus_client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "{python} cannot import prometheus_client: run scripts/deps.sh");
    python
}

/// The samples of an exposition as `prometheus_client` parses it; fails when it rejects it.
fn prometheus_samples(text: &str) -> Vec<Value> {
    let python = python_with_prometheus_client();
    let mut child = Command::new(&python)
        .args(["-c", PARSE_PY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "prometheus_client rejects /metrics: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Sum of the samples named `name` whose labels include every pair of `want`.
fn sum_samples(samples: &[Value], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s["name"] == name && want.iter().all(|(k, v)| s["labels"][*k] == *v))
        .map(|s| s["value"].as_f64().unwrap())
        .sum()
}

#[test]
fn metrics_endpoint_serves_prometheus_text_and_status() {
    watchdog(240);
    let cfg = write_config("metrics", &config("", &[backend("alpha", &[])]));
    let mut serve =
        Serve::start(&cfg, &["--log-format", "text", "--log-level", "info", "--metrics-listen", "127.0.0.1:0"], &[]);
    // The backends start with the client's first message (they are told its capabilities);
    // until then the endpoint says so.
    let (code, _, body) = http(serve.metrics.unwrap(), "GET", "/metrics");
    assert_eq!((code, body.contains("first message")), (503, true), "{body}");
    serve.initialize();
    for i in 0..3 {
        let v = serve.request(10 + i, "tools/call", json!({"name": "echo", "arguments": {"message": "m"}}));
        assert_eq!(v["result"]["content"][0]["text"], "m", "{v}");
    }
    let v = serve.request(20, "no/such/method", json!({}));
    assert_eq!(v["error"]["code"], -32601);
    let addr = serve.metrics.unwrap();

    let (code, head, text) = http(addr, "GET", "/metrics");
    assert_eq!(code, 200, "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
    let samples = prometheus_samples(&text);
    let calls = |outcome| {
        sum_samples(
            &samples,
            "mcprouter_requests_total",
            &[("method", "tools/call"), ("backend", "alpha"), ("outcome", outcome)],
        )
    };
    assert_eq!(calls("ok"), 3.0, "{text}");
    assert_eq!(sum_samples(&samples, "mcprouter_requests_total", &[("method", "other")]), 1.0);
    assert_eq!(sum_samples(&samples, "mcprouter_tool_calls_total", &[("tool", "echo"), ("outcome", "ok")]), 3.0);
    assert_eq!(sum_samples(&samples, "mcprouter_backend_up", &[("backend", "alpha")]), 1.0);
    assert_eq!(
        sum_samples(
            &samples,
            "mcprouter_request_duration_seconds_count",
            &[("method", "tools/call"), ("backend", "alpha")]
        ),
        3.0
    );

    let (code, head, body) = http(addr, "GET", "/status");
    assert_eq!(code, 200);
    assert!(head.to_ascii_lowercase().contains("content-type: application/json"), "{head}");
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["backends"][0]["name"], "alpha");
    assert_eq!(status["backends"][0]["state"], "ready");
    assert_eq!(http(addr, "GET", "/nope").0, 404);
    assert_eq!(http(addr, "POST", "/metrics").0, 405);

    let lines = serve.finish();
    assert!(
        lines.iter().any(|l| l.contains(" INFO  mcprouter::access: tools/call ok") && l.contains(" backend=alpha")),
        "text access lines:\n{}",
        lines.join("\n")
    );
    // serve has exited: the endpoint is gone with it.
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err(), "metrics endpoint outlived serve");
}

#[test]
fn non_loopback_metrics_address_is_refused_before_anything_starts() {
    watchdog(240);
    let marker = std::env::temp_dir().join(format!("mcprouter-obs-{}-started", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let script =
        format!("touch {}; exec {} test-server --name m", marker.display(), serde_json::to_string(BIN).unwrap());
    let b = format!("  - name: m\n    command: sh\n    args: {}\n", serde_json::to_string(&["-c", &script]).unwrap());
    let cfg = write_config("refuse", &config("", &[b]));
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&cfg)
        .args(["--metrics-listen", "0.0.0.0:0", "--log-format", "json"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not a loopback address") && stderr.contains("--metrics-listen-any"), "{stderr}");
    let line: Value = serde_json::from_str(stderr.lines().next().unwrap()).expect("the error is a JSON log line");
    assert_eq!(line["level"], "ERROR");
    assert!(!marker.exists(), "a backend was started before the address was refused");
}

#[test]
fn check_json_prints_the_redacted_status() {
    watchdog(240);
    let bad = "  - name: bad\n    command: /nonexistent/token=canary-url-XYZ/mcp-server\n".to_owned();
    let cfg = write_config("check-json", &config("", &[backend("alpha", &[]), bad]));
    let out = Command::new(BIN).args(["check", "--json", "--config"]).arg(&cfg).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "one backend failed: {stdout}");
    let status: Value = serde_json::from_str(&stdout).expect("check --json prints JSON");
    let names: Vec<&str> = status["backends"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alpha", "bad"]);
    assert_eq!(status["backends"][0]["state"], "ready");
    assert!(!stdout.contains("canary-url-XYZ"), "{stdout}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("canary-url-XYZ"));
}

#[test]
fn hostile_method_and_tool_names_do_not_grow_the_metrics() {
    let r = router("", &[backend("alpha", &[])]);
    let s = r.session(Some("hostile")).unwrap();
    initialize(&s, json!({}));
    assert_eq!(tool_text(&s, "echo", json!({"message": "x"})).unwrap(), "x");
    let series = |text: &str| text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count();
    // One of each kind first, so every series the flood can touch exists.
    let send = |i: u64| {
        let m = json!({"jsonrpc": "2.0", "id": i, "method": format!("evil/{i}\"{{le=\"x\"}}"), "params": {}});
        let reply: Value = serde_json::from_str(&s.handle(&m.to_string()).unwrap().unwrap()).unwrap();
        assert_eq!(reply["error"]["code"], -32601);
        let c = json!({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": format!("tool_{i:x}"), "arguments": {}}});
        let reply: Value = serde_json::from_str(&s.handle(&c.to_string()).unwrap().unwrap()).unwrap();
        assert!(reply.get("error").is_some() || reply["result"]["isError"] == true, "{reply}");
    };
    send(0);
    let before = r.metrics();
    let baseline = series(&before);
    let started = std::time::Instant::now();
    const N: u64 = 100_000;
    for i in 1..=N {
        send(i);
    }
    let took = started.elapsed();
    let after = r.metrics();
    let count = series(&after);
    println!(
        "{N} unknown methods + {N} unknown tools through Session::handle in {took:.1?}: {count} series (baseline {baseline}), {} bytes",
        after.len()
    );
    assert_eq!(count, baseline, "series grew under hostile names");
    assert!(!after.contains("evil/") && !after.contains("tool_1"), "an untrusted name became a label");
    let other_calls: f64 = prometheus_samples(&after)
        .iter()
        .filter(|s| s["name"] == "mcprouter_requests_total" && s["labels"]["method"] == "other")
        .map(|s| s["value"].as_f64().unwrap())
        .sum();
    assert_eq!(other_calls, (N + 1) as f64);
    r.shutdown(Duration::from_secs(2));
}
