//! Configuration: YAML in, a validated [`Config`] out.
//!
//! `${VAR}` and `${VAR:-default}` are expanded from the environment on the raw text before
//! parsing, line by line, so every error can still name its line. `$$` is a literal `$`.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

/// How colliding tool and prompt names are disambiguated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PrefixMode {
    /// Prefix with the backend name only names that more than one backend serves.
    #[default]
    Conditional,
    /// Prefix every name.
    Always,
    /// Never prefix; calling an ambiguous name is an error naming the candidates.
    Never,
}

/// The transport a backend is reached over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Transport {
    /// A child process speaking newline-delimited JSON-RPC on stdin/stdout.
    #[default]
    Stdio,
    /// Streamable HTTP (MCP 2025-03-26 and later): POST each message to `url`.
    StreamableHttp,
    /// Legacy HTTP+SSE (2024-11-05): GET an event stream at `url`, POST to its `endpoint`.
    Sse,
    /// WebSocket, subprotocol `mcp`: one JSON-RPC message per text frame.
    Websocket,
    /// Streamable HTTP, falling back to legacy SSE when the server answers the first POST
    /// with 400, 404 or 405. The default when a backend has a `url` and no `transport`.
    Auto,
}

impl Transport {
    /// The config spelling of this transport.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Stdio => "stdio",
            Transport::StreamableHttp => "streamable_http",
            Transport::Sse => "sse",
            Transport::Websocket => "websocket",
            Transport::Auto => "auto",
        }
    }

    /// Whether this transport reaches a server over the network (`url`) rather than
    /// starting a process (`command`).
    pub fn is_network(self) -> bool {
        self != Transport::Stdio
    }
}

/// Glob allow and deny lists for one kind of item (`*` and `?` wildcards).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Filter {
    /// When non-empty, only names matching one of these globs are served.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Names matching one of these globs are never served (deny wins over allow).
    #[serde(default)]
    pub deny: Vec<String>,
}

impl Filter {
    /// Whether `name` passes this filter.
    pub fn admits(&self, name: &str) -> bool {
        if self.deny.iter().any(|g| glob_match(g, name)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|g| glob_match(g, name))
    }
}

/// One configured MCP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BackendConfig {
    /// Unique name, `[A-Za-z0-9_-]+`; used as the collision prefix.
    pub name: String,
    /// How to reach it. Absent: `stdio` with a `command`, `auto` with a `url`.
    #[serde(default)]
    pub transport: Option<Transport>,
    /// Program to start (stdio).
    #[serde(default)]
    pub command: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Variables added over the router's own environment (never instead of it).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory of the child.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// Weight for weighted balancing.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Per-call deadline towards this backend, overriding the router's.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Which tools to serve.
    #[serde(default)]
    pub tools: Filter,
    /// Which prompts to serve.
    #[serde(default)]
    pub prompts: Filter,
    /// Which resources and templates (by URI) to serve.
    #[serde(default)]
    pub resources: Filter,
    /// Network backends: `http(s)://…` (streamable_http, sse, auto) or `ws://…` (websocket).
    #[serde(default)]
    pub url: Option<String>,
    /// Network backends: headers sent with every request (e.g. `Authorization: Bearer ${TOKEN}`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Network backends: TCP (and TLS) connect deadline.
    #[serde(default)]
    pub connect_timeout_ms: Option<u64>,
    /// Network backends: longest silence while reading a response (default: the call timeout).
    #[serde(default)]
    pub read_timeout_ms: Option<u64>,
    /// Network backends: largest response body or event, enforced while reading (default:
    /// `router.max_message_bytes`). The long-lived event streams are exempt as a whole, but
    /// each of their events is capped.
    #[serde(default)]
    pub max_response_bytes: Option<usize>,
    /// HTTP backends: calls in flight at once (worker threads draining the queue). Default 8.
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Network backends: names of client request headers allowed through to this backend.
    /// Nothing the client sends (its credentials least of all) is forwarded unless named
    /// here. The router has no HTTP front end yet, so today this only validates.
    #[serde(default)]
    pub pass_headers: Vec<String>,
    /// Overrides `router.max_catalog_items` for this backend.
    #[serde(default)]
    pub max_catalog_items: Option<usize>,
    /// Overrides `router.max_catalog_bytes` for this backend.
    #[serde(default)]
    pub max_catalog_bytes: Option<usize>,
}

impl BackendConfig {
    /// The transport in effect: the configured one, else `auto` with a `url`, else `stdio`.
    pub fn transport(&self) -> Transport {
        match (self.transport, &self.url) {
            (Some(t), _) => t,
            (None, Some(_)) => Transport::Auto,
            (None, None) => Transport::Stdio,
        }
    }
}

fn default_weight() -> u32 {
    1
}

/// A rule sending resource URIs with a prefix to a backend, whatever resources or templates
/// the backends list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ResourceRoute {
    /// URI prefix, compared byte for byte.
    pub prefix: String,
    /// Backend name.
    pub backend: String,
}

/// Router-wide settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RouterSettings {
    /// `serverInfo.name` the router announces to its clients.
    pub name: String,
    /// Default deadline of one routed call.
    pub request_timeout_ms: u64,
    /// Deadline for a backend's start and `initialize` handshake.
    pub init_timeout_ms: u64,
    /// Capacity of each backend's bounded command queue.
    pub queue_capacity: usize,
    /// Largest accepted message (a line on stdio), in bytes.
    pub max_message_bytes: usize,
    /// Collision prefix mode.
    pub prefix: PrefixMode,
    /// Separator between backend name and item name.
    pub separator: String,
    /// Items per `*/list` page served to clients.
    pub page_size: usize,
    /// Periodic catalog refresh; 0 disables it (`list_changed` still refreshes).
    pub refresh_interval_ms: u64,
    /// How long `shutdown` waits for a child to exit after closing its stdin.
    pub shutdown_grace_ms: u64,
    /// URI prefix routing rules; they win over what backends list (the longest prefix first).
    pub resource_routes: Vec<ResourceRoute>,
    /// Hard cap on one client call, whatever its attempts and progress (0 = the call's
    /// timeout, so progress never extends it).
    pub max_call_ms: u64,
    /// `open` (default): a backend that is down never fails `initialize` or other backends'
    /// calls. `closed`: `initialize` fails while any backend is not ready.
    pub fail_mode: FailMode,
    /// Restarting crashed backends.
    pub restart: RestartPolicy,
    /// Active and passive health checks.
    pub health: HealthPolicy,
    /// Circuit breaker settings, one breaker per backend.
    pub breaker: BreakerSettings,
    /// How much extra traffic retries and fallbacks may add.
    pub retry_budget: RetryBudgetSettings,
    /// The client capabilities the router declares to every backend. Backends are shared by
    /// all sessions and initialized before any client connects, so this is configured, not
    /// copied from one client; a relayed request a session cannot answer gets an error.
    pub client_capabilities: serde_json::Value,
    /// Most items of one kind (tools, resources, templates, prompts) one backend may list;
    /// past it, fetching stops and that backend's catalog is refused.
    pub max_catalog_items: usize,
    /// Most bytes of list results one backend may send for its whole catalog; same effect.
    pub max_catalog_bytes: usize,
}

/// See [`RouterSettings::fail_mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailMode {
    /// Serve what is up.
    #[default]
    Open,
    /// Refuse to initialize while anything is down.
    Closed,
}

/// Exponential backoff with jitter for restarting a backend that exited.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RestartPolicy {
    /// Whether crashed backends are restarted at all.
    pub enabled: bool,
    /// First delay.
    pub initial_backoff_ms: u64,
    /// Largest delay.
    pub max_backoff_ms: u64,
    /// Uptime after which the attempt counter resets.
    pub stable_after_ms: u64,
    /// More restarts than this within `window_ms` is a crash loop…
    pub max_restarts: u32,
    /// …counted over this window…
    pub window_ms: u64,
    /// …and earns a pause this long before the next try.
    pub cooldown_ms: u64,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            enabled: true,
            initial_backoff_ms: 200,
            max_backoff_ms: 30_000,
            stable_after_ms: 30_000,
            max_restarts: 5,
            window_ms: 60_000,
            cooldown_ms: 60_000,
        }
    }
}

/// Health checking: `ping` on an interval, and consecutive failures of real traffic.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct HealthPolicy {
    /// Active ping interval; 0 disables active checks.
    pub interval_ms: u64,
    /// Deadline of one ping.
    pub timeout_ms: u64,
    /// Consecutive failures (pings or calls) that make a backend unhealthy.
    pub failure_threshold: u32,
    /// Largest delay between probes of an unhealthy backend (the delay doubles from `interval_ms`).
    pub max_backoff_ms: u64,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy { interval_ms: 15_000, timeout_ms: 5_000, failure_threshold: 3, max_backoff_ms: 60_000 }
    }
}

/// Circuit breaker settings (see `breaker.rs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// Failure rate in the window that opens it (with at least `min_calls`); none = off.
    pub failure_rate: Option<f64>,
    /// Window for the rate.
    pub window_ms: u64,
    /// Calls needed in the window before the rate counts.
    pub min_calls: u32,
    /// Time open before trial calls are admitted.
    pub open_timeout_ms: u64,
    /// Trial calls admitted at once while half-open.
    pub half_open_max_probes: u32,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            failure_threshold: 5,
            failure_rate: None,
            window_ms: 30_000,
            min_calls: 10,
            open_timeout_ms: 10_000,
            half_open_max_probes: 1,
        }
    }
}

/// Retries and fallbacks spend from a budget refilled by real traffic.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RetryBudgetSettings {
    /// Retries allowed per client call, on average (0.2 = at most 20% extra load).
    pub ratio: f64,
    /// Retries always allowed per second, so a quiet router can still fail over.
    pub min_per_sec: f64,
}

impl Default for RetryBudgetSettings {
    fn default() -> Self {
        RetryBudgetSettings { ratio: 0.2, min_per_sec: 5.0 }
    }
}

/// Backends serving the same tools, balanced as one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PoolConfig {
    /// The pool's name: the prefix its items get on a collision.
    pub name: String,
    /// Member backends (each in at most one pool).
    pub backends: Vec<String>,
    /// `round_robin` (default), `weighted_round_robin`, `least_connections` or `sticky`.
    #[serde(default = "default_strategy")]
    pub strategy: String,
}

fn default_strategy() -> String {
    "round_robin".into()
}

/// An ordered list of backends to try for a tool or a method.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct FallbackConfig {
    /// The tool (name as clients see it, or the backends' own name) this chain serves…
    #[serde(default)]
    pub tool: Option<String>,
    /// …or the method (e.g. `resources/read`).
    #[serde(default)]
    pub method: Option<String>,
    /// Backends in the order to try.
    pub candidates: Vec<String>,
    /// Whether a call that may already have run (timeout, crash mid-call) may be re-sent.
    /// Without it, the tool's `idempotentHint` decides.
    #[serde(default)]
    pub idempotent: bool,
}

impl Default for RouterSettings {
    fn default() -> Self {
        RouterSettings {
            name: "mcprouter".into(),
            request_timeout_ms: 30_000,
            init_timeout_ms: 10_000,
            queue_capacity: 256,
            max_message_bytes: 16 * 1024 * 1024,
            prefix: PrefixMode::Conditional,
            separator: "__".into(),
            page_size: 1000,
            refresh_interval_ms: 300_000,
            shutdown_grace_ms: 2_000,
            resource_routes: Vec::new(),
            max_call_ms: 120_000,
            fail_mode: FailMode::Open,
            restart: RestartPolicy::default(),
            health: HealthPolicy::default(),
            breaker: BreakerSettings::default(),
            retry_budget: RetryBudgetSettings::default(),
            client_capabilities: serde_json::json!({"roots": {"listChanged": true}, "sampling": {}, "elicitation": {}}),
            max_catalog_items: 10_000,
            max_catalog_bytes: 16 * 1024 * 1024,
        }
    }
}

impl RouterSettings {
    /// The default call deadline.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The breaker configuration these settings describe.
    pub fn breaker_config(&self) -> crate::breaker::BreakerConfig {
        let b = &self.breaker;
        crate::breaker::BreakerConfig {
            failure_threshold: b.failure_threshold,
            failure_rate: b.failure_rate,
            window: Duration::from_millis(b.window_ms),
            min_calls: b.min_calls,
            open_timeout: Duration::from_millis(b.open_timeout_ms),
            half_open_max_probes: b.half_open_max_probes,
        }
    }
}

/// A whole router configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Router-wide settings.
    #[serde(default)]
    pub router: RouterSettings,
    /// The backends, in priority order (earlier wins a resource URI both serve).
    #[serde(default)]
    pub backends: Vec<BackendConfig>,
    /// Pools of equivalent backends.
    #[serde(default)]
    pub pools: Vec<PoolConfig>,
    /// Fallback chains per tool or method.
    #[serde(default)]
    pub fallbacks: Vec<FallbackConfig>,
}

impl Config {
    /// Parses, expands and validates YAML text.
    pub fn from_yaml(text: &str) -> Result<Config> {
        let expanded = expand_env(text, &|k| std::env::var(k).ok())?;
        let config: Config = serde_norway::from_str(&expanded).map_err(|e| Error::Config(e.to_string()))?;
        config.validate_with_source(Some(&expanded))?;
        Ok(config)
    }

    /// Reads and parses a YAML file.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Config> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        Config::from_yaml(&text)
    }

    /// Checks everything that serde cannot: names, commands, numbers, references.
    pub fn validate(&self) -> Result<()> {
        self.validate_with_source(None)
    }

    fn validate_with_source(&self, src: Option<&str>) -> Result<()> {
        let at = |key: &str, value: &str, nth: usize| -> String {
            src.and_then(|s| line_of(s, key, value, nth)).map(|l| format!(" (line {l})")).unwrap_or_default()
        };
        let r = &self.router;
        if r.name.trim().is_empty() {
            return Err(Error::Config(format!("router.name: must not be empty{}", at("name", "", 0))));
        }
        if r.separator.is_empty() || !r.separator.bytes().all(is_name_byte) {
            return Err(Error::Config(format!(
                "router.separator: {:?} must be non-empty and use only [A-Za-z0-9_-]{}",
                r.separator,
                at("separator", "", 0)
            )));
        }
        for (field, v) in [
            ("request_timeout_ms", r.request_timeout_ms),
            ("init_timeout_ms", r.init_timeout_ms),
            ("queue_capacity", r.queue_capacity as u64),
            ("max_message_bytes", r.max_message_bytes as u64),
            ("page_size", r.page_size as u64),
        ] {
            if v == 0 {
                return Err(Error::Config(format!("router.{field}: must be greater than 0{}", at(field, "", 0))));
            }
        }
        for (field, v) in [("max_catalog_items", r.max_catalog_items), ("max_catalog_bytes", r.max_catalog_bytes)] {
            if v == 0 {
                return Err(Error::Config(format!("router.{field}: must be greater than 0{}", at(field, "", 0))));
            }
        }
        if r.max_message_bytes < 1024 {
            return Err(Error::Config(format!(
                "router.max_message_bytes: must be at least 1024{}",
                at("max_message_bytes", "", 0)
            )));
        }
        let mut seen = HashSet::new();
        let mut name_count: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, b) in self.backends.iter().enumerate() {
            let nth = {
                let c = name_count.entry(b.name.as_str()).or_default();
                *c += 1;
                *c - 1
            };
            let path = format!("backends[{i}]");
            if b.name.is_empty() || b.name.len() > 64 || !b.name.bytes().all(is_name_byte) {
                return Err(Error::Config(format!(
                    "{path}.name: {:?} must be 1-64 characters of [A-Za-z0-9_-]{}",
                    b.name,
                    at("name", &b.name, nth)
                )));
            }
            if !seen.insert(b.name.as_str()) {
                return Err(Error::Config(format!(
                    "{path}.name: duplicate backend name {:?}{}",
                    b.name,
                    at("name", &b.name, nth)
                )));
            }
            let t = b.transport();
            let here = || at("name", &b.name, nth);
            if t.is_network() {
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
                let schemes: &[&str] =
                    if t == Transport::Websocket { &["ws://", "wss://"] } else { &["http://", "https://"] };
                let host_ok = schemes
                    .iter()
                    .find_map(|s| url.strip_prefix(s))
                    .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
                if !host_ok {
                    return Err(Error::Config(format!(
                        "{path}.url: {url:?} must start with {} and name a host{}",
                        schemes.join(" or "),
                        at("url", url, 0)
                    )));
                }
                for (k, v) in &b.headers {
                    let bad_name = k.is_empty()
                        || !k.bytes().all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c));
                    if bad_name || v.contains(['\r', '\n', '\0']) {
                        return Err(Error::Config(format!("{path}.headers: invalid header {k:?}{}", here())));
                    }
                }
                for (field, v) in [
                    ("connect_timeout_ms", b.connect_timeout_ms.map(|x| x as u64)),
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
            } else {
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
                        at(field, "", 0)
                    )));
                }
                if b.command.trim().is_empty() {
                    return Err(Error::Config(format!(
                        "{path}.command: a stdio backend needs a non-empty command{}",
                        here()
                    )));
                }
            }
            if b.weight == 0 {
                return Err(Error::Config(format!("{path}.weight: must be at least 1{}", at("name", &b.name, nth))));
            }
            for (field, v) in [("max_catalog_items", b.max_catalog_items), ("max_catalog_bytes", b.max_catalog_bytes)] {
                if v == Some(0) {
                    return Err(Error::Config(format!("{path}.{field}: must be greater than 0{}", here())));
                }
            }
            if b.timeout_ms == Some(0) {
                return Err(Error::Config(format!(
                    "{path}.timeout_ms: must be greater than 0{}",
                    at("name", &b.name, nth)
                )));
            }
            for (k, _) in &b.env {
                if k.is_empty() || k.contains('=') || k.contains('\0') {
                    return Err(Error::Config(format!(
                        "{path}.env: invalid variable name {k:?}{}",
                        at("name", &b.name, nth)
                    )));
                }
            }
        }
        let known = |n: &str| self.backends.iter().any(|b| b.name == n);
        let mut pooled = HashSet::new();
        for (i, p) in self.pools.iter().enumerate() {
            let path = format!("pools[{i}]");
            if p.name.is_empty() || p.name.len() > 64 || !p.name.bytes().all(is_name_byte) {
                return Err(Error::Config(format!(
                    "{path}.name: {:?} must be 1-64 characters of [A-Za-z0-9_-]{}",
                    p.name,
                    at("name", &p.name, 0)
                )));
            }
            if self.backends.iter().any(|b| b.name == p.name) || self.pools[..i].iter().any(|q| q.name == p.name) {
                return Err(Error::Config(format!(
                    "{path}.name: {:?} is already the name of a backend or pool{}",
                    p.name,
                    at("name", &p.name, 0)
                )));
            }
            if p.backends.is_empty() {
                return Err(Error::Config(format!(
                    "{path}.backends: a pool needs at least one backend{}",
                    at("name", &p.name, 0)
                )));
            }
            for m in &p.backends {
                if !known(m) {
                    return Err(Error::Config(format!(
                        "{path}.backends: no backend named {m:?}{}",
                        at("name", &p.name, 0)
                    )));
                }
                if !pooled.insert(m.as_str()) {
                    return Err(Error::Config(format!(
                        "{path}.backends: {m:?} is already in a pool{}",
                        at("name", &p.name, 0)
                    )));
                }
            }
            if p.strategy.parse::<crate::balance::Strategy>().is_err() {
                return Err(Error::Config(format!(
                    "{path}.strategy: {:?} is not one of round_robin, weighted_round_robin, least_connections, sticky{}",
                    p.strategy,
                    at("strategy", &p.strategy, 0)
                )));
            }
        }
        for (i, f) in self.fallbacks.iter().enumerate() {
            let path = format!("fallbacks[{i}]");
            if f.tool.is_some() == f.method.is_some() {
                return Err(Error::Config(format!(
                    "{path}: give exactly one of tool or method{}",
                    at("candidates", "", i)
                )));
            }
            if f.candidates.is_empty() {
                return Err(Error::Config(format!("{path}.candidates: must not be empty{}", at("candidates", "", i))));
            }
            if let Some(c) = f.candidates.iter().find(|c| !known(c)) {
                return Err(Error::Config(format!(
                    "{path}.candidates: no backend named {c:?}{}",
                    at("candidates", "", i)
                )));
            }
        }
        let b = &r.breaker;
        if b.failure_threshold == 0
            || b.half_open_max_probes == 0
            || b.failure_rate.is_some_and(|x| !(x > 0.0 && x <= 1.0))
        {
            return Err(Error::Config(format!(
                "router.breaker: failure_threshold and half_open_max_probes must be at least 1, failure_rate in (0, 1]{}",
                at("breaker", "", 0)
            )));
        }
        if !(r.retry_budget.ratio >= 0.0 && r.retry_budget.min_per_sec >= 0.0) {
            return Err(Error::Config(format!(
                "router.retry_budget: ratio and min_per_sec must be >= 0{}",
                at("retry_budget", "", 0)
            )));
        }
        if r.health.failure_threshold == 0 || r.health.timeout_ms == 0 {
            return Err(Error::Config(format!(
                "router.health: failure_threshold and timeout_ms must be at least 1{}",
                at("health", "", 0)
            )));
        }
        if !r.client_capabilities.is_object() {
            return Err(Error::Config(format!(
                "router.client_capabilities: must be a mapping{}",
                at("client_capabilities", "", 0)
            )));
        }
        for (i, rr) in r.resource_routes.iter().enumerate() {
            if !self.backends.iter().any(|b| b.name == rr.backend) {
                return Err(Error::Config(format!(
                    "router.resource_routes[{i}].backend: no backend named {:?}{}",
                    rr.backend,
                    at("backend", &rr.backend, 0)
                )));
            }
        }
        Ok(())
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// 1-based line of the `nth` line that reads `key: value` (value empty = any value).
fn line_of(src: &str, key: &str, value: &str, nth: usize) -> Option<usize> {
    src.lines()
        .enumerate()
        .filter(|(_, l)| {
            let t = l.trim_start().trim_start_matches("- ").trim_start();
            let Some(rest) = t.strip_prefix(key).and_then(|r| r.strip_prefix(':')) else {
                return false;
            };
            let v = rest.trim().trim_matches(|c| c == '"' || c == '\'');
            value.is_empty() || v == value
        })
        .nth(nth)
        .map(|(i, _)| i + 1)
}

/// Expands `${VAR}` and `${VAR:-default}`; `$$` is a literal `$`.
pub(crate) fn expand_env(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    for (lineno, line) in text.split_inclusive('\n').enumerate() {
        let mut rest = line;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            if let Some(r) = after.strip_prefix('$') {
                out.push('$');
                rest = r;
            } else if let Some(body) = after.strip_prefix('{') {
                let Some(end) = body.find('}') else {
                    return Err(Error::Config(format!(
                        "line {}: unterminated ${{ in {:?}",
                        lineno + 1,
                        line.trim_end()
                    )));
                };
                let expr = &body[..end];
                let (name, default) = match expr.split_once(":-") {
                    Some((n, d)) => (n, Some(d)),
                    None => (expr, None),
                };
                let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !valid {
                    return Err(Error::Config(format!("line {}: bad variable reference ${{{expr}}}", lineno + 1)));
                }
                match (lookup(name).filter(|v| !v.is_empty() || default.is_none()), default) {
                    (Some(v), _) => out.push_str(&v),
                    (None, Some(d)) => out.push_str(d),
                    (None, None) => {
                        return Err(Error::Config(format!(
                            "line {}: environment variable {name} is not set (use ${{{name}:-default}})",
                            lineno + 1
                        )));
                    }
                }
                rest = &body[end + 1..];
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
    }
    Ok(out)
}

/// `*` matches any run, `?` one character; everything else literally.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "HOME_DIR" => Some("/home/x".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_variables_defaults_and_dollars() {
        let out = expand_env("a: ${HOME_DIR}/b\nc: ${NOPE:-dflt} $$x ${EMPTY:-e}\n", &env).unwrap();
        assert_eq!(out, "a: /home/x/b\nc: dflt $x e\n");
        let err = expand_env("x: 1\ny: ${MISSING}\n", &env).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(err.to_string().contains("MISSING"), "{err}");
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", "anything"));
        assert!(glob_match("get_*", "get_user"));
        assert!(!glob_match("get_*", "set_user"));
        assert!(glob_match("a?c", "abc"));
        assert!(glob_match("*x*y", "axbxy"));
        let f = Filter { allow: vec!["get_*".into()], deny: vec!["get_secret".into()] };
        assert!(f.admits("get_user"));
        assert!(!f.admits("get_secret"));
        assert!(!f.admits("put"));
    }

    #[test]
    fn unknown_keys_name_path_and_line() {
        let err = Config::from_yaml("backends:\n  - name: a\n    command: x\n    comand: y\n").unwrap_err();
        let s = err.to_string();
        assert!(s.contains("backends[0]") && s.contains("comand") && s.contains("line 4"), "{s}");
    }

    #[test]
    fn semantic_errors_name_path_and_line() {
        let y = "backends:\n  - name: a\n    command: x\n  - name: a\n    command: y\n";
        let s = Config::from_yaml(y).unwrap_err().to_string();
        assert!(s.contains("backends[1].name") && s.contains("duplicate") && s.contains("line 4"), "{s}");
        let s = Config::from_yaml("backends:\n  - name: a\n    command: \"\"\n").unwrap_err().to_string();
        assert!(s.contains("backends[0].command"), "{s}");
        let s = Config::from_yaml("backends:\n  - name: a b\n    command: x\n").unwrap_err().to_string();
        assert!(s.contains("backends[0].name") && s.contains("line 2"), "{s}");
        let s = Config::from_yaml("backends:\n  - name: h\n    transport: websocket\n    command: x\n")
            .unwrap_err()
            .to_string();
        assert!(s.contains("backends[0].command") && s.contains("only stdio"), "{s}");
        let s = Config::from_yaml("backends:\n  - name: h\n    transport: sse\n").unwrap_err().to_string();
        assert!(s.contains("backends[0].url") && s.contains("line 2"), "{s}");
        let s = Config::from_yaml("backends:\n  - name: h\n    url: ftp://x/mcp\n").unwrap_err().to_string();
        assert!(s.contains("backends[0].url") && s.contains("line 3"), "{s}");
        let s =
            Config::from_yaml("backends:\n  - name: h\n    command: x\n    headers: {A: b}\n").unwrap_err().to_string();
        assert!(s.contains("backends[0].headers") && s.contains("line 4"), "{s}");
        let c = Config::from_yaml(
            "backends:\n  - name: h\n    url: http://127.0.0.1:1/mcp\n    headers: {Authorization: Bearer x}\n",
        )
        .unwrap();
        assert_eq!(c.backends[0].transport(), Transport::Auto);
        let s = Config::from_yaml("backends:\n  - name: h\n    url: http://h/mcp\n    pass_headers: [\"a b\"]\n")
            .unwrap_err()
            .to_string();
        assert!(s.contains("backends[0].pass_headers") && s.contains("line 2"), "{s}");
        let s = Config::from_yaml("backends:\n  - name: w\n    transport: websocket\n    url: http://h/\n")
            .unwrap_err()
            .to_string();
        assert!(s.contains("ws://") && s.contains("line 4"), "{s}");
        let s = Config::from_yaml("router:\n  request_timeout_ms: -1\n").unwrap_err().to_string();
        assert!(s.contains("request_timeout_ms"), "{s}");
    }
}
