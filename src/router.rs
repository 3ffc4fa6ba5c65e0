//! The `Router`: owns the backends, the catalog and the dispatcher thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, never, select, tick};
use parking_lot::{Mutex, RwLock};
use serde_json::{Value, json};

use crate::backend::{Backend, State};
use crate::balance::{Balancer, SharedBalancer};
use crate::budget::RetryBudget;
use crate::catalog::{Catalog, Kind, Lists, Owner};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::hub::{Event, Hub};
use crate::metrics::{CatalogKind, Metrics};
use crate::session::Session;

/// What the dispatcher thread, the sessions and the public handle share.
pub(crate) struct Core {
    pub config: Config,
    pub hub: Arc<Hub>,
    pub backends: Vec<Arc<Backend>>,
    /// Plain backends and pools, in config order: what catalog items belong to.
    pub owners: Vec<Owner>,
    /// One balancer per owner that is a pool.
    pub balancers: Vec<Option<SharedBalancer>>,
    pub budget: RetryBudget,
    catalog: RwLock<Arc<Catalog>>,
    /// Backends waiting to be restarted, and when.
    restart_due: Mutex<Vec<(usize, Instant)>>,
    /// Restart, refresh and health threads, joined at shutdown.
    workers: Mutex<Vec<JoinHandle<()>>>,
    /// Per backend: whether a catalog refresh thread runs, and whether another was asked for
    /// meanwhile.
    refreshing: Vec<Mutex<Refresh>>,
    /// Serializes rebuilds, so a slow one cannot swap in a catalog older than the last.
    rebuilding: Mutex<()>,
    pub closed: AtomicBool,
    pub metrics: Metrics,
    started: Instant,
}

impl Core {
    /// The current catalog; callers hold it only for the duration of one lookup or page.
    pub(crate) fn catalog(&self) -> Arc<Catalog> {
        Arc::clone(&self.catalog.read())
    }

    pub(crate) fn next_restart(&self, backend: usize) -> Option<Instant> {
        self.restart_due.lock().iter().find(|(b, _)| *b == backend).map(|(_, t)| *t)
    }

    /// A backend went down (or failed to come up): schedule its restart with backoff.
    fn schedule_restart(&self, i: usize) {
        let Some(b) = self.backends.get(i) else { return };
        if self.closed.load(Ordering::Acquire) || b.is_ready() || self.next_restart(i).is_some() {
            return;
        }
        let now = Instant::now();
        let seed = now.duration_since(self.started).as_nanos() as u64 ^ (i as u64).rotate_left(32);
        let policy = &self.config.router.restart;
        // A network server that is away is not a crash loop (issue #11): keep probing it.
        let may_loop = !b.transport().is_network();
        let delay = b.restarts.lock().next_delay_for(policy, now, crate::supervisor::jitter(seed), may_loop);
        if let Some(d) = delay {
            log::info!(target: "mcprouter", "[{}] restart in {} ms", b.name(), d.as_millis());
            self.restart_due.lock().push((i, now + d));
        }
    }

    /// Starts the restarts that are due, each on its own thread so a slow handshake does
    /// not hold up the dispatcher.
    fn run_due_restarts(self: &Arc<Self>) {
        let now = Instant::now();
        let due: Vec<usize> = {
            let mut q = self.restart_due.lock();
            let due = q.iter().filter(|(_, t)| *t <= now).map(|(b, _)| *b).collect();
            q.retain(|(_, t)| *t > now);
            due
        };
        let mut workers = self.workers.lock();
        workers.retain(|h| !h.is_finished());
        for i in due {
            let core = Arc::clone(self);
            let name = format!("mcprouter-restart-{}", self.backends[i].name());
            let spawned = std::thread::Builder::new().name(name).stack_size(256 * 1024).spawn(move || {
                let b = &core.backends[i];
                let init = Duration::from_millis(core.config.router.init_timeout_ms);
                if b.restart(init) {
                    core.metrics.restart(i);
                    core.rebuild_catalog(true);
                } else {
                    core.hub.backend_down(i);
                }
            });
            match spawned {
                Ok(h) => workers.push(h),
                Err(e) => log::error!(target: "mcprouter", "cannot start a restart thread: {e}"),
            }
        }
    }

    /// Turns the `list_changed` counted on each backend into at most one refresh request.
    /// The refresh is requested before the asks are marked seen, so `refresh_pending`
    /// never sees a moment where neither shows.
    fn take_refresh_asks(self: &Arc<Self>) {
        for (i, b) in self.backends.iter().enumerate() {
            let asked = b.refresh_asked.load(Ordering::Acquire);
            if asked != b.refresh_seen.load(Ordering::Acquire) {
                self.request_refresh(i);
                b.refresh_seen.store(asked, Ordering::Release);
            }
        }
    }

    /// Whether a backend has announced a change that its catalog does not reflect yet.
    fn refresh_pending(&self) -> bool {
        self.backends.iter().zip(&self.refreshing).any(|(b, slot)| {
            b.refresh_asked.load(Ordering::Acquire) != b.refresh_seen.load(Ordering::Acquire)
                || *slot.lock() != Refresh::Idle
        })
    }

    /// Asks for backend `i`'s lists to be fetched again, on a thread of its own: a backend
    /// that never answers its lists then holds up nothing but its own refresh. At most one
    /// runs per backend; asking while it runs makes it go round once more.
    fn request_refresh(self: &Arc<Self>, i: usize) {
        let Some(b) = self.backends.get(i) else { return };
        let Some(slot) = self.refreshing.get(i) else { return };
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        {
            let mut st = slot.lock();
            match *st {
                Refresh::Idle => *st = Refresh::Running,
                Refresh::Running | Refresh::Again => {
                    *st = Refresh::Again;
                    return;
                }
            }
        }
        let core = Arc::clone(self);
        let name = format!("mcprouter-refresh-{}", b.name());
        let spawned = std::thread::Builder::new().name(name).stack_size(256 * 1024).spawn(move || {
            loop {
                if refresh_backend(&core, i) {
                    core.rebuild_catalog(true);
                }
                let mut st = core.refreshing[i].lock();
                if *st == Refresh::Again && !core.closed.load(Ordering::Acquire) {
                    *st = Refresh::Running;
                    continue;
                }
                *st = Refresh::Idle;
                return;
            }
        });
        match spawned {
            Ok(h) => {
                let mut workers = self.workers.lock();
                workers.retain(|h| !h.is_finished());
                workers.push(h);
            }
            Err(e) => {
                *slot.lock() = Refresh::Idle;
                log::error!(target: "mcprouter", "[{}] cannot start a refresh thread: {e}", b.name());
            }
        }
    }

    /// Rebuilds the catalog from every backend's last known lists and tells every session
    /// which lists changed. A backend that is down keeps its names: calls to them get
    /// "unavailable" (-32000) rather than "unknown tool", and come back with it.
    fn rebuild_catalog(&self, notify: bool) {
        let _one = self.rebuilding.lock();
        let lists: Vec<Option<Arc<Lists>>> = self.backends.iter().map(|b| b.lists.lock().clone()).collect();
        let refs: Vec<Option<&Lists>> = lists.iter().map(|l| l.as_deref()).collect();
        let fresh = Arc::new(Catalog::build(&self.config.router, &self.config.backends, &self.owners, &refs));
        let old = std::mem::replace(&mut *self.catalog.write(), Arc::clone(&fresh));
        for w in fresh.warnings().iter().filter(|w| !old.warnings().contains(w)) {
            log::warn!(target: "mcprouter", "catalog: {w}");
        }
        self.metrics.set_known_tools(fresh.tool_names().map(str::to_owned));
        let [t, r, u, p] = fresh.counts();
        for (kind, n) in [
            (CatalogKind::Tools, t),
            (CatalogKind::Resources, r),
            (CatalogKind::Templates, u),
            (CatalogKind::Prompts, p),
        ] {
            self.metrics.set_catalog_size(kind, n);
        }
        if !notify {
            return;
        }
        let mut sent = Vec::new();
        for kind in fresh.changed_kinds(&old) {
            let method = match kind {
                Kind::Tools => "notifications/tools/list_changed",
                Kind::Prompts => "notifications/prompts/list_changed",
                Kind::Resources | Kind::Templates => "notifications/resources/list_changed",
            };
            if !sent.contains(&method) {
                sent.push(method);
                self.hub.broadcast(&crate::jsonrpc::notification(method, None));
            }
        }
    }
}

/// Where a backend's catalog refresh stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refresh {
    Idle,
    Running,
    /// Running, and asked for again since it started.
    Again,
}

pub(crate) struct RouterInner {
    pub core: Arc<Core>,
    dispatcher: Mutex<Option<(Sender<()>, JoinHandle<()>)>>,
}

impl Drop for RouterInner {
    fn drop(&mut self) {
        let grace = Duration::from_millis(self.core.config.router.shutdown_grace_ms);
        shutdown(&self.core, &self.dispatcher, grace);
    }
}

/// A running router. Cheap to clone (an `Arc`); `Send + Sync`. The backends stop when
/// [`Router::shutdown`] is called or the last clone and the last session are dropped.
#[derive(Clone)]
pub struct Router {
    pub(crate) inner: Arc<RouterInner>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").field("backends", &self.inner.core.backends.len()).finish()
    }
}

impl Router {
    /// Validates `config`, starts every backend in parallel and waits (at most the
    /// configured `init_timeout_ms`) for their handshakes. A backend that fails to start
    /// does not fail the router: it is reported by [`Router::status`] and its calls fail fast.
    pub fn new(config: Config) -> Result<Router> {
        config.validate()?;
        // Process-wide loggers (the C ABI's callback) must mask this config's secrets too.
        crate::redact::register_secrets(crate::logging::redactor_secrets(&config));
        let (ev_tx, ev_rx) = bounded(1024);
        let hub = Arc::new(Hub::new(ev_tx));
        let backends: Vec<Arc<Backend>> = config
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| Arc::new(Backend::new(i, b.clone(), &config.router, Arc::clone(&hub))))
            .collect();
        let init_timeout = Duration::from_millis(config.router.init_timeout_ms);
        std::thread::scope(|s| {
            for b in &backends {
                let b = Arc::clone(b);
                let spawned = std::thread::Builder::new()
                    .name(format!("mcprouter-init-{}", b.name()))
                    .stack_size(256 * 1024)
                    .spawn_scoped(s, move || b.start(init_timeout));
                if let Err(e) = spawned {
                    log::error!(target: "mcprouter", "cannot start a thread: {e}");
                }
            }
        });
        let names: Vec<String> = config.backends.iter().map(|b| b.name.clone()).collect();
        let (owners, balancers) = owners(&config);
        let core = Arc::new(Core {
            metrics: Metrics::new(&names),
            owners,
            balancers,
            budget: RetryBudget::new(
                config.router.retry_budget.ratio,
                config.router.retry_budget.min_per_sec,
                Instant::now(),
            ),
            config,
            hub,
            backends,
            catalog: RwLock::new(Arc::new(Catalog::default())),
            restart_due: Mutex::new(Vec::new()),
            workers: Mutex::new(Vec::new()),
            refreshing: (0..names.len()).map(|_| Mutex::new(Refresh::Idle)).collect(),
            rebuilding: Mutex::new(()),
            closed: AtomicBool::new(false),
            started: Instant::now(),
        });
        core.rebuild_catalog(false);
        let (stop_tx, stop_rx) = bounded(1);
        let c = Arc::clone(&core);
        let handle = std::thread::Builder::new()
            .name("mcprouter-dispatcher".into())
            .spawn(move || crate::guard::keep_running("mcprouter-dispatcher", || dispatcher(&c, &ev_rx, &stop_rx)))
            .map_err(|e| Error::Io(format!("cannot start the dispatcher thread: {e}")))?;
        if core.config.router.health.interval_ms > 0 {
            let c = Arc::clone(&core);
            let health = std::thread::Builder::new()
                .name("mcprouter-health".into())
                .stack_size(256 * 1024)
                .spawn(move || crate::guard::keep_running("mcprouter-health", || health_checks(&c)))
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

    /// The configuration the router runs.
    pub fn config(&self) -> &Config {
        &self.inner.core.config
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
        let catalog = core.catalog();
        let backends: Vec<Value> = core
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
                    "protocol_version": info.protocol_version,
                    "server_info": info.server_info,
                    "tools": tools,
                    "resources": resources,
                    "prompts": prompts,
                    "in_flight": b.pending.len(),
                    "queue_depth": b.queue_depth(),
                    "handshake_ms": info.handshake.map(|d| d.as_secs_f64() * 1000.0),
                    "pid": info.pid,
                    "last_error": info.last_error,
                    "catalog_error": b.catalog_error.lock().clone(),
                    "healthy": health.is_healthy(),
                    "consecutive_failures": health.failures(),
                    "next_probe_in_ms": health.next_probe().map(|t| t.saturating_duration_since(Instant::now()).as_millis() as u64),
                    "breaker": b.breaker.state().name(),
                    "breaker_half_open_in_flight": b.breaker.half_open_in_flight(),
                    "restarts": restarts,
                    "next_restart_in_ms": core.next_restart(b.index).map(|t| t.saturating_duration_since(Instant::now()).as_millis() as u64),
                })
            })
            .collect();
        let [t, r, u, p] = catalog.counts();
        let pools: Vec<Value> = core
            .owners
            .iter()
            .zip(&core.balancers)
            .filter_map(|(o, b)| b.as_ref().map(|b| (o, b)))
            .map(|(o, b)| {
                json!({
                    "name": o.name,
                    "strategy": b.strategy().as_str(),
                    "backends": o.members.iter().map(|m| core.backends[*m].name()).collect::<Vec<_>>(),
                    "in_flight": b.in_flight_all(),
                })
            })
            .collect();
        json!({
            "pools": pools,
            "retry_budget": core.budget.available(),
            "router": {
                "name": core.config.router.name,
                "version": env!("CARGO_PKG_VERSION"),
                "closed": core.closed.load(Ordering::Acquire),
                "sessions": core.hub.session_count(),
                "uptime_ms": core.started.elapsed().as_millis() as u64,
                "catalog": {
                    "tools": t, "resources": r, "resource_templates": u, "prompts": p,
                    "warnings": catalog.warnings(),
                    "refresh_pending": core.refresh_pending(),
                },
            },
            "backends": backends,
        })
    }

    /// Prometheus text exposition (format 0.0.4) of the router's metrics. Label values
    /// from untrusted input are bounded: unknown methods are `other`, tool names only those
    /// in the catalog (capped).
    pub fn metrics(&self) -> String {
        let core = &self.inner.core;
        for b in &core.backends {
            core.metrics.set_backend_up(b.index, b.is_ready());
            core.metrics.set_queue_depth(b.index, b.queue_depth());
            let breaker = match b.breaker.state() {
                crate::breaker::BreakerState::Closed => 0,
                crate::breaker::BreakerState::Open { .. } => 1,
                crate::breaker::BreakerState::HalfOpen { .. } => 2,
            };
            core.metrics.set_breaker_state(b.index, breaker);
        }
        core.metrics.render()
    }

    /// Stops the router: sessions get [`Error::Closed`], each child's stdin is closed, and
    /// after `grace` it is terminated, then killed; every thread is joined. Idempotent.
    pub fn shutdown(&self, grace: Duration) {
        shutdown(&self.inner.core, &self.inner.dispatcher, grace);
    }

    /// Whether [`Router::shutdown`] has run.
    pub fn is_closed(&self) -> bool {
        self.inner.core.closed.load(Ordering::Acquire)
    }
}

/// Groups backends into owners: each pool where its first member stands, every other
/// backend on its own.
fn owners(config: &Config) -> (Vec<Owner>, Vec<Option<SharedBalancer>>) {
    let mut owners = Vec::new();
    let mut balancers = Vec::new();
    for (i, b) in config.backends.iter().enumerate() {
        match config.pools.iter().find(|p| p.backends.contains(&b.name)) {
            Some(p) if p.backends.first() == Some(&b.name) => {
                let members: Vec<usize> =
                    p.backends.iter().filter_map(|m| config.backends.iter().position(|b| &b.name == m)).collect();
                let weights = members.iter().map(|&m| config.backends[m].weight).collect();
                balancers.push(Some(SharedBalancer::new(Balancer::new(p.strategy, weights))));
                owners.push(Owner { name: p.name.clone(), members });
            }
            Some(_) => {}
            None => {
                balancers.push(None);
                owners.push(Owner { name: b.name.clone(), members: vec![i] });
            }
        }
    }
    (owners, balancers)
}

fn shutdown(core: &Core, dispatcher: &Mutex<Option<(Sender<()>, JoinHandle<()>)>>, grace: Duration) {
    core.closed.store(true, Ordering::Release);
    let dispatcher = dispatcher.lock().take();
    if let Some((stop, _)) = &dispatcher {
        let _ = stop.send(());
    }
    // Stop the backends before joining the dispatcher: a catalog refresh it has in flight
    // then fails at once instead of holding shutdown until its deadline.
    std::thread::scope(|s| {
        for b in &core.backends {
            s.spawn(move || b.stop(grace));
        }
    });
    if let Some((_, handle)) = dispatcher {
        let _ = handle.join();
    }
    let workers = std::mem::take(&mut *core.workers.lock());
    for w in workers {
        let _ = w.join();
    }
}

fn dispatcher(core: &Arc<Core>, events: &Receiver<Event>, stop: &Receiver<()>) {
    let interval = core.config.router.refresh_interval_ms;
    let ticker = if interval > 0 { tick(Duration::from_millis(interval)) } else { never() };
    let housekeeping = tick(Duration::from_millis(50));
    for i in 0..core.backends.len() {
        core.schedule_restart(i);
    }
    loop {
        select! {
            recv(stop) -> _ => return,
            recv(housekeeping) -> _ => {
                core.take_refresh_asks();
                core.run_due_restarts();
                core.hub.expire_relays(Instant::now(), &core.backends);
            },
            recv(events) -> ev => {
                let Ok(ev) = ev else { return };
                // Backends announce changes in bursts (server-everything sends several
                // list_changed at start): gather a burst and refresh each backend once.
                std::thread::sleep(Duration::from_millis(20));
                let mut queue = vec![ev];
                queue.extend(events.try_iter());
                for ev in queue {
                    match ev {
                        // Only a wake-up: the asks are counted on the backend.
                        Event::Refresh => {}
                        // The catalog keeps a down backend's names, so only a restart is due.
                        Event::Down(i) => core.schedule_restart(i),
                    }
                }
                core.take_refresh_asks();
            },
            recv(ticker) -> _ => {
                for i in 0..core.backends.len() {
                    core.request_refresh(i);
                }
            },
        }
        if core.closed.load(Ordering::Acquire) {
            return;
        }
    }
}

/// Active health checks: a `ping` to each ready backend every interval, and to an
/// unhealthy one when its (backed-off) probe is due. Pings to all due backends are in
/// flight at once, so one slow backend does not delay the others' checks.
fn health_checks(core: &Core) {
    let policy = &core.config.router.health;
    let interval = Duration::from_millis(policy.interval_ms);
    let timeout = Duration::from_millis(policy.timeout_ms);
    let mut last = vec![Instant::now(); core.backends.len()];
    while !core.closed.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(50));
        let now = Instant::now();
        let mut tickets = Vec::new();
        for (i, b) in core.backends.iter().enumerate() {
            if !b.is_ready() {
                continue;
            }
            let due = {
                let h = b.health.lock();
                if h.is_healthy() { now >= last[i] + interval } else { h.next_probe().is_some_and(|t| t <= now) }
            };
            if due {
                last[i] = now;
                match b.start_call("ping", None, 0) {
                    Ok(t) => tickets.push((b, t)),
                    Err(_) => b.observe(false),
                }
            }
        }
        for (b, t) in tickets {
            let was = b.health.lock().is_healthy();
            // Any answer, even an error, shows the backend is alive and reading.
            let alive = b.finish_call(t, &crate::backend::Deadline::fixed(now + timeout)).is_ok();
            b.observe(alive);
            let is = b.health.lock().is_healthy();
            if was != is {
                log::warn!(target: "mcprouter", "[{}] is {}", b.name(), if is { "healthy again" } else { "unhealthy" });
            }
        }
    }
}

/// Fetches backend `i`'s lists again if it is up; returns whether it tried (and so whether
/// its lists may have changed).
fn refresh_backend(core: &Core, i: usize) -> bool {
    let Some(b) = core.backends.get(i) else { return false };
    if b.info().state != State::Ready {
        return false;
    }
    if let Err(e) = b.refresh_lists(Instant::now() + b.timeout) {
        log::warn!(target: "mcprouter", "[{}] catalog refresh failed: {e}", b.name());
    }
    true
}
