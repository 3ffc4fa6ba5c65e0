//! Issue #10 (and #11's ordering case) against `mcprouter serve` over real pipes.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

struct Serve {
    child: Child,
    stdin: Option<ChildStdin>,
    rx: mpsc::Receiver<Value>,
    stderr: mpsc::Receiver<String>,
}

impl Serve {
    fn start(name: &str, yaml: &str, extra: &[&str]) -> Serve {
        watchdog(240);
        let dir = std::env::temp_dir().join(format!("mcprouter-hostile-serve-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("config.yaml");
        std::fs::write(&cfg, yaml).unwrap();
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&cfg)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line).expect("stdout carries only JSON-RPC");
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (etx, erx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let _ = etx.send(line);
            }
        });
        let stdin = child.stdin.take();
        let mut s = Serve { child, stdin, rx, stderr: erx };
        s.send(&json!({"jsonrpc":"2.0","id":"init","method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"sampling":{}},"clientInfo":{"name":"t","version":"1"}}}));
        assert_eq!(s.next()["id"], "init");
        s.send(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}));
        s
    }

    fn send(&mut self, v: &Value) {
        self.send_text(&v.to_string());
    }

    fn send_text(&mut self, t: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{t}").unwrap();
    }

    fn next(&self) -> Value {
        self.rx.recv_timeout(Duration::from_secs(30)).expect("a message from serve")
    }

    fn finish(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "serve exits cleanly: {status}");
    }
}

#[test]
fn progress_always_reaches_the_client_before_its_result() {
    let mut s = Serve::start("progress", &config("", &[backend("a", &[])]), &[]);
    for round in 0..60 {
        s.send(&json!({"jsonrpc":"2.0","id":round,"method":"tools/call","params":{"name":"progress","arguments":{"steps":3},"_meta":{"progressToken":format!("t{round}")}}}));
        let mut seen = 0;
        loop {
            let v = s.next();
            if v["method"] == "notifications/progress" {
                assert_eq!(v["params"]["progressToken"], format!("t{round}"));
                seen += 1;
                continue;
            }
            assert_eq!(v["id"], round, "{v}");
            break;
        }
        assert_eq!(seen, 3, "round {round}: every progress notification came before the result");
    }
    s.finish();
}

#[test]
fn many_calls_waiting_on_sampling_never_stop_the_reader() {
    // More calls in flight than serve's minimum worker count, each waiting on the client.
    let n = 300;
    let mut s = Serve::start(
        "sampling",
        &config("request_timeout_ms: 600000\nqueue_capacity: 1024", &[backend("a", &[])]),
        &[],
    );
    for i in 0..n {
        s.send(&json!({"jsonrpc":"2.0","id":i,"method":"tools/call","params":{"name":"sample","arguments":{"prompt":"q"}}}));
    }
    let mut results = 0;
    let mut refused = 0;
    while results + refused < n {
        let v = s.next();
        if v["method"] == "sampling/createMessage" {
            s.send(&json!({"jsonrpc":"2.0","id":v["id"],"result":{"role":"assistant","content":{"type":"text","text":"ok"},"model":"m"}}));
        } else if v["error"]["code"] == -32003 {
            refused += 1;
        } else {
            assert_eq!(v["result"]["content"][0]["text"], "ok", "{v}");
            results += 1;
        }
    }
    assert!(results >= 256, "{results} answered, {refused} refused as overloaded");
    s.finish();
}

#[test]
fn an_oversized_line_is_answered_with_its_id() {
    let mut s = Serve::start("oversized", &config("max_message_bytes: 2048", &[backend("a", &[])]), &[]);
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":77,"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"{}"}}}}}}"#,
        "x".repeat(5000)
    );
    s.send_text(&big);
    let v = s.next();
    assert_eq!((v["id"].clone(), v["error"]["code"].clone()), (json!(77), json!(-32600)), "{v}");
    s.finish();
}

fn threads_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().count()
}

fn get(addr: &str, path: &str) -> Option<String> {
    let mut c = TcpStream::connect(addr).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    c.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn idle_connections_to_the_metrics_endpoint_hold_no_threads() {
    let s = Serve::start("metrics", &config("", &[backend("a", &[])]), &["--metrics-listen", "127.0.0.1:0"]);
    let addr = loop {
        let line = s.stderr.recv_timeout(Duration::from_secs(30)).expect("serve announces the metrics address");
        if let Some(at) = line.find("http://") {
            let rest = &line[at + 7..];
            break rest.split(|c: char| c == '"' || c.is_whitespace()).next().unwrap().to_owned();
        }
    };
    assert!(get(&addr, "/metrics").unwrap().contains("mcprouter_"));
    let before = threads_of(s.child.id());
    let idle: Vec<TcpStream> = (0..500).filter_map(|_| TcpStream::connect(&addr).ok()).collect();
    assert!(idle.len() >= 400);
    // Give the accept loop every connection: a request after all of them is answered last.
    let after = threads_of(s.child.id());
    assert!(after <= before + 1, "{before} threads before 500 idle connections, {after} with them");
    drop(idle);
    let mut answered = None;
    for _ in 0..200 {
        answered = get(&addr, "/status").filter(|r| r.starts_with("HTTP/1.1 200"));
        if answered.is_some() {
            break;
        }
    }
    assert!(answered.is_some(), "the endpoint serves again once the idle clients are gone");
    s.finish();
}

fn everything_stdio(name: &str) -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".deps/node/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(script.exists(), "server-everything is missing: run scripts/deps.sh");
    format!("  - name: {name}\n    command: node\n    args: [{}, stdio]\n", serde_json::to_string(&script).unwrap())
}

#[test]
fn server_everythings_progress_precedes_each_result_through_serve() {
    // Issue #11 item 1 against the real server: its long-running tool sends progress and then
    // its result; through serve, every progress notification must come first.
    let mut s = Serve::start("everything-progress", &config("", &[everything_stdio("e")]), &[]);
    let calls = 40;
    for i in 0..calls {
        s.send(&json!({"jsonrpc":"2.0","id":i,"method":"tools/call","params":{"name":"trigger-long-running-operation","arguments":{"duration":0.2,"steps":4},"_meta":{"progressToken":i}}}));
    }
    let mut progress = vec![0; calls];
    let mut done = 0;
    while done < calls {
        let v = s.next();
        if v["method"] == "notifications/progress" {
            let t = v["params"]["progressToken"].as_u64().unwrap() as usize;
            progress[t] += 1;
        } else if let Some(id) = v["id"].as_u64() {
            assert!(v["result"].is_object(), "{v}");
            assert_eq!(progress[id as usize], 4, "call {id}: its result came before all of its progress");
            done += 1;
        }
    }
    s.finish();
}
