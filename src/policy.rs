//! Who may see and call what: the `clients:` and `policy:` sections compiled once per
//! config, and per-client views of the catalog so that a decision is a lookup.
//!
//! Compiling: each client gets a [`Profile`], the merge of the rules that apply to it;
//! clients with the same rules and groups share one. A profile's [`View`] of a catalog
//! holds the verdict on every tool and prompt and the items it may list; it is built the
//! first time a session of that profile asks after the catalog changed, and kept with the
//! catalog it was built from (compared by pointer, so a stale view is never used).
//!
//! Identity: the session's client id (`Router::session(Some(id))`, `serve --client`, or
//! the client the gateway recognised by its credential). A client id that names no client
//! is `default_client`: denied everything, or acting as the named client.

use std::collections::HashMap;

use parking_lot::RwLock;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

use crate::catalog::{Catalog, Kind};
use crate::config::policy::DENY;
use crate::config::{Config, Filter, glob_match};

/// Who a session is, as far as the policy goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Who {
    /// No `clients:` configured: no policy.
    Anyone,
    /// An unknown client and `default_client: deny`.
    Nobody,
    /// A configured client (its index), or the fallback an unknown client acts as.
    Client { client: usize, profile: usize },
}

/// Why a call is refused: the rule, as its config path (never a value from the request).
pub(crate) type Rule = Arc<str>;

/// Allow and deny globs merged from several rules, each glob with the rule it came from.
#[derive(Debug, Default)]
struct Merged {
    allow: Vec<(String, Rule)>,
    deny: Vec<(String, Rule)>,
    /// Some rule had allow globs for this kind: what none of them matches is refused.
    restricted: Option<Rule>,
}

impl Merged {
    fn add(&mut self, f: &Filter, path: &str) {
        let rule = |list: &str| -> Rule { Arc::from(format!("{path}.{list}")) };
        self.deny.extend(f.deny.iter().map(|g| (g.clone(), rule("deny"))));
        if !f.allow.is_empty() {
            self.allow.extend(f.allow.iter().map(|g| (g.clone(), rule("allow"))));
            self.restricted.get_or_insert_with(|| rule("allow"));
        }
    }

    /// `None` when `name` passes; else the rule that stops it. Deny wins.
    fn refuses(&self, names: &[&str]) -> Option<Rule> {
        if let Some((_, r)) = self.deny.iter().find(|(g, _)| names.iter().any(|n| glob_match(g, n))) {
            return Some(Arc::clone(r));
        }
        match &self.restricted {
            Some(r) if !self.allow.iter().any(|(g, _)| names.iter().any(|n| glob_match(g, n))) => Some(Arc::clone(r)),
            _ => None,
        }
    }
}

/// The merged rules of one set of clients.
#[derive(Debug, Default)]
struct Profile {
    tools: Merged,
    prompts: Merged,
    resources: Merged,
    backends: Merged,
    read_only: Option<Rule>,
    /// `policy.destructive_needs` is set and this client is in none of its groups.
    no_destroying: Option<Rule>,
}

/// A profile's view of one catalog.
#[derive(Debug)]
pub(crate) struct View {
    catalog: Arc<Catalog>,
    tools: HashMap<String, Option<Rule>>,
    prompts: HashMap<String, Option<Rule>>,
    resources: HashMap<String, Option<Rule>>,
    /// Per kind (tools, resources, templates, prompts): indices into `Catalog::items` it
    /// may list, and a fingerprint of what that lists.
    visible: [(Vec<usize>, u64); 4],
}

const KINDS: [Kind; 4] = [Kind::Tools, Kind::Resources, Kind::Templates, Kind::Prompts];

fn kind_slot(kind: Kind) -> usize {
    match kind {
        Kind::Tools => 0,
        Kind::Resources => 1,
        Kind::Templates => 2,
        Kind::Prompts => 3,
    }
}

impl View {
    /// The indices of the items of `kind` this view lists.
    pub(crate) fn visible(&self, kind: Kind) -> &[usize] {
        &self.visible[kind_slot(kind)].0
    }

    fn fingerprint(&self, kind: Kind) -> u64 {
        self.visible[kind_slot(kind)].1
    }
}

/// The compiled policy of one config, and the denial counts it keeps.
pub struct Policy {
    enabled: bool,
    client_ix: HashMap<String, usize>,
    client_names: Vec<String>,
    /// Client index → profile index.
    client_profile: Vec<usize>,
    /// What an unknown client acts as: a client index, or none (denied).
    fallback: Option<usize>,
    profiles: Vec<Profile>,
    /// Per profile: its view of the last catalog it was asked about.
    views: RwLock<Vec<Option<Arc<View>>>>,
    /// Per owner: its name and its members' names, which `backends` globs match.
    owners: Vec<Vec<String>>,
    /// Denied calls, `[client slot][owner slot]`: clients as configured plus one for
    /// unknown ones, owners plus one for calls refused before an owner was known.
    denials: Vec<AtomicU64>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy").field("enabled", &self.enabled).field("profiles", &self.profiles.len()).finish()
    }
}

impl Policy {
    /// Compiles the policy of `config`; `owners` are (owner name, member backend names)
    /// in the core's owner order.
    pub fn new(config: &Config, owners: &[(String, Vec<String>)]) -> Policy {
        let p = &config.policy;
        let mut profiles: Vec<Profile> = Vec::new();
        let mut keys: HashMap<(Vec<usize>, bool), usize> = HashMap::new();
        let mut client_profile = Vec::with_capacity(config.clients.len());
        for c in &config.clients {
            let applies: Vec<usize> = p
                .rules
                .iter()
                .enumerate()
                .filter(|(_, r)| {
                    (r.clients.is_empty() && r.groups.is_empty())
                        || r.clients.contains(&c.name)
                        || r.groups.iter().any(|g| c.groups.contains(g))
                })
                .map(|(i, _)| i)
                .collect();
            let may_destroy = p.destructive_needs.is_empty() || p.destructive_needs.iter().any(|g| c.groups.contains(g));
            let next = profiles.len();
            let ix = *keys.entry((applies.clone(), may_destroy)).or_insert(next);
            if ix == next {
                let mut prof = Profile::default();
                for i in applies {
                    let r = &p.rules[i];
                    let path = format!("policy.rules[{i}]");
                    prof.tools.add(&r.tools, &format!("{path}.tools"));
                    prof.prompts.add(&r.prompts, &format!("{path}.prompts"));
                    prof.resources.add(&r.resources, &format!("{path}.resources"));
                    prof.backends.add(&r.backends, &format!("{path}.backends"));
                    if r.read_only && prof.read_only.is_none() {
                        prof.read_only = Some(Arc::from(format!("{path}.read_only")));
                    }
                }
                if !may_destroy {
                    prof.no_destroying = Some(Arc::from("policy.destructive_needs"));
                }
                profiles.push(prof);
            }
            client_profile.push(ix);
        }
        let client_ix: HashMap<String, usize> =
            config.clients.iter().enumerate().map(|(i, c)| (c.name.clone(), i)).collect();
        let fallback = config.default_client.as_deref().filter(|d| *d != DENY).and_then(|d| client_ix.get(d).copied());
        let slots = (config.clients.len() + 1) * (owners.len() + 1);
        Policy {
            enabled: !config.clients.is_empty(),
            client_names: config.clients.iter().map(|c| c.name.clone()).collect(),
            client_ix,
            client_profile,
            fallback,
            views: RwLock::new(profiles.iter().map(|_| None).collect()),
            profiles,
            owners: owners.iter().map(|(n, m)| std::iter::once(n.clone()).chain(m.iter().cloned()).collect()).collect(),
            denials: (0..slots).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Whether a `clients:` section is configured (and so every session is judged).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Who the session with this client id is.
    pub(crate) fn who(&self, client_id: &str) -> Who {
        if !self.enabled {
            return Who::Anyone;
        }
        let client = self.client_ix.get(client_id).copied().or(self.fallback);
        match client.and_then(|c| Some((c, *self.client_profile.get(c)?))) {
            Some((client, profile)) => Who::Client { client, profile },
            None => Who::Nobody,
        }
    }

    /// The configured client's name (for the audit log and metrics labels).
    pub(crate) fn client_name(&self, client: usize) -> &str {
        self.client_names.get(client).map_or("", String::as_str)
    }

    /// `profile`'s view of `catalog`: the cached one when it was built from this very
    /// catalog, else a new one (cached in its place).
    pub(crate) fn view(&self, profile: usize, catalog: &Arc<Catalog>) -> Option<Arc<View>> {
        if let Some(v) = self.views.read().get(profile)?.as_ref().filter(|v| Arc::ptr_eq(&v.catalog, catalog)) {
            return Some(Arc::clone(v));
        }
        let fresh = Arc::new(self.build_view(self.profiles.get(profile)?, catalog));
        let mut views = self.views.write();
        let slot = views.get_mut(profile)?;
        // Another thread may have built it meanwhile; either is right, so keep the one there.
        match slot {
            Some(v) if Arc::ptr_eq(&v.catalog, catalog) => Some(Arc::clone(v)),
            _ => {
                *slot = Some(Arc::clone(&fresh));
                Some(fresh)
            }
        }
    }

    /// The view without caching it (for a catalog that is being replaced).
    fn view_uncached(&self, profile: usize, catalog: &Arc<Catalog>) -> Option<View> {
        if let Some(v) = self.views.read().get(profile)?.as_ref().filter(|v| Arc::ptr_eq(&v.catalog, catalog)) {
            return Some(View {
                catalog: Arc::clone(&v.catalog),
                tools: HashMap::new(),
                prompts: HashMap::new(),
                resources: HashMap::new(),
                visible: v.visible.clone(),
            });
        }
        Some(self.build_view(self.profiles.get(profile)?, catalog))
    }

    fn build_view(&self, p: &Profile, catalog: &Arc<Catalog>) -> View {
        let mut visible: [(Vec<usize>, u64); 4] = Default::default();
        let mut verdicts: [HashMap<String, Option<Rule>>; 4] = Default::default();
        for kind in KINDS {
            let slot = kind_slot(kind);
            let mut fp = crate::fnv::OFFSET64;
            for (i, (name, owner, json)) in catalog.items(kind).into_iter().enumerate() {
                let verdict = self.judge(p, kind, name, owner, &json);
                if verdict.is_none() {
                    visible[slot].0.push(i);
                    fp = crate::fnv::fnv1a64_extend(fp, json.as_bytes());
                    fp = crate::fnv::fnv1a64_extend(fp, b"\n");
                }
                if kind != Kind::Templates {
                    verdicts[slot].insert(name.to_owned(), verdict);
                }
            }
            visible[slot].1 = fp;
        }
        let [tools, resources, _, prompts] = verdicts;
        View { catalog: Arc::clone(catalog), tools, prompts, resources, visible }
    }

    /// The verdict on one catalog item: `None` when the profile may use it.
    fn judge(&self, p: &Profile, kind: Kind, name: &str, owner: usize, json: &str) -> Option<Rule> {
        let by_name = match kind {
            Kind::Tools => &p.tools,
            Kind::Prompts => &p.prompts,
            Kind::Resources | Kind::Templates => &p.resources,
        };
        if let Some(r) = by_name.refuses(&[name]) {
            return Some(r);
        }
        let owner_names: Vec<&str> = self.owners.get(owner).map(|o| o.iter().map(String::as_str).collect()).unwrap_or_default();
        if let Some(r) = p.backends.refuses(&owner_names) {
            return Some(r);
        }
        if kind == Kind::Tools && (p.read_only.is_some() || p.no_destroying.is_some()) {
            let annotations = serde_json::from_str::<Value>(json).ok().and_then(|v| v.get("annotations").cloned());
            let hint = |k: &str| annotations.as_ref().and_then(|a| a.get(k)).and_then(Value::as_bool);
            let read_only = hint("readOnlyHint") == Some(true);
            // The MCP spec's defaults: not read-only, and then destructive unless it says not.
            let destructive = !read_only && hint("destructiveHint") != Some(false);
            if !read_only && p.read_only.is_some() {
                return p.read_only.clone();
            }
            if destructive && p.no_destroying.is_some() {
                return p.no_destroying.clone();
            }
        }
        None
    }

    /// The verdict on calling tool (or prompt) `name`: `None` when permitted. A name the
    /// catalog does not have is left to routing ("Unknown tool").
    pub(crate) fn refuses_named(&self, who: Who, catalog: &Arc<Catalog>, name: &str, tool: bool) -> Option<Rule> {
        let profile = match who {
            Who::Anyone => return None,
            Who::Nobody => return Some(Arc::from("default_client")),
            Who::Client { profile, .. } => profile,
        };
        let view = self.view(profile, catalog)?;
        let map = if tool { &view.tools } else { &view.prompts };
        map.get(name).cloned().flatten()
    }

    /// The verdict on reading (or subscribing to) `uri`, served by `owner` if known.
    pub(crate) fn refuses_uri(&self, who: Who, catalog: &Arc<Catalog>, uri: &str, owner: Option<usize>) -> Option<Rule> {
        let profile = match who {
            Who::Anyone => return None,
            Who::Nobody => return Some(Arc::from("default_client")),
            Who::Client { profile, .. } => profile,
        };
        if let Some(v) = self.view(profile, catalog).and_then(|v| v.resources.get(uri).cloned()) {
            return v;
        }
        // A URI no resource lists (a template's, or a prefix route's): judged by its globs.
        let p = self.profiles.get(profile)?;
        p.resources.refuses(&[uri]).or_else(|| {
            let names: Vec<&str> =
                owner.and_then(|o| self.owners.get(o)).map(|o| o.iter().map(String::as_str).collect()).unwrap_or_default();
            p.backends.refuses(&names)
        })
    }

    /// One page of `kind` as `who` may see it; `None` when the policy is off.
    pub(crate) fn page(
        &self,
        who: Who,
        catalog: &Arc<Catalog>,
        kind: Kind,
        cursor: Option<&str>,
        page_size: usize,
    ) -> Option<Result<String, String>> {
        let view = match who {
            Who::Anyone => return None,
            Who::Nobody => None,
            Who::Client { profile, .. } => self.view(profile, catalog),
        };
        let only = view.as_ref().map_or(&[][..], |v| v.visible(kind));
        Some(catalog.page_of(kind, Some(only), cursor, page_size))
    }

    /// Counts a denied call and writes its audit record.
    pub(crate) fn denied(&self, who: Who, client_id: &str, what: &str, name: &str, owner: Option<usize>, rule: &str) {
        let client_slot = match who {
            Who::Client { client, .. } => client,
            _ => self.client_names.len(),
        };
        let owner_slot = owner.filter(|o| *o < self.owners.len()).unwrap_or(self.owners.len());
        if let Some(c) = self.denials.get(client_slot * (self.owners.len() + 1) + owner_slot) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let client = match who {
            Who::Client { client, .. } => self.client_name(client),
            _ => "",
        };
        // The client id of an unknown client is the caller's own string: clipped, and it
        // goes through the logger's redactor like every record.
        log::warn!(
            target: "mcprouter::audit",
            client = client,
            client_id = clip(client_id),
            what = what,
            name = clip(name),
            rule = rule;
            "call denied"
        );
    }

    /// Denials per (client, owner) with a count, for metrics: client "" is an unknown
    /// client, owner `None` a call refused before its owner was known.
    pub(crate) fn denial_counts(&self) -> Vec<(usize, Option<usize>, u64)> {
        let per = self.owners.len() + 1;
        self.denials
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let n = c.load(Ordering::Relaxed);
                (n > 0).then(|| (i / per, Some(i % per).filter(|o| *o < self.owners.len()), n))
            })
            .collect()
    }

    /// Names of the configured clients, in config order (metrics labels).
    pub(crate) fn client_names(&self) -> &[String] {
        &self.client_names
    }

    /// Tells each session whose view of `kinds` differs between `old` and `fresh` that its
    /// list changed (`method`); with no policy, every session.
    pub(crate) fn announce(&self, hub: &crate::hub::Hub, method: &str, old: &Arc<Catalog>, fresh: &Arc<Catalog>) {
        let kinds: &[Kind] = match method {
            "notifications/tools/list_changed" => &[Kind::Tools],
            "notifications/prompts/list_changed" => &[Kind::Prompts],
            _ => &[Kind::Resources, Kind::Templates],
        };
        let event = crate::jsonrpc::notification(method, None);
        if !self.enabled {
            hub.broadcast(&event);
            return;
        }
        let changed: Vec<bool> = (0..self.profiles.len())
            .map(|p| {
                let (Some(before), Some(after)) = (self.view_uncached(p, old), self.view(p, fresh)) else { return true };
                kinds.iter().any(|k| before.fingerprint(*k) != after.fingerprint(*k))
            })
            .collect();
        hub.broadcast_to(&event, |client_id| match self.who(client_id) {
            Who::Client { profile, .. } => changed.get(profile).copied().unwrap_or(true),
            Who::Anyone => true,
            Who::Nobody => false,
        });
    }
}

/// The policy and the limits of `config`, compiled once; `owners` in the core's order.
pub(crate) fn compile(config: &Config, owners: &[crate::catalog::Owner]) -> (Policy, crate::limits::Limits) {
    let members = |o: &crate::catalog::Owner| -> Vec<String> {
        o.members.iter().filter_map(|m| config.backends.get(*m)).map(|b| b.name.clone()).collect()
    };
    let named: Vec<(String, Vec<String>)> = owners.iter().map(|o| (o.name.clone(), members(o))).collect();
    let names: Vec<String> = owners.iter().map(|o| o.name.clone()).collect();
    (Policy::new(config, &named), crate::limits::Limits::new(config, &names, std::time::Instant::now()))
}

/// The denials and limit hits for metrics, named by the configured clients and owners.
pub(crate) fn access_figures(v: &crate::core::View) -> crate::metrics::AccessFigures {
    let client = |c: Option<usize>| c.and_then(|c| v.policy.client_names().get(c)).cloned().unwrap_or_default();
    let owner = |o: Option<usize>| o.and_then(|o| v.owners.get(o)).map(|o| o.name.clone()).unwrap_or_default();
    crate::metrics::AccessFigures {
        denials: v.policy.denial_counts().into_iter().map(|(c, o, n)| (client(Some(c)), owner(o), n)).collect(),
        limit_hits: v
            .limits
            .hit_counts()
            .into_iter()
            .map(|(c, o, k, n)| (client(c), owner(Some(o)), k.as_str(), n))
            .collect(),
    }
}

fn clip(s: &str) -> &str {
    let mut end = s.len().min(128);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// For the crate's own benches: the decision a `tools/call` gets, by the same path.
#[cfg(feature = "internals")]
impl crate::Router {
    #[doc(hidden)]
    pub fn may_call_tool(&self, client_id: &str, tool: &str) -> bool {
        let view = self.inner.core.view();
        let v = view.value();
        let who = v.policy.who(client_id);
        v.policy.refuses_named(who, &v.catalog(), tool, true).is_none()
    }
}
