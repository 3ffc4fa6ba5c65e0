//! The session's side of the policy and the limits: the lists it may see, the calls it
//! may not make, and the limits a routed call must pass. Each is one call from the method
//! table, routing or dispatch; the decisions themselves are in `policy.rs` and `limits.rs`.

use std::time::Instant;

use super::{Out, Session, clip};
use crate::catalog::{Kind, Lookup};
use crate::core::View;
use crate::jsonrpc::{self, NOT_PERMITTED, RATE_LIMITED};
use crate::limits::{Limited, Permit};
use crate::policy::{Rule, Who};

/// The -32005 error object: what was refused and the rule that refused it (a config path,
/// never anything from the request beyond the clipped name).
fn not_permitted(what: &str, name: &str, rule: &Rule) -> Out {
    let message = format!("Not permitted: this client may not use {what} {:?}", clip(name));
    let object = format!(
        "{{\"code\":{NOT_PERMITTED},\"message\":{},\"data\":{{\"rule\":{}}}}}",
        jsonrpc::quote(&message),
        jsonrpc::quote(rule)
    );
    Out::Err(object, crate::metrics::Outcome::Error)
}

/// The -32006 error object, with the limit and when to try again.
pub(crate) fn rate_limited(l: Limited) -> Out {
    let ms = l.retry_after.as_millis().max(1) as u64;
    let message = format!("Rate limited ({}): try again in {ms} ms", l.kind.as_str());
    let object = format!(
        "{{\"code\":{RATE_LIMITED},\"message\":{},\"data\":{{\"limit\":\"{}\",\"retryAfterMs\":{ms}}}}}",
        jsonrpc::quote(&message),
        l.kind.as_str()
    );
    Out::Err(object, crate::metrics::Outcome::Overload)
}

impl Session {
    fn who(&self, v: &View) -> Who {
        v.policy.who(&self.shared.client_id)
    }

    /// One page of `kind` as this session may see it.
    pub(super) fn visible_page(&self, v: &View, kind: Kind, cursor: Option<&str>) -> Result<String, String> {
        let catalog = v.catalog();
        let page_size = v.config.router.page_size;
        v.policy
            .page(self.who(v), &catalog, kind, cursor, page_size)
            .unwrap_or_else(|| catalog.page(kind, cursor, page_size))
    }

    /// The refusal of a `tools/call` or `prompts/get` (or a completion of a prompt) this
    /// session may not make, counted and audited; `None` when permitted.
    pub(super) fn refuse_named(&self, v: &View, name: &str, tool: bool) -> Option<(Out, Option<usize>)> {
        let who = self.who(v);
        if who == Who::Anyone {
            return None;
        }
        let catalog = v.catalog();
        let rule = v.policy.refuses_named(who, &catalog, name, tool)?;
        let found = if tool { catalog.tool(name) } else { catalog.prompt(name) };
        let owner = match found {
            Lookup::Found(n) => Some(n.owner),
            _ => None,
        };
        let what = if tool { "tool" } else { "prompt" };
        v.policy.denied(who, &self.shared.client_id, what, name, owner, &rule);
        Some((not_permitted(what, name, &rule), None))
    }

    /// The refusal of reading or subscribing to `uri`; `None` when permitted.
    pub(super) fn refuse_uri(&self, v: &View, uri: &str) -> Option<(Out, Option<usize>)> {
        let who = self.who(v);
        if who == Who::Anyone {
            return None;
        }
        let catalog = v.catalog();
        let owner = catalog.resource_owner(uri);
        let rule = v.policy.refuses_uri(who, &catalog, uri, owner)?;
        v.policy.denied(who, &self.shared.client_id, "resource", uri, owner, &rule);
        Some((not_permitted("resource", uri, &rule), None))
    }

    /// Admits a routed call to `owner` under every limit that applies, or refuses it at
    /// once. The permit holds the client's concurrency slot until the call ends.
    pub(super) fn admit<'v>(
        &self,
        v: &'v View,
        owner: usize,
        now: Instant,
    ) -> Result<Permit<'v>, (Out, Option<usize>)> {
        let client = match self.who(v) {
            Who::Client { client, .. } => Some(client),
            Who::Anyone | Who::Nobody => None,
        };
        v.limits.admit(client, owner, now).map_err(|l| {
            // Audited like a denial: who was refused, by which limit, on which owner.
            log::warn!(
                target: "mcprouter::audit",
                client = client.map_or("", |c| v.policy.client_name(c)),
                client_id = clip(&self.shared.client_id),
                backend = v.owners.get(owner).map_or("", |o| o.name.as_str()),
                limit = l.kind.as_str();
                "call limited"
            );
            (rate_limited(l), None)
        })
    }
}
