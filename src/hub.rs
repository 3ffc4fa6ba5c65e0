//! The hub: what backends and sessions share. It knows every open session, maps progress
//! tokens back to the session that owns them, and routes whatever a backend sends on its own
//! (notifications, server-to-client requests) to the right client.
//!
//! Backend reader threads call into the hub, so nothing here may block: session queues are
//! `try_send`, and catalog refreshes are handed to the dispatcher thread as events.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};
use parking_lot::{Condvar, Mutex, RwLock};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::jsonrpc::{self, Message};

/// What the hub needs of a backend that sent it something: who it is, a way to answer
/// it, and its catalog-refresh count. `Backend` implements it; the hub never names the
/// backend type, so the two modules do not import each other.
pub(crate) trait Peer {
    /// The backend's id (never reused; see `Hub::callers`).
    fn id(&self) -> usize;
    fn name(&self) -> &str;
    /// How long a request it relays may wait for the client.
    fn timeout(&self) -> Duration;
    /// Sends a response line to the backend.
    fn respond(&self, line: String) -> Result<(), String>;
    /// Counts one `list_changed`; true when it is the first since the dispatcher last
    /// looked (only that one needs to wake it).
    fn ask_refresh(&self) -> bool;
}

/// Work for the dispatcher thread.
pub(crate) enum Event {
    /// A backend said one of its lists changed: a wake-up only, since the asks are counted
    /// on the backend (`refresh_asked`).
    Refresh,
    /// A backend went down: a restart is due (its names stay in the catalog, answering
    /// "unavailable").
    Down(usize),
}

/// Capacity of a session's event queue; beyond it events are dropped rather than blocking
/// a backend's reader thread.
const EVENT_QUEUE: usize = 4096;

/// Logging may fill at most this much of a session's queue: past it `notifications/message`
/// is dropped first, so a chatty backend cannot crowd out progress, `list_changed` and
/// server-to-client requests, which the client needs to make progress at all.
const LOG_SHARE: usize = EVENT_QUEUE / 2;

/// At most one warning per session per interval about dropped events, carrying the count:
/// a flood of a million events must not become a million log lines.
const DROP_REPORT_EVERY: Duration = Duration::from_secs(1);

/// Server-to-client requests one session may have waiting for its answer; beyond this the
/// backend is refused at once, so a client that never answers cannot grow the map forever.
const MAX_RELAYS: usize = 1024;

/// A client's progress token, swapped for an unguessable one.
struct Progress {
    session: u64,
    /// The backend the current attempt was sent to: the only one whose progress counts.
    backend: Option<usize>,
    client_token: Box<RawValue>,
    /// When progress last arrived (nanoseconds after `Hub::base`): extends the call's deadline.
    last: Arc<AtomicU64>,
}

/// What the client told us in `initialize`.
#[derive(Debug, Default, Clone)]
pub(crate) struct ClientState {
    pub initialized: bool,
    pub protocol_version: Option<String>,
    pub capabilities: Value,
    /// `clientInfo` and the `logging/setLevel` level: what a call to a modern backend carries.
    pub client_info: Option<Value>,
    pub log_level: Option<String>,
}

/// A server-to-client request relayed to a session, waiting for the client's answer.
pub(crate) struct Relay {
    pub backend: usize,
    pub backend_id: Box<RawValue>,
    /// After this the backend is told the client did not answer, and the entry is dropped.
    pub expires: Instant,
}

/// Events a session's queue had to drop since the last warning about it.
#[derive(Debug, Default)]
struct Drops {
    count: u64,
    logs: u64,
    last_report: Option<Instant>,
}

impl Drops {
    /// Counts one dropped event. Returns (dropped, of which logging) when a warning is due.
    fn note(&mut self, log: bool, now: Instant) -> Option<(u64, u64)> {
        self.count += 1;
        self.logs += u64::from(log);
        if self.last_report.is_some_and(|t| now.saturating_duration_since(t) < DROP_REPORT_EVERY) {
            return None;
        }
        self.last_report = Some(now);
        self.take()
    }

    /// What has not been reported yet.
    fn take(&mut self) -> Option<(u64, u64)> {
        let out = (self.count > 0).then_some((self.count, self.logs));
        self.count = 0;
        self.logs = 0;
        out
    }
}

/// The part of a session that backends' threads can reach.
pub(crate) struct SessionShared {
    pub id: u64,
    pub client_id: String,
    events_tx: Sender<String>,
    pub events_rx: Receiver<String>,
    pub client: Mutex<ClientState>,
    /// Keyed by the raw JSON id the client sees.
    pub relays: Mutex<ClientKeyed<Relay>>,
    /// The client's requests being handled, by raw JSON id: one entry per request, so one
    /// lookup answers "is this id taken", "was it cancelled" and "where is it in flight".
    inflight: Mutex<ClientKeyed<Handling>>,
    drops: Mutex<Drops>,
    pub closed: AtomicBool,
}

/// One client request being handled (see `SessionShared::inflight`).
#[derive(Default)]
struct Handling {
    /// Held by an `IdClaim`: a second request under the same id is refused meanwhile, or
    /// finishing one would erase the other's entry. A helper session's calls (mrtr.rs) are
    /// entered unclaimed, only while sent.
    claimed: bool,
    /// The client cancelled it while nothing was in flight (before it was sent, or between
    /// two attempts): its next send is cancelled at once.
    cancelled: bool,
    /// The call in flight for it now: (backend id, router id), for `notifications/cancelled`.
    sent: Option<(usize, u64)>,
}

/// A map keyed by what a client chose (its request ids), touched several times per call.
/// foldhash with a per-process random seed: a handful of instructions per short key where
/// SipHash took about 150, and still no fixed collisions to aim at. What a client could
/// learn of the seed only lets it slow down its own session's maps, which hold its own
/// requests in flight.
pub(crate) type ClientKeyed<V> = HashMap<String, V, foldhash::fast::RandomState>;

/// Holds a client request id as in flight until dropped.
pub(crate) struct IdClaim<'a> {
    session: &'a SessionShared,
    id: &'a str,
}

impl Drop for IdClaim<'_> {
    fn drop(&mut self) {
        self.session.inflight.lock().remove(self.id);
    }
}

impl SessionShared {
    /// Queues an event for `next_event`; false when the queue is full or closed.
    pub(crate) fn push(&self, event: String) -> bool {
        self.push_as(event, false)
    }

    /// Queues a `notifications/message`, which only gets a share of the queue.
    fn push_log(&self, event: String) -> bool {
        self.push_as(event, true)
    }

    fn push_as(&self, event: String, log: bool) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        // The channel is unbounded so an idle session costs no preallocated queue (a
        // bounded one holds all EVENT_QUEUE slots from the start: 128 KiB per session);
        // this check is the bound. Concurrent pushers may pass it together, which
        // overshoots by at most one event each.
        let room = self.events_tx.len() < if log { LOG_SHARE } else { EVENT_QUEUE };
        if room && self.events_tx.send(event).is_ok() {
            return true;
        }
        let report = self.drops.lock().note(log, Instant::now());
        if let Some((n, logs)) = report {
            log::warn!(
                target: "mcprouter::session",
                "session {} event queue is full: {n} events dropped ({logs} of them log messages)",
                self.id
            );
        }
        false
    }

    /// Marks a client request id as in flight; `None` if it already is.
    pub(crate) fn claim_id<'a>(&'a self, id: &'a str) -> Option<IdClaim<'a>> {
        match self.inflight.lock().entry(id.to_owned()) {
            Entry::Occupied(_) => return None,
            Entry::Vacant(v) => {
                v.insert(Handling { claimed: true, ..Handling::default() });
            }
        }
        // The claim borrows the id from the request it guards: one copy a call, not two.
        Some(IdClaim { session: self, id })
    }

    /// Whether request `id` was cancelled before it could be sent.
    pub(crate) fn is_cancelled(&self, id: &str) -> bool {
        self.inflight.lock().get(id).is_some_and(|h| h.cancelled)
    }

    /// Cancels the client's request `id`: its call in flight, taken out (the caller tells its
    /// backend), or, when it has none now, a mark that cancels its next send.
    pub(crate) fn cancel_request(&self, id: &str) -> Option<(usize, u64)> {
        let mut inflight = self.inflight.lock();
        let h = inflight.get_mut(id)?;
        let sent = h.sent.take();
        if sent.is_none() {
            h.cancelled = true;
        }
        if !h.claimed {
            inflight.remove(id);
        }
        sent
    }

    /// Enters a sent call for cancellation; false when the client had cancelled it
    /// already, in which case it is not entered and the caller cancels it.
    pub(crate) fn enter_inflight(&self, id: &str, backend: usize, call: u64) -> bool {
        let mut inflight = self.inflight.lock();
        let h = match inflight.get_mut(id) {
            Some(h) => h,
            None => inflight.entry(id.to_owned()).or_default(),
        };
        if h.cancelled {
            return false;
        }
        h.sent = Some((backend, call));
        true
    }

    /// The call sent for request `id` is over (answered, failed or timed out); what it was.
    pub(crate) fn leave_inflight(&self, id: &str) -> Option<(usize, u64)> {
        let mut inflight = self.inflight.lock();
        let h = inflight.get_mut(id)?;
        let sent = h.sent.take();
        if !h.claimed {
            inflight.remove(id);
        }
        sent
    }

    /// Takes every call in flight (the session is closing).
    pub(crate) fn take_inflight(&self) -> Vec<(usize, u64)> {
        let mut inflight = self.inflight.lock();
        let sent = inflight.values_mut().filter_map(|h| h.sent.take()).collect();
        inflight.retain(|_, h| h.claimed);
        sent
    }

    /// Whether this client can answer a server-to-client request needing `capability`.
    /// A client that never sent `initialize` (embedded use) is given the benefit of the doubt.
    fn accepts(&self, capability: &str) -> bool {
        let c = self.client.lock();
        !c.initialized || c.capabilities.get(capability).is_some()
    }

    /// [`accepts`](Self::accepts) down to the elicitation mode: `elicitation: {}` means form
    /// only, and a URL-mode request needs `elicitation.url` (2025-11-25).
    fn accepts_request(&self, method: &str, params: Option<&RawValue>) -> bool {
        let capability = method.split('/').next().unwrap_or_default();
        if method != "elicitation/create" {
            return self.accepts(capability);
        }
        #[derive(serde::Deserialize)]
        struct Mode {
            mode: Option<String>,
        }
        let mode = params.and_then(|p| serde_json::from_str::<Mode>(p.get()).ok()).and_then(|m| m.mode);
        let c = self.client.lock();
        if !c.initialized {
            return true;
        }
        let Some(e) = c.capabilities.get("elicitation") else { return false };
        let declared_modes = e.get("form").is_some() || e.get("url").is_some();
        match mode.as_deref().unwrap_or("form") {
            "url" => e.get("url").is_some(),
            _ => !declared_modes || e.get("form").is_some(),
        }
    }

    /// Whether this client initialized and declared `capability` (no benefit of the doubt).
    pub(crate) fn declares(&self, capability: &str) -> bool {
        let c = self.client.lock();
        c.initialized && c.capabilities.get(capability).is_some()
    }
}

/// Counts a session's call on a backend as in flight until dropped (see `Hub::sole_caller`).
pub(crate) struct CallerGuard {
    hub: Arc<Hub>,
    backend: usize,
    session: u64,
}

impl Drop for CallerGuard {
    fn drop(&mut self) {
        let mut callers = self.hub.callers.lock();
        if let Some(n) = callers.get_mut(&(self.backend, self.session)) {
            *n -= 1;
            if *n == 0 {
                callers.remove(&(self.backend, self.session));
            }
        }
    }
}

/// Holds a URI's subscription gate until dropped.
pub(crate) struct UriGate<'a> {
    hub: &'a Hub,
    uri: String,
}

impl Drop for UriGate<'_> {
    fn drop(&mut self) {
        self.hub.gates.lock().remove(&self.uri);
        self.hub.gate_free.notify_all();
    }
}

/// 128 random bits in hex. A guessable token would let any backend push progress into
/// another backend's call and keep it alive up to the hard deadline.
fn unguessable_token() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // The OS generator is not expected to fail; if it does, std's per-process random
        // SipHash keys still make the tokens unpredictable from outside.
        use std::hash::BuildHasher;
        let s = std::collections::hash_map::RandomState::new();
        let nanos = Instant::now().elapsed().as_nanos();
        b[..8].copy_from_slice(&s.hash_one((nanos, 1u8)).to_le_bytes());
        b[8..].copy_from_slice(&s.hash_one((nanos, 2u8)).to_le_bytes());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Hashes the router's own numbers (backend ids, session ids): no client picks them, so
/// SipHash's protection against flooding buys nothing here, and `callers` is touched twice on
/// every call (about 200 instructions a hash with SipHash, a handful with this).
#[derive(Default)]
struct PairHasher(u64);

impl std::hash::Hasher for PairHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        // Multiplicative mixing: hashbrown reads the top bits too.
        self.0 = (self.0.rotate_left(26) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// Whether one session can be held responsible for what a backend sends on its own.
#[derive(Debug, PartialEq, Eq)]
enum Attribution {
    One(u64),
    Nobody,
    Several,
}

pub(crate) struct Hub {
    sessions: RwLock<HashMap<u64, Arc<SessionShared>>>,
    progress: Mutex<HashMap<String, Progress>>,
    /// (backend id, session) → calls of that session in flight on that backend. Backends are
    /// named by id here and everywhere in the hub: ids are never reused, so an entry made
    /// before a reload can never be taken for another backend after it.
    callers: Mutex<HashMap<(usize, u64), usize, BuildHasherDefault<PairHasher>>>,
    /// Backend id → the session it serves alone (`scope: session`): what such a backend
    /// sends on its own can only be meant for that session.
    owned: RwLock<HashMap<usize, u64>>,
    /// URI → backend the subscription went through → subscribed sessions. Exact URIs only.
    subscriptions: Mutex<HashMap<String, HashMap<usize, HashSet<u64>>>>,
    /// URIs whose subscription is being changed; see `subscription_gate`.
    gates: Mutex<HashSet<String>>,
    gate_free: Condvar,
    /// Relays waiting in all sessions, so the sweep costs nothing when there are none.
    relays_waiting: AtomicUsize,
    /// Progress times are stored as nanoseconds since this instant.
    pub base: std::time::Instant,
    next_relay: AtomicU64,
    next_session: AtomicU64,
    events: Sender<Event>,
    /// Server-to-client requests across eras.
    pub mrtr: Arc<crate::mrtr::Mrtr>,
}

impl Hub {
    pub(crate) fn new(events: Sender<Event>) -> Hub {
        Hub {
            sessions: RwLock::new(HashMap::new()),
            progress: Mutex::new(HashMap::new()),
            callers: Mutex::new(HashMap::default()),
            owned: RwLock::new(HashMap::new()),
            subscriptions: Mutex::new(HashMap::new()),
            gates: Mutex::new(HashSet::new()),
            gate_free: Condvar::new(),
            relays_waiting: AtomicUsize::new(0),
            base: std::time::Instant::now(),
            next_relay: AtomicU64::new(1),
            next_session: AtomicU64::new(1),
            events,
            mrtr: Arc::new(crate::mrtr::Mrtr::new()),
        }
    }

    pub(crate) fn open_session(&self, client_id: Option<&str>) -> Arc<SessionShared> {
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        let (events_tx, events_rx) = unbounded();
        let s = Arc::new(SessionShared {
            id,
            client_id: client_id.map_or_else(|| format!("session-{id}"), str::to_owned),
            events_tx,
            events_rx,
            client: Mutex::new(ClientState::default()),
            relays: Mutex::new(ClientKeyed::default()),
            inflight: Mutex::new(ClientKeyed::default()),
            drops: Mutex::new(Drops::default()),
            closed: AtomicBool::new(false),
        });
        self.sessions.write().insert(id, Arc::clone(&s));
        s
    }

    pub(crate) fn close_session(&self, id: u64) -> Option<Arc<SessionShared>> {
        self.progress.lock().retain(|_, p| p.session != id);
        let s = self.sessions.write().remove(&id);
        if let Some(s) = &s {
            if let Some((n, logs)) = s.drops.lock().take() {
                log::warn!(target: "mcprouter::session", "session {id} closed; {n} events had been dropped ({logs} of them log messages)");
            }
            self.relays_gone(s.relays.lock().len());
        }
        s
    }

    pub(crate) fn session_count(&self) -> usize {
        self.sessions.read().len()
    }

    /// Sends `event` to every open session.
    pub(crate) fn broadcast(&self, event: &str) {
        for s in self.sessions.read().values() {
            s.push(event.to_owned());
        }
    }

    /// Sends `event` to the open sessions whose client id `to` accepts (the policy's
    /// per-client views: a `list_changed` goes only where the view changed).
    pub(crate) fn broadcast_to(&self, event: &str, to: impl Fn(&str) -> bool) {
        for s in self.sessions.read().values().filter(|s| to(&s.client_id)) {
            s.push(event.to_owned());
        }
    }

    /// Swaps a client's progress token for an unguessable one, so that two clients using
    /// the same token on one shared backend cannot receive each other's progress, and no
    /// backend can forge progress for a call it does not serve. Progress counts only once
    /// `bind_progress` names the backend.
    pub(crate) fn register_progress(&self, session: u64, client_token: &RawValue) -> (String, Arc<AtomicU64>) {
        let token = format!("\"mcprouter-p{}\"", unguessable_token());
        let last = Arc::new(AtomicU64::new(0));
        let entry = Progress { session, backend: None, client_token: client_token.to_owned(), last: Arc::clone(&last) };
        self.progress.lock().insert(token.clone(), entry);
        (token, last)
    }

    /// The backend an attempt of the call with `token` goes to: from now on only its
    /// progress is relayed (an abandoned attempt elsewhere no longer counts).
    pub(crate) fn bind_progress(&self, token: &str, backend: usize) {
        if let Some(p) = self.progress.lock().get_mut(token) {
            p.backend = Some(backend);
        }
    }

    pub(crate) fn unregister_progress(&self, token: &str) {
        self.progress.lock().remove(token);
    }

    /// Counts a call of `session` on `backend` as in flight until the guard drops. Taken
    /// before the call is sent, so whatever the backend says about it finds it counted.
    pub(crate) fn call_started(hub: &Arc<Hub>, backend: usize, session: u64) -> CallerGuard {
        *hub.callers.lock().entry((backend, session)).or_insert(0) += 1;
        CallerGuard { hub: Arc::clone(hub), backend, session }
    }

    /// Who has calls in flight on `backend`. Only a lone caller may be handed what the
    /// backend sends on its own (stdio carries no link from it to the call that caused it).
    fn sole_caller(&self, backend: usize) -> Attribution {
        let callers = self.callers.lock();
        let mut found = callers.keys().filter(|(b, _)| *b == backend).map(|(_, s)| *s);
        match (found.next(), found.next()) {
            (None, _) => Attribution::Nobody,
            (Some(s), None) => Attribution::One(s),
            (Some(_), Some(_)) => Attribution::Several,
        }
    }

    /// Who unsolicited traffic from `backend` belongs to: the lone session with calls in
    /// flight there; with none, the router's only open session, if it has just one (as
    /// under `mcprouter serve`): nobody else could be meant, so nothing is withheld from it
    /// that a direct connection would have delivered.
    fn attribute(&self, backend: usize) -> Attribution {
        if let Some(s) = self.owned.read().get(&backend) {
            return Attribution::One(*s);
        }
        match self.sole_caller(backend) {
            Attribution::Nobody => {
                let sessions = self.sessions.read();
                let mut open = sessions.keys();
                match (open.next(), open.next()) {
                    (Some(s), None) => Attribution::One(*s),
                    _ => Attribution::Nobody,
                }
            }
            found => found,
        }
    }

    /// The one open, initialized session that declared the roots capability, if exactly one did.
    fn sole_roots_client(&self) -> Option<u64> {
        let sessions = self.sessions.read();
        let mut found = sessions.values().filter(|s| s.declares("roots")).map(|s| s.id);
        match (found.next(), found.next()) {
            (Some(s), None) => Some(s),
            _ => None,
        }
    }

    /// Serializes subscription changes to one URI: the decision "first subscriber" or
    /// "last one out" and the message it sends to the backend happen as one step, so a
    /// subscribe cannot overtake the unsubscribe that preceded it.
    pub(crate) fn subscription_gate(&self, uri: &str) -> UriGate<'_> {
        let mut gates = self.gates.lock();
        while gates.contains(uri) {
            self.gate_free.wait(&mut gates);
        }
        gates.insert(uri.to_owned());
        UriGate { hub: self, uri: uri.to_owned() }
    }

    /// The backend `session`'s subscription to `uri` went through, if it has one.
    pub(crate) fn subscribed_via(&self, uri: &str, session: u64) -> Option<usize> {
        let subs = self.subscriptions.lock();
        subs.get(uri)?.iter().find(|(_, s)| s.contains(&session)).map(|(b, _)| *b)
    }

    /// A backend among `candidates` already subscribed to `uri` for some session.
    pub(crate) fn subscribed_backend(&self, uri: &str, candidates: &[usize]) -> Option<usize> {
        let subs = self.subscriptions.lock();
        let per_backend = subs.get(uri)?;
        candidates.iter().copied().find(|b| per_backend.get(b).is_some_and(|s| !s.is_empty()))
    }

    pub(crate) fn add_subscriber(&self, uri: &str, backend: usize, session: u64) {
        let mut subs = self.subscriptions.lock();
        subs.entry(uri.to_owned()).or_default().entry(backend).or_default().insert(session);
    }

    /// Removes `session`'s subscription to `uri`: the backend it went through, and whether
    /// it was the last subscriber there (then the backend should be told).
    pub(crate) fn remove_subscriber(&self, uri: &str, session: u64) -> Option<(usize, bool)> {
        let mut subs = self.subscriptions.lock();
        let per_backend = subs.get_mut(uri)?;
        let backend = per_backend.iter().find(|(_, s)| s.contains(&session)).map(|(b, _)| *b)?;
        let last = per_backend.get_mut(&backend).is_some_and(|s| {
            s.remove(&session);
            s.is_empty()
        });
        if last {
            per_backend.remove(&backend);
        }
        if per_backend.is_empty() {
            subs.remove(uri);
        }
        Some((backend, last))
    }

    /// The URIs `session` is subscribed to.
    pub(crate) fn subscriptions_of(&self, session: u64) -> Vec<String> {
        let subs = self.subscriptions.lock();
        subs.iter().filter(|(_, m)| m.values().any(|s| s.contains(&session))).map(|(u, _)| u.clone()).collect()
    }

    /// A reload removed `backend` (or its session ended) and it has stopped: subscriptions made through it are
    /// forgotten (its id is never reused, so they could only go stale), and the next
    /// subscriber to such a URI goes to whoever serves it now.
    pub(crate) fn backend_stopped(&self, backend: usize) {
        self.owned.write().remove(&backend);
        let mut subs = self.subscriptions.lock();
        for per_backend in subs.values_mut() {
            per_backend.remove(&backend);
        }
        subs.retain(|_, m| !m.is_empty());
    }

    /// `backend` serves `session` alone (see `owned`), until it stops.
    pub(crate) fn own(&self, backend: usize, session: u64) {
        self.owned.write().insert(backend, session);
    }

    pub(crate) fn backend_down(&self, backend: usize) {
        let _ = self.events.try_send(Event::Down(backend));
    }

    /// Routes a request or notification a backend sent on its own.
    pub(crate) fn received(&self, backend: &dyn Peer, msg: Message<'_>) {
        match msg {
            Message::Request { id, method, params } => match &*method {
                "ping" => {
                    let _ = backend.respond(jsonrpc::result(id.get(), "{}"));
                }
                "sampling/createMessage" | "elicitation/create" | "roots/list" => {
                    self.relay_request(backend, id, &method, params);
                }
                other => {
                    let msg = format!("Method not found: {other}");
                    let _ = backend.respond(jsonrpc::error(Some(id.get()), jsonrpc::METHOD_NOT_FOUND, &msg));
                }
            },
            Message::Notification { method, params } => self.route_notification(backend, &method, params),
            Message::Response { .. } => {}
        }
    }

    fn route_notification(&self, backend: &dyn Peer, method: &str, params: Option<&RawValue>) {
        match method {
            "notifications/progress" => {
                let Some(mut v) = params.and_then(|p| serde_json::from_str::<Value>(p.get()).ok()) else { return };
                let key = v.get("progressToken").map(Value::to_string).unwrap_or_default();
                let target = self.progress.lock().get(&key).filter(|p| p.backend == Some(backend.id())).map(|p| {
                    let nanos = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX).max(1);
                    p.last.store(nanos, Ordering::Release);
                    (p.session, p.client_token.get().to_owned())
                });
                let Some((session, client_token)) = target else {
                    log::debug!(target: "mcprouter::hub", "[{}] progress for a token it was not given; dropped", backend.name());
                    return;
                };
                if let Ok(t) = serde_json::from_str::<Value>(&client_token) {
                    v["progressToken"] = t;
                }
                if let Some(s) = self.sessions.read().get(&session) {
                    s.push(jsonrpc::notification(method, Some(&v.to_string())));
                }
            }
            "notifications/tools/list_changed"
            | "notifications/prompts/list_changed"
            | "notifications/resources/list_changed" => {
                // Only the first ask since the dispatcher last looked wakes it; the rest are
                // counted, and a lost wake-up is caught by its housekeeping tick.
                if backend.ask_refresh() {
                    let _ = self.events.try_send(Event::Refresh);
                }
            }
            "notifications/resources/updated" => {
                let uri = params
                    .and_then(|p| serde_json::from_str::<Value>(p.get()).ok())
                    .and_then(|v| v.get("uri").and_then(Value::as_str).map(str::to_owned));
                let Some(uri) = uri else { return };
                // Only subscriptions made through this backend: another backend has no say
                // about resources it does not serve.
                let targets: Vec<u64> = self
                    .subscriptions
                    .lock()
                    .get(&uri)
                    .and_then(|m| m.get(&backend.id()))
                    .map(|s| s.iter().copied().collect())
                    .unwrap_or_default();
                if targets.is_empty() {
                    return;
                }
                let line = jsonrpc::notification(method, params.map(RawValue::get));
                let sessions = self.sessions.read();
                for s in targets.iter().filter_map(|id| sessions.get(id)) {
                    s.push(line.clone());
                }
            }
            "notifications/cancelled" => {
                // The backend gave up on a request it sent us: tell the client under its id.
                let Some(v) = params.and_then(|p| serde_json::from_str::<Value>(p.get()).ok()) else { return };
                let Some(req) = v.get("requestId").map(Value::to_string) else { return };
                for s in self.sessions.read().values() {
                    let mut relays = s.relays.lock();
                    let key = relays
                        .iter()
                        .find(|(_, r)| r.backend == backend.id() && r.backend_id.get() == req)
                        .map(|(k, _)| k.clone());
                    if let Some(k) = key {
                        relays.remove(&k);
                        drop(relays);
                        self.relays_gone(1);
                        let mut out = v.clone();
                        if let Ok(id) = serde_json::from_str::<Value>(&k) {
                            out["requestId"] = id;
                        }
                        s.push(jsonrpc::notification(method, Some(&out.to_string())));
                        return;
                    }
                }
            }
            "notifications/message" => {
                // Same rule as server-to-client requests: a log line may carry what a
                // client's call revealed, so it never goes to a client that cannot be the
                // one concerned. Unattributable lines are dropped, not broadcast.
                let Attribution::One(session) = self.attribute(backend.id()) else {
                    log::debug!(target: "mcprouter::hub", "[{}] log message with no single calling client; dropped", backend.name());
                    return;
                };
                if let Some(s) = self.sessions.read().get(&session) {
                    s.push_log(jsonrpc::notification(method, params.map(RawValue::get)));
                }
            }
            other => log::debug!(target: "mcprouter::hub", "[{}] notification {other} not relayed", backend.name()),
        }
    }

    /// Relays a server-to-client request to the one session with calls in flight on this
    /// backend. Stdio carries no link between such a request and the call that caused it,
    /// so with no caller, or several, the request cannot be attributed and is refused:
    /// guessing would hand one client's sampling prompt to another.
    fn relay_request(&self, backend: &dyn Peer, id: &RawValue, method: &str, params: Option<&RawValue>) {
        let refuse = |why: &str| {
            let msg = format!("{method} cannot be attributed to a client: {why}");
            log::info!(target: "mcprouter::hub", "[{}] {msg}", backend.name());
            let _ = backend.respond(jsonrpc::error(Some(id.get()), jsonrpc::INTERNAL_ERROR, &msg));
        };
        let session = match self.attribute(backend.id()) {
            Attribution::One(s) => s,
            // Roots belong to a client, not to a call: a server asks for them when it starts
            // or after `roots/list_changed`. With exactly one client that declared roots, they
            // are that client's; with several, a shared server cannot be told whose to use.
            Attribution::Nobody if method == "roots/list" => match self.sole_roots_client() {
                Some(s) => s,
                None => return refuse("no call is in flight and not exactly one client declared roots"),
            },
            Attribution::Nobody => return refuse("no client call is in flight on this server"),
            Attribution::Several => return refuse("several clients have calls in flight on this server"),
        };
        let Some(session) = self.sessions.read().get(&session).cloned() else {
            return refuse("the calling client has gone");
        };
        // A 2026-07-28 call takes it as an input request (`mrtr.rs`).
        let inbound = crate::mrtr::Inbound {
            backend: backend.id(),
            backend_id: id.to_owned(),
            method: method.to_owned(),
            params: params.map(ToOwned::to_owned),
        };
        match self.mrtr.offer(&session, inbound) {
            Some(Ok(())) => return,
            Some(Err(why)) => return refuse(&why),
            None => {}
        }
        if !session.accepts_request(method, params) {
            let msg = format!("the calling client does not support {method}");
            let _ = backend.respond(jsonrpc::error(Some(id.get()), jsonrpc::INTERNAL_ERROR, &msg));
            return;
        }
        let n = self.next_relay.fetch_add(1, Ordering::Relaxed);
        let client_id = format!("\"mcprouter-{n}\"");
        {
            let mut relays = session.relays.lock();
            if relays.len() >= MAX_RELAYS {
                drop(relays);
                let msg = format!("the client has {MAX_RELAYS} requests unanswered; {method} refused");
                let _ = backend.respond(jsonrpc::error(Some(id.get()), jsonrpc::OVERLOADED, &msg));
                return;
            }
            let relay =
                Relay { backend: backend.id(), backend_id: id.to_owned(), expires: Instant::now() + backend.timeout() };
            relays.insert(client_id.clone(), relay);
            self.relays_waiting.fetch_add(1, Ordering::Relaxed);
        }
        if !session.push(jsonrpc::request(&client_id, method, params.map(RawValue::get))) {
            if session.relays.lock().remove(&client_id).is_some() {
                self.relays_gone(1);
            }
            let msg = format!("the client cannot take {method} now");
            let _ = backend.respond(jsonrpc::error(Some(id.get()), jsonrpc::INTERNAL_ERROR, &msg));
        }
    }

    /// A relay the client answered (or that was otherwise settled) leaves the count.
    pub(crate) fn relay_settled(&self) {
        self.relays_gone(1);
    }

    /// Saturating: a relay settled by two paths at once (client answer racing a close)
    /// must not wrap the count.
    fn relays_gone(&self, n: usize) {
        let _ = self.relays_waiting.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| Some(w.saturating_sub(n)));
    }

    /// Relayed requests the client left unanswered past the backend's timeout: the backend
    /// gets an error (it would otherwise wait forever) and the client a cancellation.
    /// Called by the dispatcher's housekeeping tick.
    /// `backend` finds a backend by id (it may be draining after a reload).
    pub(crate) fn expire_relays(&self, now: Instant, backend: &dyn Fn(usize) -> Option<Arc<dyn Peer>>) {
        if self.relays_waiting.load(Ordering::Relaxed) == 0 {
            return;
        }
        let sessions: Vec<Arc<SessionShared>> = self.sessions.read().values().cloned().collect();
        for s in sessions {
            let expired: Vec<(String, Relay)> = {
                let mut relays = s.relays.lock();
                let keys: Vec<String> =
                    relays.iter().filter(|(_, r)| r.expires <= now).map(|(k, _)| k.clone()).collect();
                keys.into_iter().filter_map(|k| relays.remove(&k).map(|r| (k, r))).collect()
            };
            for (client_id, r) in expired {
                self.relays_gone(1);
                if let Some(b) = backend(r.backend) {
                    let msg = format!("the client did not answer within {} ms", b.timeout().as_millis());
                    let _ = b.respond(jsonrpc::error(Some(r.backend_id.get()), jsonrpc::REQUEST_TIMEOUT, &msg));
                }
                let params = format!("{{\"requestId\":{client_id},\"reason\":\"timed out\"}}");
                s.push(jsonrpc::notification("notifications/cancelled", Some(&params)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hub() -> Arc<Hub> {
        let (tx, _rx) = crossbeam_channel::bounded(4);
        Arc::new(Hub::new(tx))
    }

    #[test]
    fn progress_tokens_are_128_random_bits() {
        let (a, b) = (unguessable_token(), unguessable_token());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn progress_counts_only_from_the_bound_backend() {
        let h = hub();
        let (token, _) = h.register_progress(1, &RawValue::from_string("\"t\"".into()).unwrap());
        assert_eq!(h.progress.lock()[&token].backend, None, "no backend before the attempt is sent");
        h.bind_progress(&token, 3);
        assert_eq!(h.progress.lock()[&token].backend, Some(3));
    }

    #[test]
    fn drop_warnings_are_rate_limited_and_carry_counts() {
        let mut d = Drops::default();
        let t0 = Instant::now();
        assert_eq!(d.note(true, t0), Some((1, 1)), "the first drop is reported at once");
        let reports = (0..100_000).filter(|i| d.note(i % 2 == 0, t0 + Duration::from_millis(500)).is_some()).count();
        assert_eq!(reports, 0, "nothing more within the interval");
        assert_eq!(d.note(false, t0 + Duration::from_secs(1)), Some((100_001, 50_000)));
        assert_eq!(d.take(), None);
    }

    #[test]
    fn logging_gets_only_a_share_of_the_event_queue() {
        let h = hub();
        let s = h.open_session(None);
        let queued = (0..EVENT_QUEUE).filter(|_| s.push_log("log".into())).count();
        assert_eq!(queued, LOG_SHARE);
        let others = (0..EVENT_QUEUE - LOG_SHARE).filter(|_| s.push("progress".into())).count();
        assert_eq!(others, EVENT_QUEUE - LOG_SHARE, "the rest of the queue is left for everything else");
        assert!(!s.push("one too many".into()));
    }

    #[test]
    fn url_elicitation_needs_the_url_mode_declared() {
        let h = hub();
        let s = h.open_session(None);
        let raw = |t: &str| RawValue::from_string(t.to_owned()).unwrap();
        let (url, form) = (raw(r#"{"mode":"url","url":"https://x"}"#), raw(r#"{"message":"m"}"#));
        let e = "elicitation/create";
        assert!(s.accepts_request(e, Some(&url)), "a client that never initialized gets the benefit of the doubt");
        let cases = [
            (json!({}), false, false),
            (json!({"elicitation": {}}), true, false),
            (json!({"elicitation": {"form": {}}}), true, false),
            (json!({"elicitation": {"url": {}}}), false, true),
            (json!({"elicitation": {"form": {}, "url": {}}}), true, true),
        ];
        for (caps, form_ok, url_ok) in cases {
            *s.client.lock() = ClientState { initialized: true, capabilities: caps.clone(), ..ClientState::default() };
            assert_eq!(s.accepts_request(e, Some(&form)), form_ok, "form with {caps}");
            assert_eq!(s.accepts_request(e, Some(&url)), url_ok, "url with {caps}");
            assert!(!s.accepts_request("sampling/createMessage", None));
        }
    }

    #[test]
    fn only_a_lone_caller_is_attributed() {
        let h = hub();
        assert_eq!(h.sole_caller(0), Attribution::Nobody);
        let a1 = Hub::call_started(&h, 0, 7);
        let a2 = Hub::call_started(&h, 0, 7);
        let other_backend = Hub::call_started(&h, 1, 8);
        assert_eq!(h.sole_caller(0), Attribution::One(7), "two calls of one session are still one session");
        let b = Hub::call_started(&h, 0, 8);
        assert_eq!(h.sole_caller(0), Attribution::Several);
        drop((a1, a2));
        assert_eq!(h.sole_caller(0), Attribution::One(8));
        drop((b, other_backend));
        assert_eq!(h.sole_caller(0), Attribution::Nobody);
        assert!(h.callers.lock().is_empty());
        // With no caller, a router's only session is the one meant; with two, nobody is.
        let only = h.open_session(None);
        assert_eq!(h.attribute(0), Attribution::One(only.id));
        let _second = h.open_session(None);
        assert_eq!(h.attribute(0), Attribution::Nobody);
    }

    #[test]
    fn subscribers_are_counted_per_uri_per_backend() {
        let h = hub();
        h.add_subscriber("u", 0, 1);
        h.add_subscriber("u", 0, 2);
        assert_eq!(h.subscribed_backend("u", &[1, 0]), Some(0));
        assert_eq!(h.subscribed_backend("u/1", &[0]), None, "exact URIs only");
        assert_eq!(h.subscribed_via("u", 2), Some(0));
        assert_eq!(h.remove_subscriber("u", 1), Some((0, false)));
        assert_eq!(h.remove_subscriber("u", 1), None);
        assert_eq!(h.subscriptions_of(2), ["u"]);
        assert_eq!(h.remove_subscriber("u", 2), Some((0, true)), "the last one out");
        assert!(h.subscriptions.lock().is_empty());
    }

    #[test]
    fn a_stopped_backend_takes_its_subscriptions_along() {
        let h = hub();
        h.add_subscriber("u", 3, 1);
        h.add_subscriber("u", 4, 2);
        h.add_subscriber("v", 3, 1);
        h.backend_stopped(3);
        assert_eq!(h.subscribed_via("u", 1), None);
        assert_eq!(h.subscribed_via("u", 2), Some(4), "other backends' subscriptions stay");
        assert_eq!(h.subscriptions_of(1), Vec::<String>::new());
        assert_eq!(h.subscriptions.lock().len(), 1);
    }

    #[test]
    fn a_request_id_can_be_in_flight_once() {
        let h = hub();
        let s = h.open_session(None);
        let first = s.claim_id("1");
        assert!(first.is_some());
        assert!(s.claim_id("1").is_none());
        assert!(s.claim_id("\"1\"").is_some(), "a string id is another id");
        drop(first);
        assert!(s.claim_id("1").is_some());
    }
}
