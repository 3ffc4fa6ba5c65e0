//! The access log and the request metrics: one record per client request.

use std::time::Duration;

use serde_json::Value;
use serde_json::value::RawValue;

use super::{Out, Session, UriParam, clip};
use crate::metrics::Outcome;

impl Session {
    // Everything one access record holds, as the caller has it at hand.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn record(
        &self,
        v: &crate::core::View,
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
            Out::Err(_, outcome) => *outcome,
        };
        let m = &self.core().metrics;
        // `backend` is an id; metrics count by name.
        // Borrowed from the view when it has it (nearly always): no reference count to touch.
        let draining;
        let found: Option<&crate::backend::Backend> = match backend.map(|id| (id, v.position(id))) {
            Some((_, Some(p))) => v.backends.get(p).map(|b| &**b),
            Some((id, None)) => {
                draining = self.core().backend(id);
                draining.as_deref()
            }
            None => None,
        };
        let slot = found.as_ref().map(|b| m.slot_for(b.name()));
        m.request(method, slot, outcome, took);
        if outcome == Outcome::Overload
            && let Some(s) = slot
        {
            m.overload(s);
        }
        if method == "tools/call" {
            m.tool_call(name.unwrap_or(""), outcome);
        }
        if log::log_enabled!(target: "mcprouter::access", log::Level::Info) {
            let uri = match method {
                "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                    params.and_then(|p| serde_json::from_str::<UriParam<'_>>(p.get()).ok()).and_then(|u| u.uri)
                }
                _ => None,
            };
            let backend = found.as_ref().map_or("", |b| b.name());
            let error = match out {
                Out::Err(e, _) => serde_json::from_str::<Value>(e)
                    .map(|v| format!("{} {}", v["code"], v["message"].as_str().unwrap_or_default()))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            // Untrusted strings are cut short: a log line is not a place to store a payload.
            log::info!(
                target: "mcprouter::access",
                session = self.shared.client_id.as_str(),
                method = clip(method),
                name = clip(name.unwrap_or("")),
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
}
