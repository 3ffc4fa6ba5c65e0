//! Who may call what, and how much: the `clients:`, `default_client:`, `serve_client:`,
//! `policy:` and `limits:` sections, and their validator.
//!
//! The types only describe; `crate::policy` compiles them into per-client views once per
//! config, and `crate::limits` turns `limits:` into token buckets. Secrets never sit in the
//! config: a client's credential is a reference (`env: NAME` or `file: PATH`), as the
//! gateway's tokens are.

use std::collections::HashSet;

use schemars::JsonSchema;
use serde::Deserialize;

use super::gateway::TokenRef;
use super::lines::Locator;
use super::{Config, Filter, MAX_DURATION_MS, glob_match};
use crate::error::{Error, Result};

/// Largest `rate` (calls per second) and `burst` of a bucket, and `calls` of a quota.
pub const MAX_RATE: f64 = 1_000_000.0;
/// Largest `burst` of a bucket.
pub const MAX_BURST: u64 = 1_000_000;
/// Largest `concurrency` cap of a client.
pub const MAX_CLIENT_CONCURRENCY: u64 = 100_000;
/// Largest `calls` of a quota.
pub const MAX_QUOTA_CALLS: u64 = 1_000_000_000;
/// Exposed tool and prompt names are at most this long (see `catalog::normalize`).
const MAX_EXPOSED_NAME: usize = 64;

/// One client of the router: who it is, how the gateway recognises it, its groups.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The identity: `Router::session(Some(name))`, `serve --client NAME`, or the client
    /// whose credential the gateway was shown. 1-64 characters of `[A-Za-z0-9_-]`.
    pub name: String,
    /// The bearer token that identifies this client at the gateway, as a reference.
    #[serde(default)]
    pub credential: Option<TokenRef>,
    /// Groups the client belongs to; rules name groups or clients.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// One access rule. It applies to the clients it names and the members of the groups it
/// names; a rule naming neither applies to every client.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PolicyRule {
    /// Clients this rule applies to.
    #[serde(default)]
    pub clients: Vec<String>,
    /// Groups this rule applies to.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Exposed tool names (as clients see them).
    #[serde(default)]
    pub tools: Filter,
    /// Exposed prompt names.
    #[serde(default)]
    pub prompts: Filter,
    /// Resource URIs and template URIs.
    #[serde(default)]
    pub resources: Filter,
    /// The backend (or pool) serving an item.
    #[serde(default)]
    pub backends: Filter,
    /// The clients this rule applies to may call only tools annotated `readOnlyHint: true`.
    #[serde(default)]
    pub read_only: bool,
}

/// The `policy:` section.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct PolicySettings {
    /// Access rules. Across the rules that apply to a client, deny globs add up and win;
    /// an item must match an allow glob of some rule that has allow globs for its kind.
    pub rules: Vec<PolicyRule>,
    /// Tools that may destroy (`destructiveHint` true, or left out on a tool that is not
    /// `readOnlyHint`, as the MCP spec defaults it) are for members of these groups only.
    /// Empty: no such rule.
    pub destructive_needs: Vec<String>,
}

/// A token bucket: `rate` calls per second on average, `burst` at once.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Rate {
    /// Calls per second refilled (fractions allowed: 0.5 is one call every two seconds).
    pub rate: f64,
    /// Most calls at once; default: the rate rounded up, at least 1.
    #[serde(default)]
    pub burst: Option<u64>,
}

impl Rate {
    /// The burst in effect.
    pub fn burst(&self) -> u64 {
        self.burst.unwrap_or_else(|| (self.rate.ceil() as u64).max(1))
    }
}

/// At most `calls` calls per window of `window_ms` (fixed windows from the router's start;
/// 86 400 000 for a daily quota).
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Quota {
    /// Calls allowed per window.
    pub calls: u64,
    /// The window; default one day.
    #[serde(default = "one_day")]
    pub window_ms: u64,
}

fn one_day() -> u64 {
    MAX_DURATION_MS
}

/// A bucket for one backend (or pool).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BackendLimit {
    /// A backend that is in no pool, or a pool (limited as one).
    pub backend: String,
    /// Calls per second.
    pub rate: f64,
    /// Most at once.
    #[serde(default)]
    pub burst: Option<u64>,
}

/// The limits of one client.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ClientLimit {
    /// A configured client.
    pub client: String,
    /// Calls per second, all backends together.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Most at once.
    #[serde(default)]
    pub burst: Option<u64>,
    /// Calls in flight at once.
    #[serde(default)]
    pub concurrency: Option<u64>,
    /// Calls per window.
    #[serde(default)]
    pub quota: Option<Quota>,
}

/// A bucket for one client on one backend (or pool).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ClientBackendLimit {
    /// A configured client.
    pub client: String,
    /// A backend in no pool, or a pool.
    pub backend: String,
    /// Calls per second.
    pub rate: f64,
    /// Most at once.
    #[serde(default)]
    pub burst: Option<u64>,
}

/// The `limits:` section. Every limit is per process: with several routers behind a
/// balancer, each enforces its own share (see README, "Who may call what").
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct LimitSettings {
    /// Per backend or pool, whoever calls.
    pub backends: Vec<BackendLimit>,
    /// Per client.
    pub clients: Vec<ClientLimit>,
    /// Per client on one backend or pool.
    pub client_backends: Vec<ClientBackendLimit>,
}

impl BackendLimit {
    /// Its bucket.
    pub fn bucket(&self) -> Rate {
        Rate { rate: self.rate, burst: self.burst }
    }
}

impl ClientBackendLimit {
    /// Its bucket.
    pub fn bucket(&self) -> Rate {
        Rate { rate: self.rate, burst: self.burst }
    }
}

impl ClientLimit {
    /// Its bucket, if it has a rate.
    pub fn bucket(&self) -> Option<Rate> {
        self.rate.map(|rate| Rate { rate, burst: self.burst })
    }
}

/// The word `default_client` takes to refuse unknown clients (the default).
pub const DENY: &str = "deny";

fn is_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether a glob over exposed tool or prompt names can match anything: those names are
/// 1-64 characters of `[A-Za-z0-9_-]`.
fn name_glob_can_match(g: &str) -> bool {
    let fixed = g.chars().filter(|c| *c != '*').count();
    !g.is_empty()
        && fixed <= MAX_EXPOSED_NAME
        && g.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '*' | '?'))
}

/// The checks of `clients`, `default_client`, `serve_client`, `policy` and `limits`;
/// called from `Config::validate` after the backends and pools are known good.
pub(super) fn validate(c: &Config, at: Locator<'_>) -> Result<()> {
    let fail = |path: &str, why: &str| Error::Config(format!("{path}: {why}{}", at.path(path)));
    let mut names = HashSet::new();
    let mut groups = HashSet::new();
    for (i, cl) in c.clients.iter().enumerate() {
        if !is_name(&cl.name) || cl.name == DENY {
            return Err(fail(
                &format!("clients[{i}].name"),
                "must be 1-64 characters of [A-Za-z0-9_-], and not \"deny\"",
            ));
        }
        if !names.insert(cl.name.as_str()) {
            return Err(fail(&format!("clients[{i}].name"), &format!("duplicate client name {:?}", cl.name)));
        }
        if let Some(t) = &cl.credential {
            match (&t.env, &t.file) {
                (Some(n), None) if !n.is_empty() => {}
                (None, Some(p)) if !p.as_os_str().is_empty() => {}
                _ => {
                    return Err(fail(
                        &format!("clients[{i}].credential"),
                        "needs exactly one of env: NAME or file: PATH",
                    ));
                }
            }
        }
        if let Some(g) = cl.groups.iter().find(|g| !is_name(g)) {
            return Err(fail(
                &format!("clients[{i}].groups"),
                &format!("{g:?} must be 1-64 characters of [A-Za-z0-9_-]"),
            ));
        }
        groups.extend(cl.groups.iter().map(String::as_str));
    }
    let no_clients = |path: &str| fail(path, "needs a clients: section naming the clients it refers to");
    for (field, v) in [("default_client", &c.default_client), ("serve_client", &c.serve_client)] {
        match v.as_deref() {
            None => {}
            Some(DENY) if field == "default_client" => {}
            Some(_) if c.clients.is_empty() => return Err(no_clients(field)),
            Some(n) if !names.contains(n) => return Err(fail(field, &format!("no client named {n:?}"))),
            Some(_) => {}
        }
    }
    let owners: Vec<&str> =
        c.backends.iter().map(|b| b.name.as_str()).chain(c.pools.iter().map(|p| p.name.as_str())).collect();
    let p = &c.policy;
    if c.clients.is_empty() && (!p.rules.is_empty() || !p.destructive_needs.is_empty()) {
        return Err(no_clients("policy"));
    }
    for (i, r) in p.rules.iter().enumerate() {
        let path = format!("policy.rules[{i}]");
        if let Some(n) = r.clients.iter().find(|n| !names.contains(n.as_str())) {
            return Err(fail(&format!("{path}.clients"), &format!("no client named {n:?}")));
        }
        if let Some(g) = r.groups.iter().find(|g| !groups.contains(g.as_str())) {
            return Err(fail(&format!("{path}.groups"), &format!("unknown group {g:?}: no client is in it")));
        }
        // (kind, its globs, whether a glob of it can match anything, why not).
        type Kind<'a> = (&'a str, &'a Filter, &'a dyn Fn(&str) -> bool, &'a str);
        let kinds: [Kind<'_>; 4] = [
            ("tools", &r.tools, &name_glob_can_match, "exposed tool names are 1-64 characters of [A-Za-z0-9_-]"),
            ("prompts", &r.prompts, &name_glob_can_match, "exposed prompt names are 1-64 characters of [A-Za-z0-9_-]"),
            ("resources", &r.resources, &|g: &str| !g.is_empty(), "a URI is never empty"),
            (
                "backends",
                &r.backends,
                &|g: &str| owners.iter().any(|o| glob_match(g, o)),
                "it names no configured backend or pool",
            ),
        ];
        for (kind, f, can_match, why) in kinds {
            for (list, globs) in [("allow", &f.allow), ("deny", &f.deny)] {
                if let Some(g) = globs.iter().find(|g| !can_match(g)) {
                    return Err(fail(
                        &format!("{path}.{kind}.{list}"),
                        &format!("the glob {g:?} can never match: {why}"),
                    ));
                }
            }
        }
    }
    if let Some(g) = p.destructive_needs.iter().find(|g| !groups.contains(g.as_str())) {
        return Err(fail("policy.destructive_needs", &format!("unknown group {g:?}: no client is in it")));
    }
    limits(c, &names, at)
}

/// `limits`: known clients and backends (a pool member is limited through its pool), and
/// rates, bursts, caps and quotas in range and never zero.
fn limits(c: &Config, clients: &HashSet<&str>, at: Locator<'_>) -> Result<()> {
    let fail = |path: &str, why: &str| Error::Config(format!("{path}: {why}{}", at.path(path)));
    let owner_ok = |name: &str| -> std::result::Result<(), String> {
        if c.pools.iter().any(|p| p.name == name) {
            return Ok(());
        }
        if let Some(p) = c.pools.iter().find(|p| p.backends.iter().any(|b| b == name)) {
            return Err(format!("{name:?} is in pool {:?}: limit the pool", p.name));
        }
        if c.backends.iter().any(|b| b.name == name) {
            Ok(())
        } else {
            Err(format!("no backend or pool named {name:?}"))
        }
    };
    let rate = |path: &str, r: Rate| -> Result<()> {
        if !(r.rate > 0.0 && r.rate <= MAX_RATE) {
            return Err(fail(
                &format!("{path}.rate"),
                &format!("must be greater than 0 and at most {MAX_RATE} calls per second"),
            ));
        }
        if !(1..=MAX_BURST).contains(&r.burst()) {
            return Err(fail(&format!("{path}.burst"), &format!("must be between 1 and {MAX_BURST}")));
        }
        Ok(())
    };
    let l = &c.limits;
    let mut seen = HashSet::new();
    for (i, b) in l.backends.iter().enumerate() {
        let path = format!("limits.backends[{i}]");
        owner_ok(&b.backend).map_err(|e| fail(&format!("{path}.backend"), &e))?;
        if !seen.insert(b.backend.as_str()) {
            return Err(fail(&format!("{path}.backend"), &format!("{:?} is limited twice", b.backend)));
        }
        rate(&path, b.bucket())?;
    }
    let mut seen = HashSet::new();
    for (i, cl) in l.clients.iter().enumerate() {
        let path = format!("limits.clients[{i}]");
        if !clients.contains(cl.client.as_str()) {
            return Err(fail(&format!("{path}.client"), &format!("no client named {:?}", cl.client)));
        }
        if !seen.insert(cl.client.as_str()) {
            return Err(fail(&format!("{path}.client"), &format!("{:?} is limited twice", cl.client)));
        }
        match cl.bucket() {
            Some(r) => rate(&path, r)?,
            None if cl.burst.is_some() => return Err(fail(&format!("{path}.burst"), "a burst needs a rate")),
            None => {}
        }
        if cl.concurrency.is_some_and(|n| !(1..=MAX_CLIENT_CONCURRENCY).contains(&n)) {
            return Err(fail(
                &format!("{path}.concurrency"),
                &format!("must be between 1 and {MAX_CLIENT_CONCURRENCY}"),
            ));
        }
        if let Some(q) = cl.quota {
            if !(1..=MAX_QUOTA_CALLS).contains(&q.calls) {
                return Err(fail(&format!("{path}.quota.calls"), &format!("must be between 1 and {MAX_QUOTA_CALLS}")));
            }
            if !(1..=MAX_DURATION_MS).contains(&q.window_ms) {
                return Err(fail(
                    &format!("{path}.quota.window_ms"),
                    &format!("must be between 1 and {MAX_DURATION_MS}"),
                ));
            }
        }
    }
    let mut seen = HashSet::new();
    for (i, cb) in l.client_backends.iter().enumerate() {
        let path = format!("limits.client_backends[{i}]");
        if !clients.contains(cb.client.as_str()) {
            return Err(fail(&format!("{path}.client"), &format!("no client named {:?}", cb.client)));
        }
        owner_ok(&cb.backend).map_err(|e| fail(&format!("{path}.backend"), &e))?;
        if !seen.insert((cb.client.as_str(), cb.backend.as_str())) {
            return Err(fail(&path, "this client is limited twice on this backend"));
        }
        rate(&path, cb.bucket())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::Config;

    const BASE: &str = "backends:\n  - {name: fs, command: x}\n  - {name: gh, command: y}\nclients:\n  - name: alice\n    groups: [readers]\n  - name: bot\n";

    fn refused(extra: &str) -> String {
        Config::from_yaml(&format!("{BASE}{extra}")).expect_err("must be refused").to_string()
    }

    #[test]
    fn a_good_policy_parses() {
        let y = format!(
            "{BASE}default_client: bot\nserve_client: alice\npolicy:\n  rules:\n    - groups: [readers]\n      tools: {{allow: [\"read_*\"], deny: [\"*secret*\"]}}\n      read_only: true\n    - clients: [bot]\n      backends: {{allow: [gh]}}\n  destructive_needs: [readers]\nlimits:\n  backends:\n    - {{backend: gh, rate: 5}}\n  clients:\n    - {{client: bot, rate: 0.5, burst: 2, concurrency: 1, quota: {{calls: 100}}}}\n  client_backends:\n    - {{client: bot, backend: fs, rate: 1}}\n"
        );
        let c = Config::from_yaml(&y).expect("valid");
        assert_eq!(c.policy.rules.len(), 2);
        assert_eq!(c.limits.backends[0].bucket().burst(), 5);
        assert_eq!(c.limits.clients[0].quota.map(|q| q.window_ms), Some(86_400_000));
    }

    #[test]
    fn bad_policy_names_the_field_and_line() {
        let cases = [
            ("policy:\n  rules:\n    - groups: [writers]\n", "policy.rules[0].groups", "unknown group \"writers\"", 10),
            ("policy:\n  rules:\n    - clients: [carol]\n", "policy.rules[0].clients", "no client named", 10),
            (
                "policy:\n  rules:\n    - tools:\n        allow: [\"fs.read\"]\n",
                "policy.rules[0].tools.allow",
                "can never match",
                11,
            ),
            (
                "policy:\n  rules:\n    - prompts:\n        deny: [\"\"]\n",
                "policy.rules[0].prompts.deny",
                "can never match",
                11,
            ),
            (
                "policy:\n  rules:\n    - backends:\n        deny: [github]\n",
                "policy.rules[0].backends.deny",
                "can never match",
                11,
            ),
            ("policy:\n  destructive_needs: [admins]\n", "policy.destructive_needs", "unknown group", 9),
            (
                "limits:\n  backends:\n    - backend: gh\n      rate: 0\n",
                "limits.backends[0].rate",
                "greater than 0",
                11,
            ),
            (
                "limits:\n  clients:\n    - client: bot\n      rate: 1\n      burst: 0\n",
                "limits.clients[0].burst",
                "between 1",
                12,
            ),
            (
                "limits:\n  clients:\n    - client: bot\n      concurrency: 0\n",
                "limits.clients[0].concurrency",
                "between 1",
                11,
            ),
            (
                "limits:\n  clients:\n    - client: bot\n      quota:\n        calls: 0\n",
                "limits.clients[0].quota.calls",
                "between 1",
                12,
            ),
            ("limits:\n  clients:\n    - client: eve\n", "limits.clients[0].client", "no client named", 10),
            (
                "limits:\n  backends:\n    - backend: nope\n      rate: 1\n",
                "limits.backends[0].backend",
                "no backend",
                10,
            ),
            ("default_client: carol\n", "default_client", "no client named", 8),
        ];
        for (extra, field, why, line) in cases {
            let s = refused(extra);
            assert!(s.contains(field) && s.contains(why) && s.contains(&format!("line {line}")), "{extra}: {s}");
        }
        let s = Config::from_yaml("policy:\n  rules:\n    - tools: {deny: [x]}\n").unwrap_err().to_string();
        assert!(s.contains("policy") && s.contains("clients:"), "{s}");
        let s = Config::from_yaml("clients:\n  - {name: a, credential: {token: sk-live-x}}\n").unwrap_err().to_string();
        assert!(s.contains("clients[0].credential") && !s.contains("sk-live"), "{s}");
        let s = Config::from_yaml("clients:\n  - {name: deny}\n").unwrap_err().to_string();
        assert!(s.contains("clients[0].name"), "{s}");
        let pooled = "backends:\n  - {name: a, command: x}\npools:\n  - {name: p, backends: [a]}\nclients:\n  - {name: c}\nlimits:\n  backends:\n    - {backend: a, rate: 1}\n";
        let s = Config::from_yaml(pooled).unwrap_err().to_string();
        assert!(s.contains("limits.backends[0].backend") && s.contains("limit the pool"), "{s}");
    }
}
