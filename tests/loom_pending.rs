//! Loom model: completion, timeout and drain race for the same pending
//! entries; each entry is delivered exactly once.
#![cfg(loom)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

use mcprouter::pending::PendingMap;
use mcprouter::sync::Arc;

/// An entry that records how many times it was settled.
struct Entry(Arc<AtomicUsize>);

impl Entry {
    fn settle(self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn complete_timeout_and_drain_deliver_each_entry_once() {
    loom::model(|| {
        let map = Arc::new(PendingMap::new());
        let settled: Vec<Arc<AtomicUsize>> = (0..2).map(|_| Arc::new(AtomicUsize::new(0))).collect();
        let ids: Vec<u64> = settled.iter().map(|s| map.insert(Entry(s.clone()))).collect();
        assert_eq!(ids, [1, 2]);

        // Reader thread: the response for id 1 arrives.
        let complete = {
            let map = map.clone();
            thread::spawn(move || {
                if let Some(e) = map.take(1) {
                    e.settle();
                }
            })
        };
        // Timer thread: both ids time out.
        let timeout = {
            let map = map.clone();
            thread::spawn(move || {
                for id in [1, 2] {
                    if let Some(e) = map.take(id) {
                        e.settle();
                    }
                }
            })
        };
        // Backend died: fail whatever is left.
        for (_, e) in map.drain() {
            e.settle();
        }
        complete.join().unwrap();
        timeout.join().unwrap();

        for s in &settled {
            assert_eq!(s.load(Ordering::SeqCst), 1);
        }
        assert!(map.is_empty());
    });
}

#[test]
fn close_never_strands_a_racing_try_insert() {
    loom::model(|| {
        let map = Arc::new(PendingMap::new());
        let settled = Arc::new(AtomicUsize::new(0));
        let sender = {
            let map = map.clone();
            let settled = settled.clone();
            thread::spawn(move || {
                // Refused entries come back and are failed by the sender.
                if let Err(e) = map.try_insert(Entry(settled)) {
                    e.settle();
                }
            })
        };
        for (_, e) in map.close() {
            e.settle();
        }
        sender.join().unwrap();
        // Either close drained it or the sender got it back: never stranded.
        assert_eq!(settled.load(Ordering::SeqCst), 1);
        assert!(map.is_empty());
    });
}
