//! What the router adds per call to an HTTP backend.
//!
//! ```sh
//! scripts/deps.sh && cargo run --release --example http_overhead
//! ```
//!
//! Starts `@modelcontextprotocol/server-everything streamableHttp` (from `.deps/`, bound to
//! 127.0.0.1 on a free port) and calls its `echo` tool in one run, two ways:
//! - directly, with ureq (the router's own HTTP client): POST with the session headers, read
//!   the answer (an SSE stream or a JSON body);
//! - through the router: `Session::handle` of a `tools/call`, the backend a
//!   `streamable_http` one with `concurrency: 16`.
//!
//! at 1 and at 16 concurrent callers. Rounds alternate the two sides so drift in the
//! machine's speed hits both alike; the median round is reported.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const ROUNDS: usize = 5;
const CALLS_PER_CALLER: [(usize, usize); 2] = [(1, 400), (16, 100)];

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let script = root.join(".deps/node/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(script.exists(), "run scripts/deps.sh first");
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = Command::new("node")
        .arg("--require")
        .arg(root.join("tests/support/loopback.cjs"))
        .arg(&script)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("node");
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("http://127.0.0.1:{port}/mcp");

    let direct = Direct::connect(&url);
    let yaml = format!(
        "router: {{health: {{interval_ms: 0}}}}\nbackends:\n  - name: e\n    transport: streamable_http\n    url: {url}\n    concurrency: 16\n"
    );
    let router = mcprouter::Router::from_yaml(&yaml).expect("router");
    let session = router.session(None).unwrap();

    println!("per-call latency, echo on server-everything (Streamable HTTP), median of {ROUNDS} rounds");
    println!(
        "{:>8} {:>14} {:>14} {:>12} {:>14} {:>14}",
        "callers", "direct µs", "router µs", "overhead µs", "direct call/s", "router call/s"
    );
    for (callers, per) in CALLS_PER_CALLER {
        let mut d = Vec::new();
        let mut r = Vec::new();
        for _ in 0..ROUNDS {
            d.push(run(callers, per, |i| direct.echo(i)));
            r.push(run(callers, per, |i| {
                let msg = format!(
                    r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"m{i}"}}}}}}"#
                );
                let reply = session.handle(&msg).unwrap().unwrap();
                assert!(reply.contains("Echo: m"), "{reply}");
            }));
        }
        d.sort_by(f64::total_cmp);
        r.sort_by(f64::total_cmp);
        let (dm, rm) = (d[ROUNDS / 2], r[ROUNDS / 2]);
        // Mean latency per call seen by one caller, and throughput of all callers.
        let (dl, rl) = (dm * 1e6 * callers as f64, rm * 1e6 * callers as f64);
        println!("{callers:>8} {dl:>14.0} {rl:>14.0} {:>12.0} {:>14.0} {:>14.0}", rl - dl, 1.0 / dm, 1.0 / rm);
    }
    router.shutdown(Duration::from_secs(2));
    let _ = server.kill();
    let _ = server.wait();
}

/// Runs `per` calls on each of `callers` threads; returns seconds per call overall.
fn run(callers: usize, per: usize, f: impl Fn(u64) + Sync) -> f64 {
    let next = AtomicU64::new(1);
    let began = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..callers {
            s.spawn(|| {
                for _ in 0..per {
                    f(next.fetch_add(1, Ordering::Relaxed));
                }
            });
        }
    });
    began.elapsed().as_secs_f64() / (callers * per) as f64
}

struct Direct {
    agent: ureq::Agent,
    url: String,
    session: String,
}

impl Direct {
    fn connect(url: &str) -> Direct {
        let agent: ureq::Agent = ureq::Agent::config_builder().max_idle_connections_per_host(32).build().into();
        let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"roots":{"listChanged":true},"sampling":{},"elicitation":{}},"clientInfo":{"name":"bench","version":"1"}}}"#;
        let resp = agent
            .post(url)
            .header("Accept", "application/json, text/event-stream")
            .header("Content-Type", "application/json")
            .send(init)
            .unwrap();
        let session = resp.headers().get("mcp-session-id").unwrap().to_str().unwrap().to_owned();
        let _ = resp.into_body().read_to_string();
        let d = Direct { agent, url: url.to_owned(), session };
        d.post(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
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
            .unwrap();
        let mut text = String::new();
        resp.into_body().into_reader().read_to_string(&mut text).unwrap();
        text
    }

    fn echo(&self, i: u64) {
        let text = self.post(&format!(
            r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"m{i}"}}}}}}"#
        ));
        assert!(text.contains("Echo: m"), "{text}");
    }
}
