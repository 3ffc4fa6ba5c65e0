//! Chaos, with real processes: many threads call through a pool of test servers while
//! replicas are killed (SIGKILL) and hung (SIGSTOP) at random. Every call must get exactly
//! one answer within its deadline, counters must return to zero, a backend outside the
//! pool must serve throughout, and nothing may leak.

mod common;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn kill(pid: u64, sig: &str) {
    let _ = std::process::Command::new("kill").args([sig, &pid.to_string()]).status();
}

#[test]
fn chaos_every_call_gets_one_answer_in_time_and_nothing_leaks() {
    watchdog(200);
    let replicas = ["r1", "r2", "r3", "r4"];
    let mut backends: Vec<String> = replicas.iter().map(|n| backend(n, &[])).collect();
    backends.push(backend("steady", &[]));
    let mut y = config(
        "request_timeout_ms: 800\nmax_call_ms: 2000\nrestart: {initial_backoff_ms: 50, max_backoff_ms: 300}\n\
         health: {interval_ms: 200, timeout_ms: 300, failure_threshold: 2, max_backoff_ms: 400}\n\
         breaker: {failure_threshold: 3, open_timeout_ms: 300, half_open_max_probes: 1}",
        &backends,
    );
    y.push_str("pools:\n  - name: pool\n    backends: [r1, r2, r3, r4]\n    strategy: least_connections\n");
    let r = mcprouter::Router::from_yaml(&y).unwrap();
    let deadline_bound = Duration::from_millis(2000 + 3000); // the hard cap, plus slack for a loaded machine

    let stop = AtomicBool::new(false);
    let outcomes: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());
    let (calls, steady_ok, steady_bad) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let kills = AtomicU64::new(0);
    let hangs = AtomicU64::new(0);
    let slowest = Mutex::new(Duration::ZERO);
    let run_for = Duration::from_secs(8);
    std::thread::scope(|sc| {
        for t in 0..12 {
            let (r, stop, outcomes, calls, slowest) = (&r, &stop, &outcomes, &calls, &slowest);
            sc.spawn(move || {
                let s = r.session(Some(&format!("caller-{t}"))).unwrap();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let (name, args) = if n.is_multiple_of(3) {
                        ("pool__slow", json!({"ms": (n * 7) % 40}))
                    } else {
                        ("pool__whoami", json!({}))
                    };
                    let msg =
                        json!({"jsonrpc":"2.0","id":n,"method":"tools/call","params":{"name":name,"arguments":args}});
                    let began = Instant::now();
                    let reply = s.handle(&msg.to_string()).unwrap().expect("exactly one answer");
                    let took = began.elapsed();
                    let v: Value = serde_json::from_str(&reply).unwrap();
                    assert_eq!(v["id"], n, "the answer is to this call");
                    assert!(took < deadline_bound, "answered within the deadline: {took:?}");
                    let key = match v.get("error") {
                        Some(e) => format!("error {}", e["code"]),
                        None => "ok".to_owned(),
                    };
                    *outcomes.lock().unwrap().entry(key).or_default() += 1;
                    calls.fetch_add(1, Ordering::Relaxed);
                    let mut m = slowest.lock().unwrap();
                    *m = (*m).max(took);
                }
            });
        }
        // The backend outside the pool keeps serving while the pool burns.
        sc.spawn(|| {
            let s = r.session(Some("steady")).unwrap();
            while !stop.load(Ordering::Relaxed) {
                match tool_text(&s, "steady__whoami", json!({})) {
                    Ok(t) if t == "steady" => steady_ok.fetch_add(1, Ordering::Relaxed),
                    _ => steady_bad.fetch_add(1, Ordering::Relaxed),
                };
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        sc.spawn(|| {
            let began = Instant::now();
            let mut k = 0usize;
            while began.elapsed() < run_for {
                std::thread::sleep(Duration::from_millis(250));
                k += 1;
                let st = r.status();
                let Some(pid) = st["backends"][k % 4]["pid"].as_u64() else { continue };
                if st["backends"][k % 4]["state"] != "ready" {
                    continue;
                }
                if k.is_multiple_of(3) {
                    kill(pid, "-STOP");
                    hangs.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(500));
                    kill(pid, "-CONT");
                } else {
                    kill(pid, "-KILL");
                    kills.fetch_add(1, Ordering::Relaxed);
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
    });

    // Let the fleet heal, then every counter must be back at zero.
    // Health pings come and go, so judge one snapshot in which nothing is in flight.
    let mut st = r.status();
    let healed = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        st = r.status();
        st["backends"].as_array().unwrap().iter().all(|b| b["state"] == "ready" && b["in_flight"] == 0)
    });
    let metrics = r.metrics();
    let restarts: u64 = st["backends"].as_array().unwrap().iter().map(|b| b["restarts"].as_u64().unwrap()).sum();
    let retries = metrics.lines().find(|l| l.starts_with("mcprouter_retries_total")).unwrap_or("").to_owned();
    println!(
        "chaos: {} calls, outcomes {:?}, slowest {:?}, kills {}, hangs {}, restarts {restarts}, {retries}, steady ok {} / failed {}",
        calls.load(Ordering::Relaxed),
        outcomes.lock().unwrap(),
        slowest.lock().unwrap(),
        kills.load(Ordering::Relaxed),
        hangs.load(Ordering::Relaxed),
        steady_ok.load(Ordering::Relaxed),
        steady_bad.load(Ordering::Relaxed),
    );
    assert!(healed, "the fleet healed: {st}");
    assert_eq!(st["pools"][0]["in_flight"], json!([0, 0, 0, 0]), "every balancer pick was released");
    for b in st["backends"].as_array().unwrap() {
        assert_eq!(b["breaker_half_open_in_flight"], 0, "every breaker reservation was released: {b}");
        assert_eq!(b["in_flight"], 0, "no pending call left behind: {b}");
    }
    assert!(outcomes.lock().unwrap().get("ok").copied().unwrap_or(0) > 100, "the pool kept serving");
    assert_eq!(steady_bad.load(Ordering::Relaxed), 0, "the healthy backend served throughout");
    assert!(restarts > 0);
    r.shutdown(Duration::from_millis(500));
    drop(r);
    assert_eq!(router_threads(), 0, "no router thread outlives the router");
}
