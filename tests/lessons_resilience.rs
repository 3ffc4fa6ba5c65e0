//! Regression tests for resilience lessons learned the hard way (lessons 2, 3 and 7 in
//! docs/lessons.md): probe slots and in-flight counts must never leak or be over-granted
//! under concurrency.
#![cfg(not(loom))]

use std::panic::{self, AssertUnwindSafe};
use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use mcprouter::balance::{Balancer, SharedBalancer, Strategy};
use mcprouter::breaker::{BreakerConfig, BreakerState, SharedBreaker};
use mcprouter::clock::ManualClock;

/// A breaker that has opened and whose open timeout has passed, so the
/// next acquire turns it half-open.
fn half_open_breaker(max_probes: u32) -> (SharedBreaker, ManualClock) {
    let clock = ManualClock::new();
    let config = BreakerConfig {
        failure_threshold: 1,
        open_timeout_ms: 10_000,
        half_open_max_probes: max_probes,
        ..BreakerConfig::default()
    };
    let breaker = SharedBreaker::with_clock(config, clock.clone());
    breaker.try_acquire().expect("closed breaker admits").failure();
    assert!(matches!(breaker.state(), BreakerState::Open { .. }));
    clock.advance(Duration::from_secs(10));
    (breaker, clock)
}

/// Unwinds like a panic without running the panic hook, so the test output
/// stays quiet.
fn quiet_panic() -> ! {
    panic::resume_unwind(Box::new("simulated panic"))
}

#[test]
fn lesson_2_half_open_breaker_admits_bounded_probes() {
    const THREADS: usize = 64;
    let (breaker, _clock) = half_open_breaker(2);
    let admitted = AtomicUsize::new(0);
    // Every thread attempts before any guard is dropped, so a release cannot
    // make room for a later thread and hide an over-grant.
    let attempted = Barrier::new(THREADS);
    thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                let guard = breaker.try_acquire();
                if guard.is_some() {
                    admitted.fetch_add(1, Ordering::SeqCst);
                }
                attempted.wait();
                drop(guard);
            });
        }
    });
    assert_eq!(admitted.load(Ordering::SeqCst), 2);
    // All probes were dropped unreported: slots free, still half-open.
    assert_eq!(breaker.half_open_in_flight(), 0);
    assert_eq!(breaker.state(), BreakerState::HalfOpen { in_flight: 0 });
}

#[test]
fn lesson_3_peek_never_reserves_and_every_allow_is_released() {
    let (breaker, _clock) = half_open_breaker(1);
    for _ in 0..1000 {
        assert_eq!(breaker.peek(), BreakerState::HalfOpen { in_flight: 0 });
    }
    assert_eq!(breaker.half_open_in_flight(), 0);
    assert!(matches!(breaker.state(), BreakerState::Open { .. }), "peek must not transition");

    // Early return through `?`: the guard drops and frees the probe slot.
    fn call(breaker: &SharedBreaker, backend: Result<(), &'static str>) -> Result<(), &'static str> {
        let guard = breaker.try_acquire().ok_or("rejected")?;
        backend?;
        guard.success();
        Ok(())
    }
    assert_eq!(call(&breaker, Err("backend error")), Err("backend error"));
    assert_eq!(breaker.half_open_in_flight(), 0);
    assert!(matches!(breaker.state(), BreakerState::HalfOpen { .. }));

    // Panic while holding the probe: unwinding drops the guard.
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        let _guard = breaker.try_acquire().expect("probe slot is free");
        quiet_panic();
    }));
    assert!(result.is_err());
    assert_eq!(breaker.half_open_in_flight(), 0);

    // The slot really is usable again, and a reported success closes.
    assert_eq!(call(&breaker, Ok(())), Ok(()));
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[test]
fn lesson_7_every_balancer_pick_is_released_on_every_path() {
    let balancer = SharedBalancer::new(Balancer::new(Strategy::LeastConnections, vec![1; 3]));
    let all = |_: usize| true;

    // Success and failure both end with the guard going out of scope.
    fn forward(balancer: &SharedBalancer, ok: bool) -> Result<usize, String> {
        let guard = balancer.pick(None, |_| true).ok_or("no backend")?;
        if !ok {
            return Err(format!("backend {} failed", guard.index()));
        }
        Ok(guard.index())
    }
    assert!(forward(&balancer, true).is_ok());
    assert!(forward(&balancer, false).is_err());

    // Early return by `?` from a nested call while the pick is held.
    fn client_still_there(there: bool) -> Result<(), &'static str> {
        if there { Ok(()) } else { Err("client went away") }
    }
    fn early(balancer: &SharedBalancer) -> Result<(), &'static str> {
        let guard = balancer.pick(None, |_| true).ok_or("no backend")?;
        client_still_there(false)?;
        let _sent_to = guard.index();
        Ok(())
    }
    assert!(early(&balancer).is_err());

    // Panic while holding picks.
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        let _a = balancer.pick(None, all).expect("pick");
        let _b = balancer.pick(None, all).expect("pick");
        quiet_panic();
    }));
    assert!(result.is_err());
    assert_eq!(balancer.in_flight_all(), [0, 0, 0]);

    // Stress: every path, many threads.
    const THREADS: usize = 16;
    const PICKS: usize = 2000;
    let started = Instant::now();
    let max_seen = AtomicUsize::new(0);
    thread::scope(|s| {
        for t in 0..THREADS {
            let balancer = balancer.clone();
            let max_seen = &max_seen;
            s.spawn(move || {
                for i in 0..PICKS {
                    match (t + i) % 4 {
                        0 => {
                            let _ = forward(&balancer, true);
                        }
                        1 => {
                            let _ = forward(&balancer, false);
                        }
                        2 => {
                            let _ = early(&balancer);
                        }
                        _ => {
                            let r = panic::catch_unwind(AssertUnwindSafe(|| {
                                let g = balancer.pick(None, |_| true).expect("pick");
                                let total: usize = balancer.in_flight_all().iter().sum();
                                max_seen.fetch_max(total, Ordering::SeqCst);
                                if g.index() < 3 {
                                    quiet_panic();
                                }
                            }));
                            assert!(r.is_err());
                        }
                    }
                }
            });
        }
    });
    assert_eq!(balancer.in_flight_all(), [0, 0, 0]);
    // Each thread holds at most one pick at a time in the stress phase.
    let max = max_seen.load(Ordering::SeqCst);
    assert!((1..=THREADS).contains(&max), "max in flight {max}");
    println!("stress took {:?}", started.elapsed());
}
