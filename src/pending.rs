//! Requests sent to one backend and not yet answered, keyed by the id the
//! router assigned them.
//!
//! Completion (reader thread), timeout (timer), cancellation (client) and
//! backend death (drain) all race for the same entry; whichever removes it
//! owns it, so each entry is settled exactly once. The entry's owner hands the
//! outcome to the waiting caller through the call's one-shot [`slot`].

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Instant;

use crate::sync::{self, Arc, AtomicBool, AtomicU64, Condvar, Mutex, Ordering};

/// Ids are handed out in sequence by the map itself, so they need no DoS-resistant hash:
/// the id is its own hash.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

struct Inner<E> {
    entries: HashMap<u64, E, BuildHasherDefault<IdHasher>>,
    /// Set by [`PendingMap::close`]: the backend is gone, refuse new entries.
    closed: bool,
}

/// Pending requests of one backend, keyed by router-assigned id.
pub struct PendingMap<E> {
    next_id: AtomicU64,
    inner: Mutex<Inner<E>>,
}

impl<E> PendingMap<E> {
    /// An empty, open map; the first id handed out is 1.
    pub fn new() -> Self {
        Self { next_id: AtomicU64::new(1), inner: Mutex::new(Inner { entries: HashMap::default(), closed: false }) }
    }

    /// Stores `entry` under a fresh id and returns the id. Stores even after
    /// [`Self::close`]; use [`Self::try_insert`] where that race matters.
    pub fn insert(&self, entry: E) -> u64 {
        let id = self.allocate_id();
        self.inner.lock().entries.insert(id, entry);
        id
    }

    /// Like [`Self::insert`], but hands `entry` back if the map was closed,
    /// so a request racing backend death is failed by its sender instead of
    /// waiting for a timeout nobody else will settle sooner.
    pub fn try_insert(&self, entry: E) -> Result<u64, E> {
        let mut inner = self.inner.lock();
        if inner.closed {
            return Err(entry);
        }
        let id = self.allocate_id();
        inner.entries.insert(id, entry);
        Ok(id)
    }

    /// Like [`Self::try_insert`], and also refuses (with `Err((entry, true))`) when `max`
    /// entries are already pending, in the same lock.
    pub fn try_insert_bounded(&self, entry: E, max: usize) -> Result<u64, (E, bool)> {
        let mut inner = self.inner.lock();
        if inner.closed {
            return Err((entry, false));
        }
        if inner.entries.len() >= max {
            return Err((entry, true));
        }
        let id = self.allocate_id();
        inner.entries.insert(id, entry);
        Ok(id)
    }

    /// Removes and returns the entry for `id`, if nobody else took it first.
    pub fn take(&self, id: u64) -> Option<E> {
        self.inner.lock().entries.remove(&id)
    }

    /// Runs `f` on the entry for `id` without removing it. `f` runs under
    /// the map's lock, so it must be short and must not use this map.
    pub fn with<R>(&self, id: u64, f: impl FnOnce(&E) -> R) -> Option<R> {
        self.inner.lock().entries.get(&id).map(f)
    }

    /// Removes and returns every entry, by ascending id (backend died: fail
    /// them all). The map stays open.
    pub fn drain(&self) -> Vec<(u64, E)> {
        let mut drained: Vec<(u64, E)> = self.inner.lock().entries.drain().collect();
        drained.sort_unstable_by_key(|(id, _)| *id);
        drained
    }

    /// Marks the map closed (later [`Self::try_insert`]s fail) and drains it,
    /// in one step so no entry slips in between.
    pub fn close(&self) -> Vec<(u64, E)> {
        let mut drained: Vec<(u64, E)> = {
            let mut inner = self.inner.lock();
            inner.closed = true;
            inner.entries.drain().collect()
        };
        drained.sort_unstable_by_key(|(id, _)| *id);
        drained
    }

    /// Opens a closed map again (the backend was restarted). Ids keep counting up, so a
    /// late reply from the previous process can never complete a new call.
    pub fn reopen(&self) {
        self.inner.lock().closed = false;
    }

    /// True once [`Self::close`] has run.
    pub fn is_closed(&self) -> bool {
        self.inner.lock().closed
    }

    /// Number of pending entries.
    pub fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }

    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.inner.lock().entries.is_empty()
    }

    fn allocate_id(&self) -> u64 {
        // Relaxed: ids only need to be unique, and the map's lock orders the
        // entries themselves.
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

impl<E> Default for PendingMap<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> fmt::Debug for PendingMap<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.lock();
        f.debug_struct("PendingMap").field("len", &inner.entries.len()).field("closed", &inner.closed).finish()
    }
}

/// A one-shot hand-over of one value from whoever settles a call to the caller waiting for
/// it: the pending entry holds the [`Filler`], the caller the [`Waiter`].
///
/// It replaces a crossbeam `bounded(1)` channel per call: one allocation instead of two, a
/// lock and a condvar that is only signalled when someone waits (callgrind: ~2,000 fewer
/// instructions per call).
pub fn slot<T>() -> (Filler<T>, Waiter<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State { value: None, filler: true, waiter: true }),
        changed: Condvar::new(),
        settled: AtomicBool::new(false),
    });
    (Filler(Some(Arc::clone(&shared))), Waiter(shared))
}

struct Shared<T> {
    state: Mutex<State<T>>,
    changed: Condvar,
    /// Set once the filler has filled or gone, after `state` says so: a waiter that spins
    /// reads this, not the lock, so the filler never contends with it.
    settled: AtomicBool,
}

struct State<T> {
    value: Option<T>,
    /// The filler has neither filled nor been dropped yet.
    filler: bool,
    /// The waiter is still there to take a value.
    waiter: bool,
}

/// The sending half: fills the slot once, or is dropped (the waiter then learns that no
/// value will come).
pub struct Filler<T>(Option<Arc<Shared<T>>>);

impl<T> Filler<T> {
    /// Hands `value` to the waiter; gives it back if the waiter is gone. Never blocks
    /// beyond the slot's short lock.
    pub fn fill(mut self, value: T) -> Result<(), T> {
        let Some(shared) = self.0.take() else { return Err(value) };
        {
            let mut st = shared.state.lock();
            st.filler = false;
            if !st.waiter {
                return Err(value);
            }
            st.value = Some(value);
        }
        shared.settled.store(true, Ordering::Release);
        shared.changed.notify_one();
        Ok(())
    }
}

impl<T> Drop for Filler<T> {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            shared.state.lock().filler = false;
            shared.settled.store(true, Ordering::Release);
            shared.changed.notify_one();
        }
    }
}

/// How [`Waiter::spin`] ended.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Spun {
    /// The filler filled or went: the value (or its absence) can be taken at once.
    Settled,
    /// The spin's time was up.
    TimedOut,
    /// The spinner was off the CPU between two checks.
    Preempted,
}

/// 64 checks take well under a microsecond, but a VM's vCPU (or the thread that fills the
/// slot, run on this CPU) takes shorter gaps than this all the time, harmlessly; a gap this
/// long is another task's time slice: the CPU is contended.
#[cfg(not(loom))]
const PREEMPTED: std::time::Duration = std::time::Duration::from_micros(200);

/// How a wait ended without a value.
#[derive(Debug, PartialEq, Eq)]
pub enum Waited {
    /// The deadline passed first.
    TimedOut,
    /// The filler was dropped without filling.
    Abandoned,
}

/// The receiving half, held by the caller.
pub struct Waiter<T>(Arc<Shared<T>>);

impl<T> Waiter<T> {
    /// The value, if it is there now.
    pub fn try_take(&self) -> Option<T> {
        self.0.state.lock().value.take()
    }

    /// Spins (without the lock) until the filler has filled or gone, or `until` passes; true
    /// if it has. A short wait spun out costs no wake-up: on an idle vCPU a futex wake-up
    /// costs more than the whole round trip to a fast backend. It never yields: under
    /// EEVDF each `sched_yield` pushes the thread's deadline a slice further, and a spinner
    /// that yields ends up waiting milliseconds for the CPU once its answer is there.
    /// Instead it gives up as soon as it sees it was preempted (a gap between two checks):
    /// the CPU is contended, and a parked thread is woken sooner than a spinning one runs.
    #[cfg(not(loom))]
    pub fn spin(&self, until: Instant) -> Spun {
        let mut last = Instant::now();
        let mut checks = 0u32;
        loop {
            if self.0.settled.load(Ordering::Acquire) {
                return Spun::Settled;
            }
            checks += 1;
            if checks.is_multiple_of(64) {
                let now = Instant::now();
                if now >= until {
                    return Spun::TimedOut;
                }
                if now - last > PREEMPTED {
                    return Spun::Preempted;
                }
                last = now;
            }
            std::hint::spin_loop();
        }
    }

    /// Under the model checker a spin is one look: what matters is that a look that sees
    /// the slot settled, or not, never loses the value for the wait that follows.
    #[cfg(loom)]
    pub fn spin(&self, _until: Instant) -> Spun {
        if self.0.settled.load(Ordering::Acquire) { Spun::Settled } else { Spun::TimedOut }
    }

    /// Waits for the value until `until` (`None`: for as long as the filler lives).
    pub fn wait(&self, until: Option<Instant>) -> Result<T, Waited> {
        let mut st = self.0.state.lock();
        loop {
            if let Some(v) = st.value.take() {
                return Ok(v);
            }
            if !st.filler {
                return Err(Waited::Abandoned);
            }
            let timed_out;
            (st, timed_out) = sync::wait(&self.0.changed, st, until);
            if timed_out {
                return st.value.take().ok_or(Waited::TimedOut);
            }
        }
    }
}

impl<T> Drop for Waiter<T> {
    fn drop(&mut self) {
        // Dropped outside the lock: a value's drop may do anything.
        let left = {
            let mut st = self.0.state.lock();
            st.waiter = false;
            st.value.take()
        };
        drop(left);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn ids_start_at_one_and_each_entry_is_taken_once() {
        let map = PendingMap::new();
        assert!(map.is_empty());
        let a = map.insert("a");
        let b = map.insert("b");
        assert_eq!((a, b), (1, 2));
        assert_eq!(map.len(), 2);
        assert_eq!(map.with(a, |e| e.len()), Some(1));
        assert_eq!(map.take(a), Some("a"));
        assert_eq!(map.take(a), None);
        assert_eq!(map.with(a, |e| e.len()), None);
        assert_eq!(map.drain(), vec![(b, "b")]);
        assert!(map.is_empty());
        assert!(!map.is_closed());
        assert_eq!(map.insert("c"), 3);
    }

    #[test]
    fn a_slot_hands_over_one_value_or_says_why_not() {
        let (f, w) = slot();
        assert_eq!(w.try_take(), None);
        f.fill(7).expect("waiter there");
        assert_eq!(w.wait(None), Ok(7));
        let (f, w) = slot::<u8>();
        drop(f);
        assert_eq!(w.wait(None), Err(Waited::Abandoned));
        let (_f, w) = slot::<u8>();
        assert_eq!(w.wait(Some(Instant::now())), Err(Waited::TimedOut));
        let (f, w) = slot();
        drop(w);
        assert_eq!(f.fill(3), Err(3), "nobody waits: the value comes back");
        let (f, w) = slot();
        let t = std::thread::spawn(move || w.wait(Some(Instant::now() + std::time::Duration::from_secs(60))));
        f.fill("late").expect("waiter there");
        assert_eq!(t.join().expect("waiter"), Ok("late"));
    }

    #[test]
    fn close_drains_and_refuses_try_insert() {
        let map = PendingMap::new();
        let a = map.try_insert(1).expect("open");
        let b = map.try_insert(2).expect("open");
        assert_eq!(map.close(), vec![(a, 1), (b, 2)]);
        assert!(map.is_closed());
        assert_eq!(map.try_insert(3), Err(3));
        assert!(map.is_empty());
        assert!(format!("{map:?}").contains("closed: true"));
    }
}
