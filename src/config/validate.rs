//! The checks serde cannot make: names, transports, references between sections, and the
//! ranges of numbers (`ranges.rs`). One function per section; [`config`] calls them in the
//! order errors are reported. Each returns the first problem it finds, naming the field's
//! path and, when the YAML text is known, its line. Errors never quote a value that may be
//! a secret: a url, a header or env value, a command.
//!
//! Line lookups scan the text, so they run only once an error is certain (`here` closures):
//! a valid config with many backends must not cost a scan per backend.

use std::collections::{BTreeMap, HashSet};

use super::lines::Locator;
use super::ranges;
use super::{
    BackendConfig, BreakerConfig, Config, FallbackConfig, HealthPolicy, PoolConfig, ResourceRoute, RetryBudgetSettings,
    RouterSettings, Transport,
};
use crate::error::{Error, Result};

/// Every check, in the order errors are reported.
pub(super) fn config(c: &Config, at: Locator<'_>) -> Result<()> {
    let r = &c.router;
    router_settings(r, at)?;
    backends(&c.backends, at)?;
    let known = |n: &str| c.backends.iter().any(|b| b.name == n);
    pools(&c.pools, &c.backends, at)?;
    fallbacks(&c.fallbacks, &known, at)?;
    breaker(&r.breaker, at)?;
    retry_budget(&r.retry_budget, at)?;
    health(&r.health, at)?;
    client_capabilities(r.client_capabilities.as_ref(), at)?;
    resource_routes(&r.resource_routes, &known, at)?;
    ranges::check(c, at)
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Backend and pool names: 1-64 characters of `[A-Za-z0-9_-]` (they become prefixes).
fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(is_name_byte)
}

/// `router`: the name, the separator and the sizes that must not be 0.
pub(super) fn router_settings(r: &RouterSettings, at: Locator<'_>) -> Result<()> {
    if r.name.trim().is_empty() {
        return Err(Error::Config(format!("router.name: must not be empty{}", at.key("name", "", 0))));
    }
    if r.separator.is_empty() || !r.separator.bytes().all(is_name_byte) {
        return Err(Error::Config(format!(
            "router.separator: {:?} must be non-empty and use only [A-Za-z0-9_-]{}",
            r.separator,
            at.key("separator", "", 0)
        )));
    }
    let positive = [
        ("request_timeout_ms", r.request_timeout_ms),
        ("init_timeout_ms", r.init_timeout_ms),
        ("queue_capacity", r.queue_capacity as u64),
        ("max_message_bytes", r.max_message_bytes as u64),
        ("page_size", r.page_size as u64),
        ("max_catalog_items", r.max_catalog_items as u64),
        ("max_catalog_bytes", r.max_catalog_bytes as u64),
        ("max_session_backends", r.max_session_backends as u64),
    ];
    if let Some((field, _)) = positive.iter().find(|(_, v)| *v == 0) {
        return Err(Error::Config(format!("router.{field}: must be greater than 0{}", at.key(field, "", 0))));
    }
    if r.max_session_backends > 100_000 {
        return Err(Error::Config(format!(
            "router.max_session_backends: at most 100000{}",
            at.key("max_session_backends", "", 0)
        )));
    }
    if r.max_message_bytes < 1024 {
        return Err(Error::Config(format!(
            "router.max_message_bytes: must be at least 1024{}",
            at.key("max_message_bytes", "", 0)
        )));
    }
    Ok(())
}

/// `backends`: each name valid and unique, then each backend on its own.
pub(super) fn backends(list: &[BackendConfig], at: Locator<'_>) -> Result<()> {
    let mut seen = HashSet::new();
    // Which occurrence of `name: <this name>` in the text is this backend's.
    let mut name_count: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, b) in list.iter().enumerate() {
        let nth = {
            let c = name_count.entry(b.name.as_str()).or_default();
            *c += 1;
            *c - 1
        };
        let path = format!("backends[{i}]");
        let here = || at.key("name", &b.name, nth);
        if !is_valid_name(&b.name) {
            return Err(Error::Config(format!(
                "{path}.name: {:?} must be 1-64 characters of [A-Za-z0-9_-]{}",
                b.name,
                here()
            )));
        }
        if !seen.insert(b.name.as_str()) {
            return Err(Error::Config(format!("{path}.name: duplicate backend name {:?}{}", b.name, here())));
        }
        backend(&path, b, &here, at)?;
    }
    Ok(())
}

/// One backend: the fields of its transport (and none of the other's), then what every
/// backend has. `here` is the line of its name.
pub(super) fn backend(path: &str, b: &BackendConfig, here: &dyn Fn() -> String, at: Locator<'_>) -> Result<()> {
    let t = b.transport();
    if t.is_network() {
        network_backend(path, b, t, here, at)?;
    } else {
        stdio_backend(path, b, here, at)?;
    }
    // 2026-07-28 has a Streamable HTTP shape; legacy HTTP+SSE and WebSocket have none.
    if matches!(t, Transport::Sse | Transport::Websocket) && b.era == crate::config::EraSetting::Modern {
        return Err(Error::Config(format!(
            "{path}.era: modern needs stdio or Streamable HTTP; a {} backend speaks the legacy era{}",
            t.as_str(),
            here()
        )));
    }
    if b.weight == 0 {
        return Err(Error::Config(format!("{path}.weight: must be at least 1{}", here())));
    }
    for (field, v) in [("max_catalog_items", b.max_catalog_items), ("max_catalog_bytes", b.max_catalog_bytes)] {
        if v == Some(0) {
            return Err(Error::Config(format!("{path}.{field}: must be greater than 0{}", here())));
        }
    }
    if b.timeout_ms == Some(0) {
        return Err(Error::Config(format!("{path}.timeout_ms: must be greater than 0{}", here())));
    }
    if let Some(k) = b.env.keys().find(|k| k.is_empty() || k.contains('=') || k.contains('\0')) {
        return Err(Error::Config(format!("{path}.env: invalid variable name {k:?}{}", here())));
    }
    Ok(())
}

fn network_backend(
    path: &str,
    b: &BackendConfig,
    t: Transport,
    here: &dyn Fn() -> String,
    at: Locator<'_>,
) -> Result<()> {
    let stdio_only = [
        ("command", !b.command.is_empty()),
        ("args", !b.args.is_empty()),
        ("env", !b.env.is_empty()),
        ("cwd", b.cwd.is_some()),
    ];
    if let Some((field, _)) = stdio_only.iter().find(|(_, set)| *set) {
        return Err(Error::Config(format!(
            "{path}.{field}: only stdio backends take {field}; a {} backend is reached at its url{}",
            t.as_str(),
            here()
        )));
    }
    let Some(url) = b.url.as_deref() else {
        return Err(Error::Config(format!("{path}.url: a {} backend needs a url{}", t.as_str(), here())));
    };
    backend_url(path, t, url, at)?;
    for (k, v) in &b.headers {
        let bad_name = k.is_empty() || !k.bytes().all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c));
        if bad_name || v.contains(['\r', '\n', '\0']) {
            return Err(Error::Config(format!("{path}.headers: invalid header {k:?}{}", here())));
        }
    }
    for (field, v) in [
        ("connect_timeout_ms", b.connect_timeout_ms),
        ("read_timeout_ms", b.read_timeout_ms),
        ("max_response_bytes", b.max_response_bytes.map(|x| x as u64)),
        ("concurrency", b.concurrency.map(|x| x as u64)),
    ] {
        if v == Some(0) {
            return Err(Error::Config(format!("{path}.{field}: must be greater than 0{}", here())));
        }
    }
    if let Some(h) = b
        .pass_headers
        .iter()
        .find(|h| h.is_empty() || !h.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'))
    {
        return Err(Error::Config(format!("{path}.pass_headers: {h:?} is not a header name{}", here())));
    }
    if b.concurrency.is_some() && t == Transport::Websocket {
        return Err(Error::Config(format!(
            "{path}.concurrency: a websocket backend has one connection; concurrency is for HTTP{}",
            here()
        )));
    }
    Ok(())
}

/// A network backend's `url`: `ws://` or `wss://` for a websocket, `http://` or `https://`
/// otherwise, naming a host. The error never shows the url: it may carry credentials.
pub(super) fn backend_url(path: &str, t: Transport, url: &str, at: Locator<'_>) -> Result<()> {
    let schemes: &[&str] = if t == Transport::Websocket { &["ws", "wss"] } else { &["http", "https"] };
    let parsed = url::Url::parse(url).ok().filter(|u| schemes.contains(&u.scheme()) && u.host().is_some());
    // The URL standard forgives `http:host`, `http:///host` and `http:\\host`; the HTTP and
    // WebSocket clients, which read the configured text, do not. So the text itself must
    // also spell `scheme://` followed by the host.
    let spelled = parsed.as_ref().is_some_and(|u| {
        let rest = url.get(u.scheme().len()..).unwrap_or_default();
        rest.starts_with("://") && !rest[3..].starts_with(['/', '\\'])
    });
    if !spelled {
        let shown: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
        return Err(Error::Config(format!(
            "{path}.url: must start with {} and name a host{}",
            shown.join(" or "),
            at.key("url", url, 0)
        )));
    }
    Ok(())
}

fn stdio_backend(path: &str, b: &BackendConfig, here: &dyn Fn() -> String, at: Locator<'_>) -> Result<()> {
    let net_only = [
        ("url", b.url.is_some()),
        ("headers", !b.headers.is_empty()),
        ("connect_timeout_ms", b.connect_timeout_ms.is_some()),
        ("read_timeout_ms", b.read_timeout_ms.is_some()),
        ("max_response_bytes", b.max_response_bytes.is_some()),
        ("concurrency", b.concurrency.is_some()),
        ("pass_headers", !b.pass_headers.is_empty()),
    ];
    if let Some((field, _)) = net_only.iter().find(|(_, set)| *set) {
        return Err(Error::Config(format!(
            "{path}.{field}: only network backends (streamable_http, sse, websocket, auto) take {field}{}",
            at.key(field, "", 0)
        )));
    }
    if b.command.trim().is_empty() {
        return Err(Error::Config(format!("{path}.command: a stdio backend needs a non-empty command{}", here())));
    }
    Ok(())
}

/// `pools`: names that collide with nothing, existing members, each backend in one pool.
/// (The strategy is typed: serde refused unknown ones already.)
pub(super) fn pools(pools: &[PoolConfig], backends: &[BackendConfig], at: Locator<'_>) -> Result<()> {
    let mut pooled = HashSet::new();
    for (i, p) in pools.iter().enumerate() {
        let path = format!("pools[{i}]");
        let here = || at.key("name", &p.name, 0);
        if !is_valid_name(&p.name) {
            return Err(Error::Config(format!(
                "{path}.name: {:?} must be 1-64 characters of [A-Za-z0-9_-]{}",
                p.name,
                here()
            )));
        }
        if backends.iter().any(|b| b.name == p.name) || pools[..i].iter().any(|q| q.name == p.name) {
            return Err(Error::Config(format!(
                "{path}.name: {:?} is already the name of a backend or pool{}",
                p.name,
                here()
            )));
        }
        if p.backends.is_empty() {
            return Err(Error::Config(format!("{path}.backends: a pool needs at least one backend{}", here())));
        }
        for m in &p.backends {
            if !backends.iter().any(|b| &b.name == m) {
                return Err(Error::Config(format!("{path}.backends: no backend named {m:?}{}", here())));
            }
            if !pooled.insert(m.as_str()) {
                return Err(Error::Config(format!("{path}.backends: {m:?} is already in a pool{}", here())));
            }
        }
    }
    Ok(())
}

/// `fallbacks`: exactly one of tool or method, and candidates that exist.
pub(super) fn fallbacks(list: &[FallbackConfig], known: &dyn Fn(&str) -> bool, at: Locator<'_>) -> Result<()> {
    for (i, f) in list.iter().enumerate() {
        let path = format!("fallbacks[{i}]");
        let here = || at.key("candidates", "", i);
        if f.tool.is_some() == f.method.is_some() {
            return Err(Error::Config(format!("{path}: give exactly one of tool or method{}", here())));
        }
        if f.candidates.is_empty() {
            return Err(Error::Config(format!("{path}.candidates: must not be empty{}", here())));
        }
        if let Some(c) = f.candidates.iter().find(|c| !known(c)) {
            return Err(Error::Config(format!("{path}.candidates: no backend named {c:?}{}", here())));
        }
    }
    Ok(())
}

/// `router.breaker`: thresholds of at least 1, a failure rate in (0, 1].
pub(super) fn breaker(b: &BreakerConfig, at: Locator<'_>) -> Result<()> {
    if b.failure_threshold == 0 || b.half_open_max_probes == 0 || b.failure_rate.is_some_and(|x| !(x > 0.0 && x <= 1.0))
    {
        return Err(Error::Config(format!(
            "router.breaker: failure_threshold and half_open_max_probes must be at least 1, failure_rate in (0, 1]{}",
            at.key("breaker", "", 0)
        )));
    }
    Ok(())
}

/// `router.retry_budget`: nothing negative (or NaN).
pub(super) fn retry_budget(b: &RetryBudgetSettings, at: Locator<'_>) -> Result<()> {
    if !(b.ratio >= 0.0 && b.min_per_sec >= 0.0) {
        return Err(Error::Config(format!(
            "router.retry_budget: ratio and min_per_sec must be >= 0{}",
            at.key("retry_budget", "", 0)
        )));
    }
    Ok(())
}

/// `router.health`: a threshold and a ping deadline of at least 1.
pub(super) fn health(h: &HealthPolicy, at: Locator<'_>) -> Result<()> {
    if h.failure_threshold == 0 || h.timeout_ms == 0 {
        return Err(Error::Config(format!(
            "router.health: failure_threshold and timeout_ms must be at least 1{}",
            at.key("health", "", 0)
        )));
    }
    Ok(())
}

/// `router.client_capabilities`: a mapping when given.
pub(super) fn client_capabilities(c: Option<&serde_json::Value>, at: Locator<'_>) -> Result<()> {
    if c.is_some_and(|c| !c.is_object()) {
        return Err(Error::Config(format!(
            "router.client_capabilities: must be a mapping{}",
            at.key("client_capabilities", "", 0)
        )));
    }
    Ok(())
}

/// `router.resource_routes`: each names an existing backend.
pub(super) fn resource_routes(routes: &[ResourceRoute], known: &dyn Fn(&str) -> bool, at: Locator<'_>) -> Result<()> {
    for (i, rr) in routes.iter().enumerate() {
        if !known(&rr.backend) {
            return Err(Error::Config(format!(
                "router.resource_routes[{i}].backend: no backend named {:?}{}",
                rr.backend,
                at.key("backend", &rr.backend, 0)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parsed but not validated, so each section's validator sees what the test wrote.
    fn parse(y: &str) -> Config {
        serde_norway::from_str(y).expect("test YAML parses")
    }

    /// The message of a refusal, without the "invalid configuration" prefix.
    fn message(e: Error) -> String {
        match e {
            Error::Config(m) => m,
            other => panic!("not a config error: {other}"),
        }
    }

    fn err(r: Result<()>) -> String {
        message(r.expect_err("must be refused"))
    }

    #[test]
    fn router_settings_need_a_name_a_separator_and_positive_sizes() {
        let at = |y: &'static str| (parse(y), Locator(Some(y)));
        let (c, l) = at("router:\n  name: \" \"\n");
        assert!(err(router_settings(&c.router, l)).contains("router.name: must not be empty (line 2)"));
        let (c, l) = at("router:\n  separator: \"a.b\"\n");
        assert!(err(router_settings(&c.router, l)).starts_with("router.separator"));
        let (c, l) = at("router:\n  page_size: 0\n");
        assert_eq!(err(router_settings(&c.router, l)), "router.page_size: must be greater than 0 (line 2)");
        let (c, l) = at("router:\n  max_catalog_bytes: 0\n");
        assert!(err(router_settings(&c.router, l)).starts_with("router.max_catalog_bytes"));
        let (c, l) = at("router:\n  max_message_bytes: 1023\n");
        assert!(err(router_settings(&c.router, l)).contains("at least 1024 (line 2)"));
        assert!(router_settings(&RouterSettings::default(), Locator(None)).is_ok());
    }

    #[test]
    fn backends_need_valid_unique_names_and_point_at_the_right_one() {
        let y = "backends:\n  - name: a\n    command: x\n  - name: b\n    command: y\n  - name: a\n    command: z\n";
        let e = err(backends(&parse(y).backends, Locator(Some(y))));
        assert_eq!(e, "backends[2].name: duplicate backend name \"a\" (line 6)");
        let y = "backends:\n  - name: \"\"\n    command: x\n";
        assert!(err(backends(&parse(y).backends, Locator(Some(y)))).starts_with("backends[0].name"));
        let long = format!("backends:\n  - name: {}\n    command: x\n", "n".repeat(65));
        assert!(err(backends(&parse(&long).backends, Locator(None))).contains("1-64 characters"));
    }

    #[test]
    fn a_backend_takes_only_its_transports_fields() {
        let check = |y: &str| {
            let c = parse(y);
            backend("backends[0]", &c.backends[0], &|| " (here)".into(), Locator(Some(y)))
        };
        assert!(check("backends:\n  - {name: a, command: x, env: {K: v}, weight: 3}\n").is_ok());
        assert!(check("backends:\n  - {name: h, url: \"http://h/\", headers: {X-K: v}, concurrency: 2}\n").is_ok());
        assert!(err(check("backends:\n  - {name: a, command: \" \"}\n")).contains("needs a non-empty command (here)"));
        assert!(err(check("backends:\n  - {name: a, command: x, pass_headers: [a]}\n")).contains("only network"));
        assert!(err(check("backends:\n  - {name: h, url: \"http://h/\", cwd: /}\n")).contains("only stdio"));
        assert!(err(check("backends:\n  - {name: h, transport: sse}\n")).contains("needs a url"));
        assert!(check("backends:\n  - {name: h, url: \"http://h/\", era: modern}\n").is_ok());
        let e = err(check("backends:\n  - {name: h, url: \"http://h/\", transport: sse, era: modern}\n"));
        assert!(e.contains("era: modern needs stdio or Streamable HTTP"), "{e}");
        assert!(check("backends:\n  - {name: s, command: x, era: modern}\n").is_ok());
        assert!(check("backends:\n  - {name: s, command: x, era: legacy}\n").is_ok());
        assert!(err(check("backends:\n  - {name: a, command: x, weight: 0}\n")).contains("weight"));
        assert!(err(check("backends:\n  - {name: a, command: x, timeout_ms: 0}\n")).contains("timeout_ms"));
        assert!(
            err(check("backends:\n  - {name: a, command: x, max_catalog_items: 0}\n")).contains("max_catalog_items")
        );
        assert!(err(check("backends:\n  - {name: a, command: x, env: {\"A=B\": v}}\n")).contains("backends[0].env"));
        let e = err(check("backends:\n  - {name: h, url: \"http://h/\", headers: {X-K: \"a\\nb\"}}\n"));
        assert!(e.contains("backends[0].headers") && !e.contains("a\nb"), "{e}");
        let e = err(check("backends:\n  - {name: w, transport: websocket, url: \"ws://h/\", concurrency: 2}\n"));
        assert!(e.contains("one connection"), "{e}");
        assert!(
            err(check("backends:\n  - {name: h, url: \"http://h/\", read_timeout_ms: 0}\n"))
                .contains("read_timeout_ms")
        );
    }

    #[test]
    fn backend_urls_need_the_transports_scheme_and_a_host_and_never_echo() {
        let ok = |t, u| backend_url("b", t, u, Locator(None)).is_ok();
        assert!(ok(Transport::Auto, "http://h/mcp"));
        assert!(ok(Transport::StreamableHttp, "https://user:pw@h:8443/mcp?k=v"));
        assert!(ok(Transport::Websocket, "ws://[::1]:9/"));
        assert!(ok(Transport::Websocket, "wss://h"));
        assert!(!ok(Transport::Websocket, "http://h/"));
        assert!(!ok(Transport::Sse, "ws://h/"));
        assert!(!ok(Transport::Auto, "ftp://h/"));
        assert!(!ok(Transport::Auto, "http://"));
        assert!(!ok(Transport::Auto, "http:///path"));
        assert!(!ok(Transport::Auto, "h/mcp"));
        assert!(!ok(Transport::Auto, "http:h/mcp"));
        assert!(!ok(Transport::Auto, "http:\\\\h\\mcp"));
        assert!(!ok(Transport::Auto, "http://user:pw@/mcp"), "userinfo is not a host");
        assert!(!ok(Transport::Auto, "http://h:99999/"), "a port past 65535");
        assert!(!ok(Transport::Auto, "http://exa mple/"));
        assert!(ok(Transport::Auto, "HTTP://H/"), "schemes and hosts are case-insensitive");
        let y = "backends:\n  - name: h\n    url: ftp://user:s3cr3t@h/\n";
        let e = err(backend_url("backends[0]", Transport::Auto, "ftp://user:s3cr3t@h/", Locator(Some(y))));
        assert_eq!(e, "backends[0].url: must start with http:// or https:// and name a host (line 3)");
    }

    #[test]
    fn pools_need_fresh_names_and_known_members_each_in_one_pool() {
        let head = "backends:\n  - {name: a, command: x}\n  - {name: b, command: y}\npools:\n";
        let check = |tail: &str| {
            let y = format!("{head}{tail}");
            let c = parse(&y);
            pools(&c.pools, &c.backends, Locator(Some(&y))).map_err(message)
        };
        assert!(check("  - {name: p, backends: [a]}\n  - {name: q, backends: [b], strategy: sticky}\n").is_ok());
        assert!(check("  - {name: a, backends: [b]}\n").unwrap_err().contains("already the name"));
        assert!(
            check("  - {name: p, backends: [a]}\n  - {name: p, backends: [b]}\n")
                .unwrap_err()
                .contains("pools[1].name")
        );
        assert!(check("  - {name: p, backends: []}\n").unwrap_err().contains("at least one backend"));
        assert!(check("  - {name: p, backends: [c]}\n").unwrap_err().contains("no backend named \"c\""));
        let e = check("  - name: p\n    backends: [a]\n  - name: q\n    backends: [a]\n").unwrap_err();
        assert_eq!(e, "pools[1].backends: \"a\" is already in a pool (line 7)");
        assert!(check("  - {name: \"p q\", backends: [a]}\n").unwrap_err().contains("1-64 characters"));
    }

    #[test]
    fn fallbacks_need_one_target_and_known_candidates() {
        let known = |n: &str| n == "a";
        let check = |y: &str| fallbacks(&parse(y).fallbacks, &known, Locator(Some(y))).map_err(message);
        assert!(check("fallbacks:\n  - {tool: t, candidates: [a]}\n").is_ok());
        assert!(check("fallbacks:\n  - {method: m, tool: t, candidates: [a]}\n").unwrap_err().contains("exactly one"));
        assert!(
            check("fallbacks:\n  - tool: t\n    candidates: []\n").unwrap_err().contains("must not be empty (line 3)")
        );
        let e =
            check("fallbacks:\n  - tool: t\n    candidates: [a]\n  - tool: u\n    candidates: [a, z]\n").unwrap_err();
        assert_eq!(e, "fallbacks[1].candidates: no backend named \"z\" (line 5)");
    }

    #[test]
    fn breaker_retry_budget_health_and_capabilities() {
        let mut b = BreakerConfig::default();
        assert!(breaker(&b, Locator(None)).is_ok());
        b.failure_rate = Some(1.5);
        assert!(err(breaker(&b, Locator(None))).starts_with("router.breaker"));
        b.failure_rate = Some(f64::NAN);
        assert!(breaker(&b, Locator(None)).is_err());
        b = BreakerConfig { half_open_max_probes: 0, ..BreakerConfig::default() };
        assert!(breaker(&b, Locator(None)).is_err());
        let rb = RetryBudgetSettings { ratio: f64::NAN, min_per_sec: 1.0 };
        assert!(err(retry_budget(&rb, Locator(None))).starts_with("router.retry_budget"));
        assert!(retry_budget(&RetryBudgetSettings { ratio: 0.0, min_per_sec: 0.0 }, Locator(None)).is_ok());
        let h = HealthPolicy { timeout_ms: 0, ..HealthPolicy::default() };
        let y = "router:\n  health:\n    timeout_ms: 0\n";
        assert!(err(health(&h, Locator(Some(y)))).ends_with("(line 2)"));
        assert!(client_capabilities(Some(&serde_json::json!({"roots": {}})), Locator(None)).is_ok());
        assert!(client_capabilities(None, Locator(None)).is_ok());
        assert!(err(client_capabilities(Some(&serde_json::json!([1])), Locator(None))).contains("mapping"));
    }

    #[test]
    fn resource_routes_name_known_backends() {
        let y = "router:\n  resource_routes:\n    - {prefix: \"a://\", backend: a}\n    - prefix: \"b://\"\n      backend: b\n";
        let c = parse(y);
        assert!(resource_routes(&c.router.resource_routes[..1], &|n| n == "a", Locator(Some(y))).is_ok());
        let e = err(resource_routes(&c.router.resource_routes, &|n| n == "a", Locator(Some(y))));
        assert_eq!(e, "router.resource_routes[1].backend: no backend named \"b\" (line 5)");
    }

    #[test]
    fn sections_are_checked_in_order() {
        // Both the router and a pool are wrong: the router is reported.
        let y = "router:\n  page_size: 0\npools:\n  - {name: p, backends: []}\n";
        assert!(err(config(&parse(y), Locator(Some(y)))).starts_with("router.page_size"));
        let y = "backends:\n  - {name: a, command: x}\nfallbacks:\n  - {tool: t, candidates: [z]}\nrouter:\n  breaker: {failure_threshold: 0}\n";
        assert!(err(config(&parse(y), Locator(Some(y)))).starts_with("fallbacks[0]"));
    }
}
