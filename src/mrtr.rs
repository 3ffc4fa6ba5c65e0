//! Server-to-client requests across eras (2026-07-28 `basic/patterns/mrtr.mdx`).
//!
//! A legacy server asks its client mid-call (`sampling/createMessage`, `elicitation/create`,
//! `roots/list` as JSON-RPC requests); a modern server answers the call `input_required`
//! and the client retries it with `inputResponses` and the echoed `requestState`.
//!
//! - Modern client, legacy backend: the client's call runs on a helper thread that
//!   registers a [`Waiter`]; the hub hands it what the backend asks (`offer`). The client
//!   gets `input_required` with a router-minted `requestState` naming the [`Parked`] call,
//!   which keeps waiting; its retry delivers the answers to the backend and waits again.
//! - Legacy client, modern backend: the session relays each input request to the client as
//!   a JSON-RPC request (`ask`), collects the answers (`answer`) and retries the backend call.
//!
//! This is the router-wide state both need (in the hub, as a stateless front may take a
//! retry on another session); the flows themselves are in `session/mrtr.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use parking_lot::Mutex;
use serde_json::value::RawValue;

use crate::backend::Backend;
use crate::era::{Declared, MODERN};
use crate::hub::SessionShared;
use crate::jsonrpc;

/// Calls parked waiting for a modern client's answers, router-wide; past it a backend's
/// further requests are refused (the call itself goes on).
pub(crate) const MAX_PARKED: usize = 1024;
/// Helper threads running modern clients' calls at once; past it a call runs on the
/// caller's thread and cannot take input.
pub(crate) const MAX_HELPERS: usize = 256;
/// Prefix of the `requestState` the router mints, so a retry carrying a modern backend's
/// own state is told apart (and routed through untouched).
pub(crate) const STATE_PREFIX: &str = "mcprouter-mrtr-";

/// A request a legacy backend sent during a modern client's call.
pub(crate) struct Inbound {
    pub backend: usize,
    pub backend_id: Box<RawValue>,
    pub method: String,
    pub params: Option<Box<RawValue>>,
}

/// A client's answer to a relayed input request: result or error, raw.
pub(crate) type Answer = Result<Box<RawValue>, Box<RawValue>>;
/// An answer tagged with the key of the input request it answers.
pub(crate) type Keyed = (String, Answer);
/// A modern client's call on its helper session: that session, and the call's id there.
pub(crate) type HelperCall = (Arc<SessionShared>, String);
/// An ask waiting for a legacy client's answer: its key, and where the answer goes.
type Ask = (String, Sender<Keyed>);

struct Waiter {
    id: u64,
    session: u64,
    declared: Arc<Declared>,
    /// None: the call runs inline and cannot take input.
    tx: Option<Sender<Inbound>>,
}

/// Unregisters its waiter when dropped.
pub(crate) struct WaiterGuard {
    mrtr: Arc<Mrtr>,
    id: u64,
}

impl Drop for WaiterGuard {
    fn drop(&mut self) {
        self.mrtr.waiters.lock().retain(|w| w.id != self.id);
    }
}

/// A modern client's call waiting for its answers, under the `requestState` it was given.
pub(crate) struct Parked<T> {
    /// The call it is bound to: a state is good for that client's retry of that call only.
    pub binding: String,
    pub done: Receiver<T>,
    pub inbox: Receiver<Inbound>,
    /// Input requests handed to the client, by key, not answered yet.
    pub asked: Vec<(String, Inbound)>,
    pub expires: Instant,
    pub guard: WaiterGuard,
    /// The id the helper's call runs under (raw), for cancellations, and its session.
    pub call: String,
    pub helper: Arc<SessionShared>,
    /// The `progressToken` of the request that started the call.
    pub token: Option<serde_json::Value>,
}

/// Removes a cancellation alias when dropped.
pub(crate) struct AliasGuard {
    mrtr: Arc<Mrtr>,
    key: (u64, String),
}

impl Drop for AliasGuard {
    fn drop(&mut self) {
        self.mrtr.aliases.lock().remove(&self.key);
    }
}

/// See the module docs. `T` is what a finished call hands back (the session's `Out`).
pub(crate) struct Mrtr {
    waiters: Mutex<Vec<Waiter>>,
    parked: Mutex<HashMap<String, Box<ParkedAny>>>,
    /// By (session, id the client saw).
    asks: Mutex<HashMap<(u64, String), Ask>>,
    /// (session, the client's id of the request waiting) → the id its call runs under, so
    /// `notifications/cancelled` for the one reaches the other.
    aliases: Mutex<HashMap<(u64, String), HelperCall>>,
    next: AtomicU64,
    pub helpers: AtomicUsize,
}

type ParkedAny = Parked<crate::session::Done>;

impl Mrtr {
    pub(crate) fn new() -> Mrtr {
        Mrtr {
            waiters: Mutex::new(Vec::new()),
            parked: Mutex::new(HashMap::new()),
            asks: Mutex::new(HashMap::new()),
            aliases: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            helpers: AtomicUsize::new(0),
        }
    }

    /// A router-unique number for ids and keys.
    pub(crate) fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers a modern call of `session` that can take input (`inline`: that cannot).
    pub(crate) fn wait(
        self: &Arc<Self>,
        session: u64,
        declared: Arc<Declared>,
        inline: bool,
    ) -> (WaiterGuard, Receiver<Inbound>) {
        let id = self.next_id();
        let (tx, rx) = unbounded();
        let tx = (!inline).then_some(tx);
        self.waiters.lock().push(Waiter { id, session, declared, tx });
        (WaiterGuard { mrtr: Arc::clone(self), id }, rx)
    }

    /// A request a legacy backend sent, attributed to `session`: `None` when no modern call of
    /// that session is waiting (the legacy relay applies), else whether a waiter took it
    /// (`Err` says why not; the backend is refused with it).
    pub(crate) fn offer(&self, session: &SessionShared, inbound: Inbound) -> Option<Result<(), String>> {
        let waiters = self.waiters.lock();
        let mut mine = waiters.iter().filter(|w| w.session == session.id);
        let w = match (mine.next(), mine.next()) {
            (Some(w), None) => w,
            (Some(_), Some(_)) => {
                return Some(Err(
                    "several 2026-07-28 calls of the client are in flight; it cannot be told which one asks".into(),
                ));
            }
            (None, _) => {
                // A client that speaks only 2026-07-28 can never take a JSON-RPC request.
                let c = session.client.lock();
                let modern_only = !c.initialized && c.protocol_version.as_deref() == Some(MODERN);
                return modern_only.then(|| Err("the 2026-07-28 client has no call that can take input".into()));
            }
        };
        let capability = inbound.method.split('/').next().unwrap_or_default();
        if !w.declared.declares(capability) {
            return Some(Err(format!("the calling client did not declare the {capability} capability")));
        }
        let Some(tx) = &w.tx else {
            return Some(Err(format!(
                "the client's call cannot take input (only tools/call, prompts/get and resources/read can, at most {MAX_HELPERS} at once)"
            )));
        };
        Some(tx.send(inbound).map_err(|_| "the client's call has ended".into()))
    }

    /// While the guard lives, a cancellation of `client_id` in `session` names `call`.
    pub(crate) fn alias(
        self: &Arc<Self>,
        session: u64,
        client_id: &str,
        helper: &Arc<SessionShared>,
        call: &str,
    ) -> AliasGuard {
        let key = (session, client_id.to_owned());
        self.aliases.lock().insert(key.clone(), (Arc::clone(helper), call.to_owned()));
        AliasGuard { mrtr: Arc::clone(self), key }
    }

    /// The modern calls `session` is waiting for, each on its helper session.
    pub(crate) fn calls_of(&self, session: u64) -> Vec<HelperCall> {
        self.aliases.lock().iter().filter(|((s, _), _)| *s == session).map(|(_, c)| c.clone()).collect()
    }

    /// The call (its session, its id) a cancelled client id stands for, if any.
    pub(crate) fn aliased(&self, session: u64, client_id: &str) -> Option<HelperCall> {
        self.aliases.lock().get(&(session, client_id.to_owned())).cloned()
    }

    /// Parks a call under a fresh state; `Err` gives it back when too many wait.
    pub(crate) fn park(&self, parked: Box<ParkedAny>) -> Result<String, Box<ParkedAny>> {
        let mut map = self.parked.lock();
        if map.len() >= MAX_PARKED {
            return Err(parked);
        }
        let state = format!("{STATE_PREFIX}{}", random_hex());
        map.insert(state.clone(), parked);
        Ok(state)
    }

    /// Takes the call parked under `state` if `binding` matches and it has not expired.
    pub(crate) fn resume(&self, state: &str, binding: &str) -> Option<Box<ParkedAny>> {
        let mut map = self.parked.lock();
        let p = map.remove(state)?;
        if p.binding != binding || p.expires <= Instant::now() {
            map.insert(state.to_owned(), p);
            return None;
        }
        Some(p)
    }

    /// Calls parked now (status: `mrtr.parked`).
    pub(crate) fn parked(&self) -> usize {
        self.parked.lock().len()
    }

    /// Ends the parked calls whose client did not come back by `now`: each backend call is
    /// cancelled (so it stops, and frees its helper thread and the client's concurrency
    /// slot), then what it asked, before or after the client was answered, is refused
    /// (the backend would otherwise wait on it). Their states are forgotten, so a late retry
    /// gets -32602. Run by the dispatcher's housekeeping tick, and by modern calls as they
    /// start or park. `backend` finds a backend by id (it may be draining after a reload).
    pub(crate) fn sweep(&self, now: Instant, backend: &dyn Fn(usize) -> Option<Arc<Backend>>) {
        let expired: Vec<ParkedAny> = {
            let mut map = self.parked.lock();
            if map.is_empty() {
                return;
            }
            let keys: Vec<String> = map.iter().filter(|(_, p)| p.expires <= now).map(|(k, _)| k.clone()).collect();
            keys.into_iter().filter_map(|k| map.remove(&k)).map(|p| *p).collect()
        };
        let why = "the client did not come back with its input in time";
        for p in expired {
            let call = p.helper.leave_inflight(&p.call);
            if let Some((b, id)) = call.and_then(|(b, id)| backend(b).map(|b| (b, id))) {
                b.cancel(id, why);
            }
            let later = p.inbox.try_iter().map(|i| (String::new(), i));
            for (_, i) in p.asked.into_iter().chain(later) {
                if let Some(b) = backend(i.backend) {
                    let _ = b.respond(jsonrpc::error(Some(i.backend_id.get()), jsonrpc::REQUEST_TIMEOUT, why));
                }
            }
        }
    }

    /// Registers an input request relayed to a legacy client under a fresh id; its answer
    /// goes to `to`, tagged with `key`.
    pub(crate) fn ask(&self, session: u64, key: &str, to: &Sender<Keyed>) -> String {
        let id = format!("\"mcprouter-ask-{}\"", self.next_id());
        self.asks.lock().insert((session, id.clone()), (key.to_owned(), to.clone()));
        id
    }

    /// Forgets asks nobody waits for any more.
    pub(crate) fn forget(&self, session: u64, ids: &[String]) {
        let mut asks = self.asks.lock();
        for id in ids {
            asks.remove(&(session, id.clone()));
        }
    }

    /// A legacy client's answer: true when it was for a relayed input request.
    pub(crate) fn answer(&self, session: u64, id: &str, answer: Answer) -> bool {
        let Some((key, tx)) = self.asks.lock().remove(&(session, id.to_owned())) else { return false };
        let _ = tx.send((key, answer));
        true
    }
}

/// A channel for one round of asks.
pub(crate) fn answers() -> (Sender<Keyed>, Receiver<Keyed>) {
    bounded(64)
}

/// 128 random bits in hex: a `requestState` must not be guessable, or another client could
/// take over a parked call.
fn random_hex() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        use std::hash::BuildHasher;
        let s = std::collections::hash_map::RandomState::new();
        b[..8].copy_from_slice(&s.hash_one(1u8).to_le_bytes());
        b[8..].copy_from_slice(&s.hash_one(2u8).to_le_bytes());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}
