//! Loom models of the generation switch (the shipped `Generations`, whose lock and
//! counters come from `crate::sync`, so loom drives the real code).
//!
//! A generation's value stands for the backends a view routes to; each backend is a flag
//! that the reloader sets when it stops it, following `Core::reload` and `Core::drain`:
//! switch to the new view, wait until the old generation (and every older one) has no
//! call left, then stop what only the old view used. A caller follows
//! `Session::handle_one`: enter once, use the backends of the view it got, leave.
//!
//! Checked in every interleaving: every call gets a view (none is lost), no call ever
//! uses a stopped backend, and the drain ends.
#![cfg(loom)]

use loom::thread;

use mcprouter::generation::Generations;
use mcprouter::sync::{Arc, AtomicBool, Ordering};

/// A view: its backends' "stopped" flags.
struct View {
    backends: Vec<Arc<AtomicBool>>,
}

fn backend() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(false))
}

/// One call: enter, check each backend it routes to is running, leave. Returns the
/// generation it saw.
fn call(g: &Generations<View>) -> u64 {
    let entered = g.enter();
    for b in &entered.backends {
        assert!(!b.load(Ordering::Acquire), "a call used a stopped backend");
    }
    entered.generation().number()
}

/// Waits for generations up to `number` to drain (yielding to the model), then stops `gone`.
fn drain_then_stop(g: &Generations<View>, number: u64, gone: &[Arc<AtomicBool>]) {
    while !g.drained_through(number) {
        thread::yield_now();
    }
    for b in gone {
        b.store(true, Ordering::Release);
    }
}

#[test]
fn a_call_never_uses_a_backend_the_switch_stopped() {
    loom::model(|| {
        let (kept, removed) = (backend(), backend());
        let g = Arc::new(Generations::new(View { backends: vec![Arc::clone(&kept), Arc::clone(&removed)] }));
        let callers: Vec<_> = (0..2)
            .map(|_| {
                let g = Arc::clone(&g);
                thread::spawn(move || call(&g))
            })
            .collect();
        let old = g.switch(View { backends: vec![Arc::clone(&kept)] });
        drain_then_stop(&g, old.number(), &[Arc::clone(&removed)]);
        for c in callers {
            let seen = c.join().expect("a caller");
            assert!(seen == 1 || seen == 2, "every call got a whole view");
        }
        assert!(removed.load(Ordering::Acquire) && !kept.load(Ordering::Acquire));
        assert_eq!(g.draining(), 0);
        assert_eq!(g.current().in_flight(), 0);
    });
}

#[test]
fn a_drain_waits_for_calls_of_older_generations_too() {
    // Generation 1 uses a and b; 2 uses b only; 3 uses neither. Stopping b after
    // generation 2 drains must also wait for a call still in generation 1.
    loom::model(|| {
        let (a, b, c) = (backend(), backend(), backend());
        let g = Arc::new(Generations::new(View { backends: vec![Arc::clone(&a), Arc::clone(&b)] }));
        let caller = {
            let g = Arc::clone(&g);
            thread::spawn(move || call(&g))
        };
        let first = g.switch(View { backends: vec![Arc::clone(&b)] });
        let second = g.switch(View { backends: vec![Arc::clone(&c)] });
        let stopper = {
            let g = Arc::clone(&g);
            let b = Arc::clone(&b);
            let n = second.number();
            thread::spawn(move || drain_then_stop(&g, n, &[b]))
        };
        drain_then_stop(&g, first.number(), &[Arc::clone(&a)]);
        stopper.join().expect("the second drain");
        let seen = caller.join().expect("the caller");
        assert!((1..=3).contains(&seen));
        assert!(a.load(Ordering::Acquire) && b.load(Ordering::Acquire) && !c.load(Ordering::Acquire));
    });
}
