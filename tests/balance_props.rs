//! Distribution properties of the balancer, checked over generated weights and keys.
#![cfg(not(loom))]

use mcprouter::balance::{Balancer, Strategy, fnv1a64};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Over any whole number of cycles, smooth weighted round robin picks each candidate
    /// exactly in proportion to its weight, and never the same one more than its weight
    /// allows in a row.
    #[test]
    fn swrr_picks_in_proportion_to_weights(weights in prop::collection::vec(1u32..10, 1..6), cycles in 1usize..4) {
        let total: u32 = weights.iter().sum();
        let mut b = Balancer::new(Strategy::WeightedRoundRobin, weights.clone());
        let mut counts = vec![0u32; weights.len()];
        for _ in 0..(total as usize * cycles) {
            let i = b.pick(None, |_| true).unwrap();
            counts[i] += 1;
            b.release(i);
        }
        let expected: Vec<u32> = weights.iter().map(|w| w * cycles as u32).collect();
        prop_assert_eq!(counts, expected);
    }

    /// Round robin spreads evenly over the eligible candidates and never picks an ineligible one.
    #[test]
    fn round_robin_is_even_over_eligible(n in 1usize..8, out in 0usize..8, rounds in 1usize..5) {
        let mut b = Balancer::new(Strategy::RoundRobin, vec![1; n]);
        let eligible = |i: usize| n == 1 || i != out % n;
        let live = (0..n).filter(|i| eligible(*i)).count();
        let mut counts = vec![0usize; n];
        for _ in 0..live * rounds {
            let i = b.pick(None, eligible).unwrap();
            prop_assert!(eligible(i));
            counts[i] += 1;
            b.release(i);
        }
        for i in (0..n).filter(|i| eligible(*i)) {
            prop_assert_eq!(counts[i], rounds);
        }
    }

    /// Sticky keeps a client on one candidate, and when another candidate leaves, only the
    /// clients that were on it move.
    #[test]
    fn sticky_is_stable_and_moves_only_the_displaced(n in 2usize..8, gone in 0usize..8, clients in prop::collection::vec(any::<u64>(), 1..50)) {
        let gone = gone % n;
        let mut b = Balancer::new(Strategy::Sticky, vec![1; n]);
        for c in &clients {
            let key = fnv1a64(&c.to_le_bytes());
            let home = b.pick(Some(key), |_| true).unwrap();
            b.release(home);
            let again = b.pick(Some(key), |_| true).unwrap();
            b.release(again);
            prop_assert_eq!(home, again);
            let moved = b.pick(Some(key), |i| i != gone).unwrap();
            b.release(moved);
            if home != gone {
                prop_assert_eq!(moved, home);
            } else {
                prop_assert_ne!(moved, gone);
            }
        }
    }

    /// Least connections always picks a candidate with the fewest calls in flight.
    #[test]
    fn least_connections_picks_the_least_loaded(n in 1usize..6, picks in 1usize..30) {
        let mut b = Balancer::new(Strategy::LeastConnections, vec![1; n]);
        for _ in 0..picks {
            let min = (0..n).map(|i| b.in_flight(i)).min().unwrap();
            let i = b.pick(None, |_| true).unwrap();
            prop_assert_eq!(b.in_flight(i), min + 1);
        }
        prop_assert_eq!(b.total_in_flight(), picks);
    }
}
