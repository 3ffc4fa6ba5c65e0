//! The listener and its bounded pool of connection threads.
//!
//! One accept thread hands each connection to an idle worker, starts a new worker while
//! fewer than `max_connections` run, and otherwise answers 503 at once: the number of
//! threads never grows with the number of clients. A worker serves its connection's
//! requests one after another (keep-alive) and waits for a new connection when it closes;
//! a worker idle for long exits.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::{Condvar, Mutex};

use super::Shared;
use super::conn::Conn;
use super::request::{Carry, ReadError, read_request};
use super::response::{Headers, write_full};

/// A worker with no connection for this long exits.
const WORKER_IDLE: Duration = Duration::from_secs(30);

/// Open connections, so shutdown can cut the idle ones at once and the rest after the grace.
#[derive(Default)]
pub(crate) struct Connections {
    map: Mutex<HashMap<u64, (TcpStream, Arc<AtomicBool>)>>,
    next: AtomicU64,
    gone: Condvar,
}

impl Connections {
    fn add(&self, s: &TcpStream, busy: &Arc<AtomicBool>) -> Option<u64> {
        let clone = s.try_clone().ok()?;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.map.lock().insert(id, (clone, Arc::clone(busy)));
        Some(id)
    }

    fn remove(&self, id: u64) {
        let mut m = self.map.lock();
        m.remove(&id);
        if m.is_empty() {
            self.gone.notify_all();
        }
    }

    /// Cuts the connections waiting for a request (not those in a call).
    pub fn cut_idle(&self) {
        for (s, busy) in self.map.lock().values() {
            if !busy.load(Ordering::Acquire) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }

    pub fn cut_all(&self) {
        for (s, _) in self.map.lock().values() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Waits until no connection is open, or `deadline`; true when none is.
    pub fn wait_empty(&self, deadline: Instant) -> bool {
        let mut m = self.map.lock();
        while !m.is_empty() {
            if self.gone.wait_until(&mut m, deadline).timed_out() {
                return m.is_empty();
            }
        }
        true
    }

    pub fn len(&self) -> usize {
        self.map.lock().len()
    }
}

/// The accept loop's pool.
pub(crate) struct Pool {
    shared: Arc<Shared>,
    tx: Sender<TcpStream>,
    rx: Receiver<TcpStream>,
    idle: Arc<AtomicUsize>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Pool {
    pub fn new(shared: Arc<Shared>) -> Pool {
        let (tx, rx) = crossbeam_channel::unbounded();
        Pool { shared, tx, rx, idle: Arc::new(AtomicUsize::new(0)), workers: Vec::new() }
    }

    /// Accepts until shutdown, then lets the workers finish and joins them.
    pub fn run(mut self, listener: TcpListener) {
        for conn in listener.incoming() {
            if self.shared.shutting.load(Ordering::Acquire) {
                break;
            }
            match conn {
                Ok(s) => self.submit(s),
                // Out of descriptors and the like: wait a little rather than spin.
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        drop(self.tx);
        for w in self.workers {
            let _ = w.join();
        }
    }

    fn submit(&mut self, s: TcpStream) {
        let _ = s.set_nodelay(true);
        let reserved = self.idle.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok();
        if reserved {
            if let Err(e) = self.tx.send(s) {
                self.idle.fetch_add(1, Ordering::AcqRel);
                refuse(self.shared.tls.is_some(), e.into_inner());
            }
            return;
        }
        self.workers.retain(|w| !w.is_finished());
        if self.workers.len() >= self.shared.settings.max_connections {
            refuse(self.shared.tls.is_some(), s);
            return;
        }
        let (shared, rx, idle) = (Arc::clone(&self.shared), self.rx.clone(), Arc::clone(&self.idle));
        let spawned = std::thread::Builder::new().name("mcprouter-gw".into()).stack_size(512 * 1024).spawn(move || {
            worker(&shared, &rx, &idle);
        });
        match spawned {
            Ok(h) => {
                self.workers.push(h);
                // The new worker takes this connection (or an idle one does; either way one does).
                if let Err(e) = self.tx.send(s) {
                    refuse(self.shared.tls.is_some(), e.into_inner());
                }
            }
            Err(_) => refuse(self.shared.tls.is_some(), s),
        }
    }
}

fn worker(shared: &Arc<Shared>, rx: &Receiver<TcpStream>, idle: &AtomicUsize) {
    shared.workers.fetch_add(1, Ordering::AcqRel);
    struct Leave<'a>(&'a AtomicUsize);
    impl Drop for Leave<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::AcqRel);
        }
    }
    let _leave = Leave(&shared.workers);
    loop {
        let s = loop {
            match rx.recv_timeout(WORKER_IDLE) {
                Ok(s) => break s,
                Err(RecvTimeoutError::Timeout) => {
                    // Leave, unless a connection was just reserved for us.
                    if idle.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok() {
                        return;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        };
        // A panic on one connection must not take the worker (and its count) with it.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| serve_connection(shared, s)));
        idle.fetch_add(1, Ordering::AcqRel);
    }
}

/// 503 for a connection no worker can take. Small enough for the socket's buffer, so a
/// client that never reads cannot block the accept loop. Under TLS the connection is
/// only closed: a handshake here would hold up the accept loop.
fn refuse(tls: bool, mut s: TcpStream) {
    if tls {
        let _ = s.shutdown(Shutdown::Both);
        return;
    }
    let _ = s.set_write_timeout(Some(Duration::from_millis(100)));
    let body =
        br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32003,"message":"gateway overloaded: too many connections"}}"#;
    let headers: Headers = vec![("Retry-After", "1".into())];
    let _ = write_full(&mut s, 503, &headers, Some("application/json"), body, true);
    let _ = s.shutdown(Shutdown::Both);
}

fn serve_connection(shared: &Arc<Shared>, tcp: TcpStream) {
    let busy = Arc::new(AtomicBool::new(false));
    let Some(id) = shared.conns.add(&tcp, &busy) else { return };
    let g = &shared.settings;
    let _ = tcp.set_write_timeout(Some(Duration::from_millis(g.write_timeout_ms)));
    let mut s = match &shared.tls {
        None => Conn::plain(tcp),
        Some(config) => match Conn::tls(tcp, config) {
            Ok(c) => c,
            Err(_) => {
                shared.conns.remove(id);
                return;
            }
        },
    };
    let read_timeout = Duration::from_millis(g.read_timeout_ms);
    let keep_alive = Duration::from_millis(g.keep_alive_ms);
    let mut carry = Carry::default();
    let mut first = true;
    while !shared.shutting.load(Ordering::Acquire) {
        let wait = if first { read_timeout } else { keep_alive };
        first = false;
        let req = match read_request(&mut s, &mut carry, wait, read_timeout, g.max_body_bytes) {
            Ok(r) => r,
            Err(ReadError::Idle) => break,
            Err(e) => {
                let (status, msg) = match e {
                    ReadError::Timeout => (408, "request not received in time"),
                    ReadError::Bad(m) => (400, m),
                    ReadError::HeadTooLarge => (431, "request head too large"),
                    ReadError::BodyTooLarge => (413, "request body exceeds the gateway's max_body_bytes"),
                    _ => (501, "unsupported transfer coding"),
                };
                let body = super::mcp::error_body(-32600, msg);
                let _ = write_full(&mut s, status, &Vec::new(), Some("application/json"), body.as_bytes(), true);
                linger(&mut s, read_timeout, g.max_body_bytes);
                break;
            }
        };
        busy.store(true, Ordering::Release);
        let keep = super::mcp::handle(shared, &mut s, &req) && !req.close;
        busy.store(false, Ordering::Release);
        if !keep {
            break;
        }
    }
    s.shutdown();
    shared.conns.remove(id);
}

/// After an error answer, reads (and drops) what the client is still sending for a while,
/// so closing does not reset the connection before it has read the answer.
fn linger(s: &mut Conn, timeout: Duration, max_body: usize) {
    let _ = s.flush();
    s.shutdown_write();
    let end = Instant::now() + timeout;
    let mut budget = max_body.saturating_mul(4).max(16 << 20);
    let mut buf = [0u8; 16 * 1024];
    while budget > 0 {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => budget = budget.saturating_sub(n),
        }
    }
}
