//! Loom models of the pending map (the shipped `PendingMap`, whose lock comes from
//! `crate::sync`, so loom drives the real code).
//!
//! The first models the race at a call's deadline: the backend's reply arrives while the
//! caller gives up waiting. Both sides follow `src/backend/mod.rs`, on the shipped one-shot
//! slot (`pending::slot`, also built on `crate::sync`):
//! - the reader (`Backend::complete`) takes the entry and fills the call's slot, or drops
//!   the reply when the entry is gone;
//! - the waiter (`Backend::finish_call`) spins on the slot (under loom: one look), then
//!   waits on it with a deadline (under loom a deadline passes at once, so the model gives
//!   up at every point it could); at its
//!   deadline it takes the entry itself (a timeout), and when someone else took it first it
//!   waits for what that taker fills in, or for the filler to go;
//! - backend death (`Backend::on_exit`) closes the map and fails what it drained.
#![cfg(loom)]

use std::time::Instant;

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

use mcprouter::pending::{Filler, PendingMap, Spun, Waited, Waiter, slot};
use mcprouter::sync::Arc;

/// Counts of what the model created and dropped, to prove nothing leaks or is settled twice.
#[derive(Default)]
struct Ledger {
    /// Successful removals of the call's entry (`take` returning it, or `close` draining it).
    removed: AtomicUsize,
    /// Entries dropped (with the entry goes its filler, filled or not).
    entries_dropped: AtomicUsize,
    /// Replies built (by the reader or by backend death) and replies dropped.
    replies_built: AtomicUsize,
    replies_dropped: AtomicUsize,
}

/// What the backend answered, or why it could not (`Reply::Failed`).
#[derive(Debug, PartialEq)]
enum Kind {
    Ok,
    Failed,
}

/// A reply that counts its own drop.
struct Reply {
    kind: Kind,
    ledger: Arc<Ledger>,
}

impl Reply {
    fn new(kind: Kind, ledger: &Arc<Ledger>) -> Self {
        ledger.replies_built.fetch_add(1, Ordering::SeqCst);
        Self { kind, ledger: ledger.clone() }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        self.ledger.replies_dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// Counts the drop of the entry it is part of.
struct Counted(Arc<Ledger>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.entries_dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// `PendingCall`: the pending entry holds the call's only filler.
struct Entry {
    reply: Filler<Reply>,
    _counted: Counted,
}

/// How the caller's wait ended.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// The backend's reply reached the caller.
    Delivered,
    /// Backend death's failure reached the caller.
    Failed,
    /// The caller removed the entry itself at its deadline.
    TimedOut,
    /// Someone else removed the entry and the caller got nothing from them.
    Cancelled,
}

/// The reader: the backend's reply for `id` arrives (`Backend::complete`).
fn reply_arrives(map: &PendingMap<Entry>, id: u64, ledger: &Arc<Ledger>) {
    let reply = Reply::new(Kind::Ok, ledger);
    if let Some(entry) = map.take(id) {
        ledger.removed.fetch_add(1, Ordering::SeqCst);
        // A refused fill hands the reply back, dropped here: the caller already gave up.
        let _ = entry.reply.fill(reply);
    }
}

/// Backend death (`Backend::on_exit`): close the map and fail everything drained.
fn backend_dies(map: &PendingMap<Entry>, ledger: &Arc<Ledger>) {
    for (_, entry) in map.close() {
        ledger.removed.fetch_add(1, Ordering::SeqCst);
        let _ = entry.reply.fill(Reply::new(Kind::Failed, ledger));
    }
}

/// The waiter (`Backend::finish_call`) whose deadline passes. `fallback_waits`: after losing
/// the entry to someone else, whether it waits for their fill (true, as the real code does)
/// or only looks once (false: the weakest waiter, to show nothing is left in the slot).
fn caller_gives_up(
    map: &PendingMap<Entry>,
    id: u64,
    rx: Waiter<Reply>,
    ledger: &Ledger,
    fallback_waits: bool,
) -> Outcome {
    let delivered = |reply: Reply| match reply.kind {
        Kind::Ok => Outcome::Delivered,
        Kind::Failed => Outcome::Failed,
    };
    // The caller first spins (without the lock), then waits; the wait before the deadline
    // may already see the reply (or the filler gone), and must whenever the spin did.
    let spun = rx.spin(Instant::now());
    match rx.wait(Some(Instant::now())) {
        Ok(reply) => return delivered(reply),
        Err(Waited::TimedOut) => {
            assert_ne!(spun, Spun::Settled, "a slot seen settled has its value or lost its filler")
        }
        Err(Waited::Abandoned) => {}
    }
    // Deadline: whoever removes the entry owns the call.
    if let Some(entry) = map.take(id) {
        ledger.removed.fetch_add(1, Ordering::SeqCst);
        drop(entry);
        return Outcome::TimedOut;
    }
    let reply = if fallback_waits { rx.wait(None).ok() } else { rx.try_take() };
    reply.map_or(Outcome::Cancelled, delivered)
}

/// One run of the deadline race; `with_death` adds a third thread where the backend dies.
fn deadline_race(with_death: bool, fallback_waits: bool) {
    loom::model(move || {
        let ledger = Arc::new(Ledger::default());
        let map = Arc::new(PendingMap::new());
        let (tx, rx) = slot();
        let id = map.try_insert(Entry { reply: tx, _counted: Counted(ledger.clone()) }).ok().expect("open map");

        let reader = {
            let (map, ledger) = (map.clone(), ledger.clone());
            thread::spawn(move || reply_arrives(&map, id, &ledger))
        };
        let death = with_death.then(|| {
            let (map, ledger) = (map.clone(), ledger.clone());
            thread::spawn(move || backend_dies(&map, &ledger))
        });
        let outcome = caller_gives_up(&map, id, rx, &ledger, fallback_waits);
        reader.join().unwrap();
        if let Some(death) = death {
            death.join().unwrap();
        }

        let count = |c: &AtomicUsize| c.load(Ordering::SeqCst);
        assert_eq!(count(&ledger.removed), 1, "the entry is removed exactly once ({outcome:?})");
        assert_eq!(count(&ledger.entries_dropped), 1, "the entry (and its sender) is dropped once");
        assert_eq!(
            count(&ledger.replies_built),
            count(&ledger.replies_dropped),
            "every reply is delivered and consumed, or dropped: none is left in a slot ({outcome:?})"
        );
        assert!(map.is_empty(), "nothing is left pending");
        if fallback_waits {
            assert_ne!(outcome, Outcome::Cancelled, "a reply taken for the caller reaches it");
        }
        if !with_death {
            assert_ne!(outcome, Outcome::Failed);
        }
    });
}

#[test]
fn reply_racing_the_deadline_is_delivered_or_dropped_once() {
    deadline_race(false, true);
}

#[test]
fn reply_racing_the_deadline_after_the_grace_period_is_dropped_cleanly() {
    deadline_race(false, false);
}

#[test]
fn reply_deadline_and_backend_death_settle_the_call_once() {
    deadline_race(true, true);
}

/// An entry that records how many times it was settled.
struct Settled(Arc<AtomicUsize>);

impl Settled {
    fn settle(self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
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
                if let Err(e) = map.try_insert(Settled(settled)) {
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
