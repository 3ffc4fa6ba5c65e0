//! Loom model: threads racing on one token bucket, quota and concurrency cap never get
//! more than the limit allows, and refunds and dropped slots give back exactly what was
//! taken.
#![cfg(loom)]

use std::time::{Duration, Instant};

use loom::thread;

use mcprouter::limits::{Bucket, Concurrency, Quota};
use mcprouter::sync::Arc;

#[test]
fn a_bucket_never_grants_more_than_its_burst() {
    loom::model(|| {
        let now = Instant::now();
        let b = Arc::new(Bucket::new(1.0, 2, now));
        let takers: Vec<_> = (0..3)
            .map(|_| {
                let b = Arc::clone(&b);
                thread::spawn(move || b.try_take(now).is_ok())
            })
            .collect();
        let granted = takers.into_iter().map(|t| t.join().unwrap()).filter(|ok| *ok).count();
        assert_eq!(granted, 2, "exactly the burst, whatever the interleaving");
        assert!(b.try_take(now).is_err());
    });
}

#[test]
fn refunds_and_stale_clocks_never_mint_tokens() {
    loom::model(|| {
        let t0 = Instant::now();
        let later = t0 + Duration::from_millis(500);
        let b = Arc::new(Bucket::new(2.0, 1, t0));
        // One thread takes and refunds (a later limit refused its call); the other reads
        // the clock later. A refund races the refill, and neither may overfill.
        let refunder = {
            let b = Arc::clone(&b);
            thread::spawn(move || {
                if b.try_take(t0).is_ok() {
                    b.refund();
                }
            })
        };
        let taker = {
            let b = Arc::clone(&b);
            thread::spawn(move || b.try_take(later).is_ok())
        };
        refunder.join().unwrap();
        let took = taker.join().unwrap();
        let left = b.level(later);
        assert!((0.0..=1.0).contains(&left), "never above the burst, never below zero: {left}");
        // Half a second at 2/s refills the one token, whether or not the refund came yet:
        // the later reader always gets one.
        assert!(took);
    });
}

#[test]
fn a_quota_counts_every_call_once() {
    loom::model(|| {
        let now = Instant::now();
        let q = Arc::new(Quota::new(1, Duration::from_secs(60), now));
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let q = Arc::clone(&q);
                thread::spawn(move || q.try_take(now).is_ok())
            })
            .collect();
        let granted = ts.into_iter().map(|t| t.join().unwrap()).filter(|ok| *ok).count();
        assert_eq!(granted, 1);
        assert_eq!(q.usage(now).0, 1);
    });
}

#[test]
fn a_concurrency_cap_holds_and_slots_come_back() {
    loom::model(|| {
        let c = Arc::new(Concurrency::new(1));
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let c = Arc::clone(&c);
                thread::spawn(move || {
                    let slot = c.try_enter();
                    assert!(c.in_flight() <= 1);
                    slot.is_some()
                })
            })
            .collect();
        let entered = ts.into_iter().map(|t| t.join().unwrap()).filter(|ok| *ok).count();
        assert!(entered >= 1, "a free slot is never refused to both");
        assert_eq!(c.in_flight(), 0, "every slot was given back");
    });
}
