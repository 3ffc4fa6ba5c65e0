//! The merged catalog: every backend's tools, prompts, resources and templates, with the
//! names clients see and the reverse map back to (backend, original name).
//!
//! A catalog is immutable once built; the router swaps in a new one on refresh, so a lookup
//! never waits for a backend. Items are pre-rendered to JSON at build time, so serving a
//! `*/list` page is string concatenation.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use serde_json::Value;

use crate::config::{BackendConfig, PrefixMode, RouterSettings};

/// What one backend listed, as it listed it.
#[derive(Debug, Default, Clone)]
pub(crate) struct Lists {
    pub tools: Vec<Value>,
    pub resources: Vec<Value>,
    pub templates: Vec<Value>,
    pub prompts: Vec<Value>,
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
    pub exposed: String,
    /// Index into the owners the catalog was built with.
    pub owner: usize,
    pub original: String,
    /// The tool declared `annotations.idempotentHint: true`.
    pub idempotent: bool,
    json: String,
}

#[derive(Debug)]
enum Target {
    One(usize),
    /// Prefix mode `never` and several backends serve the name: their indices.
    Ambiguous(Vec<usize>),
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
}

#[derive(Debug, Default)]
pub(crate) struct Catalog {
    tools: Vec<Named>,
    tool_ix: HashMap<String, Target>,
    prompts: Vec<Named>,
    prompt_ix: HashMap<String, Target>,
    resources: Vec<(usize, String)>,
    resource_ix: HashMap<String, usize>,
    templates: Vec<Template>,
    routes: Vec<(String, usize)>,
    fingerprints: [u64; 4],
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
        let tool_src = gather(owners, lists, |l| &l.tools, |i, n| backends[i].tools.admits(n));
        let prompt_src = gather(owners, lists, |l| &l.prompts, |i, n| backends[i].prompts.admits(n));
        (c.tools, c.tool_ix) = expose(settings, &names, tool_src);
        (c.prompts, c.prompt_ix) = expose(settings, &names, prompt_src);

        for (o, owner) in owners.iter().enumerate() {
            let mut seen_templates = std::collections::HashSet::new();
            for &m in &owner.members {
                let Some(l) = lists.get(m).copied().flatten() else { continue };
                for r in &l.resources {
                    let Some(uri) = r.get("uri").and_then(Value::as_str) else { continue };
                    if !backends[m].resources.admits(uri) {
                        continue;
                    }
                    if let Entry::Vacant(v) = c.resource_ix.entry(uri.to_owned()) {
                        v.insert(o);
                        c.resources.push((o, r.to_string()));
                    }
                }
                for t in &l.templates {
                    let Some(raw) = t.get("uriTemplate").and_then(Value::as_str) else { continue };
                    if !backends[m].resources.admits(raw) || !seen_templates.insert(raw.to_owned()) {
                        continue;
                    }
                    c.templates.push(Template {
                        owner: o,
                        raw: raw.to_owned(),
                        parsed: parse_template(raw),
                        json: t.to_string(),
                    });
                }
            }
        }
        for rr in &settings.resource_routes {
            if let Some(b) = backends.iter().position(|b| b.name == rr.backend) {
                if let Some(o) = owners.iter().position(|o| o.members.contains(&b)) {
                    c.routes.push((rr.prefix.clone(), o));
                }
            }
        }
        c.fingerprints = [
            fingerprint(c.tools.iter().map(|t| t.json.as_str())),
            fingerprint(c.resources.iter().map(|r| r.1.as_str())),
            fingerprint(c.templates.iter().map(|t| t.json.as_str())),
            fingerprint(c.prompts.iter().map(|p| p.json.as_str())),
        ];
        c
    }

    pub(crate) fn tool(&self, name: &str) -> Lookup<'_> {
        lookup(&self.tools, &self.tool_ix, name)
    }

    pub(crate) fn prompt(&self, name: &str) -> Lookup<'_> {
        lookup(&self.prompts, &self.prompt_ix, name)
    }

    /// The owner of a URI: exact resource, then template, then configured prefix rule.
    pub(crate) fn resource_owner(&self, uri: &str) -> Option<usize> {
        if let Some(&b) = self.resource_ix.get(uri) {
            return Some(b);
        }
        if let Some(t) = self.templates.iter().find(|t| template_matches(&t.parsed, uri)) {
            return Some(t.owner);
        }
        self.routes.iter().find(|(p, _)| uri.starts_with(p.as_str())).map(|r| r.1)
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
        [self.tools.len(), self.resources.len(), self.templates.len(), self.prompts.len()]
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
        self.tools.iter().map(|t| t.exposed.as_str())
    }

    /// One page of a list result as JSON; `Err` is the message of a -32602 (bad cursor).
    pub(crate) fn page(&self, kind: Kind, cursor: Option<&str>, page_size: usize) -> Result<String, String> {
        let items: Vec<&str> = match kind {
            Kind::Tools => self.tools.iter().map(|t| t.json.as_str()).collect(),
            Kind::Prompts => self.prompts.iter().map(|t| t.json.as_str()).collect(),
            Kind::Resources => self.resources.iter().map(|r| r.1.as_str()).collect(),
            Kind::Templates => self.templates.iter().map(|t| t.json.as_str()).collect(),
        };
        let start = match cursor {
            None => 0,
            Some(c) => c
                .strip_prefix(kind.cursor_tag())
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|&n| n > 0 && n < items.len())
                .ok_or_else(|| format!("Invalid cursor {c:?}"))?,
        };
        let end = (start + page_size).min(items.len());
        let len: usize = items[start..end].iter().map(|s| s.len() + 1).sum();
        let mut out = String::with_capacity(len + 64);
        out.push_str("{\"");
        out.push_str(kind.field());
        out.push_str("\":[");
        for (i, item) in items[start..end].iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(item);
        }
        out.push(']');
        if end < items.len() {
            out.push_str(&format!(",\"nextCursor\":\"{}{}\"", kind.cursor_tag(), end));
        }
        out.push('}');
        Ok(out)
    }
}

fn lookup<'a>(items: &'a [Named], ix: &HashMap<String, Target>, name: &str) -> Lookup<'a> {
    match ix.get(name) {
        Some(Target::One(i)) => Lookup::Found(&items[*i]),
        Some(Target::Ambiguous(b)) => Lookup::Ambiguous(b.clone()),
        None => Lookup::Unknown,
    }
}

/// (owner, original name, item) for every admitted, named item; the first of a name per
/// owner wins (pool members are expected to serve the same items).
fn gather<'a>(
    owners: &[Owner],
    lists: &[Option<&'a Lists>],
    field: impl Fn(&'a Lists) -> &'a Vec<Value>,
    admits: impl Fn(usize, &str) -> bool,
) -> Vec<(usize, &'a str, &'a Value)> {
    let mut out = Vec::new();
    for (o, owner) in owners.iter().enumerate() {
        let mut seen = std::collections::HashSet::new();
        for &m in &owner.members {
            let Some(l) = lists.get(m).copied().flatten() else { continue };
            for item in field(l) {
                let Some(name) = item.get("name").and_then(Value::as_str) else { continue };
                if admits(m, name) && seen.insert(name) {
                    out.push((o, name, item));
                }
            }
        }
    }
    out
}

fn expose(
    settings: &RouterSettings,
    backends: &[&str],
    src: Vec<(usize, &str, &Value)>,
) -> (Vec<Named>, HashMap<String, Target>) {
    let mut owners: HashMap<&str, Vec<usize>> = HashMap::new();
    for (b, name, _) in &src {
        owners.entry(name).or_default().push(*b);
    }
    let mut items = Vec::with_capacity(src.len());
    let mut ix: HashMap<String, Target> = HashMap::with_capacity(src.len());
    for (b, name, item) in src {
        let collides = owners.get(name).is_some_and(|o| o.len() > 1);
        let prefixed = match settings.prefix {
            PrefixMode::Always => true,
            PrefixMode::Conditional => collides,
            PrefixMode::Never => false,
        };
        if settings.prefix == PrefixMode::Never && collides {
            let o = owners.get(name).cloned().unwrap_or_default();
            if o.first() != Some(&b) {
                continue; // listed once, under the first backend; calling it is ambiguous
            }
            let exposed = unique_name(&normalize(name), &ix);
            let mut json = item.clone();
            json["name"] = Value::String(exposed.clone());
            ix.insert(exposed.clone(), Target::Ambiguous(o));
            let idempotent = idempotent_hint(item);
            items.push(Named { exposed, owner: b, original: name.to_owned(), idempotent, json: json.to_string() });
            continue;
        }
        let candidate =
            if prefixed { format!("{}{}{}", backends[b], settings.separator, name) } else { name.to_owned() };
        let exposed = unique_name(&normalize(&candidate), &ix);
        let json = if exposed == name {
            item.to_string()
        } else {
            let mut j = item.clone();
            j["name"] = Value::String(exposed.clone());
            j.to_string()
        };
        ix.insert(exposed.clone(), Target::One(items.len()));
        let idempotent = idempotent_hint(item);
        items.push(Named { exposed, owner: b, original: name.to_owned(), idempotent, json });
    }
    (items, ix)
}

fn idempotent_hint(item: &Value) -> bool {
    item.pointer("/annotations/idempotentHint") == Some(&Value::Bool(true))
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

fn unique_name(name: &str, taken: &HashMap<String, Target>) -> String {
    if !taken.contains_key(name) {
        return name.to_owned();
    }
    let mut salt = 0u32;
    loop {
        let tag = format!("-{:08x}", fnv1a32(format!("{name}#{salt}").as_bytes()));
        let mut s = name.to_owned();
        s.truncate(MAX_NAME - tag.len());
        s.push_str(&tag);
        if !taken.contains_key(&s) {
            return s;
        }
        salt += 1;
    }
}

fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

fn fingerprint<'a>(items: impl Iterator<Item = &'a str>) -> u64 {
    items.fold(0xcbf2_9ce4_8422_2325u64, |h, s| {
        let h = s.bytes().fold(h, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
        (h ^ 0xff).wrapping_mul(0x0000_0100_0000_01b3)
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

/// Whether `uri` could be an expansion of the template (values are not extracted).
fn template_matches(parts: &[Part], uri: &str) -> bool {
    let Some((first, rest)) = parts.split_first() else {
        return uri.is_empty();
    };
    match first {
        Part::Literal(l) => uri.strip_prefix(l.as_str()).is_some_and(|u| template_matches(rest, u)),
        Part::Expr(op) => {
            // Query-style expressions may expand to nothing; simple ones need one character.
            let min = if matches!(op, Some('?' | '&' | '/' | '.' | ';' | '#')) { 0 } else { 1 };
            let stop: &[char] = match op {
                Some('+' | '#') => &[],
                Some('?' | '&') => &['#'],
                _ => &['/', '?', '#'],
            };
            let max = uri.find(stop).unwrap_or(uri.len());
            let max = if matches!(op, Some('/')) { uri.len() } else { max };
            (min..=max).rev().any(|n| uri.is_char_boundary(n) && template_matches(rest, &uri[n..]))
        }
    }
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
            tools: tools.iter().map(|n| json!({"name": n, "inputSchema": {"type": "object"}})).collect(),
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
        let mut s = RouterSettings::default();
        s.prefix = PrefixMode::Never;
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
}
