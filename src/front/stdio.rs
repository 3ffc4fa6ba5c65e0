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
    input: &mut (impl BufRead + Send),
    output: Output,
    started: impl FnOnce(&Router, Option<serde_json::Value>) -> T,
) -> Result<()> {
    let max = config.router.max_message_bytes;
    let cap = (config.backends.len() * config.router.queue_capacity + 64).clamp(MIN_CONCURRENT, MAX_CONCURRENT);
    let grace = Duration::from_millis(config.router.shutdown_grace_ms);
    let mut buf = Vec::new();
    let first = read_line_limited(&mut *input, &mut buf, max);
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

    let reading = Mutex::new(Reading { input, buf, first: Some(first), max, done: false });
    let ctx = Ctx {
        session: &session,
        order: &order,
        output: &output,
        reading: &reading,
        cap,
        threads: AtomicUsize::new(1),
        waiting: AtomicUsize::new(1),
    };
    // This thread is the first reader; the calls in flight finish before the scope ends.
    std::thread::scope(|scope| serve_thread(scope, &ctx));
    // Input ended: let calls in flight finish (each is bounded by its deadline), then stop.
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

/// Idle threads wait this long to become the reader before leaving.
const IDLE: Duration = Duration::from_secs(30);

/// The input and what was read from it; its lock makes a thread the reader.
struct Reading<'i, R> {
    input: &'i mut R,
    buf: Vec<u8>,
    /// The first line, read before the router started.
    first: Option<std::io::Result<Line>>,
    max: usize,
    /// The input ended: every thread leaves once it holds the lock.
    done: bool,
}

/// What the serving threads share.
struct Ctx<'a, 'i, R> {
    session: &'a Session,
    order: &'a Mutex<()>,
    output: &'a Output,
    reading: &'a Mutex<Reading<'i, R>>,
    cap: usize,
    /// Threads alive.
    threads: AtomicUsize,
    /// Threads waiting to become the reader (the reader itself not counted).
    waiting: AtomicUsize,
}

/// One serving thread, leader/follower: whoever holds the input lock reads; the client's
/// notifications and answers are handled in order under it; a request is handled by the
/// thread that read it, once it has handed the reading on to a waiting thread (spawning
/// one if none waits). So the request's path has no hand-off between threads, and the
/// reader never blocks on a call (a call may wait long for the client's own answer to a
/// sampling request, which must still be read). Past `cap` threads a request is refused at
/// once with -32003. Threads that wait `IDLE` leave, but never the last one waiting.
fn serve_thread<'s, 'a: 's, 'i: 's, R: BufRead + Send>(scope: &'s std::thread::Scope<'s, '_>, ctx: &'s Ctx<'a, 'i, R>) {
    loop {
        let mut reading = loop {
            if let Some(r) = ctx.reading.try_lock_for(IDLE) {
                break r;
            }
            if ctx.waiting.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n > 1).then(|| n - 1)).is_ok() {
                ctx.threads.fetch_sub(1, Ordering::AcqRel);
                return;
            }
        };
        ctx.waiting.fetch_sub(1, Ordering::AcqRel);
        let Some(text) = read_request(&mut reading, ctx, scope) else {
            return;
        };
        drop(reading);
        reply(ctx.session, ctx.order, ctx.output, &text);
        ctx.waiting.fetch_add(1, Ordering::AcqRel);
    }
}

/// Reads until a request that this thread may handle (another thread now waits to read),
/// handling everything else in place; `None` once the input has ended.
fn read_request<'s, 'a: 's, 'i: 's, R: BufRead + Send>(
    r: &mut Reading<'i, R>,
    ctx: &'s Ctx<'a, 'i, R>,
    scope: &'s std::thread::Scope<'s, '_>,
) -> Option<String> {
    let max = r.max;
    loop {
        if r.done {
            return None;
        }
        let line = match r.first.take() {
            Some(line) => line,
            None => read_line_limited(&mut *r.input, &mut r.buf, max),
        };
        match line {
            Ok(Line::Eof) | Err(_) => {
                r.done = true;
                return None;
            }
            Ok(Line::TooLong(prefix)) => {
                let msg = format!("Invalid Request: message exceeds the limit of {max} bytes");
                let id = jsonrpc::id_in_prefix(&prefix);
                (ctx.output)(&jsonrpc::error(id.as_deref(), jsonrpc::INVALID_REQUEST, &msg));
            }
            Ok(Line::Complete) => {
                let text = match std::str::from_utf8(&r.buf) {
                    Ok(t) if t.trim().is_empty() => continue,
                    Ok(t) => t,
                    Err(_) => {
                        (ctx.output)(&jsonrpc::error(None, jsonrpc::PARSE_ERROR, "Parse error: not UTF-8"));
                        continue;
                    }
                };
                let is_request = jsonrpc::is_batch(text) || matches!(jsonrpc::parse(text), Ok(Message::Request { .. }));
                if !is_request {
                    reply(ctx.session, ctx.order, ctx.output, text);
                    continue;
                }
                if ctx.waiting.load(Ordering::Acquire) > 0 || spawn_reader(ctx, scope) {
                    return String::from_utf8(std::mem::take(&mut r.buf)).ok();
                }
                refuse(ctx.output, text, "router overloaded: too many requests in flight");
            }
        }
    }
}

/// Starts a thread that waits to read; false at the cap or when it cannot start.
fn spawn_reader<'s, 'a: 's, 'i: 's, R: BufRead + Send>(
    ctx: &'s Ctx<'a, 'i, R>,
    scope: &'s std::thread::Scope<'s, '_>,
) -> bool {
    if ctx.threads.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < ctx.cap).then_some(n + 1)).is_err() {
        return false;
    }
    ctx.waiting.fetch_add(1, Ordering::AcqRel);
    let spawned = std::thread::Builder::new()
        .name("mcprouter-serve".into())
        .stack_size(512 * 1024)
        .spawn_scoped(scope, move || serve_thread(scope, ctx));
    if spawned.is_err() {
        ctx.waiting.fetch_sub(1, Ordering::AcqRel);
        ctx.threads.fetch_sub(1, Ordering::AcqRel);
        return false;
    }
    true
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
