//! The shared stderr drain (src/backend/stdio/stderr.rs) against real child processes of
//! the test server: every backend's stderr lines are logged while it runs, a backend a
//! reload removes gives its pipes back, and the drain's thread ends with the last backend.
//! One test: it counts the process's threads and descriptors.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// Stderr records of backend `name`.
fn stderr_lines(name: &str) -> usize {
    let tag = format!("[{name}] ");
    logs::records(|(_, t, m)| t == "mcprouter::backend::stderr" && m.starts_with(&tag)).len()
}

fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(prefix)))
        .count()
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Polls `f` until it holds; the deadline is generous, only there so a broken build fails.
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_backends_stderr_is_logged_by_one_thread_that_ends_with_the_last_backend() {
    logs::capture();
    // Warm up once so lazily created process-wide state is already counted.
    router("", &[backend("warm", &[])]).shutdown(Duration::from_millis(500));
    let (threads0, fds0) = (router_threads(), fds());
    assert_eq!(threads0, 0, "no router thread outlives its router");

    // Each backend writes ten 80-byte lines on stderr as it starts.
    let names: Vec<String> = (0..12).map(|i| format!("noisy{i}")).collect();
    let all: Vec<String> = names.iter().map(|n| backend(n, &["--stderr-flood", "800"])).collect();
    let r = router("", &all);
    for n in &names {
        wait_for(&format!("{n}'s start-up lines"), || stderr_lines(n) >= 10);
    }
    // Two threads per backend (writer, reader) and one drain for all.
    assert_eq!(threads_named("mcprouter-noisy"), names.len() * 2);
    assert_eq!(threads_named("mcprouter-stder"), 1, "one drain"); // comm keeps 15 bytes

    // A reload that removes half the backends: each gives back its three pipes.
    let fds_full = fds();
    let kept: Vec<String> = all[..6].to_vec();
    r.reload_from_yaml(&config("", &kept)).expect("reload");
    wait_for("the removed backends' pipes closed", || fds() == fds_full - 6 * 3);

    // The drain still serves the backends that stayed, during calls too.
    let s = r.session(None).unwrap();
    let before = stderr_lines("noisy0");
    assert_eq!(tool_text(&s, "noisy0__stderr_flood", json!({"bytes": 8000})).unwrap(), "flooded");
    wait_for("noisy0's lines during a call", || stderr_lines("noisy0") >= before + 100);

    drop(s);
    r.shutdown(Duration::from_millis(500));
    assert_eq!(router_threads(), 0, "the drain's thread ended with the last backend");
    assert_eq!(fds(), fds0, "descriptors leaked");

    // And it starts again for the next router.
    let r = router("", &[backend("again", &["--stderr-flood", "160"])]);
    wait_for("the next router's backend lines", || stderr_lines("again") >= 2);
    r.shutdown(Duration::from_millis(500));
    assert_eq!(router_threads(), 0);
}
