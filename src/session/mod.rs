//! A `Session`: one MCP client of the router. `handle` takes what the client sends and
//! returns what an MCP server would answer; `next_event` yields what the router sends the
//! client on its own.
//!
//! This file is the front: parsing, batches and the session's life. The rest is split by
//! job: `methods.rs` (the method table and what the router answers itself), `routing.rs`
//! (which backend a name or URI goes to), `attempts.rs` (the resilience loop) and
//! `access.rs` (the access log and request metrics).

mod access;
mod attempts;
mod eras;
mod gate;
mod listen;
mod methods;
mod mrtr;
mod routing;
mod scoped;

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::backend::CallError;
use crate::core::{Core, RouterInner};
use crate::era;
use crate::error::{Error, Result};
use crate::hub::SessionShared;
use crate::jsonrpc::{self, INVALID_PARAMS, Message};
use crate::metrics::Outcome;

/// The most messages one batch may hold.
pub const MAX_BATCH: usize = 1000;
/// The most elements of one batch handled at once.
const BATCH_CONCURRENCY: usize = 16;

/// One MCP client. `Send + Sync`: `handle` may be called from several threads at once
/// (a long `tools/call` must not block the client's answer to a sampling request).
/// Dropping it closes it.
pub struct Session {
    router: Arc<RouterInner>,
    shared: Arc<SessionShared>,
    instances: scoped::Instances,
    /// Open `subscriptions/listen` requests (`listen.rs`).
    listeners: parking_lot::Mutex<Vec<listen::Listener>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("id", &self.shared.id).field("client_id", &self.shared.client_id).finish()
    }
}

/// What a finished call hands back: its outcome and the backend that served it.
pub(crate) type Done = (Out, Option<usize>);

/// What handling one request produced.
pub(crate) enum Out {
    /// A raw `result` value.
    Ok(String),
    /// A raw `error` object, and how the request ended for metrics: decided where the error
    /// is made, from what made it, never by reading the object back.
    Err(String, Outcome),
    /// No reply: the client cancelled the request.
    Nothing,
}

impl Out {
    /// An error the router answers itself; its outcome follows from its code.
    pub(super) fn error(code: i64, msg: &str) -> Out {
        let outcome = match code {
            jsonrpc::REQUEST_TIMEOUT => Outcome::Timeout,
            jsonrpc::OVERLOADED => Outcome::Overload,
            jsonrpc::BACKEND_UNAVAILABLE => Outcome::Unavailable,
            _ => Outcome::Error,
        };
        Out::Err(jsonrpc::error_object(code, msg), outcome)
    }

    /// An error a backend answered (raw): an answer like any other, counted as an error.
    pub(super) fn backend_error(raw: Box<RawValue>) -> Out {
        Out::Err(Box::<str>::from(raw).into(), Outcome::Error)
    }

    /// A call that produced no backend answer.
    pub(super) fn call_failed(e: &CallError, backend: &str) -> Out {
        let outcome = match e {
            CallError::Unavailable(_) => Outcome::Unavailable,
            CallError::Overloaded => Outcome::Overload,
            CallError::Timeout | CallError::Cancelled => Outcome::Timeout,
        };
        Out::Err(e.to_error_object(backend), outcome)
    }
}

pub(super) fn invalid(msg: impl AsRef<str>) -> Out {
    Out::error(INVALID_PARAMS, msg.as_ref())
}

/// A request refused before any backend was involved.
pub(super) fn bad(msg: impl AsRef<str>) -> (Out, Option<usize>) {
    (invalid(msg), None)
}

/// For `tools/call` and `prompts/get`: `params.name`, or the -32602 message saying why not.
pub(super) fn named_param<'a>(method: &str, params: Option<&'a RawValue>) -> Option<Result<Cow<'a, str>, String>> {
    named_param_peeked(method, params, params.and_then(|p| jsonrpc::peek_params(p.get())).as_ref())
}

/// [`named_param`] with the params already peeked at.
fn named_param_peeked<'a>(
    method: &str,
    params: Option<&'a RawValue>,
    peek: Option<&jsonrpc::ParamsPeek<'a>>,
) -> Option<Result<Cow<'a, str>, String>> {
    if method != "tools/call" && method != "prompts/get" {
        return None;
    }
    // The common case without serde_json: a plain string name, or none.
    if let Some(found) = peek.and_then(|p| p.name) {
        return Some(found.map(Cow::Borrowed).ok_or_else(|| format!("{method} needs params.name (a string)")));
    }
    Some(match params.map(|p| serde_json::from_str::<NameParam<'_>>(p.get())) {
        Some(Ok(NameParam { name: Some(n) })) => Ok(n),
        Some(Err(e)) => Err(format!("bad params for {method}: {e}")),
        _ => Err(format!("{method} needs params.name (a string)")),
    })
}

/// At most 128 bytes of an untrusted string, cut at a character boundary.
pub(crate) fn clip(s: &str) -> &str {
    let mut end = s.len().min(128);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[derive(Deserialize)]
pub(super) struct NameParam<'a> {
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
pub(super) struct UriParam<'a> {
    #[serde(borrow)]
    uri: Option<Cow<'a, str>>,
}

impl Session {
    pub(crate) fn new(router: Arc<RouterInner>, client_id: Option<&str>) -> Session {
        let shared = router.core.hub.open_session(client_id);
        Session {
            router,
            shared,
            instances: scoped::Instances::default(),
            listeners: parking_lot::Mutex::new(Vec::new()),
        }
    }

    fn core(&self) -> &Core {
        &self.router.core
    }

    /// The client id (given, or generated) used for sticky balancing.
    pub fn client_id(&self) -> &str {
        &self.shared.client_id
    }

    /// A router-unique number for this session.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire) || self.core().closed.load(Ordering::Acquire)
    }

    /// Handles one JSON-RPC message or batch and returns the reply: `None` for
    /// notifications, responses, all-notification batches and cancelled requests.
    /// Malformed input gets a JSON-RPC error reply, not an `Err`; `Err` means the session
    /// or router is closed.
    pub fn handle(&self, message: &str) -> Result<Option<String>> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let max = self.core().view().value().config.router.max_message_bytes;
        if message.len() > max {
            let msg = format!("Invalid Request: message of {} bytes exceeds the limit of {max} bytes", message.len());
            let id = jsonrpc::id_in_prefix(&message.as_bytes()[..message.len().min(4096)]);
            return Ok(Some(jsonrpc::error(id.as_deref(), jsonrpc::INVALID_REQUEST, &msg)));
        }
        if !jsonrpc::is_batch(message) {
            return Ok(self.handle_one(message));
        }
        let Some(items) = jsonrpc::split_batch(message) else {
            return Ok(Some(jsonrpc::error(None, jsonrpc::PARSE_ERROR, "Parse error: invalid JSON")));
        };
        if items.is_empty() {
            return Ok(Some(jsonrpc::error(None, jsonrpc::INVALID_REQUEST, "Invalid Request: empty batch")));
        }
        if items.len() > MAX_BATCH {
            let msg = format!("Invalid Request: a batch of {} messages exceeds the limit of {MAX_BATCH}", items.len());
            return Ok(Some(jsonrpc::error(None, jsonrpc::INVALID_REQUEST, &msg)));
        }
        let replies = self.handle_batch(&items);
        if replies.is_empty() {
            return Ok(None);
        }
        Ok(Some(format!("[{}]", replies.join(","))))
    }

    /// Waits up to `timeout` for a notification or server-to-client request addressed to
    /// this client. `Ok(None)` when nothing came; `Err(Closed)` once closed and drained.
    pub fn next_event(&self, timeout: Duration) -> Result<Option<String>> {
        let end = Instant::now() + timeout;
        loop {
            if let Ok(ev) = self.shared.events_rx.try_recv() {
                match self.for_client(ev) {
                    Some(ev) => return Ok(Some(ev)),
                    None => continue,
                }
            }
            if self.is_closed() {
                return Err(Error::Closed);
            }
            // Closing cannot drop the sender (the hub holds it), so wake up now and then
            // to notice a close.
            let slice = end.saturating_duration_since(Instant::now()).min(Duration::from_millis(50));
            match self.shared.events_rx.recv_timeout(slice) {
                Ok(ev) => {
                    if let Some(ev) = self.for_client(ev) {
                        return Ok(Some(ev));
                    }
                }
                Err(_) if Instant::now() >= end => return Ok(None),
                Err(_) => {}
            }
        }
    }

    /// Waits up to `timeout` until an event is ready for [`Session::next_event`], without
    /// taking it. A host that writes events and replies to one stream uses it to take events
    /// under the same lock as its replies, so nothing a backend sent before a result is
    /// written after it.
    pub fn wait_event(&self, timeout: Duration) -> bool {
        let mut sel = crossbeam_channel::Select::new();
        sel.recv(&self.shared.events_rx);
        sel.ready_timeout(timeout).is_ok()
    }

    /// Closes the session: requests it still has in flight are cancelled on their backends
    /// and relayed requests it never answered are refused. Idempotent.
    pub fn close(&self) {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let core = self.core();
        core.hub.close_session(self.shared.id);
        let mut inflight = self.shared.take_inflight();
        // A 2026-07-28 call of this session runs on a helper session of its own (mrtr.rs).
        for (helper, call) in core.hub.mrtr.calls_of(self.shared.id) {
            inflight.extend(helper.cancel_request(&call));
        }
        for (b, id) in inflight {
            if let Some(backend) = core.backend(b) {
                backend.cancel(id, "the client session closed");
            }
        }
        self.leave_subscriptions();
        self.stop_instances();
        let relays: Vec<_> = self.shared.relays.lock().drain().map(|(_, r)| r).collect();
        for r in relays {
            if let Some(backend) = core.backend(r.backend) {
                let line =
                    jsonrpc::error(Some(r.backend_id.get()), jsonrpc::INTERNAL_ERROR, "the client session closed");
                let _ = backend.respond(line);
            }
        }
    }

    /// The elements of a batch are independent: they run at once (at most
    /// `BATCH_CONCURRENCY` threads, so a huge batch cannot exhaust the machine), and the
    /// replies keep the batch's order.
    fn handle_batch(&self, items: &[&RawValue]) -> Vec<String> {
        if items.len() == 1 {
            return items.iter().filter_map(|m| self.handle_one(m.get())).collect();
        }
        let next = AtomicUsize::new(0);
        let slots: Vec<parking_lot::Mutex<Option<String>>> =
            items.iter().map(|_| parking_lot::Mutex::new(None)).collect();
        let work = || {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(m) = items.get(i) else { return };
                *slots[i].lock() = self.handle_one(m.get());
            }
        };
        std::thread::scope(|sc| {
            let extra = items.len().min(BATCH_CONCURRENCY) - 1;
            for _ in 0..extra {
                // Without a thread the caller's own loop still does every element.
                let _ = std::thread::Builder::new().name("mcprouter-batch".into()).spawn_scoped(sc, work);
            }
            work();
        });
        slots.into_iter().filter_map(parking_lot::Mutex::into_inner).collect()
    }

    fn handle_one(&self, text: &str) -> Option<String> {
        match jsonrpc::parse_peeked(text) {
            Err(inv) => Some(jsonrpc::error(inv.id.map(RawValue::get), inv.code, &inv.message)),
            Ok((Message::Request { id, method, params }, peeked)) => {
                let Some(_claim) = self.shared.claim_id(id.get()) else {
                    let msg = "Invalid Request: duplicate id in flight";
                    return Some(jsonrpc::error(Some(id.get()), jsonrpc::INVALID_REQUEST, msg));
                };
                let began = Instant::now();
                // Every MCP method takes its params as an object; an array would otherwise
                // reach code that indexes an object.
                if params.is_some_and(|p| !p.get().starts_with('{')) {
                    let msg = format!("Invalid params: {} takes its params as an object", clip(&method));
                    return Some(jsonrpc::error(Some(id.get()), INVALID_PARAMS, &msg));
                }
                // The params' top level, read with the message: the name, and whether
                // `_meta` (the only place a 2026-07-28 envelope can be) is there at all.
                let peek = peeked.or_else(|| params.and_then(|p| jsonrpc::peek_params(p.get())));
                // A modern request speaks for itself; a legacy one through the session's handshake.
                let envelope = match &peek {
                    Some(jsonrpc::ParamsPeek { meta: false, .. }) => era::Envelope::Legacy,
                    _ => era::read(params),
                };
                let declared = match envelope {
                    era::Envelope::Legacy => None,
                    era::Envelope::Modern(d) => Some(Arc::new(d)),
                    era::Envelope::Bad(e) => return Some(jsonrpc::error_raw(id.get(), &e)),
                };
                let _caller = era::enter(match &declared {
                    Some(d) => era::Caller::Modern(Arc::clone(d)),
                    None => era::Caller::Session(Arc::clone(&self.shared)),
                });
                // Parsed once: routing and the access record both need it.
                let named = named_param_peeked(&method, params, peek.as_ref());
                // The view this request routes with, from start to reply: a reload meanwhile
                // neither changes it halfway nor stops a backend it may use.
                let view = self.core().enter();
                // A bug on this path must still answer the caller, never lose the reply.
                let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &declared {
                    Some(d) => self.modern_request(&view, id, &method, params, named.clone(), d),
                    None => self.legacy_request(&view, id, &method, params, named.clone()),
                }));
                let (out, backend) = caught.unwrap_or_else(|_| {
                    log::error!(target: "mcprouter::session", "internal error handling {}", clip(&method));
                    self.core().metrics.internal_error();
                    (Out::error(jsonrpc::INTERNAL_ERROR, "Internal error"), None)
                });
                let name = named.and_then(Result::ok);
                self.record(&view, id, &method, params, name.as_deref(), backend, &out, began.elapsed());
                drop(view);
                match out {
                    Out::Ok(r) => Some(jsonrpc::result(id.get(), &r)),
                    Out::Err(e, _) => Some(jsonrpc::error_raw(id.get(), &e)),
                    Out::Nothing => None,
                }
            }
            Ok((Message::Notification { method, params }, _)) => {
                self.notification(&method, params);
                None
            }
            Ok((Message::Response { id, outcome }, _)) => {
                self.client_response(id, outcome);
                None
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use crate::Router;

    #[test]
    fn a_panic_on_the_callers_path_is_an_internal_error_reply() {
        let r = Router::from_yaml("backends: []\n").expect("an empty router");
        let s = r.session(None).expect("a session");
        let out = s.handle(r#"{"jsonrpc":"2.0","id":9,"method":"test/panic"}"#).expect("open").expect("a reply");
        let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
        assert_eq!((v["id"].as_i64(), v["error"]["code"].as_i64()), (Some(9), Some(-32603)), "{v}");
        let out =
            s.handle(r#"[{"jsonrpc":"2.0","id":1,"method":"test/panic"},{"jsonrpc":"2.0","id":2,"method":"ping"}]"#);
        let v: serde_json::Value = serde_json::from_str(&out.expect("open").expect("a reply")).expect("JSON");
        assert_eq!(v[0]["error"]["code"], -32603);
        assert_eq!(v[1]["result"], serde_json::json!({}));
        assert!(r.metrics().contains("mcprouter_internal_errors_total 2"));
    }
}
