//! The router's shared state: what the public handle, the sessions and the background
//! threads (`upkeep.rs`) all see, and the one owner of the router's lifetime (`RouterInner`,
//! whose drop shuts everything down).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Sender;
use parking_lot::{Mutex, RwLock};

use crate::backend::{Backend, State};
use crate::balance::{Balancer, SharedBalancer};
use crate::budget::RetryBudget;
use crate::catalog::{Catalog, Kind, Lists, Owner};
use crate::config::{BackendConfig, Config, RouterSettings};
use crate::error::{Error, Result};
use crate::generation::{Entered, Generation, Generations};
use crate::hub::Hub;
use crate::metrics::Metrics;

/// One generation of what a config decides: its backends (in config order), the owners
/// and pools over them, the retry budget and the catalog. A call resolves it once
/// (`Core::enter`) and routes with it to the end, so it sees the old config or the new
/// one, never a mix. Positions (`owners`, catalog owners, plans) are positions in this
/// view; what outlives a call (hub entries, in-flight maps, restarts) names a backend by
/// its id (`Backend::id`), which is never reused.
pub(crate) struct View {
    pub config: Arc<Config>,
    pub backends: Vec<Arc<Backend>>,
    /// Plain backends and pools, in config order: what catalog items belong to.
    pub owners: Vec<Owner>,
    /// One balancer per owner that is a pool.
    pub balancers: Vec<Option<SharedBalancer>>,
    pub budget: RetryBudget,
    catalog: RwLock<Arc<Catalog>>,
    /// Serializes rebuilds, so a slow one cannot swap in a catalog older than the last.
    rebuilding: Mutex<()>,
    /// Who may see and call what (`policy.rs`), and how much (`limits.rs`), for this
    /// config: compiled with it, so a call judged by one view is judged by its rules.
    pub policy: crate::policy::Policy,
    pub limits: crate::limits::Limits,
}

impl View {
    fn new(config: Arc<Config>, backends: Vec<Arc<Backend>>, before: Option<&View>) -> View {
        let (owners, balancers) = owners(&config, before);
        let (policy, limits) = crate::policy::compile(&config, &owners);
        View {
            policy,
            limits,
            owners,
            balancers,
            budget: RetryBudget::new(
                config.router.retry_budget.ratio,
                config.router.retry_budget.min_per_sec,
                Instant::now(),
            ),
            backends,
            config,
            catalog: RwLock::new(Arc::new(Catalog::default())),
            rebuilding: Mutex::new(()),
        }
    }

    /// The current catalog; callers hold it only for the duration of one lookup or page.
    pub(crate) fn catalog(&self) -> Arc<Catalog> {
        Arc::clone(&self.catalog.read())
    }

    /// The position of backend `id` in this view.
    pub(crate) fn position(&self, id: usize) -> Option<usize> {
        self.backends.iter().position(|b| b.id == id)
    }

    /// Builds the catalog from every backend's last known lists and swaps it in; returns
    /// the one it replaced.
    fn rebuild(&self) -> (Arc<Catalog>, Arc<Catalog>) {
        let _one = self.rebuilding.lock();
        let fresh = Arc::new(self.build_catalog());
        let old = std::mem::replace(&mut *self.catalog.write(), Arc::clone(&fresh));
        (old, fresh)
    }

    fn build_catalog(&self) -> Catalog {
        let lists: Vec<Option<Arc<Lists>>> = self.backends.iter().map(|b| b.lists.lock().clone()).collect();
        let refs: Vec<Option<&Lists>> = lists.iter().map(|l| l.as_deref()).collect();
        Catalog::build(&self.config.router, &self.config.backends, &self.owners, &refs)
    }
}

/// The last reload, for status.
#[derive(Debug, Clone)]
pub(crate) struct LastReload {
    pub at: SystemTime,
    pub ok: bool,
    pub error: Option<String>,
}

/// What the dispatcher thread, the sessions and the public handle share.
pub(crate) struct Core {
    pub hub: Arc<Hub>,
    views: Generations<View>,
    /// Every backend not stopped yet: the current view's and those a reload took out that
    /// are draining. Lookups by id (cancel, relay answers, unsubscribes) go here, so they
    /// reach a draining backend too.
    live: RwLock<Vec<Arc<Backend>>>,
    /// The next backend id; ids are never reused, so a hub entry can never name the wrong
    /// backend after a reload.
    next_id: AtomicUsize,
    /// One reload at a time.
    reloading: Mutex<Option<LastReload>>,
    /// Backends waiting to be restarted (by id), and when.
    restart_due: Mutex<Vec<(usize, Instant)>>,
    /// Restart, refresh, health and drain threads, joined at shutdown.
    pub(crate) workers: Mutex<Vec<JoinHandle<()>>>,
    /// Per backend id: whether a catalog refresh thread runs, and whether another was
    /// asked for meanwhile (absent = idle).
    refreshing: Mutex<HashMap<usize, Refresh>>,
    pub closed: AtomicBool,
    pub metrics: Metrics,
    pub(crate) started: Instant,
    /// Per-session backend connections alive (`scope: session`), against
    /// `router.max_session_backends`.
    session_backends: AtomicUsize,
}

/// Whether two backend configs need the same connection: everything but what only
/// routing reads (weight, filters), plus the router settings a backend is built from.
/// config.rs derives no `PartialEq`; `Debug` renders every field (maps are ordered).
fn same_connection(a: &BackendConfig, sa: &RouterSettings, b: &BackendConfig, sb: &RouterSettings) -> bool {
    fn key(c: &BackendConfig, s: &RouterSettings) -> String {
        let mut c = c.clone();
        c.weight = 0;
        c.tools = Default::default();
        c.prompts = Default::default();
        c.resources = Default::default();
        format!(
            "{c:?}|{}|{}|{}|{}|{:?}|{:?}|{:?}|{}|{}",
            s.request_timeout_ms,
            s.queue_capacity,
            s.max_message_bytes,
            s.max_call_ms,
            s.breaker,
            s.health,
            s.client_capabilities,
            s.max_catalog_items,
            s.max_catalog_bytes
        )
    }
    key(a, sa) == key(b, sb)
}

impl Core {
    /// The shared state of a router whose backends have been started (or tried).
    pub(crate) fn new(config: Config, hub: Arc<Hub>, backends: Vec<Arc<Backend>>) -> Core {
        let names: Vec<String> = config.backends.iter().map(|b| b.name.clone()).collect();
        let next = backends.iter().map(|b| b.id + 1).max().unwrap_or(0);
        Core {
            metrics: Metrics::new(&names),
            hub,
            live: RwLock::new(backends.clone()),
            views: Generations::new(View::new(Arc::new(config), backends, None)),
            next_id: AtomicUsize::new(next),
            reloading: Mutex::new(None),
            restart_due: Mutex::new(Vec::new()),
            workers: Mutex::new(Vec::new()),
            refreshing: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            started: Instant::now(),
            session_backends: AtomicUsize::new(0),
        }
    }

    /// Enters the current view for one call: it stays valid, and its backends running,
    /// until the guard drops (or a reload's drain deadline passes).
    pub(crate) fn enter(&self) -> Entered<View> {
        self.views.enter()
    }

    /// The current view, for what is not a call (status, upkeep).
    pub(crate) fn view(&self) -> crate::sync::Arc<Generation<View>> {
        self.views.current()
    }

    /// A backend that is not stopped yet, by id: in the current view or draining.
    pub(crate) fn backend(&self, id: usize) -> Option<Arc<Backend>> {
        self.live.read().iter().find(|b| b.id == id).cloned()
    }

    /// A new connection to `template`'s server for one session (`scope: session`), started
    /// and registered with the live backends (so cancels and relay answers find it); `None`
    /// when `router.max_session_backends` are alive already or the router is closing. What
    /// it sends on its own goes to `session` (the hub knows it as its owner).
    pub(crate) fn start_session_backend(
        &self,
        template: &Backend,
        settings: &RouterSettings,
        session: u64,
    ) -> Option<Arc<Backend>> {
        let cap = settings.max_session_backends;
        let taken =
            self.session_backends.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < cap).then_some(n + 1));
        if taken.is_err() || self.closed.load(Ordering::Acquire) {
            if taken.is_ok() {
                self.session_backends.fetch_sub(1, Ordering::AcqRel);
            }
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let b = Arc::new(Backend::new(id, template.config.clone(), settings, Arc::clone(&self.hub)));
        self.hub.own(id, session);
        self.live.write().push(Arc::clone(&b));
        b.start(Duration::from_millis(settings.init_timeout_ms));
        Some(b)
    }

    /// Stops a session's backend on a thread of its own (joined at shutdown), so closing a
    /// session never waits for a child's exit grace.
    pub(crate) fn stop_session_backend(self: &Arc<Self>, b: Arc<Backend>) {
        let core = Arc::clone(self);
        let grace = Duration::from_millis(self.view().value().config.router.shutdown_grace_ms);
        let run = move || {
            b.stop(grace);
            core.live.write().retain(|x| x.id != b.id);
            core.hub.backend_stopped(b.id);
            core.session_backends.fetch_sub(1, Ordering::AcqRel);
        };
        let spawned = std::thread::Builder::new().name("mcprouter-stop".into()).stack_size(256 * 1024).spawn(run);
        match spawned {
            Ok(h) => {
                let mut workers = self.workers.lock();
                workers.retain(|h| !h.is_finished());
                workers.push(h);
            }
            // It stays in `live`, so shutdown stops it.
            Err(e) => log::error!(target: "mcprouter", "cannot start a stop thread: {e}; stopping at shutdown"),
        }
    }

    /// Per-session backend connections alive.
    pub(crate) fn session_backends(&self) -> usize {
        self.session_backends.load(Ordering::Acquire)
    }

    /// Backends a reload took out that are still draining.
    pub(crate) fn draining_backends(&self) -> usize {
        let current = self.view();
        self.live.read().iter().filter(|b| current.value().position(b.id).is_none()).count()
    }

    /// The last reload (none yet: `None`).
    pub(crate) fn last_reload(&self) -> Option<LastReload> {
        self.reloading.lock().clone()
    }

    pub(crate) fn next_restart(&self, backend: usize) -> Option<Instant> {
        self.restart_due.lock().iter().find(|(b, _)| *b == backend).map(|(_, t)| *t)
    }

    /// A backend went down (or failed to come up): schedule its restart with backoff.
    /// Only a backend of the current view is restarted: a drained one is on its way out.
    pub(crate) fn schedule_restart(&self, id: usize) {
        let view = self.view();
        let Some(b) = view.value().position(id).map(|p| &view.value().backends[p]) else { return };
        if self.closed.load(Ordering::Acquire) || b.is_ready() || self.next_restart(id).is_some() {
            return;
        }
        let now = Instant::now();
        let seed = now.duration_since(self.started).as_nanos() as u64 ^ (id as u64).rotate_left(32);
        let policy = &view.value().config.router.restart;
        // A network server that is away is not a crash loop (issue #11): keep probing it.
        let may_loop = !b.transport().is_network();
        let delay = b.restarts.lock().next_delay_for(policy, now, crate::supervisor::jitter(seed), may_loop);
        if let Some(d) = delay {
            log::info!(target: "mcprouter", "[{}] restart in {} ms", b.name(), d.as_millis());
            self.restart_due.lock().push((id, now + d));
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
        let init = Duration::from_millis(self.view().value().config.router.init_timeout_ms);
        let mut workers = self.workers.lock();
        workers.retain(|h| !h.is_finished());
        for id in due {
            let Some(b) = self.backend(id) else { continue };
            let core = Arc::clone(self);
            let name = format!("mcprouter-restart-{}", b.name());
            let spawned = std::thread::Builder::new().name(name).stack_size(256 * 1024).spawn(move || {
                if b.restart(init) {
                    core.rebuild_catalog(true);
                } else {
                    core.hub.backend_down(id);
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
        let view = self.view();
        for b in &view.value().backends {
            let asked = b.refresh_asked.load(Ordering::Acquire);
            if asked != b.refresh_seen.load(Ordering::Acquire) {
                self.request_refresh(b.id);
                b.refresh_seen.store(asked, Ordering::Release);
            }
        }
    }

    /// Whether a backend has announced a change that its catalog does not reflect yet.
    pub(crate) fn refresh_pending(&self) -> bool {
        let view = self.view();
        let running = self.refreshing.lock();
        view.value().backends.iter().any(|b| {
            b.refresh_asked.load(Ordering::Acquire) != b.refresh_seen.load(Ordering::Acquire)
                || running.get(&b.id).is_some_and(|r| *r != Refresh::Idle)
        })
    }

    /// Asks for backend `id`'s lists to be fetched again, on a thread of its own: a backend
    /// that never answers its lists then holds up nothing but its own refresh. At most one
    /// runs per backend; asking while it runs makes it go round once more.
    pub(crate) fn request_refresh(self: &Arc<Self>, id: usize) {
        let Some(b) = self.backend(id) else { return };
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        {
            let mut all = self.refreshing.lock();
            let st = all.entry(id).or_insert(Refresh::Idle);
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
        let what = b.name().to_owned();
        let spawned = std::thread::Builder::new().name(name).stack_size(256 * 1024).spawn(move || {
            loop {
                if refresh_backend(&b) {
                    core.rebuild_catalog(true);
                }
                let mut all = core.refreshing.lock();
                if all.get(&id) == Some(&Refresh::Again) && !core.closed.load(Ordering::Acquire) {
                    all.insert(id, Refresh::Running);
                    continue;
                }
                all.remove(&id);
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
                self.refreshing.lock().remove(&id);
                log::error!(target: "mcprouter", "[{what}] cannot start a refresh thread: {e}");
            }
        }
    }

    /// Rebuilds the current view's catalog from every backend's last known lists and
    /// tells every session which lists changed. A backend that is down keeps its names:
    /// calls to them get "unavailable" (-32000) rather than "unknown tool", and come back
    /// with it.
    pub(crate) fn rebuild_catalog(&self, notify: bool) {
        let view = self.view();
        let (old, fresh) = view.value().rebuild();
        self.catalog_swapped(&old, &fresh, notify, &view.value().policy, false);
    }

    /// What follows a new catalog: its warnings, the tool labels, and `list_changed` to
    /// every session whose view of a kind changed (`policy` decides who sees what). When the
    /// access rules themselves changed (a reload), every session is told of every kind.
    fn catalog_swapped(
        &self,
        old: &Arc<Catalog>,
        fresh: &Arc<Catalog>,
        notify: bool,
        policy: &crate::policy::Policy,
        rules_changed: bool,
    ) {
        for w in fresh.warnings().iter().filter(|w| !old.warnings().contains(w)) {
            log::warn!(target: "mcprouter", "catalog: {w}");
        }
        self.metrics.set_known_tools(fresh.tool_names().map(str::to_owned));
        if !notify {
            return;
        }
        if rules_changed {
            for method in [
                "notifications/tools/list_changed",
                "notifications/prompts/list_changed",
                "notifications/resources/list_changed",
            ] {
                self.hub.broadcast(&crate::jsonrpc::notification(method, None));
            }
            return;
        }
        let mut sent = Vec::new();
        for kind in fresh.changed_kinds(old) {
            let method = match kind {
                Kind::Tools => "notifications/tools/list_changed",
                Kind::Prompts => "notifications/prompts/list_changed",
                Kind::Resources | Kind::Templates => "notifications/resources/list_changed",
            };
            if !sent.contains(&method) {
                sent.push(method);
                policy.announce(&self.hub, method, old, fresh);
            }
        }
    }

    /// Applies a new config (see README "Hot reload"). Validated first: a bad one is
    /// refused whole and the running one keeps serving. Backends whose connection settings
    /// did not change are kept as they are (process, breaker, health, lists); new and
    /// changed ones are started (up to `init_timeout_ms`) before the switch; then the new
    /// view replaces the old in one step, sessions hear which lists changed, and what the
    /// old view alone used drains on a thread of its own and stops. Returns the new
    /// generation.
    pub(crate) fn reload(self: &Arc<Self>, config: Config) -> Result<u64> {
        let mut last = self.reloading.lock();
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if let Err(e) = config.validate() {
            drop(last);
            return Err(self.reload_refused(e));
        }
        let old = self.view();
        let (before, settings) = (old.value(), &old.value().config.router);
        let mut fresh = Vec::new();
        let backends: Vec<Arc<Backend>> = config
            .backends
            .iter()
            .map(|c| {
                let kept = before
                    .backends
                    .iter()
                    .find(|b| b.name() == c.name && same_connection(&b.config, settings, c, &config.router));
                match kept {
                    Some(b) => Arc::clone(b),
                    None => {
                        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                        let b = Arc::new(Backend::new(id, c.clone(), &config.router, Arc::clone(&self.hub)));
                        fresh.push(Arc::clone(&b));
                        b
                    }
                }
            })
            .collect();
        for b in &config.backends {
            self.metrics.slot_for(&b.name);
        }
        self.live.write().extend(fresh.iter().cloned());
        start_all(&fresh, Duration::from_millis(config.router.init_timeout_ms));
        let view = View::new(Arc::new(config), backends, Some(before));
        let (_, catalog) = view.rebuild();
        let grace = Duration::from_millis(view.config.router.shutdown_grace_ms);
        let deadline = drain_deadline(&view.config);
        let retired = self.views.switch(view);
        let current = self.view();
        let gone: Vec<Arc<Backend>> =
            before.backends.iter().filter(|b| current.value().position(b.id).is_none()).cloned().collect();
        let rules = |c: &Config| format!("{:?}{:?}{:?}{:?}", c.clients, c.default_client, c.serve_client, c.policy);
        let rules_changed = rules(&before.config) != rules(&current.value().config);
        self.catalog_swapped(&before.catalog(), &catalog, true, &current.value().policy, rules_changed);
        for b in &fresh {
            self.schedule_restart(b.id);
        }
        let number = current.number();
        log::info!(
            target: "mcprouter",
            "reloaded: generation {number}, {} started, {} kept, {} draining",
            fresh.len(),
            current.value().backends.len() - fresh.len(),
            gone.len()
        );
        self.drain(retired.number(), gone, Instant::now() + deadline, grace);
        self.metrics.reload(true);
        *last = Some(LastReload { at: SystemTime::now(), ok: true, error: None });
        Ok(number)
    }

    /// A new config was refused (it did not parse or validate): logged, counted and
    /// shown by status; the running config keeps serving. Returns the error.
    pub(crate) fn reload_refused(&self, e: Error) -> Error {
        log::error!(target: "mcprouter", "reload refused, the running config stays: {e}");
        self.metrics.reload(false);
        *self.reloading.lock() = Some(LastReload { at: SystemTime::now(), ok: false, error: Some(e.to_string()) });
        e
    }

    /// Stops `gone` (backends a reload took out) once the calls of generation `number`
    /// and every older one have left, or at `deadline`: a call that resolved an old view
    /// finishes on the backends it saw. On a thread of its own, joined at shutdown.
    fn drain(self: &Arc<Self>, number: u64, gone: Vec<Arc<Backend>>, deadline: Instant, grace: Duration) {
        if gone.is_empty() {
            return;
        }
        let core = Arc::clone(self);
        let run = move || {
            while !core.views.drained_through(number)
                && Instant::now() < deadline
                && !core.closed.load(Ordering::Acquire)
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::scope(|s| {
                for b in &gone {
                    s.spawn(move || b.stop(grace));
                }
            });
            let ids: Vec<usize> = gone.iter().map(|b| b.id).collect();
            core.restart_due.lock().retain(|(b, _)| !ids.contains(b));
            core.live.write().retain(|b| !ids.contains(&b.id));
            for id in &ids {
                core.hub.backend_stopped(*id);
            }
            log::info!(target: "mcprouter", "drained and stopped {} backend(s) of generation {number}", ids.len());
        };
        let spawned = std::thread::Builder::new().name("mcprouter-drain".into()).stack_size(256 * 1024).spawn(run);
        match spawned {
            Ok(h) => {
                let mut workers = self.workers.lock();
                workers.retain(|h| !h.is_finished());
                workers.push(h);
            }
            Err(e) => log::error!(target: "mcprouter", "cannot start a drain thread: {e}; stopping at shutdown"),
        }
    }
}

/// How long a reload waits for the old view's calls: as long as one call may take, so
/// no call in flight is cut short by a reload.
fn drain_deadline(config: &Config) -> Duration {
    let longest = config.backends.iter().filter_map(|b| b.timeout_ms).max().unwrap_or(0);
    Duration::from_millis(config.router.max_call_ms.max(config.router.request_timeout_ms).max(longest))
}

/// Starts backends in parallel and waits for their handshakes (at most `init_timeout`).
pub(crate) fn start_all(backends: &[Arc<Backend>], init_timeout: Duration) {
    run_growing(backends.len(), |i| {
        backends[i].start(init_timeout);
    });
}

/// Runs `task(0..n)` on a pool that grows while it is stuck, not on a thread per task:
/// each exited thread leaves glibc a cached stack whose TCB and TLS stay resident
/// (4–8 KiB, a tenth of an idle backend's memory when every backend had its own start-up
/// thread). Tasks that finish quickly are all run by the first few threads; while no task
/// finishes for `STUCK` and some wait, the pool doubles, so tasks that hang (a backend
/// stuck in its handshake) soon each have a thread and never hold up the others for long.
fn run_growing(n: usize, task: impl Fn(usize) + Sync) {
    const FIRST: usize = 8;
    const STUCK: Duration = Duration::from_millis(20);
    let next = AtomicUsize::new(0);
    let finished = (parking_lot::Mutex::new(0usize), parking_lot::Condvar::new());
    let work = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                return;
            }
            task(i);
            *finished.0.lock() += 1;
            finished.1.notify_all();
        }
    };
    std::thread::scope(|s| {
        let spawn = |k: usize| {
            let spawned = std::thread::Builder::new()
                .name(format!("mcprouter-init-{k}"))
                .stack_size(256 * 1024)
                .spawn_scoped(s, work);
            if let Err(e) = &spawned {
                log::error!(target: "mcprouter", "cannot start a thread: {e}");
            }
            spawned.is_ok()
        };
        let mut threads = 0;
        while threads < FIRST.min(n) && spawn(threads) {
            threads += 1;
        }
        if threads == 0 {
            // No thread could start: run them here, one after the other.
            work();
            return;
        }
        let mut done = finished.0.lock();
        while next.load(Ordering::Relaxed) < n {
            let before = *done;
            let stuck = finished.1.wait_for(&mut done, STUCK).timed_out() && *done == before;
            if stuck && next.load(Ordering::Relaxed) < n {
                for _ in 0..threads.min(n - threads) {
                    if !spawn(threads) {
                        break;
                    }
                    threads += 1;
                }
            }
        }
    });
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
        let grace = Duration::from_millis(self.core.view().value().config.router.shutdown_grace_ms);
        shutdown(&self.core, &self.dispatcher, grace);
    }
}

/// Groups backends into owners: each pool where its first member stands, every other
/// backend on its own. A pool whose members, weights and strategy a reload left as they
/// were keeps its balancer (and so its in-flight counts and rotation).
fn owners(config: &Config, before: Option<&View>) -> (Vec<Owner>, Vec<Option<SharedBalancer>>) {
    let mut owners = Vec::new();
    let mut balancers = Vec::new();
    for (i, b) in config.backends.iter().enumerate() {
        match config.pools.iter().find(|p| p.backends.contains(&b.name)) {
            Some(p) if p.backends.first() == Some(&b.name) => {
                let members: Vec<usize> =
                    p.backends.iter().filter_map(|m| config.backends.iter().position(|b| &b.name == m)).collect();
                let weights: Vec<u32> = members.iter().map(|&m| config.backends[m].weight).collect();
                let kept = before.and_then(|v| {
                    let o = v.owners.iter().position(|o| o.name == p.name)?;
                    let bal = v.balancers.get(o)?.as_ref()?;
                    let same_members = v.owners[o].members.len() == members.len()
                        && v.owners[o].members.iter().zip(&members).all(|(a, b)| {
                            v.backends.get(*a).map(|x| x.name()) == config.backends.get(*b).map(|x| x.name.as_str())
                        });
                    let old_weights: Vec<u32> =
                        v.owners[o].members.iter().map(|&m| v.config.backends[m].weight).collect();
                    (same_members && old_weights == weights && bal.strategy() == p.strategy).then(|| bal.clone())
                });
                balancers.push(Some(kept.unwrap_or_else(|| SharedBalancer::new(Balancer::new(p.strategy, weights)))));
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
    // A reload in progress finishes first (it checks `closed` under this lock before
    // starting anything), so every backend it started is in `live` and stopped below.
    drop(core.reloading.lock());
    let dispatcher = dispatcher.lock().take();
    if let Some((stop, _)) = &dispatcher {
        let _ = stop.send(());
    }
    // Stop the backends before joining the dispatcher: a catalog refresh it has in flight
    // then fails at once instead of holding shutdown until its deadline.
    let live: Vec<Arc<Backend>> = core.live.read().clone();
    std::thread::scope(|s| {
        for b in &live {
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

/// Fetches a backend's lists again if it is up; returns whether it tried (and so whether
/// its lists may have changed).
fn refresh_backend(b: &Backend) -> bool {
    if b.info().state != State::Ready {
        return false;
    }
    if let Err(e) = b.refresh_lists(Instant::now() + b.timeout) {
        log::warn!(target: "mcprouter", "[{}] catalog refresh failed: {e}", b.name());
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_pool_grows_until_every_stuck_task_has_a_thread() {
        // Every task waits until all of them run at once: a pool that stopped growing
        // would leave some waiting (the wait is bounded so a failure reports, not hangs).
        let n = 40;
        let running = (parking_lot::Mutex::new(0usize), parking_lot::Condvar::new());
        let met = AtomicUsize::new(0);
        run_growing(n, |_| {
            let mut r = running.0.lock();
            *r += 1;
            running.1.notify_all();
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while *r < n && !running.1.wait_until(&mut r, deadline).timed_out() {}
            if *r == n {
                met.fetch_add(1, Ordering::Relaxed);
            }
        });
        assert_eq!(met.load(Ordering::Relaxed), n, "all {n} ran at once");
        // Quick tasks are all run, by however many threads.
        let ran = AtomicUsize::new(0);
        run_growing(500, |_| {
            ran.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(ran.load(Ordering::Relaxed), 500);
        run_growing(0, |_| unreachable!());
    }
}
