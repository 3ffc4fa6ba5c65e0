//! The retry budget: retries and fallbacks spend tokens that real traffic earns, so a fault
//! cannot multiply the load on the fleet (a call that fails everywhere costs at most
//! `1 + ratio` attempts on average, plus a small floor per second).

use std::time::Instant;

use crate::sync::Mutex;

/// A token bucket refilled by client calls (`ratio` each) and by time (`min_per_sec`).
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    min_per_sec: f64,
    cap: f64,
    state: Mutex<(f64, Instant)>,
}

impl RetryBudget {
    /// A full budget.
    pub fn new(ratio: f64, min_per_sec: f64, now: Instant) -> RetryBudget {
        let cap = (min_per_sec * 10.0).max(10.0);
        RetryBudget { ratio, min_per_sec, cap, state: Mutex::new((cap, now)) }
    }

    /// A client call arrived: it earns `ratio` of a retry.
    pub fn deposit(&self) {
        let mut s = self.state.lock();
        s.0 = (s.0 + self.ratio).min(self.cap);
    }

    /// Takes one retry if the budget allows it.
    pub fn try_spend(&self, now: Instant) -> bool {
        let mut s = self.state.lock();
        let elapsed = now.saturating_duration_since(s.1).as_secs_f64();
        s.1 = now;
        s.0 = (s.0 + elapsed * self.min_per_sec).min(self.cap);
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            true
        } else {
            false
        }
    }

    /// Tokens left (for status).
    pub fn available(&self) -> f64 {
        self.state.lock().0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn retries_are_bounded_by_traffic_plus_a_floor() {
        let t0 = Instant::now();
        let b = RetryBudget::new(0.2, 0.0, t0);
        let mut spent = 0;
        while b.try_spend(t0) {
            spent += 1;
        }
        assert_eq!(spent, 10, "starts full at the cap");
        for _ in 0..100 {
            b.deposit();
        }
        let mut more = 0;
        while b.try_spend(t0) {
            more += 1;
        }
        assert_eq!(more, 10, "100 calls earn 20, capped at 10");
        let b = RetryBudget::new(0.0, 5.0, t0);
        while b.try_spend(t0) {}
        assert!(!b.try_spend(t0));
        assert!(b.try_spend(t0 + Duration::from_millis(250)), "the floor refills with time");
    }
}
