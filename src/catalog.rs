//! The merged catalog: every backend's tools, prompts, resources and templates, with the
//! names clients see and the reverse map back to (backend, original name).
//!
//! A catalog is immutable once built; the router swaps in a new one on refresh, so a lookup
//! never waits for a backend. Items are pre-rendered to JSON at build time, so serving a
//! `*/list` page is string concatenation.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::config::{BackendConfig, PrefixMode, RouterSettings};
use crate::fnv::{self, fnv1a32};

/// What one backend listed, as it listed it: each item is kept as compact JSON text and
/// parsed only for the few fields the catalog reads ([`head`]). A parsed tree costs about
/// ten times its text (maps, boxed strings), and an idle backend keeps its lists for good.
#[derive(Debug, Default, Clone)]
pub(crate) struct Lists {
    pub tools: Vec<Item>,
    pub resources: Vec<Item>,
    pub templates: Vec<Item>,
    pub prompts: Vec<Item>,
}

/// One listed item, re-encoded compactly (what serving it as is will send). Shared: the
/// catalog serves it from here rather than from a copy of its own.
pub(crate) type Item = Arc<RawValue>;

/// Encodes one parsed item for [`Lists`].
pub(crate) fn item(v: &Value) -> Item {
    Arc::from(serde_json::value::to_raw_value(v).unwrap_or_else(|_| RawValue::NULL.to_owned()))
}

/// The fields of an item the catalog reads. Each is what `Value::get(key)` then `as_str`
/// (or the `annotations.idempotentHint == true` test) would give on the parsed item.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Head<'a> {
    pub name: Option<Cow<'a, str>>,
    pub uri: Option<Cow<'a, str>>,
    pub uri_template: Option<Cow<'a, str>>,
    pub idempotent: bool,
}

/// Reads an item's [`Head`] without building its tree; an item the quick read cannot take
/// as is (not an object, a duplicated key) is parsed whole, with the same outcome.
pub(crate) fn head(item: &RawValue) -> Head<'_> {
    #[derive(Deserialize)]
    struct Quick<'a> {
        #[serde(borrow, default)]
        name: Option<&'a RawValue>,
        #[serde(borrow, default)]
        uri: Option<&'a RawValue>,
        #[serde(borrow, default, rename = "uriTemplate")]
        uri_template: Option<&'a RawValue>,
        #[serde(borrow, default)]
        annotations: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct Annotations<'a> {
        #[serde(borrow, default, rename = "idempotentHint")]
        idempotent_hint: Option<&'a RawValue>,
    }
    fn text(raw: Option<&RawValue>) -> Option<Cow<'_, str>> {
        let raw = raw?.get();
        if !raw.starts_with('"') {
            return None;
        }
        match serde_json::from_str::<&str>(raw) {
            Ok(s) => Some(Cow::Borrowed(s)),
            Err(_) => serde_json::from_str::<String>(raw).ok().map(Cow::Owned),
        }
    }
    let quick =
        item.get().starts_with('{').then(|| serde_json::from_str::<Quick<'_>>(item.get()).ok()).flatten().and_then(
            |q| {
                let idempotent = match q.annotations {
                    None => false,
                    Some(a) if !a.get().starts_with('{') => false,
                    Some(a) => serde_json::from_str::<Annotations<'_>>(a.get())
                        .ok()?
                        .idempotent_hint
                        .is_some_and(|h| h.get() == "true"),
                };
                Some(Head { name: text(q.name), uri: text(q.uri), uri_template: text(q.uri_template), idempotent })
            },
        );
    quick.unwrap_or_else(|| {
        let v: Value = serde_json::from_str(item.get()).unwrap_or_default();
        let owned = |k: &str| v.get(k).and_then(Value::as_str).map(|s| Cow::Owned(s.to_owned()));
        Head {
            name: owned("name"),
            uri: owned("uri"),
            uri_template: owned("uriTemplate"),
            idempotent: v.pointer("/annotations/idempotentHint") == Some(&Value::Bool(true)),
        }
    })
}

/// Where the value of an object's top-level `name` lies in its JSON text (quotes included),
/// read without building the tree.
fn name_span(text: &str) -> Option<std::ops::Range<usize>> {
    #[derive(Deserialize)]
    struct Name<'a> {
        #[serde(borrow)]
        name: &'a RawValue,
    }
    if !text.starts_with('{') {
        return None;
    }
    let Name { name } = serde_json::from_str::<Name<'_>>(text).ok()?;
    let at = name.get().as_ptr() as usize - text.as_ptr() as usize;
    Some(at..at + name.get().len())
}

/// The item's JSON with its `name` replaced by `exposed`: the old value's text is swapped
/// for the new one in place (what setting the field on the parsed tree and encoding it
/// again would give, key order included), without building the tree.
fn renamed(item: &RawValue, exposed: &str) -> String {
    let text = item.get();
    let quoted = serde_json::to_string(exposed).unwrap_or_default();
    if let Some(at) = name_span(text) {
        return [&text[..at.start], &quoted, &text[at.end..]].concat();
    }
    let mut v: Value = serde_json::from_str(text).unwrap_or_default();
    v["name"] = Value::String(exposed.to_owned());
    v.to_string()
}

/// How an item is listed under `exposed` (a [`normalize`]d name, which JSON writes as
/// is): the backend's JSON with the span of its name's text (quotes included) swapped, or
/// (`None`) as it is. An item the quick read cannot take (e.g. with a duplicated key) is
/// re-encoded whole, once.
fn exposed_as(item: &Item, exposed: &str) -> (Item, Option<std::ops::Range<u32>>) {
    let text = item.get();
    match name_span(text) {
        Some(at) if text.get(at.start + 1..at.end.saturating_sub(1)) == Some(exposed) => (Arc::clone(item), None),
        // Positions in one item's text: an item is at most `max_message_bytes` long.
        Some(at) => (Arc::clone(item), Some(at.start as u32..at.end as u32)),
        None => match RawValue::from_string(renamed(item, exposed)) {
            Ok(own) => (Arc::from(own), None),
            Err(_) => (Arc::clone(item), None),
        },
    }
}

/// Who serves a set of items: one backend, or a pool of equivalent backends.
#[derive(Debug, Clone)]
pub(crate) struct Owner {
    pub name: String,
    /// Backend indices; one for a plain backend.
    pub members: Vec<usize>,
}

/// The four paginated kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Tools,
    Resources,
    Templates,
    Prompts,
}

impl Kind {
    fn field(self) -> &'static str {
        match self {
            Kind::Tools => "tools",
            Kind::Resources => "resources",
            Kind::Templates => "resourceTemplates",
            Kind::Prompts => "prompts",
        }
    }
    fn cursor_tag(self) -> char {
        match self {
            Kind::Tools => 't',
            Kind::Resources => 'r',
            Kind::Templates => 'u',
            Kind::Prompts => 'p',
        }
    }
}

/// A tool or prompt as exposed.
#[derive(Debug)]
pub(crate) struct Named {
    /// Index into the owners the catalog was built with.
    pub owner: usize,
    pub original: String,
    /// The tool declared `annotations.idempotentHint: true`.
    pub idempotent: bool,
    /// The item as its backend listed it: shared with the backend's lists, not copied (an
    /// idle backend's catalog share would hold its whole listing twice).
    listed: Item,
    /// Where its name lies in `listed` (quotes included) when the exposed name replaces it.
    renamed: Option<std::ops::Range<u32>>,
    /// The exposed name, in [`Names::arena`].
    exposed: std::ops::Range<u32>,
}

/// An item's JSON as listed to clients, in pieces: `head`, then the exposed name quoted
/// (if renamed), then `tail`.
pub(crate) struct Pieces<'a> {
    head: &'a str,
    name: Option<&'a str>,
    tail: &'a str,
}

impl<'a> Pieces<'a> {
    fn whole(text: &'a str) -> Pieces<'a> {
        Pieces { head: text, name: None, tail: "" }
    }

    fn parts(&self) -> [&str; 5] {
        match self.name {
            Some(n) => [self.head, "\"", n, "\"", self.tail],
            None => [self.head, "", "", "", self.tail],
        }
    }

    fn len(&self) -> usize {
        self.parts().iter().map(|p| p.len()).sum()
    }

    fn push_to(&self, out: &mut String) {
        for p in self.parts() {
            out.push_str(p);
        }
    }

    /// The JSON as one string (borrowed when it is the backend's as is).
    pub(crate) fn text(self) -> Cow<'a, str> {
        match self.name {
            None if self.tail.is_empty() => Cow::Borrowed(self.head),
            _ => Cow::Owned(self.parts().concat()),
        }
    }
}

/// The tools (or prompts) of a catalog, by exposed name.
#[derive(Debug, Default)]
struct Names {
    items: Vec<Named>,
    /// Every exposed name, back to back.
    arena: String,
    index: Index,
    /// Prefix mode `never`: the names several backends serve (positions in `items`), and
    /// those backends.
    ambiguous: HashMap<usize, Vec<usize>>,
}

/// Exposed names to positions in [`Names::items`]: open addressing over `u32` positions,
/// hashed with the standard library's keyed hasher (as `HashMap` is, so a backend cannot
/// pick names that collide on purpose). A position costs 8 bytes here, where a
/// `HashMap<String, _>` held a copy of the name and a 56-byte bucket twice over.
#[derive(Debug, Default)]
struct Index {
    /// Position + 1, 0 for empty; a power of two long and at most half full.
    slots: Box<[u32]>,
    hasher: std::hash::RandomState,
}

impl Index {
    fn with_capacity(n: usize) -> Index {
        Index { slots: vec![0; (2 * n).max(2).next_power_of_two()].into(), hasher: Default::default() }
    }

    /// The position of `name` (`Ok`), or the free slot it would take (`Err`).
    fn find<'a>(&self, name_of: impl Fn(usize) -> Option<&'a str>, name: &str) -> Result<usize, usize> {
        use std::hash::BuildHasher;
        let mask = self.slots.len().wrapping_sub(1);
        let mut i = (self.hasher.hash_one(name) as usize) & mask;
        for _ in 0..self.slots.len() {
            match self.slots[i] {
                0 => return Err(i),
                p if name_of(p as usize - 1) == Some(name) => return Ok(p as usize - 1),
                _ => i = (i + 1) & mask,
            }
        }
        Err(usize::MAX)
    }

    /// Records that position `pos` is named `name` (not yet recorded).
    fn insert<'a>(&mut self, name_of: impl Fn(usize) -> Option<&'a str>, name: &str, pos: usize) {
        if let Err(slot) = self.find(name_of, name)
            && let Some(s) = self.slots.get_mut(slot)
        {
            *s = pos as u32 + 1;
        }
    }
}

impl Names {
    fn exposed(&self, i: usize) -> Option<&str> {
        let at = &self.items.get(i)?.exposed;
        self.arena.get(at.start as usize..at.end as usize)
    }

    fn get(&self, name: &str) -> Option<usize> {
        self.index.find(|i| self.exposed(i), name).ok()
    }

    fn lookup(&self, name: &str) -> Lookup<'_> {
        match self.get(name) {
            Some(i) => match self.ambiguous.get(&i) {
                Some(b) => Lookup::Ambiguous(b.clone()),
                None => Lookup::Found(&self.items[i]),
            },
            None => Lookup::Unknown,
        }
    }
}

/// The outcome of looking up a tool or prompt name.
pub(crate) enum Lookup<'a> {
    Found(&'a Named),
    Ambiguous(Vec<usize>),
    Unknown,
}

#[derive(Debug)]
struct Template {
    owner: usize,
    raw: String,
    parsed: Vec<Part>,
    json: String,
    rank: Specificity,
}

/// How specific a template is: a longer literal prefix wins, then more literal characters
/// in all. Config order breaks a tie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Specificity {
    prefix: usize,
    literal: usize,
}

/// Bounds on one resource template a backend may list: matching costs
/// O(len(uri) * parts), so the parts are kept few.
pub(crate) const MAX_TEMPLATE_BYTES: usize = 1024;
pub(crate) const MAX_TEMPLATE_EXPRESSIONS: usize = 64;
/// Templates one backend may list; every read that no exact resource claims tries them all.
pub(crate) const MAX_TEMPLATES_PER_BACKEND: usize = 1000;

/// Why a template is refused, if it is.
pub(crate) fn template_out_of_bounds(raw: &str) -> Option<String> {
    if raw.len() > MAX_TEMPLATE_BYTES {
        return Some(format!("it is {} bytes (at most {MAX_TEMPLATE_BYTES})", raw.len()));
    }
    let exprs = raw.matches('{').count();
    if exprs > MAX_TEMPLATE_EXPRESSIONS {
        return Some(format!("it has {exprs} expressions (at most {MAX_TEMPLATE_EXPRESSIONS})"));
    }
    None
}

#[derive(Debug, Default)]
pub(crate) struct Catalog {
    tools: Names,
    prompts: Names,
    /// (owner, JSON, URI).
    resources: Vec<(usize, String, String)>,
    resource_ix: HashMap<String, usize>,
    templates: Vec<Template>,
    /// Indices into `templates`, most specific first (stable, so config order breaks ties).
    template_order: Vec<usize>,
    /// Config `resource_routes`, longest prefix first.
    routes: Vec<(String, usize)>,
    fingerprints: [u64; 4],
    /// What the build had to decide against a backend's wishes (impostor names renamed,
    /// equally specific templates): logged once when it first appears, shown in status.
    warnings: Vec<String>,
}

impl Catalog {
    /// Builds the catalog from each backend's lists (`None` for a backend that is down),
    /// grouped by owner: a pool's members are merged and shown once.
    pub(crate) fn build(
        settings: &RouterSettings,
        backends: &[BackendConfig],
        owners: &[Owner],
        lists: &[Option<&Lists>],
    ) -> Catalog {
        let mut c = Catalog::default();
        let names: Vec<&str> = owners.iter().map(|o| o.name.as_str()).collect();
        // Every name that prefixes, or could be mistaken for, an owner's prefix space.
        let mut spaces: Vec<(String, usize)> =
            names.iter().enumerate().map(|(o, n)| (format!("{n}{}", settings.separator), o)).collect();
        for (o, owner) in owners.iter().enumerate() {
            for &m in &owner.members {
                if let Some(b) = backends.get(m).filter(|b| b.name != owner.name) {
                    spaces.push((format!("{}{}", b.name, settings.separator), o));
                }
            }
        }
        let tool_src = gather(owners, lists, |l| &l.tools, |i, n| backends[i].tools.admits(n));
        let prompt_src = gather(owners, lists, |l| &l.prompts, |i, n| backends[i].prompts.admits(n));
        c.tools = expose(settings, &names, &spaces, tool_src, "tool", &mut c.warnings);
        c.prompts = expose(settings, &names, &spaces, prompt_src, "prompt", &mut c.warnings);

        let mut template_ix: HashMap<String, usize> = HashMap::new();
        for (o, owner) in owners.iter().enumerate() {
            for &m in &owner.members {
                let Some(l) = lists.get(m).copied().flatten() else { continue };
                for r in &l.resources {
                    let Some(uri) = head(r).uri else { continue };
                    if !backends[m].resources.admits(&uri) {
                        continue;
                    }
                    if let Entry::Vacant(v) = c.resource_ix.entry(uri.clone().into_owned()) {
                        v.insert(o);
                        c.resources.push((o, r.get().to_owned(), uri.into_owned()));
                    }
                }
                for t in &l.templates {
                    let Some(raw) = head(t).uri_template else { continue };
                    let raw: &str = &raw;
                    // Fetching drops (and logs) oversized templates; this only keeps the
                    // matcher's bounds true whoever built the lists.
                    if !backends[m].resources.admits(raw) || template_out_of_bounds(raw).is_some() {
                        continue;
                    }
                    // The same template from several backends is listed once, like a
                    // resource: the first owner in config order serves it.
                    match template_ix.entry(raw.to_owned()) {
                        Entry::Occupied(first) => {
                            let first = c.templates[*first.get()].owner;
                            if first != o {
                                c.warnings.push(format!(
                                    "resource template {raw:?} is listed by {} and {}; {} serves it",
                                    names[first], names[o], names[first]
                                ));
                            }
                            continue;
                        }
                        Entry::Vacant(v) => {
                            v.insert(c.templates.len());
                        }
                    }
                    let parsed = parse_template(raw);
                    let rank = specificity(&parsed);
                    c.templates.push(Template {
                        owner: o,
                        raw: raw.to_owned(),
                        parsed,
                        json: t.get().to_owned(),
                        rank,
                    });
                }
            }
        }
        c.template_order = (0..c.templates.len()).collect();
        c.template_order.sort_by(|&a, &b| c.templates[b].rank.cmp(&c.templates[a].rank));
        c.warnings.extend(template_ties(&c.templates, &names));
        for rr in &settings.resource_routes {
            if let Some(b) = backends.iter().position(|b| b.name == rr.backend)
                && let Some(o) = owners.iter().position(|o| o.members.contains(&b))
            {
                c.routes.push((rr.prefix.clone(), o));
            }
        }
        c.routes.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
        let fp = |kind| fingerprint((0..c.count(kind)).map(|i| c.json(kind, i)));
        c.fingerprints = [fp(Kind::Tools), fp(Kind::Resources), fp(Kind::Templates), fp(Kind::Prompts)];
        c
    }

    pub(crate) fn tool(&self, name: &str) -> Lookup<'_> {
        self.tools.lookup(name)
    }

    pub(crate) fn prompt(&self, name: &str) -> Lookup<'_> {
        self.prompts.lookup(name)
    }

    /// The owner of a URI: the config's prefix rules first (the operator outranks any
    /// backend), then an exact resource, then the most specific matching template.
    pub(crate) fn resource_owner(&self, uri: &str) -> Option<usize> {
        if let Some((_, o)) = self.routes.iter().find(|(p, _)| uri.starts_with(p.as_str())) {
            return Some(*o);
        }
        if let Some(&b) = self.resource_ix.get(uri) {
            return Some(b);
        }
        self.template_order
            .iter()
            .map(|&i| &self.templates[i])
            .find(|t| template_matches(&t.parsed, uri))
            .map(|t| t.owner)
    }

    /// What the build decided against a backend's wishes, one sentence each.
    pub(crate) fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// For `completion/complete` with a `ref/resource`: the template's own text, else a URI.
    pub(crate) fn template_owner(&self, uri_or_template: &str) -> Option<usize> {
        self.templates
            .iter()
            .find(|t| t.raw == uri_or_template)
            .map(|t| t.owner)
            .or_else(|| self.resource_owner(uri_or_template))
    }

    pub(crate) fn counts(&self) -> [usize; 4] {
        [self.tools.items.len(), self.resources.len(), self.templates.len(), self.prompts.items.len()]
    }

    fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Tools => self.tools.items.len(),
            Kind::Prompts => self.prompts.items.len(),
            Kind::Resources => self.resources.len(),
            Kind::Templates => self.templates.len(),
        }
    }

    /// Item `i` of `kind`'s JSON as clients see it.
    fn json(&self, kind: Kind, i: usize) -> Pieces<'_> {
        let names = match kind {
            Kind::Resources => return Pieces::whole(self.resources.get(i).map_or("null", |r| &r.1)),
            Kind::Templates => return Pieces::whole(self.templates.get(i).map_or("null", |t| &t.json)),
            Kind::Tools => &self.tools,
            Kind::Prompts => &self.prompts,
        };
        let Some(n) = names.items.get(i) else { return Pieces::whole("null") };
        let text = n.listed.get();
        match &n.renamed {
            None => Pieces::whole(text),
            Some(at) => match (text.get(..at.start as usize), text.get(at.end as usize..)) {
                (Some(head), Some(tail)) => Pieces { head, name: names.exposed(i), tail },
                _ => Pieces::whole("null"),
            },
        }
    }

    /// Which kinds differ from `other`.
    pub(crate) fn changed_kinds(&self, other: &Catalog) -> Vec<Kind> {
        [Kind::Tools, Kind::Resources, Kind::Templates, Kind::Prompts]
            .into_iter()
            .enumerate()
            .filter(|(i, _)| self.fingerprints[*i] != other.fingerprints[*i])
            .map(|(_, k)| k)
            .collect()
    }

    /// Exposed tool names, for metrics labels.
    pub(crate) fn tool_names(&self) -> impl Iterator<Item = &str> {
        (0..self.tools.items.len()).filter_map(|i| self.tools.exposed(i))
    }

    /// Every item of `kind` in list order: its name (the URI of a resource, the URI
    /// template of a template), its owner and its JSON. For the policy's per-client views.
    pub(crate) fn items(&self, kind: Kind) -> Vec<(&str, usize, Cow<'_, str>)> {
        let name_and_owner = |i: usize| match kind {
            Kind::Tools => (self.tools.exposed(i).unwrap_or_default(), self.tools.items[i].owner),
            Kind::Prompts => (self.prompts.exposed(i).unwrap_or_default(), self.prompts.items[i].owner),
            Kind::Resources => (self.resources[i].2.as_str(), self.resources[i].0),
            Kind::Templates => (self.templates[i].raw.as_str(), self.templates[i].owner),
        };
        (0..self.count(kind))
            .map(|i| {
                let (name, owner) = name_and_owner(i);
                (name, owner, self.json(kind, i).text())
            })
            .collect()
    }

    /// One page of a list result as JSON; `Err` is the message of a -32602 (bad cursor).
    pub(crate) fn page(&self, kind: Kind, cursor: Option<&str>, page_size: usize) -> Result<String, String> {
        self.page_of(kind, None, cursor, page_size)
    }

    /// One page of the items at `only` (indices into [`Catalog::items`]), or of all.
    pub(crate) fn page_of(
        &self,
        kind: Kind,
        only: Option<&[usize]>,
        cursor: Option<&str>,
        page_size: usize,
    ) -> Result<String, String> {
        let n = self.count(kind);
        // The policy's own view: indices into this catalog's items.
        let chosen: Option<Vec<usize>> = only.map(|o| o.iter().copied().filter(|&i| i < n).collect());
        let total = chosen.as_ref().map_or(n, Vec::len);
        let at = |k: usize| chosen.as_ref().map_or(k, |c| c[k]);
        let start = match cursor {
            None => 0,
            Some(c) => c
                .strip_prefix(kind.cursor_tag())
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|&n| n > 0 && n < total)
                .ok_or_else(|| format!("Invalid cursor {c:?}"))?,
        };
        let end = (start + page_size).min(total);
        let page: Vec<Pieces<'_>> = (start..end).map(|k| self.json(kind, at(k))).collect();
        let len: usize = page.iter().map(|p| p.len() + 1).sum();
        let mut out = String::with_capacity(len + 64);
        out.push_str("{\"");
        out.push_str(kind.field());
        out.push_str("\":[");
        for (k, item) in page.iter().enumerate() {
            if k > 0 {
                out.push(',');
            }
            item.push_to(&mut out);
        }
        out.push(']');
        if end < total {
            out.push_str(&format!(",\"nextCursor\":\"{}{}\"", kind.cursor_tag(), end));
        }
        out.push('}');
        Ok(out)
    }
}

/// An admitted, named item: its owner, original name, JSON and idempotent hint.
struct Source<'a> {
    owner: usize,
    name: Cow<'a, str>,
    item: &'a Item,
    idempotent: bool,
}

/// Every admitted, named item; the first of a name per owner wins (pool members are
/// expected to serve the same items).
fn gather<'a>(
    owners: &[Owner],
    lists: &[Option<&'a Lists>],
    field: impl Fn(&'a Lists) -> &'a Vec<Item>,
    admits: impl Fn(usize, &str) -> bool,
) -> Vec<Source<'a>> {
    let mut out = Vec::new();
    for (o, owner) in owners.iter().enumerate() {
        let mut seen = std::collections::HashSet::new();
        for &m in &owner.members {
            let Some(l) = lists.get(m).copied().flatten() else { continue };
            for item in field(l) {
                let Head { name: Some(name), idempotent, .. } = head(item) else { continue };
                if admits(m, &name) && seen.insert(name.clone()) {
                    out.push(Source { owner: o, name, item, idempotent });
                }
            }
        }
    }
    out
}

/// Exposed names for one kind. `spaces` are the `<name><separator>` prefixes that belong
/// to each owner: under conditional prefixing, an item whose name falls in another owner's
/// space is moved into its own owner's space, so it cannot take that owner's names.
fn expose(
    settings: &RouterSettings,
    backends: &[&str],
    spaces: &[(String, usize)],
    src: Vec<Source<'_>>,
    what: &str,
    warnings: &mut Vec<String>,
) -> Names {
    let mut owners: HashMap<&str, Vec<usize>> = HashMap::new();
    for s in &src {
        owners.entry(&s.name).or_default().push(s.owner);
    }
    let mut out =
        Names { items: Vec::with_capacity(src.len()), index: Index::with_capacity(src.len()), ..Names::default() };
    for s in &src {
        let (b, name) = (s.owner, s.name.as_ref());
        let collides = owners.get(name).is_some_and(|o| o.len() > 1);
        let prefixed = match settings.prefix {
            PrefixMode::Always => true,
            PrefixMode::Conditional if collides => true,
            PrefixMode::Conditional => {
                let n = normalize(name);
                let intruded = spaces.iter().find(|(p, o)| *o != b && n.starts_with(p.as_str()));
                if let Some((_, victim)) = intruded {
                    warnings.push(format!(
                        "{} lists {what} {name:?} inside {}'s prefix space; it gets {}'s own prefix instead",
                        backends[b], backends[*victim], backends[b]
                    ));
                }
                intruded.is_some()
            }
            PrefixMode::Never => false,
        };
        if settings.prefix == PrefixMode::Never && collides {
            let o = owners.get(name).cloned().unwrap_or_default();
            if o.first() != Some(&b) {
                continue; // listed once, under the first backend; calling it is ambiguous
            }
            let exposed = unique_name(&normalize(name), |n| out.get(n).is_some());
            out.ambiguous.insert(out.items.len(), o);
            out.push(s, &exposed);
            continue;
        }
        let candidate =
            if prefixed { format!("{}{}{}", backends[b], settings.separator, name) } else { name.to_owned() };
        let exposed = unique_name(&normalize(&candidate), |n| out.get(n).is_some());
        out.push(s, &exposed);
    }
    out.items.shrink_to_fit();
    out.arena.shrink_to_fit();
    out
}

impl Names {
    fn push(&mut self, s: &Source<'_>, exposed: &str) {
        let at = self.arena.len() as u32;
        self.arena.push_str(exposed);
        let (listed, renamed) = exposed_as(s.item, exposed);
        self.items.push(Named {
            owner: s.owner,
            original: s.name.clone().into_owned(),
            idempotent: s.idempotent,
            listed,
            renamed,
            exposed: at..self.arena.len() as u32,
        });
        let pos = self.items.len() - 1;
        let Names { items, arena, index, .. } = self;
        let name_of = |i: usize| items.get(i).and_then(|n| arena.get(n.exposed.start as usize..n.exposed.end as usize));
        index.insert(name_of, exposed, pos);
    }
}

const MAX_NAME: usize = 64;

/// Makes a name obey `^[A-Za-z0-9_-]{1,64}$`, stably: invalid characters become `_`, and a
/// name that is too long keeps its head plus a hash of the whole.
pub(crate) fn normalize(name: &str) -> String {
    let mut s: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect();
    if s.is_empty() {
        s.push('_');
    }
    if s.len() > MAX_NAME {
        let tag = format!("-{:08x}", fnv1a32(name.as_bytes()));
        s.truncate(MAX_NAME - tag.len());
        s.push_str(&tag);
    }
    s
}

fn unique_name(name: &str, taken: impl Fn(&str) -> bool) -> String {
    if !taken(name) {
        return name.to_owned();
    }
    let mut salt = 0u32;
    loop {
        let tag = format!("-{:08x}", fnv1a32(format!("{name}#{salt}").as_bytes()));
        let mut s = name.to_owned();
        s.truncate(MAX_NAME - tag.len());
        s.push_str(&tag);
        if !taken(&s) {
            return s;
        }
        salt += 1;
    }
}

fn fingerprint<'a>(items: impl Iterator<Item = Pieces<'a>>) -> u64 {
    // 0xff never occurs in UTF-8, so it ends each item unambiguously. FNV-1a goes byte by
    // byte: the pieces hash as their concatenation would.
    items.fold(fnv::OFFSET64, |h, item| {
        let h = item.parts().iter().fold(h, |h, p| fnv::fnv1a64_extend(h, p.as_bytes()));
        fnv::fnv1a64_extend(h, &[0xff])
    })
}

/// A piece of an RFC 6570 URI template.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    /// An expression; the operator decides which characters a value may span.
    Expr(Option<char>),
}

fn parse_template(t: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(Part::Literal(rest[..open].to_owned()));
        }
        let Some(close) = rest[open..].find('}') else {
            parts.push(Part::Literal(rest[open..].to_owned()));
            return parts;
        };
        let expr = &rest[open + 1..open + close];
        let op = expr.chars().next().filter(|c| "+#./;?&".contains(*c));
        parts.push(Part::Expr(op));
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(rest.to_owned()));
    }
    parts
}

fn specificity(parts: &[Part]) -> Specificity {
    let prefix = match parts.first() {
        Some(Part::Literal(l)) => l.len(),
        _ => 0,
    };
    let literal = parts.iter().map(|p| if let Part::Literal(l) = p { l.len() } else { 0 }).sum();
    Specificity { prefix, literal }
}

/// Templates of different owners that are equally specific and have the same literal text
/// in the same places: a URI one matches the other likely matches too, and only config
/// order decides. Reported so an operator can settle it with a `resource_routes` rule.
fn template_ties(templates: &[Template], names: &[&str]) -> Vec<String> {
    let mut first: HashMap<Vec<Option<&str>>, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, t) in templates.iter().enumerate() {
        let skeleton: Vec<Option<&str>> = t
            .parsed
            .iter()
            .map(|p| match p {
                Part::Literal(l) => Some(l.as_str()),
                Part::Expr(_) => None,
            })
            .collect();
        match first.entry(skeleton) {
            Entry::Vacant(v) => {
                v.insert(i);
            }
            Entry::Occupied(f) => {
                let f = &templates[*f.get()];
                if f.owner != t.owner {
                    out.push(format!(
                        "resource templates {:?} ({}) and {:?} ({}) are equally specific; {} wins a URI both match",
                        f.raw, names[f.owner], t.raw, names[t.owner], names[f.owner]
                    ));
                }
            }
        }
    }
    out
}

/// Whether `uri` could be an expansion of the template (values are not extracted).
///
/// Runs the template as an automaton over the URI's positions: `cur` holds every position
/// the parts so far can end at, and each part maps that set to the next in one linear pass.
/// O(len(uri) * parts) time, two bitmaps of memory, no recursion: a hostile template or URI
/// can neither blow the stack nor make a read backtrack exponentially.
fn template_matches(parts: &[Part], uri: &str) -> bool {
    if let Some(Part::Literal(l)) = parts.first()
        && !uri.starts_with(l.as_str())
    {
        return false;
    }
    let b = uri.as_bytes();
    let n = b.len();
    let mut cur = vec![false; n + 1];
    let mut next = vec![false; n + 1];
    cur[0] = true;
    // The reachable positions all lie in lo..=hi; passes scan only from there.
    let (mut lo, mut hi) = (0, 0);
    for part in parts {
        let reached = match part {
            Part::Literal(l) => step_literal(b, l.as_bytes(), &cur, lo, hi, &mut next),
            Part::Expr(op) => step_expr(uri, *op, &cur, lo, hi, &mut next),
        };
        cur[lo..=hi].fill(false);
        std::mem::swap(&mut cur, &mut next);
        match reached {
            Some(r) => (lo, hi) = r,
            None => return false,
        }
    }
    cur[n]
}

/// Marks in `next` every end of an occurrence of `lit` that starts at a reachable position
/// (Knuth-Morris-Pratt, so a long run of near-matches stays linear). Returns the span of
/// what it marked.
fn step_literal(b: &[u8], lit: &[u8], cur: &[bool], lo: usize, hi: usize, next: &mut [bool]) -> Option<(usize, usize)> {
    let m = lit.len();
    if m == 0 {
        next[lo..=hi].copy_from_slice(&cur[lo..=hi]);
        return Some((lo, hi));
    }
    let mut fail = vec![0usize; m];
    let mut k = 0;
    for i in 1..m {
        while k > 0 && lit[i] != lit[k] {
            k = fail[k - 1];
        }
        if lit[i] == lit[k] {
            k += 1;
        }
        fail[i] = k;
    }
    let end = (hi + m).min(b.len());
    let mut span: Option<(usize, usize)> = None;
    let mut k = 0;
    for (i, &c) in b.iter().enumerate().take(end).skip(lo) {
        while k > 0 && c != lit[k] {
            k = fail[k - 1];
        }
        if c == lit[k] {
            k += 1;
        }
        if k == m {
            let start = i + 1 - m;
            if cur[start] {
                next[i + 1] = true;
                span = Some(span.map_or((i + 1, i + 1), |(a, _)| (a, i + 1)));
            }
            k = fail[k - 1];
        }
    }
    span
}

/// Marks in `next` every position an expression's value can end at, from any reachable
/// start. A value spans at least `min` bytes and no stop character; for each end `q` only
/// the latest start at or before `q - min` matters, since it has the shortest stretch to
/// keep clear of stop characters.
fn step_expr(
    uri: &str,
    op: Option<char>,
    cur: &[bool],
    lo: usize,
    hi: usize,
    next: &mut [bool],
) -> Option<(usize, usize)> {
    let b = uri.as_bytes();
    let n = b.len();
    // Query-style expressions may expand to nothing; simple ones need one character.
    let min = if matches!(op, Some('?' | '&' | '/' | '.' | ';' | '#')) { 0 } else { 1 };
    let stop = |c: u8| match op {
        Some('+' | '#' | '/') => false,
        Some('?' | '&') => c == b'#',
        _ => matches!(c, b'/' | b'?' | b'#'),
    };
    let mut start: Option<usize> = None;
    let mut last_stop: Option<usize> = None;
    let mut span: Option<(usize, usize)> = None;
    for q in lo + min..=n {
        if cur[q - min] && q - min <= hi {
            start = Some(q - min);
        }
        if q > 0 && stop(b[q - 1]) {
            last_stop = Some(q - 1);
        }
        let Some(p) = start else { continue };
        if last_stop.is_some_and(|s| s >= p) {
            if q - min >= hi {
                break; // no start is left that a value could still extend from
            }
            continue;
        }
        if uri.is_char_boundary(q) {
            next[q] = true;
            span = Some(span.map_or((q, q), |(a, _)| (a, q)));
        }
    }
    span
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn backend(name: &str) -> BackendConfig {
        let y = format!("backends:\n  - name: {name}\n    command: x\n");
        crate::config::Config::from_yaml(&y).unwrap().backends.remove(0)
    }

    fn owners(b: &[BackendConfig]) -> Vec<Owner> {
        b.iter().enumerate().map(|(i, b)| Owner { name: b.name.clone(), members: vec![i] }).collect()
    }

    fn lists(tools: &[&str]) -> Lists {
        Lists {
            tools: tools.iter().map(|n| item(&json!({"name": n, "inputSchema": {"type": "object"}}))).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn collisions_are_prefixed_only_when_needed() {
        let s = RouterSettings::default();
        let b = [backend("alpha"), backend("beta")];
        let (la, lb) = (lists(&["echo", "a_only"]), lists(&["echo", "b.only"]));
        let c = Catalog::build(&s, &b, &owners(&b), &[Some(&la), Some(&lb)]);
        let names: Vec<&str> = c.tool_names().collect();
        assert_eq!(names, ["alpha__echo", "a_only", "beta__echo", "b_only"]);
        let Lookup::Found(t) = c.tool("beta__echo") else { panic!() };
        assert_eq!((t.owner, t.original.as_str()), (1, "echo"));
        let Lookup::Found(t) = c.tool("b_only") else { panic!() };
        assert_eq!(t.original, "b.only");
        assert!(matches!(c.tool("echo"), Lookup::Unknown));
    }

    #[test]
    fn never_mode_reports_ambiguity_and_always_prefixes_all() {
        let mut s = RouterSettings { prefix: PrefixMode::Never, ..RouterSettings::default() };
        let b = [backend("alpha"), backend("beta")];
        let (la, lb) = (lists(&["echo"]), lists(&["echo"]));
        let c = Catalog::build(&s, &b, &owners(&b), &[Some(&la), Some(&lb)]);
        assert!(matches!(c.tool("echo"), Lookup::Ambiguous(v) if v == [0, 1]));
        assert_eq!(c.counts()[0], 1);
        s.prefix = PrefixMode::Always;
        let c = Catalog::build(&s, &b, &owners(&b), &[Some(&la), Some(&lb)]);
        assert_eq!(c.tool_names().collect::<Vec<_>>(), ["alpha__echo", "beta__echo"]);
    }

    #[test]
    fn long_names_shorten_stably() {
        let long = "x".repeat(100);
        let n = normalize(&long);
        assert_eq!(n.len(), 64);
        assert_eq!(n, normalize(&long));
        assert_ne!(normalize(&"x".repeat(101)), n);
        assert_eq!(normalize("a b/c"), "a_b_c");
        assert_eq!(normalize(""), "_");
    }

    #[test]
    fn templates_match() {
        let t = parse_template("test://a/item/{id}");
        assert!(template_matches(&t, "test://a/item/42"));
        assert!(!template_matches(&t, "test://a/item/"));
        assert!(!template_matches(&t, "test://a/item/4/2"));
        let t = parse_template("file:///{+path}");
        assert!(template_matches(&t, "file:///a/b/c.txt"));
        let t = parse_template("db://{table}/rows{?limit,offset}");
        assert!(template_matches(&t, "db://users/rows"));
        assert!(template_matches(&t, "db://users/rows?limit=5"));
    }

    #[test]
    fn pages_follow_cursors() {
        let s = RouterSettings::default();
        let b = [backend("a")];
        let names: Vec<String> = (0..5).map(|i| format!("t{i}")).collect();
        let l = lists(&names.iter().map(String::as_str).collect::<Vec<_>>());
        let c = Catalog::build(&s, &b, &owners(&b), &[Some(&l)]);
        let p1: Value = serde_json::from_str(&c.page(Kind::Tools, None, 2).unwrap()).unwrap();
        assert_eq!(p1["tools"].as_array().unwrap().len(), 2);
        let cur = p1["nextCursor"].as_str().unwrap();
        let p3: Value = serde_json::from_str(&c.page(Kind::Tools, Some("t4"), 2).unwrap()).unwrap();
        assert!(p3.get("nextCursor").is_none());
        assert!(c.page(Kind::Tools, Some(cur), 2).is_ok());
        assert!(c.page(Kind::Tools, Some("bogus"), 2).is_err());
        assert!(c.page(Kind::Prompts, Some("t2"), 2).is_err());
    }
    /// The recursive matcher this module used to have: exact on small inputs, exponential
    /// on hostile ones. The linear one must agree with it.
    fn reference(parts: &[Part], uri: &str) -> bool {
        let Some((first, rest)) = parts.split_first() else {
            return uri.is_empty();
        };
        match first {
            Part::Literal(l) => uri.strip_prefix(l.as_str()).is_some_and(|u| reference(rest, u)),
            Part::Expr(op) => {
                let min = if matches!(op, Some('?' | '&' | '/' | '.' | ';' | '#')) { 0 } else { 1 };
                let stop: &[char] = match op {
                    Some('+' | '#') => &[],
                    Some('?' | '&') => &['#'],
                    _ => &['/', '?', '#'],
                };
                let max = uri.find(stop).unwrap_or(uri.len());
                let max = if matches!(op, Some('/')) { uri.len() } else { max };
                (min..=max).rev().any(|n| uri.is_char_boundary(n) && reference(rest, &uri[n..]))
            }
        }
    }

    #[test]
    fn linear_matcher_agrees_with_the_recursive_one() {
        let templates = [
            "a{x}",
            "{x}/{y}",
            "{+p}",
            "a{?q}",
            "{x}{y}",
            "{x}a{y}",
            "/{/p}a",
            "{#f}",
            "{x}{+y}/",
            "a/{x}?{&y}",
            "{.e}{;m}",
            "{x}{x}{x}",
            "aa{x}aa",
            "{+x}a{+y}a",
        ];
        let alphabet = ['a', '/', '?', '#', 'é'];
        let mut uris = vec![String::new()];
        for len in 1..=5usize {
            let total = alphabet.len().pow(len as u32);
            for mut k in 0..total {
                let mut u = String::new();
                for _ in 0..len {
                    u.push(alphabet[k % alphabet.len()]);
                    k /= alphabet.len();
                }
                uris.push(u);
            }
        }
        for t in templates {
            let parts = parse_template(t);
            for u in &uris {
                assert_eq!(template_matches(&parts, u), reference(&parts, u), "template {t:?}, uri {u:?}");
            }
        }
    }

    #[test]
    fn hostile_templates_match_in_linear_time_without_recursion() {
        // Thousands of segments: the recursive matcher overflowed the stack on this.
        let deep = "{v}/".repeat(20_000);
        let parts = parse_template(&deep);
        assert_eq!(parts.len(), 40_000);
        assert!(template_matches(&parts, &"a/".repeat(20_000)));
        assert!(!template_matches(&parts, &"a/".repeat(19_999)));
        assert!(!template_matches(&parts, &format!("{}#", "a/".repeat(20_000))));
        // Adjacent expressions: the recursive matcher tried every split of the URI.
        let adjacent = parse_template("x://{a}{b}{c}{d}{e}{f}{g}{h}/end");
        let uri = format!("x://{}", "y".repeat(50));
        assert_eq!(uri.len(), 54);
        assert!(!template_matches(&adjacent, &uri));
        assert!(!template_matches(&adjacent, &format!("x://{}", "y".repeat(100_000))));
        assert!(template_matches(&adjacent, &format!("x://{}/end", "y".repeat(100_000))));
        let catch_all = parse_template("{+a}{+b}{+c}{+d}{+e}{+f}{+g}{+h}z");
        assert!(!template_matches(&catch_all, &"y".repeat(100_000)));
    }

    #[test]
    fn templates_over_the_bounds_are_refused() {
        assert!(template_out_of_bounds("file:///{+path}").is_none());
        assert!(template_out_of_bounds(&"{v}/".repeat(20)).is_none());
        assert!(template_out_of_bounds(&"{v}".repeat(MAX_TEMPLATE_EXPRESSIONS + 1)).is_some());
        assert!(template_out_of_bounds(&format!("x://{}", "a".repeat(MAX_TEMPLATE_BYTES))).is_some());
        // Whoever built the lists, the catalog never holds one.
        let b = [backend("a")];
        let l = Lists {
            templates: vec![
                item(&json!({"uriTemplate": "{v}/".repeat(5_000)})),
                item(&json!({"uriTemplate": "x://{id}"})),
            ],
            ..Default::default()
        };
        let c = Catalog::build(&RouterSettings::default(), &b, &owners(&b), &[Some(&l)]);
        assert_eq!(c.counts()[2], 1);
        assert_eq!(c.resource_owner(&"a/".repeat(5_000)), None);
    }

    #[test]
    fn impostor_names_in_another_backends_prefix_space_are_renamed() {
        let s = RouterSettings::default();
        let b = [backend("a"), backend("b"), backend("c")];
        let (la, lb, lc) = (lists(&["b__echo", "b..x", "a__mine"]), lists(&["echo"]), lists(&["echo"]));
        let c = Catalog::build(&s, &b, &owners(&b), &[Some(&la), Some(&lb), Some(&lc)]);
        let Lookup::Found(t) = c.tool("b__echo") else { panic!("b__echo is missing") };
        assert_eq!((t.owner, t.original.as_str()), (1, "echo"), "backend b's own name wins");
        let Lookup::Found(t) = c.tool("a__b__echo") else { panic!("{:?}", c.tool_names().collect::<Vec<_>>()) };
        assert_eq!((t.owner, t.original.as_str()), (0, "b__echo"));
        let Lookup::Found(t) = c.tool("a__b__x") else { panic!("{:?}", c.tool_names().collect::<Vec<_>>()) };
        assert_eq!(t.original, "b..x", "normalized names are checked too");
        let Lookup::Found(t) = c.tool("a__mine") else { panic!() };
        assert_eq!(t.owner, 0, "a name in the backend's own space stays");
        assert_eq!(c.warnings().len(), 2, "{:?}", c.warnings());
        assert!(c.warnings()[0].contains("\"b__echo\"") && c.warnings()[0].contains("b's prefix space"));
        // The impostor listed first or last: the same outcome.
        let o = owners(&b);
        let c = Catalog::build(&s, &b, &o, &[Some(&lc), Some(&lb), Some(&la)]);
        let Lookup::Found(t) = c.tool("b__echo") else { panic!() };
        assert_eq!(t.owner, 1);
    }

    #[test]
    fn a_renamed_item_reads_like_its_renamed_tree() {
        for v in [json!({"a": 1, "name": "x", "z": {"name": "inner"}}), json!({"name": "caf\u{e9}"}), json!({"b": []})]
        {
            let mut want = v.clone();
            want["name"] = json!("p__x");
            assert_eq!(renamed(&item(&v), "p__x"), want.to_string());
        }
    }

    #[test]
    fn every_exposed_name_is_found_and_its_json_names_it() {
        let s = RouterSettings::default();
        let b = [backend("a"), backend("b")];
        let names: Vec<String> = (0..3000).map(|i| format!("t{i}")).collect();
        let mut la = lists(&names.iter().map(String::as_str).collect::<Vec<_>>());
        // A name listed twice by one backend, a duplicated key, a name normalized away.
        la.tools.push(item(&json!({"name": "t1"})));
        la.tools.push(Arc::from(RawValue::from_string(r#"{"name":"first","name":"dup"}"#.into()).expect("json")));
        la.tools.push(item(&json!({"name": "a b", "description": "the \"name\":\"x\" trap"})));
        let lb = lists(&["t7", "only_b"]);
        let c = Catalog::build(&s, &b, &owners(&b), &[Some(&la), Some(&lb)]);
        assert_eq!(c.counts()[0], 3000 + 2 + 2);
        let page: Value = serde_json::from_str(&c.page(Kind::Tools, None, 10_000).unwrap()).unwrap();
        let listed = page["tools"].as_array().unwrap();
        for (i, (name, owner, json)) in c.items(Kind::Tools).into_iter().enumerate() {
            let Lookup::Found(t) = c.tool(name) else { panic!("{name} is not found") };
            assert_eq!(t.owner, owner);
            let v: Value = serde_json::from_str(&json).expect("json");
            assert_eq!(v["name"], name, "{json}");
            assert_eq!(listed[i], v, "the page lists what items() shows");
        }
        let Lookup::Found(t) = c.tool("a__t7") else { panic!() };
        assert_eq!((t.owner, t.original.as_str()), (0, "t7"));
        let Lookup::Found(t) = c.tool("dup") else { panic!() };
        assert_eq!(t.original, "dup");
        let Lookup::Found(t) = c.tool("a_b") else { panic!() };
        assert_eq!(t.original, "a b");
        for missing in ["t3000", "", "a__t8", "t7", "x".repeat(300).as_str()] {
            assert!(matches!(c.tool(missing), Lookup::Unknown), "{missing}");
        }
        assert!(matches!(Catalog::default().tool("t1"), Lookup::Unknown));
    }

    #[test]
    fn a_rename_alone_changes_the_fingerprint_and_an_identical_build_does_not() {
        let b = [backend("a")];
        let (la, copy) = (lists(&["echo", "x"]), lists(&["echo", "x"]));
        let plain = RouterSettings::default();
        let always = RouterSettings { prefix: PrefixMode::Always, ..RouterSettings::default() };
        let one = Catalog::build(&plain, &b, &owners(&b), &[Some(&la)]);
        let again = Catalog::build(&plain, &b, &owners(&b), &[Some(&copy)]);
        let renamed = Catalog::build(&always, &b, &owners(&b), &[Some(&la)]);
        assert!(one.changed_kinds(&again).is_empty());
        assert_eq!(one.changed_kinds(&renamed), [Kind::Tools]);
        assert_eq!(renamed.tool_names().collect::<Vec<_>>(), ["a__echo", "a__x"]);
    }

    #[test]
    fn an_items_head_reads_like_its_parsed_tree() {
        let cases = [
            json!({"name": "a", "uri": "x://1", "uriTemplate": "x://{id}", "annotations": {"idempotentHint": true}}),
            json!({"name": "caf\u{e9} \"q\"", "annotations": {"idempotentHint": "true"}}),
            json!({"name": 5, "uri": null, "annotations": [true]}),
            json!(["name", "a"]),
            json!("name"),
        ];
        for v in cases {
            let raw = item(&v);
            let h = head(&raw);
            let want = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
            assert_eq!(h.name.map(Cow::into_owned), want("name"), "{v}");
            assert_eq!(h.uri.map(Cow::into_owned), want("uri"), "{v}");
            assert_eq!(h.uri_template.map(Cow::into_owned), want("uriTemplate"), "{v}");
            assert_eq!(h.idempotent, v.pointer("/annotations/idempotentHint") == Some(&Value::Bool(true)), "{v}");
        }
        // A duplicated key (the last one counts, as in the parsed tree) takes the slow read.
        let dup = RawValue::from_string(r#"{"name":"first","name":"last"}"#.into()).expect("json");
        assert_eq!(head(&dup).name.as_deref(), Some("last"));
    }

    fn templates(list: &[&str]) -> Lists {
        Lists {
            templates: list.iter().map(|t| item(&json!({"uriTemplate": t, "name": "t"}))).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn config_routes_win_then_the_most_specific_template() {
        let y = "router:\n  resource_routes:\n    - {prefix: \"docs://\", backend: b}\n    - {prefix: \"docs://private/\", backend: c}\nbackends:\n  - {name: a, command: x}\n  - {name: b, command: x}\n  - {name: c, command: x}\n";
        let cfg = crate::config::Config::from_yaml(y).unwrap();
        let o = owners(&cfg.backends);
        let (la, lb, lc) =
            (templates(&["{+anything}"]), templates(&["x://items/{id}"]), templates(&["x://{kind}/{id}"]));
        let mut la = la;
        la.resources.push(item(&json!({"uri": "docs://listed", "name": "listed"})));
        let c = Catalog::build(&cfg.router, &cfg.backends, &o, &[Some(&la), Some(&lb), Some(&lc)]);
        assert_eq!(c.resource_owner("docs://anything"), Some(1), "config beats a catch-all");
        assert_eq!(c.resource_owner("docs://listed"), Some(1), "config beats an exact resource");
        assert_eq!(c.resource_owner("docs://private/x"), Some(2), "the longest prefix rule wins");
        assert_eq!(c.resource_owner("x://items/7"), Some(1), "the longer literal prefix wins");
        assert_eq!(c.resource_owner("x://things/7"), Some(2));
        assert_eq!(c.resource_owner("elsewhere:1"), Some(0), "the catch-all takes the rest");
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    }

    #[test]
    fn equally_specific_templates_of_two_backends_are_reported() {
        let s = RouterSettings::default();
        let b = [backend("a"), backend("b")];
        let (la, lb) = (templates(&["x://{id}"]), templates(&["x://{+path}"]));
        let c = Catalog::build(&s, &b, &owners(&b), &[Some(&la), Some(&lb)]);
        assert_eq!(c.resource_owner("x://1"), Some(0), "config order breaks the tie");
        assert_eq!(c.resource_owner("x://1/2"), Some(1), "only b's template matches");
        assert_eq!(c.warnings().len(), 1, "{:?}", c.warnings());
        assert!(c.warnings()[0].contains("equally specific"), "{:?}", c.warnings());
    }

    #[test]
    fn identical_templates_of_several_backends_are_listed_once() {
        let s = RouterSettings::default();
        let b = [backend("a"), backend("b")];
        let (la, lb) = (templates(&["x://{id}", "a://{id}"]), templates(&["x://{id}"]));
        let c = Catalog::build(&s, &b, &owners(&b), &[Some(&la), Some(&lb)]);
        assert_eq!(c.counts()[2], 2);
        let page: Value = serde_json::from_str(&c.page(Kind::Templates, None, 10).unwrap()).unwrap();
        assert_eq!(page["resourceTemplates"].as_array().unwrap().len(), 2);
        assert_eq!(c.resource_owner("x://1"), Some(0));
        assert_eq!(c.template_owner("x://{id}"), Some(0));
        assert!(c.warnings().iter().any(|w| w.contains("listed by a and b")), "{:?}", c.warnings());
    }
}
