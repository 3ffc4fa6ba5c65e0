//! What both fuzz targets share: the seed and case count from the environment, a panic
//! hook that sees panics on every thread (the router swallows some of them, e.g. in a batch
//! element's thread), the saved regression cases, and the run loop that replays those first
//! and then generates new cases with proptest.
//!
//! Environment:
//! - `MCPROUTER_FUZZ_CASES`: generated cases (each target has a bounded default).
//! - `MCPROUTER_FUZZ_SEED`: a u64 (decimal); default fixed so `./scripts/test` is repeatable.
//! - `MCPROUTER_FUZZ_SAVE=1`: write each failing input to `tests/fuzz/regressions/`.
//! - `MCPROUTER_FUZZ_KEEP_GOING=1`: do not stop (nor shrink) at the first failure; record
//!   every failure whose symptom was not seen before, so one long run lists them all.
//! - `MCPROUTER_FUZZ_VERBOSE=1`: print each message and its answer (debugging a generator).
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use serde_json::Value;

/// Why a case failed. `signature` is coarse on purpose (an invariant's name, or where a
/// panic happened) so that two inputs hitting the same bug count as one finding.
#[derive(Debug, Clone)]
pub struct Failure {
    pub signature: String,
    pub detail: String,
}

impl Failure {
    pub fn new(signature: impl Into<String>, detail: impl Into<String>) -> Failure {
        Failure { signature: signature.into(), detail: detail.into() }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.signature, self.detail)
    }
}

/// The case count this run will use.
pub fn cases(default: u32) -> u32 {
    env_u64("MCPROUTER_FUZZ_CASES").map_or(default, |n| u32::try_from(n).unwrap_or(u32::MAX))
}

/// Aborts the process if the run takes far longer than `per_case` per case: a hang must
/// fail, not stall CI; long runs get proportionally more time.
pub fn watchdog(default_cases: u32, per_case: Duration) {
    let secs = 300.0 + per_case.as_secs_f64() * f64::from(cases(default_cases)) * 4.0;
    crate::common::watchdog(secs as u64);
}

pub fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// 32 seed bytes from a u64, spread with splitmix64 so nearby seeds give unrelated streams.
fn seed_bytes(seed: u64) -> [u8; 32] {
    let mut x = seed;
    let mut out = [0u8; 32];
    for chunk in out.chunks_mut(8) {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_le_bytes());
    }
    out
}

/// FNV-1a, for short stable file names of saved cases.
pub fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static PANIC_COUNT: AtomicUsize = AtomicUsize::new(0);

/// Records every panic (thread name, location, message) before the default hook prints it.
pub fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // A panic inside a library (serde_json's `Index`, say) is located at the first
            // frame in the project's own src/, so the signature names the caller that erred.
            let location = project_frame()
                .unwrap_or_else(|| info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default());
            let payload = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let thread = std::thread::current().name().unwrap_or("?").to_owned();
            let short: String = payload.chars().take(160).collect();
            if let Ok(mut p) = PANICS.lock() {
                p.push(format!("{location}\t{thread}\t{short}"));
            }
            PANIC_COUNT.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    });
}

/// `src/file.rs:line` of the innermost backtrace frame in the project's src/.
fn project_frame() -> Option<String> {
    let bt = std::backtrace::Backtrace::force_capture().to_string();
    bt.lines().map(str::trim).filter_map(|l| l.strip_prefix("at ")).find_map(|at| {
        let rel = at.strip_prefix("./").or_else(|| at.strip_prefix(concat!(env!("CARGO_MANIFEST_DIR"), "/")))?;
        if !rel.starts_with("src/") {
            return None;
        }
        // Drop the column: the line is enough to tell bugs apart.
        Some(rel.rsplit_once(':').map_or(rel, |(l, _)| l).to_owned())
    })
}

pub fn panic_count() -> usize {
    PANIC_COUNT.load(Ordering::SeqCst)
}

/// A failure for the panics recorded after `mark`, if any. The signature is the first
/// panic's location: the same bug keeps its place whatever input reached it.
pub fn panics_since(mark: usize) -> Option<Failure> {
    if panic_count() == mark {
        return None;
    }
    let p = PANICS.lock().map(|p| p.iter().skip(mark).cloned().collect::<Vec<_>>()).unwrap_or_default();
    let first = p.first().cloned().unwrap_or_default();
    let location = first.split('\t').next().unwrap_or("").to_owned();
    Some(Failure::new(format!("panic at {location}"), p.join("\n")))
}

static BAD_LOG_LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());
static LOG_LINES: AtomicUsize = AtomicUsize::new(0);

/// Installs the router's own logger at debug level with a callback sink, so the logging
/// paths (access records, warnings about what a backend sent) run on fuzzed input too, and
/// checks that every record comes out as one line of valid JSON.
pub fn install_logger() {
    use mcprouter::logging::{Logger, Sink, install};
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let sink = Sink::Callback(Box::new(|_level, _target, line: &str| {
            LOG_LINES.fetch_add(1, Ordering::Relaxed);
            let body = line.strip_suffix('\n').unwrap_or(line);
            let ok = !body.contains('\n') && serde_json::from_str::<Value>(body).is_ok_and(|v| v.is_object());
            if !ok && let Ok(mut bad) = BAD_LOG_LINES.lock() {
                bad.push(body.chars().take(300).collect());
            }
        }));
        let redactor = mcprouter::redact::Redactor::new(Vec::new(), Vec::new());
        let _ = install(Logger::new(log::LevelFilter::Debug, sink, redactor));
    });
}

pub fn bad_log_count() -> usize {
    BAD_LOG_LINES.lock().map(|b| b.len()).unwrap_or(0)
}

/// A failure for log records after `mark` that were not one line of JSON.
pub fn bad_logs_since(mark: usize) -> Option<Failure> {
    let bad = BAD_LOG_LINES.lock().map(|b| b.iter().skip(mark).cloned().collect::<Vec<_>>()).unwrap_or_default();
    let first = bad.first()?;
    Some(Failure::new("a log record is not one line of JSON", first.clone()))
}

/// Polls `f` until it returns `Ok` or `within` passes; returns the last error.
pub fn wait_for<T>(within: Duration, mut f: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let end = Instant::now() + within;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= end => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

pub fn all_threads() -> usize {
    std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0)
}

/// Waits until the process has at most two threads more than `baseline`: the router's
/// threads come and go with restarts and calls, but must not accumulate.
pub fn threads_back_to(baseline: usize, within: Duration) -> Result<usize, String> {
    wait_for(within, || {
        let n = all_threads();
        if n <= baseline + 2 { Ok(n) } else { Err(format!("{n} threads, baseline {baseline}")) }
    })
}

/// Waits until no router thread is left and every child is reaped (after a shutdown).
pub fn nothing_left(within: Duration) -> Result<(), String> {
    wait_for(within, || match (crate::common::router_threads(), children()) {
        (0, kids) if kids.is_empty() => Ok(()),
        (n, kids) => Err(format!("{n} router threads, children {kids:?}")),
    })
}

/// Our live and zombie child processes, as "pid state".
pub fn children() -> Vec<String> {
    let me = std::process::id().to_string();
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return out };
    for e in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        // "pid (comm) state ppid …": comm may hold spaces, so split after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.get(1) == Some(&me.as_str()) {
            out.push(format!("{} {}", e.file_name().to_string_lossy(), f.first().unwrap_or(&"")));
        }
    }
    out
}

pub fn regressions_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/regressions")
}

/// Saved cases of one target: (file name, the JSON in it), sorted by name.
pub fn saved_cases(target: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(regressions_dir()) else { return out };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.starts_with(&format!("{target}-")) && name.ends_with(".json")) {
            continue;
        }
        match std::fs::read_to_string(e.path()).map(|t| serde_json::from_str::<Value>(&t)) {
            Ok(Ok(v)) => out.push((name, v)),
            other => panic!("regression file {name} is unreadable: {other:?}"),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Writes a failing input as `<target>-<hash>.json` (when MCPROUTER_FUZZ_SAVE is set).
fn save_case(target: &str, case: &Value, failure: &Failure, seed: u64) -> Option<String> {
    if !env_flag("MCPROUTER_FUZZ_SAVE") {
        return None;
    }
    let input = serde_json::to_string(case).unwrap_or_default();
    let name = format!("{target}-{:016x}.json", fnv64(input.as_bytes()));
    let doc = serde_json::json!({
        "target": target,
        "symptom": failure.signature,
        "detail": failure.detail.chars().take(2000).collect::<String>(),
        "seed": seed,
        "case": case,
    });
    let dir = regressions_dir();
    let _ = std::fs::create_dir_all(&dir);
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    match std::fs::write(dir.join(&name), text + "\n") {
        Ok(()) => Some(name),
        Err(e) => {
            eprintln!("fuzz: cannot save {name}: {e}");
            None
        }
    }
}

/// One fuzz target: how to check a case, and how a case is saved and read back.
pub struct Target<'a, T> {
    pub name: &'static str,
    pub default_cases: u32,
    /// Saved cases that still fail on purpose: (file name, the bug it shows). Their
    /// symptoms are tolerated in this run; remove an entry once its bug is fixed.
    pub known_unfixed: &'a [(&'a str, &'a str)],
    pub check: &'a dyn Fn(&T) -> Result<(), Failure>,
    pub to_json: fn(&T) -> Value,
    pub from_json: fn(&Value) -> Option<T>,
}

/// Replays every saved case of the target, then runs the generated ones. Panics (fails the
/// test) on a failure that is neither a known-unfixed saved case nor has the symptom of one.
pub fn run<T: Debug + Clone>(t: &Target<'_, T>, strategy: impl Strategy<Value = T>) {
    install_panic_hook();
    install_logger();
    let cases = cases(t.default_cases);
    let seed = env_u64("MCPROUTER_FUZZ_SEED").unwrap_or(0x6d63_7072_6f75_7465);
    let keep_going = env_flag("MCPROUTER_FUZZ_KEEP_GOING");
    let started = Instant::now();
    let mut tolerated: BTreeSet<String> = BTreeSet::new();
    let mut new_failures: Vec<String> = Vec::new();

    for (file, doc) in saved_cases(t.name) {
        let Some(case) = doc.get("case").and_then(t.from_json) else {
            panic!("regression file {file} has no readable \"case\"");
        };
        let known = t.known_unfixed.iter().find(|(f, _)| *f == file);
        match ((t.check)(&case), known) {
            (Ok(()), None) => println!("fuzz {}: replayed {file}: ok", t.name),
            (Ok(()), Some((_, bug))) => {
                println!("fuzz {}: replayed {file}: now PASSES; remove it from KNOWN_UNFIXED ({bug})", t.name)
            }
            (Err(f), Some((_, bug))) => {
                println!("fuzz {}: replayed {file}: still fails, known unfixed ({bug}): {}", t.name, f.signature);
                tolerated.insert(f.signature);
            }
            (Err(f), None) => new_failures.push(format!("saved case {file} fails: {f}")),
        }
    }
    let replayed = started.elapsed();

    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: if keep_going { 0 } else { 32 },
        max_shrink_time: 60_000,
        max_global_rejects: 10_000,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes(seed)));
    let seen = Mutex::new((tolerated.clone(), Vec::<String>::new(), 0usize));
    let result = runner.run(&strategy, |case| {
        let Err(f) = (t.check)(&case) else { return Ok(()) };
        let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
        if s.0.contains(&f.signature) {
            // The symptom of a known, unfixed bug: counted, not failed.
            s.2 += 1;
            return Ok(());
        }
        if keep_going {
            let json = (t.to_json)(&case);
            let file = save_case(t.name, &json, &f, seed);
            println!(
                "fuzz {}: NEW failure {} (saved as {file:?}): {}\n  input: {}",
                t.name,
                f.signature,
                f.detail,
                short(&json)
            );
            s.0.insert(f.signature.clone());
            s.1.push(format!("{f} [saved as {file:?}]"));
            return Ok(());
        }
        Err(TestCaseError::fail(f.to_string()))
    });
    let (_, kept, tolerated_hits) = seen.into_inner().unwrap_or_else(|e| e.into_inner());
    new_failures.extend(kept);
    if let Err(e) = result {
        match e {
            TestError::Fail(reason, case) => {
                let json = (t.to_json)(&case);
                let f = Failure::new(reason.message().to_owned(), String::new());
                let file = save_case(t.name, &json, &f, seed);
                new_failures.push(format!(
                    "{} (saved as {file:?})\n  minimal input: {}",
                    reason.message(),
                    short(&json)
                ));
            }
            TestError::Abort(reason) => new_failures.push(format!("aborted: {}", reason.message())),
        }
    }
    println!(
        "fuzz {}: seed {seed}, {cases} generated cases in {:.1} s (replay {:.1} s, {} log records checked); {tolerated_hits} hit known-unfixed symptoms {:?}",
        t.name,
        started.elapsed().as_secs_f64(),
        replayed.as_secs_f64(),
        LOG_LINES.load(Ordering::Relaxed),
        tolerated
    );
    assert!(
        new_failures.is_empty(),
        "fuzz {}: {} failure(s):\n{}",
        t.name,
        new_failures.len(),
        new_failures.join("\n")
    );
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() <= 600 {
        return s;
    }
    let mut end = 600;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}
