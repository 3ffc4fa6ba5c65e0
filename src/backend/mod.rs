//! One backend MCP server: its state, its pending calls, and the call path towards it.
//!
//! Threads per stdio backend (see `stdio.rs`): a writer fed by a bounded channel, a reader
//! of stdout that completes pending calls and hands everything unsolicited to the hub, and a
//! drain of stderr into the log. Callers register a pending entry, then either write their
//! own line (stdio, when nothing is queued and the write cannot block: `life::Inline`) or
//! `try_send` it to the writer, and wait on their own one-shot slot until the deadline.

mod handshake;
mod http;
mod legacy;
mod life;
#[cfg(test)]
mod memory;
mod modern_http;
mod process;
mod spin;
mod sse;
mod stdio;
mod ws;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::TrySendError;
use parking_lot::Mutex;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::breaker::SharedBreaker;
use crate::catalog::{self, Item, Lists};
use crate::config::{BackendConfig, EraSetting, HealthPolicy, RouterSettings, Transport};
use crate::era::{self, Era};
use crate::hub::{CallerGuard, Hub};
use crate::jsonrpc::{self, Message};
use crate::method::Method;
use crate::pending::{Filler, PendingMap, Waited, Waiter, slot};
use crate::redact::Redactor;
use crate::supervisor::{Health, Restarts};

pub(crate) use life::State;
use life::{Connection, Life, Link, Phase, Sender};
use spin::ReplyTimes;

/// Stack size of a backend's threads: they parse JSON, never recurse deeply.
const THREAD_STACK: usize = 256 * 1024;

/// Protocol versions the router accepts from a backend, newest first.
pub(crate) const SUPPORTED_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// What a transport is asked to carry. Typed, so no transport re-parses what the router
/// already knew (HTTP needs the call's id and whether it is the handshake).
pub(crate) enum Command {
    /// A request under the router's id `id`; `line` is the whole message, without newline.
    Call { id: u64, method: Method, line: String },
    /// A notification.
    Notify { method: Method, line: String },
    /// The answer to a request the backend sent.
    Respond(String),
    /// Close the stream and stop.
    Shutdown,
}

impl Command {
    /// The message to write, or `None` for `Shutdown`.
    pub(crate) fn into_line(self) -> Option<String> {
        match self {
            Command::Call { line, .. } | Command::Notify { line, .. } | Command::Respond(line) => Some(line),
            Command::Shutdown => None,
        }
    }
}

/// What `halt` needs from a running network transport.
pub(crate) trait Net: Send + Sync {
    /// Stops for good: nothing more is dispatched, and the server is told when it has a
    /// way to hear it (Streamable HTTP: `DELETE` of the session). Must not block long.
    fn stop(&self);
    /// Streamable HTTP under `transport: auto`: the server refused the first POST in the
    /// way that means "legacy HTTP+SSE only".
    fn wants_legacy(&self) -> bool {
        false
    }
}

/// A call waiting for its reply.
pub(crate) struct PendingCall {
    reply: Filler<Reply>,
}

/// How a pending call ended, as seen by the thread that completes it.
pub(crate) enum Reply {
    Ok(Box<RawValue>),
    Err(Box<RawValue>),
    /// The backend died or sent something unusable for this call.
    Failed(String),
}

/// Why a call produced no backend reply.
#[derive(Debug)]
pub(crate) enum CallError {
    Unavailable(String),
    Overloaded,
    Timeout,
    /// The pending entry was taken by a cancellation.
    Cancelled,
}

impl CallError {
    pub(crate) fn to_error_object(&self, backend: &str) -> String {
        match self {
            CallError::Unavailable(why) => jsonrpc::error_object(
                jsonrpc::BACKEND_UNAVAILABLE,
                &format!("backend {backend:?} is unavailable: {why}"),
            ),
            CallError::Overloaded => jsonrpc::error_object(
                jsonrpc::OVERLOADED,
                &format!("backend {backend:?} is overloaded (its queue is full); try again later"),
            ),
            CallError::Timeout => {
                jsonrpc::error_object(jsonrpc::REQUEST_TIMEOUT, &format!("request to backend {backend:?} timed out"))
            }
            CallError::Cancelled => jsonrpc::error_object(jsonrpc::REQUEST_TIMEOUT, "request cancelled"),
        }
    }
}

/// When a call gives up: a soft deadline that progress notifications push forward (each
/// by the call's timeout), never beyond the hard one.
pub(crate) struct Deadline {
    pub soft: Instant,
    pub hard: Instant,
    /// Last progress (nanoseconds after `base`; 0 = none yet), the base, and the extension.
    pub activity: Option<(Arc<AtomicU64>, Instant, Duration)>,
}

impl Deadline {
    pub(crate) fn fixed(at: Instant) -> Deadline {
        Deadline { soft: at, hard: at, activity: None }
    }

    pub(crate) fn current(&self) -> Instant {
        let mut d = self.soft;
        if let Some((last, base, extend)) = &self.activity {
            let n = last.load(Ordering::Acquire);
            if n > 0 {
                d = d.max(*base + Duration::from_nanos(n) + *extend);
            }
        }
        d.min(self.hard)
    }
}

/// A call in flight: its id towards the backend and where its reply arrives.
pub(crate) struct Ticket {
    pub id: u64,
    rx: Waiter<Reply>,
    started: Instant,
    /// Counts the call towards its session until the ticket is done with.
    _caller: Option<CallerGuard>,
}

/// What one listing may still take: items per kind, bytes for the whole catalog.
struct Budget {
    max_items: usize,
    max_bytes: usize,
    bytes_left: usize,
}

/// Why a listing did not produce lists.
enum ListError {
    /// A cap was crossed: the listing is refused, not retried with what came so far.
    OverCap(String),
    Failed(String),
}

/// A snapshot of the backend for status and routing: its state, its process, and the facts
/// the handshake told us (with `last_error` the reason of a `Failed` phase).
#[derive(Debug, Clone)]
pub(crate) struct Info {
    pub state: State,
    pub pid: Option<u32>,
    pub facts: life::Facts,
}

pub(crate) struct Backend {
    /// A router-unique id, never reused (not a position: reloads add and remove backends).
    pub id: usize,
    pub config: BackendConfig,
    max_message_bytes: usize,
    queue_capacity: usize,
    pub timeout: Duration,
    pub hub: Arc<Hub>,
    pub pending: PendingMap<PendingCall>,
    /// How long this backend's answers take, to decide whether a caller spins (spin.rs).
    replies: ReplyTimes,
    /// The one answer to "is it up, may I send, what is its pid" (see `life.rs`). Calls are
    /// entered in `pending` under this lock, so a connection that ends fails every call it
    /// had and none slips in after.
    life: Mutex<Life>,
    /// For `transport: auto`, what the first start found out.
    resolved: Mutex<Option<Transport>>,
    /// The longest one client call may take (router `max_call_ms`, at least `timeout`): the
    /// bound on one HTTP exchange.
    pub max_call: Duration,
    pub lists: Mutex<Option<Arc<Lists>>>,
    /// `list_changed` notifications received, and how many of them the dispatcher has
    /// turned into a refresh: a refresh is owed while they differ. Counting instead of
    /// queueing one event per notification means a flood of them cannot fill the
    /// dispatcher's queue (and crowd out `Down`), and none is lost when it is full.
    pub(crate) refresh_asked: AtomicU64,
    pub(crate) refresh_seen: AtomicU64,
    /// Why the last listing was refused (a catalog cap crossed); `None` once one is accepted.
    pub catalog_error: Mutex<Option<String>>,
    /// Per-kind item cap and whole-catalog byte cap for this backend's lists.
    catalog_caps: (usize, usize),
    pub breaker: SharedBreaker,
    pub health: Mutex<Health>,
    health_policy: HealthPolicy,
    client_capabilities: Value,
    pub restarts: Mutex<Restarts>,
    /// Held while starting or stopping (long operations, so not the `life` lock), so a
    /// restart and a shutdown never interleave.
    lifecycle: Mutex<()>,
    /// Unit tests: connect to this in-process server instead of the configured transport.
    #[cfg(test)]
    memory: Mutex<Option<memory::Server>>,
    /// Masks this backend's secrets (url userinfo, headers, env) in error text bound for
    /// clients: `last_error` and failed calls.
    redactor: Redactor,
}

impl Backend {
    pub(crate) fn new(id: usize, config: BackendConfig, settings: &RouterSettings, hub: Arc<Hub>) -> Backend {
        let timeout = Duration::from_millis(config.timeout_ms.unwrap_or(settings.request_timeout_ms));
        let redactor = crate::logging::backend_redactor(&config);
        let catalog_caps = (
            config.max_catalog_items.unwrap_or(settings.max_catalog_items),
            config.max_catalog_bytes.unwrap_or(settings.max_catalog_bytes),
        );
        Backend {
            id,
            config,
            max_message_bytes: settings.max_message_bytes,
            queue_capacity: settings.queue_capacity,
            timeout,
            hub,
            pending: PendingMap::new(),
            replies: ReplyTimes::new(Duration::from_micros(settings.spin_us.unwrap_or(crate::config::DEFAULT_SPIN_US))),
            life: Mutex::new(Life::new()),
            resolved: Mutex::new(None),
            max_call: Duration::from_millis(settings.max_call_ms).max(timeout),
            lists: Mutex::new(None),
            refresh_asked: AtomicU64::new(0),
            refresh_seen: AtomicU64::new(0),
            catalog_error: Mutex::new(None),
            catalog_caps,
            breaker: SharedBreaker::new(settings.breaker.clone()),
            health: Mutex::new(Health::default()),
            health_policy: settings.health.clone(),
            client_capabilities: settings.declared_client_capabilities(),
            restarts: Mutex::new(Restarts::default()),
            lifecycle: Mutex::new(()),
            #[cfg(test)]
            memory: Mutex::new(None),
            redactor,
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.config.name
    }

    /// The transport in use: for `auto`, what the first start found (until then `auto`).
    pub(crate) fn transport(&self) -> Transport {
        self.resolved.lock().unwrap_or_else(|| self.config.transport())
    }

    pub(crate) fn is_ready(&self) -> bool {
        matches!(self.life.lock().phase, Phase::Ready { .. })
    }

    pub(crate) fn info(&self) -> Info {
        let life = self.life.lock();
        let mut facts = life.facts.clone();
        if let Phase::Failed { why, .. } = &life.phase {
            facts.last_error = Some(why.clone());
        }
        Info { state: life.phase.state(), pid: life.phase.conn().and_then(Connection::pid), facts }
    }

    /// The era its last handshake settled on.
    pub(crate) fn era(&self) -> Era {
        self.life.lock().facts.era
    }

    pub(crate) fn queue_depth(&self) -> usize {
        self.life.lock().phase.conn().map_or(0, |c| c.tx.len())
    }

    /// Starts the process, runs the MCP handshake and lists everything, all within
    /// `init_timeout`. On failure the backend is left `Failed` with its child reaped.
    /// Returns whether it came up.
    pub(crate) fn start(self: &Arc<Self>, init_timeout: Duration) -> bool {
        let _life = self.lifecycle.lock();
        self.start_locked(init_timeout)
    }

    /// Replaces a backend that exited: reaps what is left of it and starts it again.
    pub(crate) fn restart(self: &Arc<Self>, init_timeout: Duration) -> bool {
        let _life = self.lifecycle.lock();
        self.halt(Duration::from_millis(100));
        *self.health.lock() = Health::default();
        self.restarts.lock().attempted();
        log::info!(target: "mcprouter::backend", "[{}] restarting", self.name());
        self.start_locked(init_timeout)
    }

    fn start_locked(self: &Arc<Self>, init_timeout: Duration) -> bool {
        let began = Instant::now();
        let deadline = began + init_timeout;
        let generation = {
            let mut life = self.life.lock();
            if matches!(life.phase, Phase::Stopped) {
                return false;
            }
            life.generation += 1;
            life.phase = Phase::Starting { generation: life.generation, conn: None };
            life.generation
        };
        let link = Link::new(Arc::clone(self), generation);
        match self.connect(&link, deadline) {
            Ok(()) => {
                {
                    let mut life = self.life.lock();
                    if !matches!(life.phase, Phase::Starting { generation: g, conn: Some(_) } if g == generation) {
                        return false;
                    }
                    let Some(conn) = life.phase.take_conn() else { return false };
                    life.phase = Phase::Ready { generation, conn };
                    life.facts.handshake = Some(began.elapsed());
                    life.facts.last_error = None;
                }
                self.restarts.lock().up(Instant::now());
                if let Err(e) = self.refresh_lists(deadline.max(Instant::now() + self.timeout)) {
                    log::warn!(target: "mcprouter::backend", "[{}] listing failed: {e}", self.name());
                }
                true
            }
            Err(e) => {
                log::error!(target: "mcprouter::backend", "[{}] failed to start: {e}", self.name());
                self.fail(generation, &e);
                self.halt(Duration::from_millis(200));
                false
            }
        }
    }

    /// Hands a transport's new connection to the phase, unless the backend was stopped
    /// meanwhile (the connection is then stopped: dropped, it cleans up).
    fn attach(&self, generation: u64, conn: Connection) -> Result<(), String> {
        let mut life = self.life.lock();
        match &mut life.phase {
            Phase::Starting { generation: g, conn: slot } if *g == generation => {
                *slot = Some(conn);
                Ok(())
            }
            _ => Err("stopped while connecting".into()),
        }
    }

    /// Starts the transport and runs the handshake over it. `auto` tries Streamable HTTP and
    /// falls back to legacy HTTP+SSE when the server refuses the first POST with 400, 404 or
    /// 405; the answer is remembered for restarts.
    fn connect(&self, link: &Link, deadline: Instant) -> Result<(), String> {
        let generation = link.generation();
        #[cfg(test)]
        if let Some(server) = self.memory.lock().clone() {
            self.attach(generation, memory::spawn(link, server)?)?;
            return self.handshake(deadline, self.transport());
        }
        let transport = self.resolved.lock().unwrap_or_else(|| self.config.transport());
        let spawned = match transport {
            Transport::Stdio => stdio::spawn(link),
            Transport::StreamableHttp => http::spawn(link, false),
            Transport::Sse => legacy::spawn(link, deadline),
            Transport::Websocket => ws::spawn(link),
            Transport::Auto => http::spawn(link, true),
        };
        self.attach(generation, spawned?)?;
        let first = self.handshake(deadline, transport);
        if transport != Transport::Auto || first.is_ok() {
            if transport == Transport::Auto {
                *self.resolved.lock() = Some(Transport::StreamableHttp);
            }
            return first;
        }
        let legacy = {
            let life = self.life.lock();
            life.phase.conn().and_then(|c| c.net.as_ref()).is_some_and(|n| n.wants_legacy())
        };
        if !legacy {
            return first;
        }
        log::info!(target: "mcprouter::backend", "[{}] no Streamable HTTP here; trying legacy HTTP+SSE", self.name());
        let stale = self.life.lock().phase.take_conn();
        if let Some(c) = stale {
            c.stop(Duration::from_millis(200));
        }
        self.pending_failed("the transport was replaced");
        self.attach(generation, legacy::spawn(link, deadline)?)?;
        self.handshake(deadline, Transport::Sse)?;
        *self.resolved.lock() = Some(Transport::Sse);
        Ok(())
    }

    /// Handles one message the backend sent: completes the pending call it answers, or
    /// hands it to the hub (notifications, server-to-client requests). Every transport's
    /// reader calls this. Returns the id of the call a response completed.
    pub(crate) fn dispatch(&self, text: &str) -> Option<u64> {
        match jsonrpc::parse(text) {
            Ok(Message::Response { id, outcome }) => {
                let Ok(n) = id.get().parse::<u64>() else {
                    // The end of a listen the router opened on a modern server (it ends with the connection).
                    if id.get().starts_with("\"mcprouter-listen") || id.get().starts_with("\"mcprouter-sub:") {
                        log::debug!(target: "mcprouter::backend", "[{}] listen {} ended", self.name(), id.get());
                        return None;
                    }
                    log::warn!(target: "mcprouter::backend", "[{}] reply to an id the router never sent: {}", self.name(), id.get());
                    return None;
                };
                let reply = match outcome {
                    Ok(r) => Reply::Ok(r.to_owned()),
                    Err(e) => Reply::Err(e.to_owned()),
                };
                self.complete(n, reply);
                Some(n)
            }
            Ok(msg) => {
                self.hub.received(self, msg);
                None
            }
            Err(inv) => {
                let shown: String = text.chars().take(200).collect();
                log::warn!(target: "mcprouter::backend", "[{}] sent an invalid message ({}): {shown}", self.name(), inv.message);
                None
            }
        }
    }

    /// Whether calls may be routed here now, judged without reserving anything (a breaker
    /// is only peeked: lesson 3 in docs/lessons.md).
    pub(crate) fn routable(&self) -> bool {
        self.is_ready()
            && self.health.lock().is_healthy()
            && !matches!(self.breaker.peek(), crate::breaker::BreakerState::Open { .. })
    }

    /// Records a call's outcome for passive health checking.
    pub(crate) fn observe(&self, ok: bool) {
        let mut h = self.health.lock();
        if ok {
            h.success();
        } else if h.failure(&self.health_policy, Instant::now()) {
            log::warn!(target: "mcprouter::backend", "[{}] unhealthy after {} consecutive failures", self.name(), h.failures());
        }
    }

    /// Sends a request and waits for its reply until `deadline`. On expiry the backend is
    /// told `notifications/cancelled`.
    pub(crate) fn call(
        &self,
        method: &str,
        params: Option<&str>,
        session: u64,
        deadline: Instant,
    ) -> Result<Result<Box<RawValue>, Box<RawValue>>, CallError> {
        let ticket = self.start_call(method, params, session)?;
        self.finish_call(ticket, &Deadline::fixed(deadline))
    }

    /// Registers a pending call and queues its line; never blocks.
    pub(crate) fn start_call(&self, method: &str, params: Option<&str>, session: u64) -> Result<Ticket, CallError> {
        // The sender is taken and the call entered under the `life` lock: a call that races
        // a restart goes to the old, stopped writer and fails, rather than reaching the new
        // process before its `initialize`; one that races the connection's end is failed by
        // it, never left waiting out its deadline.
        let (reply, rx) = slot();
        // Calls in flight are bounded per backend as well as queued ones (a backend that
        // stops reading holds at most this many callers); the router's own calls are not.
        let max = if session != 0 { self.queue_capacity } else { usize::MAX };
        let ((tx, inline), id, era) = {
            let life = self.life.lock();
            let tx = match &life.phase {
                Phase::Ready { conn, .. } => (conn.tx.clone(), conn.inline.clone()),
                Phase::Starting { conn: Some(conn), .. } if method == "initialize" || method == "server/discover" => {
                    (conn.tx.clone(), conn.inline.clone())
                }
                Phase::Stopped => return Err(CallError::Unavailable("the router is shutting down".into())),
                Phase::Failed { why, .. } => return Err(CallError::Unavailable(why.clone())),
                Phase::Starting { .. } => return Err(CallError::Unavailable("it is starting".into())),
            };
            match self.pending.try_insert_bounded(PendingCall { reply }, max) {
                // The handshakes name their era; a restart's facts are the previous life's.
                Ok(id) => (
                    tx,
                    id,
                    match method {
                        "server/discover" => Era::Modern,
                        "initialize" => Era::Legacy,
                        _ => life.facts.era,
                    },
                ),
                Err((_, true)) => return Err(CallError::Overloaded),
                Err((_, false)) => return Err(CallError::Unavailable("it is down".into())),
            }
        };
        // Counted before the line goes out, so a request the backend sends about this call
        // finds the call in flight.
        let caller = (session != 0).then(|| Hub::call_started(&self.hub, self.id, session));
        // Each era gets the envelope it needs (a modern backend: the caller's facts).
        let params = era::params_for(era, params, &self.client_capabilities);
        let line = jsonrpc::request_numbered(id, method, params.as_deref());
        let started = Instant::now();
        // With nothing queued and the pipe free, the caller writes its own line: one thread
        // hand-off fewer per call. Otherwise (contention, a long line, a child that has not
        // read what it was sent) the writer thread takes it.
        if let Some(inline) = &inline
            && inline.try_write(id, &line)
        {
            return Ok(Ticket { id, rx, started, _caller: caller });
        }
        // The router's own calls (handshake, discovery) wait for room; a client's call is
        // refused at once when the queue is full, so overload is visible, never a hang.
        let wait = (session == 0).then(|| Instant::now() + self.timeout);
        let cmd = Command::Call { id, method: Method::parse(method), line };
        match Self::send_on(Some(&tx), inline.as_deref(), cmd, wait) {
            Ok(()) => Ok(Ticket { id, rx, started, _caller: caller }),
            Err(e) => {
                self.pending.take(id);
                Err(e)
            }
        }
    }

    /// Waits for a started call. Exactly one of the reader, a cancellation, the backend's
    /// death or this timeout takes the pending entry, so a late reply is dropped, not lost
    /// into someone else's call.
    pub(crate) fn finish_call(
        &self,
        ticket: Ticket,
        deadline: &Deadline,
    ) -> Result<Result<Box<RawValue>, Box<RawValue>>, CallError> {
        if let Some(spin) = self.replies.spin_until(ticket.started) {
            let how = ticket.rx.spin(spin.until.min(deadline.current()));
            self.replies.spun(how, Instant::now());
        }
        let reply = loop {
            match ticket.rx.wait(Some(deadline.current())) {
                Ok(r) => break r,
                // Progress moved the deadline: keep waiting.
                Err(Waited::TimedOut) if deadline.current() > Instant::now() => continue,
                Err(Waited::TimedOut) => {
                    if self.pending.take(ticket.id).is_some() {
                        self.cancel_on_backend(ticket.id, "timed out");
                        return Err(CallError::Timeout);
                    }
                    // Taken by another path between the timeout and the take (the reader, a
                    // cancellation, the connection's end): whoever took the entry fills the
                    // slot or drops its filler, so this wait ends at once either way.
                    match ticket.rx.wait(None) {
                        Ok(r) => break r,
                        Err(_) => return Err(CallError::Cancelled),
                    }
                }
                Err(Waited::Abandoned) => return Err(CallError::Cancelled),
            }
        };
        self.replies.observe(ticket.started.elapsed());
        match reply {
            Reply::Ok(r) => Ok(Ok(r)),
            Reply::Err(e) => Ok(Err(e)),
            Reply::Failed(why) => Err(CallError::Unavailable(self.redactor.redact(&why).into_owned())),
        }
    }

    /// Abandons a call the client cancelled and tells the backend.
    pub(crate) fn cancel(&self, id: u64, reason: &str) {
        if self.pending.take(id).is_some() {
            self.cancel_on_backend(id, reason);
        }
    }

    fn cancel_on_backend(&self, id: u64, reason: &str) {
        let params = format!("{{\"requestId\":{id},\"reason\":{}}}", jsonrpc::quote(reason));
        // Never waits: a backend whose queue is full is not reading, and a caller giving up
        // on it must not be held up telling it so.
        let line = jsonrpc::notification("notifications/cancelled", Some(&params));
        let _ = self.send(Command::Notify { method: Method::NotificationsCancelled, line }, None);
    }

    /// Sends a notification; an error says why it could not be queued.
    pub(crate) fn notify(&self, method: &str, params: Option<&str>) -> Result<(), String> {
        let line = jsonrpc::notification(method, params);
        let wait = Instant::now() + Duration::from_millis(500);
        self.send(Command::Notify { method: Method::parse(method), line }, Some(wait)).map_err(|e| format!("{e:?}"))
    }

    /// Sends the answer to a request the backend sent (`line` is the whole response).
    pub(crate) fn respond(&self, line: String) -> Result<(), String> {
        let wait = Instant::now() + Duration::from_millis(500);
        self.send(Command::Respond(line), Some(wait)).map_err(|e| format!("{e:?}"))
    }

    fn send(&self, cmd: Command, wait_until: Option<Instant>) -> Result<(), CallError> {
        let (tx, inline) = self.life.lock().phase.conn().map(|c| (c.tx.clone(), c.inline.clone())).unzip();
        Self::send_on(tx.as_ref(), inline.flatten().as_deref(), cmd, wait_until)
    }

    fn send_on(
        tx: Option<&Sender<Command>>,
        inline: Option<&dyn life::Inline>,
        cmd: Command,
        wait_until: Option<Instant>,
    ) -> Result<(), CallError> {
        let Some(tx) = tx else {
            return Err(CallError::Unavailable("not running".into()));
        };
        // Counted before it is queued: a caller writing its own line must see it ahead.
        if let Some(i) = inline {
            i.queued(1);
        }
        let sent = Self::queue(tx, cmd, wait_until);
        if let (Err(_), Some(i)) = (&sent, inline) {
            i.queued(-1);
        }
        sent
    }

    fn queue(tx: &Sender<Command>, cmd: Command, wait_until: Option<Instant>) -> Result<(), CallError> {
        let full = match wait_until {
            None => match tx.try_send(cmd) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(_)) => true,
                Err(TrySendError::Disconnected(_)) => false,
            },
            Some(t) => match tx.send_deadline(cmd, t) {
                Ok(()) => return Ok(()),
                Err(crossbeam_channel::SendTimeoutError::Timeout(_)) => true,
                Err(crossbeam_channel::SendTimeoutError::Disconnected(_)) => false,
            },
        };
        if full { Err(CallError::Overloaded) } else { Err(CallError::Unavailable("its writer has stopped".into())) }
    }

    /// Completes the pending call `id` (called by the reader).
    pub(crate) fn complete(&self, id: u64, reply: Reply) {
        if let Some(p) = self.pending.take(id) {
            let _ = p.reply.fill(reply);
        }
    }

    /// The start of `generation` failed: the backend is `Failed` with the reason, and its
    /// calls fail at once.
    fn fail(&self, generation: u64, why: &str) {
        let why = self.redactor.redact(why).into_owned();
        {
            let mut life = self.life.lock();
            if !life.phase.live(generation) {
                return;
            }
            let leftover = life.phase.take_conn();
            life.phase = Phase::Failed { why: why.clone(), leftover };
            life.facts.last_error = Some(why.clone());
        }
        self.pending_failed(&why);
    }

    /// A connection's threads found it ended (see `Link::on_exit`). Unless it was already
    /// replaced or being stopped, the backend is `Failed` and the supervisor hears of it.
    fn connection_ended(&self, generation: u64, why: String) {
        let why = self.redactor.redact(&why).into_owned();
        let live = self.life.lock().phase.live(generation);
        if live {
            log::error!(target: "mcprouter::backend", "[{}] {why}", self.name());
            self.fail(generation, &why);
            self.hub.backend_down(self.id);
        }
    }

    /// Fails every call in flight: their connection is gone.
    fn pending_failed(&self, why: &str) {
        for (_, p) in self.pending.drain() {
            let _ = p.reply.fill(Reply::Failed(why.to_owned()));
        }
    }

    /// Stops for good (router shutdown): no call or restart follows.
    pub(crate) fn stop(&self, grace: Duration) {
        let conn = {
            let mut life = self.life.lock();
            let conn = life.phase.take_conn();
            life.phase = Phase::Stopped;
            conn
        };
        self.pending_failed("the router is shutting down");
        if let Some(c) = conn {
            c.stop(grace);
        }
        // A start in progress sees `Stopped` and stops its own connection; wait for it.
        let _life = self.lifecycle.lock();
    }

    /// Stops whatever connection the backend holds (a restart's leftover, a failed start),
    /// leaving the phase's name as it is.
    fn halt(&self, grace: Duration) {
        let conn = self.life.lock().phase.take_conn();
        if let Some(c) = conn {
            c.stop(grace);
        }
    }

    /// The child's exit status, if it has exited (waiting for it briefly: the reader sees
    /// EOF a moment before the process is reapable).
    pub(crate) fn exit_status(&self) -> Option<String> {
        let end = Instant::now() + Duration::from_millis(100);
        loop {
            if let Some(st) = self.life.lock().exit_status() {
                return Some(st);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// The hub's view of a backend (see `hub::Peer`).
impl crate::hub::Peer for Backend {
    fn id(&self) -> usize {
        self.id
    }

    fn name(&self) -> &str {
        Backend::name(self)
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn respond(&self, line: String) -> Result<(), String> {
        Backend::respond(self, line)
    }

    fn ask_refresh(&self) -> bool {
        let before = self.refresh_asked.fetch_add(1, Ordering::AcqRel);
        before == self.refresh_seen.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend on an in-memory server answering `initialize`, `tools/list` and
    /// `tools/call` (echoing its arguments); a call to the tool `hang` gets no answer, and one
    /// to `leave` ends the connection.
    fn in_memory() -> Arc<Backend> {
        let config = crate::config::Config::from_yaml("backends:\n  - name: m\n    command: unused\n").expect("config");
        let (events, _) = crossbeam_channel::unbounded();
        let b = Arc::new(Backend::new(0, config.backends[0].clone(), &config.router, Arc::new(Hub::new(events))));
        let server: memory::Server = Arc::new(|line: &str| {
            let v: Value = serde_json::from_str(line).ok()?;
            let Some(id) = v.get("id").filter(|_| v.get("method").is_some()) else { return Some(Vec::new()) };
            let result = match v["method"].as_str() {
                Some("initialize") => serde_json::json!({"protocolVersion": "2025-11-25",
                    "capabilities": {"tools": {}}, "serverInfo": {"name": "mem", "version": "1"}}),
                Some("tools/list") => {
                    serde_json::json!({"tools": [{"name": "echo", "inputSchema": {"type": "object"}}]})
                }
                Some("tools/call") if v["params"]["name"] == "hang" => return Some(Vec::new()),
                Some("tools/call") if v["params"]["name"] == "leave" => return None,
                Some("tools/call") => {
                    serde_json::json!({"content": [{"type": "text", "text": v["params"]["arguments"].to_string()}]})
                }
                _ => serde_json::json!({}),
            };
            Some(vec![serde_json::json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string()])
        });
        *b.memory.lock() = Some(server);
        b
    }

    fn call(b: &Backend, tool: &str) -> Result<Result<Box<RawValue>, Box<RawValue>>, CallError> {
        let params = format!("{{\"name\":\"{tool}\",\"arguments\":{{\"x\":1}}}}");
        b.call("tools/call", Some(&params), 0, Instant::now() + Duration::from_secs(30))
    }

    #[test]
    fn a_backend_comes_up_over_the_in_memory_transport_and_answers() {
        let b = in_memory();
        assert!(b.start(Duration::from_secs(5)));
        assert_eq!(b.info().state, State::Ready);
        assert_eq!(b.lists.lock().as_ref().map(|l| l.tools.len()), Some(1), "listed after the handshake");
        let r = call(&b, "echo").expect("an answer").expect("a result");
        assert!(r.get().contains("{\\\"x\\\":1}"), "{}", r.get());
        b.stop(Duration::ZERO);
    }

    #[test]
    fn a_connection_that_ends_fails_its_calls_at_once_and_the_backend() {
        let b = in_memory();
        assert!(b.start(Duration::from_secs(5)));
        let waiting = b.start_call("tools/call", Some(r#"{"name":"hang"}"#), 0).expect("sent");
        // The server goes away while `hang` waits: the waiting call fails now, not at its deadline.
        assert!(matches!(call(&b, "leave"), Err(CallError::Unavailable(_))));
        let r = b.finish_call(waiting, &Deadline::fixed(Instant::now() + Duration::from_secs(3600)));
        assert!(matches!(r, Err(CallError::Unavailable(_))), "failed at once");
        assert_eq!(b.info().state, State::Failed);
        assert!(matches!(call(&b, "echo"), Err(CallError::Unavailable(_))), "no call enters a failed backend");
        b.stop(Duration::ZERO);
    }

    #[test]
    fn a_replaced_connection_cannot_take_down_its_successor() {
        let b = in_memory();
        assert!(b.start(Duration::from_secs(5)));
        let old = Link::new(Arc::clone(&b), b.life.lock().generation);
        assert!(b.restart(Duration::from_secs(5)), "a new connection, a new generation");
        old.on_exit("a late report from the old connection's thread".into());
        assert_eq!(b.info().state, State::Ready);
        assert!(call(&b, "echo").is_ok());
        b.stop(Duration::ZERO);
    }

    #[test]
    fn a_stopped_backend_stays_stopped() {
        let b = in_memory();
        assert!(b.start(Duration::from_secs(5)));
        b.stop(Duration::ZERO);
        assert_eq!(b.info().state, State::Stopped);
        assert!(!b.restart(Duration::from_secs(5)), "no restart after a stop");
        assert!(matches!(call(&b, "echo"), Err(CallError::Unavailable(why)) if why.contains("shutting down")));
    }

    #[test]
    fn a_panicking_backend_thread_fails_its_calls_at_once_and_the_backend() {
        let config = crate::config::Config::from_yaml("backends:\n  - name: p\n    command: x\n").expect("config");
        let (events, got) = crossbeam_channel::unbounded();
        let hub = Arc::new(Hub::new(events));
        let b = Arc::new(Backend::new(0, config.backends[0].clone(), &config.router, hub));
        let (tx, _rx) = crossbeam_channel::bounded(1);
        b.life.lock().phase = Phase::Ready { generation: 7, conn: Connection::new(tx) };
        let (reply, rx) = slot();
        b.pending.try_insert(PendingCall { reply }).ok().expect("open map");
        let t = Link::new(Arc::clone(&b), 7).spawn_thread("-t", |_| panic!("a bug in a reader")).expect("thread");
        t.join().expect("the panic was caught in the thread");
        assert!(matches!(rx.try_take(), Some(Reply::Failed(_))), "the pending call failed at once");
        assert_eq!(b.info().state, State::Failed);
        assert!(!b.is_ready());
        assert!(got.try_iter().any(|e| matches!(e, crate::hub::Event::Down(0))), "the supervisor hears of it");
    }
}
