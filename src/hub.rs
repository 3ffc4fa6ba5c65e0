//! The hub: what backends and sessions share. It knows every open session, maps progress
//! tokens back to the session that owns them, and routes whatever a backend sends on its own
//! (notifications, server-to-client requests) to the right client.
//!
//! Backend reader threads call into the hub, so nothing here may block: session queues are
//! `try_send`, and catalog refreshes are handed to the dispatcher thread as events.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender, bounded};
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::backend::Backend;
use crate::jsonrpc::{self, Message};

/// Work for the dispatcher thread.
pub(crate) enum Event {
    /// A backend said one of its lists changed.
    Refresh(usize),
    /// A backend went down; its items leave the catalog.
    Down(usize),
}

/// Capacity of a session's event queue; beyond it events are dropped with a warning rather
/// than blocking a backend's reader thread.
const EVENT_QUEUE: usize = 4096;

/// A client's progress token, swapped for a router-unique one.
struct Progress {
    session: u64,
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
}

/// A server-to-client request relayed to a session, waiting for the client's answer.
pub(crate) struct Relay {
    pub backend: usize,
    pub backend_id: Box<RawValue>,
}

/// The part of a session that backends' threads can reach.
pub(crate) struct SessionShared {
    pub id: u64,
    pub client_id: String,
    events_tx: Sender<String>,
    pub events_rx: Receiver<String>,
    pub client: Mutex<ClientState>,
    /// Keyed by the raw JSON id the client sees.
    pub relays: Mutex<HashMap<String, Relay>>,
    pub subscriptions: Mutex<HashSet<String>>,
    /// Client request id (raw JSON) → (backend, router id), for `notifications/cancelled`.
    pub inflight: Mutex<HashMap<String, (usize, u64)>>,
    pub closed: AtomicBool,
}

impl SessionShared {
    /// Queues an event for `next_event`; false when the queue is full or closed.
    pub(crate) fn push(&self, event: String) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        if self.events_tx.try_send(event).is_err() {
            log::warn!(target: "mcprouter::session", "session {} event queue is full; event dropped", self.id);
            return false;
        }
        true
    }

    /// Whether this client can answer a server-to-client request needing `capability`.
    /// A client that never sent `initialize` (embedded use) is given the benefit of the doubt.
    fn accepts(&self, capability: &str) -> bool {
        let c = self.client.lock();
        !c.initialized || c.capabilities.get(capability).is_some()
    }
}

pub(crate) struct Hub {
    sessions: RwLock<HashMap<u64, Arc<SessionShared>>>,
    progress: Mutex<HashMap<String, Progress>>,
    /// Progress times are stored as nanoseconds since this instant.
    pub base: std::time::Instant,
    next_token: AtomicU64,
    next_relay: AtomicU64,
    next_session: AtomicU64,
    events: Sender<Event>,
}

impl Hub {
    pub(crate) fn new(events: Sender<Event>) -> Hub {
        Hub {
            sessions: RwLock::new(HashMap::new()),
            progress: Mutex::new(HashMap::new()),
            base: std::time::Instant::now(),
            next_token: AtomicU64::new(1),
            next_relay: AtomicU64::new(1),
            next_session: AtomicU64::new(1),
            events,
        }
    }

    pub(crate) fn open_session(&self, client_id: Option<&str>) -> Arc<SessionShared> {
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        let (events_tx, events_rx) = bounded(EVENT_QUEUE);
        let s = Arc::new(SessionShared {
            id,
            client_id: client_id.map_or_else(|| format!("session-{id}"), str::to_owned),
            events_tx,
            events_rx,
            client: Mutex::new(ClientState::default()),
            relays: Mutex::new(HashMap::new()),
            subscriptions: Mutex::new(HashSet::new()),
            inflight: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        });
        self.sessions.write().insert(id, Arc::clone(&s));
        s
    }

    pub(crate) fn close_session(&self, id: u64) -> Option<Arc<SessionShared>> {
        self.progress.lock().retain(|_, p| p.session != id);
        self.sessions.write().remove(&id)
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

    /// Swaps a client's progress token for a router-unique one, so that two clients using
    /// the same token on one shared backend cannot receive each other's progress.
    pub(crate) fn register_progress(&self, session: u64, client_token: &RawValue) -> (String, Arc<AtomicU64>) {
        let n = self.next_token.fetch_add(1, Ordering::Relaxed);
        let token = format!("\"mcprouter-p{n}\"");
        let last = Arc::new(AtomicU64::new(0));
        let entry = Progress { session, client_token: client_token.to_owned(), last: Arc::clone(&last) };
        self.progress.lock().insert(token.clone(), entry);
        (token, last)
    }

    pub(crate) fn unregister_progress(&self, token: &str) {
        self.progress.lock().remove(token);
    }

    pub(crate) fn backend_down(&self, backend: usize) {
        let _ = self.events.try_send(Event::Down(backend));
    }

    /// Routes a request or notification a backend sent on its own.
    pub(crate) fn from_backend(&self, backend: &Backend, msg: Message<'_>) {
        match msg {
            Message::Request { id, method, params } => match &*method {
                "ping" => {
                    let _ = backend.send_line(jsonrpc::result(id.get(), "{}"));
                }
                "sampling/createMessage" | "elicitation/create" | "roots/list" => {
                    self.relay_request(backend, id, &method, params);
                }
                other => {
                    let msg = format!("Method not found: {other}");
                    let _ = backend.send_line(jsonrpc::error(Some(id.get()), jsonrpc::METHOD_NOT_FOUND, &msg));
                }
            },
            Message::Notification { method, params } => self.route_notification(backend, &method, params),
            Message::Response { .. } => {}
        }
    }

    fn route_notification(&self, backend: &Backend, method: &str, params: Option<&RawValue>) {
        match method {
            "notifications/progress" => {
                let Some(mut v) = params.and_then(|p| serde_json::from_str::<Value>(p.get()).ok()) else { return };
                let key = v.get("progressToken").map(Value::to_string).unwrap_or_default();
                let target = self.progress.lock().get(&key).map(|p| {
                    let nanos = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX).max(1);
                    p.last.store(nanos, Ordering::Release);
                    (p.session, p.client_token.get().to_owned())
                });
                let Some((session, client_token)) = target else { return };
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
                let _ = self.events.try_send(Event::Refresh(backend.index));
            }
            "notifications/resources/updated" => {
                let uri = params
                    .and_then(|p| serde_json::from_str::<Value>(p.get()).ok())
                    .and_then(|v| v.get("uri").and_then(Value::as_str).map(str::to_owned));
                let Some(uri) = uri else { return };
                let line = jsonrpc::notification(method, params.map(RawValue::get));
                for s in self.sessions.read().values() {
                    let subscribed = s.subscriptions.lock().iter().any(|sub| uri.starts_with(sub.as_str()));
                    if subscribed {
                        s.push(line.clone());
                    }
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
                        .find(|(_, r)| r.backend == backend.index && r.backend_id.get() == req)
                        .map(|(k, _)| k.clone());
                    if let Some(k) = key {
                        relays.remove(&k);
                        drop(relays);
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
                let line = jsonrpc::notification(method, params.map(RawValue::get));
                let last = backend.last_caller.load(Ordering::Relaxed);
                let sessions = self.sessions.read();
                match sessions.get(&last) {
                    Some(s) => {
                        s.push(line);
                    }
                    None => sessions.values().for_each(|s| {
                        s.push(line.clone());
                    }),
                }
            }
            other => log::debug!(target: "mcprouter::hub", "[{}] notification {other} not relayed", backend.name()),
        }
    }

    /// Relays a server-to-client request to the session that most recently called this
    /// backend (stdio carries no link between a request and the call that caused it), or
    /// else to the newest session able to answer it.
    fn relay_request(&self, backend: &Backend, id: &RawValue, method: &str, params: Option<&RawValue>) {
        let capability = method.split('/').next().unwrap_or_default();
        let target = {
            let sessions = self.sessions.read();
            let last = backend.last_caller.load(Ordering::Relaxed);
            sessions
                .get(&last)
                .filter(|s| s.accepts(capability))
                .or_else(|| sessions.values().filter(|s| s.accepts(capability)).max_by_key(|s| s.id))
                .cloned()
        };
        let Some(session) = target else {
            let msg = format!("no connected client can answer {method}");
            let _ = backend.send_line(jsonrpc::error(Some(id.get()), jsonrpc::INTERNAL_ERROR, &msg));
            return;
        };
        let n = self.next_relay.fetch_add(1, Ordering::Relaxed);
        let client_id = format!("\"mcprouter-{n}\"");
        session.relays.lock().insert(client_id.clone(), Relay { backend: backend.index, backend_id: id.to_owned() });
        if !session.push(jsonrpc::request(&client_id, method, params.map(RawValue::get))) {
            session.relays.lock().remove(&client_id);
            let msg = format!("the client cannot take {method} now");
            let _ = backend.send_line(jsonrpc::error(Some(id.get()), jsonrpc::INTERNAL_ERROR, &msg));
        }
    }
}
