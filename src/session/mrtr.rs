//! The session's side of the two cross-era flows of `crate::mrtr`: a modern client's call
//! that a legacy backend asks questions during, and a legacy client's call that a modern
//! backend answers `input_required`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, bounded, select};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::{Done, Out, Session, invalid, named_param};
use crate::core::View;
use crate::era::{self, Caller, Declared};
use crate::hub::SessionShared;
use crate::jsonrpc::{self, INTERNAL_ERROR, REQUEST_TIMEOUT};
use crate::method::Method;
use crate::metrics::Outcome;
use crate::mrtr::{self, Inbound, MAX_HELPERS, Parked, STATE_PREFIX, WaiterGuard};

/// Rounds of input one legacy client's call may be asked for before the router gives up.
const MAX_ROUNDS: usize = 8;
/// Input requests in one round.
const MAX_INPUTS: usize = 64;
/// What a server may ask a client for, in either era.
const INPUT_METHODS: [&str; 3] = ["sampling/createMessage", "elicitation/create", "roots/list"];

/// The methods whose result may be `input_required` (2026-07-28 `mrtr.mdx`).
pub(super) fn takes_input(m: Method) -> bool {
    matches!(m, Method::ToolsCall | Method::PromptsGet | Method::ResourcesRead)
}

type Named<'a> = Option<Result<std::borrow::Cow<'a, str>, String>>;

/// A modern client's call running on a helper thread, as its waiting caller holds it.
struct Waiting {
    binding: String,
    done: Receiver<Done>,
    inbox: Receiver<Inbound>,
    guard: WaiterGuard,
    call: String,
    helper: Arc<SessionShared>,
    /// The `progressToken` of the request that started the call (what its progress carries).
    token: Option<Value>,
    /// The `progressToken` of the request waiting now (a retry may carry another, or none).
    now: Option<Value>,
}

impl Waiting {
    /// A parked call taken back to wait again, for the request waiting `now`; with the
    /// input requests its client has not answered yet.
    fn unparked(p: mrtr::Parked<Done>, now: Option<Value>) -> (Vec<(String, Inbound)>, Waiting) {
        let w = Waiting {
            binding: p.binding,
            done: p.done,
            inbox: p.inbox,
            guard: p.guard,
            call: p.call,
            helper: p.helper,
            token: p.token,
            now,
        };
        (p.asked, w)
    }
}

impl Session {
    /// A modern client's call that may need its input. It runs on a helper thread, so that
    /// when a legacy backend asks something the client can be answered `input_required`
    /// while the call goes on; a retry carrying the router's `requestState` resumes it.
    pub(super) fn modern_call(
        &self,
        v: &View,
        id: &RawValue,
        method: &str,
        params: Option<&RawValue>,
        named: Named<'_>,
        declared: &Arc<Declared>,
    ) -> Done {
        // A modern backend's own state is not the router's: that retry is routed as it is.
        if let Some(state) = request_state(params).filter(|s| s.starts_with(STATE_PREFIX)) {
            return self.resume(v, id, method, params, &state);
        }
        // Parked calls whose clients never came back are swept whenever a call may park.
        self.expire_parked();
        let mrtr = Arc::clone(&self.core().hub.mrtr);
        let call_id = RawValue::from_string(format!("\"mcprouter-call-{}\"", mrtr.next_id()));
        let (Ok(call_id), true) = (call_id, mrtr.helpers.fetch_add(1, Ordering::AcqRel) < MAX_HELPERS) else {
            mrtr.helpers.fetch_sub(1, Ordering::AcqRel);
            let _inline = mrtr.wait(self.shared.id, Arc::clone(declared), true);
            return self.request(v, id, method, params, named);
        };
        // The call runs in a session of its own (same client): it outlives this request (a
        // stateless front closes its session after each), its server-to-client requests are
        // attributed to it alone, and its events are forwarded by whoever waits for it.
        let helper = Session::new(Arc::clone(&self.router), Some(&self.shared.client_id));
        helper.shared.client.lock().protocol_version = Some(era::MODERN.to_owned());
        let helper_shared = Arc::clone(&helper.shared);
        let (guard, inbox) = mrtr.wait(helper_shared.id, Arc::clone(declared), false);
        let call = call_id.get().to_owned();
        let (tx, done) = bounded::<Done>(1);
        let view = self.core().enter();
        let (owned_method, owned_params) = (method.to_owned(), params.map(ToOwned::to_owned));
        let (moved, helpers) = (Arc::clone(declared), Arc::clone(&mrtr));
        let spawned = std::thread::Builder::new().name("mcprouter-mrtr".into()).spawn(move || {
            let _caller = era::enter(Caller::Modern(moved));
            let p = owned_params.as_deref();
            let named = named_param(&owned_method, p);
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                helper.request(&view, &call_id, &owned_method, p, named)
            }))
            .unwrap_or_else(|_| (Out::error(INTERNAL_ERROR, "Internal error"), None));
            drop(view);
            let _ = tx.send(out);
            drop(helper);
            helpers.helpers.fetch_sub(1, Ordering::AcqRel);
        });
        if spawned.is_err() {
            mrtr.helpers.fetch_sub(1, Ordering::AcqRel);
            drop(guard);
            let _inline = mrtr.wait(self.shared.id, Arc::clone(declared), true);
            return self.request(v, id, method, params, named_param(method, params));
        }
        let token = progress_token(params);
        let waiting = Waiting {
            binding: self.binding(method, params),
            done,
            inbox,
            guard,
            call,
            helper: helper_shared,
            now: token.clone(),
            token,
        };
        self.await_input(v, id, waiting, Vec::new())
    }

    /// Waits for the call to finish or to ask something; asked, it is parked. `client_id` is
    /// the id of the request waiting (its cancellation cancels the call).
    fn await_input(&self, v: &View, client_id: &RawValue, w: Waiting, mut asked: Vec<(String, Inbound)>) -> Done {
        let mrtr = &self.core().hub.mrtr;
        let _alias = mrtr.alias(self.shared.id, client_id.get(), &w.helper, &w.call);
        // What the call's session got (progress, logs) goes to the client waiting now; all of
        // it before the result, as the backend sent it before the result.
        // Log messages only when the waiting request asked for them (`logLevel`).
        let logs = matches!(era::current(), Some(Caller::Modern(d)) if d.log_level.is_some());
        let (call_token, now_token) = (w.token.clone(), w.now.clone());
        let pass = |ev: String| {
            if !logs && ev.contains("\"notifications/message\"") {
                return;
            }
            if let Some(ev) = retoken(ev, call_token.as_ref(), now_token.as_ref()) {
                self.shared.push(ev);
            }
        };
        let forward = |w: &Waiting| {
            while let Ok(ev) = w.helper.events_rx.try_recv() {
                pass(ev);
            }
        };
        loop {
            // A finished call wins over a question it asked on its way out.
            if let Ok(d) = w.done.try_recv() {
                forward(&w);
                return d;
            }
            if !asked.is_empty() {
                while let Ok(more) = w.inbox.try_recv() {
                    asked.push((format!("r{}", mrtr.next_id()), more));
                }
                forward(&w);
                return self.park(v, client_id, w, asked);
            }
            select! {
                recv(w.done) -> d => {
                    forward(&w);
                    return d.unwrap_or_else(|_| (Out::error(INTERNAL_ERROR, "the call ended without an answer"), None));
                }
                recv(w.helper.events_rx) -> ev => {
                    if let Ok(ev) = ev {
                        pass(ev);
                    }
                }
                recv(w.inbox) -> m => match m {
                    Ok(first) => asked.push((format!("r{}", mrtr.next_id()), first)),
                    Err(_) => {
                        return w.done.recv().unwrap_or_else(|_| (Out::error(INTERNAL_ERROR, "the call ended without an answer"), None));
                    }
                },
            }
        }
    }

    /// Answers the client `input_required` and keeps the call waiting under a fresh state.
    fn park(&self, v: &View, client_id: &RawValue, w: Waiting, asked: Vec<(String, Inbound)>) -> Done {
        self.expire_parked();
        let requests: Map<String, Value> = asked
            .iter()
            .map(|(k, i)| {
                let params = i.params.as_ref().and_then(|p| serde_json::from_str::<Value>(p.get()).ok());
                (k.clone(), json!({"method": i.method, "params": params.unwrap_or_else(|| json!({}))}))
            })
            .collect();
        let expires = Instant::now() + Duration::from_millis(v.config.router.request_timeout_ms);
        let mrtr = &self.core().hub.mrtr;
        let parked = Parked {
            binding: w.binding,
            done: w.done,
            inbox: w.inbox,
            asked,
            expires,
            guard: w.guard,
            call: w.call,
            helper: w.helper,
            token: w.token,
        };
        let now = w.now;
        match mrtr.park(Box::new(parked)) {
            Ok(state) => {
                let r = json!({"resultType": "input_required", "inputRequests": requests, "requestState": state});
                (Out::Ok(r.to_string()), None)
            }
            Err(p) => {
                let (asked, w) = Waiting::unparked(*p, now);
                let why = format!("{} calls already wait for their clients' input", mrtr::MAX_PARKED);
                self.refuse_asked(asked, INTERNAL_ERROR, &why);
                self.await_input(v, client_id, w, Vec::new())
            }
        }
    }

    /// A retry carrying the router's `requestState`: the answers go to the backend as its
    /// requests' responses, and the call goes on.
    fn resume(&self, v: &View, id: &RawValue, method: &str, params: Option<&RawValue>, state: &str) -> Done {
        self.expire_parked();
        let binding = self.binding(method, params);
        let Some(p) = self.core().hub.mrtr.resume(state, &binding) else {
            let msg = "requestState is unknown, expired or not this call's: send the call again without it";
            return (invalid(msg), None);
        };
        #[derive(serde::Deserialize)]
        struct Retry {
            #[serde(rename = "inputResponses", default)]
            input_responses: Map<String, Value>,
        }
        let responses = params
            .and_then(|p| serde_json::from_str::<Retry>(p.get()).ok())
            .map(|r| r.input_responses)
            .unwrap_or_default();
        let (asked, w) = Waiting::unparked(*p, progress_token(params));
        let mut still = Vec::new();
        for (key, inbound) in asked {
            match responses.get(&key) {
                Some(r) => {
                    if let Some(b) = self.core().backend(inbound.backend) {
                        let _ = b.respond(jsonrpc::result(inbound.backend_id.get(), &r.to_string()));
                    }
                }
                None => still.push((key, inbound)),
            }
        }
        self.await_input(v, id, w, still)
    }

    /// Parked calls whose client did not come back end (`Mrtr::sweep`).
    fn expire_parked(&self) {
        let core = self.core();
        core.hub.mrtr.sweep(Instant::now(), &|id| core.backend(id));
    }

    fn refuse_asked(&self, asked: Vec<(String, Inbound)>, code: i64, why: &str) {
        for (_, i) in asked {
            if let Some(b) = self.core().backend(i.backend) {
                let _ = b.respond(jsonrpc::error(Some(i.backend_id.get()), code, why));
            }
        }
    }

    /// A parked state is good only for the same client's retry of the same call.
    fn binding(&self, method: &str, params: Option<&RawValue>) -> String {
        #[derive(serde::Deserialize)]
        struct Target {
            name: Option<String>,
            uri: Option<String>,
        }
        let t = params.and_then(|p| serde_json::from_str::<Target>(p.get()).ok());
        let target = t.and_then(|t| t.name.or(t.uri)).unwrap_or_default();
        format!("{}\u{0}{method}\u{0}{target}", self.shared.client_id)
    }

    /// A legacy client's call that a modern backend answered `input_required`: each input
    /// request is relayed to the client as a JSON-RPC request, and the call is sent again
    /// with the answers and the backend's `requestState`, verbatim.
    pub(super) fn legacy_rounds(
        &self,
        v: &View,
        id: &RawValue,
        method: &str,
        params: Option<&RawValue>,
        first: Done,
    ) -> Done {
        let mut done = first;
        for _ in 0..MAX_ROUNDS {
            let backend = done.1;
            let res = match &done.0 {
                Out::Ok(r) if r.contains("input_required") => match serde_json::from_str::<Value>(r) {
                    Ok(Value::Object(o)) if o.get("resultType").and_then(Value::as_str) == Some("input_required") => o,
                    _ => return done,
                },
                _ => return done,
            };
            let answers = match self.ask_client(v, res.get("inputRequests")) {
                Ok(a) => a,
                Err(out) => return (out, backend),
            };
            let mut p = params.and_then(|p| serde_json::from_str::<Value>(p.get()).ok()).unwrap_or_else(|| json!({}));
            if let Some(o) = p.as_object_mut() {
                if !answers.is_empty() {
                    o.insert("inputResponses".into(), Value::Object(answers));
                }
                if let Some(s) = res.get("requestState") {
                    o.insert("requestState".into(), s.clone());
                }
            }
            let Ok(raw) = RawValue::from_string(p.to_string()) else { return done };
            done = self.request(v, id, method, Some(&raw), named_param(method, Some(&raw)));
        }
        let msg = format!("the server asked for input more than {MAX_ROUNDS} times in one call; the router gave up");
        (Out::error(INTERNAL_ERROR, &msg), done.1)
    }

    /// Relays one round of input requests to this (legacy) client and collects its answers.
    fn ask_client(&self, v: &View, requests: Option<&Value>) -> Result<Map<String, Value>, Out> {
        let Some(Value::Object(requests)) = requests else { return Ok(Map::new()) };
        if requests.len() > MAX_INPUTS {
            return Err(Out::error(
                INTERNAL_ERROR,
                &format!("the server asked for more than {MAX_INPUTS} inputs at once"),
            ));
        }
        let mrtr = &self.core().hub.mrtr;
        let (tx, rx) = mrtr::answers();
        let mut ids = Vec::new();
        let give_up = |ids: &[String], out: Out| {
            mrtr.forget(self.shared.id, ids);
            Err(out)
        };
        for (key, req) in requests {
            let m = req.get("method").and_then(Value::as_str).unwrap_or_default();
            if !INPUT_METHODS.contains(&m) {
                let msg = format!("the server asked for {}, which is not an input request", super::clip(m));
                return give_up(&ids, Out::error(INTERNAL_ERROR, &msg));
            }
            let capability = m.split('/').next().unwrap_or_default();
            let declared = {
                let c = self.shared.client.lock();
                !c.initialized || c.capabilities.get(capability).is_some()
            };
            if !declared {
                // What a modern server answers itself in this case (2026-07-28 -32021).
                let msg = format!("the server needs the client's {capability} capability, which it did not declare");
                let e = json!({"code": era::MISSING_CAPABILITY, "message": msg,
                    "data": {"requiredCapabilities": {capability: {}}}});
                return give_up(&ids, Out::Err(e.to_string(), Outcome::Error));
            }
            let cid = mrtr.ask(self.shared.id, key, &tx);
            ids.push(cid.clone());
            let p = req.get("params").map(Value::to_string);
            if !self.shared.push(jsonrpc::request(&cid, m, p.as_deref())) {
                return give_up(&ids, Out::error(INTERNAL_ERROR, &format!("the client cannot take {m} now")));
            }
        }
        let deadline = Instant::now() + Duration::from_millis(v.config.router.request_timeout_ms);
        let mut answers = Map::new();
        while answers.len() < requests.len() {
            match rx.recv_deadline(deadline) {
                Ok((key, Ok(r))) => {
                    answers.insert(key, serde_json::from_str(r.get()).unwrap_or(Value::Null));
                }
                // The client refused: that is the call's answer.
                Ok((_, Err(e))) => return give_up(&ids, Out::backend_error(e)),
                Err(_) => {
                    for cid in &ids {
                        let p = format!("{{\"requestId\":{cid},\"reason\":\"timed out\"}}");
                        self.shared.push(jsonrpc::notification("notifications/cancelled", Some(&p)));
                    }
                    let msg = "the client did not answer the server's input requests in time";
                    return give_up(&ids, Out::error(REQUEST_TIMEOUT, msg));
                }
            }
        }
        Ok(answers)
    }
}

/// The `progressToken` in a request's `params._meta`.
fn progress_token(params: Option<&RawValue>) -> Option<Value> {
    let p = params.filter(|p| p.get().contains("\"progressToken\""))?;
    let v: Value = serde_json::from_str(p.get()).ok()?;
    v.pointer("/_meta/progressToken").cloned()
}

/// A call's progress as the request waiting now must get it. A retry is a request of its
/// own, and the one that started the call was completed by its `input_required` answer, so
/// that request's token must hear no more (progress stops at completion); the call's
/// progress goes out under the waiting request's token, or not at all when it has none
/// (the client may have given the old token to another request since).
fn retoken(ev: String, call: Option<&Value>, now: Option<&Value>) -> Option<String> {
    if call == now || !ev.contains("\"notifications/progress\"") {
        return Some(ev);
    }
    let Ok(mut v) = serde_json::from_str::<Value>(&ev) else { return Some(ev) };
    if v["method"] != "notifications/progress" || v.pointer("/params/progressToken") != call {
        return Some(ev);
    }
    v["params"]["progressToken"] = now?.clone();
    Some(v.to_string())
}

/// The `requestState` a retry carries.
fn request_state(params: Option<&RawValue>) -> Option<String> {
    let p = params.filter(|p| p.get().contains("requestState"))?;
    #[derive(serde::Deserialize)]
    struct State {
        #[serde(rename = "requestState")]
        request_state: Option<String>,
    }
    serde_json::from_str::<State>(p.get()).ok()?.request_state
}
