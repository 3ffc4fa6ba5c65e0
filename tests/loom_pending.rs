//! Loom models of the pending map (the shipped `PendingMap`, whose lock comes from
//! `crate::sync`, so loom drives the real code).
//!
//! The first models the race at a call's deadline: the backend's reply arrives while the
//! caller gives up waiting. Both sides follow `src/backend/mod.rs`:
//! - the reader (`Backend::complete`) takes the entry and `try_send`s the reply on the
//!   call's one-slot channel, or drops the reply when the entry is gone;
//! - the waiter (`Backend::finish_call`) first sees whether the reply is already there; at
//!   its deadline it takes the entry itself (a timeout), and when someone else took it first
//!   it waits for what that taker sends, or for the sender to go.
//! - backend death (`Backend::on_exit`) closes the map and fails what it drained.
//!
//! The call's channel is a crossbeam `bounded(1)`, which loom cannot see, so the model uses a
//! one-slot channel made of loom primitives with the same contract (`Oneshot` below).
#![cfg(loom)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Condvar, Mutex};
use loom::thread;

use mcprouter::pending::PendingMap;
use mcprouter::sync::Arc;

/// Counts of what the model created and dropped, to prove nothing leaks or is settled twice.
#[derive(Default)]
struct Ledger {
    /// Successful removals of the call's entry (`take` returning it, or `close` draining it).
    removed: AtomicUsize,
    /// Entries dropped: the entry owns the reply sender, so this is also "sender dropped".
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

/// `PendingCall`: the pending entry holds the only sender of the call's reply channel.
struct Entry {
    reply: Sender,
    ledger: Arc<Ledger>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.ledger.entries_dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// The contract of a crossbeam `bounded(1)` with one sender and one receiver: `try_send`
/// fails (handing the value back) once the receiver is gone; `recv` returns the value, or
/// `None` once the sender is gone and nothing is left; dropping the receiver drops a value
/// still in the slot.
struct Oneshot {
    slot: Mutex<Slot>,
    changed: Condvar,
}

struct Slot {
    value: Option<Reply>,
    sender_alive: bool,
    receiver_alive: bool,
}

struct Sender(Arc<Oneshot>);
struct Receiver(Arc<Oneshot>);

fn oneshot() -> (Sender, Receiver) {
    let chan = Arc::new(Oneshot {
        slot: Mutex::new(Slot { value: None, sender_alive: true, receiver_alive: true }),
        changed: Condvar::new(),
    });
    (Sender(chan.clone()), Receiver(chan))
}

impl Sender {
    fn try_send(&self, reply: Reply) -> Result<(), Reply> {
        let mut slot = self.0.slot.lock().unwrap();
        if !slot.receiver_alive || slot.value.is_some() {
            return Err(reply);
        }
        slot.value = Some(reply);
        self.0.changed.notify_all();
        Ok(())
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.0.slot.lock().unwrap().sender_alive = false;
        self.0.changed.notify_all();
    }
}

impl Receiver {
    fn try_recv(&self) -> Option<Reply> {
        self.0.slot.lock().unwrap().value.take()
    }

    fn recv(&self) -> Option<Reply> {
        let mut slot = self.0.slot.lock().unwrap();
        loop {
            if let Some(reply) = slot.value.take() {
                return Some(reply);
            }
            if !slot.sender_alive {
                return None;
            }
            slot = self.0.changed.wait(slot).unwrap();
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let value = {
            let mut slot = self.0.slot.lock().unwrap();
            slot.receiver_alive = false;
            slot.value.take()
        };
        drop(value);
    }
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
        // A failed send drops the reply: the caller already gave up.
        let _ = entry.reply.try_send(reply);
    }
}

/// Backend death (`Backend::on_exit`): close the map and fail everything drained.
fn backend_dies(map: &PendingMap<Entry>, ledger: &Arc<Ledger>) {
    for (_, entry) in map.close() {
        ledger.removed.fetch_add(1, Ordering::SeqCst);
        let _ = entry.reply.try_send(Reply::new(Kind::Failed, ledger));
    }
}

/// The waiter (`Backend::finish_call`) whose deadline passes. `fallback_waits`: after losing
/// the entry to someone else, whether it waits for their send (true) or its short grace
/// period runs out first (false; the worst case of the real 100 ms `recv_timeout`).
fn caller_gives_up(map: &PendingMap<Entry>, id: u64, rx: Receiver, ledger: &Ledger, fallback_waits: bool) -> Outcome {
    let delivered = |reply: Reply| match reply.kind {
        Kind::Ok => Outcome::Delivered,
        Kind::Failed => Outcome::Failed,
    };
    // The wait before the deadline may already see the reply.
    if let Some(reply) = rx.try_recv() {
        return delivered(reply);
    }
    // Deadline: whoever removes the entry owns the call.
    if let Some(entry) = map.take(id) {
        ledger.removed.fetch_add(1, Ordering::SeqCst);
        drop(entry);
        return Outcome::TimedOut;
    }
    let reply = if fallback_waits { rx.recv() } else { rx.try_recv() };
    reply.map_or(Outcome::Cancelled, delivered)
}

/// One run of the deadline race; `with_death` adds a third thread where the backend dies.
fn deadline_race(with_death: bool, fallback_waits: bool) {
    loom::model(move || {
        let ledger = Arc::new(Ledger::default());
        let map = Arc::new(PendingMap::new());
        let (tx, rx) = oneshot();
        let id = map.try_insert(Entry { reply: tx, ledger: ledger.clone() }).ok().expect("open map");

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
            "every reply is delivered and consumed, or dropped: none is left in a channel ({outcome:?})"
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
