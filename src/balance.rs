//! Load balancing over N candidates (backends), by index.
//!
//! [`Balancer`] is the pure state machine; [`SharedBalancer`] puts it behind a
//! lock and returns a [`PickGuard`] whose drop releases the pick, so in-flight
//! counts cannot drift on error or panic paths.

use std::fmt;
use std::str::FromStr;

pub use crate::fnv::fnv1a64;
use crate::sync::{Arc, Mutex};

/// How a [`Balancer`] chooses among eligible candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Strategy {
    /// Each eligible candidate in turn.
    #[default]
    RoundRobin,
    /// nginx's smooth weighted round robin.
    WeightedRoundRobin,
    /// Fewest calls in flight; ties go round robin.
    LeastConnections,
    /// Same key, same candidate (rendezvous hashing); round robin without a key.
    Sticky,
}

impl Strategy {
    /// Every configuration spelling, in declaration order.
    pub const NAMES: &'static [&'static str] = &["round_robin", "weighted_round_robin", "least_connections", "sticky"];

    /// The configuration spelling: `round_robin`, `weighted_round_robin`,
    /// `least_connections` or `sticky`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::RoundRobin => "round_robin",
            Self::WeightedRoundRobin => "weighted_round_robin",
            Self::LeastConnections => "least_connections",
            Self::Sticky => "sticky",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A strategy name that [`Strategy::from_str`] does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseStrategyError(pub String);

impl fmt::Display for ParseStrategyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown load-balancing strategy {:?} (expected round_robin, \
             weighted_round_robin, least_connections or sticky)",
            self.0
        )
    }
}

impl std::error::Error for ParseStrategyError {}

/// From the config spelling, via [`FromStr`] so there is one list of names. An unknown
/// name is serde's "unknown variant" error listing [`Strategy::NAMES`], which the config
/// loader reports with the field's path and line (without the value).
impl<'de> serde::Deserialize<'de> for Strategy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(|_| serde::de::Error::unknown_variant(&name, Self::NAMES))
    }
}

/// The schema of what the `Deserialize` impl above accepts: one of [`Strategy::NAMES`].
impl schemars::JsonSchema for Strategy {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Strategy".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "How a pool balances: round_robin (each in turn), weighted_round_robin \
                (nginx's smooth weighted round robin), least_connections (fewest calls in flight) \
                or sticky (same client, same backend).",
            "type": "string",
            "enum": Self::NAMES,
        })
    }
}

impl FromStr for Strategy {
    type Err = ParseStrategyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "round_robin" => Ok(Self::RoundRobin),
            "weighted_round_robin" => Ok(Self::WeightedRoundRobin),
            "least_connections" => Ok(Self::LeastConnections),
            "sticky" => Ok(Self::Sticky),
            other => Err(ParseStrategyError(other.to_owned())),
        }
    }
}

/// Rendezvous score of candidate `idx` for `key`: `fnv1a64(key ‖ idx)`,
/// both as little-endian u64.
fn rendezvous_score(key: u64, idx: usize) -> u64 {
    let mut buf = [0u8; 16];
    buf[..8].copy_from_slice(&key.to_le_bytes());
    buf[8..].copy_from_slice(&(idx as u64).to_le_bytes());
    fnv1a64(&buf)
}

/// Chooses a candidate index per call and counts calls in flight.
#[derive(Debug, Clone)]
pub struct Balancer {
    strategy: Strategy,
    weights: Vec<u32>,
    /// Smooth-WRR running weights (nginx `current_weight`).
    current: Vec<i64>,
    in_flight: Vec<usize>,
    /// Where the next round-robin scan starts.
    cursor: usize,
}

impl Balancer {
    /// A balancer over `weights.len()` candidates. Weights matter only to
    /// [`Strategy::WeightedRoundRobin`]; a weight of 0 counts as 1, as nginx
    /// does not allow zero weights either.
    pub fn new(strategy: Strategy, weights: Vec<u32>) -> Self {
        let weights: Vec<u32> = weights.into_iter().map(|w| w.max(1)).collect();
        let n = weights.len();
        Self { strategy, weights, current: vec![0; n], in_flight: vec![0; n], cursor: 0 }
    }

    /// The strategy in use.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// Number of candidates.
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// True when there are no candidates.
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// Weights in force (zeros raised to 1).
    pub fn weights(&self) -> &[u32] {
        &self.weights
    }

    /// Calls in flight on candidate `idx` (0 when out of range).
    pub fn in_flight(&self, idx: usize) -> usize {
        self.in_flight.get(idx).copied().unwrap_or(0)
    }

    /// Calls in flight over all candidates.
    pub fn total_in_flight(&self) -> usize {
        self.in_flight.iter().sum()
    }

    /// Picks an eligible candidate and counts it in flight; `None` when no
    /// candidate is eligible. Pair every `Some` with one [`Self::release`].
    /// `sticky_key` is used by [`Strategy::Sticky`] only.
    pub fn pick(&mut self, sticky_key: Option<u64>, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let idx = match (self.strategy, sticky_key) {
            (Strategy::RoundRobin, _) | (Strategy::Sticky, None) => self.pick_round_robin(&eligible),
            (Strategy::WeightedRoundRobin, _) => self.pick_weighted(&eligible),
            (Strategy::LeastConnections, _) => self.pick_least_connections(&eligible),
            (Strategy::Sticky, Some(key)) => self.pick_rendezvous(key, &eligible),
        }?;
        self.in_flight[idx] += 1;
        Some(idx)
    }

    /// Ends a call picked on `idx`. Extra releases saturate at 0 rather than
    /// wrap, so one bug cannot poison least-connections forever.
    pub fn release(&mut self, idx: usize) {
        if let Some(n) = self.in_flight.get_mut(idx) {
            *n = n.saturating_sub(1);
        }
    }

    /// Candidate indices in scan order starting at the cursor.
    fn scan_order(&self) -> impl Iterator<Item = usize> + use<> {
        let n = self.len();
        let start = if n == 0 { 0 } else { self.cursor % n };
        (0..n).map(move |i| (start + i) % n)
    }

    fn advance_cursor(&mut self, picked: usize) {
        self.cursor = picked.wrapping_add(1);
    }

    fn pick_round_robin(&mut self, eligible: &impl Fn(usize) -> bool) -> Option<usize> {
        let idx = self.scan_order().find(|&i| eligible(i))?;
        self.advance_cursor(idx);
        Some(idx)
    }

    /// nginx `ngx_http_upstream_get_peer`: every eligible peer gains its
    /// weight, the largest running weight wins (first on ties) and pays back
    /// the total. Ineligible peers are skipped and do not gain.
    fn pick_weighted(&mut self, eligible: &impl Fn(usize) -> bool) -> Option<usize> {
        let mut best: Option<usize> = None;
        let mut total: i64 = 0;
        for i in 0..self.len() {
            if !eligible(i) {
                continue;
            }
            let w = i64::from(self.weights[i]);
            self.current[i] += w;
            total += w;
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let best = best?;
        self.current[best] -= total;
        Some(best)
    }

    fn pick_least_connections(&mut self, eligible: &impl Fn(usize) -> bool) -> Option<usize> {
        let mut best: Option<usize> = None;
        for i in self.scan_order() {
            if eligible(i) && best.is_none_or(|b| self.in_flight[i] < self.in_flight[b]) {
                best = Some(i);
            }
        }
        let best = best?;
        self.advance_cursor(best);
        Some(best)
    }

    /// Highest-random-weight hashing: removing one candidate moves only the
    /// keys that candidate owned.
    fn pick_rendezvous(&self, key: u64, eligible: &impl Fn(usize) -> bool) -> Option<usize> {
        (0..self.len()).filter(|&i| eligible(i)).max_by_key(|&i| (rendezvous_score(key, i), std::cmp::Reverse(i)))
    }
}

/// A [`Balancer`] behind a lock; clones share one balancer.
#[derive(Clone)]
pub struct SharedBalancer {
    inner: Arc<Mutex<Balancer>>,
}

impl fmt::Debug for SharedBalancer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBalancer").field("balancer", &*self.inner.lock()).finish()
    }
}

impl SharedBalancer {
    /// Shares `balancer`.
    pub fn new(balancer: Balancer) -> Self {
        Self { inner: Arc::new(Mutex::new(balancer)) }
    }

    /// Picks a candidate; the guard releases it when dropped.
    ///
    /// `eligible` runs with the balancer locked: it must not touch this
    /// balancer, and any lock it takes (a breaker's `peek`, say) must never be
    /// held by code that then picks or drops a [`PickGuard`].
    pub fn pick(&self, sticky_key: Option<u64>, eligible: impl Fn(usize) -> bool) -> Option<PickGuard> {
        let idx = self.inner.lock().pick(sticky_key, eligible)?;
        Some(PickGuard { balancer: self.clone(), idx })
    }

    /// Calls in flight on candidate `idx`.
    pub fn in_flight(&self, idx: usize) -> usize {
        self.inner.lock().in_flight(idx)
    }

    /// Calls in flight per candidate, for status output.
    pub fn in_flight_all(&self) -> Vec<usize> {
        let balancer = self.inner.lock();
        (0..balancer.len()).map(|i| balancer.in_flight(i)).collect()
    }

    /// The strategy in use.
    pub fn strategy(&self) -> Strategy {
        self.inner.lock().strategy()
    }

    /// Number of candidates.
    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }

    /// True when there are no candidates.
    pub fn is_empty(&self) -> bool {
        self.inner.lock().is_empty()
    }
}

/// A picked candidate, counted in flight until this guard drops.
#[must_use = "dropping the guard at once ends the call it stands for"]
pub struct PickGuard {
    balancer: SharedBalancer,
    idx: usize,
}

impl PickGuard {
    /// The candidate picked.
    pub fn index(&self) -> usize {
        self.idx
    }
}

impl fmt::Debug for PickGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PickGuard").field("idx", &self.idx).finish()
    }
}

impl Drop for PickGuard {
    fn drop(&mut self) {
        self.balancer.inner.lock().release(self.idx);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn all(_: usize) -> bool {
        true
    }

    fn picks(b: &mut Balancer, n: usize, eligible: impl Fn(usize) -> bool) -> Vec<usize> {
        (0..n)
            .map(|_| {
                let i = b.pick(None, &eligible).expect("a candidate");
                b.release(i);
                i
            })
            .collect()
    }

    #[test]
    fn strategy_parses_and_displays_its_config_names() {
        for s in [Strategy::RoundRobin, Strategy::WeightedRoundRobin, Strategy::LeastConnections, Strategy::Sticky] {
            assert_eq!(s.as_str().parse::<Strategy>(), Ok(s));
            assert_eq!(s.to_string(), s.as_str());
        }
        let err = "random".parse::<Strategy>().expect_err("unknown");
        assert!(err.to_string().contains("\"random\""));
        let parsed: Vec<Strategy> = Strategy::NAMES.iter().map(|n| n.parse().expect("a listed name")).collect();
        assert_eq!(
            parsed,
            [Strategy::RoundRobin, Strategy::WeightedRoundRobin, Strategy::LeastConnections, Strategy::Sticky]
        );
    }

    #[test]
    fn strategy_deserializes_from_its_config_names_only() {
        let s: Strategy = serde_json::from_str("\"least_connections\"").expect("known");
        assert_eq!(s, Strategy::LeastConnections);
        let e = serde_json::from_str::<Strategy>("\"RoundRobin\"").expect_err("case matters").to_string();
        for name in Strategy::NAMES {
            assert!(e.contains(name), "{e}");
        }
    }

    #[test]
    fn round_robin_cycles_and_skips_ineligible() {
        let mut b = Balancer::new(Strategy::RoundRobin, vec![1; 3]);
        assert_eq!(picks(&mut b, 6, all), [0, 1, 2, 0, 1, 2]);
        assert_eq!(picks(&mut b, 4, |i| i != 1), [0, 2, 0, 2]);
    }

    #[test]
    fn smooth_weighted_round_robin_matches_nginx_5_1_1() {
        let mut b = Balancer::new(Strategy::WeightedRoundRobin, vec![5, 1, 1]);
        let names: String = picks(&mut b, 21, all).into_iter().map(|i| (b'a' + i as u8) as char).collect();
        assert_eq!(names, "aabacaa".repeat(3));
    }

    #[test]
    fn weighted_round_robin_honours_weights_among_eligible() {
        let mut b = Balancer::new(Strategy::WeightedRoundRobin, vec![3, 1, 2]);
        let mut counts = [0; 3];
        for i in picks(&mut b, 600, |i| i != 1) {
            counts[i] += 1;
        }
        assert_eq!(counts, [360, 0, 240]);
        let mut b = Balancer::new(Strategy::WeightedRoundRobin, vec![0, 0]);
        assert_eq!(b.weights(), [1, 1]);
        assert_eq!(picks(&mut b, 4, all), [0, 1, 0, 1]);
    }

    #[test]
    fn least_connections_prefers_fewest_in_flight_with_round_robin_ties() {
        let mut b = Balancer::new(Strategy::LeastConnections, vec![1; 3]);
        // Nothing released: ties cycle 0, 1, 2, then all equal again.
        let held: Vec<usize> = (0..6).map(|_| b.pick(None, all).expect("pick")).collect();
        assert_eq!(held, [0, 1, 2, 0, 1, 2]);
        b.release(1);
        assert_eq!(b.pick(None, all), Some(1));
        b.release(2);
        b.release(2);
        assert_eq!(b.pick(None, all), Some(2));
        assert_eq!(b.pick(None, |i| i == 0), Some(0));
        assert_eq!((b.in_flight(0), b.in_flight(1), b.in_flight(2)), (3, 2, 1));
        assert_eq!(b.total_in_flight(), 6);
    }

    #[test]
    fn every_strategy_counts_in_flight() {
        for s in [Strategy::RoundRobin, Strategy::WeightedRoundRobin, Strategy::LeastConnections, Strategy::Sticky] {
            let mut b = Balancer::new(s, vec![2, 1]);
            let held: Vec<usize> = (0..10).map(|k| b.pick(Some(k), all).expect("pick")).collect();
            assert_eq!(b.total_in_flight(), 10, "{s}");
            for i in held {
                b.release(i);
            }
            assert_eq!(b.total_in_flight(), 0, "{s}");
            b.release(0);
            b.release(99);
            assert_eq!(b.in_flight(0), 0, "release saturates");
            assert_eq!(b.in_flight(99), 0);
        }
    }

    #[test]
    fn empty_or_all_ineligible_yields_none() {
        for s in [Strategy::RoundRobin, Strategy::WeightedRoundRobin, Strategy::LeastConnections, Strategy::Sticky] {
            let mut empty = Balancer::new(s, vec![]);
            assert!(empty.is_empty());
            assert_eq!(empty.pick(Some(1), all), None);
            let mut b = Balancer::new(s, vec![1; 4]);
            assert_eq!(b.pick(Some(1), |_| false), None);
            assert_eq!(b.pick(None, |_| false), None);
            assert_eq!(b.total_in_flight(), 0);
        }
    }

    #[test]
    fn sticky_same_key_same_candidate_and_spreads_keys() {
        let mut b = Balancer::new(Strategy::Sticky, vec![1; 4]);
        let mut counts = [0usize; 4];
        for client in 0..4000u32 {
            let key = fnv1a64(format!("client-{client}").as_bytes());
            let first = b.pick(Some(key), all).expect("pick");
            let again = b.pick(Some(key), all).expect("pick");
            assert_eq!(first, again);
            b.release(first);
            b.release(again);
            counts[first] += 1;
        }
        // Each of 4 candidates should own roughly a quarter of the keys.
        for c in counts {
            assert!((700..=1300).contains(&c), "uneven spread {counts:?}");
        }
    }

    #[test]
    fn sticky_fallback_moves_only_the_keys_of_the_missing_candidate() {
        let n = 5;
        let mut b = Balancer::new(Strategy::Sticky, vec![1; n]);
        let keys: Vec<u64> = (0..2000u32).map(|c| fnv1a64(format!("session-{c}").as_bytes())).collect();
        let before: Vec<usize> = keys.iter().map(|&k| b.pick(Some(k), all).expect("pick")).collect();
        for out in 0..n {
            let mut moved_to = vec![0usize; n];
            for (&k, &was) in keys.iter().zip(&before) {
                let now = b.pick(Some(k), |i| i != out).expect("pick");
                b.release(now);
                if was == out {
                    assert_ne!(now, out);
                    moved_to[now] += 1;
                } else {
                    assert_eq!(now, was, "a key not owned by {out} moved");
                }
            }
            // The orphaned keys spread over the survivors rather than piling on one.
            assert!(moved_to.iter().filter(|&&m| m > 0).count() >= n - 2, "{moved_to:?}");
        }
        // Sticky without a key degrades to round robin.
        assert_eq!(picks(&mut b, 3, all), [0, 1, 2]);
    }

    #[test]
    fn shared_balancer_guard_releases_on_drop() {
        let shared = SharedBalancer::new(Balancer::new(Strategy::LeastConnections, vec![1; 2]));
        let a = shared.pick(None, all).expect("pick");
        let b = shared.pick(None, all).expect("pick");
        assert_eq!((a.index(), b.index()), (0, 1));
        assert_eq!(shared.in_flight_all(), [1, 1]);
        drop(a);
        assert_eq!(shared.pick(None, all).map(|g| g.index()), Some(0));
        drop(b);
        assert_eq!(shared.in_flight_all(), [0, 0]);
        assert_eq!(shared.len(), 2);
        assert!(!shared.is_empty());
        assert_eq!(shared.strategy(), Strategy::LeastConnections);
    }
}
