//! The stdio front: one MCP client on a line-delimited stream, as `mcprouter serve` runs
//! it. Requests run on a bounded pool of worker threads (a call may wait a long time for
//! the client's own answer to a sampling request, so the reader never blocks on one); the
//! client's notifications and answers are handled in order on the reader's thread. Replies
//! and events share one output, and what a backend sent before a result (progress, logs)
//! is written before that result.

use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::config::Config;
use crate::error::Result;
use crate::framing::{Line, read_line_limited};
use crate::jsonrpc::{self, Message};
use crate::{Router, Session};

/// Requests handled at once at least, and at most; in between, the sum of the backends'
/// in-flight caps, so a backend that stops answering cannot take every worker.
const MIN_CONCURRENT: usize = 256;
const MAX_CONCURRENT: usize = 4096;

/// Writes one whole message (a line, without its newline) to the client; false once the
/// client is gone. Called from several threads: each call must write its line whole.
pub type Output = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Serves one client on `input` and `output` until `input` ends, then lets the calls in
/// flight finish and shuts the router down.
///
/// The router is built from `config` once the client's first message is read: when it is
/// `initialize` (or a 2026-07-28 request, whose `_meta` declares them), the backends are
/// told the client's own capabilities, so a server offers
/// through the router what it would offer this client directly (see
/// [`RouterSettings::declare_for_single_client`](crate::config::RouterSettings::declare_for_single_client)).
/// `started` is then called with the router and those capabilities, if the first message was
/// `initialize` (to attach a metrics endpoint, or a reloader that applies them to each new
/// config, say); what it returns is dropped before the router shuts down.
pub fn serve<T>(
    mut config: Config,
    input: &mut impl BufRead,
    output: Output,
    started: impl FnOnce(&Router, Option<serde_json::Value>) -> T,
) -> Result<()> {
    let max = config.router.max_message_bytes;
    let cap = (config.backends.len() * config.router.queue_capacity + 64).clamp(MIN_CONCURRENT, MAX_CONCURRENT);
    let grace = Duration::from_millis(config.router.shutdown_grace_ms);
    let mut buf = Vec::new();
    let first = read_line_limited(input, &mut buf, max);
    let client_caps = match first {
        Ok(Line::Complete) => initialize_capabilities(&buf),
        _ => None,
    };
    if let Some(caps) = &client_caps {
        config.router.declare_for_single_client(caps);
    }
    let identity = config.serve_client.clone().unwrap_or_else(|| "stdio".into());
    let router = Router::new(config)?;
    let attached = started(&router, client_caps);
    let session = match router.session(Some(&identity)) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            drop(attached);
            router.shutdown(grace);
            return Err(e);
        }
    };
    // A reply is written under `order` after the events already queued (see `reply`), and
    // the pump takes events only under `order`.
    let order = Arc::new(Mutex::new(()));
    let pump = {
        let (s, order, out) = (Arc::clone(&session), Arc::clone(&order), Arc::clone(&output));
        std::thread::Builder::new().name("mcprouter-stdio-events".into()).spawn(move || {
            loop {
                if !s.wait_event(Duration::from_millis(200)) {
                    if s.next_event(Duration::ZERO).is_err() {
                        return;
                    }
                    continue;
                }
                let _order = order.lock();
                if !flush_events(&s, &out) {
                    return;
                }
            }
        })
    };

    let mut pool = Pool::new(Arc::clone(&session), Arc::clone(&order), Arc::clone(&output), cap);
    let mut first = Some(first);
    loop {
        let line = match first.take() {
            Some(line) => line,
            None => read_line_limited(input, &mut buf, max),
        };
        match line {
            Ok(Line::Eof) | Err(_) => break,
            Ok(Line::TooLong(prefix)) => {
                let msg = format!("Invalid Request: message exceeds the limit of {max} bytes");
                let id = jsonrpc::id_in_prefix(&prefix);
                output(&jsonrpc::error(id.as_deref(), jsonrpc::INVALID_REQUEST, &msg));
            }
            Ok(Line::Complete) => {
                let text = match String::from_utf8(std::mem::take(&mut buf)) {
                    Ok(t) if t.trim().is_empty() => continue,
                    Ok(t) => t,
                    Err(_) => {
                        output(&jsonrpc::error(None, jsonrpc::PARSE_ERROR, "Parse error: not UTF-8"));
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
                    reply(&session, &order, &output, &text);
                }
            }
        }
    }
    // Input ended: let calls in flight finish (each is bounded by its deadline), then stop.
    pool.finish();
    drop(attached);
    session.close();
    router.shutdown(grace);
    if let Ok(pump) = pump {
        let _ = pump.join();
    }
    Ok(())
}

/// The capabilities in `line` when it is an `initialize` request, or a 2026-07-28 client's
/// first request (its `server/discover` probe): what it declares in its `_meta`.
fn initialize_capabilities(line: &[u8]) -> Option<serde_json::Value> {
    let text = std::str::from_utf8(line).ok()?;
    match jsonrpc::parse(text) {
        Ok(Message::Request { method, params: Some(p), .. }) if method == "initialize" => {
            let v: serde_json::Value = serde_json::from_str(p.get()).ok()?;
            v.get("capabilities").filter(|c| c.is_object()).cloned()
        }
        Ok(Message::Request { params: Some(p), .. }) => match crate::era::read(Some(p)) {
            crate::era::Envelope::Modern(d) => Some(d.capabilities),
            _ => None,
        },
        _ => None,
    }
}

/// Writes every event queued for the client; false once the client is gone. The caller
/// holds the order lock.
fn flush_events(session: &Session, output: &Output) -> bool {
    while let Ok(Some(ev)) = session.next_event(Duration::ZERO) {
        if !output(&ev) {
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
    output: Output,
    cap: usize,
    tx: crossbeam_channel::Sender<String>,
    rx: crossbeam_channel::Receiver<String>,
    idle: Arc<AtomicUsize>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Pool {
    fn new(session: Arc<Session>, order: Arc<Mutex<()>>, output: Output, cap: usize) -> Pool {
        let (tx, rx) = crossbeam_channel::unbounded();
        Pool { session, order, output, cap, tx, rx, idle: Arc::new(AtomicUsize::new(0)), workers: Vec::new() }
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
            refuse(&self.output, &text, "router overloaded: too many requests in flight");
            return;
        }
        let (s, order, rx, idle) =
            (Arc::clone(&self.session), Arc::clone(&self.order), self.rx.clone(), Arc::clone(&self.idle));
        let out = Arc::clone(&self.output);
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
                    reply(&s, &order, &out, &job);
                    idle.fetch_add(1, Ordering::AcqRel);
                }
            });
        match spawned {
            Ok(h) => self.workers.push(h),
            Err(_) => {
                if let Ok(job) = self.rx.try_recv() {
                    refuse(&self.output, &job, "router overloaded: cannot start a thread");
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

fn reply(session: &Session, order: &Mutex<()>, output: &Output, text: &str) {
    if let Ok(Some(r)) = session.handle(text) {
        let _order = order.lock();
        if flush_events(session, output) {
            output(&r);
        }
    }
}

/// Answers every request in `text` (one message or a batch) with -32003 at once.
fn refuse(output: &Output, text: &str, why: &str) {
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
        output(&out);
    }
}
