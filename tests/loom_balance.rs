//! Loom model: least-connections in-flight counters return to zero after
//! concurrent picks and releases.
#![cfg(loom)]

use loom::thread;

use mcprouter::balance::{Balancer, SharedBalancer, Strategy};

#[test]
fn least_connections_counters_return_to_zero() {
    loom::model(|| {
        let balancer = SharedBalancer::new(Balancer::new(Strategy::LeastConnections, vec![1, 1]));
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let balancer = balancer.clone();
                thread::spawn(move || {
                    let guard = balancer.pick(None, |_| true).unwrap();
                    // Our own pick is counted; at most 4 picks exist at once.
                    assert!(balancer.in_flight(guard.index()) >= 1);
                    assert!(balancer.in_flight_all().iter().sum::<usize>() <= 4);
                    drop(guard);
                })
            })
            .collect();
        {
            // Two overlapping picks here, the second pinned to the same
            // candidate, so counts above 1 are exercised too.
            let first = balancer.pick(None, |_| true).unwrap();
            let second = balancer.pick(None, |i| i == first.index()).unwrap();
            assert_eq!(second.index(), first.index());
            assert!(balancer.in_flight(first.index()) >= 2);
        }
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(balancer.in_flight_all(), [0, 0]);
    });
}
