//! A request in either era. A modern (2026-07-28) request is handled with what its own
//! `_meta` declares and its result completed the modern way (`era::complete`); a legacy one
//! with what the session's `initialize` said. Where the client's era and the backend's differ,
//! server-to-client requests are translated (`mrtr.rs`).

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::methods::server_info;
use super::mrtr::takes_input;
use super::{Out, Session, invalid};
use crate::core::View;
use crate::era::{self, Declared, KEY_SERVER_INFO, MODERN};
use crate::method::Method;

type Named<'a> = Option<Result<Cow<'a, str>, String>>;

impl Session {
    /// A request carrying the 2026-07-28 envelope: stateless, with its own capabilities.
    pub(super) fn modern_request(
        &self,
        v: &View,
        id: &RawValue,
        method: &str,
        params: Option<&RawValue>,
        named: Named<'_>,
        declared: &Arc<Declared>,
    ) -> (Out, Option<usize>) {
        let m = Method::parse(method);
        if m == Method::Initialize {
            return self.request(v, id, method, params, named);
        }
        {
            // A client that never sent initialize speaks 2026-07-28 only: the hub must never
            // relay a JSON-RPC request to it.
            let mut c = self.shared.client.lock();
            if !c.initialized {
                c.protocol_version = Some(MODERN.to_owned());
                // Log messages reach it only while its requests ask for them (`listen.rs`).
                c.log_level.clone_from(&declared.log_level);
            }
        }
        let (out, backend) = match m {
            Method::ServerDiscover => (self.discover(v), None),
            Method::SubscriptionsListen => self.listen(v, id, params),
            _ if takes_input(m) => self.modern_call(v, id, method, params, named, declared),
            _ => {
                // No input can be taken here: what a backend asks meanwhile is refused.
                let _inline = self.core().hub.mrtr.wait(self.shared.id, Arc::clone(declared), true);
                self.request(v, id, method, params, named)
            }
        };
        let out = match out {
            Out::Ok(r) => Out::Ok(era::complete(&r, m, cache_scope(v), &server_info(v))),
            other => other,
        };
        (out, backend)
    }

    /// A request without the modern envelope: legacy semantics.
    pub(super) fn legacy_request(
        &self,
        v: &View,
        id: &RawValue,
        method: &str,
        params: Option<&RawValue>,
        named: Named<'_>,
    ) -> (Out, Option<usize>) {
        if Method::parse(method) == Method::ServerDiscover {
            let msg = format!(
                "server/discover takes the {MODERN} params._meta (io.modelcontextprotocol/protocolVersion and clientCapabilities)"
            );
            return (invalid(msg), None);
        }
        let done = self.request(v, id, method, params, named);
        if takes_input(Method::parse(method)) { self.legacy_rounds(v, id, method, params, done) } else { done }
    }

    /// `server/discover`: what `initialize` would announce, plus every version served.
    fn discover(&self, v: &View) -> Out {
        let (caps, instructions) = match self.merged(v) {
            Ok(m) => m,
            Err(out) => return out,
        };
        let mut result = json!({
            "resultType": "complete",
            "supportedVersions": era::supported_versions(),
            "capabilities": caps,
            "ttlMs": 0,
            "cacheScope": cache_scope(v),
            "_meta": {KEY_SERVER_INFO: server_info(v)},
        });
        if let Some(text) = instructions {
            result["instructions"] = Value::String(text);
        }
        Out::Ok(result.to_string())
    }
}

/// Whether a modern client's cache may share the router's answers across users: not when
/// an access policy gives each client its own view of the catalog.
pub(super) fn cache_scope(v: &View) -> &'static str {
    if v.policy.enabled() { "private" } else { "public" }
}
