//! Routing: which backend a tool or prompt name, a resource URI or a completion goes to,
//! and the candidates (a pool's members, a fallback chain) a call may try.

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;
use serde_json::value::RawValue;

use super::attempts::Plan;
use super::{Out, Session, UriParam, bad};
use crate::backend::{CallError, Deadline};
use crate::catalog::Lookup;
use crate::core::View;
use crate::era::Era;
use crate::jsonrpc;

/// Where a routed call goes, and what the catalog says about repeating it.
pub(super) struct Route<'a> {
    pub owner: usize,
    /// (exposed, original) tool name, to find a fallback chain.
    pub chain_key: Option<(&'a str, &'a str)>,
    /// Safe to send again after an attempt that may have run.
    pub idempotent: bool,
}

impl Session {
    /// `tools/call` and `prompts/get`: find the owner of the exposed name and forward with
    /// the backend's own name.
    pub(super) fn route_named(
        &self,
        v: &View,
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
        if let Some(refused) = self.refuse_named(v, &name, tool) {
            return refused;
        }
        let catalog = v.catalog();
        let found = if tool { catalog.tool(&name) } else { catalog.prompt(&name) };
        // The catalog is held until the call ends: the original name is read from it.
        let (owner, original, hint) = match found {
            Lookup::Found(t) => (t.owner, t.original.as_str(), t.idempotent),
            // A fallback chain for the name says which of its servers to use, in order.
            Lookup::Ambiguous(os) if tool && v.config.fallbacks.iter().any(|f| f.tool.as_deref() == Some(&*name)) => {
                (os[0], &*name, false)
            }
            Lookup::Ambiguous(os) => {
                let names: Vec<&str> = os.iter().filter_map(|o| v.owners.get(*o)).map(|o| o.name.as_str()).collect();
                return bad(format!(
                    "{what} {name:?} is ambiguous: served by {} (prefix mode is never)",
                    names.join(", ")
                ));
            }
            Lookup::Unknown => return bad(format!("Unknown {what}: {name}")),
        };
        let rename = (original != name).then_some(original);
        let route = Route { owner, chain_key: tool.then_some((name.as_ref(), original)), idempotent: hint };
        self.dispatch(
            v,
            id,
            route,
            method,
            params,
            |p| {
                if let (Some(n), Some(obj)) = (rename, p.as_object_mut()) {
                    obj.insert("name".into(), Value::String(n.to_owned()));
                }
            },
            rename.is_some(),
        )
    }

    pub(super) fn route_uri(
        &self,
        v: &View,
        id: &RawValue,
        method: &str,
        params: Option<&RawValue>,
    ) -> (Out, Option<usize>) {
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
                Some((b, true)) if self.core().backend(b).is_some_and(|b| b.era() == Era::Modern) => {
                    let _ = self.core().backend(b).map(|m| m.listen_resource(&uri, false));
                    (Out::Ok("{}".into()), Some(b))
                }
                Some((b, true)) => self.call_backend(id, b, method, params),
                Some((b, false)) => (Out::Ok("{}".into()), Some(b)),
                // Nothing of ours to undo; the backend's subscription belongs to others.
                None => (Out::Ok("{}".into()), None),
            };
        }
        if let Some(refused) = self.refuse_uri(v, &uri) {
            return refused;
        }
        let Some(owner) = v.catalog().resource_owner(&uri) else {
            return bad(format!("Unknown resource: {uri}"));
        };
        if method == "resources/subscribe" {
            if let Some(b) = hub.subscribed_via(&uri, self.shared.id) {
                return (Out::Ok("{}".into()), Some(b));
            }
            // The hub knows backends by id.
            let members: Vec<usize> = v
                .owners
                .get(owner)
                .map(|o| o.members.iter().filter_map(|m| v.backends.get(*m)).map(|b| b.id).collect())
                .unwrap_or_default();
            if let Some(b) = hub.subscribed_backend(&uri, &members) {
                hub.add_subscriber(&uri, b, self.shared.id);
                return (Out::Ok("{}".into()), Some(b));
            }
            // A modern member is subscribed to with a listen of its own (`listen_resource`).
            let modern = v.owners.get(owner).and_then(|o| {
                o.members.iter().filter_map(|m| v.backends.get(*m)).find(|b| b.is_ready() && b.era() == Era::Modern)
            });
            if let Some(b) = modern {
                return match b.listen_resource(&uri, true) {
                    Ok(()) => {
                        hub.add_subscriber(&uri, b.id, self.shared.id);
                        (Out::Ok("{}".into()), Some(b.id))
                    }
                    Err(e) => (Out::error(jsonrpc::BACKEND_UNAVAILABLE, &format!("cannot subscribe: {e}")), Some(b.id)),
                };
            }
        }
        // Reading is safe to repeat; subscribing is not worth a second try.
        let route = Route { owner, chain_key: None, idempotent: method == "resources/read" };
        let (out, backend) = self.dispatch(v, id, route, method, params, |_| {}, false);
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

    /// One request to one given backend, by id (an unsubscribe must reach the backend that holds
    /// the subscription, whatever a pool's balancer would pick), cancellable by the client.
    pub(super) fn call_backend(
        &self,
        id: &RawValue,
        b: usize,
        method: &str,
        params: Option<&RawValue>,
    ) -> (Out, Option<usize>) {
        // A backend a reload removed has stopped, and its subscriptions with it.
        let Some(backend) = self.core().backend(b) else { return (Out::Ok("{}".into()), None) };
        let ticket = match backend.start_call(method, params.map(RawValue::get), self.shared.id) {
            Ok(t) => t,
            Err(e) => return (Out::call_failed(&e, backend.name()), Some(b)),
        };
        if !self.shared.enter_inflight(id.get(), b, ticket.id) {
            backend.cancel(ticket.id, "cancelled by the client");
        }
        let r = backend.finish_call(ticket, &Deadline::fixed(Instant::now() + backend.timeout));
        self.shared.leave_inflight(id.get());
        let out = match r {
            Ok(Ok(r)) => Out::Ok(Box::<str>::from(r).into()),
            Ok(Err(e)) => Out::backend_error(e),
            Err(CallError::Cancelled) => Out::Nothing,
            Err(e) => Out::call_failed(&e, backend.name()),
        };
        (out, Some(b))
    }

    /// Drops every subscription of this (closing) session; where it was the last
    /// subscriber, the backend is told, all at once and each for a short while only.
    pub(super) fn leave_subscriptions(&self) {
        let core = self.core();
        let mut tickets = Vec::new();
        for uri in core.hub.subscriptions_of(self.shared.id) {
            let _gate = core.hub.subscription_gate(&uri);
            let Some((b, true)) = core.hub.remove_subscriber(&uri, self.shared.id) else { continue };
            let Some(backend) = core.backend(b) else { continue };
            if backend.era() == Era::Modern {
                let _ = backend.listen_resource(&uri, false);
                continue;
            }
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

    pub(super) fn route_completion(&self, v: &View, id: &RawValue, params: Option<&RawValue>) -> (Out, Option<usize>) {
        let Some(params_v) = params.and_then(|p| serde_json::from_str::<Value>(p.get()).ok()) else {
            return bad("completion/complete needs params");
        };
        let catalog = v.catalog();
        let kind = params_v.pointer("/ref/type").and_then(Value::as_str).unwrap_or_default();
        let (owner, rename) = match kind {
            "ref/prompt" => {
                let name = params_v.pointer("/ref/name").and_then(Value::as_str).unwrap_or_default();
                if let Some(refused) = self.refuse_named(v, name, false) {
                    return refused;
                }
                match catalog.prompt(name) {
                    Lookup::Found(p) => (p.owner, (p.original != name).then(|| p.original.clone())),
                    _ => return bad(format!("Unknown prompt: {name}")),
                }
            }
            "ref/resource" => {
                let uri = params_v.pointer("/ref/uri").and_then(Value::as_str).unwrap_or_default();
                if let Some(refused) = self.refuse_uri(v, uri) {
                    return refused;
                }
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
            v,
            id,
            route,
            "completion/complete",
            params,
            |p| {
                if let (Some(n), Some(r)) = (&rename, p.get_mut("ref").and_then(Value::as_object_mut)) {
                    r.insert("name".into(), Value::String(n.clone()));
                }
            },
            needs,
        )
    }

    /// The candidates for a call: a fallback chain if one is configured for this tool or
    /// method, else the owner's members (a pool balances among them).
    pub(super) fn plan<'v>(&self, v: &'v View, route: &Route<'_>, method: &str) -> Plan<'v> {
        let core = v;
        let chain = core.config.fallbacks.iter().find(|f| match (&f.tool, &f.method, route.chain_key) {
            (Some(t), _, Some((exposed, original))) => t == exposed || t == original,
            (None, Some(m), _) => m == method,
            _ => false,
        });
        if let Some(f) = chain {
            let order =
                f.candidates.iter().filter_map(|c| core.backends.iter().position(|b| b.name() == c.as_str())).collect();
            return Plan {
                order: std::borrow::Cow::Owned(order),
                is_pool: false,
                is_chain: true,
                idempotent: route.idempotent || f.idempotent,
            };
        }
        let members = core.owners.get(route.owner).map(|o| o.members.as_slice()).unwrap_or_default();
        let is_pool = members.len() > 1;
        Plan { order: members.into(), is_pool, is_chain: false, idempotent: route.idempotent }
    }
}
