//! Whether a caller waiting for a backend's answer spins before it parks.
//!
//! A routed call has one wake-up more than a direct client: the backend's reader thread
//! fills the caller's slot and wakes it. On a VM a wake-up that lands on an idle vCPU costs
//! 15–30 µs, as much as the whole round trip to a fast local server. A caller that expects
//! its answer within a few tens of microseconds spins for it instead, so the answer is
//! taken with no wake-up. Spinning costs a CPU, so it is bounded four ways:
//! - only for a backend whose recent answers came quickly (under `router.spin_us`);
//! - only up to twice that typical time;
//! - only by as many callers at once as leave one CPU for the backend and the reader;
//! - not at all for a while after any spin was preempted. On a busy machine a spinner
//!   loses its CPU and then waits longer for it than a parked thread waits to be woken
//!   (milliseconds: the p99 of a loaded run), so a preemption pauses spinning
//!   process-wide for 100 ms, doubled (up to 10 s) when the next preemption follows soon
//!   after the pause. Counting calls instead of time let about 1% of calls spin into a
//!   stall under load, which is the p99. A spin that ran out of time costs no stall (the
//!   caller parks as it would have), so it is not held against spinning.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::pending::Spun;

/// The first pause after a preemption, and the longest.
const MIN_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(10);

/// What all callers share: the places to spin and the pause.
#[derive(Debug, Default)]
struct Gate {
    /// Callers spinning right now.
    spinners: AtomicUsize,
    /// No spin starts before this time (nanoseconds since `epoch()`).
    paused_until: AtomicU64,
    /// The last pause's length, in nanoseconds.
    pause: AtomicU64,
}

/// The process-wide gate (a machine's CPUs are shared by every router in the process).
static GATE: Gate = Gate { spinners: AtomicUsize::new(0), paused_until: AtomicU64::new(0), pause: AtomicU64::new(0) };

/// How many callers may spin at once: the CPUs less one, so the backend's process and its
/// reader thread always have one.
fn max_spinners() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()).saturating_sub(1))
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn since_epoch(t: Instant) -> u64 {
    nanos(t.saturating_duration_since(epoch()))
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
}

/// Permission to spin; gives the place back when dropped.
pub(crate) struct Spin {
    pub until: Instant,
    gate: &'static Gate,
}

impl Drop for Spin {
    fn drop(&mut self) {
        self.gate.spinners.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ReplyTimes {
    pub fn new(max_spin: Duration) -> ReplyTimes {
        ReplyTimes { mean_ns: AtomicU64::new(0), max_spin }
    }

    /// Records one answered call's time. Racing updates may lose one sample: it is a
    /// hint, not a count.
    pub fn observe(&self, took: Duration) {
        let ns = nanos(took);
        let old = self.mean_ns.load(Ordering::Relaxed);
        let new = if old == 0 { ns } else { old - old / 8 + ns / 8 };
        self.mean_ns.store(new.max(1), Ordering::Relaxed);
    }

    /// Records how a spin ended (`at`: about when).
    pub fn spun(&self, how: Spun, at: Instant) {
        if how == Spun::Preempted {
            GATE.pause(at);
        }
    }

    /// Until when a call started at `started` should spin, if at all: twice the typical
    /// answer time, when that is short, spinning is not paused and a place is free.
    pub fn spin_until(&self, started: Instant) -> Option<Spin> {
        self.spin_through(&GATE, started)
    }

    fn spin_through(&self, gate: &'static Gate, started: Instant) -> Option<Spin> {
        let mean = Duration::from_nanos(self.mean_ns.load(Ordering::Relaxed));
        if mean.is_zero() || mean > self.max_spin || gate.paused_at(started) {
            return None;
        }
        let max = max_spinners();
        gate.spinners
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| Spin { until: started + 2 * mean, gate })
    }
}

impl Gate {
    fn paused_at(&self, t: Instant) -> bool {
        since_epoch(t) < self.paused_until.load(Ordering::Relaxed)
    }

    /// Pauses spinning after a preemption at `at`: for the minimum, or for twice the last
    /// pause when this preemption comes within that long of the last pause's end. Racing
    /// preemptions may each set it: any of their results is a fine pause.
    fn pause(&self, at: Instant) {
        let now = since_epoch(at);
        let (last, until) = (self.pause.load(Ordering::Relaxed), self.paused_until.load(Ordering::Relaxed));
        let soon_after = last > 0 && now < until.saturating_add(last);
        let next = if soon_after { last.saturating_mul(2).min(nanos(MAX_PAUSE)) } else { nanos(MIN_PAUSE) };
        self.pause.store(next, Ordering::Relaxed);
        self.paused_until.store(now.saturating_add(next), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> &'static Gate {
        Box::leak(Box::default())
    }

    #[test]
    fn spinning_is_for_fast_backends_and_capped() {
        let (t, g) = (ReplyTimes::new(Duration::from_micros(200)), gate());
        assert!(t.spin_through(g, Instant::now()).is_none(), "no answer seen yet");
        t.observe(Duration::from_millis(5));
        assert!(t.spin_through(g, Instant::now()).is_none(), "a slow backend: park at once");
        for _ in 0..64 {
            t.observe(Duration::from_micros(40));
        }
        let max = max_spinners();
        let now = Instant::now();
        let held: Vec<Spin> = (0..max + 3).filter_map(|_| t.spin_through(g, now)).collect();
        assert_eq!(held.len(), max, "at most CPUs - 1 spin at once");
        assert!(held.iter().all(|s| s.until <= now + Duration::from_micros(400)), "twice the typical time");
        drop(held);
        assert_eq!(g.spinners.load(Ordering::Relaxed), 0, "places given back");
    }

    #[test]
    fn a_preemption_pauses_spinning_a_slow_answer_does_not() {
        let g = gate();
        let now = Instant::now();
        assert!(!g.paused_at(now));
        g.pause(now);
        assert!(g.paused_at(now + Duration::from_millis(50)), "paused after a preemption");
        assert!(!g.paused_at(now + Duration::from_millis(150)), "for 100 ms");
        g.pause(now + Duration::from_millis(150));
        assert!(g.paused_at(now + Duration::from_millis(300)), "soon after: twice as long");
        assert!(!g.paused_at(now + Duration::from_millis(400)));
        g.pause(now + Duration::from_secs(5));
        assert!(g.paused_at(now + Duration::from_millis(5050)));
        assert!(!g.paused_at(now + Duration::from_millis(5150)), "long after: the minimum again");
        for i in 0..20 {
            g.pause(now + Duration::from_millis(6000 + i));
        }
        assert!(!g.paused_at(now + Duration::from_millis(6020) + MAX_PAUSE), "never past the longest pause");
    }

    #[test]
    fn spin_us_zero_never_spins() {
        let t = ReplyTimes::new(Duration::ZERO);
        t.observe(Duration::from_nanos(500));
        assert!(t.spin_through(gate(), Instant::now()).is_none());
    }
}
