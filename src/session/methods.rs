//! The method table, and what the router answers itself: `initialize`, `ping`, the
//! merged lists, `logging/setLevel`, the client's notifications and its answers to
//! relayed requests.

use std::borrow::Cow;
use std::time::Instant;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::{Out, Session, invalid};
use crate::backend::{Deadline, SUPPORTED_VERSIONS};
use crate::catalog::Kind;
use crate::core::View;
use crate::jsonrpc::{self, METHOD_NOT_FOUND};
use crate::method::Method;

impl Session {
    /// Handles one request; also says which backend served it, for metrics.
    pub(super) fn request(
        &self,
        v: &View,
        id: &RawValue,
        method: &str,
        params: Option<&RawValue>,
        named: Option<Result<Cow<'_, str>, String>>,
    ) -> (Out, Option<usize>) {
        #[cfg(test)]
        if method == "test/panic" {
            panic!("a bug on the caller's path");
        }
        // Routed methods go to a backend; the rest the router answers itself.
        let routed = match (Method::parse(method), named) {
            (Method::ToolsCall, Some(name)) => Some(self.route_named(v, id, method, params, name, true)),
            (Method::PromptsGet, Some(name)) => Some(self.route_named(v, id, method, params, name, false)),
            (Method::ResourcesRead | Method::ResourcesSubscribe | Method::ResourcesUnsubscribe, _) => {
                Some(self.route_uri(v, id, method, params))
            }
            (Method::CompletionComplete, _) => Some(self.route_completion(v, id, params)),
            _ => None,
        };
        if let Some((out, backend)) = routed {
            return (out, backend);
        }
        let out = match Method::parse(method) {
            Method::Initialize => self.initialize(v, params),
            Method::Ping => Out::Ok("{}".into()),
            Method::ToolsList => self.list(v, Kind::Tools, params),
            Method::PromptsList => self.list(v, Kind::Prompts, params),
            Method::ResourcesList => self.list(v, Kind::Resources, params),
            Method::ResourcesTemplatesList => self.list(v, Kind::Templates, params),
            Method::LoggingSetLevel => self.set_level(v, params),
            _ => Out::error(METHOD_NOT_FOUND, &format!("Method not found: {method}")),
        };
        (out, None)
    }

    pub(super) fn initialize(&self, view: &View, params: Option<&RawValue>) -> Out {
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
            c.client_info = v.get("clientInfo").filter(|i| i.is_object()).cloned();
        }
        let (caps, instructions) = match self.merged(view) {
            Ok(m) => m,
            Err(out) => return out,
        };
        let mut result = json!({
            "protocolVersion": version,
            "capabilities": caps,
            "serverInfo": server_info(view),
        });
        if let Some(text) = instructions {
            result["instructions"] = Value::String(text);
        }
        Out::Ok(result.to_string())
    }

    /// What `initialize` and `server/discover` both announce: the merged capabilities and
    /// instructions of the ready backends. Refused while `fail_mode: closed` has a backend down.
    pub(super) fn merged(&self, view: &View) -> Result<(Value, Option<String>), Out> {
        let core = view;
        if core.config.router.fail_mode == crate::config::FailMode::Closed {
            let down: Vec<&str> = core.backends.iter().filter(|b| !b.is_ready()).map(|b| b.name()).collect();
            if !down.is_empty() {
                let msg = format!("fail_mode is closed and these backends are not ready: {}", down.join(", "));
                return Err(Out::error(jsonrpc::BACKEND_UNAVAILABLE, &msg));
            }
        }
        let infos: Vec<_> =
            core.backends.iter().filter(|b| b.is_ready()).map(|b| (b.name().to_owned(), b.info())).collect();
        let any = |f: &dyn Fn(&Value) -> bool| infos.iter().any(|(_, i)| f(&i.facts.capabilities));
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
            infos.iter().filter_map(|(n, i)| i.facts.instructions.as_ref().map(|t| (n, t))).collect();
        let instructions: Vec<String> = match with_text.as_slice() {
            [(_, t)] => vec![(*t).clone()],
            several => several.iter().map(|(n, t)| format!("[{n}] {t}")).collect(),
        };
        Ok((caps, (!instructions.is_empty()).then(|| instructions.join("\n\n"))))
    }
}

/// The router's `serverInfo`.
pub(super) fn server_info(view: &View) -> Value {
    json!({"name": view.config.router.name, "version": env!("CARGO_PKG_VERSION")})
}

impl Session {
    pub(super) fn list(&self, v: &View, kind: Kind, params: Option<&RawValue>) -> Out {
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
        match self.visible_page(v, kind, cursor.as_deref()) {
            Ok(page) => Out::Ok(page),
            Err(msg) => invalid(msg),
        }
    }

    /// Sends the level to every ready backend that logs, all in flight at once.
    pub(super) fn set_level(&self, v: &View, params: Option<&RawValue>) -> Out {
        let Some(p) = params else { return invalid("logging/setLevel needs params.level") };
        // Calls to modern backends carry it per request.
        let level =
            serde_json::from_str::<Value>(p.get()).ok().and_then(|v| v.get("level")?.as_str().map(str::to_owned));
        self.shared.client.lock().log_level = level;
        let tickets: Vec<_> = v
            .backends
            .iter()
            // A modern backend takes the level per request (`_meta`), not as a method.
            .filter(|b| {
                let info = b.info();
                b.is_ready()
                    && info.facts.era == crate::era::Era::Legacy
                    && info.facts.capabilities.get("logging").is_some()
            })
            .filter_map(|b| b.start_call("logging/setLevel", Some(p.get()), self.shared.id).ok().map(|t| (b, t)))
            .collect();
        for (b, t) in tickets {
            let _ = b.finish_call(t, &Deadline::fixed(Instant::now() + b.timeout));
        }
        Out::Ok("{}".into())
    }

    pub(super) fn notification(&self, method: &str, params: Option<&RawValue>) {
        let core = self.core();
        match method {
            "notifications/initialized" => {
                self.shared.client.lock().initialized = true;
                // A server that asked for roots before this client came (and was refused)
                // learns that there are roots now, as it would when connected directly.
                if self.shared.declares("roots") {
                    for b in core.view().value().backends.iter().filter(|b| b.is_ready()) {
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
                if self.stop_listen(c.request_id.get()) {
                    return;
                }
                // A modern client's call may run under the router's own id (`mrtr.rs`).
                let target = self.shared.cancel_request(c.request_id.get()).or_else(|| {
                    let (helper, call) = core.hub.mrtr.aliased(self.shared.id, c.request_id.get())?;
                    helper.cancel_request(&call)
                });
                if let Some((b, id)) = target {
                    let reason = c.reason.as_deref().unwrap_or("cancelled by the client");
                    if let Some(backend) = core.backend(b) {
                        backend.cancel(id, reason);
                    }
                }
            }
            "notifications/roots/list_changed" => {
                for b in core.view().value().backends.iter().filter(|b| b.is_ready()) {
                    let _ = b.notify(method, None);
                }
            }
            _ => log::debug!(target: "mcprouter::session", "notification {method} ignored"),
        }
    }

    /// The client's answer to a request a backend sent it: back to that backend, under the
    /// backend's own id.
    pub(super) fn client_response(&self, id: &RawValue, outcome: std::result::Result<&RawValue, &RawValue>) {
        // An answer to an input request a modern backend made (`mrtr.rs`).
        let answer = outcome.map(ToOwned::to_owned).map_err(ToOwned::to_owned);
        if self.core().hub.mrtr.answer(self.shared.id, id.get(), answer) {
            return;
        }
        let Some(relay) = self.shared.relays.lock().remove(id.get()) else {
            log::debug!(target: "mcprouter::session", "response to unknown id {} dropped", id.get());
            return;
        };
        self.core().hub.relay_settled();
        let Some(backend) = self.core().backend(relay.backend) else { return };
        let line = match outcome {
            Ok(r) => jsonrpc::result(relay.backend_id.get(), r.get()),
            Err(e) => jsonrpc::error_raw(relay.backend_id.get(), e.get()),
        };
        if let Err(e) = backend.respond(line) {
            log::warn!(target: "mcprouter::session", "[{}] could not deliver the client's answer: {e}", backend.name());
        }
    }
}
