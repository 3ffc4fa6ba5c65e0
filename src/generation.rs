//! Generations of a value that is replaced whole (the router's view of its config and
//! backends), with the calls in flight counted per generation so that what a replaced
//! generation alone used can be stopped once nothing uses it any more.
//!
//! The contract, model-checked in `tests/loom_reload.rs`:
//! - [`Generations::enter`] hands a call exactly one generation, and the call keeps it
//!   until its [`Entered`] drops: it sees the old value or the new one, never a mix.
//! - Entering and switching take the same lock, so once [`Generations::switch`] returns no
//!   call can enter the old generation: its count only falls from then on.
//! - [`Generations::drained_through`] is true once every generation up to `number` that
//!   was switched away has no call left. A call of an older generation may use what a
//!   newer one dropped, so stopping that must wait for every older one too.
//!
//! The lock and counters come from `crate::sync`, so the model checks the shipped code.

use crate::sync::{Arc, AtomicUsize, Mutex, Ordering};

/// One generation: its number (1 for the first), its value and its calls in flight.
pub struct Generation<V> {
    number: u64,
    value: V,
    calls: AtomicUsize,
}

impl<V> Generation<V> {
    /// 1 for the first generation, one more per switch.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// The value this generation holds.
    pub fn value(&self) -> &V {
        &self.value
    }

    /// Calls that entered this generation and have not left it.
    pub fn in_flight(&self) -> usize {
        self.calls.load(Ordering::Acquire)
    }
}

/// A call's hold on one generation; dropping it leaves.
pub struct Entered<V> {
    generation: Arc<Generation<V>>,
}

impl<V> Entered<V> {
    /// The generation the call entered.
    pub fn generation(&self) -> &Arc<Generation<V>> {
        &self.generation
    }
}

impl<V> std::ops::Deref for Entered<V> {
    type Target = V;

    fn deref(&self) -> &V {
        &self.generation.value
    }
}

impl<V> Drop for Entered<V> {
    fn drop(&mut self) {
        self.generation.calls.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The current generation, and those switched away whose calls have not all left.
pub struct Generations<V> {
    inner: Mutex<State<V>>,
}

struct State<V> {
    current: Arc<Generation<V>>,
    retired: Vec<Arc<Generation<V>>>,
}

impl<V> Generations<V> {
    /// Starts at generation 1 holding `value`.
    pub fn new(value: V) -> Self {
        let current = Arc::new(Generation { number: 1, value, calls: AtomicUsize::new(0) });
        Generations { inner: Mutex::new(State { current, retired: Vec::new() }) }
    }

    /// Enters the current generation: the call is counted in it until the guard drops.
    pub fn enter(&self) -> Entered<V> {
        let st = self.inner.lock();
        // Counted under the lock `switch` takes: a switch cannot slip between reading the
        // current generation and counting the call in it.
        st.current.calls.fetch_add(1, Ordering::AcqRel);
        Entered { generation: Arc::clone(&st.current) }
    }

    /// The current generation, without entering it (for status, not for calls).
    pub fn current(&self) -> Arc<Generation<V>> {
        Arc::clone(&self.inner.lock().current)
    }

    /// Makes `value` the current generation and returns the one it replaced, which keeps
    /// the calls already in it.
    pub fn switch(&self, value: V) -> Arc<Generation<V>> {
        let mut st = self.inner.lock();
        let number = st.current.number + 1;
        let new = Arc::new(Generation { number, value, calls: AtomicUsize::new(0) });
        let old = std::mem::replace(&mut st.current, new);
        st.retired.push(Arc::clone(&old));
        old
    }

    /// Whether every switched-away generation numbered `number` or less has no call left.
    /// Drained generations are forgotten: their count cannot rise again.
    pub fn drained_through(&self, number: u64) -> bool {
        let mut st = self.inner.lock();
        st.retired.retain(|g| g.in_flight() > 0);
        !st.retired.iter().any(|g| g.number <= number)
    }

    /// Switched-away generations that still have calls in flight.
    pub fn draining(&self) -> usize {
        let mut st = self.inner.lock();
        st.retired.retain(|g| g.in_flight() > 0);
        st.retired.len()
    }
}
