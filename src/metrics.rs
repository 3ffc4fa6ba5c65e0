//! Prometheus metrics for the router, rendered by hand in the text
//! exposition format 0.0.4.
//!
//! Why no client library: the set of series is small and fixed, and writing
//! it ourselves lets every label dimension be bounded by construction
//! (lesson 5 in docs/lessons.md: no untrusted string ever becomes a label without a bound).
//!
//! Cardinality bounds, dimension by dimension:
//! - `method`: a closed list of MCP methods; everything else is `other`.
//! - `backend`: the configured backends (trusted, from config) plus
//!   [`NO_BACKEND_LABEL`] for requests the router answered itself.
//! - `outcome`, `kind`: closed enums.
//! - `tool`: only names registered with [`Metrics::set_known_tools`],
//!   at most [`MAX_TOOL_LABELS`] of them, each at most [`MAX_TOOL_NAME_LEN`]
//!   bytes; everything else is `other`.
//!
//! Recording is lock-free (atomics in flat arrays indexed by position, allocated at a
//! backend's first request) except for `tool_call`, which takes a read lock on the tool
//! table; nothing else on the recording path allocates.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::RwLock;

use crate::method::Method;

/// Every MCP method that gets its own `method` label value, in render order: the method
/// table ([`Method::ALL`]), whose last entry, `other`, absorbs every other name.
const METHODS: [Method; Method::ALL.len()] = Method::ALL;

fn method_index(method: &str) -> usize {
    Method::parse(method).index()
}

/// The `method` label value for a JSON-RPC method name: known MCP methods map
/// to themselves, anything else (including client-invented methods, typos
/// and garbage) maps to `"other"`, so a hostile client cannot create series.
pub fn method_label(method: &str) -> &'static str {
    Method::parse(method).as_str()
}

/// Label value used for the `backend` label when a request was not sent to
/// any backend (answered by the router itself, or rejected before routing).
/// Empty so it can never collide with a configured (non-empty) backend name.
pub const NO_BACKEND_LABEL: &str = "";

/// Maximum number of distinct `tool` label values (active plus retired).
pub const MAX_TOOL_LABELS: usize = 1000;

/// Tool names longer than this (bytes) are never labels: they count as
/// `other`. MCP recommends tool names of at most 128 characters; anything
/// longer is suspicious and would bloat every scrape.
pub const MAX_TOOL_NAME_LEN: usize = 128;

/// How a request ended, as seen by the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A result was returned.
    Ok,
    /// A JSON-RPC error was returned (by the backend or the router).
    Error,
    /// The backend did not answer in time.
    Timeout,
    /// Rejected because a queue or concurrency limit was full.
    Overload,
    /// No healthy backend could take the request (down, breaker open).
    Unavailable,
}

impl Outcome {
    /// All outcomes in render order.
    pub const ALL: [Outcome; 5] =
        [Outcome::Ok, Outcome::Error, Outcome::Timeout, Outcome::Overload, Outcome::Unavailable];

    /// The `outcome` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
            Outcome::Overload => "overload",
            Outcome::Unavailable => "unavailable",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

const OUTCOMES: usize = Outcome::ALL.len();

/// The figures metrics show but do not own, read by the router when it renders: each has
/// one owner elsewhere (a backend's phase, queue, breaker, pending map and supervisor; the
/// catalog; the hub), so no figure is counted twice or pushed in just before rendering.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// One entry per configured backend, in config order.
    pub backends: Vec<BackendFigures>,
    /// Items in the merged catalog: tools, resources, resource templates, prompts.
    pub catalog_items: [usize; 4],
    /// Open client sessions.
    pub sessions: usize,
    /// Slots whose backend a reload removed: no gauges for them.
    pub absent: Vec<usize>,
    /// The running config's generation (1 at start).
    pub generation: u64,
    /// Calls the policy denied and limits refused, labelled by configured names only.
    pub access: AccessFigures,
}

/// Denials and limit hits, read from the policy and the limits (their owners) when
/// rendered. Labels are configured client and backend (or pool) names, `""` for a client
/// id that names no configured client and for a call refused before its backend was known.
#[derive(Debug, Clone, Default)]
pub struct AccessFigures {
    /// (client, backend, count), non-zero only.
    pub denials: Vec<(String, String, u64)>,
    /// (client, backend, limit, count), non-zero only.
    pub limit_hits: Vec<(String, String, &'static str, u64)>,
}

/// One backend's figures in a [`Snapshot`].
#[derive(Debug, Clone, Copy, Default)]
pub struct BackendFigures {
    /// Ready to take calls.
    pub up: bool,
    /// Calls in flight (sent or queued, not answered yet).
    pub in_flight: usize,
    /// Messages waiting in its transport's queue.
    pub queue_depth: usize,
    /// 0 closed, 1 open, 2 half-open.
    pub breaker: u8,
    /// Times the router started it again after it went down.
    pub restarts: u64,
    /// It speaks the modern (2026-07-28) era, as its last handshake found.
    pub modern: bool,
}

/// The `kind` label values of `mcprouter_catalog_items`, in [`Snapshot::catalog_items`] order.
const CATALOG_KINDS: [&str; 4] = ["tools", "resources", "templates", "prompts"];

/// Upper bounds of the latency histogram buckets, in nanoseconds, so that
/// observing a `Duration` needs no float math.
const BUCKET_NANOS: [u64; 15] = [
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
];

/// The same bounds as `le` label values, spelled once so rendering does not
/// format floats (and cannot drift from `BUCKET_NANOS`).
const BUCKET_LE: [&str; 15] =
    ["0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30"];

/// Per-histogram slots: one per finite bucket plus one for "above the last
/// bound". Counts are stored per bucket (not cumulative) so one observation
/// is one atomic add; render accumulates.
const HIST_SLOTS: usize = BUCKET_NANOS.len() + 1;

/// Counts for one registered tool, one per outcome.
struct ToolCounts([AtomicU64; OUTCOMES]);

impl ToolCounts {
    fn zero() -> Self {
        ToolCounts(std::array::from_fn(|_| AtomicU64::new(0)))
    }

    fn total(&self) -> u64 {
        self.0.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

struct ToolEntry {
    /// Calls with this name count here only while it is in the current
    /// catalog; a retired entry is kept (so its counter does not reset if
    /// the tool comes back) but new calls go to `other`.
    active: bool,
    counts: ToolCounts,
}

/// The bounded tool label table. Keys are the raw tool names; escaping
/// happens at render time.
#[derive(Default)]
struct ToolTable {
    entries: HashMap<String, ToolEntry>,
}

/// One backend label's request counters, allocated by its first request (an idle backend
/// holds none of their ~6 KiB), plus its overload rejections.
struct Series {
    counts: OnceLock<Box<Counts>>,
    overload_rejections: AtomicU64,
}

/// `[method][outcome]`, `[method][bucket]` (not cumulative) and `[method]` total nanoseconds.
struct Counts {
    requests: Vec<AtomicU64>,
    hist_buckets: Vec<AtomicU64>,
    hist_sum_nanos: Vec<AtomicU64>,
}

impl Series {
    fn zero() -> Series {
        Series { counts: OnceLock::new(), overload_rejections: AtomicU64::new(0) }
    }

    fn counts(&self) -> &Counts {
        self.counts.get_or_init(|| {
            Box::new(Counts {
                requests: zeroed(METHODS.len() * OUTCOMES, || AtomicU64::new(0)),
                hist_buckets: zeroed(METHODS.len() * HIST_SLOTS, || AtomicU64::new(0)),
                hist_sum_nanos: zeroed(METHODS.len(), || AtomicU64::new(0)),
            })
        })
    }
}

/// A backend label: its escaped name and its counters.
struct Slot {
    label: String,
    name: String,
    series: Arc<Series>,
}

/// All router metrics. Share it behind an `Arc`; every method takes `&self`
/// and is safe to call concurrently.
pub struct Metrics {
    /// One slot per backend name ever configured, in the order first seen; never shrinks,
    /// so a backend removed by a reload keeps its counters and one added later by the
    /// same name continues them (counters never go back). Read-locked to record.
    slots: RwLock<Vec<Slot>>,
    /// Requests the router answered itself (`backend=""`).
    none: Series,

    tools: RwLock<ToolTable>,
    /// Tool calls that did not match an active registered tool.
    tool_other: ToolCounts,

    fallbacks: AtomicU64,
    retries: AtomicU64,
    panics: AtomicU64,
    /// Reloads applied and refused.
    reloads: [AtomicU64; 2],
}

fn zeroed<T>(n: usize, f: impl Fn() -> T) -> Vec<T> {
    (0..n).map(|_| f()).collect()
}

impl Metrics {
    /// Creates the metric set for the configured backends. Backend `i` in
    /// every other call refers to `backends[i]` (its slot), until a reload registers
    /// more with [`Metrics::slot_for`].
    ///
    /// Backend names come from trusted configuration; they must be unique
    /// and non-empty (the config loader is expected to enforce this), or the
    /// exposition would contain duplicate series.
    pub fn new(backends: &[String]) -> Self {
        let m = Metrics {
            slots: RwLock::new(Vec::new()),
            none: Series::zero(),
            tools: RwLock::new(ToolTable::default()),
            tool_other: ToolCounts::zero(),
            fallbacks: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            panics: AtomicU64::new(0),
            reloads: [AtomicU64::new(0), AtomicU64::new(0)],
        };
        for b in backends {
            m.slot_for(b);
        }
        m
    }

    /// The slot of backend `name`, registered if it is new. The number of slots is bounded
    /// by the configs an operator loads, never by traffic.
    pub fn slot_for(&self, name: &str) -> usize {
        if let Some(i) = self.slots.read().iter().position(|s| s.name == name) {
            return i;
        }
        let mut slots = self.slots.write();
        if let Some(i) = slots.iter().position(|s| s.name == name) {
            return i;
        }
        slots.push(Slot { label: escape_label(name), name: name.to_owned(), series: Arc::new(Series::zero()) });
        slots.len() - 1
    }

    /// Number of backend slots (configured now or before a reload).
    pub fn backend_count(&self) -> usize {
        self.slots.read().len()
    }

    /// The counters of `backend`'s slot. An out-of-range slot is recorded as "no backend"
    /// rather than dropped or panicking: losing a request count would be worse than
    /// misattributing it, and a metrics call must never take the router down.
    fn series(&self, backend: Option<usize>) -> Option<Arc<Series>> {
        backend.and_then(|b| self.slots.read().get(b).map(|s| Arc::clone(&s.series)))
    }

    /// Records one finished request: increments
    /// `mcprouter_requests_total{method,backend,outcome}` and observes its
    /// latency in `mcprouter_request_duration_seconds{method,backend}`.
    /// `backend` (a slot) is `None` when no backend was involved.
    pub fn request(&self, method: &str, backend: Option<usize>, outcome: Outcome, duration: Duration) {
        let held = self.series(backend);
        let s = held.as_deref().unwrap_or(&self.none).counts();
        let m = method_index(method);
        if let Some(c) = s.requests.get(m * OUTCOMES + outcome.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        // Saturate instead of wrapping: a u64 of nanoseconds is 584 years.
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        // `le` is inclusive: a value equal to a bound belongs in that bucket.
        let bucket = BUCKET_NANOS.partition_point(|&b| b < nanos);
        if let Some(c) = s.hist_buckets.get(m * HIST_SLOTS + bucket) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(c) = s.hist_sum_nanos.get(m) {
            c.fetch_add(nanos, Ordering::Relaxed);
        }
    }

    /// Records one `tools/call` in `mcprouter_tool_calls_total{tool,outcome}`.
    /// `tool` becomes the label only if it is an active registered tool
    /// (see [`Metrics::set_known_tools`]); otherwise it counts as `other`.
    pub fn tool_call(&self, tool: &str, outcome: Outcome) {
        let i = outcome.index();
        {
            let table = self.tools.read();
            // (No let-chain here: the crate's MSRV is 1.85.)
            if let Some(e) = table.entries.get(tool).filter(|e| e.active) {
                if let Some(c) = e.counts.0.get(i) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
        }
        if let Some(c) = self.tool_other.0.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Replaces the set of tool names allowed as `tool` label values; call it
    /// on every catalog rebuild. The first [`MAX_TOOL_LABELS`] distinct
    /// names (in iteration order) become active; the rest, names longer than
    /// [`MAX_TOOL_NAME_LEN`], and the literal name `other` (which would
    /// collide with the catch-all series) are counted as `other`.
    ///
    /// Tools that drop out of the catalog keep their counters while there is
    /// room under the cap, so a backend restart does not reset them; when
    /// room runs out, the retired tools with the fewest calls go first.
    pub fn set_known_tools(&self, tools: impl IntoIterator<Item = String>) {
        // Collect the new active set before taking the lock, so the write
        // lock (which blocks `tool_call`) is held only for the swap.
        let mut active: Vec<String> = Vec::new();
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
        for name in tools {
            if active.len() >= MAX_TOOL_LABELS {
                break;
            }
            if name.is_empty() || name.len() > MAX_TOOL_NAME_LEN || name == "other" {
                continue;
            }
            if seen.insert(name.clone()) {
                active.push(name);
            }
        }

        let mut table = self.tools.write();
        let mut old = std::mem::take(&mut table.entries);
        // Sized for what it holds, not the cap: ~150 KiB for a thousand, mostly unused.
        let mut entries: HashMap<String, ToolEntry> = HashMap::with_capacity(active.len());
        for name in active {
            let counts = old.remove(&name).map(|e| e.counts).unwrap_or_else(ToolCounts::zero);
            entries.insert(name, ToolEntry { active: true, counts });
        }
        let room = MAX_TOOL_LABELS.saturating_sub(entries.len());
        if room > 0 {
            let mut retired: Vec<(String, ToolEntry)> = old.into_iter().filter(|(_, e)| e.counts.total() > 0).collect();
            // Most-used first, then by name so the choice is deterministic.
            retired.sort_by(|a, b| b.1.counts.total().cmp(&a.1.counts.total()).then_with(|| a.0.cmp(&b.0)));
            for (name, mut e) in retired.into_iter().take(room) {
                e.active = false;
                entries.insert(name, e);
            }
        }
        table.entries = entries;
    }

    /// Increments `mcprouter_overload_rejections_total{backend}` (a slot).
    pub fn overload(&self, backend: usize) {
        if let Some(s) = self.series(Some(backend)) {
            s.overload_rejections.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a reload in `mcprouter_reloads_total{outcome}`: applied, or refused (the
    /// old config kept serving).
    pub fn reload(&self, applied: bool) {
        self.reloads[usize::from(!applied)].fetch_add(1, Ordering::Relaxed);
    }

    /// Increments `mcprouter_fallbacks_total`.
    pub fn fallback(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    /// Increments `mcprouter_internal_errors_total`: a panic caught on a router thread or
    /// on a caller's path.
    pub fn internal_error(&self) {
        self.panics.fetch_add(1, Ordering::Relaxed);
    }

    /// Increments `mcprouter_retries_total`.
    pub fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Renders every metric in the Prometheus text exposition format 0.0.4
    /// (`Content-Type: text/plain; version=0.0.4`). Output order is fixed:
    /// families in a constant order, series by method list order, backend
    /// index, outcome order, and tool name. Request and tool-call series
    /// that were never incremented are omitted (they would be mostly zeros);
    /// per-backend gauges and counters are always present.
    pub fn render(&self, snap: &Snapshot) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Labels and counters are read once: a reload registering a slot meanwhile shows
        // up in the next scrape.
        let slots: Vec<(String, Arc<Series>)> =
            self.slots.read().iter().map(|s| (s.label.clone(), Arc::clone(&s.series))).collect();
        let none = (escape_label(NO_BACKEND_LABEL), &self.none);
        // A label that never had a request has no counters, and nothing to show.
        let all: Vec<(&str, &Counts)> = slots
            .iter()
            .map(|(l, s)| (l.as_str(), &**s))
            .chain([(none.0.as_str(), none.1)])
            .filter_map(|(l, s)| Some((l, &**s.counts.get()?)))
            .collect();

        // `write!` into a String cannot fail; the results are ignored
        // rather than unwrapped so this path has no panic sites.
        header(
            &mut out,
            "mcprouter_requests_total",
            "counter",
            "Requests handled, by MCP method, backend and outcome.",
        );
        for (m, method) in METHODS.iter().enumerate() {
            for (backend, s) in &all {
                for o in Outcome::ALL {
                    let v = load(&s.requests, m * OUTCOMES + o.index());
                    if v > 0 {
                        let _ = writeln!(
                            out,
                            "mcprouter_requests_total{{method=\"{method}\",backend=\"{backend}\",outcome=\"{}\"}} {v}",
                            o.as_str()
                        );
                    }
                }
            }
        }

        header(
            &mut out,
            "mcprouter_request_duration_seconds",
            "histogram",
            "Request latency in seconds, by MCP method and backend.",
        );
        for (m, method) in METHODS.iter().enumerate() {
            for (backend, s) in &all {
                // Snapshot the buckets once so the cumulative counts, the
                // +Inf bucket and _count agree within one scrape even while
                // other threads keep recording.
                let mut buckets = [0u64; HIST_SLOTS];
                for (i, v) in buckets.iter_mut().enumerate() {
                    *v = load(&s.hist_buckets, m * HIST_SLOTS + i);
                }
                let count: u64 = buckets.iter().sum();
                if count == 0 {
                    continue;
                }
                let mut cumulative = 0u64;
                for (i, le) in BUCKET_LE.iter().enumerate() {
                    cumulative += buckets.get(i).copied().unwrap_or(0);
                    let _ = writeln!(
                        out,
                        "mcprouter_request_duration_seconds_bucket{{method=\"{method}\",backend=\"{backend}\",le=\"{le}\"}} {cumulative}"
                    );
                }
                let _ = writeln!(
                    out,
                    "mcprouter_request_duration_seconds_bucket{{method=\"{method}\",backend=\"{backend}\",le=\"+Inf\"}} {count}"
                );
                let sum = load(&s.hist_sum_nanos, m);
                // Exact decimal seconds from integer nanoseconds: no float
                // rounding, no exponent notation.
                let _ = writeln!(
                    out,
                    "mcprouter_request_duration_seconds_sum{{method=\"{method}\",backend=\"{backend}\"}} {}.{:09}",
                    sum / 1_000_000_000,
                    sum % 1_000_000_000
                );
                let _ = writeln!(
                    out,
                    "mcprouter_request_duration_seconds_count{{method=\"{method}\",backend=\"{backend}\"}} {count}"
                );
            }
        }

        header(
            &mut out,
            "mcprouter_tool_calls_total",
            "counter",
            "tools/call requests, by tool and outcome; unregistered tools count as \"other\".",
        );
        {
            let table = self.tools.read();
            let mut names: Vec<(&String, &ToolEntry)> = table.entries.iter().collect();
            names.sort_by(|a, b| a.0.cmp(b.0));
            for (name, entry) in names {
                let escaped = escape_label(name);
                write_tool_counts(&mut out, &escaped, &entry.counts);
            }
        }
        write_tool_counts(&mut out, "other", &self.tool_other);

        let fig = |b: usize| snap.backends.get(b).copied().unwrap_or_default();
        // Gauges only for backends configured now: a slot a reload removed keeps its
        // request counters but has no state to show.
        let configured: Vec<(usize, &str)> = slots
            .iter()
            .enumerate()
            .filter(|(b, _)| !snap.absent.contains(b))
            .map(|(b, (l, _))| (b, l.as_str()))
            .collect();
        header(&mut out, "mcprouter_in_flight", "gauge", "Requests currently in flight, by backend.");
        for &(b, backend) in &configured {
            let _ = writeln!(out, "mcprouter_in_flight{{backend=\"{backend}\"}} {}", fig(b).in_flight);
        }

        header(&mut out, "mcprouter_backend_up", "gauge", "1 if the backend is up, 0 otherwise.");
        for &(b, backend) in &configured {
            let _ = writeln!(out, "mcprouter_backend_up{{backend=\"{backend}\"}} {}", u8::from(fig(b).up));
        }

        header(&mut out, "mcprouter_backend_modern", "gauge", "1 if the backend speaks the 2026-07-28 era, 0 legacy.");
        for &(b, backend) in &configured {
            let _ = writeln!(out, "mcprouter_backend_modern{{backend=\"{backend}\"}} {}", u8::from(fig(b).modern));
        }

        header(&mut out, "mcprouter_breaker_state", "gauge", "Circuit breaker state: 0 closed, 1 open, 2 half-open.");
        for &(b, backend) in &configured {
            let _ = writeln!(out, "mcprouter_breaker_state{{backend=\"{backend}\"}} {}", fig(b).breaker);
        }

        header(
            &mut out,
            "mcprouter_backend_restarts_total",
            "counter",
            "Times a backend was started again after it went down.",
        );
        for &(b, backend) in &configured {
            let _ = writeln!(out, "mcprouter_backend_restarts_total{{backend=\"{backend}\"}} {}", fig(b).restarts);
        }

        header(&mut out, "mcprouter_queue_depth", "gauge", "Requests waiting for a backend slot, by backend.");
        for &(b, backend) in &configured {
            let _ = writeln!(out, "mcprouter_queue_depth{{backend=\"{backend}\"}} {}", fig(b).queue_depth);
        }

        header(
            &mut out,
            "mcprouter_overload_rejections_total",
            "counter",
            "Requests rejected because a backend queue was full.",
        );
        for &(b, backend) in &configured {
            let _ = writeln!(
                out,
                "mcprouter_overload_rejections_total{{backend=\"{backend}\"}} {}",
                slots.get(b).map_or(0, |(_, s)| s.overload_rejections.load(Ordering::Relaxed))
            );
        }

        header(&mut out, "mcprouter_catalog_items", "gauge", "Items in the aggregated catalogs, by kind.");
        for (kind, n) in CATALOG_KINDS.iter().zip(snap.catalog_items) {
            let _ = writeln!(out, "mcprouter_catalog_items{{kind=\"{kind}\"}} {n}");
        }

        header(&mut out, "mcprouter_fallbacks_total", "counter", "Requests served by a fallback backend.");
        let _ = writeln!(out, "mcprouter_fallbacks_total {}", self.fallbacks.load(Ordering::Relaxed));

        header(&mut out, "mcprouter_retries_total", "counter", "Request retries.");
        let _ = writeln!(out, "mcprouter_retries_total {}", self.retries.load(Ordering::Relaxed));
        header(&mut out, "mcprouter_internal_errors_total", "counter", "Panics caught inside the router (bugs).");
        let _ = writeln!(out, "mcprouter_internal_errors_total {}", self.panics.load(Ordering::Relaxed));

        header(&mut out, "mcprouter_sessions", "gauge", "Open client sessions.");
        let _ = writeln!(out, "mcprouter_sessions {}", snap.sessions);

        header(
            &mut out,
            "mcprouter_config_generation",
            "gauge",
            "The running config: 1 at start, one more per applied reload.",
        );
        let _ = writeln!(out, "mcprouter_config_generation {}", snap.generation);
        header(
            &mut out,
            "mcprouter_reloads_total",
            "counter",
            "Reloads, by outcome: applied, or refused (the old config kept serving).",
        );
        for (i, outcome) in ["ok", "error"].iter().enumerate() {
            let _ = writeln!(
                out,
                "mcprouter_reloads_total{{outcome=\"{outcome}\"}} {}",
                self.reloads[i].load(Ordering::Relaxed)
            );
        }
        header(
            &mut out,
            "mcprouter_policy_denials_total",
            "counter",
            "Calls the access policy refused, by configured client and backend (\"\" = unknown).",
        );
        for (client, backend, n) in &snap.access.denials {
            let (c, b) = (escape_label(client), escape_label(backend));
            let _ = writeln!(out, "mcprouter_policy_denials_total{{client=\"{c}\",backend=\"{b}\"}} {n}");
        }
        header(
            &mut out,
            "mcprouter_limit_hits_total",
            "counter",
            "Calls a rate limit, concurrency cap or quota refused, by client, backend and limit.",
        );
        for (client, backend, limit, n) in &snap.access.limit_hits {
            let (c, b) = (escape_label(client), escape_label(backend));
            let _ = writeln!(out, "mcprouter_limit_hits_total{{client=\"{c}\",backend=\"{b}\",limit=\"{limit}\"}} {n}");
        }

        out
    }

    /// Number of sample lines `render` would produce right now. Meant for
    /// tests and self-monitoring of cardinality.
    pub fn series_count(&self, snap: &Snapshot) -> usize {
        self.render(snap).lines().filter(|l| !l.is_empty() && !l.starts_with('#')).count()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The full state is in `render()`; Debug stays short for logs.
        f.debug_struct("Metrics").field("backends", &self.backend_count()).finish_non_exhaustive()
    }
}

fn load(v: &[AtomicU64], i: usize) -> u64 {
    v.get(i).map_or(0, |c| c.load(Ordering::Relaxed))
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    // HELP text escaping is `\\` and `\n` only; our help strings are
    // constants, but escape anyway so an edit can't break the format.
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    for ch in help.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('\n');
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn write_tool_counts(out: &mut String, escaped_tool: &str, counts: &ToolCounts) {
    for o in Outcome::ALL {
        let v = counts.0.get(o.index()).map_or(0, |c| c.load(Ordering::Relaxed));
        if v > 0 {
            let _ =
                writeln!(out, "mcprouter_tool_calls_total{{tool=\"{escaped_tool}\",outcome=\"{}\"}} {v}", o.as_str());
        }
    }
}

/// Escapes a label value per the exposition format: backslash, double quote
/// and line feed are the only characters that need it.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for ch in v.chars() {
        match ch {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_are_closed() {
        assert_eq!(method_label("tools/call"), "tools/call");
        assert_eq!(method_label("notifications/progress"), "notifications/progress");
        assert_eq!(method_label("tools/Call"), "other");
        assert_eq!(method_label(""), "other");
        for (i, m) in METHODS.iter().enumerate() {
            if *m != Method::Other {
                assert_eq!(method_index(m.as_str()), i, "{m}");
            }
        }
        let mut names: Vec<&str> = METHODS.iter().map(|m| m.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), METHODS.len());
    }

    #[test]
    fn bucket_boundaries_are_inclusive() {
        let m = Metrics::new(&["a".to_string()]);
        m.request("ping", Some(0), Outcome::Ok, Duration::from_micros(500));
        m.request("ping", Some(0), Outcome::Ok, Duration::from_secs(31));
        let r = m.render(&Snapshot::default());
        assert!(
            r.contains("mcprouter_request_duration_seconds_bucket{method=\"ping\",backend=\"a\",le=\"0.0005\"} 1\n"),
            "{r}"
        );
        assert!(r.contains("le=\"30\"} 1\n"), "{r}");
        assert!(r.contains("le=\"+Inf\"} 2\n"), "{r}");
        assert!(
            r.contains("mcprouter_request_duration_seconds_sum{method=\"ping\",backend=\"a\"} 31.000500000\n"),
            "{r}"
        );
        assert_eq!(BUCKET_NANOS.len(), BUCKET_LE.len());
        for (n, le) in BUCKET_NANOS.iter().zip(BUCKET_LE) {
            let parsed: f64 = le.parse().unwrap_or(f64::NAN);
            assert!(((*n as f64) / 1e9 - parsed).abs() < 1e-12, "{le}");
        }
    }

    #[test]
    fn out_of_range_backend_never_panics() {
        let m = Metrics::new(&[]);
        m.request("ping", Some(7), Outcome::Ok, Duration::ZERO);
        // A snapshot with more backends than configured shows only the configured ones.
        let snap =
            Snapshot { backends: vec![BackendFigures { up: true, ..Default::default() }; 4], ..Default::default() };
        assert!(!m.render(&snap).contains("backend_up{"));
        assert!(m.render(&snap).contains("mcprouter_requests_total{method=\"ping\",backend=\"\",outcome=\"ok\"} 1"));
    }

    #[test]
    fn retired_tools_keep_counts_but_stop_matching() {
        let m = Metrics::new(&[]);
        m.set_known_tools(["a".to_string(), "b".to_string(), "other".to_string()]);
        m.tool_call("a", Outcome::Ok);
        m.tool_call("other", Outcome::Ok);
        m.set_known_tools(["b".to_string()]);
        m.tool_call("a", Outcome::Ok);
        let r = m.render(&Snapshot::default());
        assert!(r.contains("mcprouter_tool_calls_total{tool=\"a\",outcome=\"ok\"} 1\n"), "{r}");
        assert!(r.contains("mcprouter_tool_calls_total{tool=\"other\",outcome=\"ok\"} 2\n"), "{r}");
        m.set_known_tools(["a".to_string()]);
        m.tool_call("a", Outcome::Error);
        let r = m.render(&Snapshot::default());
        assert!(r.contains("mcprouter_tool_calls_total{tool=\"a\",outcome=\"error\"} 1\n"), "{r}");
        assert!(r.contains("mcprouter_tool_calls_total{tool=\"a\",outcome=\"ok\"} 1\n"), "{r}");
    }

    #[test]
    fn tool_cap_holds() {
        let m = Metrics::new(&[]);
        m.set_known_tools((0..5000).map(|i| format!("t{i}")));
        m.tool_call("t999", Outcome::Ok);
        m.tool_call("t1000", Outcome::Ok);
        m.tool_call(&"x".repeat(MAX_TOOL_NAME_LEN + 1), Outcome::Ok);
        let r = m.render(&Snapshot::default());
        assert!(r.contains("tool=\"t999\""));
        assert!(!r.contains("tool=\"t1000\""));
        assert!(r.contains("mcprouter_tool_calls_total{tool=\"other\",outcome=\"ok\"} 2\n"), "{r}");
        assert!(m.tools.read().entries.len() <= MAX_TOOL_LABELS);
    }

    #[test]
    fn backend_figures_come_from_the_snapshot() {
        let m = Metrics::new(&["a".to_string()]);
        let snap = |n| Snapshot {
            backends: vec![BackendFigures { in_flight: n, ..Default::default() }],
            ..Default::default()
        };
        assert!(m.render(&snap(1)).contains("mcprouter_in_flight{backend=\"a\"} 1\n"));
        assert!(m.render(&snap(0)).contains("mcprouter_in_flight{backend=\"a\"} 0\n"));
        assert!(m.render(&Snapshot::default()).contains("mcprouter_in_flight{backend=\"a\"} 0\n"), "missing = zero");
    }

    #[test]
    fn metrics_are_shareable_across_threads() {
        fn check<T: Send + Sync>() {}
        check::<Metrics>();
    }

    #[test]
    fn label_escaping() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
