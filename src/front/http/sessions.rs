//! The gateway's sessions: one router [`Session`] per `Mcp-Session-Id`, the streams it
//! has open, and the pump that moves what the router sends the client onto them.
//!
//! Where an event goes: progress goes to the POST whose request carried its token; a
//! request to the client (sampling, elicitation, roots), a log message or a cancellation
//! goes to the session's one call in flight (with several, to the GET stream when one is
//! open, else the oldest call); everything else (list_changed, resources/updated) goes to
//! the GET stream, numbered, and is kept for `Last-Event-ID` resumption.
//!
//! Ordering: every event is written under the session's `order` lock, and a call's result
//! is written after the thread that ran it drained the events queued before it under that
//! lock, so what a backend sent before a result reaches the client before it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use serde_json::Value;

use super::response::{Sink, sse_event};
use crate::session::Session;

/// Protocol versions the gateway speaks (the Streamable HTTP ones, and 2024-11-05 for
/// clients that negotiate it over this transport).
pub(crate) const SUPPORTED_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// Whether a JSON-RPC batch is allowed in `version` (removed in 2025-06-18).
pub(crate) fn batches_allowed(version: &str) -> bool {
    version < "2025-06-18"
}

/// How long the pump waits for an event before it looks at its calls' connections.
const PUMP_TICK: Duration = Duration::from_millis(200);

/// The gateway's cap on pump threads. A session's pump runs while the session is busy,
/// and every busy session holds a connection thread (a POST in flight or a stream open),
/// so `max_connections` pumps are enough. A pump lingers up to a tick after its session's
/// last request; past the cap, a session that needs one is queued, and the next pump to
/// find its own session idle takes it over instead of ending. Nobody blocks on the cap:
/// a call is answered without its pump (its result is written after the events queued
/// before it, by the thread that ran it), so only events during a call (progress,
/// sampling) may wait up to a tick, and only when the cap is reached.
pub(crate) struct PumpSlots {
    state: Mutex<Slots>,
    cap: usize,
}

#[derive(Default)]
struct Slots {
    alive: usize,
    queued: VecDeque<Arc<HttpSession>>,
}

impl PumpSlots {
    pub fn new(cap: usize) -> Arc<PumpSlots> {
        Arc::new(PumpSlots { state: Mutex::new(Slots::default()), cap: cap.max(1) })
    }

    /// Runs `session`'s pump: on a new thread while under the cap, else later on the next
    /// pump thread that frees up.
    fn start(self: &Arc<Self>, session: Arc<HttpSession>) {
        {
            let mut st = self.state.lock();
            if st.alive >= self.cap {
                st.queued.push_back(session);
                return;
            }
            st.alive += 1;
        }
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("mcprouter-gw-pump".into())
            .stack_size(256 * 1024)
            .spawn(move || me.run(session));
        if let Err(e) = spawned {
            log::error!(target: "mcprouter::gateway", "cannot start an event pump: {e}");
            self.state.lock().alive -= 1;
        }
    }

    /// A pump thread: pumps its session until idle, then the queued ones.
    fn run(&self, first: Arc<HttpSession>) {
        let mut next = Some(first);
        while let Some(session) = next {
            session.pump();
            let mut st = self.state.lock();
            next = st.queued.pop_front();
            if next.is_none() {
                st.alive -= 1;
            }
        }
    }

    /// Pump threads alive now.
    pub fn alive(&self) -> usize {
        self.state.lock().alive
    }
}

/// One POST whose request is in flight.
pub(crate) struct CallStream {
    pub sink: Arc<Sink>,
    /// `params._meta.progressToken` of its requests, as JSON.
    pub progress_tokens: Vec<Value>,
    /// The ids of its requests, as JSON text (for `notifications/cancelled`).
    pub request_ids: Vec<String>,
    cancelled: AtomicBool,
}

impl CallStream {
    pub fn new(sink: Arc<Sink>, progress_tokens: Vec<Value>, request_ids: Vec<String>) -> Arc<CallStream> {
        Arc::new(CallStream { sink, progress_tokens, request_ids, cancelled: AtomicBool::new(false) })
    }
}

struct Standalone {
    sink: Arc<Sink>,
    /// Tells the GET's thread its stream was replaced or the session ended.
    stop: crossbeam_channel::Sender<()>,
}

#[derive(Default)]
struct Routing {
    calls: Vec<Arc<CallStream>>,
    standalone: Option<Standalone>,
    /// Numbered GET-stream events, oldest first.
    replay: VecDeque<(u64, String)>,
    last_id: u64,
    /// The last id written to a GET stream.
    delivered: u64,
}

/// One client session of the gateway.
pub(crate) struct HttpSession {
    pub id: String,
    pub session: Session,
    /// The negotiated protocol version.
    pub version: String,
    routing: Mutex<Routing>,
    /// Held while events are written, and while a result is preceded by the events queued
    /// before it (see the module doc).
    order: Mutex<()>,
    /// Open streams and requests in flight: the pump runs while this is non-zero, and the
    /// session does not expire.
    interest: AtomicUsize,
    pump_running: AtomicBool,
    last_used: Mutex<Instant>,
    replay_cap: usize,
    closed: AtomicBool,
    /// A legacy HTTP+SSE session (`legacy_sse.rs`): every event, and every reply, goes on
    /// its one stream.
    legacy: bool,
    /// The gateway's pump cap, given by the table the session joins.
    slots: std::sync::OnceLock<Arc<PumpSlots>>,
}

/// Keeps a session busy (pump on, no expiry) while held.
pub(crate) struct Busy(Arc<HttpSession>);

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.last_used.lock() = Instant::now();
        self.0.interest.fetch_sub(1, Ordering::AcqRel);
    }
}

impl HttpSession {
    pub fn new(id: String, session: Session, version: String, replay_cap: usize) -> Arc<HttpSession> {
        Self::build(id, session, version, replay_cap, false)
    }

    /// A legacy HTTP+SSE session: no replay (the transport has no resumption).
    pub fn new_legacy(id: String, session: Session) -> Arc<HttpSession> {
        Self::build(id, session, "2024-11-05".into(), 0, true)
    }

    fn build(id: String, session: Session, version: String, replay_cap: usize, legacy: bool) -> Arc<HttpSession> {
        Arc::new(HttpSession {
            id,
            session,
            version,
            routing: Mutex::new(Routing::default()),
            order: Mutex::new(()),
            interest: AtomicUsize::new(0),
            pump_running: AtomicBool::new(false),
            last_used: Mutex::new(Instant::now()),
            replay_cap,
            closed: AtomicBool::new(false),
            legacy,
            slots: std::sync::OnceLock::new(),
        })
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Marks the session busy and makes sure its pump runs.
    pub fn busy(self: &Arc<Self>) -> Busy {
        *self.last_used.lock() = Instant::now();
        self.interest.fetch_add(1, Ordering::AcqRel);
        if !self.pump_running.swap(true, Ordering::AcqRel) {
            match self.slots.get() {
                Some(slots) => slots.start(Arc::clone(self)),
                // Not in a table (cannot happen for a served session): a pump of its own.
                None => PumpSlots::new(1).start(Arc::clone(self)),
            }
        }
        Busy(Arc::clone(self))
    }

    fn pump(self: Arc<Self>) {
        loop {
            if self.interest.load(Ordering::Acquire) == 0 || self.is_closed() {
                self.pump_running.store(false, Ordering::Release);
                // A stream that opened just now saw the pump running and started none.
                if self.interest.load(Ordering::Acquire) > 0
                    && !self.is_closed()
                    && !self.pump_running.swap(true, Ordering::AcqRel)
                {
                    continue;
                }
                return;
            }
            if self.session.wait_event(PUMP_TICK) {
                self.drain();
            }
            self.cancel_abandoned_calls();
        }
    }

    /// Routes every event queued for the client. Takes the order lock.
    pub fn drain(&self) {
        let _order = self.order.lock();
        while let Ok(Some(ev)) = self.session.next_event(Duration::ZERO) {
            self.route(&ev);
        }
    }

    fn route(&self, ev: &str) {
        if self.legacy {
            self.legacy_send(ev);
            return;
        }
        let v: Value = serde_json::from_str(ev).unwrap_or(Value::Null);
        let method = v.get("method").and_then(Value::as_str).unwrap_or_default();
        let is_request = v.get("id").is_some() && !method.is_empty();
        let target = {
            let r = self.routing.lock();
            if method == "notifications/progress" {
                let token = &v["params"]["progressToken"];
                match r.calls.iter().find(|c| c.progress_tokens.iter().any(|t| t == token)) {
                    Some(c) => Some(Arc::clone(&c.sink)),
                    // Its call is over: nobody to tell.
                    None => return,
                }
            } else if is_request || method == "notifications/message" || method == "notifications/cancelled" {
                match r.calls.len() {
                    0 => None,
                    1 => Some(Arc::clone(&r.calls[0].sink)),
                    _ if r.standalone.as_ref().is_some_and(|s| s.sink.is_open()) => None,
                    _ => Some(Arc::clone(&r.calls[0].sink)),
                }
            } else {
                None
            }
        };
        if let Some(sink) = target
            && sink.send(&sse_event(None, None, ev))
        {
            return;
        }
        self.standalone_event(ev);
    }

    /// Numbers an event of the GET stream, keeps it for replay, and writes it when a
    /// stream is open. The caller holds the order lock.
    fn standalone_event(&self, ev: &str) {
        let (id, sink) = {
            let mut r = self.routing.lock();
            r.last_id += 1;
            let id = r.last_id;
            r.replay.push_back((id, ev.to_owned()));
            while r.replay.len() > self.replay_cap {
                r.replay.pop_front();
            }
            (id, r.standalone.as_ref().map(|s| Arc::clone(&s.sink)))
        };
        if let Some(sink) = sink {
            if sink.send(&sse_event(Some(id), None, ev)) {
                let mut r = self.routing.lock();
                r.delivered = r.delivered.max(id);
            } else {
                self.routing.lock().standalone = None;
            }
        }
    }

    /// Registers a POST in flight; events for it go to its sink until [`Self::finish_call`].
    pub fn start_call(&self, call: &Arc<CallStream>) {
        self.routing.lock().calls.push(Arc::clone(call));
    }

    /// Routes the events queued before the call's result, then unregisters it. The caller
    /// writes the result afterwards.
    pub fn finish_call(&self, call: &Arc<CallStream>) {
        let _order = self.order.lock();
        while let Ok(Some(ev)) = self.session.next_event(Duration::ZERO) {
            self.route(&ev);
        }
        self.routing.lock().calls.retain(|c| !Arc::ptr_eq(c, call));
    }

    /// Cancels the requests of calls whose client has gone: their results could not be
    /// delivered (POST streams are not resumable here).
    fn cancel_abandoned_calls(&self) {
        let calls: Vec<Arc<CallStream>> = self.routing.lock().calls.clone();
        for c in calls {
            if c.sink.peer_gone() && !c.cancelled.swap(true, Ordering::AcqRel) {
                for id in &c.request_ids {
                    let params = format!(r#"{{"requestId":{id},"reason":"the HTTP client disconnected"}}"#);
                    let _ =
                        self.session.handle(&crate::jsonrpc::notification("notifications/cancelled", Some(&params)));
                }
            }
        }
    }

    /// Installs `sink` as the GET stream (replacing, and stopping, an older one) and
    /// writes what the client has not seen: the events after `last_event_id`, or without
    /// it those never delivered. The returned receiver fires when the stream must end.
    pub fn open_standalone(
        &self,
        sink: &Arc<Sink>,
        last_event_id: Option<u64>,
        retry_ms: u64,
    ) -> crossbeam_channel::Receiver<()> {
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
        let _order = self.order.lock();
        let (backlog, priming) = {
            let mut r = self.routing.lock();
            if let Some(old) = r.standalone.take() {
                let _ = old.stop.try_send(());
            }
            let after = last_event_id.unwrap_or(r.delivered);
            let backlog: Vec<(u64, String)> = r.replay.iter().filter(|(id, _)| *id > after).cloned().collect();
            r.standalone = Some(Standalone { sink: Arc::clone(sink), stop: stop_tx });
            (backlog, r.last_id)
        };
        // The priming event: an id to resume from, and how long to wait before trying.
        let mut first = format!("retry: {retry_ms}\n");
        first.push_str(&format!("id: {priming}\ndata: \n\n"));
        let mut ok = sink.open_stream(Some(&first));
        let mut delivered = 0;
        for (id, ev) in backlog {
            if !ok {
                break;
            }
            ok = sink.send(&sse_event(Some(id), None, &ev));
            delivered = id;
        }
        let mut r = self.routing.lock();
        r.delivered = r.delivered.max(delivered);
        if !ok && r.standalone.as_ref().is_some_and(|s| Arc::ptr_eq(&s.sink, sink)) {
            r.standalone = None;
        }
        stop_rx
    }

    /// Writes `message` on a legacy session's stream; a failed write forgets the stream
    /// (its thread sees it closed and ends the session).
    fn legacy_send(&self, message: &str) -> bool {
        let sink = self.routing.lock().standalone.as_ref().map(|s| Arc::clone(&s.sink));
        let Some(sink) = sink else { return false };
        if sink.send(&sse_event(None, None, message)) {
            return true;
        }
        self.close_standalone(&sink);
        false
    }

    /// Installs a legacy session's stream and sends its first event, `first` (the
    /// `endpoint`). False when the client is already gone.
    pub fn open_legacy(&self, sink: &Arc<Sink>, first: &str) -> bool {
        let (stop, _) = crossbeam_channel::bounded(1);
        let _order = self.order.lock();
        self.routing.lock().standalone = Some(Standalone { sink: Arc::clone(sink), stop });
        sink.open_stream(Some(first))
    }

    /// Sends the reply of a legacy session's POST on its stream, after the events queued
    /// before it. False when the stream is gone.
    pub fn legacy_reply(&self, reply: &str) -> bool {
        let _order = self.order.lock();
        while let Ok(Some(ev)) = self.session.next_event(Duration::ZERO) {
            self.route(&ev);
        }
        self.legacy_send(reply)
    }

    /// Forgets the GET stream `sink` if it is still the current one.
    pub fn close_standalone(&self, sink: &Arc<Sink>) {
        let mut r = self.routing.lock();
        if r.standalone.as_ref().is_some_and(|s| Arc::ptr_eq(&s.sink, sink)) {
            r.standalone = None;
        }
    }

    /// Ends the session: its router session closes (cancelling calls in flight), and its
    /// streams are told to end.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.session.close();
        let mut r = self.routing.lock();
        if let Some(s) = r.standalone.take() {
            let _ = s.stop.try_send(());
        }
    }

    /// Cuts every stream's connection (after the shutdown grace).
    pub fn abort_streams(&self) {
        let r = self.routing.lock();
        for c in &r.calls {
            c.sink.abort();
        }
        if let Some(s) = &r.standalone {
            s.sink.abort();
        }
    }

    fn idle_since(&self) -> Option<Instant> {
        (self.interest.load(Ordering::Acquire) == 0).then(|| *self.last_used.lock())
    }
}

/// The gateway's sessions by id.
pub(crate) struct Table {
    map: RwLock<HashMap<String, Arc<HttpSession>>>,
    max: usize,
    slots: Arc<PumpSlots>,
}

impl Table {
    pub fn new(max: usize, slots: Arc<PumpSlots>) -> Table {
        Table { map: RwLock::new(HashMap::new()), max, slots }
    }

    /// Adds a session (under the table's pump cap); false when the table is full.
    pub fn insert(&self, s: Arc<HttpSession>) -> bool {
        let _ = s.slots.set(Arc::clone(&self.slots));
        let mut m = self.map.write();
        if m.len() >= self.max {
            return false;
        }
        m.insert(s.id.clone(), s);
        true
    }

    pub fn is_full(&self) -> bool {
        self.map.read().len() >= self.max
    }

    pub fn get(&self, id: &str) -> Option<Arc<HttpSession>> {
        self.map.read().get(id).cloned()
    }

    pub fn remove(&self, id: &str) -> Option<Arc<HttpSession>> {
        self.map.write().remove(id)
    }

    pub fn len(&self) -> usize {
        self.map.read().len()
    }

    /// Removes the sessions idle (no request, no stream) for longer than `idle`.
    pub fn take_expired(&self, idle: Duration) -> Vec<Arc<HttpSession>> {
        let now = Instant::now();
        let expired: Vec<String> = self
            .map
            .read()
            .values()
            .filter(|s| s.idle_since().is_some_and(|t| now.saturating_duration_since(t) >= idle))
            .map(|s| s.id.clone())
            .collect();
        let mut m = self.map.write();
        // Checked again under the write lock: a request may have come in between.
        let still = |s: &Arc<HttpSession>| s.idle_since().is_some_and(|t| now.saturating_duration_since(t) >= idle);
        let mut out = Vec::new();
        for id in expired {
            if m.get(&id).is_some_and(still) {
                out.extend(m.remove(&id));
            }
        }
        out
    }

    pub fn take_all(&self) -> Vec<Arc<HttpSession>> {
        self.map.write().drain().map(|(_, s)| s).collect()
    }
}

/// A new session id: 128 bits from the OS generator, in hex. None if the generator fails
/// (the session is refused rather than given a guessable id).
pub(crate) fn new_session_id() -> Option<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).ok()?;
    Some(b.iter().map(|x| format!("{x:02x}")).collect())
}
