//! `mcprouter serve`: the router as one MCP server on stdio, and `mcprouter check`.

use std::io::{BufReader, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;

use mcprouter::framing::{Line, read_line_limited};
use mcprouter::jsonrpc::{self, Message};
use mcprouter::{Router, Session};

use crate::metrics_http;
use crate::options::{Options, announce, load_and_install};

/// Requests handled at once at least, and at most; in between, the sum of the backends'
/// in-flight caps, so a backend that stops answering cannot take every worker.
const MIN_CONCURRENT: usize = 256;
const MAX_CONCURRENT: usize = 4096;

pub fn run(o: &Options) -> i32 {
    let Some((mut config, redactor)) = load_and_install(o, "serve") else {
        return 2;
    };
    // Bound before any backend starts, so a refused or busy address costs nothing.
    let listener = match o.metrics_listen.as_deref().map(|spec| metrics_http::bind(spec, o.metrics_listen_any)) {
        None => None,
        Some(Ok(l)) => Some(l),
        Some(Err(e)) => {
            log::error!(target: "mcprouter", "mcprouter serve: {e}");
            return 2;
        }
    };
    let max = config.router.max_message_bytes;
    let cap = (config.backends.len() * config.router.queue_capacity + 64).clamp(MIN_CONCURRENT, MAX_CONCURRENT);
    let grace = Duration::from_millis(config.router.shutdown_grace_ms);
    // Stopped (thread joined, socket closed) when dropped, before the router shuts down.
    let cell = Arc::new(OnceLock::new());
    let metrics = match listener {
        None => None,
        Some(l) => {
            let addr = l.addr();
            match l.start(Arc::clone(&cell), redactor.clone()) {
                Ok(running) => {
                    // Always shown, whatever the level: with port 0 it is the only way to learn it.
                    let url = format!("http://{addr}");
                    let msg = format!("metrics listening on {url}");
                    announce(o.log_format, &redactor, "mcprouter::metrics", &msg, &[("addr", &url)]);
                    Some(running)
                }
                Err(e) => {
                    log::error!(target: "mcprouter", "mcprouter serve: {e}");
                    return 1;
                }
            }
        }
    };
    // Backends start once the client's first message is read: when it is `initialize`, they
    // are told the client's own capabilities, so a server offers through the router what it
    // would offer this client directly (see `RouterSettings::declare_for_single_client`).
    let mut input = BufReader::with_capacity(64 * 1024, std::io::stdin().lock());
    let mut buf = Vec::new();
    let first = read_line_limited(&mut input, &mut buf, max);
    let client_caps = match first {
        Ok(Line::Complete) => initialize_capabilities(&buf),
        _ => None,
    };
    if let Some(caps) = &client_caps {
        config.router.declare_for_single_client(caps);
    }
    let router = match Router::new(config) {
        Ok(r) => r,
        Err(e) => {
            log::error!(target: "mcprouter", "mcprouter serve: {e}");
            return 1;
        }
    };
    let _ = cell.set(router.clone());
    // Reloads on SIGHUP (and file changes with --watch) until serve ends.
    let reloader = crate::reload::start(router.clone(), o.config.clone().into(), o.watch, move |c| {
        if let Some(caps) = &client_caps {
            c.router.declare_for_single_client(caps);
        }
    });
    let session = match router.session(Some("stdio")) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            log::error!(target: "mcprouter", "mcprouter serve: {e}");
            drop(metrics);
            router.shutdown(grace);
            return 1;
        }
    };
    // Replies and events go to one stdout. A reply is written under `order` after the
    // events already queued (see `reply`), and the pump takes events only under `order`, so
    // what a backend sent before a result (progress, logs) reaches the client before it.
    let order = Arc::new(Mutex::new(()));
    let pump = {
        let (s, order) = (Arc::clone(&session), Arc::clone(&order));
        std::thread::spawn(move || {
            loop {
                if !s.wait_event(Duration::from_millis(200)) {
                    if s.next_event(Duration::ZERO).is_err() {
                        return;
                    }
                    continue;
                }
                let _order = order.lock();
                if !flush_events(&s) {
                    return;
                }
            }
        })
    };

    let mut pool = Pool::new(Arc::clone(&session), Arc::clone(&order), cap);
    let mut first = Some(first);
    loop {
        let line = match first.take() {
            Some(line) => line,
            None => read_line_limited(&mut input, &mut buf, max),
        };
        match line {
            Ok(Line::Eof) | Err(_) => break,
            Ok(Line::TooLong(prefix)) => {
                let msg = format!("Invalid Request: message exceeds the limit of {max} bytes");
                let id = jsonrpc::id_in_prefix(&prefix);
                emit(&jsonrpc::error(id.as_deref(), jsonrpc::INVALID_REQUEST, &msg));
            }
            Ok(Line::Complete) => {
                let text = match String::from_utf8(std::mem::take(&mut buf)) {
                    Ok(t) if t.trim().is_empty() => continue,
                    Ok(t) => t,
                    Err(_) => {
                        emit(&jsonrpc::error(None, jsonrpc::PARSE_ERROR, "Parse error: not UTF-8"));
                        continue;
                    }
                };
                // Requests may block for a long time (a tool call waiting on the client's
                // own answer to a sampling request), so they run on pool threads; the rest
                // (notifications, the client's answers) is quick and keeps its order.
                let is_request =
                    jsonrpc::is_batch(&text) || matches!(jsonrpc::parse(&text), Ok(Message::Request { .. }));
                if is_request {
                    pool.submit(text);
                } else {
                    reply(&session, &order, &text);
                }
            }
        }
    }
    // stdin closed: let calls in flight finish (each is bounded by its deadline), then stop.
    pool.finish();
    drop(reloader);
    drop(metrics);
    session.close();
    router.shutdown(grace);
    let _ = pump.join();
    0
}

/// The capabilities in `line` when it is an `initialize` request.
fn initialize_capabilities(line: &[u8]) -> Option<serde_json::Value> {
    let text = std::str::from_utf8(line).ok()?;
    match jsonrpc::parse(text) {
        Ok(Message::Request { method, params: Some(p), .. }) if method == "initialize" => {
            let v: serde_json::Value = serde_json::from_str(p.get()).ok()?;
            v.get("capabilities").filter(|c| c.is_object()).cloned()
        }
        _ => None,
    }
}

/// Writes one message to stdout; false once stdout is gone. Threads write whole lines under
/// stdout's lock, so messages never interleave.
fn emit(line: &str) -> bool {
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes()).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush()).is_ok()
}

/// Writes every event queued for the client; false once stdout is gone. The caller holds
/// the order lock.
fn flush_events(session: &Session) -> bool {
    while let Ok(Some(ev)) = session.next_event(Duration::ZERO) {
        if !emit(&ev) {
            return false;
        }
    }
    true
}

/// Worker threads for requests, kept between requests (a spawn per request costs more than
/// the hand-off to a parked thread) and grown on demand up to `cap`. A job is only queued
/// for a worker that was reserved idle, so a request never waits behind a long call; past
/// the cap a request is refused at once with -32003, so the reader never blocks (it must
/// keep reading the client's answers to sampling requests that the calls in flight await).
struct Pool {
    session: Arc<Session>,
    order: Arc<Mutex<()>>,
    cap: usize,
    tx: crossbeam_channel::Sender<String>,
    rx: crossbeam_channel::Receiver<String>,
    idle: Arc<AtomicUsize>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Pool {
    fn new(session: Arc<Session>, order: Arc<Mutex<()>>, cap: usize) -> Pool {
        let (tx, rx) = crossbeam_channel::unbounded();
        Pool { session, order, cap, tx, rx, idle: Arc::new(AtomicUsize::new(0)), workers: Vec::new() }
    }

    fn submit(&mut self, text: String) {
        let reserved = self.idle.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok();
        if reserved {
            if self.tx.send(text).is_err() {
                self.idle.fetch_add(1, Ordering::AcqRel);
            }
            return;
        }
        self.workers.retain(|w| !w.is_finished());
        if self.workers.len() >= self.cap {
            refuse(&text, "router overloaded: too many requests in flight");
            return;
        }
        let (s, order, rx, idle) =
            (Arc::clone(&self.session), Arc::clone(&self.order), self.rx.clone(), Arc::clone(&self.idle));
        // Queued first, so that a thread that cannot start hands the job back to be refused.
        if self.tx.send(text).is_err() {
            return;
        }
        let spawned =
            std::thread::Builder::new().name("mcprouter-serve".into()).stack_size(512 * 1024).spawn(move || {
                loop {
                    let job = loop {
                        match rx.recv_timeout(Duration::from_secs(30)) {
                            Ok(j) => break j,
                            // Idle for long: leave, unless a job was just reserved for us.
                            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                                if idle.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok()
                                {
                                    return;
                                }
                            }
                            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                        }
                    };
                    reply(&s, &order, &job);
                    idle.fetch_add(1, Ordering::AcqRel);
                }
            });
        match spawned {
            Ok(h) => self.workers.push(h),
            Err(_) => {
                if let Ok(job) = self.rx.try_recv() {
                    refuse(&job, "router overloaded: cannot start a thread");
                }
            }
        }
    }

    /// Lets every request in flight finish (each is bounded by its deadline), then joins.
    fn finish(self) {
        drop(self.tx);
        for w in self.workers {
            let _ = w.join();
        }
    }
}

fn reply(session: &Session, order: &Mutex<()>, text: &str) {
    if let Ok(Some(r)) = session.handle(text) {
        let _order = order.lock();
        if flush_events(session) {
            emit(&r);
        }
    }
}

/// Answers every request in `text` (one message or a batch) with -32003 at once.
fn refuse(text: &str, why: &str) {
    let one = |m: &str| match jsonrpc::parse(m) {
        Ok(Message::Request { id, .. }) => Some(jsonrpc::error(Some(id.get()), jsonrpc::OVERLOADED, why)),
        _ => None,
    };
    let out = if jsonrpc::is_batch(text) {
        let replies: Vec<String> =
            jsonrpc::split_batch(text).unwrap_or_default().iter().filter_map(|m| one(m.get())).collect();
        (!replies.is_empty()).then(|| format!("[{}]", replies.join(",")))
    } else {
        one(text)
    };
    if let Some(out) = out {
        emit(&out);
    }
}

pub fn check(o: &Options) -> i32 {
    let Some((config, redactor)) = load_and_install(o, "check") else {
        return 2;
    };
    let settle = Duration::from_millis(config.router.init_timeout_ms);
    let router = match Router::new(config) {
        Ok(r) => r,
        Err(e) => {
            log::error!(target: "mcprouter", "mcprouter check: {e}");
            return 2;
        }
    };
    // A backend that announced a change at start (list_changed) is shown with its new lists;
    // one that keeps changing is shown as it stands, marked pending.
    router.settle(settle);
    let status = router.status();
    // A backend's last error may quote its command line or a secret it printed.
    if o.json {
        let text = serde_json::to_string_pretty(&status).unwrap_or_default();
        println!("{}", redactor.redact(&text));
    } else {
        print!("{}", redactor.redact(&status_table(&status)));
    }
    let ok = status["backends"].as_array().is_some_and(|b| b.iter().all(|b| b["state"] == "ready"));
    router.shutdown(Duration::from_millis(500));
    if ok { 0 } else { 1 }
}

/// A human table of `Router::status()`.
pub fn status_table(status: &serde_json::Value) -> String {
    let mut out = format!(
        "{:<16} {:<15} {:<8} {:<11} {:>5} {:>9} {:>7} {:>10}  {}\n",
        "BACKEND", "TRANSPORT", "STATE", "PROTOCOL", "TOOLS", "RESOURCES", "PROMPTS", "HANDSHAKE", "LAST ERROR"
    );
    for b in status["backends"].as_array().into_iter().flatten() {
        let hs = b["handshake_ms"].as_f64().map(|ms| format!("{ms:.1} ms")).unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{:<16} {:<15} {:<8} {:<11} {:>5} {:>9} {:>7} {:>10}  {}\n",
            b["name"].as_str().unwrap_or("?"),
            b["transport"].as_str().unwrap_or("?"),
            b["state"].as_str().unwrap_or("?"),
            b["protocol_version"].as_str().unwrap_or("-"),
            b["tools"].to_string(),
            b["resources"].to_string(),
            b["prompts"].to_string(),
            hs,
            b["last_error"].as_str().unwrap_or(""),
        ));
    }
    for w in status["router"]["catalog"]["warnings"].as_array().into_iter().flatten() {
        out.push_str(&format!("warning: {}\n", w.as_str().unwrap_or_default()));
    }
    if status["router"]["catalog"]["refresh_pending"] == true {
        out.push_str("note: a catalog refresh is still pending; the counts above may be stale\n");
    }
    out
}
