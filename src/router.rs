//! The `Router`: the public handle. It starts the backends and the background threads,
//! opens sessions, and reports status and metrics; the state they share is in `core.rs`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::backend::Backend;
use crate::config::Config;
use crate::core::{Core, RouterInner};
use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::metrics::{BackendFigures, Snapshot};
use crate::session::Session;

/// A running router. Cheap to clone (an `Arc`); `Send + Sync`. The backends stop when
/// [`Router::shutdown`] is called or the last clone and the last session are dropped.
#[derive(Clone)]
pub struct Router {
    pub(crate) inner: Arc<RouterInner>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").field("backends", &self.inner.core.view().value().backends.len()).finish()
    }
}

impl Router {
    /// Validates `config`, starts every backend in parallel and waits (at most the
    /// configured `init_timeout_ms`) for their handshakes. A backend that fails to start
    /// does not fail the router: it is reported by [`Router::status`] and its calls fail fast.
    pub fn new(config: Config) -> Result<Router> {
        config.validate()?;
        let (ev_tx, ev_rx) = bounded(1024);
        let hub = Arc::new(Hub::new(ev_tx));
        let backends: Vec<Arc<Backend>> = config
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| Arc::new(Backend::new(i, b.clone(), &config.router, Arc::clone(&hub))))
            .collect();
        crate::core::start_all(&backends, Duration::from_millis(config.router.init_timeout_ms));
        let health_interval = config.router.health.interval_ms;
        let core = Arc::new(Core::new(config, hub, backends));
        core.rebuild_catalog(false);
        let (stop_tx, stop_rx) = bounded(1);
        let c = Arc::clone(&core);
        let handle = std::thread::Builder::new()
            .name("mcprouter-dispatcher".into())
            .spawn(move || {
                crate::guard::keep_running("mcprouter-dispatcher", || crate::upkeep::dispatcher(&c, &ev_rx, &stop_rx))
            })
            .map_err(|e| Error::Io(format!("cannot start the dispatcher thread: {e}")))?;
        if health_interval > 0 {
            let c = Arc::clone(&core);
            let health = std::thread::Builder::new()
                .name("mcprouter-health".into())
                .stack_size(256 * 1024)
                .spawn(move || crate::guard::keep_running("mcprouter-health", || crate::upkeep::health_checks(&c)))
                .map_err(|e| Error::Io(format!("cannot start the health thread: {e}")))?;
            core.workers.lock().push(health);
        }
        Ok(Router { inner: Arc::new(RouterInner { core, dispatcher: Mutex::new(Some((stop_tx, handle))) }) })
    }

    /// Parses YAML and starts a router.
    pub fn from_yaml(text: &str) -> Result<Router> {
        Router::new(Config::from_yaml(text)?)
    }

    /// Reads a YAML file and starts a router.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Router> {
        Router::new(Config::from_file(path)?)
    }

    /// Opens a session: one MCP client. `client_id` keys sticky balancing; `None` gets a
    /// generated id.
    pub fn session(&self, client_id: Option<&str>) -> Result<Session> {
        if self.inner.core.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(Session::new(Arc::clone(&self.inner), client_id))
    }

    /// The configuration the router runs now (a reload replaces it; this is a snapshot).
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.inner.core.view().value().config)
    }

    /// Applies a new configuration without a restart; returns its generation (1 was the
    /// config the router started with). The config is validated first, with the same
    /// errors as [`Router::new`]: a bad one is refused whole and the running one keeps
    /// serving (the refusal is logged and counted). Backends whose connection settings
    /// are unchanged keep their process or connection and their state; added and changed
    /// ones are started before the switch; pools, fallbacks, filters, prefixing and limits
    /// switch at once for new calls, while calls in flight finish with the config they
    /// began with. Removed and replaced backends stop once those calls are done (at most
    /// the longest a call may take). Sessions stay open and get `list_changed` for the
    /// lists that changed. Blocks while new backends start; one reload runs at a time.
    pub fn reload(&self, config: Config) -> Result<u64> {
        self.inner.core.reload(config)
    }

    /// Parses YAML and reloads with it (see [`Router::reload`]); a parse error is refused
    /// and counted like any bad config.
    pub fn reload_from_yaml(&self, text: &str) -> Result<u64> {
        self.reload_parsed(Config::from_yaml(text))
    }

    /// Reads a YAML file and reloads with it (see [`Router::reload`]).
    pub fn reload_from_file(&self, path: impl AsRef<std::path::Path>) -> Result<u64> {
        self.reload_parsed(Config::from_file(path))
    }

    pub(crate) fn reload_parsed(&self, parsed: Result<Config>) -> Result<u64> {
        match parsed {
            Ok(c) => self.reload(c),
            Err(e) => Err(self.inner.core.reload_refused(e)),
        }
    }

    /// Waits until every change a backend announced (`list_changed`) is in the catalog, up
    /// to `timeout`; false when a refresh is still owed or running then.
    pub fn settle(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if !self.inner.core.refresh_pending() {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Every backend's state, protocol version, counts and last error, as JSON.
    pub fn status(&self) -> Value {
        let core = &self.inner.core;
        let view = core.view();
        let v = view.value();
        let catalog = v.catalog();
        let backends: Vec<Value> = v
            .backends
            .iter()
            .map(|b| {
                let info = b.info();
                let lists = b.lists.lock().clone().unwrap_or_default();
                let (tools, resources, prompts) =
                    (lists.tools.len(), lists.resources.len() + lists.templates.len(), lists.prompts.len());
                let health = b.health.lock().clone();
                let restarts = b.restarts.lock().total;
                json!({
                    "name": b.name(),
                    "transport": b.transport().as_str(),
                    "state": info.state.as_str(),
                    "protocol_version": info.facts.protocol_version,
                    "era": info.facts.protocol_version.is_some().then(|| info.facts.era.as_str()),
                    "server_info": info.facts.server_info,
                    "tools": tools,
                    "resources": resources,
                    "prompts": prompts,
                    "in_flight": b.pending.len(),
                    "queue_depth": b.queue_depth(),
                    "handshake_ms": info.facts.handshake.map(|d| d.as_secs_f64() * 1000.0),
                    "pid": info.pid,
                    "last_error": info.facts.last_error,
                    "catalog_error": b.catalog_error.lock().clone(),
                    "healthy": health.is_healthy(),
                    "consecutive_failures": health.failures(),
                    "next_probe_in_ms": health.next_probe().map(|t| t.saturating_duration_since(Instant::now()).as_millis() as u64),
                    "breaker": b.breaker.state().name(),
                    "breaker_half_open_in_flight": b.breaker.half_open_in_flight(),
                    "restarts": restarts,
                    "next_restart_in_ms": core.next_restart(b.id).map(|t| t.saturating_duration_since(Instant::now()).as_millis() as u64),
                })
            })
            .collect();
        let [t, r, u, p] = catalog.counts();
        let last_reload = core.last_reload().map(|l| {
            let at = l.at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            json!({"at_unix_ms": at, "ok": l.ok, "error": l.error})
        });
        let pools: Vec<Value> = v
            .owners
            .iter()
            .zip(&v.balancers)
            .filter_map(|(o, b)| b.as_ref().map(|b| (o, b)))
            .map(|(o, b)| {
                json!({
                    "name": o.name,
                    "strategy": b.strategy().as_str(),
                    "backends": o.members.iter().filter_map(|m| v.backends.get(*m)).map(|b| b.name()).collect::<Vec<_>>(),
                    "in_flight": b.in_flight_all(),
                })
            })
            .collect();
        json!({
            "pools": pools,
            "retry_budget": v.budget.available(),
            "config": {
                "generation": view.number(),
                "last_reload": last_reload,
                "draining_backends": core.draining_backends(),
            },
            "router": {
                "name": v.config.router.name,
                "version": env!("CARGO_PKG_VERSION"),
                "closed": core.closed.load(Ordering::Acquire),
                "sessions": core.hub.session_count(),
                "session_backends": core.session_backends(),
                // 2026-07-28 calls waiting for their clients' input, and their helper threads.
                "mrtr": {"parked": core.hub.mrtr.parked(), "helpers": core.hub.mrtr.helpers.load(Ordering::Acquire)},
                "uptime_ms": core.started.elapsed().as_millis() as u64,
                "catalog": {
                    "tools": t, "resources": r, "resource_templates": u, "prompts": p,
                    "warnings": catalog.warnings(),
                    "refresh_pending": core.refresh_pending(),
                },
            },
            "backends": backends,
            "limits": v.limits.status(Instant::now()),
        })
    }

    /// Prometheus text exposition (format 0.0.4) of the router's metrics. Label values
    /// from untrusted input are bounded: unknown methods are `other`, tool names only those
    /// in the catalog (capped).
    pub fn metrics(&self) -> String {
        let core = &self.inner.core;
        let view = core.view();
        let v = view.value();
        // Figures by metrics slot (a backend name's place among every name configured so
        // far); a slot with no backend in the current view shows no gauges.
        let slots = core.metrics.backend_count();
        let mut backends = vec![BackendFigures::default(); slots];
        let mut absent: Vec<usize> = (0..slots).collect();
        for b in &v.backends {
            let slot = core.metrics.slot_for(b.name());
            absent.retain(|s| *s != slot);
            let fig = BackendFigures {
                up: b.is_ready(),
                in_flight: b.pending.len(),
                queue_depth: b.queue_depth(),
                breaker: match b.breaker.state() {
                    crate::breaker::BreakerState::Closed => 0,
                    crate::breaker::BreakerState::Open { .. } => 1,
                    crate::breaker::BreakerState::HalfOpen { .. } => 2,
                },
                restarts: b.restarts.lock().total,
                modern: b.era() == crate::era::Era::Modern,
            };
            if let Some(f) = backends.get_mut(slot) {
                *f = fig;
            }
        }
        let snap = Snapshot {
            backends,
            catalog_items: v.catalog().counts(),
            sessions: core.hub.session_count(),
            absent,
            generation: view.number(),
            access: crate::policy::access_figures(v),
        };
        core.metrics.render(&snap)
    }

    /// Stops the router: sessions get [`Error::Closed`], each child's stdin is closed, and
    /// after `grace` it is terminated, then killed; every thread is joined. Idempotent.
    pub fn shutdown(&self, grace: Duration) {
        crate::core::shutdown(&self.inner.core, &self.inner.dispatcher, grace);
    }

    /// Whether [`Router::shutdown`] has run.
    pub fn is_closed(&self) -> bool {
        self.inner.core.closed.load(Ordering::Acquire)
    }
}
