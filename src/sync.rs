//! Synchronization shim: the real primitives normally, loom's under `--cfg loom`.
//!
//! Production code imports its locks, `Arc` and atomics from here only, so the
//! loom models in `tests/loom_*.rs` exercise exactly the code that ships.

#[cfg(loom)]
pub use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(loom)]
pub use loom::sync::{Arc, MutexGuard};

#[cfg(loom)]
pub use loom::sync::Condvar;
#[cfg(not(loom))]
pub use parking_lot::{Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
pub use std::sync::Arc;
#[cfg(not(loom))]
pub use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// A loom mutex with parking_lot's interface: `lock()` hands back the guard.
///
/// Poisoning is ignored on purpose: parking_lot has none, and code written
/// against it must behave the same under the model checker.
#[cfg(loom)]
#[derive(Debug, Default)]
pub struct Mutex<T>(loom::sync::Mutex<T>);

#[cfg(loom)]
impl<T> Mutex<T> {
    /// Creates an unlocked mutex holding `value`.
    pub fn new(value: T) -> Self {
        Self(loom::sync::Mutex::new(value))
    }

    /// Blocks until the lock is held and returns its guard.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Consumes the mutex and returns the value it protected.
    pub fn into_inner(self) -> T {
        self.0.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Waits on `cv` until notified or `until` passes (`None`: no deadline); true if it timed out.
#[cfg(not(loom))]
pub fn wait<'a, T>(
    cv: &Condvar,
    mut guard: MutexGuard<'a, T>,
    until: Option<std::time::Instant>,
) -> (MutexGuard<'a, T>, bool) {
    let timed_out = match until {
        Some(t) => cv.wait_until(&mut guard, t).timed_out(),
        None => {
            cv.wait(&mut guard);
            false
        }
    };
    (guard, timed_out)
}

/// Loom has no clock: a wait with a deadline is modelled as one whose deadline passes at
/// once, so the model explores the waiter giving up at every point it could.
#[cfg(loom)]
pub fn wait<'a, T>(
    cv: &Condvar,
    guard: MutexGuard<'a, T>,
    until: Option<std::time::Instant>,
) -> (MutexGuard<'a, T>, bool) {
    match until {
        Some(_) => (guard, true),
        None => (cv.wait(guard).unwrap_or_else(std::sync::PoisonError::into_inner), false),
    }
}
