//! Supervision policies, pure: when to restart a backend that exited, and when a backend
//! counts as healthy. The dispatcher thread applies them; nothing here sleeps or locks.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::{HealthPolicy, RestartPolicy};

/// Restart bookkeeping for one backend.
#[derive(Debug, Default)]
pub struct Restarts {
    attempt: u32,
    recent: VecDeque<Instant>,
    started: Option<Instant>,
    /// Times the backend was started again after it went down, whether it came up or not:
    /// the one restart count, shown by status and metrics.
    pub total: u64,
}

impl Restarts {
    /// A restart begins.
    pub fn attempted(&mut self) {
        self.total += 1;
    }

    /// The backend came up at `now`.
    pub fn up(&mut self, now: Instant) {
        self.started = Some(now);
    }

    /// The backend exited at `now`: when to try again, or `None` if restarts are off.
    /// `jitter` in [0, 1) spreads restarts of many backends that died together.
    pub fn next_delay(&mut self, policy: &RestartPolicy, now: Instant, jitter: f64) -> Option<Duration> {
        self.next_delay_for(policy, now, jitter, true)
    }

    /// Like [`Restarts::next_delay`]; with `may_loop` false (a network server that refused
    /// or dropped the connection) the crash-loop cooldown never applies: a server that is
    /// briefly away is probed at the backoff's cap, not paused for the cooldown.
    pub fn next_delay_for(
        &mut self,
        policy: &RestartPolicy,
        now: Instant,
        jitter: f64,
        may_loop: bool,
    ) -> Option<Duration> {
        if !policy.enabled {
            return None;
        }
        // A backend that stayed up long enough earns a fresh start of the backoff.
        if self
            .started
            .is_some_and(|s| now.saturating_duration_since(s) >= Duration::from_millis(policy.stable_after_ms))
        {
            self.attempt = 0;
        }
        self.started = None;
        let window = Duration::from_millis(policy.window_ms);
        while self.recent.front().is_some_and(|t| now.saturating_duration_since(*t) > window) {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        if may_loop && self.recent.len() as u32 > policy.max_restarts {
            // A crash loop: pause, then start over.
            self.recent.clear();
            self.attempt = 0;
            return Some(Duration::from_millis(policy.cooldown_ms));
        }
        let exp = policy.initial_backoff_ms.saturating_mul(1u64 << self.attempt.min(20));
        let base = exp.min(policy.max_backoff_ms);
        self.attempt += 1;
        // Full jitter on the upper half: between base/2 and base.
        let ms = base / 2 + ((base / 2) as f64 * jitter) as u64;
        Some(Duration::from_millis(ms.max(1)))
    }
}

/// Health of one backend, from active pings and passive call outcomes.
#[derive(Debug, Clone)]
pub struct Health {
    consecutive_failures: u32,
    healthy: bool,
    probe_delay: Duration,
    next_probe: Option<Instant>,
}

impl Default for Health {
    fn default() -> Self {
        Health { consecutive_failures: 0, healthy: true, probe_delay: Duration::ZERO, next_probe: None }
    }
}

impl Health {
    /// Whether the backend is in the routing set.
    pub fn is_healthy(&self) -> bool {
        self.healthy
    }

    /// When the next probe of an unhealthy backend is due.
    pub fn next_probe(&self) -> Option<Instant> {
        self.next_probe
    }

    /// Consecutive failures seen.
    pub fn failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// A call or ping succeeded: back in the routing set.
    pub fn success(&mut self) {
        *self = Health::default();
    }

    /// A call timed out or failed in transport, or a ping failed. Returns true when this
    /// failure took the backend out of the routing set.
    pub fn failure(&mut self, policy: &HealthPolicy, now: Instant) -> bool {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let base = Duration::from_millis(policy.interval_ms.max(100));
        if self.healthy {
            if self.consecutive_failures < policy.failure_threshold {
                return false;
            }
            self.healthy = false;
            self.probe_delay = base;
            self.next_probe = Some(now + self.probe_delay);
            return true;
        }
        // A failed probe: wait twice as long before the next (exponential backoff).
        self.probe_delay = (self.probe_delay * 2).min(Duration::from_millis(policy.max_backoff_ms)).max(base);
        self.next_probe = Some(now + self.probe_delay);
        false
    }
}

/// A cheap pseudo-random number in [0, 1) for jitter (no RNG dependency needed).
pub fn jitter(seed: u64) -> f64 {
    let mut x = seed ^ 0x9E37_79B9_7F4A_7C15;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_backoff_grows_resets_and_cools_down() {
        let p = RestartPolicy {
            initial_backoff_ms: 100,
            max_backoff_ms: 1000,
            max_restarts: 4,
            ..RestartPolicy::default()
        };
        let t = Instant::now();
        let mut r = Restarts::default();
        let d: Vec<u64> = (0..4)
            .map(|i| r.next_delay(&p, t + Duration::from_millis(i), 1.0 - 1e-9).unwrap().as_millis() as u64)
            .collect();
        assert_eq!(d, [99, 199, 399, 799]);
        assert_eq!(r.next_delay(&p, t, 0.0).unwrap(), Duration::from_millis(p.cooldown_ms), "crash loop cools down");
        let mut r = Restarts::default();
        r.next_delay(&p, t, 0.0);
        r.next_delay(&p, t, 0.0);
        r.up(t);
        let later = t + Duration::from_millis(p.stable_after_ms);
        assert_eq!(
            r.next_delay(&p, later, 0.0).unwrap(),
            Duration::from_millis(50),
            "stable period resets the attempt"
        );
        let off = RestartPolicy { enabled: false, ..RestartPolicy::default() };
        assert!(Restarts::default().next_delay(&off, t, 0.5).is_none());
    }

    #[test]
    fn an_unreachable_server_is_probed_at_the_backoff_cap_never_cooled_down() {
        let p = RestartPolicy::default();
        let mut r = Restarts::default();
        let t = Instant::now();
        let delays: Vec<Duration> = (0..3 * p.max_restarts as u64)
            .map(|i| r.next_delay_for(&p, t + Duration::from_millis(i), 0.999, false).unwrap())
            .collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(p.max_backoff_ms)), "{delays:?}");
        assert!(delays.last().unwrap() >= &Duration::from_millis(p.max_backoff_ms / 2), "{delays:?}");
    }

    #[test]
    fn health_leaves_and_rejoins_with_backoff() {
        let p = HealthPolicy { interval_ms: 100, failure_threshold: 2, max_backoff_ms: 350, ..HealthPolicy::default() };
        let t = Instant::now();
        let mut h = Health::default();
        assert!(!h.failure(&p, t));
        assert!(h.is_healthy());
        assert!(h.failure(&p, t), "the threshold takes it out");
        assert!(!h.is_healthy());
        assert_eq!(h.next_probe(), Some(t + Duration::from_millis(100)));
        h.failure(&p, t);
        assert_eq!(h.next_probe(), Some(t + Duration::from_millis(200)));
        h.failure(&p, t);
        h.failure(&p, t);
        assert_eq!(h.next_probe(), Some(t + Duration::from_millis(350)), "capped");
        h.success();
        assert!(h.is_healthy() && h.failures() == 0);
    }

    #[test]
    fn jitter_is_in_range() {
        assert!((0..1000).map(jitter).all(|j| (0.0..1.0).contains(&j)));
    }
}
