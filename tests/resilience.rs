//! Supervision, health checks, breakers, pools and fallback chains, with real processes.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn pid_of(r: &mcprouter::Router, backend: usize) -> u32 {
    r.status()["backends"][backend]["pid"].as_u64().expect("a pid") as u32
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill").args([sig, &pid.to_string()]).status().unwrap().success();
    assert!(ok, "kill {sig} {pid}");
}

fn wait_until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

const FAST_RESTART: &str = "restart: {initial_backoff_ms: 50, max_backoff_ms: 400}";

#[test]
fn a_crashed_backend_is_restarted_and_clients_are_told() {
    let r = router(FAST_RESTART, &[backend("alpha", &[]), backend("beta", &[])]);
    let s = r.session(None).unwrap();
    let old = pid_of(&r, 1);
    assert_eq!(tool_text(&s, "beta__crash", json!({})).unwrap_err().0, -32000);
    // A down backend keeps its names in the catalog (calls get -32000 meanwhile), so its
    // death and return change no list and announce nothing.
    assert!(tool_names(&s).contains(&"beta__whoami".to_owned()), "beta's tools stay");
    assert!(wait_until(Duration::from_secs(10), || r.status()["backends"][1]["state"] == "ready"), "restarted");
    assert_eq!(tool_text(&s, "beta__whoami", json!({})).unwrap(), "beta");
    let st = r.status();
    assert_ne!(st["backends"][1]["pid"].as_u64().unwrap() as u32, old);
    assert_eq!(st["backends"][1]["restarts"], 1);
}

#[test]
fn a_crash_loop_earns_a_cooldown() {
    let r = router(
        "restart: {initial_backoff_ms: 20, max_backoff_ms: 40, max_restarts: 2, window_ms: 60000, cooldown_ms: 600000}",
        &[backend("alpha", &[]), backend("loop", &["--exit-on-start", "1"])],
    );
    let cooled = wait_until(Duration::from_secs(10), || {
        r.status()["backends"][1]["next_restart_in_ms"].as_u64().is_some_and(|ms| ms > 60_000)
    });
    let st = r.status();
    assert!(cooled, "{st}");
    // `restarts` counts restarts that ran: two backed off, and the third waits out the cooldown.
    assert_eq!(st["backends"][1]["restarts"], 2, "two backed-off restarts, then the cooldown");
    let s = r.session(None).unwrap();
    assert_eq!(tool_text(&s, "whoami", json!({})).unwrap(), "alpha");
}

#[test]
fn an_unresponsive_backend_leaves_the_routing_set_and_comes_back() {
    let r = router(
        "health: {interval_ms: 100, timeout_ms: 100, failure_threshold: 2, max_backoff_ms: 200}",
        &[backend("alpha", &[])],
    );
    let s = r.session(None).unwrap();
    let pid = pid_of(&r, 0);
    signal(pid, "-STOP");
    let out = wait_until(Duration::from_secs(10), || r.status()["backends"][0]["healthy"] == false);
    let err = tool_text(&s, "whoami", json!({})).unwrap_err();
    signal(pid, "-CONT");
    assert!(out, "pings time out: unhealthy");
    // Refused for its health (fast), not sent and timed out.
    assert!(err.1.contains("health"), "{err:?}");
    assert!(
        wait_until(Duration::from_secs(10), || r.status()["backends"][0]["healthy"] == true),
        "a probe brings it back"
    );
    assert_eq!(tool_text(&s, "whoami", json!({})).unwrap(), "alpha");
}

#[test]
fn the_breaker_opens_fails_fast_and_admits_one_probe_when_half_open() {
    // The failures are backend deaths, not timeouts: the half-open probe then hangs for as
    // long as the test needs it in flight, and fails exactly when the test kills its process.
    // The open timeout (1 s) outlasts a restart (50 ms backoff), so "still open" is a fact
    // the test can rely on once the backend is back.
    let r = router(
        "request_timeout_ms: 60000\nrestart: {initial_backoff_ms: 50, max_backoff_ms: 50}\n\
         breaker: {failure_threshold: 2, open_timeout_ms: 1000, half_open_max_probes: 1}\n\
         health: {interval_ms: 0, failure_threshold: 1000}",
        &[backend("alpha", &[])],
    );
    let s = r.session(None).unwrap();
    let backend = || r.status()["backends"][0].clone();
    let ready = || backend()["state"] == "ready";
    // Waits out the open timeout; a sleep never returns early, and that is all this needs.
    let open_timeout_passes = || std::thread::sleep(Duration::from_millis(1100));
    for _ in 0..2 {
        assert!(wait_until(Duration::from_secs(10), ready), "{}", backend());
        assert_eq!(tool_text(&s, "crash", json!({})).unwrap_err().0, -32000);
    }
    assert_eq!(backend()["breaker"], "open");
    assert!(wait_until(Duration::from_secs(10), ready), "restarted: {}", backend());
    // Refused by the breaker (-32004), not sent.
    let err = tool_text(&s, "whoami", json!({})).unwrap_err();
    assert_eq!(err.0, -32004, "{err:?}");
    open_timeout_passes();
    // Half-open: one probe (a hanging call) is admitted; a second caller is refused meanwhile.
    std::thread::scope(|sc| {
        let probe = sc.spawn(|| tool_text(&s, "hang", json!({})));
        let probing = || {
            let b = backend();
            b["in_flight"] == 1 && b["breaker_half_open_in_flight"] == 1
        };
        assert!(wait_until(Duration::from_secs(10), probing), "the probe is in flight: {}", backend());
        assert_eq!(tool_text(&s, "whoami", json!({})).unwrap_err().0, -32004, "only one probe at a time");
        signal(pid_of(&r, 0), "-KILL");
        assert_eq!(probe.join().unwrap().unwrap_err().0, -32000, "the probe fails with its backend");
    });
    assert_eq!(backend()["breaker"], "open", "a failed probe reopens");
    assert_eq!(backend()["breaker_half_open_in_flight"], 0);
    assert!(wait_until(Duration::from_secs(10), ready), "restarted: {}", backend());
    open_timeout_passes();
    assert_eq!(tool_text(&s, "whoami", json!({})).unwrap(), "alpha", "a good probe closes it");
    assert_eq!(backend()["breaker"], "closed");
}

fn pool(strategy: &str, members: &[(&str, u32)], extra: &str) -> mcprouter::Router {
    let backends: Vec<String> = members
        .iter()
        .map(|(n, w)| {
            let mut b = backend(n, &[]);
            b.push_str(&format!("    weight: {w}\n"));
            b
        })
        .collect();
    let names: Vec<&str> = members.iter().map(|m| m.0).collect();
    let mut y = config(extra, &backends);
    y.push_str(&format!(
        "pools:\n  - name: replicas\n    backends: {}\n    strategy: {strategy}\n",
        serde_json::to_string(&names).unwrap()
    ));
    watchdog(240);
    mcprouter::Router::from_yaml(&y).expect("router starts")
}

#[test]
fn a_pool_shows_each_tool_once_and_balances_round_robin() {
    let r = pool("round_robin", &[("r1", 1), ("r2", 1), ("r3", 1)], "");
    let s = r.session(None).unwrap();
    let names = tool_names(&s);
    assert_eq!(names.iter().filter(|n| *n == "whoami").count(), 1, "{names:?}");
    let seen: Vec<String> = (0..6).map(|_| tool_text(&s, "whoami", json!({})).unwrap()).collect();
    assert_eq!(seen, ["r1", "r2", "r3", "r1", "r2", "r3"]);
    // A replica that dies is skipped without a failed call.
    signal(pid_of(&r, 1), "-KILL");
    assert!(wait_until(Duration::from_secs(5), || r.status()["backends"][1]["state"] != "ready"));
    for _ in 0..6 {
        assert_ne!(tool_text(&s, "whoami", json!({})).unwrap(), "r2");
    }
    assert_eq!(r.status()["pools"][0]["in_flight"], json!([0, 0, 0]));
}

#[test]
fn smooth_weighted_round_robin_follows_nginx() {
    let r = pool("weighted_round_robin", &[("a", 5), ("b", 1), ("c", 1)], "");
    let s = r.session(None).unwrap();
    let seen: Vec<String> = (0..7).map(|_| tool_text(&s, "whoami", json!({})).unwrap()).collect();
    assert_eq!(seen, ["a", "a", "b", "a", "c", "a", "a"]);
}

#[test]
fn sticky_sessions_stay_on_one_replica() {
    let r = pool("sticky", &[("r1", 1), ("r2", 1), ("r3", 1), ("r4", 1)], "");
    let mut homes = std::collections::HashSet::new();
    for c in 0..12 {
        let s = r.session(Some(&format!("client-{c}"))).unwrap();
        let first = tool_text(&s, "whoami", json!({})).unwrap();
        for _ in 0..3 {
            assert_eq!(tool_text(&s, "whoami", json!({})).unwrap(), first);
        }
        homes.insert(first);
    }
    assert!(homes.len() >= 2, "clients spread over replicas: {homes:?}");
}

fn chain(idempotent: bool, primary_flags: &[&str]) -> mcprouter::Router {
    let mut p = backend("primary", primary_flags);
    p.push_str("    timeout_ms: 300\n");
    let backends = [p, backend("secondary", &[])];
    let mut y = config("prefix: never\nhealth: {interval_ms: 0}\nrestart: {enabled: false}", &backends);
    y.push_str(&format!(
        "fallbacks:\n  - tool: whoami\n    candidates: [primary, secondary]\n    idempotent: {idempotent}\n  - tool: add\n    candidates: [primary, secondary]\n"
    ));
    watchdog(240);
    mcprouter::Router::from_yaml(&y).expect("router starts")
}

#[test]
fn a_fallback_chain_moves_on_when_the_primary_is_down() {
    let r = chain(false, &[]);
    let s = r.session(None).unwrap();
    assert_eq!(tool_text(&s, "whoami", json!({})).unwrap(), "primary");
    signal(pid_of(&r, 0), "-KILL");
    assert!(wait_until(Duration::from_secs(5), || r.status()["backends"][0]["state"] != "ready"));
    assert_eq!(tool_text(&s, "whoami", json!({})).unwrap(), "secondary");
    // An error the backend meant is an answer, not a reason to fall back.
    let r = chain(false, &[]);
    let s = r.session(None).unwrap();
    let v = call(&s, 1, "tools/call", json!({"name": "add", "arguments": {"a": "x"}}));
    assert!(v["error"].is_object(), "{v}");
    assert!(r.metrics().contains("mcprouter_fallbacks_total 0"), "no fallback on a JSON-RPC error");
}

#[test]
fn a_call_that_may_have_run_is_resent_only_when_idempotent() {
    let r = chain(false, &["--delay-ms", "600"]);
    let s = r.session(None).unwrap();
    assert_eq!(tool_text(&s, "whoami", json!({})).unwrap_err().0, -32001, "not idempotent: no second send");
    assert!(r.metrics().contains("mcprouter_fallbacks_total 0"));
    drop(s);
    let r = chain(true, &["--delay-ms", "600"]);
    let s = r.session(None).unwrap();
    assert_eq!(tool_text(&s, "whoami", json!({})).unwrap(), "secondary", "idempotent: the timed-out call moves on");
    assert!(r.metrics().contains("mcprouter_fallbacks_total 1"));
}

#[test]
fn progress_extends_the_deadline_but_never_past_the_hard_cap() {
    let mut b = backend("alpha", &[]);
    b.push_str("    timeout_ms: 150\n");
    let r = router("max_call_ms: 2000", &[b.clone()]);
    let s = r.session(None).unwrap();
    let with_progress = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"progress","arguments":{"steps":40},"_meta":{"progressToken":1}}}"#;
    let v: Value = serde_json::from_str(&s.handle(with_progress).unwrap().unwrap()).unwrap();
    assert_eq!(
        v["result"]["content"][0]["text"], "done 40",
        "400 ms of steady progress outlives a 150 ms timeout: {v}"
    );
    let without =
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"progress","arguments":{"steps":40}}}"#;
    let v: Value = serde_json::from_str(&s.handle(without).unwrap().unwrap()).unwrap();
    assert_eq!(v["error"]["code"], -32001, "{v}");
    drop(s);
    let r = router("max_call_ms: 250", &[b]);
    let s = r.session(None).unwrap();
    let v: Value = serde_json::from_str(&s.handle(with_progress).unwrap().unwrap()).unwrap();
    assert_eq!(v["error"]["code"], -32001, "the hard cap holds: {v}");
}

#[test]
fn fail_closed_refuses_initialize_while_a_backend_is_down() {
    let r = router(
        "fail_mode: closed\ninit_timeout_ms: 300",
        &[backend("alpha", &[]), backend("mute", &["--hang-initialize"])],
    );
    let s = r.session(None).unwrap();
    let v = initialize(&s, json!({}));
    assert_eq!(v["error"]["code"], -32000, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("mute"));
    let r = router("init_timeout_ms: 300", &[backend("alpha", &[]), backend("mute", &["--hang-initialize"])]);
    let s = r.session(None).unwrap();
    assert!(initialize(&s, json!({}))["result"].is_object(), "fail-open by default");
}
