//! The pending-request map: ids the router assigned towards one backend.
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Pending calls keyed by the id the router assigned.
pub struct PendingMap<E> {
    next: AtomicU64,
    map: parking_lot::Mutex<HashMap<u64, E>>,
}

impl<E> Default for PendingMap<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> PendingMap<E> {
    /// An empty map; ids start at 1.
    pub fn new() -> Self {
        PendingMap { next: AtomicU64::new(1), map: parking_lot::Mutex::new(HashMap::new()) }
    }
    /// Stores `entry` under a fresh id.
    pub fn insert(&self, entry: E) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.map.lock().insert(id, entry);
        id
    }
    /// Removes and returns the entry; exactly one taker gets it.
    pub fn take(&self, id: u64) -> Option<E> {
        self.map.lock().remove(&id)
    }
    /// Inspects an entry without removing it.
    pub fn with<R>(&self, id: u64, f: impl FnOnce(&E) -> R) -> Option<R> {
        self.map.lock().get(&id).map(f)
    }
    /// Removes every entry.
    pub fn drain(&self) -> Vec<(u64, E)> {
        self.map.lock().drain().collect()
    }
    /// How many are pending.
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }
    /// Whether none are pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
