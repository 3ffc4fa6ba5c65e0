//! What access logging and metrics cost per call.
//!
//! ```sh
//! cargo build --release && cargo run --release --example log_overhead
//! ```
//!
//! 1. End to end: `tools/call` through `Session::handle` against the project's test server,
//!    with the access log at info into a JSON sink that appends to a `Vec` (redaction on,
//!    with registered secrets) versus the log level at off. Rounds alternate so drift in
//!    the machine's speed hits both sides alike. Metrics are always on in the router, so
//!    both sides include them.
//! 2. In isolation: one access record through the `Logger` (kv fields → redacted JSON),
//!    and the two metrics updates a `tools/call` makes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use log::{Level, LevelFilter, Log, Record};
use mcprouter::logging::{Logger, Sink, install};
use mcprouter::metrics::{Metrics, Outcome};
use mcprouter::redact::Redactor;
use mcprouter::{Router, Session};

const CALLS: usize = 20_000;
const ROUNDS: usize = 5;

fn main() {
    let bin = std::env::var("MCPROUTER_BIN")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/mcprouter").to_owned());
    let secrets: Vec<String> = vec!["canary-env-XYZ".into(), "sk-live-0123456789abcdef".into()];
    let buf: Arc<Mutex<Vec<u8>>> = Arc::default();
    let sink_buf = Arc::clone(&buf);
    let lines = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sink_lines = Arc::clone(&lines);
    let logger = Logger::new(
        LevelFilter::Info,
        Sink::Callback(Box::new(move |_, _, line| {
            let mut b = sink_buf.lock().unwrap();
            if b.len() > 8 << 20 {
                b.clear();
            }
            b.extend_from_slice(line.as_bytes());
            b.push(b'\n');
            sink_lines.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })),
        Redactor::new(secrets.clone(), Vec::new()),
    );
    install(logger).expect("no logger installed yet");

    let yaml = format!(
        "backends:\n  - name: alpha\n    command: {}\n    args: [test-server, --name, alpha]\n    env: {{API_TOKEN: canary-env-XYZ}}\n",
        serde_json::to_string(&bin).unwrap()
    );
    let router = Router::from_yaml(&yaml).expect("router starts (build the release binary first)");
    let session = router.session(Some("bench")).unwrap();
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"b","version":"1"}}}"#;
    session.handle(init).unwrap();
    let call =
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"}}}"#;
    // Wall time, and this process's CPU time (every router thread, not the test server):
    // the wall time of a pipe round trip varies by more than the logging costs.
    let run = |n: usize, s: &Session| {
        let (t, c) = (Instant::now(), cpu_time());
        for _ in 0..n {
            let r = s.handle(call).unwrap().unwrap();
            assert!(r.contains("hello"));
        }
        (t.elapsed(), cpu_time() - c)
    };
    log::set_max_level(LevelFilter::Off);
    run(2_000, &session); // warm-up

    let per_round = CALLS / ROUNDS;
    let (mut off, mut on, mut off_cpu, mut on_cpu) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        log::set_max_level(LevelFilter::Off);
        let (w, c) = run(per_round, &session);
        off.push(w);
        off_cpu.push(c);
        log::set_max_level(LevelFilter::Info);
        let (w, c) = run(per_round, &session);
        on.push(w);
        on_cpu.push(c);
    }
    log::set_max_level(LevelFilter::Off);
    let us = |d: Duration| d.as_secs_f64() * 1e6 / per_round as f64;
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        us(v[v.len() / 2])
    };
    let total = |v: &[Duration]| v.iter().map(|d| d.as_secs_f64()).sum::<f64>() * 1e6 / CALLS as f64;
    println!("end to end, {CALLS} tools/call per side, {ROUNDS} alternating rounds:");
    println!(
        "  log off (metrics on):            {:7.2} us/call (median round), {:7.2} mean",
        median(&mut off.clone()),
        total(&off)
    );
    println!(
        "  access log info -> JSON Vec sink: {:7.2} us/call (median round), {:7.2} mean",
        median(&mut on.clone()),
        total(&on)
    );
    println!("  difference (mean):               {:7.2} us/call", total(&on) - total(&off));
    println!(
        "  router CPU time: {:.2} us/call off, {:.2} us/call on, difference {:.2} us/call",
        total(&off_cpu),
        total(&on_cpu),
        total(&on_cpu) - total(&off_cpu)
    );
    println!("  access lines written: {}", lines.load(std::sync::atomic::Ordering::Relaxed));
    if let Some(last) = buf.lock().unwrap().split(|&b| b == b'\n').rev().find(|l| !l.is_empty()) {
        println!("  last line: {}", String::from_utf8_lossy(last));
    }

    // The same session, a request the router answers itself (no pipe round trip, so no
    // scheduler noise): what the access record adds to Session::handle.
    let ping = r#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#;
    let pings = |n: u32| {
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(session.handle(ping).unwrap());
        }
        t.elapsed()
    };
    const PINGS: u32 = 100_000;
    let (mut p_off, mut p_on) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..ROUNDS {
        log::set_max_level(LevelFilter::Off);
        p_off += pings(PINGS);
        log::set_max_level(LevelFilter::Info);
        p_on += pings(PINGS);
    }
    log::set_max_level(LevelFilter::Off);
    let n = f64::from(PINGS) * ROUNDS as f64;
    let (a, b) = (p_off.as_secs_f64() * 1e9 / n, p_on.as_secs_f64() * 1e9 / n);
    println!("router-answered ping through Session::handle, {} per side:", PINGS as usize * ROUNDS);
    println!("  log off: {a:6.0} ns/call, access log on: {b:6.0} ns/call, difference {:6.0} ns", b - a);
    router.shutdown(Duration::from_secs(2));

    // In isolation.
    let direct = Logger::new(
        LevelFilter::Info,
        Sink::Callback(Box::new(|_, _, line| {
            std::hint::black_box(line);
        })),
        Redactor::new(secrets, Vec::new()),
    );
    let kvs: [(&str, log::kv::Value<'_>); 7] = [
        ("session", "bench".into()),
        ("method", "tools/call".into()),
        ("name", "echo".into()),
        ("uri", "".into()),
        ("backend", "alpha".into()),
        ("outcome", "ok".into()),
        ("duration_ms", 0.412f64.into()),
    ];
    const N: u32 = 200_000;
    let t = Instant::now();
    for _ in 0..N {
        direct.log(
            &Record::builder()
                .args(format_args!("{} {}", "tools/call", "ok"))
                .level(Level::Info)
                .target("mcprouter::access")
                .key_values(&kvs)
                .build(),
        );
    }
    let log_ns = t.elapsed().as_nanos() as f64 / f64::from(N);
    let m = Metrics::new(&["alpha".to_owned(), "beta".to_owned()]);
    m.set_known_tools(["echo".to_owned(), "add".to_owned()]);
    let t = Instant::now();
    for i in 0..N {
        m.request("tools/call", Some(0), Outcome::Ok, Duration::from_micros(u64::from(i % 5000)));
        m.tool_call("echo", Outcome::Ok);
    }
    let metrics_ns = t.elapsed().as_nanos() as f64 / f64::from(N);
    println!("in isolation, {N} iterations:");
    println!("  one access record -> redacted JSON line: {log_ns:7.0} ns");
    println!("  metrics of one tools/call (request + tool_call): {metrics_ns:7.0} ns");
}

/// User + system CPU time of this process so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct we pass, which lives on our stack.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}
