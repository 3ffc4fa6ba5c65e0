//! Loom model: concurrent probes on a half-open breaker never exceed the
//! probe limit, and every reservation is returned.
#![cfg(loom)]

use std::time::Duration;

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

use mcprouter::breaker::{BreakerConfig, BreakerGuard, BreakerState, SharedBreaker};
use mcprouter::clock::ManualClock;
use mcprouter::sync::Arc;

const MAX_PROBES: u32 = 2;

/// Opened, timed out, not yet transitioned: the first acquire half-opens it.
fn half_open_breaker() -> SharedBreaker {
    let clock = ManualClock::new();
    let config = BreakerConfig { failure_threshold: 1, half_open_max_probes: MAX_PROBES, ..BreakerConfig::default() };
    let timeout = config.open_timeout();
    let breaker = SharedBreaker::with_clock(config, clock.clone());
    if let Some(guard) = breaker.try_acquire() {
        guard.failure();
    }
    clock.advance(timeout + Duration::from_millis(1));
    breaker
}

/// Acquires a probe and checks the limit while holding it. `held` counts
/// guards alive right now across threads.
fn probe(breaker: &SharedBreaker, held: &AtomicUsize) -> Option<BreakerGuard> {
    let guard = breaker.try_acquire()?;
    let now_held = held.fetch_add(1, Ordering::SeqCst) + 1;
    assert!(now_held <= MAX_PROBES as usize, "{now_held} probes held at once");
    assert!(breaker.half_open_in_flight() <= MAX_PROBES);
    Some(guard)
}

fn finish(guard: Option<BreakerGuard>, held: &AtomicUsize, report: impl FnOnce(BreakerGuard)) {
    if let Some(guard) = guard {
        held.fetch_sub(1, Ordering::SeqCst);
        report(guard);
    }
}

#[test]
fn half_open_reservations_are_bounded_and_returned() {
    loom::model(|| {
        let breaker = half_open_breaker();
        let held = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let breaker = breaker.clone();
                let held = held.clone();
                thread::spawn(move || {
                    let guard = probe(&breaker, &held);
                    finish(guard, &held, drop);
                })
            })
            .collect();
        // Third contender, plus a peek that must never reserve.
        let _ = breaker.peek();
        let guard = probe(&breaker, &held);
        finish(guard, &held, drop);
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(breaker.half_open_in_flight(), 0);
        assert_eq!(breaker.state(), BreakerState::HalfOpen { in_flight: 0 });
    });
}

#[test]
fn racing_success_and_failure_settle_without_leaking() {
    loom::model(|| {
        let breaker = half_open_breaker();
        let held = Arc::new(AtomicUsize::new(0));
        let failer = {
            let breaker = breaker.clone();
            let held = held.clone();
            thread::spawn(move || {
                let guard = probe(&breaker, &held);
                finish(guard, &held, BreakerGuard::failure);
            })
        };
        let guard = probe(&breaker, &held);
        finish(guard, &held, BreakerGuard::success);
        failer.join().unwrap();
        // Whichever verdict landed first decided; the other was stale or
        // counted in the new state. Either way nothing stays reserved.
        assert_eq!(breaker.half_open_in_flight(), 0);
        assert!(matches!(breaker.state(), BreakerState::Closed | BreakerState::Open { .. }), "{:?}", breaker.state());
    });
}
