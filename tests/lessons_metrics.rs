//! Observability lessons (lesson 5 in docs/lessons.md): bounded metric labels, always-on
//! redaction, and a Prometheus exposition that a real parser accepts.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mcprouter::logging::{Logger, Sink, install, json_line};
use mcprouter::metrics::{BackendFigures, Metrics, Outcome, Snapshot, method_label};
use mcprouter::redact::{Redactor, is_secret_name, secrets_from_env};

/// Small deterministic PRNG (splitmix64) so the test needs no `rand` crate
/// and every run uses the same "random" names.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn backends() -> Vec<String> {
    vec!["alpha".to_string(), "beta".to_string()]
}

/// Records `n` requests with distinct random method names and `n` tool calls
/// with distinct unknown tool names (every 10th call uses a known tool).
fn hammer(m: &Metrics, rng: &mut Rng, n: u64) {
    let mut name = String::with_capacity(48);
    for i in 0..n {
        let r = rng.next();
        name.clear();
        let _ = write!(name, "evil/{r:016x}\"\n{{le=\"x\"}}");
        let backend = match i % 3 {
            0 => Some(0),
            1 => Some(1),
            _ => None,
        };
        let outcome = Outcome::ALL[(i % 5) as usize];
        m.request(&name, backend, outcome, Duration::from_micros(r % 40_000_000));
        if i % 10 == 0 {
            m.tool_call(if i % 20 == 0 { "search" } else { "fetch" }, outcome);
        } else {
            name.clear();
            let _ = write!(name, "tool_{r:016x}");
            m.tool_call(&name, outcome);
        }
    }
}

#[test]
fn lesson_5_untrusted_strings_never_become_unbounded_metric_labels() {
    let m = Arc::new(Metrics::new(&backends()));
    m.set_known_tools(["search".to_string(), "fetch".to_string()]);
    let mut rng = Rng(5);

    // The first few thousand calls exercise every (other, backend, outcome)
    // combination the big run will use.
    hammer(&m, &mut rng, 1_000);
    let baseline = m.series_count(&snapshot());

    let started = Instant::now();
    const TOTAL: u64 = 1_000_000;
    // Two recording threads (the machine has two cores), to exercise the
    // concurrent path as well as the bound.
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let m = Arc::clone(&m);
            s.spawn(move || {
                let mut rng = Rng(1000 + t);
                hammer(&m, &mut rng, (TOTAL - 1_000) / 2);
            });
        }
    });
    let elapsed = started.elapsed();

    let after = m.series_count(&snapshot());
    let text = m.render(&snapshot());
    println!(
        "lesson 5: series_count after 1,000 = {baseline}, after {TOTAL} random methods + {TOTAL} tool calls = {after}; \
         recording took {elapsed:?}; exposition is {} bytes",
        text.len()
    );
    assert_eq!(after, baseline, "series grew with untrusted input");
    assert!(after < 250, "unexpectedly many series: {after}");
    assert!(!text.contains("evil/"), "an untrusted method became a label");
    assert!(!text.contains("tool=\"tool_"), "an unknown tool became a label");

    // Nothing was lost: every request and tool call is counted somewhere.
    let sum_of = |prefix: &str| -> u64 {
        text.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum()
    };
    let recorded = 1_000 + (TOTAL - 1_000) / 2 * 2;
    assert_eq!(sum_of("mcprouter_requests_total{"), recorded);
    assert_eq!(sum_of("mcprouter_tool_calls_total{"), recorded);
    assert_eq!(sum_of("mcprouter_request_duration_seconds_count{"), recorded);
    assert_eq!(method_label("evil/123"), "other");
    assert_eq!(method_label("tools/call"), "tools/call");

    // A catalog rebuild with a hostile number of tools is capped too.
    m.set_known_tools((0..100_000).map(|i| format!("t{i}")));
    for i in 0..100_000 {
        m.tool_call(&format!("t{i}"), Outcome::Ok);
    }
    let capped = m.series_count(&snapshot());
    println!("lesson 5: after registering 100,000 tool names: series_count = {capped}");
    assert!(capped <= after + 1_000 + 1, "tool labels not capped: {capped}");
}

// ---------------------------------------------------------------- redaction

const CANARY: &str = "CANARY";

fn redactor() -> Redactor {
    // Secrets as the router would register them: the values of backend env
    // vars whose names look secret.
    let env = [
        ("PATH", "/usr/bin".to_string()),
        ("GITHUB_TOKEN", "ghp_CANARYenv0001".to_string()),
        ("DB_PASSWORD", "pw-CANARYenv0002".to_string()),
        ("SHORT_KEY", "abc".to_string()),
    ];
    Redactor::new(secrets_from_env(env), vec!["x-tenant-signing".to_string()])
}

fn assert_clean(input: &str, out: &str) {
    assert!(!out.contains(CANARY), "canary leaked:\n  in:  {input}\n  out: {out}");
    assert!(out.contains("[REDACTED]"), "nothing redacted:\n  in:  {input}\n  out: {out}");
}

#[test]
fn redaction_masks_canaries_in_headers_tokens_json_urls_and_env() {
    let r = redactor();
    let cases = [
        // headers, any case, up to end of line
        "Authorization: Bearer CANARYhdr.a1-b2_c3",
        "authorization: Basic CANARYYmFzaWM6cGFzcw==\r\nHost: example.com",
        "PROXY-AUTHORIZATION:   Digest CANARYdigest",
        "request headers: {\"Accept\": \"*/*\"}\nX-Api-Key: CANARYxapikey\nUser-Agent: t",
        "X-Tenant-Signing: CANARYextra",
        // bearer anywhere
        "upstream said: invalid bearer CANARYbearer0001 for tool fetch",
        "curl -H 'Authorization: Bearer CANARYcurl' https://x",
        "GET /sse?auth=Bearer%20CANARYurlenc",
        // key=value
        "GET /v1?user=bob&token=CANARYq1&page=2",
        "api_key=CANARYk2 apikey=CANARYk3 password=CANARYk4 secret=CANARYk5 access_token=CANARYk6",
        "spawn env: OPENAI_API_KEY=CANARYenvkv AWS_SECRET_ACCESS_KEY='CANARY quoted'",
        "args: [\"--client-secret=CANARYarg\"]",
        // JSON fields, case-insensitive, any value type
        r#"{"password":"CANARYjson1"}"#,
        r#"{"Authorization": "Bearer CANARYjson2", "ok": true}"#,
        r#"{"TOKEN" : "CANARY\"esc\\aped"}"#,
        r#"{"secret": {"nested": ["CANARYobj"]}}"#,
        r#"{"API_KEY": "CANARYjson3", "refresh_token": "CANARYjson4"}"#,
        r#"{"x_tenant_signing": "CANARYjson5"}"#,
        r#"{"params":{"arguments":{"apiKey":"CANARYcamel"}}}"#,
        r#"log from backend: {'password': 'CANARYpy'}"#,
        // JSON embedded as a string inside JSON
        r#"{"body":"{\"password\":\"CANARYembedded\",\"user\":\"u\"}"}"#,
        // URL userinfo
        "connecting to https://admin:CANARYurlpass@db.internal:5432/app",
        "git clone https://CANARYonlytoken@github.com/o/r.git",
        // registered secret values anywhere, however they got there
        "backend stderr: using ghp_CANARYenv0001 for auth",
        "pw is pw-CANARYenv0002.",
    ];
    for input in cases {
        let out = r.redact(input);
        assert_clean(input, &out);
    }
    // The registered secret shorter than 4 chars is ignored, on purpose.
    assert_eq!(r.redact("abc def"), "abc def");

    // JSON stays JSON after redaction.
    let json = r#"{"password":"CANARYa","token":12345,"secret":{"a":1},"user":"bob","n":[1,2]}"#;
    let out = r.redact(json);
    let v: serde_json::Value = serde_json::from_str(&out).expect("still JSON");
    assert_eq!(v["user"], "bob");
    assert_eq!(v["password"], "[REDACTED]");
    assert_eq!(v["token"], "[REDACTED]");
    assert_eq!(v["secret"], "[REDACTED]");

    assert!(is_secret_name("GITHUB_TOKEN") && is_secret_name("my_api_key") && is_secret_name("Db_Password"));
    assert!(!is_secret_name("HOME") && !is_secret_name("RUST_LOG"));
}

#[test]
fn redaction_leaves_clean_text_alone_and_is_fast() {
    let r = redactor();
    let clean = "tools/call search -> backend alpha ok in 12.5ms; args={\"query\":\"rust\",\"max_tokens\":100}; \
                 see https://example.com/docs?page=2#top, retry 1 of 3, a == b, note: none"
        .repeat(8);
    let out = r.redact(&clean);
    assert!(matches!(out, std::borrow::Cow::Borrowed(_)), "clean text was copied: {out}");
    assert_eq!(out, clean);

    let iterations = 2_000;
    let started = Instant::now();
    for _ in 0..iterations {
        std::hint::black_box(r.redact(std::hint::black_box(&clean)));
    }
    let per = started.elapsed() / iterations;
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    // Printed, not asserted: timings on shared CI machines are too noisy
    // for a hard bound (release measures ~0.4 ns/byte for plain text).
    println!("redact: {} clean bytes in {per:?} per call ({profile} build)", clean.len());
}

#[test]
fn json_log_line_is_valid_json_without_canaries() {
    let r = redactor();
    let line = json_line(
        log::Level::Warn,
        "mcprouter::backend",
        "backend failed: Authorization: Bearer CANARYmsg1\nretrying with token=CANARYmsg2 \"quoted\" \u{7}",
        &[
            ("backend", "alpha"),
            ("api_key", "CANARYfield1"), // sensitive name: whole value masked
            ("env", "GITHUB_TOKEN=ghp_CANARYenv0001"),
            ("url", "https://u:CANARYfield2@h/x"),
            ("msg", "shadow"),
        ],
        &r,
    );
    println!("{line}");
    assert!(!line.contains('\n'), "not a single line");
    assert!(!line.contains(CANARY), "canary leaked: {line}");
    let v: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
    let ts = v["ts"].as_str().expect("ts");
    assert_eq!(ts.len(), 24, "{ts}");
    assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
    assert_eq!(v["level"], "WARN");
    assert_eq!(v["target"], "mcprouter::backend");
    assert_eq!(v["backend"], "alpha");
    assert_eq!(v["api_key"], "[REDACTED]");
    assert_eq!(v["field_msg"], "shadow");
    assert!(v["msg"].as_str().expect("msg").contains("\"quoted\""));
    let keys: Vec<&String> = v.as_object().expect("object").keys().collect();
    assert_eq!(&keys[..4], ["ts", "level", "target", "msg"]);
}

#[test]
fn installed_logger_redacts_through_the_log_macros() {
    // The only test in this binary that installs the global logger.
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink_lines = Arc::clone(&lines);
    let logger = Logger::new(
        log::LevelFilter::Info,
        Sink::Callback(Box::new(move |_level, _target, line| {
            if let Ok(mut l) = sink_lines.lock() {
                l.push(line.to_string());
            }
        })),
        redactor(),
    );
    install(logger).expect("first logger in this process");
    let token = "CANARYmacro";
    log::info!(target: "lesson", "calling backend with Authorization: Bearer {token}");
    log::warn!(target: "lesson", "{{\"password\": \"{token}2\"}}");
    log::debug!(target: "lesson", "filtered out {token}");
    let lines = lines.lock().expect("lines");
    let ours: Vec<&String> = lines.iter().filter(|l| l.contains("\"target\":\"lesson\"")).collect();
    assert_eq!(ours.len(), 2, "{lines:?}");
    for l in ours {
        assert!(!l.contains(CANARY), "{l}");
        serde_json::from_str::<serde_json::Value>(l).expect("valid JSON");
    }
}

// --------------------------------------------------------------- exposition

/// A fully populated metric set with hostile label content.
fn populated() -> Metrics {
    let names = vec!["alpha".to_string(), "we\"ird\\back\nend".to_string()];
    let m = Metrics::new(&names);
    m.set_known_tools(["search".to_string(), "quo\"te\\d\ntool".to_string(), "fetch".to_string()]);
    for (i, method) in
        ["initialize", "tools/call", "resources/read", "bogus", "notifications/progress"].iter().enumerate()
    {
        for (j, outcome) in Outcome::ALL.iter().enumerate() {
            let backend = match (i + j) % 3 {
                0 => Some(0),
                1 => Some(1),
                _ => None,
            };
            m.request(method, backend, *outcome, Duration::from_micros(((i * 7 + j) as u64).pow(5)));
        }
    }
    m.tool_call("search", Outcome::Ok);
    m.tool_call("quo\"te\\d\ntool", Outcome::Error);
    m.tool_call("unknown", Outcome::Timeout);
    m.overload(0);
    m.fallback();
    m.retry();
    m.retry();
    m
}

/// The figures the router supplies at render time for `populated()`'s two backends.
fn snapshot() -> Snapshot {
    Snapshot {
        backends: vec![
            BackendFigures { up: true, in_flight: 1, queue_depth: 7, breaker: 0, restarts: 0, modern: false },
            BackendFigures { up: false, in_flight: 0, queue_depth: 0, breaker: 2, restarts: 1, modern: false },
        ],
        catalog_items: [42, 0, 0, 3],
        sessions: 1,
        ..Snapshot::default()
    }
}

/// Structural check of the 0.0.4 text format, independent of Python: every
/// family has HELP then TYPE before its samples, sample lines are
/// `name{labels} value`, label values are properly escaped, and no series
/// appears twice.
fn check_exposition(text: &str) {
    let mut seen_series = std::collections::HashSet::new();
    let mut current: Option<(String, String)> = None; // (family, type)
    let mut families = std::collections::HashSet::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().expect("name").to_string();
            let ty = lines.next().expect("TYPE after HELP");
            let expected = format!("# TYPE {name} ");
            assert!(ty.starts_with(&expected), "{ty}");
            let kind = ty[expected.len()..].to_string();
            assert!(["counter", "gauge", "histogram"].contains(&kind.as_str()), "{kind}");
            assert!(families.insert(name.clone()), "family {name} twice");
            current = Some((name, kind));
            continue;
        }
        assert!(!line.starts_with('#'), "stray comment {line}");
        let (family, kind) = current.as_ref().expect("sample before HELP");
        let (series, value) = line.rsplit_once(' ').expect("value");
        assert!(value.parse::<f64>().is_ok(), "bad value in {line}");
        let name = series.split('{').next().expect("name");
        let ok_name = if kind == "histogram" {
            [format!("{family}_bucket"), format!("{family}_sum"), format!("{family}_count")].contains(&name.to_string())
        } else {
            name == family
        };
        assert!(ok_name, "{name} under family {family}");
        if let Some(labels) = series.strip_prefix(name).and_then(|l| l.strip_prefix('{')) {
            let labels = labels.strip_suffix('}').expect("closing brace");
            // Walk label pairs, honoring escapes.
            let b = labels.as_bytes();
            let mut i = 0;
            while i < b.len() {
                let eq = labels[i..].find("=\"").expect("=\"") + i;
                assert!(labels[i..eq].chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                i = eq + 2;
                loop {
                    match b[i] {
                        b'\\' => {
                            assert!(matches!(b[i + 1], b'\\' | b'"' | b'n'), "bad escape in {line}");
                            i += 2;
                        }
                        b'"' => break,
                        b'\n' => panic!("raw newline"),
                        _ => i += 1,
                    }
                }
                i += 1;
                if i < b.len() {
                    assert_eq!(b[i], b',', "{line}");
                    i += 1;
                }
            }
        }
        assert!(seen_series.insert(series.to_string()), "duplicate series {series}");
    }
}

#[test]
fn render_is_valid_prometheus_text_format() {
    let m = populated();
    let text = m.render(&snapshot());
    check_exposition(&text);
    assert_eq!(text, m.render(&snapshot()), "render is not deterministic");
    assert!(text.contains("backend=\"we\\\"ird\\\\back\\nend\""), "backend label not escaped");
    assert!(text.contains("mcprouter_tool_calls_total{tool=\"quo\\\"te\\\\d\\ntool\",outcome=\"error\"} 1\n"));
    assert!(text.contains("mcprouter_tool_calls_total{tool=\"other\",outcome=\"timeout\"} 1\n"));
    assert!(text.contains("mcprouter_catalog_items{kind=\"tools\"} 42\n"));
    assert!(text.contains("mcprouter_breaker_state{backend=\"we\\\"ird\\\\back\\nend\"} 2\n"));
    assert!(text.contains("mcprouter_retries_total 2\n"));
    assert!(text.contains("mcprouter_sessions 1\n"));
    assert!(text.contains("method=\"other\""));
    println!("render: {} series, {} bytes", m.series_count(&snapshot()), text.len());
}

#[test]
fn render_parses_with_prometheus_client() {
    // `MCPROUTER_PYTHON`, else the venv scripts/deps.sh fills from tests/deps/requirements.txt.
    // Without the real parser this test fails: a skip would read as a pass.
    let python = std::env::var("MCPROUTER_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/.deps/venv/bin/python").to_owned());
    let has_client = std::process::Command::new(&python)
        .args(["-c", "import prometheus_client"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(has_client, "{python} cannot import prometheus_client: run scripts/deps.sh");

    let m = populated();
    let text = m.render(&snapshot());
    let dir = std::env::temp_dir();
    let stamp = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
    );
    let metrics_path = dir.join(format!("mcprouter-metrics-{stamp}.prom"));
    let script_path = dir.join(format!("mcprouter-metrics-{stamp}.py"));
    std::fs::write(&metrics_path, &text).expect("write metrics");
    std::fs::write(&script_path, VALIDATE_PY).expect("write script");
    let out = std::process::Command::new(&python).arg(&script_path).arg(&metrics_path).output().expect("run python");
    let _ = std::fs::remove_file(&metrics_path);
    let _ = std::fs::remove_file(&script_path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("prometheus_client: {}", stdout.trim());
    assert!(out.status.success(), "prometheus_client rejected the exposition:\n{stderr}\n--- exposition ---\n{text}");
}

/// Parses with `prometheus_client.parser` and checks what the parser alone
/// does not: expected families and types, cumulative histogram buckets with
/// `+Inf == _count`, escaped labels round-tripping, no duplicate series.
const VALIDATE_PY: &str = r#"
import math, sys
from prometheus_client.parser import text_string_to_metric_families

text = open(sys.argv[1], encoding="utf-8").read()
fams = {}
for f in text_string_to_metric_families(text):
    assert f.name not in fams, "family twice: " + f.name
    fams[f.name] = f

# The parser drops the _total suffix from counter family names.
expected = {
    "mcprouter_requests": "counter",
    "mcprouter_request_duration_seconds": "histogram",
    "mcprouter_tool_calls": "counter",
    "mcprouter_in_flight": "gauge",
    "mcprouter_backend_up": "gauge",
    "mcprouter_breaker_state": "gauge",
    "mcprouter_backend_restarts": "counter",
    "mcprouter_queue_depth": "gauge",
    "mcprouter_overload_rejections": "counter",
    "mcprouter_catalog_items": "gauge",
    "mcprouter_fallbacks": "counter",
    "mcprouter_retries": "counter",
    "mcprouter_sessions": "gauge",
}
for name, typ in expected.items():
    assert name in fams, "missing family " + name
    assert fams[name].type == typ, (name, fams[name].type)
    assert fams[name].documentation, "no HELP for " + name

seen = set()
for f in fams.values():
    for s in f.samples:
        key = (s.name, tuple(sorted(s.labels.items())))
        assert key not in seen, "duplicate series %r" % (key,)
        seen.add(key)

hist = fams["mcprouter_request_duration_seconds"]
groups = {}
for s in hist.samples:
    base = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
    g = groups.setdefault(base, {"buckets": [], "sum": None, "count": None})
    if s.name.endswith("_bucket"):
        g["buckets"].append((float(s.labels["le"]), s.value))
    elif s.name.endswith("_sum"):
        g["sum"] = s.value
    elif s.name.endswith("_count"):
        g["count"] = s.value
assert groups, "no histogram series"
for base, g in groups.items():
    b = sorted(g["buckets"])
    assert len(b) == 16, (base, len(b))
    assert math.isinf(b[-1][0]), base
    assert all(x[1] <= y[1] for x, y in zip(b, b[1:])), ("not cumulative", base, b)
    assert b[-1][1] == g["count"], ("+Inf != _count", base)
    assert g["sum"] is not None and g["sum"] >= 0, base

backends = {s.labels["backend"] for s in fams["mcprouter_backend_up"].samples}
assert backends == {"alpha", 'we"ird\\back\nend'}, backends
tools = {s.labels["tool"] for s in fams["mcprouter_tool_calls"].samples}
assert tools == {"search", 'quo"te\\d\ntool', "other"}, tools
methods = {s.labels["method"] for s in fams["mcprouter_requests"].samples}
assert "bogus" not in methods and "other" in methods, methods

print("ok: %d families, %d samples, %d histograms" % (len(fams), len(seen), len(groups)))
"#;
