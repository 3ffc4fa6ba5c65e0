//! One backend MCP server: its state, its pending calls, and the call path towards it.
//!
//! Threads per stdio backend (see `stdio.rs`): a writer fed by a bounded channel, a reader
//! of stdout that completes pending calls and hands everything unsolicited to the hub, and a
//! drain of stderr into the log. Callers never touch the pipes: they register a pending
//! entry, `try_send` the line, and wait on their own reply channel until the deadline.

mod http;
mod legacy;
mod process;
mod sse;
mod stdio;
mod ws;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded};
use parking_lot::Mutex;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::breaker::SharedBreaker;
use crate::catalog::Lists;
use crate::config::{BackendConfig, HealthPolicy, RouterSettings, Transport};
use crate::hub::{CallerGuard, Hub};
use crate::jsonrpc::{self, Message};
use crate::pending::PendingMap;
use crate::redact::Redactor;
use crate::supervisor::{Health, Restarts};

/// Stack size of a backend's threads: they parse JSON, never recurse deeply.
const THREAD_STACK: usize = 256 * 1024;

/// Protocol versions the router accepts from a backend, newest first.
pub(crate) const SUPPORTED_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// What the writer thread is asked to do.
pub(crate) enum Command {
    /// Write one line (without its newline).
    Write(String),
    /// Close stdin and stop.
    Shutdown,
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
    reply: Sender<Reply>,
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
    rx: Receiver<Reply>,
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

/// Lifecycle of one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Starting,
    Ready,
    Failed,
    Stopped,
}

impl State {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Ready => "ready",
            State::Failed => "failed",
            State::Stopped => "stopped",
        }
    }
}

/// What the handshake told us, and what went wrong last.
#[derive(Debug, Clone)]
pub(crate) struct Info {
    pub state: State,
    pub protocol_version: Option<String>,
    pub server_info: Option<Value>,
    pub capabilities: Value,
    pub instructions: Option<String>,
    pub last_error: Option<String>,
    pub handshake: Option<Duration>,
    pub pid: Option<u32>,
}

pub(crate) struct Backend {
    pub index: usize,
    pub config: BackendConfig,
    max_message_bytes: usize,
    queue_capacity: usize,
    pub timeout: Duration,
    pub hub: Arc<Hub>,
    pub pending: PendingMap<PendingCall>,
    tx: Mutex<Option<Sender<Command>>>,
    info: Mutex<Info>,
    ready: AtomicBool,
    stopping: AtomicBool,
    child: Mutex<Option<process::Child>>,
    /// The running network transport, if any.
    net: Mutex<Option<Arc<dyn Net>>>,
    /// For `transport: auto`, what the first start found out.
    resolved: Mutex<Option<Transport>>,
    /// The longest one client call may take (router `max_call_ms`, at least `timeout`): the
    /// bound on one HTTP exchange.
    pub max_call: Duration,
    threads: Mutex<Vec<JoinHandle<()>>>,
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
    /// Held while starting or stopping, so a restart and a shutdown never interleave.
    lifecycle: Mutex<()>,
    /// Set once by router shutdown: no restart may follow.
    shut: AtomicBool,
    /// Masks this backend's secrets (url userinfo, headers, env) in error text bound for
    /// clients: `last_error` and failed calls.
    redactor: Redactor,
}

impl Backend {
    pub(crate) fn new(index: usize, config: BackendConfig, settings: &RouterSettings, hub: Arc<Hub>) -> Backend {
        let timeout = Duration::from_millis(config.timeout_ms.unwrap_or(settings.request_timeout_ms));
        let redactor = crate::logging::backend_redactor(&config);
        let catalog_caps = (
            config.max_catalog_items.unwrap_or(settings.max_catalog_items),
            config.max_catalog_bytes.unwrap_or(settings.max_catalog_bytes),
        );
        Backend {
            index,
            config,
            max_message_bytes: settings.max_message_bytes,
            queue_capacity: settings.queue_capacity,
            timeout,
            hub,
            pending: PendingMap::new(),
            tx: Mutex::new(None),
            info: Mutex::new(Info {
                state: State::Starting,
                protocol_version: None,
                server_info: None,
                capabilities: Value::Null,
                instructions: None,
                last_error: None,
                handshake: None,
                pid: None,
            }),
            ready: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            child: Mutex::new(None),
            net: Mutex::new(None),
            resolved: Mutex::new(None),
            max_call: Duration::from_millis(settings.max_call_ms).max(timeout),
            threads: Mutex::new(Vec::new()),
            lists: Mutex::new(None),
            refresh_asked: AtomicU64::new(0),
            refresh_seen: AtomicU64::new(0),
            catalog_error: Mutex::new(None),
            catalog_caps,
            breaker: SharedBreaker::new(settings.breaker_config()),
            health: Mutex::new(Health::default()),
            health_policy: settings.health.clone(),
            client_capabilities: settings.declared_client_capabilities(),
            restarts: Mutex::new(Restarts::default()),
            lifecycle: Mutex::new(()),
            shut: AtomicBool::new(false),
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
        self.ready.load(Ordering::Acquire)
    }

    pub(crate) fn info(&self) -> Info {
        self.info.lock().clone()
    }

    pub(crate) fn queue_depth(&self) -> usize {
        self.tx.lock().as_ref().map_or(0, Sender::len)
    }

    /// Starts the process, runs the MCP handshake and lists everything, all within
    /// `init_timeout`. On failure the backend is left `Failed` with its child reaped.
    /// Returns whether it came up.
    pub(crate) fn start(self: &Arc<Self>, init_timeout: Duration) -> bool {
        let _life = self.lifecycle.lock();
        if self.shut.load(Ordering::Acquire) {
            return false;
        }
        self.start_locked(init_timeout)
    }

    /// Replaces a backend that exited: reaps what is left of it and starts it again.
    pub(crate) fn restart(self: &Arc<Self>, init_timeout: Duration) -> bool {
        let _life = self.lifecycle.lock();
        if self.shut.load(Ordering::Acquire) {
            return false;
        }
        self.halt(Duration::from_millis(100));
        self.stopping.store(false, Ordering::Release);
        self.pending.reopen();
        self.info.lock().state = State::Starting;
        *self.health.lock() = Health::default();
        log::info!(target: "mcprouter::backend", "[{}] restarting", self.name());
        self.start_locked(init_timeout)
    }

    fn start_locked(self: &Arc<Self>, init_timeout: Duration) -> bool {
        let began = Instant::now();
        let deadline = began + init_timeout;
        let outcome = self.connect(deadline);
        match outcome {
            Ok(()) => {
                {
                    let mut info = self.info.lock();
                    info.handshake = Some(began.elapsed());
                    info.state = State::Ready;
                    info.last_error = None;
                }
                self.ready.store(true, Ordering::Release);
                self.restarts.lock().up(Instant::now());
                if let Err(e) = self.refresh_lists(deadline.max(Instant::now() + self.timeout)) {
                    log::warn!(target: "mcprouter::backend", "[{}] listing failed: {e}", self.name());
                }
                true
            }
            Err(e) => {
                log::error!(target: "mcprouter::backend", "[{}] failed to start: {e}", self.name());
                self.mark_failed(&e);
                self.halt(Duration::from_millis(200));
                false
            }
        }
    }

    /// Starts the transport and runs the handshake over it. `auto` tries Streamable HTTP and
    /// falls back to legacy HTTP+SSE when the server refuses the first POST with 400, 404 or
    /// 405; the answer is remembered for restarts.
    fn connect(self: &Arc<Self>, deadline: Instant) -> Result<(), String> {
        let transport = self.resolved.lock().unwrap_or_else(|| self.config.transport());
        match transport {
            Transport::Stdio => stdio::spawn(self).and_then(|()| self.handshake(deadline)),
            Transport::StreamableHttp => http::spawn(self, false).and_then(|()| self.handshake(deadline)),
            Transport::Sse => legacy::spawn(self, deadline).and_then(|()| self.handshake(deadline)),
            Transport::Websocket => ws::spawn(self).and_then(|()| self.handshake(deadline)),
            Transport::Auto => {
                let first = http::spawn(self, true).and_then(|()| self.handshake(deadline));
                let legacy = self.net.lock().as_ref().is_some_and(|n| n.wants_legacy());
                if first.is_ok() {
                    *self.resolved.lock() = Some(Transport::StreamableHttp);
                    return first;
                }
                if !legacy {
                    return first;
                }
                log::info!(target: "mcprouter::backend", "[{}] no Streamable HTTP here; trying legacy HTTP+SSE", self.name());
                self.halt(Duration::from_millis(200));
                self.stopping.store(false, Ordering::Release);
                self.pending.reopen();
                self.info.lock().state = State::Starting;
                legacy::spawn(self, deadline).and_then(|()| self.handshake(deadline))?;
                *self.resolved.lock() = Some(Transport::Sse);
                Ok(())
            }
        }
    }

    /// Handles one message the backend sent: completes the pending call it answers, or
    /// hands it to the hub (notifications, server-to-client requests). Every transport's
    /// reader calls this. Returns the id of the call a response completed.
    pub(crate) fn dispatch(&self, text: &str) -> Option<u64> {
        match jsonrpc::parse(text) {
            Ok(Message::Response { id, outcome }) => {
                let Ok(n) = id.get().parse::<u64>() else {
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
                self.hub.from_backend(self, msg);
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

    fn handshake(&self, deadline: Instant) -> Result<(), String> {
        let params = serde_json::json!({
            "protocolVersion": SUPPORTED_VERSIONS[0],
            "capabilities": self.client_capabilities,
            "clientInfo": {"name": "mcprouter", "version": env!("CARGO_PKG_VERSION")},
        })
        .to_string();
        let result = match self.call("initialize", Some(&params), 0, deadline) {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(format!("initialize was refused: {}", e.get())),
            Err(CallError::Timeout) => return Err("no answer to initialize in time".into()),
            Err(e) => return Err(format!("initialize failed: {e:?}")),
        };
        let v: Value = serde_json::from_str(result.get()).map_err(|e| format!("bad initialize result: {e}"))?;
        let version = v.get("protocolVersion").and_then(Value::as_str).unwrap_or_default().to_owned();
        if !SUPPORTED_VERSIONS.contains(&version.as_str()) {
            return Err(format!("backend wants protocol version {version:?}, which the router does not speak"));
        }
        {
            let mut info = self.info.lock();
            info.protocol_version = Some(version);
            info.server_info = v.get("serverInfo").cloned();
            info.capabilities = v.get("capabilities").cloned().unwrap_or(Value::Null);
            info.instructions = v.get("instructions").and_then(Value::as_str).map(str::to_owned);
        }
        self.notify("notifications/initialized", None)
    }

    /// Fetches every list the backend's capabilities offer, following `nextCursor`.
    ///
    /// A listing that crosses a catalog cap is refused as a whole: the backend serves no
    /// items until a later listing fits, and the reason stays visible in its status. A
    /// listing that merely fails (timeout, error) keeps the previous lists.
    pub(crate) fn refresh_lists(&self, deadline: Instant) -> Result<(), String> {
        let caps = self.info.lock().capabilities.clone();
        let (max_items, max_bytes) = self.catalog_caps;
        let mut budget = Budget { max_items, max_bytes, bytes_left: max_bytes };
        let fetched = (|| {
            let mut lists = Lists::default();
            if caps.get("tools").is_some() {
                lists.tools = self.list_all("tools/list", "tools", deadline, &mut budget)?;
            }
            if caps.get("resources").is_some() {
                lists.resources = self.list_all("resources/list", "resources", deadline, &mut budget)?;
                lists.templates =
                    match self.list_all("resources/templates/list", "resourceTemplates", deadline, &mut budget) {
                        Ok(t) => t,
                        Err(e @ ListError::OverCap(_)) => return Err(e),
                        Err(ListError::Failed(_)) => Vec::new(),
                    };
            }
            if caps.get("prompts").is_some() {
                lists.prompts = self.list_all("prompts/list", "prompts", deadline, &mut budget)?;
            }
            Ok(lists)
        })();
        match fetched {
            Ok(mut lists) => {
                self.bound_templates(&mut lists.templates);
                *self.lists.lock() = Some(Arc::new(lists));
                *self.catalog_error.lock() = None;
                Ok(())
            }
            Err(ListError::OverCap(why)) => {
                let why = format!("catalog refused: {why}");
                *self.lists.lock() = None;
                *self.catalog_error.lock() = Some(why.clone());
                self.info.lock().last_error = Some(why.clone());
                Err(why)
            }
            Err(ListError::Failed(why)) => Err(why),
        }
    }

    /// Drops templates over the matcher's bounds, with one log record for all of them.
    fn bound_templates(&self, templates: &mut Vec<Value>) {
        use crate::catalog::{MAX_TEMPLATES_PER_BACKEND, template_out_of_bounds};
        let before = templates.len();
        let mut first: Option<String> = None;
        templates.retain(|t| {
            let raw = t.get("uriTemplate").and_then(Value::as_str).unwrap_or_default();
            match template_out_of_bounds(raw) {
                None => true,
                Some(why) => {
                    if first.is_none() {
                        let shown: String = raw.chars().take(80).collect();
                        first = Some(format!("{shown:?}…: {why}"));
                    }
                    false
                }
            }
        });
        let oversized = before - templates.len();
        let surplus = templates.len().saturating_sub(MAX_TEMPLATES_PER_BACKEND);
        templates.truncate(MAX_TEMPLATES_PER_BACKEND);
        if oversized + surplus > 0 {
            log::warn!(
                target: "mcprouter::backend",
                "[{}] dropped {oversized} oversized resource template(s){} and {surplus} past the first {MAX_TEMPLATES_PER_BACKEND}",
                self.name(),
                first.map(|f| format!(" (first: {f})")).unwrap_or_default()
            );
        }
    }

    fn list_all(
        &self,
        method: &str,
        field: &str,
        deadline: Instant,
        budget: &mut Budget,
    ) -> Result<Vec<Value>, ListError> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        // A backend that hands back the same cursor forever must not hang discovery.
        for _ in 0..10_000 {
            let params = cursor.as_ref().map(|c| format!("{{\"cursor\":{}}}", jsonrpc::quote(c)));
            let raw = match self.call(method, params.as_deref(), 0, deadline) {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return Err(ListError::Failed(format!("{method} failed: {}", e.get()))),
                Err(e) => return Err(ListError::Failed(format!("{method} failed: {e:?}"))),
            };
            // Counted before parsing, so an oversized page costs no more than its text.
            let Some(left) = budget.bytes_left.checked_sub(raw.get().len()) else {
                return Err(ListError::OverCap(format!(
                    "its lists pass {} bytes (max_catalog_bytes) at {method}",
                    budget.max_bytes
                )));
            };
            budget.bytes_left = left;
            let mut v: Value =
                serde_json::from_str(raw.get()).map_err(|e| ListError::Failed(format!("{method}: {e}")))?;
            drop(raw);
            if let Some(Value::Array(items)) = v.get_mut(field).map(Value::take) {
                if out.len() + items.len() > budget.max_items {
                    return Err(ListError::OverCap(format!(
                        "{method} lists more than {} items (max_catalog_items)",
                        budget.max_items
                    )));
                }
                out.extend(items);
            }
            match v.get("nextCursor").and_then(Value::as_str) {
                Some(next) if cursor.as_deref() != Some(next) && !next.is_empty() => cursor = Some(next.to_owned()),
                _ => return Ok(out),
            }
        }
        Err(ListError::Failed(format!("{method}: too many pages")))
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
        // The writer channel is taken together with the state check: a call that races a
        // restart goes to the old, stopped writer and fails, rather than reaching the new
        // process before its `initialize`.
        let tx = {
            let info = self.info.lock();
            let usable = info.state == State::Ready || (info.state == State::Starting && method == "initialize");
            if !usable {
                let why = info.last_error.clone().unwrap_or_else(|| format!("it is {}", info.state.as_str()));
                return Err(CallError::Unavailable(why));
            }
            self.tx.lock().clone()
        };
        if self.stopping.load(Ordering::Acquire) {
            return Err(CallError::Unavailable("the router is shutting down".into()));
        }
        let (reply, rx) = bounded(1);
        // Calls in flight are bounded per backend as well as queued ones (a backend that
        // stops reading holds at most this many callers); the router's own calls are not.
        // The map is closed from the moment the backend is found dead, so a call racing that
        // death fails here instead of waiting out its deadline.
        let max = if session != 0 { self.queue_capacity } else { usize::MAX };
        let id = match self.pending.try_insert_bounded(PendingCall { reply }, max) {
            Ok(id) => id,
            Err((_, true)) => return Err(CallError::Overloaded),
            Err((_, false)) => {
                let why = self.info.lock().last_error.clone().unwrap_or_else(|| "it is down".into());
                return Err(CallError::Unavailable(why));
            }
        };
        // Counted before the line goes out, so a request the backend sends about this call
        // finds the call in flight.
        let caller = (session != 0).then(|| Hub::call_started(&self.hub, self.index, session));
        let line = jsonrpc::request(&id.to_string(), method, params);
        // The router's own calls (handshake, discovery) wait for room; a client's call is
        // refused at once when the queue is full, so overload is visible, never a hang.
        let wait = (session == 0).then(|| Instant::now() + self.timeout);
        match Self::send_on(tx.as_ref(), Command::Write(line), wait) {
            Ok(()) => Ok(Ticket { id, rx, _caller: caller }),
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
        let reply = loop {
            let wait = deadline.current().saturating_duration_since(Instant::now());
            match ticket.rx.recv_timeout(wait) {
                Ok(r) => break r,
                // Progress moved the deadline: keep waiting.
                Err(RecvTimeoutError::Timeout) if deadline.current() > Instant::now() => continue,
                Err(RecvTimeoutError::Timeout) => {
                    if self.pending.take(ticket.id).is_some() {
                        self.cancel_on_backend(ticket.id, "timed out");
                        return Err(CallError::Timeout);
                    }
                    // Taken by the reader between the timeout and the take: the reply is on its way.
                    match ticket.rx.recv_timeout(Duration::from_millis(100)) {
                        Ok(r) => break r,
                        Err(_) => return Err(CallError::Cancelled),
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return Err(CallError::Cancelled),
            }
        };
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
        let _ = self.send(Command::Write(jsonrpc::notification("notifications/cancelled", Some(&params))), None);
    }

    /// Sends a notification; an error says why it could not be queued.
    pub(crate) fn notify(&self, method: &str, params: Option<&str>) -> Result<(), String> {
        self.send_line(jsonrpc::notification(method, params))
    }

    /// Queues a ready-made line (responses to the backend's own requests).
    /// Notifications and answers to the backend's own requests may wait briefly for room:
    /// dropping them would leave the backend waiting.
    pub(crate) fn send_line(&self, line: String) -> Result<(), String> {
        let wait = Instant::now() + Duration::from_millis(500);
        self.send(Command::Write(line), Some(wait)).map_err(|e| format!("{e:?}"))
    }

    fn send(&self, cmd: Command, wait_until: Option<Instant>) -> Result<(), CallError> {
        let tx = self.tx.lock().clone();
        Self::send_on(tx.as_ref(), cmd, wait_until)
    }

    fn send_on(tx: Option<&Sender<Command>>, cmd: Command, wait_until: Option<Instant>) -> Result<(), CallError> {
        let Some(tx) = tx else {
            return Err(CallError::Unavailable("not running".into()));
        };
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
            let _ = p.reply.try_send(reply);
        }
    }

    pub(crate) fn mark_failed(&self, why: &str) {
        self.ready.store(false, Ordering::Release);
        let mut info = self.info.lock();
        if info.state != State::Stopped {
            info.state = State::Failed;
        }
        info.last_error = Some(self.redactor.redact(why).into_owned());
    }

    /// Called by the reader when stdout closes: fail every pending call at once rather
    /// than letting each wait for its deadline.
    pub(crate) fn on_exit(&self, why: String) {
        let why = self.redactor.redact(&why).into_owned();
        if !self.stopping.load(Ordering::Acquire) {
            log::error!(target: "mcprouter::backend", "[{}] {why}", self.name());
            self.mark_failed(&why);
            self.hub.backend_down(self.index);
        }
        for (_, p) in self.pending.close() {
            let _ = p.reply.try_send(Reply::Failed(why.clone()));
        }
    }

    /// Starts one of this backend's threads, `mcprouter-<name><suffix>`. A panic in it is a
    /// bug, but must not leave calls hanging: it is caught, logged once, and the backend is
    /// failed like a dead connection (pending calls fail now, the supervisor restarts it).
    pub(super) fn spawn_thread(
        self: &Arc<Self>,
        suffix: &str,
        f: impl FnOnce(&Arc<Backend>) + Send + 'static,
    ) -> Result<JoinHandle<()>, String> {
        let b = Arc::clone(self);
        let what = format!("mcprouter-{}{suffix}", self.name());
        std::thread::Builder::new()
            .name(what.clone())
            .stack_size(THREAD_STACK)
            .spawn(move || {
                if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&b))) {
                    log::error!(
                        target: "mcprouter::backend",
                        "[{}] internal error: thread {what} panicked: {}",
                        b.name(),
                        crate::guard::panic_message(payload.as_ref())
                    );
                    b.on_exit(format!("internal error in thread {what}"));
                }
            })
            .map_err(|e| format!("cannot start a thread: {e}"))
    }

    /// Stops the backend for good (router shutdown).
    pub(crate) fn stop(&self, grace: Duration) {
        self.shut.store(true, Ordering::Release);
        // A restart in progress holds the lifecycle lock while its handshake waits: failing
        // what is pending ends that wait now rather than at the init timeout.
        self.stopping.store(true, Ordering::Release);
        for (_, p) in self.pending.close() {
            let _ = p.reply.try_send(Reply::Failed("the router is shutting down".into()));
        }
        let _life = self.lifecycle.lock();
        self.halt(grace);
        self.info.lock().state = State::Stopped;
    }

    /// Closes stdin, waits up to `grace`, then terminates and finally kills the process
    /// group; joins every thread; fails what is still pending. Idempotent.
    fn halt(&self, grace: Duration) {
        self.stopping.store(true, Ordering::Release);
        self.ready.store(false, Ordering::Release);
        if let Some(tx) = self.tx.lock().take() {
            // Dropping the last sender also stops the writer; the explicit command only
            // makes it stop before writing what is still queued.
            let _ = tx.try_send(Command::Shutdown);
        }
        if let Some(child) = self.child.lock().take() {
            child.terminate(grace);
        }
        let net = self.net.lock().take();
        if let Some(net) = &net {
            net.stop();
        }
        let threads = std::mem::take(&mut *self.threads.lock());
        if net.is_some() {
            // A network thread may sit in a blocking read that only its read timeout ends.
            // It is stopped (it dispatches nothing more), so after a short wait it is let go
            // rather than holding up a restart or shutdown.
            let until = Instant::now() + grace.clamp(Duration::from_millis(100), Duration::from_secs(1));
            while Instant::now() < until && !threads.iter().all(JoinHandle::is_finished) {
                std::thread::sleep(Duration::from_millis(5));
            }
            for t in threads {
                if t.is_finished() {
                    let _ = t.join();
                }
            }
        } else {
            for t in threads {
                let _ = t.join();
            }
        }
        for (_, p) in self.pending.close() {
            let _ = p.reply.try_send(Reply::Failed("the backend was stopped".into()));
        }
    }

    /// How the child ended, if it has (waits briefly: stdout closes just before exit).
    pub(crate) fn exit_status(&self) -> Option<String> {
        let end = Instant::now() + Duration::from_millis(100);
        loop {
            if let Some(st) = self.child.lock().as_mut().and_then(process::Child::try_status) {
                return Some(st);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_backend_thread_fails_its_calls_at_once_and_the_backend() {
        let config = crate::config::Config::from_yaml("backends:\n  - name: p\n    command: x\n").expect("config");
        let (events, got) = crossbeam_channel::unbounded();
        let hub = Arc::new(Hub::new(events));
        let b = Arc::new(Backend::new(0, config.backends[0].clone(), &config.router, hub));
        b.info.lock().state = State::Ready;
        b.ready.store(true, Ordering::Release);
        let (reply, rx) = bounded(1);
        b.pending.try_insert(PendingCall { reply }).ok().expect("open map");
        let t = b.spawn_thread("-t", |_| panic!("a bug in a reader")).expect("thread");
        t.join().expect("the panic was caught in the thread");
        assert!(matches!(rx.try_recv(), Ok(Reply::Failed(_))), "the pending call failed at once");
        assert_eq!(b.info().state, State::Failed);
        assert!(!b.is_ready());
        assert!(got.try_iter().any(|e| matches!(e, crate::hub::Event::Down(0))), "the supervisor hears of it");
    }
}
