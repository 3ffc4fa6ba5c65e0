//! Hot reload (issue #15) end to end, against real child processes of the test server:
//! what is kept, started, drained and stopped; a bad config; and reloads under load with
//! nothing leaked. Tests here take one lock: the stress test counts the process's
//! threads, fds and children, which another test running alongside would disturb.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use mcprouter::Router;
use serde_json::{Value, json};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn backend_status<'a>(st: &'a Value, name: &str) -> Option<&'a Value> {
    st["backends"].as_array()?.iter().find(|b| b["name"] == name)
}

fn pid_of(r: &Router, name: &str) -> u64 {
    backend_status(&r.status(), name).and_then(|b| b["pid"].as_u64()).expect("a pid")
}

/// The child processes of this process (read from /proc: the PPid of every process).
fn children() -> usize {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)) == Some(&*me))
        .count()
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn unchanged_backends_are_kept_added_ones_start_removed_ones_stop_changed_ones_are_replaced() {
    let _one = serial();
    let r = router("", &[backend("alpha", &[]), backend("beta", &[])]);
    let s = r.session(None).unwrap();
    initialize(&s, json!({}));
    assert_eq!(r.status()["config"]["generation"], 1);
    let alpha = pid_of(&r, "alpha");
    let beta = pid_of(&r, "beta");

    // beta out, gamma in, alpha as it was.
    let g = r.reload_from_yaml(&config("", &[backend("alpha", &[]), backend("gamma", &[])])).expect("reload");
    assert_eq!(g, 2);
    assert!(wait_event(&s, "notifications/tools/list_changed", Duration::from_secs(10)).is_some());
    assert_eq!(pid_of(&r, "alpha"), alpha, "an unchanged backend keeps its process");
    assert_eq!(tool_text(&s, "gamma__whoami", json!({})).unwrap(), "gamma", "the added backend serves at once");
    assert_eq!(tool_text(&s, "beta__whoami", json!({})).unwrap_err().0, -32602, "the removed one is gone");
    let st = wait_status(&r, "beta stopped", |st| st["config"]["draining_backends"] == 0);
    assert!(backend_status(&st, "beta").is_none());
    assert_eq!(st["config"]["generation"], 2);
    assert_eq!(st["config"]["last_reload"]["ok"], true);
    // Its process is gone: no such pid any more (or a zombie is not left behind).
    assert!(!std::path::Path::new(&format!("/proc/{beta}")).exists(), "beta's process was reaped");

    // alpha changed (an extra tool on its command line): replaced, the new tool listed.
    r.reload_from_yaml(&config("", &[backend("alpha", &["--extra-tool", "fresh"]), backend("gamma", &[])]))
        .expect("reload");
    assert_ne!(pid_of(&r, "alpha"), alpha, "a changed backend is a new process");
    assert!(tool_names(&s).contains(&"fresh".to_owned()));
    assert_eq!(tool_text(&s, "fresh", json!({})).unwrap(), "alpha fresh");
    wait_status(&r, "the old alpha stopped", |st| st["config"]["draining_backends"] == 0);
    assert!(!std::path::Path::new(&format!("/proc/{alpha}")).exists());

    let m = r.metrics();
    assert!(m.contains("mcprouter_config_generation 3"), "{m}");
    assert!(m.contains("mcprouter_reloads_total{outcome=\"ok\"} 2"), "{m}");
    assert!(!m.contains("mcprouter_backend_up{backend=\"beta\"}"), "no gauges for a removed backend");
}

#[test]
fn a_bad_config_is_refused_whole_and_the_old_one_keeps_serving() {
    let _one = serial();
    let r = router("", &[backend("alpha", &[])]);
    let s = r.session(None).unwrap();
    let bad = config("", &[backend("alpha", &[]), backend("beta", &[]).replace("    args:", "    argz:")]);
    let err = r.reload_from_yaml(&bad).expect_err("refused").to_string();
    assert!(err.contains("argz") && err.contains("line"), "the error names the field and the line: {err}");
    let dup = config("", &[backend("alpha", &[]), backend("alpha", &[])]);
    assert!(r.reload_from_yaml(&dup).is_err(), "validation errors are refused like parse errors");
    let st = r.status();
    assert_eq!(st["config"]["generation"], 1);
    assert_eq!(st["config"]["last_reload"]["ok"], false);
    assert!(st["config"]["last_reload"]["error"].as_str().is_some_and(|e| !e.is_empty()));
    assert_eq!(tool_text(&s, "whoami", json!({})).unwrap(), "alpha", "the old config serves");
    assert!(r.metrics().contains("mcprouter_reloads_total{outcome=\"error\"} 2"));
}

#[test]
fn a_call_in_flight_on_a_removed_backend_completes() {
    let _one = serial();
    let r = router("", &[backend("alpha", &[]), backend("beta", &[])]);
    let s = Arc::new(r.session(None).unwrap());
    let caller = {
        let s = Arc::clone(&s);
        std::thread::spawn(move || tool_text(&s, "beta__slow", json!({"ms": 1500})))
    };
    wait_status(&r, "beta's call in flight", |st| backend_status(st, "beta").is_some_and(|b| b["in_flight"] == 1));
    r.reload_from_yaml(&config("", &[backend("alpha", &[])])).expect("reload");
    assert_eq!(r.status()["config"]["draining_backends"], 1, "beta drains while its call runs");
    let out = caller.join().unwrap();
    assert!(out.is_ok(), "the call in flight completes: {out:?}");
    wait_status(&r, "beta stopped", |st| st["config"]["draining_backends"] == 0);
}

/// Configs the stress test alternates between: beta changes, gamma comes and goes.
fn stress_config(n: usize) -> String {
    let settings = "request_timeout_ms: 10000";
    if n.is_multiple_of(2) {
        config(settings, &[backend("alpha", &[]), backend("beta", &[])])
    } else {
        config(settings, &[backend("alpha", &[]), backend("beta", &["--extra-tool", "x"]), backend("gamma", &[])])
    }
}

#[test]
fn reloads_under_load_answer_every_call_once_and_leak_nothing() {
    let _one = serial();
    watchdog(240);
    let (fds0, children0) = (fds(), children());
    let threads0 = threads();
    let r = Router::from_yaml(&stress_config(0)).expect("router starts");
    let stop = Arc::new(std::sync::atomic::AtomicU8::new(0));
    // Phase 0: no reloads (baseline latency); phase 1: reloading; 2: stop.
    let callers: Vec<_> = (0..2)
        .map(|c| {
            let s = r.session(None).unwrap();
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut lat: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
                let mut n = 0u64;
                loop {
                    let phase = stop.load(std::sync::atomic::Ordering::Acquire);
                    if phase == 2 {
                        return lat;
                    }
                    n += 1;
                    let id = c * 1_000_000 + n;
                    let (tool, want) = if n.is_multiple_of(2) { ("alpha__add", "5") } else { ("beta__whoami", "beta") };
                    let msg = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                        "params": {"name": tool, "arguments": {"a": 2, "b": 3}}});
                    let began = Instant::now();
                    let reply = s.handle(&msg.to_string()).expect("open").expect("every call is answered");
                    lat[usize::from(phase)].push(began.elapsed());
                    let v: Value = serde_json::from_str(&reply).unwrap();
                    assert_eq!(v["id"], id, "answered once, to this call");
                    assert_eq!(v["result"]["content"][0]["text"], want, "{v}");
                }
            })
        })
        .collect();
    // Enough calls for a baseline, counted by the router itself.
    wait_status(&r, "a baseline", |_| {
        r.metrics().lines().any(|l| {
            l.starts_with("mcprouter_requests_total{method=\"tools/call\",backend=\"alpha\",outcome=\"ok\"} 2")
        })
    });
    let began = Instant::now();
    while began.elapsed() < Duration::from_millis(300) {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(1, std::sync::atomic::Ordering::Release);
    let mut reload_times = Vec::new();
    for n in 1..=100 {
        let t = Instant::now();
        assert_eq!(r.reload_from_yaml(&stress_config(n)).expect("reload"), n as u64 + 1);
        reload_times.push(t.elapsed());
    }
    stop.store(2, std::sync::atomic::Ordering::Release);
    let mut lat: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for c in callers {
        let [a, b] = c.join().expect("a caller");
        lat[0].extend(a);
        lat[1].extend(b);
    }
    // Config 100 is config 0's shape: two backends, nothing draining.
    let st = wait_status(&r, "drains done", |st| st["config"]["draining_backends"] == 0);
    assert_eq!(st["config"]["generation"], 101);
    assert_eq!(children() - children0, 2, "one child per backend of the running config");

    let stats = |v: &mut Vec<Duration>| {
        v.sort();
        let mean = v.iter().sum::<Duration>() / v.len().max(1) as u32;
        (v.len(), mean, v[v.len() / 2], v[v.len() * 99 / 100])
    };
    let (n0, mean0, p50_0, p99_0) = stats(&mut lat[0]);
    let (n1, mean1, p50_1, p99_1) = stats(&mut lat[1]);
    let (_, rmean, rp50, rp99) = stats(&mut reload_times);
    eprintln!("reload → new backends serving: mean {rmean:?}, p50 {rp50:?}, p99 {rp99:?} (100 reloads)");
    eprintln!("calls without reload: {n0}, mean {mean0:?}, p50 {p50_0:?}, p99 {p99_0:?}");
    eprintln!("calls during reloads: {n1}, mean {mean1:?}, p50 {p50_1:?}, p99 {p99_1:?}");
    assert!(n0 > 0 && n1 > 0);

    r.shutdown(Duration::from_millis(500));
    drop(r);
    assert_eq!(children(), children0, "no child process left");
    // Counted in /proc/self/task by name: the test harness's own threads come and go.
    assert_eq!(router_threads(), 0, "no router thread left (of {threads0} threads before, {} now)", threads());
    assert_eq!(fds(), fds0, "no fd leaked");
}

/// `mcprouter serve` on a config file, spoken to over its stdio.
struct Serve {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    lines: std::sync::mpsc::Receiver<Value>,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Serve {
    fn start(config: &std::path::Path, extra: &[&str]) -> Serve {
        use std::io::BufRead;
        let mut child = std::process::Command::new(BIN)
            .args(["serve", "--config"])
            .arg(config)
            .args(extra)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("serve starts");
        let err = std::io::BufReader::new(child.stderr.take().unwrap());
        let (etx, stderr) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in err.lines().map_while(Result::ok) {
                let _ = etx.send(l);
            }
        });
        let stdin = child.stdin.take().unwrap();
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in out.lines().map_while(Result::ok) {
                let _ = tx.send(serde_json::from_str(&l).expect("serve writes JSON lines"));
            }
        });
        let mut s = Serve { child, stdin, lines, stderr };
        s.send(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}));
        s.wait(|v| v["id"] == 0);
        s.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        s
    }

    fn send(&mut self, v: &Value) {
        use std::io::Write;
        writeln!(self.stdin, "{v}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// The first line from serve matching `want` (others are skipped).
    fn wait(&self, want: impl Fn(&Value) -> bool) -> Value {
        loop {
            let v = self.lines.recv_timeout(Duration::from_secs(60)).expect("serve answers");
            if want(&v) {
                return v;
            }
        }
    }

    /// Waits for a line on serve's stderr (its log) containing `needle`.
    fn wait_log(&self, needle: &str) -> String {
        loop {
            let l = self.stderr.recv_timeout(Duration::from_secs(60)).expect("serve logs");
            if l.contains(needle) {
                return l;
            }
        }
    }

    fn tools(&mut self, id: u64) -> Vec<String> {
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"}));
        let v = self.wait(|v| v["id"] == id);
        v["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_file(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("mcprouter-reload-{}-{name}.yaml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn serve_reloads_on_sighup() {
    let _one = serial();
    watchdog(240);
    let path = config_file("hup", &config("", &[backend("alpha", &[])]));
    let mut serve = Serve::start(&path, &[]);
    assert!(!serve.tools(1).iter().any(|t| t.starts_with("beta")));
    std::fs::write(&path, config("", &[backend("alpha", &[]), backend("beta", &[])])).unwrap();
    // Nothing happens without the signal: a tools/list answered after a write shows alpha only.
    assert!(!serve.tools(2).iter().any(|t| t.starts_with("beta")));
    let pid = libc_pid(&serve.child);
    assert_eq!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().code(), Some(0));
    serve.wait(|v| v["method"] == "notifications/tools/list_changed");
    assert!(serve.tools(3).contains(&"beta__whoami".to_owned()));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn serve_watch_reloads_when_the_file_changes_and_keeps_serving_a_bad_one() {
    let _one = serial();
    watchdog(240);
    let path = config_file("watch", &config("", &[backend("alpha", &[])]));
    let mut serve = Serve::start(&path, &["--watch"]);
    std::fs::write(&path, config("", &[backend("alpha", &[]), backend("beta", &[])])).unwrap();
    serve.wait(|v| v["method"] == "notifications/tools/list_changed");
    assert!(serve.tools(1).contains(&"beta__whoami".to_owned()));
    // A bad file is refused, naming the field and the line; the running config keeps answering.
    std::fs::write(&path, config("", &[backend("alpha", &[])]).replace("    args:", "    argz:")).unwrap();
    let refused = serve.wait_log("reload refused");
    assert!(refused.contains("argz") && refused.contains("line"), "{refused}");
    serve.send(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "beta__whoami", "arguments": {}}}));
    assert_eq!(serve.wait(|v| v["id"] == 2)["result"]["content"][0]["text"], "beta");
    let _ = std::fs::remove_file(&path);
}

fn libc_pid(child: &std::process::Child) -> String {
    child.id().to_string()
}

#[test]
fn a_subscription_through_a_removed_backend_is_forgotten() {
    let _one = serial();
    let r = router("", &[backend("alpha", &[]), backend("beta", &["--track-subscriptions"])]);
    let s = r.session(None).unwrap();
    let v = call(&s, 1, "resources/subscribe", json!({"uri": "test://beta/static"}));
    assert_eq!(v["result"], json!({}), "{v}");
    r.reload_from_yaml(&config("", &[backend("alpha", &[])])).expect("reload");
    wait_status(&r, "beta stopped", |st| st["config"]["draining_backends"] == 0);
    let v = call(&s, 2, "resources/unsubscribe", json!({"uri": "test://beta/static"}));
    assert_eq!(v["result"], json!({}), "nothing left to undo: {v}");
}

#[test]
fn a_shutdown_during_a_reload_stops_every_backend_the_reload_started() {
    let _one = serial();
    let children0 = children();
    let r = router("", &[backend("alpha", &[])]);
    let reloading = {
        let r = r.clone();
        std::thread::spawn(move || r.reload_from_yaml(&config("", &[backend("alpha", &[]), backend("beta", &[])])))
    };
    r.shutdown(Duration::from_millis(500));
    // Either the reload ran first (and shutdown stopped beta too) or it found the router closed.
    let out = reloading.join().unwrap();
    assert!(out.is_ok() || matches!(out, Err(mcprouter::Error::Closed)), "{out:?}");
    drop(r);
    assert_eq!(children(), children0, "no child process left");
}
