//! Whether a caller waiting for a backend's answer spins before it parks.
//!
//! A routed call has one wake-up more than a direct client: the backend's reader thread
//! fills the caller's slot and wakes it. On a VM a wake-up that lands on an idle vCPU costs
//! 15–30 µs, as much as the whole round trip to a fast local server. A caller that expects
//! its answer within a few tens of microseconds spins for it instead (yielding between
//! checks), so the answer is taken with no wake-up. Spinning costs a CPU, so it is bounded
//! four ways: only for a backend whose recent answers came quickly, only up to a little
//! past the expected time, only by as many callers at once as leave one CPU for the
//! backend and the reader, and not at all for a while after a spin was preempted: on a
//! busy machine a spinner loses its CPU and waits longer for it than a parked thread waits
//! to be woken, so each preemption doubles the calls that park before the next try (up to
//! 4096), and each spin that got its answer halves it. A spin that ran out of time costs
//! no such stall (the caller parks as it would have), so it is not held against spinning.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::pending::Spun;

/// The most calls that park after failed spins before the next try.
const MAX_BACKOFF: u32 = 4096;

/// Callers spinning right now, router-wide.
static SPINNERS: AtomicUsize = AtomicUsize::new(0);

/// How many callers may spin at once: the CPUs less one, so the backend's process and its
/// reader thread always have one.
fn max_spinners() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()).saturating_sub(1))
}

/// A backend's typical answer time: an exponentially weighted mean of the calls it
/// answered (one owner: `Backend::finish_call` observes, `spin_until` reads).
#[derive(Debug)]
pub(crate) struct ReplyTimes {
    /// Nanoseconds; 0 until the first answer.
    mean_ns: AtomicU64,
    /// `router.spin_us`: above this typical answer time, spinning saves too small a share
    /// of the wait to pay for the CPU it takes, and the caller parks at once.
    max_spin: Duration,
    /// Calls left that park without trying to spin.
    skip: AtomicU32,
    /// What `skip` is set to at the next failure, halved by each success.
    backoff: AtomicU32,
}

/// Permission to spin; gives the place back when dropped.
pub(crate) struct Spin {
    pub until: Instant,
}

impl Drop for Spin {
    fn drop(&mut self) {
        SPINNERS.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ReplyTimes {
    pub fn new(max_spin: Duration) -> ReplyTimes {
        ReplyTimes { mean_ns: AtomicU64::new(0), max_spin, skip: AtomicU32::new(0), backoff: AtomicU32::new(0) }
    }

    /// Records one answered call's time. Racing updates may lose one sample: it is a
    /// hint, not a count.
    pub fn observe(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let old = self.mean_ns.load(Ordering::Relaxed);
        let new = if old == 0 { ns } else { old - old / 8 + ns / 8 };
        self.mean_ns.store(new.max(1), Ordering::Relaxed);
    }

    /// Records how a spin ended.
    pub fn spun(&self, how: Spun) {
        let backoff = self.backoff.load(Ordering::Relaxed);
        match how {
            Spun::Settled => self.backoff.store(backoff / 2, Ordering::Relaxed),
            // A slow answer only wasted the spin: the caller parks as it would have.
            Spun::TimedOut => {}
            Spun::Preempted => {
                let next = (backoff * 2).clamp(8, MAX_BACKOFF);
                self.backoff.store(next, Ordering::Relaxed);
                self.skip.store(next, Ordering::Relaxed);
            }
        }
    }

    /// Until when a call started at `started` should spin, if at all: twice the typical
    /// answer time, when that is short and a spinning place is free.
    pub fn spin_until(&self, started: Instant) -> Option<Spin> {
        let mean = Duration::from_nanos(self.mean_ns.load(Ordering::Relaxed));
        if mean.is_zero() || mean > self.max_spin {
            return None;
        }
        if self.skip.load(Ordering::Relaxed) > 0 {
            // Racing decrements may skip one call more or less: it is a hint.
            self.skip.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let max = max_spinners();
        SPINNERS
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| Spin { until: started + 2 * mean })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_backend_that_answers_quickly_is_spun_for() {
        let t = ReplyTimes::new(Duration::from_micros(200));
        assert!(t.spin_until(Instant::now()).is_none(), "no answer seen yet");
        t.observe(Duration::from_millis(5));
        assert!(t.spin_until(Instant::now()).is_none(), "a slow backend: park at once");
        for _ in 0..64 {
            t.observe(Duration::from_micros(40));
        }
        let now = Instant::now();
        if max_spinners() > 0 {
            let spin = t.spin_until(now).expect("a fast backend is spun for");
            assert!(spin.until <= now + Duration::from_micros(400));
        }
    }

    #[test]
    fn spinners_are_capped_and_give_their_place_back() {
        let t = ReplyTimes::new(Duration::from_micros(200));
        t.observe(Duration::from_micros(10));
        let max = max_spinners();
        let held: Vec<Spin> = (0..max + 3).filter_map(|_| t.spin_until(Instant::now())).collect();
        // Other tests may hold places at the same time: never more than the cap.
        assert!(held.len() <= max);
        drop(held);
    }

    #[test]
    fn a_preempted_spin_parks_the_next_calls_and_successes_bring_spinning_back() {
        let t = ReplyTimes::new(Duration::from_micros(200));
        t.observe(Duration::from_micros(10));
        t.spun(Spun::Preempted);
        for _ in 0..8 {
            assert!(t.spin_until(Instant::now()).is_none(), "8 calls park after the first failure");
        }
        t.spun(Spun::TimedOut);
        assert_eq!(t.skip.load(Ordering::Relaxed), 0, "a slow answer is not held against spinning");
        t.spun(Spun::Preempted);
        assert_eq!(t.skip.load(Ordering::Relaxed), 16, "the next preemption doubles it");
        for _ in 0..20 {
            t.spun(Spun::Preempted);
        }
        assert_eq!(t.skip.load(Ordering::Relaxed), MAX_BACKOFF);
        t.skip.store(0, Ordering::Relaxed);
        t.spun(Spun::Settled);
        assert_eq!(t.backoff.load(Ordering::Relaxed), MAX_BACKOFF / 2, "a success halves it");
        if max_spinners() > 0 {
            assert!(t.spin_until(Instant::now()).is_some());
        }
    }

    #[test]
    fn spin_us_zero_never_spins() {
        let t = ReplyTimes::new(Duration::ZERO);
        t.observe(Duration::from_nanos(500));
        assert!(t.spin_until(Instant::now()).is_none());
    }
}
