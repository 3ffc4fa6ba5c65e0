//! The per-call cost of the resilience machinery on its own: a breaker reservation and
//! release, and a balancer pick and release, single-threaded and under 2-thread contention.
//!
//! `cargo run --release --example resilience_cost`

use std::time::Instant;

use mcprouter::balance::{Balancer, SharedBalancer, Strategy};
use mcprouter::breaker::{BreakerConfig, SharedBreaker};

const N: u32 = 2_000_000;

fn per_op(threads: u32, f: impl Fn() + Sync) -> f64 {
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..N {
                    f();
                }
            });
        }
    });
    t.elapsed().as_nanos() as f64 / f64::from(N * threads)
}

fn main() {
    let breaker = SharedBreaker::new(BreakerConfig::default());
    let breaker_op = || {
        if let Some(g) = breaker.try_acquire() {
            g.success();
        }
    };
    for strategy in [Strategy::RoundRobin, Strategy::WeightedRoundRobin, Strategy::LeastConnections, Strategy::Sticky] {
        let bal = SharedBalancer::new(Balancer::new(strategy, vec![5, 1, 1, 1]));
        let op = || drop(bal.pick(Some(0x9e37_79b9), |_| true));
        println!(
            "balancer {:<22} pick+release: {:>6.1} ns (1 thread), {:>6.1} ns (2 threads)",
            strategy.as_str(),
            per_op(1, op),
            per_op(2, op)
        );
    }
    println!(
        "breaker try_acquire+success:                {:>6.1} ns (1 thread), {:>6.1} ns (2 threads)",
        per_op(1, breaker_op),
        per_op(2, breaker_op)
    );
    println!(
        "breaker peek:                               {:>6.1} ns (1 thread)",
        per_op(1, || {
            let _ = breaker.peek();
        })
    );
}
