//! What the router adds on top of talking to an MCP server directly.
//!
//! ```sh
//! cargo bench --bench overhead              # full run
//! cargo bench --bench overhead -- --quick   # short run (development)
//! cargo bench --bench overhead -- latency   # one scenario: latency throughput catalog fanout gateway http
//! ```
//!
//! Every figure is printed next to a baseline measured in the same run on the same machine,
//! and as a ratio against it; nothing here asserts on timing. The baseline is a *direct
//! client*: the project's test server (`mcprouter test-server`) spawned by this process and
//! spoken to over the same kind of pipe with the same framing code (`read_line_limited`),
//! with no router in between. Each scenario runs in a fresh process of this binary, so one
//! scenario's threads and heap do not colour the next one's figures (memory in particular).
//!
//! `cargo test` builds this target but does not run it: without cargo bench's `--bench`
//! argument the binary only prints how to run it. `scripts/profile.sh` runs the routed half
//! of scenario 1 under callgrind (`--profile N`).

use std::collections::HashSet;
use std::io::{BufReader, BufWriter, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;
use mcprouter::framing::{Line, read_line_limited};
use mcprouter::{Router, Session};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The `mcprouter` binary cargo built next to this bench (release profile under cargo bench).
const BIN: &str = env!("CARGO_BIN_EXE_mcprouter");
const MAX_LINE: usize = 16 * 1024 * 1024;
const SCENARIOS: [&str; 6] = ["latency", "throughput", "catalog", "fanout", "gateway", "http"];
/// Where a scenario process appends its target lines (`key, text, measured, verdict`, tab
/// separated) for the parent's summary.
const TARGETS_ENV: &str = "MCPROUTER_BENCH_TARGETS";

const INIT: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"overhead-bench","version":"0"}}}"#;
const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
/// Ends a pipelined run: its answer comes after the server has read every call before it.
const SENTINEL_ID: u64 = 1;
const SENTINEL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
/// Pipelined call ids start here, far from the handshake's and the sentinel's.
const PIPELINE_BASE_ID: u64 = 1 << 32;

// ---------------------------------------------------------------------------------------
// Options

#[derive(Clone, Copy)]
struct Opts {
    quick: bool,
}

impl Opts {
    /// Sequential calls per measured side (after warm-up).
    fn calls(self) -> usize {
        if self.quick { 500 } else { 5000 }
    }
    fn warmup(self) -> usize {
        if self.quick { 100 } else { 500 }
    }
    /// How long one throughput point runs.
    fn window(self) -> Duration {
        Duration::from_millis(if self.quick { 250 } else { 1500 })
    }
}

// ---------------------------------------------------------------------------------------
// Replies, requests, statistics

/// Just enough of a JSON-RPC reply to match it by id and tell a result from an error;
/// every client (direct or routed) reads its replies with this same parse.
#[derive(Deserialize)]
struct Reply<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

enum Got {
    Ok(u64),
    Err(u64, String),
    /// A notification or a request from the server: not an answer.
    Other,
}

fn classify(line: &[u8]) -> Got {
    let r: Reply<'_> = match serde_json::from_slice(line) {
        Ok(r) => r,
        Err(e) => panic!("unparsable reply ({e}): {}", String::from_utf8_lossy(line)),
    };
    let id = r.id.and_then(|i| i.get().parse::<u64>().ok());
    match (id, r.result, r.error) {
        (Some(id), Some(_), None) => Got::Ok(id),
        (Some(id), _, Some(e)) => Got::Err(id, e.get().to_owned()),
        _ => Got::Other,
    }
}

fn call_line(id: u64, tool: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#)
}

fn expect_ok(got: Got, what: &str) {
    match got {
        Got::Ok(_) => {}
        Got::Err(_, e) => panic!("{what}: error reply {e}"),
        Got::Other => panic!("{what}: not a reply"),
    }
}

/// Latency statistics in microseconds.
#[derive(Clone, Copy)]
struct Stats {
    p50: f64,
    p99: f64,
    mean: f64,
}

impl Stats {
    fn of(mut ns: Vec<u64>) -> Stats {
        assert!(!ns.is_empty());
        ns.sort_unstable();
        let at = |q: f64| ns[((ns.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
        let mean = ns.iter().sum::<u64>() as f64 / ns.len() as f64 / 1000.0;
        Stats { p50: at(0.50), p99: at(0.99), mean }
    }
    fn per_sec(self) -> f64 {
        1e6 / self.mean
    }
}

fn timed(f: impl FnOnce()) -> u64 {
    let t = Instant::now();
    f();
    t.elapsed().as_nanos() as u64
}

/// Calls that completed inside a throughput window.
#[derive(Default, Clone, Copy)]
struct Run {
    ok: u64,
    errors: u64,
    secs: f64,
}

impl Run {
    fn rate(self) -> f64 {
        self.ok as f64 / self.secs
    }
    /// Two runs one after the other: calls and windows add up.
    fn then(self, o: Run) -> Run {
        Run { ok: self.ok + o.ok, errors: self.errors + o.errors, secs: self.secs + o.secs }
    }
    /// Two runs side by side over the same window.
    fn beside(self, o: Run) -> Run {
        Run { ok: self.ok + o.ok, errors: self.errors + o.errors, secs: self.secs.max(o.secs) }
    }
}

// ---------------------------------------------------------------------------------------
// Output

fn heading(s: &str) {
    println!("\n== {s}");
}

fn latency_table(rows: &[(&str, Stats)], base: Stats) {
    println!("  {:<36} {:>9} {:>9} {:>9} {:>10}", "", "p50 µs", "p99 µs", "mean µs", "calls/s");
    for (name, s) in rows {
        println!("  {:<36} {:>9.1} {:>9.1} {:>9.1} {:>10.0}", name, s.p50, s.p99, s.mean, s.per_sec());
    }
    for (name, s) in rows.iter().skip(1) {
        println!(
            "  {:<36} {:>8.2}x {:>8.2}x {:>8.2}x {:>9.2}x",
            format!("ratio {name}"),
            s.p50 / base.p50,
            s.p99 / base.p99,
            s.mean / base.mean,
            s.per_sec() / base.per_sec()
        );
        println!(
            "  {:<36} {:>9.1} {:>9.1} {:>9.1}",
            format!("added µs {name}"),
            s.p50 - base.p50,
            s.p99 - base.p99,
            s.mean - base.mean
        );
    }
}

/// How a measured figure compares with the issue's target.
enum Verdict {
    Met,
    Missed,
    /// The baseline itself is dominated by noise (scheduler stalls on a loaded machine).
    Inconclusive(&'static str),
}

impl Verdict {
    fn met_if(ok: bool) -> Verdict {
        if ok { Verdict::Met } else { Verdict::Missed }
    }
}

/// An issue target, printed inline and handed to the parent process for the summary.
fn target(key: &str, text: &str, measured: &str, verdict: Verdict) {
    let verdict = match verdict {
        Verdict::Met => "met".to_owned(),
        Verdict::Missed => "missed".to_owned(),
        Verdict::Inconclusive(why) => format!("inconclusive: {why}"),
    };
    println!("  issue target: {text}: {measured} ({verdict})");
    if let Ok(path) = std::env::var(TARGETS_ENV)
        && let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path)
    {
        let _ = writeln!(f, "{key}\t{text}\t{measured}\t{verdict}");
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// This process's resident set, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Resident KiB of this process in 256 KiB anonymous mappings (the stacks of the router's
/// threads: each stdio backend's writer and reader threads ask for 256 KiB, and so did the
/// start-up threads whose stacks glibc keeps cached after they end) and in the rest.
fn rss_split_kib() -> (u64, u64) {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let (mut stacks, mut rest, mut is_stack) = (0, 0, false);
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            let size = u64::from_str_radix(b, 16).unwrap_or(0).saturating_sub(u64::from_str_radix(a, 16).unwrap_or(0));
            let perms = f.next().unwrap_or("");
            let path = f.nth(3);
            is_stack = size == 256 * 1024 && perms.starts_with("rw") && path.is_none();
        } else if first == "Rss:" {
            let kib: u64 = f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            if is_stack { stacks += kib } else { rest += kib }
        }
    }
    (stacks, rest)
}

// ---------------------------------------------------------------------------------------
// The direct client: a child MCP server on a pipe, no router

struct Direct {
    child: Child,
    w: Option<BufWriter<ChildStdin>>,
    r: BufReader<ChildStdout>,
    buf: Vec<u8>,
}

impl Direct {
    /// Spawns `mcprouter ARGS` and runs the MCP handshake with it.
    fn spawn(args: &[&str]) -> Direct {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        let w = BufWriter::with_capacity(64 * 1024, child.stdin.take().expect("stdin"));
        let r = BufReader::with_capacity(64 * 1024, child.stdout.take().expect("stdout"));
        let mut d = Direct { child, w: Some(w), r, buf: Vec::with_capacity(4096) };
        expect_ok(d.call(INIT), "initialize");
        d.send(INITIALIZED);
        d
    }

    fn w(&mut self) -> &mut BufWriter<ChildStdin> {
        self.w.as_mut().expect("stdin open")
    }

    fn send(&mut self, line: &str) {
        let w = self.w();
        w.write_all(line.as_bytes()).and_then(|()| w.write_all(b"\n")).and_then(|()| w.flush()).expect("write");
    }

    /// The next reply (notifications and server requests are skipped); the line stays in `buf`.
    fn read_reply(&mut self) -> Got {
        loop {
            match read_line_limited(&mut self.r, &mut self.buf, MAX_LINE).expect("read") {
                Line::Complete if self.buf.is_empty() => {}
                Line::Complete => match classify(&self.buf) {
                    Got::Other => {}
                    got => return got,
                },
                Line::Eof => panic!("the server closed its stdout"),
                Line::TooLong(_) => panic!("reply over {MAX_LINE} bytes"),
            }
        }
    }

    /// One request, one reply, on the caller's thread.
    fn call(&mut self, line: &str) -> Got {
        self.send(line);
        self.read_reply()
    }

    /// Follows `nextCursor` through a whole list; returns (items, pages).
    fn list_all(&mut self, method: &str, field: &str) -> (usize, usize) {
        let (mut items, mut pages, mut cursor) = (0, 0, None::<String>);
        loop {
            let params =
                cursor.as_ref().map(|c| format!(r#","params":{{"cursor":{}}}"#, serde_json::to_string(c).unwrap()));
            let line = format!(r#"{{"jsonrpc":"2.0","id":7,"method":"{method}"{}}}"#, params.unwrap_or_default());
            expect_ok(self.call(&line), method);
            let (n, next) = list_page(&self.buf, field);
            items += n;
            pages += 1;
            match next {
                Some(c) => cursor = Some(c),
                None => return (items, pages),
            }
        }
    }

    /// The best one client can do: a writer thread keeps `window` calls in flight, a reader
    /// (this thread) matches replies to them by id. Counts calls answered within `dur`.
    fn pipelined(&mut self, window: usize, dur: Duration, tool: &str) -> Run {
        let (tok_tx, tok_rx) = bounded::<()>(window);
        for _ in 0..window {
            tok_tx.send(()).expect("token");
        }
        let inflight = Mutex::new(HashSet::<u64>::with_capacity(window * 2));
        let w = self.w.as_mut().expect("stdin open");
        let (r, buf) = (&mut self.r, &mut self.buf);
        let start = Instant::now();
        let end = start + dur;
        let mut run = Run { secs: dur.as_secs_f64(), ..Run::default() };
        let mut first_error = None;
        std::thread::scope(|s| {
            let inflight = &inflight;
            s.spawn(move || {
                let mut id = PIPELINE_BASE_ID;
                while Instant::now() < end && tok_rx.recv_deadline(end).is_ok() {
                    loop {
                        id += 1;
                        inflight.lock().insert(id);
                        let line = call_line(id, tool);
                        w.write_all(line.as_bytes()).and_then(|()| w.write_all(b"\n")).expect("write");
                        if tok_rx.try_recv().is_err() {
                            break;
                        }
                    }
                    w.flush().expect("flush");
                }
                w.write_all(SENTINEL.as_bytes())
                    .and_then(|()| w.write_all(b"\n"))
                    .and_then(|()| w.flush())
                    .expect("write");
            });
            let mut sentinel = false;
            loop {
                let got = match read_line_limited(r, buf, MAX_LINE).expect("read") {
                    Line::Complete if buf.is_empty() => continue,
                    Line::Complete => classify(buf),
                    Line::Eof => panic!("the server closed its stdout"),
                    Line::TooLong(_) => panic!("reply over {MAX_LINE} bytes"),
                };
                let (id, ok) = match got {
                    Got::Ok(id) => (id, true),
                    Got::Err(id, e) => {
                        first_error.get_or_insert(e);
                        (id, false)
                    }
                    Got::Other => continue,
                };
                if id == SENTINEL_ID {
                    sentinel = true;
                } else {
                    assert!(inflight.lock().remove(&id), "reply to an id never sent: {id}");
                    if Instant::now() <= end {
                        if ok { run.ok += 1 } else { run.errors += 1 }
                    }
                    let _ = tok_tx.try_send(());
                }
                if sentinel && inflight.lock().is_empty() {
                    break;
                }
            }
        });
        if let Some(e) = first_error {
            println!("  (direct pipelined: {} error replies, first: {e})", run.errors);
        }
        run
    }

    /// Closes stdin: the server exits on end of input.
    fn close_stdin(&mut self) {
        if let Some(mut w) = self.w.take() {
            let _ = w.flush();
        }
    }
}

impl Drop for Direct {
    fn drop(&mut self) {
        self.close_stdin();
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Items on one `*/list` page and its `nextCursor`, read the way a client must.
fn list_page(line: &[u8], field: &str) -> (usize, Option<String>) {
    #[derive(Deserialize)]
    struct Page<'a> {
        #[serde(borrow)]
        result: std::collections::HashMap<&'a str, &'a RawValue>,
    }
    let page: Page<'_> = serde_json::from_slice(line).expect("a list page");
    let items: Vec<&RawValue> =
        page.result.get(field).map(|v| serde_json::from_str(v.get()).expect("an array")).unwrap_or_default();
    let next = page.result.get("nextCursor").and_then(|c| serde_json::from_str::<String>(c.get()).ok());
    (items.len(), next)
}

// ---------------------------------------------------------------------------------------
// The routed side

fn backend_yaml(name: &str, extra: &[&str]) -> String {
    let mut args = vec!["test-server", "--name", name];
    args.extend_from_slice(extra);
    format!(
        "  - {{name: {name}, command: {}, args: {}}}\n",
        serde_json::to_string(BIN).unwrap(),
        serde_json::to_string(&args).unwrap()
    )
}

fn router_yaml(router: &str, backends: &[String], rest: &str) -> String {
    format!("router: {{{router}}}\nbackends:\n{}{rest}", backends.concat())
}

/// (ready, total) backends.
fn readiness(router: &Router) -> (usize, usize) {
    let status = router.status();
    let all = status["backends"].as_array().cloned().unwrap_or_default();
    (all.iter().filter(|b| b["state"] == "ready").count(), all.len())
}

fn start_router(yaml: &str) -> Router {
    let router = Router::from_yaml(yaml).unwrap_or_else(|e| panic!("router: {e}\n{yaml}"));
    let (ready, total) = readiness(&router);
    assert_eq!(ready, total, "not every backend came up");
    router
}

fn open_session(router: &Router, id: &str) -> Session {
    let s = router.session(Some(id)).expect("session");
    let init = s.handle(INIT).expect("open").expect("a reply");
    expect_ok(classify(init.as_bytes()), "initialize");
    s.handle(INITIALIZED).expect("open");
    s
}

fn routed(s: &Session, line: &str) -> Got {
    let reply = s.handle(line).expect("session open").expect("a reply");
    classify(reply.as_bytes())
}

/// `threads` callers, one session each, calling `tool` back to back for `dur`.
fn routed_throughput(router: &Router, threads: usize, dur: Duration, tool: &str) -> Run {
    let sessions: Vec<Session> = (0..threads).map(|i| open_session(router, &format!("caller-{i}"))).collect();
    let barrier = Barrier::new(threads + 1);
    let end_at = OnceLock::<Instant>::new();
    let total = Mutex::new(Run { secs: dur.as_secs_f64(), ..Run::default() });
    let first_error = Mutex::new(None::<String>);
    std::thread::scope(|s| {
        for session in &sessions {
            let (barrier, end_at, total, first_error) = (&barrier, &end_at, &total, &first_error);
            s.spawn(move || {
                barrier.wait();
                let end = *end_at.get().expect("set before the barrier");
                let (mut ok, mut errors, mut id) = (0, 0, 0u64);
                while Instant::now() < end {
                    id += 1;
                    let got = routed(session, &call_line(id, tool));
                    if Instant::now() <= end {
                        match got {
                            Got::Ok(_) => ok += 1,
                            Got::Err(_, e) => {
                                errors += 1;
                                first_error.lock().get_or_insert(e);
                            }
                            Got::Other => {}
                        }
                    }
                }
                let mut t = total.lock();
                t.ok += ok;
                t.errors += errors;
            });
        }
        end_at.set(Instant::now() + dur).expect("once");
        barrier.wait();
    });
    let run = *total.lock();
    if let Some(e) = first_error.lock().take() {
        println!("  (routed: {} error replies, first: {e})", run.errors);
    }
    run
}

/// Sequential calls, alternating sides in rounds so load changes on the machine hit both.
fn interleaved(calls: usize, mut sides: Vec<&mut dyn FnMut(u64) -> Got>) -> Vec<Stats> {
    const ROUNDS: usize = 10;
    let per = calls.div_ceil(ROUNDS);
    let mut samples: Vec<Vec<u64>> = sides.iter().map(|_| Vec::with_capacity(calls)).collect();
    let mut id = 100u64;
    for round in 0..ROUNDS {
        for k in 0..sides.len() {
            // Rotate who goes first each round.
            let side = (k + round) % sides.len();
            for _ in 0..per {
                id += 1;
                let f = &mut sides[side];
                let mut got = Got::Other;
                samples[side].push(timed(|| got = f(id)));
                expect_ok(got, "call");
            }
        }
    }
    samples.into_iter().map(Stats::of).collect()
}

// ---------------------------------------------------------------------------------------
// 1. per-call overhead

fn latency(o: Opts) {
    heading(&format!(
        "1. per-call overhead in process: tools/call whoami, one caller, sequential ({} calls per side after {} warm-up, interleaved)",
        o.calls(),
        o.warmup()
    ));
    let router = start_router(&router_yaml("request_timeout_ms: 10000", &[backend_yaml("alpha", &[])], ""));
    let session = open_session(&router, "bench");
    // The same router with the callers' spinning off: what the spin is worth, in this run.
    let parked = start_router(&router_yaml("request_timeout_ms: 10000, spin_us: 0", &[backend_yaml("alpha", &[])], ""));
    let parked_session = open_session(&parked, "bench");
    let mut direct = Direct::spawn(&["test-server", "--name", "alpha"]);
    let lines: Vec<String> = (0..o.warmup() as u64).map(|i| call_line(10 + i, "whoami")).collect();
    for l in &lines {
        expect_ok(direct.call(l), "warm-up");
        expect_ok(routed(&session, l), "warm-up");
        expect_ok(routed(&parked_session, l), "warm-up");
    }
    let mut d = |id: u64| {
        let l = call_line(id, "whoami");
        direct.call(&l)
    };
    let mut r = |id: u64| routed(&session, &call_line(id, "whoami"));
    let mut p = |id: u64| routed(&parked_session, &call_line(id, "whoami"));
    let stats = interleaved(o.calls(), vec![&mut d, &mut r, &mut p]);
    let (base, via) = (stats[0], stats[1]);
    latency_table(
        &[
            ("direct client (baseline)", base),
            ("routed (Session::handle)", via),
            ("routed, spin_us: 0 (no spinning)", stats[2]),
        ],
        base,
    );
    let (add50, add99) = (via.p50 - base.p50, via.p99 - base.p99);
    target("latency_p50", "added latency p50 ≤ 15 µs", &format!("{add50:.1} µs"), Verdict::met_if(add50 <= 15.0));
    // On a loaded machine both sides' p99 is a scheduler stall (a tick of several ms), not
    // the router: the difference of two such figures says nothing either way.
    let p99 = if base.p99 > 10.0 * base.p50 {
        Verdict::Inconclusive("the baseline's own p99 is a scheduler stall (>10× its p50)")
    } else {
        Verdict::met_if(add99 <= 60.0)
    };
    target("latency_p99", "added latency p99 ≤ 60 µs", &format!("{add99:.1} µs"), p99);
    drop((session, parked_session));
    router.shutdown(Duration::from_secs(2));
    parked.shutdown(Duration::from_secs(2));
}

/// `scripts/profile.sh`: only the routed calls, between two marker functions callgrind
/// zeroes and dumps at.
fn profile(calls: usize) {
    // No spinning: a spin's loop is waiting, not work, and under valgrind (one thread at a
    // time) it would count as the router's instructions.
    let router = start_router(&router_yaml("request_timeout_ms: 60000, spin_us: 0", &[backend_yaml("alpha", &[])], ""));
    let session = open_session(&router, "profile");
    for i in 0..50 {
        expect_ok(routed(&session, &call_line(10 + i, "whoami")), "warm-up");
    }
    mcprouter_bench_profile_start();
    let t = Instant::now();
    for i in 0..calls as u64 {
        expect_ok(routed(&session, &call_line(1000 + i, "whoami")), "call");
    }
    let took = t.elapsed();
    mcprouter_bench_profile_stop();
    println!("profiled {calls} routed calls in {:.1} ms (under valgrind)", took.as_secs_f64() * 1e3);
    drop(session);
    router.shutdown(Duration::from_secs(2));
}

/// Callgrind zeroes its counters when this is entered (`--zero-before`).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn mcprouter_bench_profile_start() {
    // Distinct bodies, so the linker cannot fold the two markers into one address.
    std::hint::black_box(1u32);
}

/// Callgrind dumps its counters when this is entered (`--dump-before`).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn mcprouter_bench_profile_stop() {
    std::hint::black_box(2u32);
}

// ---------------------------------------------------------------------------------------
// 2. throughput under concurrency

fn throughput(o: Opts) {
    const SLICES: u32 = 3;
    let win = o.window();
    heading(&format!(
        "2. throughput under concurrency: tools/call whoami, {} ms per point per side (3 alternating slices), calls/s answered in the window",
        win.as_millis()
    ));
    println!(
        "  direct = one pipelined client on one backend (writer thread + reader thread matching ids, N in flight)"
    );
    println!("  routed = N caller threads, one Session each; pool = the same over a round_robin pool of 4 replicas");
    let one = start_router(&router_yaml("request_timeout_ms: 10000", &[backend_yaml("alpha", &[])], ""));
    let replicas: Vec<String> = (1..=4).map(|i| backend_yaml(&format!("r{i}"), &[])).collect();
    let pool_yaml = "pools:\n  - {name: p, backends: [r1, r2, r3, r4], strategy: round_robin}\n";
    let pool = start_router(&router_yaml("request_timeout_ms: 10000", &replicas, pool_yaml));
    let mut direct = Direct::spawn(&["test-server", "--name", "alpha"]);
    // Warm up every path once.
    let short = Duration::from_millis(50);
    direct.pipelined(8, short, "whoami");
    routed_throughput(&one, 8, short, "whoami");
    routed_throughput(&pool, 8, short, "whoami");

    println!(
        "  {:>7} {:>14} {:>14} {:>8} {:>14} {:>8}",
        "callers", "direct/s", "routed/s", "ratio", "pool of 4/s", "ratio"
    );
    let mut at32 = (0.0, 0.0);
    for n in [1usize, 8, 32, 128] {
        // Three alternating slices per side, so a change of load on the machine hits all three.
        let (mut d, mut r, mut p) = (Run::default(), Run::default(), Run::default());
        for slice in 0..SLICES {
            for k in 0..3 {
                match (k + slice) % 3 {
                    0 => d = d.then(direct.pipelined(n, win / SLICES, "whoami")),
                    1 => r = r.then(routed_throughput(&one, n, win / SLICES, "whoami")),
                    _ => p = p.then(routed_throughput(&pool, n, win / SLICES, "whoami")),
                }
            }
        }
        let (rr, pr) = (r.rate() / d.rate(), p.rate() / d.rate());
        println!("  {:>7} {:>14.0} {:>14.0} {:>7.2}x {:>14.0} {:>7.2}x", n, d.rate(), r.rate(), rr, p.rate(), pr);
        if n == 32 {
            at32 = (rr, pr);
        }
    }
    // The ceiling of this machine across four servers, for reading the pool's figure:
    // four direct clients side by side vs one, in alternating slices.
    let mut four: Vec<Direct> = (1..=4).map(|i| Direct::spawn(&["test-server", "--name", &format!("r{i}")])).collect();
    let (mut d1, mut d4) = (Run::default(), Run::default());
    for _ in 0..SLICES {
        d1 = d1.then(direct.pipelined(32, win / SLICES, "whoami"));
        d4 = d4.then(std::thread::scope(|s| {
            let hs: Vec<_> = four.iter_mut().map(|d| s.spawn(move || d.pipelined(8, win / SLICES, "whoami"))).collect();
            hs.into_iter().map(|h| h.join().expect("pipelined")).fold(Run::default(), Run::beside)
        }));
    }
    let ceiling = d4.rate() / d1.rate();
    println!(
        "  machine ceiling: 4 direct pipelined clients on 4 servers, 8 in flight each: {:.0}/s = {:.2}x one server at 32 in flight ({:.0}/s)",
        d4.rate(),
        ceiling,
        d1.rate()
    );
    target(
        "tput32",
        "throughput at 32 callers ≥ 0.9× direct on one backend",
        &format!("{:.2}×", at32.0),
        Verdict::met_if(at32.0 >= 0.9),
    );
    target(
        "pool32",
        "throughput at 32 callers across a pool of 4 ≥ 3× direct",
        &format!("{:.2}× (machine ceiling {ceiling:.2}×)", at32.1),
        Verdict::met_if(at32.1 >= 3.0),
    );
    drop(four);
    one.shutdown(Duration::from_secs(2));
    pool.shutdown(Duration::from_secs(2));
}

// ---------------------------------------------------------------------------------------
// 3. catalog scale

const FLEET: usize = 200;
const MANY_TOOLS: &str = "50";

fn fleet_name(i: usize) -> String {
    format!("b{i:03}")
}

fn catalog(o: Opts) {
    heading(&format!(
        "3. catalog scale: {FLEET} backends × (22 + {MANY_TOOLS}) tools, default prefix mode (collisions get prefixed)"
    ));
    let many = ["--many-tools", MANY_TOOLS];
    let rss0 = rss_kib();
    let t = Instant::now();
    let one = start_router(&router_yaml("request_timeout_ms: 10000", &[backend_yaml("solo", &many)], ""));
    let init1 = t.elapsed();
    let rss1 = rss_kib();
    let split1 = rss_split_kib();
    let fleet: Vec<String> = (0..FLEET).map(|i| backend_yaml(&fleet_name(i), &many)).collect();
    let yaml = router_yaml("request_timeout_ms: 10000, init_timeout_ms: 60000", &fleet, "");
    let t = Instant::now();
    let big = Router::from_yaml(&yaml).expect("router");
    let init200 = t.elapsed();
    let rss2 = rss_kib();
    let split2 = rss_split_kib();
    let (ready, total) = readiness(&big);
    let status = big.status();
    let catalog_tools = status["router"]["catalog"]["tools"].as_u64().unwrap_or(0);

    // Full tools/list walks through the router.
    let session = open_session(&big, "lister");
    let mut pages_raw: Vec<String> = Vec::new();
    // Returns (tools, pages, ns spent inside Session::handle).
    let walk = |keep: &mut Vec<String>| -> (usize, usize, u64) {
        let (mut items, mut pages, mut cursor, mut in_router) = (0, 0, None::<String>, 0);
        keep.clear();
        loop {
            let params =
                cursor.as_ref().map(|c| format!(r#","params":{{"cursor":{}}}"#, serde_json::to_string(c).unwrap()));
            let line = format!(r#"{{"jsonrpc":"2.0","id":7,"method":"tools/list"{}}}"#, params.unwrap_or_default());
            let t = Instant::now();
            let reply = session.handle(&line).expect("open").expect("reply");
            in_router += t.elapsed().as_nanos() as u64;
            let (n, next) = list_page(reply.as_bytes(), "tools");
            items += n;
            pages += 1;
            keep.push(reply);
            match next {
                Some(c) => cursor = Some(c),
                None => return (items, pages, in_router),
            }
        }
    };
    let (listed, pages, _) = walk(&mut pages_raw);
    let bytes: usize = pages_raw.iter().map(String::len).sum();
    let reps = if o.quick { 5 } else { 30 };
    let (mut whole, mut inside) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let mut r = (0, 0, 0);
        whole.push(timed(|| r = walk(&mut Vec::new())));
        inside.push(r.2);
    }
    let (routed_list, router_only) = (Stats::of(whole), Stats::of(inside));
    // Floor: only the client's own parse of the same pages.
    let parse_only = Stats::of(
        (0..reps)
            .map(|_| {
                timed(|| {
                    for p in &pages_raw {
                        std::hint::black_box(list_page(p.as_bytes(), "tools"));
                    }
                })
            })
            .collect(),
    );
    // One MCP server listing as many tools itself, same page size, over a pipe.
    let own = listed.saturating_sub(22).to_string();
    let mut server = Direct::spawn(&["test-server", "--name", "lister", "--many-tools", &own, "--page-size", "1000"]);
    let (server_items, server_pages) = server.list_all("tools/list", "tools");
    let server_list = Stats::of(
        (0..reps)
            .map(|_| {
                timed(|| {
                    std::hint::black_box(server.list_all("tools/list", "tools"));
                })
            })
            .collect(),
    );
    drop(server);

    // One call: lookup in the big catalog (prefixed name, params re-encoded) vs one backend.
    let exposed = {
        let mut found = None;
        for p in &pages_raw {
            let v: serde_json::Value = serde_json::from_str(p).expect("json");
            found = v["result"]["tools"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["name"].as_str())
                .find(|n| n.contains("b100") && n.ends_with("whoami"))
                .map(str::to_owned);
            if found.is_some() {
                break;
            }
        }
        found.expect("b100's whoami in the listing")
    };
    let s_one = open_session(&one, "one");
    for i in 0..o.warmup() as u64 {
        expect_ok(routed(&s_one, &call_line(i + 10, "whoami")), "warm-up");
        expect_ok(routed(&session, &call_line(i + 10, &exposed)), "warm-up");
    }
    let calls = o.calls() / 2;
    let mut a = |id: u64| routed(&s_one, &call_line(id, "whoami"));
    let mut b = |id: u64| routed(&session, &call_line(id, &exposed));
    let st = interleaved(calls, vec![&mut a, &mut b]);
    drop(session);
    drop(s_one);
    let t = Instant::now();
    big.shutdown(Duration::from_secs(2));
    let shut200 = t.elapsed();
    one.shutdown(Duration::from_secs(2));

    // Baseline for start-up: the same fleet started by direct clients, all in parallel,
    // each doing what the router does (spawn, initialize, list tools/resources/templates/prompts).
    let t = Instant::now();
    let mut directs: Vec<Direct> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..FLEET)
            .map(|i| {
                std::thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn_scoped(s, move || {
                        let name = fleet_name(i);
                        let mut d = Direct::spawn(&["test-server", "--name", &name, "--many-tools", MANY_TOOLS]);
                        d.list_all("tools/list", "tools");
                        d.list_all("resources/list", "resources");
                        d.list_all("resources/templates/list", "resourceTemplates");
                        d.list_all("prompts/list", "prompts");
                        d
                    })
                    .expect("thread")
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("direct start")).collect()
    });
    let direct_init = t.elapsed();
    for d in &mut directs {
        d.close_stdin();
    }
    drop(directs);

    let per_backend = (rss2.saturating_sub(rss1)) as f64 / FLEET as f64;
    println!(
        "  start-up (until Router::from_yaml returns; status: {ready}/{total} ready, catalog {catalog_tools} tools):"
    );
    println!(
        "    {:<58} {:>9.0} ms",
        format!("{FLEET} direct clients in parallel (baseline)"),
        direct_init.as_secs_f64() * 1e3
    );
    println!(
        "    {:<58} {:>9.0} ms   {:.2}x",
        format!("router, {FLEET} backends"),
        init200.as_secs_f64() * 1e3,
        init200.as_secs_f64() / direct_init.as_secs_f64()
    );
    println!("    {:<58} {:>9.0} ms", "router, 1 backend (reference)", init1.as_secs_f64() * 1e3);
    println!(
        "    {:<58} {:>9.0} ms",
        format!("router shutdown, {FLEET} backends (reference)"),
        shut200.as_secs_f64() * 1e3
    );
    println!(
        "  tools/list, whole catalog: {listed} tools in {pages} pages, {:.1} MiB (p50 of {reps} walks):",
        bytes as f64 / 1048576.0
    );
    println!("    {:<58} {:>9.2} ms", "client parse of the same pages only (baseline, floor)", parse_only.p50 / 1e3);
    println!(
        "    {:<58} {:>9.2} ms   {:.2}x",
        "routed walk: Session::handle + the same client parse",
        routed_list.p50 / 1e3,
        routed_list.p50 / parse_only.p50
    );
    println!(
        "    {:<58} {:>9.2} ms   {:.2}x",
        "  of which inside Session::handle (the router's own time)",
        router_only.p50 / 1e3,
        router_only.p50 / parse_only.p50
    );
    println!(
        "    {:<58} {:>9.2} ms   {:.2}x",
        format!("one test server listing {server_items} tools itself ({server_pages} pages, pipe)"),
        server_list.p50 / 1e3,
        server_list.p50 / parse_only.p50
    );
    println!("  one call: lookup + route, {calls} sequential calls per side, interleaved:");
    latency_table(&[("1 backend: whoami (baseline)", st[0]), (&format!("{FLEET} backends: {exposed}"), st[1])], st[0]);
    println!("  router RSS (this process; the children are separate processes, not counted):");
    println!("    {:<58} {:>9} KiB", "before any router", rss0);
    println!("    {:<58} {:>9} KiB", "after a 1-backend router (baseline)", rss1);
    println!("    {:<58} {:>9} KiB", format!("after the {FLEET}-backend router"), rss2);
    let per = |a: u64, b: u64| b.saturating_sub(a) as f64 / FLEET as f64;
    println!(
        "    {:<58} {:>9.1} KiB",
        "  per backend in 256 KiB thread stacks (2 threads + cached)",
        per(split1.0, split2.0)
    );
    println!("    {:<58} {:>9.1} KiB", "  per backend in the heap and the rest", per(split1.1, split2.1));
    println!("    {:<58} {:>9.1} KiB", format!("delta / {FLEET}"), per_backend);
    // What the target allows beyond: each backend's share of the listed JSON (its tools
    // pages as served; the test server's few resources and prompts are left out).
    let catalog_json = bytes as f64 / 1024.0 / FLEET as f64;
    let beyond = per_backend - catalog_json;
    println!("    {:<58} {:>9.1} KiB", "  of which its catalog's JSON (tools pages / backends)", catalog_json);
    let init_s = init200.as_secs_f64();
    target("init200", "200 backends initialized ≤ 0.6 s", &format!("{init_s:.2} s"), Verdict::met_if(init_s <= 0.6));
    target(
        "rss",
        "RSS ≤ 64 KiB per idle backend beyond its catalog's JSON",
        &format!("{beyond:.0} KiB"),
        Verdict::met_if(beyond <= 64.0),
    );
    let list_ms = router_only.p50 / 1e3;
    target(
        "list",
        &format!("tools/list over {listed} tools ≤ 2 ms"),
        &format!("{list_ms:.2} ms"),
        Verdict::met_if(list_ms <= 2.0),
    );
}

// ---------------------------------------------------------------------------------------
// 4. fan-out: a slow backend must not delay a fast one

fn fanout(o: Opts) {
    const ROUNDS: usize = 10;
    let delay = if o.quick { 500 } else { 2000 };
    let n = if o.quick { 300 } else { 2000 };
    heading(&format!(
        "4. fan-out: backend 'slow' (--delay-ms {delay} on every response) next to 'fast'; {n} sequential calls to fast__whoami per phase"
    ));
    // No spinning: a spin pause (after a preemption, process-wide, 100 ms and up) that
    // covers one phase and not the other moved this ratio between 0.52 and 1.5 with nothing
    // slow involved; what is measured here is the slow backend's effect alone.
    let yaml = router_yaml(
        "request_timeout_ms: 60000, init_timeout_ms: 60000, spin_us: 0",
        &[backend_yaml("fast", &[]), backend_yaml("slow", &["--delay-ms", &delay.to_string()])],
        "",
    );
    let t = Instant::now();
    let router = start_router(&yaml);
    println!(
        "  (router start-up took {:.1} s: the slow backend answers initialize and each list after {delay} ms)",
        t.elapsed().as_secs_f64()
    );
    let session = open_session(&router, "fanout");
    let slow_status = |key: &str| {
        let st = router.status();
        st["backends"]
            .as_array()
            .and_then(|b| b.iter().find(|b| b["name"] == "slow"))
            .map_or(0, |b| b[key].as_u64().unwrap_or(0))
    };
    let list_line = r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#;
    // Raw samples (ns) of `calls` fast calls, then of a few client tools/list.
    let measure = |calls: usize| -> (Vec<u64>, Vec<u64>) {
        let fast = (0..calls as u64)
            .map(|i| {
                let l = call_line(1000 + i, "fast__whoami");
                let mut got = Got::Other;
                let ns = timed(|| got = routed(&session, &l));
                expect_ok(got, "fast call");
                ns
            })
            .collect();
        let list = (0..4)
            .map(|_| {
                timed(|| {
                    let r = session.handle(list_line).expect("open").expect("reply");
                    expect_ok(classify(r.as_bytes()), "tools/list");
                })
            })
            .collect();
        (fast, list)
    };
    for i in 0..o.warmup() as u64 {
        expect_ok(routed(&session, &call_line(i + 10, "fast__whoami")), "warm-up");
    }

    // Baseline and phase b in alternating rounds of two chunks built alike: four helper
    // threads are started, the status is polled, the chunk is measured, the helpers end.
    // In the busy chunk the helpers' calls to the slow backend are in flight on the same
    // session (cancelled by the client after the chunk); in the quiet one they just wait.
    let chunk = n / ROUNDS;
    let (mut quiet, mut quiet_list, mut busy, mut busy_list) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut covered_b = true;
    for round in 0..ROUNDS as u64 {
        for k in 0..2 {
            // Odd rounds measure the busy chunk first.
            let slow = (k + round) % 2 == 1;
            let returned = AtomicUsize::new(0);
            let ids: Vec<u64> = (0..4).map(|k| 1_000_000 + round * 10 + k).collect();
            let (release, wait_here) = bounded::<()>(0);
            let (calls, lists) = std::thread::scope(|s| {
                for &id in &ids {
                    let (session, returned, wait_here) = (&session, &returned, wait_here.clone());
                    s.spawn(move || {
                        if slow {
                            // Ok(None) once cancelled.
                            let _ = session.handle(&call_line(id, "slow__whoami"));
                        } else {
                            let _ = wait_here.recv();
                        }
                        returned.fetch_add(1, Ordering::AcqRel);
                    });
                }
                let want = if slow { 4 } else { 0 };
                let (wait, mut polls) = (Instant::now() + Duration::from_secs(5), 0);
                while (slow_status("in_flight") < want || polls < 3) && Instant::now() < wait {
                    std::thread::sleep(Duration::from_millis(1));
                    polls += 1;
                }
                let m = measure(chunk);
                if slow {
                    covered_b &= returned.load(Ordering::Acquire) == 0;
                    for id in &ids {
                        let cancel = format!(
                            r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{id},"reason":"bench"}}}}"#
                        );
                        session.handle(&cancel).expect("open");
                    }
                }
                drop(release);
                m
            });
            let (to, to_list) = if slow { (&mut busy, &mut busy_list) } else { (&mut quiet, &mut quiet_list) };
            to.extend(calls);
            to_list.extend(lists);
        }
    }
    let (quiet, quiet_list, busy, busy_list) =
        (Stats::of(quiet), Stats::of(quiet_list), Stats::of(busy), Stats::of(busy_list));

    // Phase c: the slow backend announces list_changed; the dispatcher refreshes it
    // (tools, resources, templates, prompts: four slow answers) while we call the fast one.
    // In cycles: a baseline chunk measured the same way (a helper thread's fast call as the
    // trigger), then a chunk during a refresh, then a wait for the refresh to end.
    let cycles = if o.quick { 2 } else { 3 };
    let per = n / cycles;
    let phase = |trigger: &str| {
        std::thread::scope(|s| {
            let h = s.spawn(|| expect_ok(routed(&session, &call_line(77, trigger)), trigger));
            std::thread::sleep(Duration::from_millis(100));
            let (calls, list) = measure(per);
            // The trigger (for a minute more) and the refresh's list call.
            let refreshing = slow_status("in_flight") >= 2;
            h.join().expect("trigger");
            (calls, list, refreshing)
        })
    };
    let (mut quiet_c, mut quiet_c_list, mut refresh, mut refresh_list) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut covered_c = true;
    let mut shutdown_took = Duration::ZERO;
    for cycle in 0..cycles {
        let (q, ql, _) = phase("fast__whoami");
        quiet_c.extend(q);
        quiet_c_list.extend(ql);
        let (r, rl, refreshing) = phase("slow__notify_changed");
        refresh.extend(r);
        refresh_list.extend(rl);
        covered_c &= refreshing;
        if cycle + 1 < cycles {
            let wait = Instant::now() + Duration::from_millis(10 * delay);
            while slow_status("in_flight") > 0 && Instant::now() < wait {
                std::thread::sleep(Duration::from_millis(5));
            }
        } else {
            // Shutdown joins the dispatcher, which is still inside the slow refresh.
            let t = Instant::now();
            router.shutdown(Duration::from_millis(500));
            shutdown_took = t.elapsed();
        }
    }
    let (quiet_c, quiet_c_list, refresh, refresh_list) =
        (Stats::of(quiet_c), Stats::of(quiet_c_list), Stats::of(refresh), Stats::of(refresh_list));

    println!("  {:<54} {:>9} {:>9} {:>9} {:>14}", "", "p50 µs", "p99 µs", "ratio p50", "tools/list p50");
    let row = |name: &str, s: Stats, l: Stats, base: Stats| {
        println!("  {:<54} {:>9.1} {:>9.1} {:>8.2}x {:>11.0} µs", name, s.p50, s.p99, s.p50 / base.p50, l.p50)
    };
    row("fast, no slow traffic (baseline, 10 rounds)", quiet, quiet_list, quiet);
    row("fast, while 4 slow calls are in flight (10 rounds)", busy, busy_list, quiet);
    row(&format!("fast, no slow traffic (baseline, {cycles} cycles)"), quiet_c, quiet_c_list, quiet_c);
    row(&format!("fast, while the slow backend's refresh is in flight ({cycles})"), refresh, refresh_list, quiet_c);
    println!(
        "  slow calls in flight during every busy chunk: {}; a refresh in flight during every refresh chunk: {}",
        if covered_b { "yes" } else { "NO" },
        if covered_c { "yes" } else { "NO" }
    );
    let worst = (busy.p50 / quiet.p50).max(refresh.p50 / quiet_c.p50);
    target(
        "fanout",
        "slow backend never delays another (p50 ratio ≈ 1, ≤ 1.2)",
        &format!("{worst:.2}× worst p50"),
        Verdict::met_if(worst <= 1.2),
    );
    println!(
        "  (Router::shutdown called while the last refresh was in flight took {:.0} ms: it waits for the refresh)",
        shutdown_took.as_secs_f64() * 1e3
    );
}

// ---------------------------------------------------------------------------------------
// 5. gateway: `mcprouter serve` as a child over stdio

fn gateway(o: Opts) {
    heading(
        "5. gateway mode: `mcprouter serve --config F` as a child on stdio vs the test server itself, same direct client",
    );
    let dir = std::env::temp_dir().join(format!("mcprouter-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("gateway.yaml");
    std::fs::write(&path, router_yaml("request_timeout_ms: 10000", &[backend_yaml("alpha", &[])], "")).expect("config");
    let mut gw = Direct::spawn(&["serve", "--config", path.to_str().expect("utf-8 path")]);
    // The same with the callers spinning (serve's default is not to): what a spin would
    // be worth through `serve`.
    let spinning_path = dir.join("gateway-spinning.yaml");
    std::fs::write(
        &spinning_path,
        router_yaml("request_timeout_ms: 10000, spin_us: 200", &[backend_yaml("alpha", &[])], ""),
    )
    .expect("config");
    let mut spinning = Direct::spawn(&["serve", "--config", spinning_path.to_str().expect("utf-8 path")]);
    let mut direct = Direct::spawn(&["test-server", "--name", "alpha"]);
    for i in 0..o.warmup() as u64 {
        expect_ok(direct.call(&call_line(10 + i, "whoami")), "warm-up");
        expect_ok(gw.call(&call_line(10 + i, "whoami")), "warm-up");
        expect_ok(spinning.call(&call_line(10 + i, "whoami")), "warm-up");
    }
    let mut d = |id: u64| direct.call(&call_line(id, "whoami"));
    let mut g = |id: u64| gw.call(&call_line(id, "whoami"));
    let mut p = |id: u64| spinning.call(&call_line(id, "whoami"));
    let st = interleaved(o.calls(), vec![&mut d, &mut g, &mut p]);
    println!("  1 client, sequential, {} calls per side:", o.calls());
    latency_table(
        &[
            ("test server direct (baseline)", st[0]),
            ("mcprouter serve", st[1]),
            ("mcprouter serve, spin_us: 200", st[2]),
        ],
        st[0],
    );
    let win = o.window();
    let (mut dr, mut gr, mut pr) = (Run::default(), Run::default(), Run::default());
    // Alternating slices; rates over the summed windows.
    for _ in 0..3 {
        dr = dr.then(direct.pipelined(32, win / 3, "whoami"));
        gr = gr.then(gw.pipelined(32, win / 3, "whoami"));
        pr = pr.then(spinning.pipelined(32, win / 3, "whoami"));
    }
    let (dr, gr, pr) = (dr.rate(), gr.rate(), pr.rate());
    println!("  32 requests in flight (pipelined), {} ms per side in 3 alternating slices:", win.as_millis());
    println!("    {:<34} {:>10.0} calls/s", "test server direct (baseline)", dr);
    println!("    {:<34} {:>10.0} calls/s   {:.2}x", "mcprouter serve", gr, gr / dr);
    println!("    {:<34} {:>10.0} calls/s   {:.2}x", "mcprouter serve, spin_us: 200", pr, pr / dr);
    let added = st[1].p50 - st[0].p50;
    target(
        "serve_p50",
        "mcprouter serve: added p50 ≤ 30 µs sequentially",
        &format!("{added:.1} µs"),
        Verdict::met_if(added <= 30.0),
    );
    target(
        "serve32",
        "mcprouter serve: ≥ 0.95× direct at 32 in flight",
        &format!("{:.2}×", gr / dr),
        Verdict::met_if(gr / dr >= 0.95),
    );
    drop(gw);
    drop(spinning);
    drop(direct);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------
// 6. a Streamable HTTP backend: the router's HTTP client vs ureq used directly

/// `@modelcontextprotocol/server-everything streamableHttp` on a free loopback port (forced
/// onto 127.0.0.1 by the tests' Node preload), killed on drop.
struct Everything {
    child: Child,
    url: String,
}

impl Everything {
    fn start() -> Everything {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let script = root.join(".deps/node/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
        assert!(script.exists(), "{} is missing: run scripts/deps.sh", script.display());
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port();
        let child = Command::new("node")
            .arg("--require")
            .arg(root.join("tests/support/loopback.cjs"))
            .arg(&script)
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node");
        let until = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "server-everything did not listen within 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        Everything { child, url: format!("http://127.0.0.1:{port}/mcp") }
    }
}

impl Drop for Everything {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client of the same server with ureq alone: one agent, the session's headers, each
/// answer (an SSE stream or a JSON body) read to its end.
struct DirectHttp {
    agent: ureq::Agent,
    url: String,
    session: String,
}

impl DirectHttp {
    fn connect(url: &str) -> DirectHttp {
        let agent: ureq::Agent = ureq::Agent::config_builder().max_idle_connections_per_host(32).build().into();
        // What the router says to a backend: its newest protocol version (a server may work
        // differently per version: event ids, priming events) and its declared capabilities.
        let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"roots":{"listChanged":true},"sampling":{},"elicitation":{"form":{},"url":{}}},"clientInfo":{"name":"overhead-bench","version":"0"}}}"#;
        let resp = agent
            .post(url)
            .header("Accept", "application/json, text/event-stream")
            .header("Content-Type", "application/json")
            .send(init)
            .expect("initialize");
        let session = resp.headers().get("mcp-session-id").expect("a session id").to_str().expect("ascii").to_owned();
        let _ = resp.into_body().read_to_string();
        let d = DirectHttp { agent, url: url.to_owned(), session };
        d.post(INITIALIZED);
        d
    }

    fn post(&self, body: &str) -> String {
        let resp = self
            .agent
            .post(&self.url)
            .header("Accept", "application/json, text/event-stream")
            .header("Content-Type", "application/json")
            .header("Mcp-Session-Id", &self.session)
            .header("MCP-Protocol-Version", "2025-11-25")
            .send(body)
            .expect("POST");
        let mut text = String::new();
        std::io::Read::read_to_string(&mut resp.into_body().into_reader(), &mut text).expect("body");
        text
    }

    fn echo(&self, id: u64) -> Got {
        let text = self.post(&echo_line(id));
        // The answer is an SSE event (`data: {...}`, after a priming event with no data
        // under 2025-11-25) or a JSON body.
        let mut data = text.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim);
        let json = data.find(|d| !d.is_empty()).unwrap_or(text.as_str());
        classify(json.as_bytes())
    }
}

fn echo_line(id: u64) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"m{id}"}}}}}}"#
    )
}

/// `callers` threads making `per` calls each on `f`; every call's latency (ns).
fn http_round(
    callers: usize,
    per: usize,
    first_id: &(dyn Fn(usize) -> u64 + Sync),
    f: &(dyn Fn(u64) -> Got + Sync),
) -> Vec<u64> {
    let barrier = Barrier::new(callers);
    let all = Mutex::new(Vec::with_capacity(callers * per));
    std::thread::scope(|s| {
        for c in 0..callers {
            let (barrier, all) = (&barrier, &all);
            s.spawn(move || {
                let mut mine = Vec::with_capacity(per);
                barrier.wait();
                for i in 0..per {
                    let id = first_id(c) + i as u64;
                    let mut got = Got::Other;
                    mine.push(timed(|| got = f(id)));
                    expect_ok(got, "echo");
                }
                all.lock().extend(mine);
            });
        }
    });
    all.into_inner()
}

fn http(o: Opts) {
    const ROUNDS: usize = 10;
    heading(
        "6. Streamable HTTP backend: echo on server-everything (node), ureq directly vs through the router (Session::handle)",
    );
    let server = Everything::start();
    let direct = DirectHttp::connect(&server.url);
    let yaml = format!(
        "router: {{request_timeout_ms: 10000, health: {{interval_ms: 0}}}}\nbackends:\n  - {{name: e, transport: streamable_http, url: {}, concurrency: 16}}\n",
        server.url
    );
    let router = start_router(&yaml);
    let sessions: Vec<Session> = (0..16).map(|i| open_session(&router, &format!("http-{i}"))).collect();
    let routed_echo = |id: u64| {
        // Each caller thread uses its own session (ids are per session).
        let s = &sessions[(id as usize / 1_000_000) % sessions.len()];
        routed(s, &echo_line(id))
    };
    let direct_echo = |id: u64| direct.echo(id);
    for i in 0..o.warmup() as u64 {
        expect_ok(direct.echo(10 + i), "warm-up");
        expect_ok(routed(&sessions[0], &echo_line(10 + i)), "warm-up");
    }
    println!(
        "  {:>7} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "callers", "direct p50", "routed p50", "added p50", "direct p99", "routed p99", "ratio p50"
    );
    for callers in [1usize, 16] {
        let per = (if o.quick { 300 } else { 2000 }) / callers.min(4) / ROUNDS;
        let (mut d, mut r) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            // Caller c's ids start at c × 1,000,000 (so the routed side picks session c).
            let ids = |c: usize| (c * 1_000_000 + round * per) as u64;
            let run = |f: &(dyn Fn(u64) -> Got + Sync)| http_round(callers, per, &ids, f);
            if round % 2 == 0 {
                d.extend(run(&direct_echo));
                r.extend(run(&routed_echo));
            } else {
                r.extend(run(&routed_echo));
                d.extend(run(&direct_echo));
            }
        }
        let (d, r) = (Stats::of(d), Stats::of(r));
        let added = r.p50 - d.p50;
        println!(
            "  {:>7} {:>9.0} µs {:>9.0} µs {:>9.0} µs {:>9.0} µs {:>9.0} µs {:>11.2}x",
            callers,
            d.p50,
            r.p50,
            added,
            d.p99,
            r.p99,
            r.p50 / d.p50
        );
        target(
            &format!("http{callers}"),
            &format!("Streamable HTTP backend, {callers} caller(s): added p50 ≤ 100 µs"),
            &format!("{added:.0} µs"),
            Verdict::met_if(added <= 100.0),
        );
    }
    drop(sessions);
    router.shutdown(Duration::from_secs(2));
}

// ---------------------------------------------------------------------------------------

fn run_one(name: &str, o: Opts) {
    match name {
        "latency" => latency(o),
        "throughput" => throughput(o),
        "catalog" => catalog(o),
        "fanout" => fanout(o),
        "gateway" => gateway(o),
        "http" => http(o),
        _ => unreachable!(),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("overhead: a benchmark, not a test; run it with `cargo bench --bench overhead [-- --quick]`");
        return ExitCode::SUCCESS;
    }
    let o = Opts { quick: args.iter().any(|a| a == "--quick") };
    let mut names = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--bench" | "--quick" => {}
            "--profile" => {
                let n = it.next().and_then(|n| n.parse().ok()).unwrap_or(300);
                profile(n);
                return ExitCode::SUCCESS;
            }
            s if SCENARIOS.contains(&s) => names.push(s.to_owned()),
            other => {
                eprintln!(
                    "overhead: unknown argument {other:?}; scenarios: {}; flags: --quick, --profile N",
                    SCENARIOS.join(" ")
                );
                return ExitCode::from(2);
            }
        }
    }
    if names.len() == 1 {
        run_one(&names[0], o);
        return ExitCode::SUCCESS;
    }
    if names.is_empty() {
        names = SCENARIOS.iter().map(|s| (*s).to_owned()).collect();
    }

    let started = Instant::now();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name").map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned()))
        })
        .unwrap_or_else(|| "?".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("mcprouter overhead bench ({} run)", if o.quick { "quick" } else { "full" });
    println!("machine: {cores} cores ({cpu}); load average at start: {}", loadavg());
    println!("binary: {BIN}");
    println!("ratios compare with a baseline measured in the same run; timings are informational, nothing is asserted");
    let targets = std::env::temp_dir().join(format!("mcprouter-bench-targets-{}", std::process::id()));
    let _ = std::fs::remove_file(&targets);
    let exe = std::env::current_exe().expect("own path");
    let mut failed = Vec::new();
    for name in &names {
        let mut cmd = Command::new(&exe);
        cmd.arg("--bench").arg(name).env(TARGETS_ENV, &targets);
        if o.quick {
            cmd.arg("--quick");
        }
        let t = Instant::now();
        let ok = cmd.status().is_ok_and(|s| s.success());
        println!("  ({name}: {:.1} s)", t.elapsed().as_secs_f64());
        if !ok {
            failed.push(name.clone());
        }
    }
    let lines = std::fs::read_to_string(&targets).unwrap_or_default();
    let _ = std::fs::remove_file(&targets);
    heading("issue targets (informational)");
    for l in lines.lines() {
        let f: Vec<&str> = l.split('\t').collect();
        if let [_, text, measured, verdict] = f[..] {
            println!("  {:<62} {:>16}  {verdict}", text, measured);
        }
    }
    println!("\nload average at end: {}; total {:.1} s", loadavg(), started.elapsed().as_secs_f64());
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("overhead: scenarios failed: {}", failed.join(", "));
        ExitCode::FAILURE
    }
}
