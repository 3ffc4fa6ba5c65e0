//! The HTTP fronts compared: `tools/call` of server-everything's `echo` through each, at 1
//! and 16 concurrent clients, in one run with one load generator (this process).
//!
//! ```sh
//! cargo bench --bench gateway                      # 5 s per cell
//! cargo bench --bench gateway -- --seconds 2       # shorter
//! cargo bench --bench gateway -- --node-modules DIR  # where supergateway, mcp-proxy live
//! ```
//!
//! The fronts, each before the same `@modelcontextprotocol/server-everything`:
//! - `everything-http`: its own Streamable HTTP endpoint (`streamableHttp`), no front;
//! - `mcprouter-http`: `mcprouter serve --http`, the server on stdio;
//! - `supergateway`: `--stdio ... --outputTransport streamableHttp --stateful` (its default,
//!   stateless mode starts a server process per request; stateful starts one per session);
//! - `mcp-proxy`: the npm `mcp-proxy --server stream`, the server on stdio;
//! - `mcprouter-stdio`: `mcprouter serve` on a pipe, the clients' calls multiplexed on it
//!   (the stdio figure: what the HTTP front should come close to).
//!
//! Each HTTP client is its own session on its own keep-alive connection (a minimal
//! HTTP/1.1 client: one write per request, TCP_NODELAY); it calls, waits for the result
//! (JSON or an SSE stream), and calls again. Node runs as the `node` 22
//! package (`.deps/node`); every Node server listens on loopback only (the tests'
//! preload). Nothing here asserts on timing, and `cargo test` only builds this target.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, bounded};
use parking_lot::Mutex;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_mcprouter");
const VERSION: &str = "2025-11-25";
const CONCURRENCY: [usize; 2] = [1, 16];

struct Opts {
    seconds: f64,
    node_modules: PathBuf,
    only: Vec<String>,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn init_body(id: u64) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"initialize","params":{{"protocolVersion":"{VERSION}","capabilities":{{}},"clientInfo":{{"name":"gateway-bench","version":"0"}}}}}}"#
    )
}

const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

fn echo_call(id: u64, tool: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{"message":"bench {id}"}}}}}}"#
    )
}

/// A front under test: its processes, and how a client reaches it.
struct Front {
    name: &'static str,
    procs: Vec<Child>,
    reach: Reach,
}

enum Reach {
    Http(String),
    Stdio(Arc<StdioConn>),
}

impl Drop for Front {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

struct Node {
    node: PathBuf,
    preload: PathBuf,
    modules: PathBuf,
}

impl Node {
    fn new(modules: &Path) -> Node {
        let node = modules.join("node/bin/node");
        assert!(node.is_file(), "the node 22 package is missing at {}: run scripts/deps.sh", node.display());
        Node { node, preload: repo().join("tests/support/loopback.cjs"), modules: modules.to_owned() }
    }

    /// The script a package's `bin` entry `name` points at.
    fn bin(&self, package: &str, name: &str) -> PathBuf {
        let dir = self.modules.join(package);
        let meta: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("package.json"))
                .unwrap_or_else(|e| panic!("{package} is not installed in {}: {e}", self.modules.display())),
        )
        .expect("package.json");
        let rel = match &meta["bin"] {
            Value::String(s) => s.clone(),
            b => b[name].as_str().unwrap_or_else(|| panic!("{package} has no bin {name}")).to_owned(),
        };
        dir.join(rel)
    }

    fn everything(&self) -> PathBuf {
        self.bin("@modelcontextprotocol/server-everything", "mcp-server-everything")
    }

    /// `node --require loopback.cjs SCRIPT ARGS...`
    fn command(&self, script: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(&self.node);
        c.arg("--require").arg(&self.preload).arg(script).args(args);
        c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        c
    }

    /// The stdio server as one shell-free command line (for the gateways that take one).
    fn everything_stdio_argv(&self) -> Vec<String> {
        vec![self.node.display().to_string(), self.everything().display().to_string(), "stdio".into()]
    }
}

fn router_config(node: &Node) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mcprouter-gateway-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let argv = node.everything_stdio_argv();
    let yaml = format!(
        "router:\n  init_timeout_ms: 30000\nbackends:\n  - name: everything\n    command: {}\n    args: {}\n",
        serde_json::to_string(&argv[0]).unwrap_or_default(),
        serde_json::to_string(&argv[1..]).unwrap_or_default()
    );
    let path = dir.join("router.yaml");
    std::fs::write(&path, yaml).expect("config");
    path
}

fn start(name: &'static str, node: &Node) -> Front {
    match name {
        "everything-http" => {
            let port = free_port();
            let mut c = node.command(&node.everything(), &["streamableHttp"]);
            c.env("PORT", port.to_string());
            http_front(name, vec![c.spawn().expect("server-everything")], format!("http://127.0.0.1:{port}/mcp"))
        }
        "mcprouter-http" => {
            let mut child = Command::new(BIN)
                .args(["serve", "--config"])
                .arg(router_config(node))
                .args(["--http", "127.0.0.1:0", "--log-level", "error"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("mcprouter serve --http");
            let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
            let url = loop {
                let line = lines.next().and_then(Result::ok).expect("mcprouter exited before listening");
                if let Some(u) = line.strip_prefix("mcprouter: serving MCP on ") {
                    break u.trim().to_owned();
                }
            };
            // Keep draining stderr so the child never blocks on it.
            std::thread::spawn(move || lines.for_each(drop));
            http_front(name, vec![child], url)
        }
        "supergateway" => {
            let port = free_port();
            let stdio = node.everything_stdio_argv().join(" ");
            let script = node.bin("supergateway", "supergateway");
            let port_s = port.to_string();
            let args = [
                "--stdio",
                &stdio,
                "--outputTransport",
                "streamableHttp",
                "--stateful",
                "--port",
                &port_s,
                "--logLevel",
                "none",
            ];
            let child = node.command(&script, &args).spawn().expect("supergateway");
            http_front(name, vec![child], format!("http://127.0.0.1:{port}/mcp"))
        }
        "mcp-proxy" => {
            let port = free_port();
            let script = node.bin("mcp-proxy", "mcp-proxy");
            let port_s = port.to_string();
            let argv = node.everything_stdio_argv();
            let mut args = vec!["--port", &port_s, "--host", "127.0.0.1", "--server", "stream", "--"];
            args.extend(argv.iter().map(String::as_str));
            let child = node.command(&script, &args).spawn().expect("mcp-proxy");
            http_front(name, vec![child], format!("http://127.0.0.1:{port}/mcp"))
        }
        "mcprouter-stdio" => {
            let mut child = Command::new(BIN)
                .args(["serve", "--config"])
                .arg(router_config(node))
                .args(["--log-level", "error"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("mcprouter serve");
            let conn = StdioConn::start(&mut child);
            Front { name, procs: vec![child], reach: Reach::Stdio(conn) }
        }
        other => panic!("unknown front {other}"),
    }
}

/// Waits until the front answers an initialize (it starts its server first).
fn http_front(name: &'static str, procs: Vec<Child>, url: String) -> Front {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        match HttpClient::connect(&url) {
            Ok(_) => break,
            Err(e) if Instant::now() > end => panic!("{name} did not come up at {url}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    Front { name, procs, reach: Reach::Http(url) }
}

// ---------------------------------------------------------------------------------------
// Clients

trait Client: Send {
    /// One `tools/call` of echo, to its result.
    fn call(&mut self, id: u64) -> Result<(), String>;
}

/// A minimal HTTP/1.1 client on one keep-alive connection: each request is one write,
/// the response is read by `Content-Length` or chunks. Lean on purpose, so the figures
/// are the servers' and not a client library's.
struct HttpClient {
    url: String,
    addr: String,
    path: String,
    conn: Option<BufReader<TcpStream>>,
    session: Option<String>,
}

impl HttpClient {
    fn connect(url: &str) -> Result<HttpClient, String> {
        let rest = url.strip_prefix("http://").ok_or("http URLs only")?;
        let (addr, path) = rest.split_once('/').map(|(a, p)| (a.to_owned(), format!("/{p}"))).ok_or("no path")?;
        let mut c = HttpClient { url: url.to_owned(), addr, path, conn: None, session: None };
        let (sid, body) = c.post(&init_body(0))?;
        if !body.contains("\"result\"") {
            return Err(format!("initialize failed: {body}"));
        }
        c.session = sid;
        c.post(INITIALIZED)?;
        Ok(c)
    }

    fn post(&mut self, body: &str) -> Result<(Option<String>, String), String> {
        // One retry on a fresh connection: the server may have closed an idle one.
        match self.try_post(body) {
            Ok(r) => Ok(r),
            Err(_) if self.conn.take().is_some() => self.try_post(body),
            Err(e) => Err(e),
        }
    }

    fn try_post(&mut self, body: &str) -> Result<(Option<String>, String), String> {
        let err = |e: std::io::Error| format!("{}: {e}", self.url);
        if self.conn.is_none() {
            let s = TcpStream::connect(&self.addr).map_err(err)?;
            s.set_nodelay(true).map_err(err)?;
            s.set_read_timeout(Some(Duration::from_secs(30))).map_err(err)?;
            self.conn = Some(BufReader::new(s));
        }
        let mut req = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nAccept: application/json, text/event-stream\r\nContent-Type: application/json\r\nMCP-Protocol-Version: {VERSION}\r\nContent-Length: {}\r\n",
            self.path,
            self.addr,
            body.len()
        );
        if let Some(s) = &self.session {
            req.push_str(&format!("Mcp-Session-Id: {s}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        let r = self.conn.as_mut().ok_or("no connection")?;
        r.get_mut().write_all(req.as_bytes()).map_err(err)?;
        let mut line = String::new();
        r.read_line(&mut line).map_err(err)?;
        let status: u16 =
            line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| format!("bad status line {line:?}"))?;
        let (mut length, mut chunked, mut close, mut sid) = (None, false, false, None);
        loop {
            line.clear();
            r.read_line(&mut line).map_err(err)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let Some((k, v)) = l.split_once(':') else { continue };
            let v = v.trim();
            match k.to_ascii_lowercase().as_str() {
                "content-length" => length = v.parse::<usize>().ok(),
                "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                "connection" => close = v.eq_ignore_ascii_case("close"),
                "mcp-session-id" => sid = Some(v.to_owned()),
                _ => {}
            }
        }
        let mut out = Vec::new();
        if chunked {
            loop {
                line.clear();
                r.read_line(&mut line).map_err(err)?;
                let n = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
                    .map_err(|e| e.to_string())?;
                let mut chunk = vec![0u8; n + 2];
                r.read_exact(&mut chunk).map_err(err)?;
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(n) = length {
            out.resize(n, 0);
            r.read_exact(&mut out).map_err(err)?;
        } else {
            r.read_to_end(&mut out).map_err(err)?;
            close = true;
        }
        if close {
            self.conn = None;
        }
        let text = String::from_utf8_lossy(&out).into_owned();
        if !(200..300).contains(&status) {
            return Err(format!("HTTP {status}: {text}"));
        }
        Ok((sid, text))
    }
}

impl Client for HttpClient {
    fn call(&mut self, id: u64) -> Result<(), String> {
        let (_, body) = self.post(&echo_call(id, "echo"))?;
        // JSON, or an SSE stream whose last event is the result.
        if body.contains("\"result\"") && body.contains(&format!("bench {id}")) {
            Ok(())
        } else {
            Err(format!("unexpected reply: {body}"))
        }
    }
}

/// One `mcprouter serve` on a pipe, shared by the stdio clients (each with its own ids).
struct StdioConn {
    stdin: Mutex<ChildStdin>,
    waiters: Arc<Mutex<HashMap<u64, Sender<String>>>>,
}

impl StdioConn {
    fn start(child: &mut Child) -> Arc<StdioConn> {
        let stdout = child.stdout.take().expect("stdout");
        let waiters: Arc<Mutex<HashMap<u64, Sender<String>>>> = Arc::default();
        let w = Arc::clone(&waiters);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let id = serde_json::from_str::<Value>(&line).ok().and_then(|v| v["id"].as_u64());
                if let Some(tx) = id.and_then(|id| w.lock().remove(&id)) {
                    let _ = tx.send(line);
                }
            }
        });
        let conn = Arc::new(StdioConn { stdin: Mutex::new(child.stdin.take().expect("stdin")), waiters });
        let reply = conn.request(0, &init_body(0)).expect("initialize over stdio");
        assert!(reply.contains("\"result\""), "{reply}");
        conn.send(INITIALIZED).expect("initialized");
        conn
    }

    fn send(&self, line: &str) -> Result<(), String> {
        let mut w = self.stdin.lock();
        w.write_all(line.as_bytes())
            .and_then(|()| w.write_all(b"\n"))
            .and_then(|()| w.flush())
            .map_err(|e| e.to_string())
    }

    fn request(&self, id: u64, line: &str) -> Result<String, String> {
        let (tx, rx) = bounded(1);
        self.waiters.lock().insert(id, tx);
        self.send(line)?;
        rx.recv_timeout(Duration::from_secs(30)).map_err(|_| format!("no reply to {id}"))
    }
}

struct StdioClient(Arc<StdioConn>);

impl Client for StdioClient {
    fn call(&mut self, id: u64) -> Result<(), String> {
        let reply = self.0.request(id, &echo_call(id, "echo"))?;
        if reply.contains("\"result\"") { Ok(()) } else { Err(format!("unexpected reply: {reply}")) }
    }
}

fn client(front: &Front) -> Box<dyn Client> {
    match &front.reach {
        Reach::Http(url) => Box::new(HttpClient::connect(url).unwrap_or_else(|e| panic!("{}: {e}", front.name))),
        Reach::Stdio(conn) => Box::new(StdioClient(Arc::clone(conn))),
    }
}

// ---------------------------------------------------------------------------------------
// Measuring

struct Cell {
    calls_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
}

fn measure(front: &Front, clients: usize, seconds: f64) -> Cell {
    let warmup = Duration::from_secs_f64((seconds / 5.0).max(0.3));
    let window = Duration::from_secs_f64(seconds);
    let barrier = Arc::new(Barrier::new(clients));
    let stop = Arc::new(AtomicBool::new(false));
    let mut conns: Vec<Box<dyn Client>> = (0..clients).map(|_| client(front)).collect();
    let results: Vec<(Vec<Duration>, usize, Duration)> = std::thread::scope(|s| {
        let handles: Vec<_> = conns
            .drain(..)
            .enumerate()
            .map(|(i, mut c)| {
                let (barrier, stop) = (Arc::clone(&barrier), Arc::clone(&stop));
                s.spawn(move || {
                    // Ids unique across clients (the stdio ones share a pipe).
                    let mut id = (i as u64 + 1) << 32;
                    barrier.wait();
                    let warm_end = Instant::now() + warmup;
                    while Instant::now() < warm_end {
                        id += 1;
                        let _ = c.call(id);
                    }
                    let (mut lat, mut errors) = (Vec::new(), 0);
                    let start = Instant::now();
                    let end = start + window;
                    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
                        id += 1;
                        let t = Instant::now();
                        match c.call(id) {
                            Ok(()) => lat.push(t.elapsed()),
                            Err(e) => {
                                errors += 1;
                                if errors == 1 {
                                    eprintln!("  {} client {i}: {e}", front.name);
                                }
                            }
                        }
                    }
                    (lat, errors, start.elapsed())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("client thread")).collect()
    });
    let elapsed = results.iter().map(|r| r.2).max().unwrap_or(window);
    let errors = results.iter().map(|r| r.1).sum();
    let mut all: Vec<Duration> = results.into_iter().flat_map(|r| r.0).collect();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    Cell { calls_per_s: all.len() as f64 / elapsed.as_secs_f64(), p50_ms: pct(0.50), p99_ms: pct(0.99), errors }
}

const FRONTS: [&str; 5] = ["everything-http", "mcprouter-http", "supergateway", "mcp-proxy", "mcprouter-stdio"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("gateway: a benchmark, not a test; run it with `cargo bench --bench gateway [-- --seconds N]`");
        return ExitCode::SUCCESS;
    }
    let mut o = Opts { seconds: 5.0, node_modules: repo().join(".deps/node/node_modules"), only: Vec::new() };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--bench" => {}
            "--seconds" => o.seconds = it.next().and_then(|v| v.parse().ok()).unwrap_or(o.seconds),
            "--node-modules" => o.node_modules = it.next().map(PathBuf::from).unwrap_or(o.node_modules),
            f if FRONTS.contains(&f) => o.only.push(f.to_owned()),
            other => {
                eprintln!(
                    "gateway: unknown argument {other:?}; flags: --seconds N, --node-modules DIR; fronts: {FRONTS:?}"
                );
                return ExitCode::from(2);
            }
        }
    }
    let node = Node::new(&o.node_modules);
    println!(
        "tools/call echo through each front to @modelcontextprotocol/server-everything; {} s per cell, one load generator",
        o.seconds
    );
    let mut rows: Vec<(&'static str, usize, Cell)> = Vec::new();
    for name in FRONTS {
        if !o.only.is_empty() && !o.only.iter().any(|f| f == name) {
            continue;
        }
        for clients in CONCURRENCY {
            // A fresh front per cell: no session or process left over from the cell before.
            let front = start(name, &node);
            let cell = measure(&front, clients, o.seconds);
            eprintln!("  {name:<16} {clients:>2} clients: {:>8.0} calls/s", cell.calls_per_s);
            rows.push((name, clients, cell));
            drop(front);
        }
    }
    println!();
    println!(
        "{:<16} {:>7} {:>10} {:>9} {:>9} {:>7} {:>14}",
        "front", "clients", "calls/s", "p50 ms", "p99 ms", "errors", "vs mcprouter"
    );
    for (name, clients, c) in &rows {
        let ours = rows.iter().find(|(n, k, _)| *n == "mcprouter-http" && k == clients).map(|r| r.2.calls_per_s);
        let ratio = ours.map_or("-".to_owned(), |t| format!("{:.2}x", c.calls_per_s / t));
        println!(
            "{name:<16} {clients:>7} {:>10.0} {:>9.3} {:>9.3} {:>7} {ratio:>14}",
            c.calls_per_s, c.p50_ms, c.p99_ms, c.errors
        );
    }
    println!("(vs mcprouter: the front's throughput over mcprouter-http's at the same concurrency)");
    ExitCode::SUCCESS
}
