//! The router's background threads: the dispatcher (restarts, catalog refreshes, expiry of
//! relays and of parked 2026-07-28 calls) and the active health checks.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, never, select, tick};

use crate::core::Core;
use crate::hub::Event;

pub(crate) fn dispatcher(core: &Arc<Core>, events: &Receiver<Event>, stop: &Receiver<()>) {
    let timer = |ms: u64| if ms > 0 { tick(Duration::from_millis(ms)) } else { never() };
    let mut interval = core.view().value().config.router.refresh_interval_ms;
    let mut ticker = timer(interval);
    let housekeeping = tick(Duration::from_millis(50));
    for b in &core.view().value().backends {
        core.schedule_restart(b.id);
    }
    loop {
        select! {
            recv(stop) -> _ => return,
            recv(housekeeping) -> _ => {
                // A reload may have changed the refresh interval.
                let now = core.view().value().config.router.refresh_interval_ms;
                if now != interval {
                    interval = now;
                    ticker = timer(interval);
                }
                core.take_refresh_asks();
                core.run_due_restarts();
                core.hub.expire_relays(Instant::now(), &|id| core.backend(id).map(|b| b as Arc<dyn crate::hub::Peer>));
                // Here too, not only when modern calls come: an idle router frees them.
                core.hub.mrtr.sweep(Instant::now(), &|id| core.backend(id));
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
                for b in &core.view().value().backends {
                    core.request_refresh(b.id);
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
pub(crate) fn health_checks(core: &Core) {
    // Last ping per backend id; a reload's new backends start counting when first seen.
    let mut last: HashMap<usize, Instant> = HashMap::new();
    while !core.closed.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(50));
        let view = core.view();
        let policy = &view.value().config.router.health;
        let interval = Duration::from_millis(policy.interval_ms);
        let timeout = Duration::from_millis(policy.timeout_ms);
        let now = Instant::now();
        last.retain(|id, _| view.value().position(*id).is_some());
        let mut tickets = Vec::new();
        for b in &view.value().backends {
            if !b.is_ready() || policy.interval_ms == 0 {
                continue;
            }
            let seen = *last.entry(b.id).or_insert(now);
            let due = {
                let h = b.health.lock();
                if h.is_healthy() { now >= seen + interval } else { h.next_probe().is_some_and(|t| t <= now) }
            };
            if due {
                last.insert(b.id, now);
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
