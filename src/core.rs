//! The router's shared state: what the public handle, the sessions and the background
//! threads (`upkeep.rs`) all see, and the one owner of the router's lifetime (`RouterInner`,
//! whose drop shuts everything down).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use parking_lot::{Mutex, RwLock};

use crate::backend::{Backend, State};
use crate::balance::{Balancer, SharedBalancer};
use crate::budget::RetryBudget;
use crate::catalog::{Catalog, Kind, Lists, Owner};
use crate::config::Config;
use crate::hub::Hub;
use crate::metrics::Metrics;

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
    pub(crate) workers: Mutex<Vec<JoinHandle<()>>>,
    /// Per backend: whether a catalog refresh thread runs, and whether another was asked for
    /// meanwhile.
    refreshing: Vec<Mutex<Refresh>>,
    /// Serializes rebuilds, so a slow one cannot swap in a catalog older than the last.
    rebuilding: Mutex<()>,
    pub closed: AtomicBool,
    pub metrics: Metrics,
    pub(crate) started: Instant,
    /// Who may see and call what (`policy.rs`), and how much (`limits.rs`).
    pub policy: crate::policy::Policy,
    pub limits: crate::limits::Limits,
}

impl Core {
    /// The shared state of a router whose backends have been started (or tried).
    pub(crate) fn new(config: Config, hub: Arc<Hub>, backends: Vec<Arc<Backend>>) -> Core {
        let names: Vec<String> = config.backends.iter().map(|b| b.name.clone()).collect();
        let (owners, balancers) = owners(&config);
        let (policy, limits) = crate::policy::compile(&config, &owners);
        Core {
            policy,
            limits,
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
        }
    }

    /// The current catalog; callers hold it only for the duration of one lookup or page.
    pub(crate) fn catalog(&self) -> Arc<Catalog> {
        Arc::clone(&self.catalog.read())
    }

    pub(crate) fn next_restart(&self, backend: usize) -> Option<Instant> {
        self.restart_due.lock().iter().find(|(b, _)| *b == backend).map(|(_, t)| *t)
    }

    /// A backend went down (or failed to come up): schedule its restart with backoff.
    pub(crate) fn schedule_restart(&self, i: usize) {
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
    pub(crate) fn run_due_restarts(self: &Arc<Self>) {
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
    pub(crate) fn take_refresh_asks(self: &Arc<Self>) {
        for (i, b) in self.backends.iter().enumerate() {
            let asked = b.refresh_asked.load(Ordering::Acquire);
            if asked != b.refresh_seen.load(Ordering::Acquire) {
                self.request_refresh(i);
                b.refresh_seen.store(asked, Ordering::Release);
            }
        }
    }

    /// Whether a backend has announced a change that its catalog does not reflect yet.
    pub(crate) fn refresh_pending(&self) -> bool {
        self.backends.iter().zip(&self.refreshing).any(|(b, slot)| {
            b.refresh_asked.load(Ordering::Acquire) != b.refresh_seen.load(Ordering::Acquire)
                || *slot.lock() != Refresh::Idle
        })
    }

    /// Asks for backend `i`'s lists to be fetched again, on a thread of its own: a backend
    /// that never answers its lists then holds up nothing but its own refresh. At most one
    /// runs per backend; asking while it runs makes it go round once more.
    pub(crate) fn request_refresh(self: &Arc<Self>, i: usize) {
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
    pub(crate) fn rebuild_catalog(&self, notify: bool) {
        let _one = self.rebuilding.lock();
        let lists: Vec<Option<Arc<Lists>>> = self.backends.iter().map(|b| b.lists.lock().clone()).collect();
        let refs: Vec<Option<&Lists>> = lists.iter().map(|l| l.as_deref()).collect();
        let fresh = Arc::new(Catalog::build(&self.config.router, &self.config.backends, &self.owners, &refs));
        let old = std::mem::replace(&mut *self.catalog.write(), Arc::clone(&fresh));
        for w in fresh.warnings().iter().filter(|w| !old.warnings().contains(w)) {
            log::warn!(target: "mcprouter", "catalog: {w}");
        }
        self.metrics.set_known_tools(fresh.tool_names().map(str::to_owned));
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
                self.policy.announce(&self.hub, method, &old, &fresh);
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

/// Owns the router's lifetime: dropped with the last `Router` clone and the last session,
/// it shuts the router down.
pub(crate) struct RouterInner {
    pub core: Arc<Core>,
    pub(crate) dispatcher: Mutex<Option<(Sender<()>, JoinHandle<()>)>>,
}

impl Drop for RouterInner {
    fn drop(&mut self) {
        let grace = Duration::from_millis(self.core.config.router.shutdown_grace_ms);
        shutdown(&self.core, &self.dispatcher, grace);
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

pub(crate) fn shutdown(core: &Core, dispatcher: &Mutex<Option<(Sender<()>, JoinHandle<()>)>>, grace: Duration) {
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
