//! Circuit breaker: stop sending traffic to a backend that keeps failing,
//! then let a bounded number of probes test whether it has recovered.
//!
//! [`Breaker`] is a pure state machine that is handed `now` by its caller;
//! [`SharedBreaker`] puts it behind a lock with a [`Clock`] and hands out
//! [`BreakerGuard`]s that release their permit on every path, drop included.

use std::fmt;
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::Deserialize;

use crate::clock::{Clock, SystemClock};
use crate::sync::{Arc, Mutex};

/// Tuning for a [`Breaker`]: the `router.breaker` section of the config, read as it is (so
/// the config and the breaker cannot disagree on a field or a default).
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker, 1 to 10 000 (`0` disables this rule
    /// when built in code).
    pub failure_threshold: u32,
    /// Failure rate in the window (0.0 to 1.0) that opens it, with at least `min_calls`;
    /// none = off.
    pub failure_rate: Option<f64>,
    /// Length of the sliding window the rate is measured over; at most 24 h.
    pub window_ms: u64,
    /// Calls needed in the window before the rate counts, at most 1 000 000.
    pub min_calls: u32,
    /// Time open before trial calls are admitted.
    pub open_timeout_ms: u64,
    /// Trial calls admitted at once while half-open, 1 to 10 000 (`0` acts as `1`).
    pub half_open_max_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            failure_rate: None,
            window_ms: 30_000,
            min_calls: 10,
            open_timeout_ms: 10_000,
            half_open_max_probes: 1,
        }
    }
}

impl BreakerConfig {
    /// The sliding window of the failure rate.
    pub fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms)
    }

    /// How long the breaker stays open before it lets probes through.
    pub fn open_timeout(&self) -> Duration {
        Duration::from_millis(self.open_timeout_ms)
    }
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Traffic flows; failures are being counted.
    Closed,
    /// Traffic is refused since `since`.
    Open {
        /// When the breaker (last) opened.
        since: Instant,
    },
    /// A few probes may pass; their outcome decides between closed and open.
    HalfOpen {
        /// Probes admitted and not yet released.
        in_flight: u32,
    },
}

impl BreakerState {
    /// Short snake_case name for status output: `closed`, `open`, `half_open`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open { .. } => "open",
            Self::HalfOpen { .. } => "half_open",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a call admitted by a [`Permit`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The backend answered properly.
    Success,
    /// The backend failed (error, timeout, broken pipe…).
    Failure,
    /// Says nothing about the backend (cancelled, client error): frees the
    /// permit without counting.
    Ignored,
}

/// Admission granted by [`Breaker::allow`]; hand it back to
/// [`Breaker::release`] exactly once.
///
/// It remembers the breaker generation it was issued in, so releasing it
/// after the breaker has changed state is harmless.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a permit must be released, or a half-open probe slot leaks"]
pub struct Permit {
    generation: u64,
}

impl Permit {
    /// The breaker generation this permit was issued in.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

/// Refusal from [`Breaker::allow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// Time left before the breaker admits probes; `None` when it is already
    /// half-open and all probe slots are taken.
    pub retry_after: Option<Duration>,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.retry_after {
            Some(d) => write!(f, "circuit open; retry in {:.1}s", d.as_secs_f64()),
            None => f.write_str("circuit half-open; probe already in flight"),
        }
    }
}

impl std::error::Error for Rejected {}

/// Number of buckets in the failure-rate window; the window slides with a
/// granularity of `window / WINDOW_BUCKETS`, in bounded memory.
const WINDOW_BUCKETS: usize = 10;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    epoch: u64,
    calls: u32,
    failures: u32,
}

/// Calls and failures over a sliding time window, bucketed.
#[derive(Debug, Clone)]
struct Window {
    width: Duration,
    origin: Option<Instant>,
    buckets: [Bucket; WINDOW_BUCKETS],
}

impl Window {
    fn new(window: Duration) -> Self {
        // A zero width would divide by zero; one nanosecond means "no memory".
        let per = window / WINDOW_BUCKETS as u32;
        Self { width: per.max(Duration::from_nanos(1)), origin: None, buckets: [Bucket::default(); WINDOW_BUCKETS] }
    }

    fn epoch(&mut self, now: Instant) -> u64 {
        let origin = *self.origin.get_or_insert(now);
        let elapsed = now.saturating_duration_since(origin).as_nanos();
        u64::try_from(elapsed / self.width.as_nanos()).unwrap_or(u64::MAX)
    }

    fn record(&mut self, now: Instant, failed: bool) {
        let epoch = self.epoch(now);
        let slot = &mut self.buckets[(epoch % WINDOW_BUCKETS as u64) as usize];
        if slot.epoch != epoch {
            *slot = Bucket { epoch, calls: 0, failures: 0 };
        }
        slot.calls = slot.calls.saturating_add(1);
        if failed {
            slot.failures = slot.failures.saturating_add(1);
        }
    }

    /// (calls, failures) in the buckets still inside the window at `now`.
    fn totals(&mut self, now: Instant) -> (u64, u64) {
        let epoch = self.epoch(now);
        let oldest = epoch.saturating_sub(WINDOW_BUCKETS as u64 - 1);
        self.buckets
            .iter()
            .filter(|b| b.calls > 0 && b.epoch >= oldest && b.epoch <= epoch)
            .fold((0, 0), |(c, f), b| (c + u64::from(b.calls), f + u64::from(b.failures)))
    }

    fn clear(&mut self) {
        self.buckets = [Bucket::default(); WINDOW_BUCKETS];
    }
}

/// The circuit breaker state machine. Not thread-safe by itself: see
/// [`SharedBreaker`].
#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    state: BreakerState,
    /// Bumped on every state change; permits from older generations are stale.
    generation: u64,
    consecutive_failures: u32,
    window: Window,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        let window = Window::new(config.window());
        Self { config, state: BreakerState::Closed, generation: 0, consecutive_failures: 0, window }
    }

    /// The configuration in force.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// The recorded state, without projecting the open timeout (see [`Self::peek`]).
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// The state as callers should see it at `now`: an open breaker whose
    /// timeout has passed reports `HalfOpen { in_flight: 0 }`. Never mutates,
    /// so status pages and eligibility checks cannot steal probe slots.
    pub fn peek(&self, now: Instant) -> BreakerState {
        match self.state {
            BreakerState::Open { since } if self.open_elapsed(since, now) => BreakerState::HalfOpen { in_flight: 0 },
            state => state,
        }
    }

    /// Probes currently admitted while half-open (0 in any other state).
    pub fn half_open_in_flight(&self) -> u32 {
        match self.state {
            BreakerState::HalfOpen { in_flight } => in_flight,
            _ => 0,
        }
    }

    /// Consecutive failures counted while closed.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// The current generation (changes on every state transition).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Asks to send one call. A granted permit reserves a probe slot when
    /// half-open, so it must come back through [`Self::release`].
    pub fn allow(&mut self, now: Instant) -> Result<Permit, Rejected> {
        match self.state {
            BreakerState::Closed => Ok(self.permit()),
            BreakerState::Open { since } => {
                if self.open_elapsed(since, now) {
                    self.transition(BreakerState::HalfOpen { in_flight: 1 });
                    Ok(self.permit())
                } else {
                    let waited = now.saturating_duration_since(since);
                    Err(Rejected { retry_after: Some(self.config.open_timeout().saturating_sub(waited)) })
                }
            }
            BreakerState::HalfOpen { in_flight } => {
                if in_flight < self.max_probes() {
                    self.state = BreakerState::HalfOpen { in_flight: in_flight + 1 };
                    Ok(self.permit())
                } else {
                    Err(Rejected { retry_after: None })
                }
            }
        }
    }

    /// Returns a permit with the call's outcome.
    pub fn release(&mut self, permit: Permit, outcome: Outcome, now: Instant) {
        if permit.generation != self.generation {
            // Issued before the last transition: its slot and its evidence
            // belong to a state that no longer exists.
            return;
        }
        match self.state {
            BreakerState::Closed => match outcome {
                Outcome::Success => {
                    self.consecutive_failures = 0;
                    self.window.record(now, false);
                }
                Outcome::Failure => {
                    self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                    self.window.record(now, true);
                    if self.should_open(now) {
                        self.transition(BreakerState::Open { since: now });
                    }
                }
                Outcome::Ignored => {}
            },
            BreakerState::HalfOpen { in_flight } => match outcome {
                Outcome::Success => self.transition(BreakerState::Closed),
                Outcome::Failure => self.transition(BreakerState::Open { since: now }),
                Outcome::Ignored => {
                    self.state = BreakerState::HalfOpen { in_flight: in_flight.saturating_sub(1) };
                }
            },
            // Entering Open bumps the generation and Open issues no permits,
            // so a current-generation permit cannot meet this state.
            BreakerState::Open { .. } => {}
        }
    }

    fn permit(&self) -> Permit {
        Permit { generation: self.generation }
    }

    fn max_probes(&self) -> u32 {
        self.config.half_open_max_probes.max(1)
    }

    fn open_elapsed(&self, since: Instant, now: Instant) -> bool {
        now.saturating_duration_since(since) >= self.config.open_timeout()
    }

    fn should_open(&mut self, now: Instant) -> bool {
        let threshold = self.config.failure_threshold;
        if threshold > 0 && self.consecutive_failures >= threshold {
            return true;
        }
        let Some(rate) = self.config.failure_rate else {
            return false;
        };
        let (calls, failures) = self.window.totals(now);
        calls > 0 && calls >= u64::from(self.config.min_calls) && failures as f64 >= rate * calls as f64
    }

    fn transition(&mut self, to: BreakerState) {
        self.state = to;
        self.generation = self.generation.wrapping_add(1);
        // Each state starts with fresh evidence.
        self.consecutive_failures = 0;
        self.window.clear();
    }
}

struct SharedInner {
    breaker: Mutex<Breaker>,
    clock: Box<dyn Clock>,
}

/// A [`Breaker`] behind a lock with its own clock; clones share one breaker.
#[derive(Clone)]
pub struct SharedBreaker {
    inner: Arc<SharedInner>,
}

impl fmt::Debug for SharedBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBreaker").field("state", &self.peek()).finish()
    }
}

impl SharedBreaker {
    /// A closed breaker on the system clock.
    pub fn new(config: BreakerConfig) -> Self {
        Self::with_clock(config, SystemClock)
    }

    /// A closed breaker reading time from `clock`.
    pub fn with_clock(config: BreakerConfig, clock: impl Clock) -> Self {
        Self { inner: Arc::new(SharedInner { breaker: Mutex::new(Breaker::new(config)), clock: Box::new(clock) }) }
    }

    /// See [`Breaker::peek`]: reports, never reserves.
    pub fn peek(&self) -> BreakerState {
        let breaker = self.inner.breaker.lock();
        breaker.peek(self.inner.clock.now())
    }

    /// The recorded state (see [`Breaker::state`]).
    pub fn state(&self) -> BreakerState {
        self.inner.breaker.lock().state()
    }

    /// Probes currently admitted while half-open.
    pub fn half_open_in_flight(&self) -> u32 {
        self.inner.breaker.lock().half_open_in_flight()
    }

    /// Admits one call, or `None` if the breaker refuses it.
    pub fn try_acquire(&self) -> Option<BreakerGuard> {
        self.acquire().ok()
    }

    /// Like [`Self::try_acquire`] but says why a call was refused.
    pub fn acquire(&self) -> Result<BreakerGuard, Rejected> {
        let permit = {
            let mut breaker = self.inner.breaker.lock();
            // Read time under the lock so transitions see non-decreasing time.
            breaker.allow(self.inner.clock.now())?
        };
        Ok(BreakerGuard { breaker: self.clone(), permit: Some(permit) })
    }

    fn release(&self, permit: Permit, outcome: Outcome) {
        let mut breaker = self.inner.breaker.lock();
        let now = self.inner.clock.now();
        breaker.release(permit, outcome, now);
    }
}

/// An admitted call. Report it with [`Self::success`] or [`Self::failure`];
/// dropping it unreported (early return, panic, cancellation) releases it as
/// [`Outcome::Ignored`], so no path can leak a probe slot.
#[must_use = "dropping the guard at once releases the call as Ignored"]
pub struct BreakerGuard {
    breaker: SharedBreaker,
    permit: Option<Permit>,
}

impl fmt::Debug for BreakerGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerGuard").field("permit", &self.permit).finish()
    }
}

impl BreakerGuard {
    /// The call succeeded.
    pub fn success(mut self) {
        self.finish(Outcome::Success);
    }

    /// The call failed because of the backend.
    pub fn failure(mut self) {
        self.finish(Outcome::Failure);
    }

    /// Releases with an explicit outcome.
    pub fn release(mut self, outcome: Outcome) {
        self.finish(outcome);
    }

    fn finish(&mut self, outcome: Outcome) {
        if let Some(permit) = self.permit.take() {
            self.breaker.release(permit, outcome);
        }
    }
}

impl Drop for BreakerGuard {
    fn drop(&mut self) {
        self.finish(Outcome::Ignored);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn cfg(threshold: u32, probes: u32) -> BreakerConfig {
        BreakerConfig { failure_threshold: threshold, half_open_max_probes: probes, ..BreakerConfig::default() }
    }

    fn fail(b: &mut Breaker, now: Instant) {
        let p = b.allow(now).expect("closed breaker admits");
        b.release(p, Outcome::Failure, now);
    }

    /// Opens `b` at `t0` and returns the instant its open timeout expires.
    fn open(b: &mut Breaker, t0: Instant) -> Instant {
        while !matches!(b.state(), BreakerState::Open { .. }) {
            fail(b, t0);
        }
        t0 + b.config().open_timeout()
    }

    #[test]
    fn default_config_matches_documented_values() {
        let c = BreakerConfig::default();
        assert_eq!(c.failure_threshold, 5);
        assert_eq!(c.failure_rate, None);
        assert_eq!(c.window(), secs(30));
        assert_eq!(c.min_calls, 10);
        assert_eq!(c.open_timeout(), secs(10));
        assert_eq!(c.half_open_max_probes, 1);
    }

    #[test]
    fn consecutive_failures_open_and_success_resets_the_count() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(3, 1));
        fail(&mut b, t0);
        fail(&mut b, t0);
        let p = b.allow(t0).expect("closed");
        b.release(p, Outcome::Success, t0);
        assert_eq!(b.consecutive_failures(), 0);
        fail(&mut b, t0);
        fail(&mut b, t0);
        assert_eq!(b.state(), BreakerState::Closed);
        fail(&mut b, t0);
        assert_eq!(b.state(), BreakerState::Open { since: t0 });
    }

    #[test]
    fn ignored_outcomes_do_not_count_while_closed() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(1, 1));
        for _ in 0..10 {
            let p = b.allow(t0).expect("closed");
            b.release(p, Outcome::Ignored, t0);
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn open_rejects_with_retry_after_until_timeout_then_half_opens() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(1, 1));
        let ready = open(&mut b, t0);
        let err = b.allow(t0 + secs(4)).expect_err("still open");
        assert_eq!(err.retry_after, Some(secs(6)));
        assert!(err.to_string().contains("retry in 6.0s"));
        let probe = b.allow(ready).expect("probe after timeout");
        assert_eq!(b.state(), BreakerState::HalfOpen { in_flight: 1 });
        let busy = b.allow(ready).expect_err("single probe slot taken");
        assert_eq!(busy.retry_after, None);
        b.release(probe, Outcome::Ignored, ready);
        assert_eq!(b.state(), BreakerState::HalfOpen { in_flight: 0 });
    }

    #[test]
    fn peek_projects_half_open_without_mutating() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(1, 1));
        let ready = open(&mut b, t0);
        assert_eq!(b.peek(t0), BreakerState::Open { since: t0 });
        let generation = b.generation();
        for _ in 0..100 {
            assert_eq!(b.peek(ready), BreakerState::HalfOpen { in_flight: 0 });
        }
        assert_eq!(b.state(), BreakerState::Open { since: t0 });
        assert_eq!(b.generation(), generation);
    }

    #[test]
    fn half_open_success_closes_and_failure_reopens() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(1, 1));
        let ready = open(&mut b, t0);
        let probe = b.allow(ready).expect("probe");
        b.release(probe, Outcome::Failure, ready);
        assert_eq!(b.state(), BreakerState::Open { since: ready });

        let ready2 = ready + b.config().open_timeout();
        let probe = b.allow(ready2).expect("probe");
        b.release(probe, Outcome::Success, ready2);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.consecutive_failures(), 0);
    }

    #[test]
    fn half_open_admits_at_most_max_probes() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(1, 3));
        let ready = open(&mut b, t0);
        let permits: Vec<_> = (0..3).map(|_| b.allow(ready).expect("probe")).collect();
        assert!(b.allow(ready).is_err());
        assert_eq!(b.half_open_in_flight(), 3);
        for p in permits {
            b.release(p, Outcome::Ignored, ready);
        }
        assert_eq!(b.half_open_in_flight(), 0);
    }

    #[test]
    fn zero_max_probes_still_admits_one() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(1, 0));
        let ready = open(&mut b, t0);
        let p = b.allow(ready).expect("one probe");
        assert!(b.allow(ready).is_err());
        b.release(p, Outcome::Success, ready);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn stale_permits_do_not_corrupt_the_new_state() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(2, 2));
        // Two calls in flight while closed; a third pair of failures opens it.
        let old_a = b.allow(t0).expect("closed");
        let old_b = b.allow(t0).expect("closed");
        let ready = open(&mut b, t0);
        let probe1 = b.allow(ready).expect("probe");
        let probe2 = b.allow(ready).expect("probe");
        // Stale closed-era outcomes must not reopen or free probe slots.
        b.release(old_a, Outcome::Failure, ready);
        b.release(old_b, Outcome::Ignored, ready);
        assert_eq!(b.state(), BreakerState::HalfOpen { in_flight: 2 });
        // First probe closes; the other probe is now stale and ignored.
        b.release(probe1, Outcome::Success, ready);
        assert_eq!(b.state(), BreakerState::Closed);
        b.release(probe2, Outcome::Failure, ready);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.consecutive_failures(), 0);
    }

    #[test]
    fn failure_rate_opens_only_after_min_calls() {
        let t0 = Instant::now();
        let mut b = Breaker::new(BreakerConfig {
            failure_threshold: 0,
            failure_rate: Some(0.5),
            min_calls: 4,
            ..BreakerConfig::default()
        });
        // F S F: 2/3 failures but under min_calls.
        for outcome in [Outcome::Failure, Outcome::Success, Outcome::Failure] {
            let p = b.allow(t0).expect("closed");
            b.release(p, outcome, t0);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        let p = b.allow(t0).expect("closed");
        b.release(p, Outcome::Success, t0);
        assert_eq!(b.state(), BreakerState::Closed, "rate is only checked on failure");
        let p = b.allow(t0).expect("closed");
        b.release(p, Outcome::Failure, t0); // 3/5 = 0.6 >= 0.5
        assert!(matches!(b.state(), BreakerState::Open { .. }));
    }

    #[test]
    fn failure_rate_window_forgets_old_calls() {
        let t0 = Instant::now();
        let mut b = Breaker::new(BreakerConfig {
            failure_threshold: 0,
            failure_rate: Some(0.5),
            min_calls: 4,
            window_ms: 10_000,
            ..BreakerConfig::default()
        });
        for _ in 0..3 {
            let p = b.allow(t0).expect("closed");
            b.release(p, Outcome::Failure, t0);
        }
        // Well past the window: the three old failures no longer count.
        let later = t0 + secs(60);
        for _ in 0..3 {
            let p = b.allow(later).expect("closed");
            b.release(p, Outcome::Success, later);
        }
        let p = b.allow(later).expect("closed");
        b.release(p, Outcome::Failure, later); // 1/4 in window
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn zero_window_does_not_panic() {
        let t0 = Instant::now();
        let mut b = Breaker::new(BreakerConfig {
            failure_threshold: 0,
            failure_rate: Some(1.0),
            min_calls: 1,
            window_ms: 0,
            ..BreakerConfig::default()
        });
        let p = b.allow(t0).expect("closed");
        b.release(p, Outcome::Failure, t0);
        assert!(matches!(b.state(), BreakerState::Open { .. }));
    }

    #[test]
    fn shared_breaker_guard_paths_release_their_probe() {
        let clock = ManualClock::new();
        let shared = SharedBreaker::with_clock(cfg(1, 1), clock.clone());
        shared.try_acquire().expect("closed").failure();
        assert_eq!(shared.state().name(), "open");
        assert!(shared.try_acquire().is_none());
        let err = shared.acquire().expect_err("open");
        assert_eq!(err.retry_after, Some(secs(10)));

        clock.advance(secs(10));
        assert_eq!(shared.peek(), BreakerState::HalfOpen { in_flight: 0 });
        let probe = shared.try_acquire().expect("probe");
        assert_eq!(shared.half_open_in_flight(), 1);
        assert!(shared.try_acquire().is_none());
        drop(probe); // unreported: Ignored
        assert_eq!(shared.half_open_in_flight(), 0);

        shared.try_acquire().expect("probe").success();
        assert_eq!(shared.state(), BreakerState::Closed);
        assert!(format!("{shared:?}").contains("Closed"));
    }
}
