//! Configuration: YAML in, a validated [`Config`] out.
//!
//! `${VAR}` and `${VAR:-default}` are expanded from the environment inside string values,
//! after parsing (see `env.rs`), so a value can never become YAML. `$$` is a literal `$`.
//!
//! Every number has a range (checked by `validate`, documented on each field): a huge
//! queue or buffer would be allocated up front, and a huge duration overflows deadline
//! arithmetic.

mod env;
pub mod gateway;
mod glob;
mod lines;
pub mod mcp_servers;
mod path;
pub mod policy;
mod ranges;
mod schema;
mod validate;
mod yaml;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

pub use crate::balance::Strategy;
pub use crate::breaker::BreakerConfig;
use crate::error::{Error, Result};
pub use gateway::GatewaySettings;
pub use glob::glob_match;
pub use policy::{ClientConfig, LimitSettings, PolicySettings};

/// Upper bound of every duration setting (`*_ms`): one day.
pub const MAX_DURATION_MS: u64 = 24 * 60 * 60 * 1000;
/// Upper bound of every size in bytes: 1 GiB.
pub const MAX_BYTES: u64 = 1 << 30;
/// Upper bound of `router.queue_capacity` (each backend's queue is allocated up front).
pub const MAX_QUEUE_CAPACITY: u64 = 1_000_000;
/// Upper bound of `router.spin_us`: past a few hundred microseconds a wake-up is cheap next
/// to the wait, and spinning longer only burns CPU.
pub const MAX_SPIN_US: u64 = 10_000;
/// `router.spin_us` when unset, in process.
pub const DEFAULT_SPIN_US: u64 = 200;
/// Upper bound of `router.page_size`.
pub const MAX_PAGE_SIZE: u64 = 100_000;
/// Upper bound of thresholds, probe and restart counts.
pub const MAX_COUNT: u64 = 10_000;
/// Upper bound of `router.breaker.min_calls`.
pub const MAX_MIN_CALLS: u64 = 1_000_000;
/// Upper bound of a backend's `weight`.
pub const MAX_WEIGHT: u64 = 10_000;
/// Upper bound of a backend's `concurrency` (one thread each).
pub const MAX_CONCURRENCY: u64 = 256;
/// Upper bound of `router.retry_budget.ratio`.
pub const MAX_RETRY_RATIO: f64 = 100.0;
/// Upper bound of `router.retry_budget.min_per_sec`.
pub const MAX_RETRIES_PER_SEC: f64 = 100_000.0;
/// Largest config file read: 4 MiB.
pub const MAX_CONFIG_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// How colliding tool and prompt names are disambiguated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, Default)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, Default)]
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

/// A backend's protocol era setting (see `BackendConfig::era`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EraSetting {
    /// Probe `server/discover` within the start timeout; any error or silence means legacy.
    #[default]
    Auto,
    /// 2026-07-28: no handshake, the client's facts on every request.
    Modern,
    /// The `initialize` handshake (2025-11-25 and earlier).
    Legacy,
}

impl EraSetting {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EraSetting::Auto => "auto",
            EraSetting::Modern => "modern",
            EraSetting::Legacy => "legacy",
        }
    }
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
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, Deserialize, JsonSchema)]
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
    /// Weight for weighted balancing, 1 to 10 000.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Per-call deadline towards this backend, overriding the router's; 1 ms to 24 h.
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
    /// Network backends: TCP (and TLS) connect deadline; 1 ms to 24 h.
    #[serde(default)]
    pub connect_timeout_ms: Option<u64>,
    /// Network backends: longest silence while reading a response (default: the call
    /// timeout); 1 ms to 24 h.
    #[serde(default)]
    pub read_timeout_ms: Option<u64>,
    /// Network backends: largest response body or event, enforced while reading (default:
    /// `router.max_message_bytes`). The long-lived event streams are exempt as a whole, but
    /// each of their events is capped. 1 byte to 1 GiB.
    #[serde(default)]
    pub max_response_bytes: Option<usize>,
    /// HTTP backends: calls in flight at once (worker threads draining the queue). Default 8,
    /// 1 to 256.
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
    /// `shared` (default): one connection serves every client. `session`: each client
    /// session gets its own process (or upstream session), started on its first call and
    /// stopped when the session ends, for servers that keep per-user state.
    #[serde(default)]
    pub scope: Scope,
    /// Which protocol era to speak to it: `auto` (probe `server/discover`, fall back to
    /// `initialize`), `modern` (2026-07-28 only) or `legacy` (`initialize` only). Legacy
    /// HTTP+SSE and WebSocket backends speak legacy only: `modern` needs stdio or Streamable HTTP.
    #[serde(default)]
    pub era: EraSetting,
}

/// Who a backend's connection serves; see [`BackendConfig::scope`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Scope {
    /// One connection for all sessions.
    #[default]
    Shared,
    /// One connection per client session. The shared one still answers the catalog.
    Session,
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
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ResourceRoute {
    /// URI prefix, compared byte for byte.
    pub prefix: String,
    /// Backend name.
    pub backend: String,
}

/// Router-wide settings.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RouterSettings {
    /// `serverInfo.name` the router announces to its clients.
    pub name: String,
    /// Default deadline of one routed call; 1 ms to 24 h.
    pub request_timeout_ms: u64,
    /// Deadline for a backend's start and `initialize` handshake; 1 ms to 24 h.
    pub init_timeout_ms: u64,
    /// Capacity of each backend's bounded command queue, 1 to 1 000 000 (allocated up front).
    pub queue_capacity: usize,
    /// Largest accepted message (a line on stdio), in bytes: 1024 to 1 GiB.
    pub max_message_bytes: usize,
    /// Collision prefix mode.
    pub prefix: PrefixMode,
    /// Separator between backend name and item name.
    pub separator: String,
    /// Items per `*/list` page served to clients, 1 to 100 000.
    pub page_size: usize,
    /// Periodic catalog refresh; 0 disables it (`list_changed` still refreshes). At most 24 h.
    pub refresh_interval_ms: u64,
    /// How long `shutdown` waits for a child to exit after closing its stdin; at most 24 h.
    pub shutdown_grace_ms: u64,
    /// URI prefix routing rules; they win over what backends list (the longest prefix first).
    pub resource_routes: Vec<ResourceRoute>,
    /// Hard cap on one client call, whatever its attempts and progress (0 = the call's
    /// timeout, so progress never extends it). At most 24 h.
    pub max_call_ms: u64,
    /// `open` (default): a backend that is down never fails `initialize` or other backends'
    /// calls. `closed`: `initialize` fails while any backend is not ready.
    pub fail_mode: FailMode,
    /// Restarting crashed backends.
    pub restart: RestartPolicy,
    /// Active and passive health checks.
    pub health: HealthPolicy,
    /// Circuit breaker settings, one breaker per backend.
    pub breaker: BreakerConfig,
    /// How much extra traffic retries and fallbacks may add.
    pub retry_budget: RetryBudgetSettings,
    /// The client capabilities the router declares to every backend, fixed. Unset (the
    /// default), they are derived: see [`RouterSettings::declared_client_capabilities`].
    pub client_capabilities: Option<serde_json::Value>,
    /// Most items of one kind (tools, resources, templates, prompts) one backend may list;
    /// past it, fetching stops and that backend's catalog is refused.
    pub max_catalog_items: usize,
    /// Most bytes of list results one backend may send for its whole catalog; same effect.
    pub max_catalog_bytes: usize,
    /// Most per-session backend connections (`scope: session`) alive at once, over all
    /// sessions; a session's first call past it gets an error. 1 to 100 000.
    pub max_session_backends: usize,
    /// Longest a caller spins (instead of sleeping) for the answer of a backend whose
    /// answers typically come within it, in microseconds; 0 never spins. At most 10 000.
    /// Spinning saves a thread wake-up per call on fast backends, at the price of CPU time.
    /// Unset: [`DEFAULT_SPIN_US`] for callers in the process (the library), 0 under
    /// `mcprouter serve` (see [`RouterSettings::serve_defaults`]).
    pub spin_us: Option<u64>,
}

/// See [`RouterSettings::fail_mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, Default)]
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
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RestartPolicy {
    /// Whether crashed backends are restarted at all.
    pub enabled: bool,
    /// First delay; at most 24 h, like every duration here.
    pub initial_backoff_ms: u64,
    /// Largest delay.
    pub max_backoff_ms: u64,
    /// Uptime after which the attempt counter resets.
    pub stable_after_ms: u64,
    /// More restarts than this within `window_ms` is a crash loop (at most 10 000)…
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
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct HealthPolicy {
    /// Active ping interval; 0 disables active checks. Every duration here: at most 24 h.
    pub interval_ms: u64,
    /// Deadline of one ping; at least 1 ms.
    pub timeout_ms: u64,
    /// Consecutive failures (pings or calls) that make a backend unhealthy, 1 to 10 000.
    pub failure_threshold: u32,
    /// Largest delay between probes of an unhealthy backend (the delay doubles from `interval_ms`).
    pub max_backoff_ms: u64,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy { interval_ms: 15_000, timeout_ms: 5_000, failure_threshold: 3, max_backoff_ms: 60_000 }
    }
}

/// Retries and fallbacks spend from a budget refilled by real traffic.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RetryBudgetSettings {
    /// Retries allowed per client call, on average (0.2 = at most 20% extra load); 0 to 100.
    pub ratio: f64,
    /// Retries always allowed per second, so a quiet router can still fail over; 0 to 100 000.
    pub min_per_sec: f64,
}

impl Default for RetryBudgetSettings {
    fn default() -> Self {
        RetryBudgetSettings { ratio: 0.2, min_per_sec: 5.0 }
    }
}

/// Backends serving the same tools, balanced as one.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PoolConfig {
    /// The pool's name: the prefix its items get on a collision.
    pub name: String,
    /// Member backends (each in at most one pool).
    pub backends: Vec<String>,
    /// `round_robin` (default), `weighted_round_robin`, `least_connections` or `sticky`.
    #[serde(default)]
    pub strategy: Strategy,
}

/// An ordered list of backends to try for a tool or a method.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
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
            breaker: BreakerConfig::default(),
            retry_budget: RetryBudgetSettings::default(),
            client_capabilities: None,
            max_catalog_items: 10_000,
            max_catalog_bytes: 16 * 1024 * 1024,
            spin_us: None,
            max_session_backends: 64,
        }
    }
}

impl RouterSettings {
    /// The default call deadline.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The client capabilities declared to backends in their `initialize`: the configured
    /// ones, else everything the router can relay to its sessions. Backends are shared and
    /// initialized before any client connects, so with several clients the router declares
    /// what any of them might answer, and a relayed request that the calling session did not
    /// declare is answered with an error (see the hub).
    pub fn declared_client_capabilities(&self) -> serde_json::Value {
        self.client_capabilities.clone().unwrap_or_else(|| {
            serde_json::json!({
                "roots": {"listChanged": true},
                "sampling": {},
                "elicitation": {"form": {}, "url": {}},
            })
        })
    }

    /// What `mcprouter serve` changes in the defaults: callers do not spin
    /// (`spin_us` unset → 0). Through `serve` a spin saved nothing at p50 and cost at p99
    /// (+350 µs against +55–110 µs, `cargo bench --bench overhead -- gateway`): the
    /// spinner competes for the CPUs with the client, the backend and the reader thread.
    pub fn serve_defaults(&mut self) {
        self.spin_us.get_or_insert(0);
    }

    /// Fixes the declared capabilities to those of the one client this router will serve
    /// (`mcprouter serve` on stdio), limited to the ones the router relays, unless they
    /// are configured. A server then offers through the router exactly what it would offer
    /// that client directly: no sampling tool for a client without sampling.
    pub fn declare_for_single_client(&mut self, client_capabilities: &serde_json::Value) {
        if self.client_capabilities.is_some() {
            return;
        }
        let relayed = ["roots", "sampling", "elicitation"];
        let kept: serde_json::Map<String, serde_json::Value> = relayed
            .iter()
            .filter_map(|k| client_capabilities.get(*k).filter(|v| v.is_object()).map(|v| ((*k).to_owned(), v.clone())))
            .collect();
        self.client_capabilities = Some(serde_json::Value::Object(kept));
    }
}

/// A whole router configuration.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
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
    /// The HTTP front door (`mcprouter serve --http`); see [`gateway`].
    #[serde(default)]
    pub gateway: GatewaySettings,
    /// The clients the router knows (see [`policy`]). Empty: no identities, no policy.
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
    /// What an unknown client is: `deny` (the default) or the name of a client to act as.
    #[serde(default)]
    pub default_client: Option<String>,
    /// The identity of `mcprouter serve` on stdio (`--client` overrides it).
    #[serde(default)]
    pub serve_client: Option<String>,
    /// Who may see and call what.
    #[serde(default)]
    pub policy: PolicySettings,
    /// Rate limits, concurrency caps and quotas.
    #[serde(default)]
    pub limits: LimitSettings,
}

impl Config {
    /// Parses, expands and validates YAML text, or a document in the `mcpServers` format
    /// of MCP hosts (see [`mcp_servers`]).
    pub fn from_yaml(text: &str) -> Result<Config> {
        Config::from_yaml_with_env(text, &|k| std::env::var(k).ok())
    }

    /// [`Config::from_yaml`] with `${VAR}` looked up in `lookup`.
    pub(crate) fn from_yaml_with_env(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Config> {
        // The `mcpServers` JSON of MCP hosts, recognised by its top-level key (see mcp_servers.rs).
        if mcp_servers::is_mcp_servers(text) {
            return mcp_servers::import_with_env(text, lookup).map(mcp_servers::Import::logged);
        }
        let mut tree: serde_norway::Value =
            serde_norway::from_str(text).map_err(|e| Error::Config(yaml::scrub(&e.to_string())))?;
        env::expand_tree(&mut tree, &mut Vec::new(), text, lookup)?;
        let config: Config = yaml::from_tree(tree, text)?;
        config.validate_with_source(Some(text))?;
        Ok(config)
    }

    /// Reads and parses a YAML file: a regular file of at most 4 MiB
    /// ([`MAX_CONFIG_FILE_BYTES`]), so `/dev/zero` or a FIFO is refused rather than read
    /// until memory runs out or waited on forever.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Config> {
        Config::from_yaml(&read_config_file(path.as_ref())?)
    }

    /// Checks everything that serde cannot: names, commands, numbers, references.
    pub fn validate(&self) -> Result<()> {
        self.validate_with_source(None)
    }

    fn validate_with_source(&self, src: Option<&str>) -> Result<()> {
        validate::config(self, lines::Locator(src))?;
        gateway::validate(&self.gateway, lines::Locator(src))?;
        policy::validate(self, lines::Locator(src))
    }
}

/// The text of a config file, refusing anything but a regular file of bounded size.
pub fn read_config_file(path: &std::path::Path) -> Result<String> {
    let fail = |why: &dyn std::fmt::Display| Error::Config(format!("{}: {why}", path.display()));
    let not_regular = || fail(&"not a regular file (a config must be a plain file, not a device, FIFO or directory)");
    let too_big = || fail(&format_args!("larger than the {MAX_CONFIG_FILE_BYTES}-byte limit for a config file"));
    // Checked before opening: opening a FIFO would already block until a writer comes.
    let meta = std::fs::metadata(path).map_err(|e| fail(&e))?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    if meta.len() > MAX_CONFIG_FILE_BYTES {
        return Err(too_big());
    }
    let file = open_nonblocking(path).map_err(|e| fail(&e))?;
    // The path may have been swapped between the check and the open.
    if !file.metadata().map_err(|e| fail(&e))?.is_file() {
        return Err(not_regular());
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| fail(&e))?;
    if bytes.len() as u64 > MAX_CONFIG_FILE_BYTES {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|_| fail(&"not UTF-8 text"))
}

/// Opens for reading without blocking should the path have become a FIFO since it was
/// checked; on a regular file the flag changes nothing.
fn open_nonblocking(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NONBLOCK);
    }
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_does_not_spin_unless_told_to() {
        let mut r = RouterSettings::default();
        assert_eq!(r.spin_us, None, "unset: the library's default applies");
        r.serve_defaults();
        assert_eq!(r.spin_us, Some(0));
        let mut r = RouterSettings { spin_us: Some(150), ..RouterSettings::default() };
        r.serve_defaults();
        assert_eq!(r.spin_us, Some(150), "what the config says stands");
    }

    fn vars(k: &str) -> Option<String> {
        match k {
            "INJECT" => Some("x\n  - name: evil\n    command: /bin/sh".into()),
            "HASHY" => Some("abc#def".into()),
            "TIMEOUT" => Some("5000".into()),
            "FLAG" => Some("false".into()),
            "NUMERIC" => Some("8080".into()),
            _ => None,
        }
    }

    #[test]
    fn env_value_cannot_inject_yaml() {
        let y = "backends:\n  - name: a\n    command: \"${INJECT}\"\n";
        let c = Config::from_yaml_with_env(y, &vars).unwrap();
        assert_eq!(c.backends.len(), 1);
        assert_eq!(c.backends[0].command, "x\n  - name: evil\n    command: /bin/sh");
        let c = Config::from_yaml_with_env("backends:\n  - name: a\n    command: ${INJECT}\n", &vars).unwrap();
        assert_eq!(c.backends.len(), 1);
    }

    #[test]
    fn env_value_with_hash_is_kept_whole() {
        let c = Config::from_yaml_with_env("backends:\n  - name: a\n    command: run ${HASHY}\n", &vars).unwrap();
        assert_eq!(c.backends[0].command, "run abc#def");
    }

    #[test]
    fn env_references_in_comments_and_keys_are_not_expanded() {
        let y = "# set ${UNSET_IN_COMMENT} first\nbackends:\n  - name: a # ${ALSO_UNSET}\n    command: x\n    env: {\"${K}\": v}\n";
        let c = Config::from_yaml_with_env(y, &vars).unwrap();
        assert_eq!(c.backends[0].env.get("${K}").map(String::as_str), Some("v"));
    }

    #[test]
    fn expanded_values_still_fill_numbers_bools_and_strings() {
        let y = "router:\n  request_timeout_ms: ${TIMEOUT}\n  restart:\n    enabled: ${FLAG}\nbackends:\n  - name: a\n    command: x\n    env: {PORT: \"${NUMERIC}\", N: 7}\n";
        let c = Config::from_yaml_with_env(y, &vars).unwrap();
        assert_eq!(c.router.request_timeout_ms, 5000);
        assert!(!c.router.restart.enabled);
        assert_eq!(c.backends[0].env.get("PORT").map(String::as_str), Some("8080"));
        assert_eq!(c.backends[0].env.get("N").map(String::as_str), Some("7"));
        let s = Config::from_yaml_with_env("router:\n  queue_capacity: ${UNSET_VAR}\n", &vars).unwrap_err().to_string();
        assert!(s.contains("UNSET_VAR") && s.contains("router.queue_capacity") && s.contains("line 2"), "{s}");
        // Keys are never expanded: `$$` stays two dollars and is an unknown field.
        let s = Config::from_yaml_with_env("$$: 1\n", &vars).unwrap_err().to_string();
        assert!(s.contains("$$"), "{s}");
        let c = Config::from_yaml_with_env("router:\n  name: a$$b\n", &vars).unwrap();
        assert_eq!(c.router.name, "a$b");
    }

    #[test]
    fn type_errors_do_not_echo_values() {
        let s = Config::from_yaml("router:\n  name: r\n  queue_capacity: \"sk-live-abc\"\n").unwrap_err().to_string();
        assert!(!s.contains("sk-live"), "{s}");
        assert!(s.contains("router.queue_capacity") && s.contains("string") && s.contains("line 3"), "{s}");
        let s = Config::from_yaml("router:\n  prefix: sk-live-abc\n").unwrap_err().to_string();
        assert!(!s.contains("sk-live") && s.contains("router.prefix") && s.contains("line 2"), "{s}");
        let s = Config::from_yaml("router:\n  restart:\n    max_restarts: 99999999999999\n").unwrap_err().to_string();
        assert!(
            !s.contains("99999999999999") && s.contains("router.restart.max_restarts") && s.contains("line 3"),
            "{s}"
        );
        let s = Config::from_yaml("backends:\n  - name: a\n    command: [\"sk-live-abc\"]\n").unwrap_err().to_string();
        assert!(!s.contains("sk-live") && s.contains("backends[0].command"), "{s}");
        let s =
            Config::from_yaml("backends:\n  - name: h\n    url: ftp://user:s3cr3t@h/mcp\n").unwrap_err().to_string();
        assert!(!s.contains("s3cr3t") && s.contains("backends[0].url"), "{s}");
    }

    #[test]
    fn huge_numbers_are_refused_with_path_and_line() {
        let cases = [
            ("router:\n  queue_capacity: 100000000000\n", "router.queue_capacity", 2),
            ("router:\n  max_message_bytes: 10000000000000\n", "router.max_message_bytes", 2),
            ("router:\n  page_size: 18446744073709551615\n", "router.page_size", 2),
            ("router:\n  request_timeout_ms: 18446744073709551615\n", "router.request_timeout_ms", 2),
            ("router:\n  max_call_ms: 90000000\n", "router.max_call_ms", 2),
            ("router:\n  shutdown_grace_ms: 90000000\n", "router.shutdown_grace_ms", 2),
            ("router:\n  restart:\n    cooldown_ms: 90000000\n", "router.restart.cooldown_ms", 3),
            ("router:\n  restart:\n    max_restarts: 4000000000\n", "router.restart.max_restarts", 3),
            ("router:\n  health:\n    interval_ms: 90000000\n", "router.health.interval_ms", 3),
            ("router:\n  breaker:\n    min_calls: 4000000000\n", "router.breaker.min_calls", 3),
            ("router:\n  breaker:\n    half_open_max_probes: 4000000000\n", "router.breaker.half_open_max_probes", 3),
            ("router:\n  retry_budget:\n    ratio: .inf\n", "router.retry_budget.ratio", 3),
            ("router:\n  retry_budget:\n    min_per_sec: 1e300\n", "router.retry_budget.min_per_sec", 3),
            (
                "backends:\n  - name: a\n    command: x\n  - name: b\n    command: y\n    weight: 4000000000\n",
                "backends[1].weight",
                6,
            ),
            ("backends:\n  - name: a\n    command: x\n    timeout_ms: 90000000\n", "backends[0].timeout_ms", 4),
            ("backends:\n  - name: h\n    url: http://h/\n    concurrency: 100000\n", "backends[0].concurrency", 4),
            (
                "backends:\n  - name: h\n    url: http://h/\n    max_response_bytes: 10000000000\n",
                "backends[0].max_response_bytes",
                4,
            ),
            (
                "backends:\n  - name: h\n    url: http://h/\n    connect_timeout_ms: 90000000\n",
                "backends[0].connect_timeout_ms",
                4,
            ),
            (
                "backends:\n  - name: h\n    url: http://h/\n    read_timeout_ms: 90000000\n",
                "backends[0].read_timeout_ms",
                4,
            ),
        ];
        for (y, path, line) in cases {
            let s = Config::from_yaml(y).unwrap_err().to_string();
            assert!(s.contains(path) && s.contains(&format!("line {line}")), "{y}: {s}");
        }
        let edge =
            "router:\n  queue_capacity: 1000000\n  max_message_bytes: 1073741824\n  request_timeout_ms: 86400000\n";
        assert!(Config::from_yaml(edge).is_ok());
    }

    #[test]
    fn config_files_must_be_small_regular_files() {
        let refused = |path: std::path::PathBuf| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || tx.send(Config::from_file(&path).map(|_| ()).unwrap_err().to_string()));
            rx.recv_timeout(std::time::Duration::from_secs(5)).expect("must be refused at once, not read")
        };
        let s = refused("/dev/zero".into());
        assert!(s.contains("not a regular file"), "{s}");
        let dir = std::env::temp_dir().join(format!("mcprouter-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let s = Config::from_file(&dir).unwrap_err().to_string();
        assert!(s.contains("not a regular file"), "{s}");
        let fifo = dir.join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let s = refused(fifo);
        assert!(s.contains("not a regular file"), "{s}");
        let big = dir.join("big.yaml");
        let mut text = "router:\n  name: r\n".to_owned();
        text.push_str(&"# padding\n".repeat(500_000));
        std::fs::write(&big, text).unwrap();
        let s = Config::from_file(&big).unwrap_err().to_string();
        assert!(s.contains("limit"), "{s}");
        let ok = dir.join("ok.yaml");
        std::fs::write(&ok, "router:\n  name: r\n").unwrap();
        assert_eq!(Config::from_file(&ok).unwrap().router.name, "r");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn empty_documents_and_sections_take_defaults() {
        assert_eq!(Config::from_yaml("").unwrap().router.name, "mcprouter");
        assert_eq!(Config::from_yaml("# nothing\n").unwrap().router.queue_capacity, 256);
        assert_eq!(Config::from_yaml("router:\n").unwrap().router.page_size, 1000);
    }

    #[test]
    fn filters_deny_over_allow() {
        let f = Filter { allow: vec!["get_*".into()], deny: vec!["get_secret".into()] };
        assert!(f.admits("get_user"));
        assert!(!f.admits("get_secret"));
        assert!(!f.admits("put"));
        assert!(Filter::default().admits("anything"));
    }

    #[test]
    fn missing_variables_name_field_and_line() {
        let err = Config::from_yaml_with_env("router:\n  name: x\n  separator: ${MISSING}\n", &vars).unwrap_err();
        let s = err.to_string();
        assert!(s.contains("router.separator") && s.contains("line 3") && s.contains("MISSING"), "{s}");
    }

    #[test]
    fn pool_strategies_are_typed_and_unknown_ones_name_path_values_and_line() {
        let pools = |strategy: &str| {
            format!(
                "backends:\n  - {{name: a, command: x}}\n  - {{name: b, command: y}}\npools:\n  - name: p\n    backends: [a]\n  - name: q\n    backends: [b]\n{strategy}"
            )
        };
        let c = Config::from_yaml(&pools("    strategy: sticky\n")).unwrap();
        assert_eq!((c.pools[0].strategy, c.pools[1].strategy), (Strategy::RoundRobin, Strategy::Sticky));
        let s = Config::from_yaml(&pools("    strategy: sk-live-random\n")).unwrap_err().to_string();
        assert!(s.contains("pools[1].strategy") && s.contains("line 9") && !s.contains("sk-live"), "{s}");
        for name in Strategy::NAMES {
            assert!(s.contains(name), "{s}");
        }
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
