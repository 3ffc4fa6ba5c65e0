//! A `Session`: one MCP client of the router. `handle` takes what the client sends and
//! returns what an MCP server would answer; `next_event` yields what the router sends the
//! client on its own.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::backend::{CallError, Deadline, SUPPORTED_VERSIONS};
use crate::breaker::Outcome as BreakerOutcome;
use crate::catalog::{Kind, Lookup};
use crate::core::{Core, RouterInner};
use crate::error::{Error, Result};
use crate::hub::SessionShared;
use crate::jsonrpc::{self, INVALID_PARAMS, METHOD_NOT_FOUND, Message};
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
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("id", &self.shared.id).field("client_id", &self.shared.client_id).finish()
    }
}

/// What handling one request produced.
enum Out {
    /// A raw `result` value.
    Ok(String),
    /// A raw `error` object.
    Err(String),
    /// No reply: the client cancelled the request.
    Nothing,
}

fn invalid(msg: impl AsRef<str>) -> Out {
    Out::Err(jsonrpc::error_object(INVALID_PARAMS, msg.as_ref()))
}

/// For `tools/call` and `prompts/get`: `params.name`, or the -32602 message saying why not.
fn named_param<'a>(method: &str, params: Option<&'a RawValue>) -> Option<Result<Cow<'a, str>, String>> {
    if method != "tools/call" && method != "prompts/get" {
        return None;
    }
    Some(match params.map(|p| serde_json::from_str::<NameParam<'_>>(p.get())) {
        Some(Ok(NameParam { name: Some(n) })) => Ok(n),
        Some(Err(e)) => Err(format!("bad params for {method}: {e}")),
        _ => Err(format!("{method} needs params.name (a string)")),
    })
}

/// At most 128 bytes of an untrusted string, cut at a character boundary.
fn clip(s: &str) -> &str {
    let mut end = s.len().min(128);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Where a routed call goes, and what the catalog says about repeating it.
struct Route<'a> {
    owner: usize,
    /// (exposed, original) tool name, to find a fallback chain.
    chain_key: Option<(&'a str, &'a str)>,
    /// Safe to send again after an attempt that may have run.
    idempotent: bool,
}

/// The candidates for one call.
struct Plan {
    order: Vec<usize>,
    is_pool: bool,
    is_chain: bool,
    idempotent: bool,
}

impl Plan {
    fn first(&self) -> Option<&usize> {
        self.order.first()
    }
}

fn timeout_out() -> Out {
    Out::Err(jsonrpc::error_object(jsonrpc::REQUEST_TIMEOUT, "request timed out"))
}

fn circuit_open(backend: &str) -> String {
    jsonrpc::error_object(
        jsonrpc::CIRCUIT_OPEN,
        &format!("backend {backend:?} is failing: its circuit breaker is open"),
    )
}

fn unavailable(b: &crate::backend::Backend) -> String {
    let info = b.info();
    let why = if !b.is_ready() {
        info.last_error.unwrap_or_else(|| format!("it is {}", info.state.as_str()))
    } else if !b.health.lock().is_healthy() {
        "it failed its health checks".to_owned()
    } else {
        "its circuit breaker is open".to_owned()
    };
    let code =
        if b.is_ready() && b.health.lock().is_healthy() { jsonrpc::CIRCUIT_OPEN } else { jsonrpc::BACKEND_UNAVAILABLE };
    jsonrpc::error_object(code, &format!("backend {:?} is unavailable: {why}", b.name()))
}

/// A request refused before any backend was involved.
fn bad(msg: impl AsRef<str>) -> (Out, Option<usize>) {
    (invalid(msg), None)
}

/// The `code` of a JSON-RPC error object, without parsing the rest.
fn error_code(error: &str) -> Option<i64> {
    #[derive(Deserialize)]
    struct Code {
        code: i64,
    }
    serde_json::from_str::<Code>(error).ok().map(|c| c.code)
}

#[derive(Deserialize)]
struct NameParam<'a> {
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct UriParam<'a> {
    #[serde(borrow)]
    uri: Option<Cow<'a, str>>,
}

impl Session {
    pub(crate) fn new(router: Arc<RouterInner>, client_id: Option<&str>) -> Session {
        let shared = router.core.hub.open_session(client_id);
        router.core.metrics.session_opened();
        Session { router, shared }
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
        let max = self.core().config.router.max_message_bytes;
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
                return Ok(Some(ev));
            }
            if self.is_closed() {
                return Err(Error::Closed);
            }
            // Closing cannot drop the sender (the hub holds it), so wake up now and then
            // to notice a close.
            let slice = end.saturating_duration_since(Instant::now()).min(Duration::from_millis(50));
            match self.shared.events_rx.recv_timeout(slice) {
                Ok(ev) => return Ok(Some(ev)),
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
        core.metrics.session_closed();
        let inflight: Vec<(usize, u64)> = self.shared.inflight.lock().drain().map(|(_, v)| v).collect();
        for (b, id) in inflight {
            if let Some(backend) = core.backends.get(b) {
                backend.cancel(id, "the client session closed");
            }
        }
        self.leave_subscriptions();
        let relays: Vec<_> = self.shared.relays.lock().drain().map(|(_, r)| r).collect();
        for r in relays {
            if let Some(backend) = core.backends.get(r.backend) {
                let line =
                    jsonrpc::error(Some(r.backend_id.get()), jsonrpc::INTERNAL_ERROR, "the client session closed");
                let _ = backend.send_line(line);
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
        match jsonrpc::parse(text) {
            Err(inv) => Some(jsonrpc::error(inv.id.map(RawValue::get), inv.code, &inv.message)),
            Ok(Message::Request { id, method, params }) => {
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
                // Parsed once: routing and the access record both need it.
                let named = named_param(&method, params);
                // A bug on this path must still answer the caller, never lose the reply.
                let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.request(id, &method, params, named.clone())
                }));
                let (out, backend) = caught.unwrap_or_else(|_| {
                    log::error!(target: "mcprouter::session", "internal error handling {}", clip(&method));
                    self.core().metrics.internal_error();
                    (Out::Err(jsonrpc::error_object(jsonrpc::INTERNAL_ERROR, "Internal error")), None)
                });
                let name = named.and_then(Result::ok);
                self.record(id, &method, params, name.as_deref(), backend, &out, began.elapsed());
                match out {
                    Out::Ok(r) => Some(jsonrpc::result(id.get(), &r)),
                    Out::Err(e) => Some(jsonrpc::error_raw(id.get(), &e)),
                    Out::Nothing => None,
                }
            }
            Ok(Message::Notification { method, params }) => {
                self.notification(&method, params);
                None
            }
            Ok(Message::Response { id, outcome }) => {
                self.client_response(id, outcome);
                None
            }
        }
    }

    fn record(
        &self,
        id: &RawValue,
        method: &str,
        params: Option<&RawValue>,
        name: Option<&str>,
        backend: Option<usize>,
        out: &Out,
        took: Duration,
    ) {
        let outcome = match out {
            Out::Ok(_) => Outcome::Ok,
            Out::Nothing => Outcome::Error,
            Out::Err(e) => match error_code(e) {
                Some(jsonrpc::REQUEST_TIMEOUT) => Outcome::Timeout,
                Some(jsonrpc::OVERLOADED) => Outcome::Overload,
                Some(jsonrpc::BACKEND_UNAVAILABLE) => Outcome::Unavailable,
                _ => Outcome::Error,
            },
        };
        let m = &self.core().metrics;
        m.request(method, backend, outcome, took);
        if outcome == Outcome::Overload {
            if let Some(b) = backend {
                m.overload(b);
            }
        }
        if method == "tools/call" {
            m.tool_call(name.unwrap_or(""), outcome);
        }
        if log::log_enabled!(target: "mcprouter::access", log::Level::Info) {
            let core = self.core();
            let uri = match method {
                "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                    params.and_then(|p| serde_json::from_str::<UriParam<'_>>(p.get()).ok()).and_then(|u| u.uri)
                }
                _ => None,
            };
            let backend = backend.and_then(|b| core.backends.get(b)).map_or("", |b| b.name());
            let error = match out {
                Out::Err(e) => serde_json::from_str::<Value>(e)
                    .map(|v| format!("{} {}", v["code"], v["message"].as_str().unwrap_or_default()))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            // Untrusted strings are cut short: a log line is not a place to store a payload.
            log::info!(
                target: "mcprouter::access",
                session = self.shared.client_id.as_str(),
                method = clip(method),
                name = clip(name.as_deref().unwrap_or("")),
                uri = clip(uri.as_deref().unwrap_or("")),
                backend = backend,
                request_id = clip(id.get()),
                outcome = outcome.as_str(),
                error = clip(&error),
                duration_ms = took.as_micros() as f64 / 1000.0;
                "{} {}",
                clip(method),
                outcome.as_str()
            );
        }
    }

    /// Handles one request; also says which backend served it, for metrics.
    fn request(
        &self,
        id: &RawValue,
        method: &str,
        params: Option<&RawValue>,
        named: Option<Result<Cow<'_, str>, String>>,
    ) -> (Out, Option<usize>) {
        #[cfg(test)]
        if method == "test/panic" {
            panic!("a bug on the caller's path");
        }
        let routed = match (method, named) {
            ("tools/call", Some(name)) => Some(self.route_named(id, method, params, name, true)),
            ("prompts/get", Some(name)) => Some(self.route_named(id, method, params, name, false)),
            ("resources/read" | "resources/subscribe" | "resources/unsubscribe", _) => {
                Some(self.route_uri(id, method, params))
            }
            ("completion/complete", _) => Some(self.route_completion(id, params)),
            _ => None,
        };
        if let Some((out, backend)) = routed {
            return (out, backend);
        }
        let out = match method {
            "initialize" => self.initialize(params),
            "ping" => Out::Ok("{}".into()),
            "tools/list" => self.list(Kind::Tools, params),
            "prompts/list" => self.list(Kind::Prompts, params),
            "resources/list" => self.list(Kind::Resources, params),
            "resources/templates/list" => self.list(Kind::Templates, params),
            "logging/setLevel" => self.set_level(params),
            _ => Out::Err(jsonrpc::error_object(METHOD_NOT_FOUND, &format!("Method not found: {method}"))),
        };
        (out, None)
    }

    fn initialize(&self, params: Option<&RawValue>) -> Out {
        let Some(v) = params.and_then(|p| serde_json::from_str::<Value>(p.get()).ok()) else {
            return invalid("initialize needs params");
        };
        let Some(requested) = v.get("protocolVersion").and_then(Value::as_str) else {
            return invalid("initialize needs params.protocolVersion (a string)");
        };
        let version = if SUPPORTED_VERSIONS.contains(&requested) { requested } else { SUPPORTED_VERSIONS[0] };
        {
            let mut c = self.shared.client.lock();
            c.initialized = true;
            c.protocol_version = Some(version.to_owned());
            c.capabilities = v.get("capabilities").cloned().unwrap_or_else(|| json!({}));
        }
        let core = self.core();
        if core.config.router.fail_mode == crate::config::FailMode::Closed {
            let down: Vec<&str> = core.backends.iter().filter(|b| !b.is_ready()).map(|b| b.name()).collect();
            if !down.is_empty() {
                let msg = format!("fail_mode is closed and these backends are not ready: {}", down.join(", "));
                return Out::Err(jsonrpc::error_object(jsonrpc::BACKEND_UNAVAILABLE, &msg));
            }
        }
        let infos: Vec<_> =
            core.backends.iter().filter(|b| b.is_ready()).map(|b| (b.name().to_owned(), b.info())).collect();
        let any = |f: &dyn Fn(&Value) -> bool| infos.iter().any(|(_, i)| f(&i.capabilities));
        // What the backends offer, so a client sees the capabilities it would see directly.
        // A backend that is not ready has unknown capabilities and may come back with any of
        // them, so then every kind the router can merge is declared. `listChanged` always:
        // the merged lists change when backends come and go.
        let unknown = infos.len() < core.backends.len();
        let offers = |kind: &str| unknown || any(&|c| c.get(kind).is_some());
        let mut caps = json!({"tools": {"listChanged": true}});
        if offers("prompts") {
            caps["prompts"] = json!({"listChanged": true});
        }
        if offers("resources") {
            caps["resources"] = json!({"listChanged": true});
            if any(&|c| c.pointer("/resources/subscribe") == Some(&Value::Bool(true))) {
                caps["resources"]["subscribe"] = Value::Bool(true);
            }
        }
        if offers("logging") {
            caps["logging"] = json!({});
        }
        if any(&|c| c.get("completions").is_some()) {
            caps["completions"] = json!({});
        }
        // Labelled by backend only when several contribute, as names are prefixed only on a
        // collision: one server's instructions reach the client as that server wrote them.
        let with_text: Vec<(&String, &String)> =
            infos.iter().filter_map(|(n, i)| i.instructions.as_ref().map(|t| (n, t))).collect();
        let instructions: Vec<String> = match with_text.as_slice() {
            [(_, t)] => vec![(*t).clone()],
            several => several.iter().map(|(n, t)| format!("[{n}] {t}")).collect(),
        };
        let mut result = json!({
            "protocolVersion": version,
            "capabilities": caps,
            "serverInfo": {"name": core.config.router.name, "version": env!("CARGO_PKG_VERSION")},
        });
        if !instructions.is_empty() {
            result["instructions"] = Value::String(instructions.join("\n\n"));
        }
        Out::Ok(result.to_string())
    }

    fn list(&self, kind: Kind, params: Option<&RawValue>) -> Out {
        #[derive(Deserialize)]
        struct Cursor<'a> {
            #[serde(borrow)]
            cursor: Option<Cow<'a, str>>,
        }
        let cursor = match params.map(|p| serde_json::from_str::<Cursor<'_>>(p.get())) {
            None => None,
            Some(Ok(c)) => c.cursor,
            Some(Err(e)) => return invalid(format!("bad params: {e}")),
        };
        match self.core().catalog().page(kind, cursor.as_deref(), self.core().config.router.page_size) {
            Ok(page) => Out::Ok(page),
            Err(msg) => invalid(msg),
        }
    }

    /// `tools/call` and `prompts/get`: find the owner of the exposed name and forward with
    /// the backend's own name.
    fn route_named(
        &self,
        id: &RawValue,
        method: &str,
        params: Option<&RawValue>,
        name: Result<Cow<'_, str>, String>,
        tool: bool,
    ) -> (Out, Option<usize>) {
        let what = if tool { "tool" } else { "prompt" };
        let name = match name {
            Ok(n) => n,
            Err(msg) => return bad(msg),
        };
        let catalog = self.core().catalog();
        let found = if tool { catalog.tool(&name) } else { catalog.prompt(&name) };
        let (owner, original, hint) = match found {
            Lookup::Found(t) => (t.owner, t.original.clone(), t.idempotent),
            // A fallback chain for the name says which of its servers to use, in order.
            Lookup::Ambiguous(os)
                if tool && self.core().config.fallbacks.iter().any(|f| f.tool.as_deref() == Some(&*name)) =>
            {
                (os[0], name.to_string(), false)
            }
            Lookup::Ambiguous(os) => {
                let names: Vec<&str> =
                    os.iter().filter_map(|o| self.core().owners.get(*o)).map(|o| o.name.as_str()).collect();
                return bad(format!(
                    "{what} {name:?} is ambiguous: served by {} (prefix mode is never)",
                    names.join(", ")
                ));
            }
            Lookup::Unknown => return bad(format!("Unknown {what}: {name}")),
        };
        drop(catalog);
        let rename = (original != name).then_some(original.as_str());
        let route = Route { owner, chain_key: tool.then_some((name.as_ref(), original.as_str())), idempotent: hint };
        self.dispatch(
            id,
            route,
            method,
            params,
            |v| {
                if let (Some(n), Some(obj)) = (rename, v.as_object_mut()) {
                    obj.insert("name".into(), Value::String(n.to_owned()));
                }
            },
            rename.is_some(),
        )
    }

    fn route_uri(&self, id: &RawValue, method: &str, params: Option<&RawValue>) -> (Out, Option<usize>) {
        let uri = match params.map(|p| serde_json::from_str::<UriParam<'_>>(p.get())) {
            Some(Ok(UriParam { uri: Some(u) })) => u.into_owned(),
            Some(Err(e)) => return bad(format!("bad params for {method}: {e}")),
            _ => return bad(format!("{method} needs params.uri (a string)")),
        };
        let hub = &self.core().hub;
        // Backends see one subscription per URI however many clients share it: the first
        // subscriber subscribes, the last one out unsubscribes, and the gate keeps those
        // two decisions from crossing.
        let gate = (method != "resources/read").then(|| hub.subscription_gate(&uri));
        if method == "resources/unsubscribe" {
            return match hub.remove_subscriber(&uri, self.shared.id) {
                Some((b, true)) => self.call_backend(id, b, method, params),
                Some((b, false)) => (Out::Ok("{}".into()), Some(b)),
                // Nothing of ours to undo; the backend's subscription belongs to others.
                None => (Out::Ok("{}".into()), None),
            };
        }
        let Some(owner) = self.core().catalog().resource_owner(&uri) else {
            return bad(format!("Unknown resource: {uri}"));
        };
        if method == "resources/subscribe" {
            if let Some(b) = hub.subscribed_via(&uri, self.shared.id) {
                return (Out::Ok("{}".into()), Some(b));
            }
            let members = self.core().owners.get(owner).map(|o| o.members.as_slice()).unwrap_or_default();
            if let Some(b) = hub.subscribed_backend(&uri, members) {
                hub.add_subscriber(&uri, b, self.shared.id);
                return (Out::Ok("{}".into()), Some(b));
            }
        }
        // Reading is safe to repeat; subscribing is not worth a second try.
        let route = Route { owner, chain_key: None, idempotent: method == "resources/read" };
        let (out, backend) = self.dispatch(id, route, method, params, |_| {}, false);
        if let (Out::Ok(_), Some(b), "resources/subscribe") = (&out, backend, method) {
            hub.add_subscriber(&uri, b, self.shared.id);
            if self.shared.closed.load(Ordering::Acquire) {
                // Closed while subscribing: `close` has already left its subscriptions.
                drop(gate);
                self.leave_subscriptions();
            }
        }
        (out, backend)
    }

    /// One request to one given backend (an unsubscribe must reach the backend that holds
    /// the subscription, whatever a pool's balancer would pick), cancellable by the client.
    fn call_backend(&self, id: &RawValue, b: usize, method: &str, params: Option<&RawValue>) -> (Out, Option<usize>) {
        let Some(backend) = self.core().backends.get(b) else { return (timeout_out(), None) };
        let ticket = match backend.start_call(method, params.map(RawValue::get), self.shared.id) {
            Ok(t) => t,
            Err(e) => return (Out::Err(e.to_error_object(backend.name())), Some(b)),
        };
        self.shared.inflight.lock().insert(id.get().to_owned(), (b, ticket.id));
        let r = backend.finish_call(ticket, &Deadline::fixed(Instant::now() + backend.timeout));
        self.shared.inflight.lock().remove(id.get());
        let out = match r {
            Ok(Ok(r)) => Out::Ok(Box::<str>::from(r).into()),
            Ok(Err(e)) => Out::Err(Box::<str>::from(e).into()),
            Err(CallError::Cancelled) => Out::Nothing,
            Err(e) => Out::Err(e.to_error_object(backend.name())),
        };
        (out, Some(b))
    }

    /// Drops every subscription of this (closing) session; where it was the last
    /// subscriber, the backend is told, all at once and each for a short while only.
    fn leave_subscriptions(&self) {
        let core = self.core();
        let mut tickets = Vec::new();
        for uri in core.hub.subscriptions_of(self.shared.id) {
            let _gate = core.hub.subscription_gate(&uri);
            let Some((b, true)) = core.hub.remove_subscriber(&uri, self.shared.id) else { continue };
            let Some(backend) = core.backends.get(b) else { continue };
            let params = format!("{{\"uri\":{}}}", jsonrpc::quote(&uri));
            if let Ok(t) = backend.start_call("resources/unsubscribe", Some(&params), self.shared.id) {
                tickets.push((backend, t));
            }
        }
        for (backend, t) in tickets {
            let wait = backend.timeout.min(Duration::from_millis(500));
            let _ = backend.finish_call(t, &Deadline::fixed(Instant::now() + wait));
        }
    }

    fn route_completion(&self, id: &RawValue, params: Option<&RawValue>) -> (Out, Option<usize>) {
        let Some(v) = params.and_then(|p| serde_json::from_str::<Value>(p.get()).ok()) else {
            return bad("completion/complete needs params");
        };
        let catalog = self.core().catalog();
        let kind = v.pointer("/ref/type").and_then(Value::as_str).unwrap_or_default();
        let (owner, rename) = match kind {
            "ref/prompt" => {
                let name = v.pointer("/ref/name").and_then(Value::as_str).unwrap_or_default();
                match catalog.prompt(name) {
                    Lookup::Found(p) => (p.owner, (p.original != name).then(|| p.original.clone())),
                    _ => return bad(format!("Unknown prompt: {name}")),
                }
            }
            "ref/resource" => {
                let uri = v.pointer("/ref/uri").and_then(Value::as_str).unwrap_or_default();
                match catalog.template_owner(uri) {
                    Some(o) => (o, None),
                    None => return bad(format!("Unknown resource: {uri}")),
                }
            }
            other => return bad(format!("completion/complete: unsupported ref type {other:?}")),
        };
        drop(catalog);
        let needs = rename.is_some();
        let route = Route { owner, chain_key: None, idempotent: true };
        self.dispatch(
            id,
            route,
            "completion/complete",
            params,
            |v| {
                if let (Some(n), Some(r)) = (&rename, v.get_mut("ref").and_then(Value::as_object_mut)) {
                    r.insert("name".into(), Value::String(n.clone()));
                }
            },
            needs,
        )
    }

    /// Sends the level to every ready backend that logs, all in flight at once.
    fn set_level(&self, params: Option<&RawValue>) -> Out {
        let Some(p) = params else { return invalid("logging/setLevel needs params.level") };
        let core = self.core();
        let tickets: Vec<_> = core
            .backends
            .iter()
            .filter(|b| b.is_ready() && b.info().capabilities.get("logging").is_some())
            .filter_map(|b| b.start_call("logging/setLevel", Some(p.get()), self.shared.id).ok().map(|t| (b, t)))
            .collect();
        for (b, t) in tickets {
            let _ = b.finish_call(t, &Deadline::fixed(Instant::now() + b.timeout));
        }
        Out::Ok("{}".into())
    }

    /// Rewrites params when a name or a progress token must change; otherwise `None`, and
    /// the caller's params pass through byte for byte.
    fn prepare(
        &self,
        params: Option<&RawValue>,
        edit: impl FnOnce(&mut Value),
        must_edit: bool,
    ) -> Result<(Option<String>, Option<(String, Arc<AtomicU64>)>), Out> {
        let has_token = params.is_some_and(|p| p.get().contains("\"progressToken\""));
        let Some(p) = params.filter(|_| must_edit || has_token) else { return Ok((None, None)) };
        let Ok(mut v) = serde_json::from_str::<Value>(p.get()) else {
            return Err(invalid("params are not valid JSON"));
        };
        edit(&mut v);
        let mut token = None;
        if let Some(t) = v.pointer_mut("/_meta/progressToken") {
            if let Ok(raw) = serde_json::value::to_raw_value(t) {
                let (mine, last) = self.core().hub.register_progress(self.shared.id, &raw);
                if let Ok(nv) = serde_json::from_str::<Value>(&mine) {
                    *t = nv;
                }
                token = Some((mine, last));
            }
        }
        Ok((Some(v.to_string()), token))
    }

    /// Sends a request to the owner's backend(s) under router-assigned ids, with the
    /// resilience rules: a pool balances, a fallback chain tries its candidates in order,
    /// each attempt passes its backend's breaker, and moving on after an attempt that may
    /// have run needs the call to be idempotent. One deadline covers every attempt.
    fn dispatch(
        &self,
        id: &RawValue,
        route: Route<'_>,
        method: &str,
        params: Option<&RawValue>,
        edit: impl FnOnce(&mut Value),
        must_edit: bool,
    ) -> (Out, Option<usize>) {
        let core = self.core();
        let (rewritten, token) = match self.prepare(params, edit, must_edit) {
            Ok(x) => x,
            Err(out) => return (out, None),
        };
        let send = rewritten.as_deref().or(params.map(RawValue::get));
        let plan = self.plan(&route, method);
        core.budget.deposit();

        let began = Instant::now();
        let first_timeout = plan
            .first()
            .and_then(|b| core.backends.get(*b))
            .map_or(core.config.router.request_timeout(), |b| b.timeout);
        let max_call = core.config.router.max_call_ms;
        let hard = if max_call > 0 {
            began + Duration::from_millis(max_call).max(first_timeout)
        } else {
            began + first_timeout
        };
        // One hard deadline for the whole call, whatever the number of attempts; each
        // attempt also has its backend's (inactivity) timeout, which progress extends.
        let attempt_deadline = |timeout: Duration| Deadline {
            soft: Instant::now() + timeout,
            hard,
            activity: token.as_ref().map(|(_, last)| (Arc::clone(last), core.hub.base, timeout)),
        };

        let balancer = core.balancers.get(route.owner).and_then(Option::as_ref).filter(|_| plan.is_pool);
        let sticky = Some(crate::balance::fnv1a64(self.shared.client_id.as_bytes()));
        let mut tried: Vec<usize> = Vec::new();
        let mut last: Option<(Out, usize)> = None;
        let out = loop {
            if Instant::now() >= hard && !tried.is_empty() {
                break last.map(|(o, b)| (o, Some(b))).unwrap_or_else(|| (timeout_out(), None));
            }
            // Choose the next candidate by peeking only: nothing is reserved until the call.
            let (b, pick) = match balancer {
                Some(bal) => {
                    let members = &core.owners[route.owner].members;
                    let pick = bal.pick(sticky, |i| {
                        members.get(i).is_some_and(|m| !tried.contains(m) && core.backends[*m].routable())
                    });
                    match pick {
                        Some(p) => (members[p.index()], Some(p)),
                        None => break self.exhausted(last, &route, &tried),
                    }
                }
                None => match plan
                    .order
                    .iter()
                    .find(|b| !tried.contains(b) && (plan.order.len() == 1 || core.backends[**b].routable()))
                {
                    Some(b) => (*b, None),
                    None => break self.exhausted(last, &route, &tried),
                },
            };
            if !tried.is_empty() {
                if !core.budget.try_spend(Instant::now()) {
                    log::warn!(target: "mcprouter::session", "retry budget exhausted; not trying {}", core.backends[b].name());
                    break last.map(|(o, b)| (o, Some(b))).unwrap_or_else(|| self.exhausted(None, &route, &tried));
                }
                if plan.is_chain { core.metrics.fallback() } else { core.metrics.retry() }
            }
            tried.push(b);
            let backend = &core.backends[b];
            if !backend.routable() && plan.order.len() == 1 && balancer.is_none() {
                // A lone backend that is down or unhealthy fails fast with the reason.
                let out = Out::Err(unavailable(backend));
                break (out, Some(b));
            }
            let Some(guard) = backend.breaker.try_acquire() else {
                last = Some((Out::Err(circuit_open(backend.name())), b));
                continue;
            };
            let _in_flight = core.metrics.in_flight_guard(b);
            if let Some((t, _)) = &token {
                core.hub.bind_progress(t, b);
            }
            let outcome = match backend.start_call(method, send, self.shared.id) {
                Ok(ticket) => {
                    self.shared.inflight.lock().insert(id.get().to_owned(), (b, ticket.id));
                    let r = backend.finish_call(ticket, &attempt_deadline(backend.timeout)).map_err(|e| (e, true));
                    self.shared.inflight.lock().remove(id.get());
                    r
                }
                Err(e) => Err((e, false)),
            };
            drop(pick);
            match outcome {
                Ok(Ok(r)) => {
                    guard.success();
                    backend.observe(true);
                    break (Out::Ok(Box::<str>::from(r).into()), Some(b));
                }
                // An error the backend meant is an answer: never fall back on it.
                Ok(Err(e)) => {
                    guard.success();
                    backend.observe(true);
                    break (Out::Err(Box::<str>::from(e).into()), Some(b));
                }
                Err((CallError::Cancelled, _)) => {
                    guard.release(BreakerOutcome::Ignored);
                    break (Out::Nothing, Some(b));
                }
                // Never sent (queue full, backend down): always safe to try elsewhere.
                Err((e, false)) => {
                    guard.release(BreakerOutcome::Ignored);
                    last = Some((Out::Err(e.to_error_object(backend.name())), b));
                }
                // Sent, and then lost: the call may have run.
                Err((e, true)) => {
                    guard.failure();
                    backend.observe(false);
                    last = Some((Out::Err(e.to_error_object(backend.name())), b));
                    if !(route.idempotent || plan.idempotent) {
                        break last.map(|(o, b)| (o, Some(b))).unwrap_or_else(|| (timeout_out(), None));
                    }
                }
            }
        };
        if let Some((t, _)) = token {
            core.hub.unregister_progress(&t);
        }
        out
    }

    /// The candidates for a call: a fallback chain if one is configured for this tool or
    /// method, else the owner's members (a pool balances among them).
    fn plan(&self, route: &Route<'_>, method: &str) -> Plan {
        let core = self.core();
        let chain = core.config.fallbacks.iter().find(|f| match (&f.tool, &f.method, route.chain_key) {
            (Some(t), _, Some((exposed, original))) => t == exposed || t == original,
            (None, Some(m), _) => m == method,
            _ => false,
        });
        if let Some(f) = chain {
            let order =
                f.candidates.iter().filter_map(|c| core.backends.iter().position(|b| b.name() == c.as_str())).collect();
            return Plan { order, is_pool: false, is_chain: true, idempotent: f.idempotent };
        }
        let members = core.owners.get(route.owner).map(|o| o.members.clone()).unwrap_or_default();
        let is_pool = members.len() > 1;
        Plan { order: members, is_pool, is_chain: false, idempotent: false }
    }

    /// Nothing (more) to try: the last attempt's error, or why there was none.
    fn exhausted(&self, last: Option<(Out, usize)>, route: &Route<'_>, tried: &[usize]) -> (Out, Option<usize>) {
        if let Some((o, b)) = last {
            return (o, Some(b));
        }
        let core = self.core();
        let name = core.owners.get(route.owner).map_or("?", |o| o.name.as_str());
        let why = if tried.is_empty() { "no backend is available" } else { "every backend failed" };
        (Out::Err(jsonrpc::error_object(jsonrpc::BACKEND_UNAVAILABLE, &format!("{name}: {why}"))), None)
    }

    fn notification(&self, method: &str, params: Option<&RawValue>) {
        let core = self.core();
        match method {
            "notifications/initialized" => {
                self.shared.client.lock().initialized = true;
                // A server that asked for roots before this client came (and was refused)
                // learns that there are roots now, as it would when connected directly.
                if self.shared.declares("roots") {
                    for b in core.backends.iter().filter(|b| b.is_ready()) {
                        let _ = b.notify("notifications/roots/list_changed", None);
                    }
                }
            }
            "notifications/cancelled" => {
                #[derive(Deserialize)]
                struct Cancel<'a> {
                    // Raw, like the keys of the in-flight map: the client's own spelling of the id.
                    #[serde(borrow, rename = "requestId")]
                    request_id: &'a RawValue,
                    #[serde(default, borrow)]
                    reason: Option<Cow<'a, str>>,
                }
                let Some(c) = params.and_then(|p| serde_json::from_str::<Cancel<'_>>(p.get()).ok()) else { return };
                let target = self.shared.inflight.lock().remove(c.request_id.get());
                if let Some((b, id)) = target {
                    let reason = c.reason.as_deref().unwrap_or("cancelled by the client");
                    if let Some(backend) = core.backends.get(b) {
                        backend.cancel(id, reason);
                    }
                }
            }
            "notifications/roots/list_changed" => {
                for b in core.backends.iter().filter(|b| b.is_ready()) {
                    let _ = b.notify(method, None);
                }
            }
            _ => log::debug!(target: "mcprouter::session", "notification {method} ignored"),
        }
    }

    /// The client's answer to a request a backend sent it: back to that backend, under the
    /// backend's own id.
    fn client_response(&self, id: &RawValue, outcome: std::result::Result<&RawValue, &RawValue>) {
        let Some(relay) = self.shared.relays.lock().remove(id.get()) else {
            log::debug!(target: "mcprouter::session", "response to unknown id {} dropped", id.get());
            return;
        };
        self.core().hub.relay_settled();
        let Some(backend) = self.core().backends.get(relay.backend) else { return };
        let line = match outcome {
            Ok(r) => jsonrpc::result(relay.backend_id.get(), r.get()),
            Err(e) => jsonrpc::error_raw(relay.backend_id.get(), e.get()),
        };
        if let Err(e) = backend.send_line(line) {
            log::warn!(target: "mcprouter::session", "[{}] could not deliver the client's answer: {e}", backend.name());
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
