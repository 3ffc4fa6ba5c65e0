//! Time sources: the system clock in production, a hand-driven one in tests.
//!
//! The state machines take `now: Instant` as an argument; only the shared
//! wrappers read a [`Clock`], so tests can drive time without sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A source of monotonic time.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The real monotonic clock ([`Instant::now`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that only moves when [`ManualClock::advance`] is called.
///
/// Clones share one timeline: hand a clone to the component under test and
/// advance the original. The offset lives in a std atomic rather than a
/// `crate::sync` one on purpose: time is an input, not state under test, and
/// loom-tracked reads would only multiply the interleavings a model explores.
#[derive(Debug, Clone)]
pub struct ManualClock {
    base: Instant,
    offset_nanos: std::sync::Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock starting at the current real instant.
    pub fn new() -> Self {
        Self::starting_at(Instant::now())
    }

    /// A clock starting at `base`.
    pub fn starting_at(base: Instant) -> Self {
        Self { base, offset_nanos: std::sync::Arc::new(AtomicU64::new(0)) }
    }

    /// Moves time forward by `by` for this clock and all its clones.
    pub fn advance(&self, by: Duration) {
        // Saturate rather than wrap: 2^64 ns is ~584 years, far past any test.
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ =
            self.offset_nanos.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |cur| Some(cur.saturating_add(nanos)));
    }

    /// How far the clock has been advanced since it was created.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.offset_nanos.load(Ordering::SeqCst))
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.base + self.elapsed()
    }
}

/// Lets a shared clock (`Arc<dyn Clock>`, `Arc<ManualClock>`) be passed as one.
impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now(&self) -> Instant {
        (**self).now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced_and_clones_share_time() {
        let clock = ManualClock::new();
        let twin = clock.clone();
        let t0 = clock.now();
        assert_eq!(clock.now(), t0);
        clock.advance(Duration::from_secs(3));
        assert_eq!(twin.now(), t0 + Duration::from_secs(3));
        assert_eq!(twin.elapsed(), Duration::from_secs(3));
    }

    #[test]
    fn arc_of_dyn_clock_is_a_clock() {
        let clock = ManualClock::new();
        let shared: std::sync::Arc<dyn Clock> = std::sync::Arc::new(clock.clone());
        clock.advance(Duration::from_millis(5));
        assert_eq!(shared.now(), clock.now());
        assert!(SystemClock.now() <= Instant::now());
    }
}
