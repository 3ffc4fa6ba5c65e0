//! A backend's lifecycle: one [`Phase`] under one lock answers every question about it
//! ("is it up?", "may I send?", "what is its pid?"), and a [`Connection`] is what a transport
//! hands back when it connects: its sender, its threads, its stop handle and its process.

use std::ops::Deref;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{SendTimeoutError, TrySendError};
use serde_json::Value;

use super::process::Child;
use super::{Backend, Command, Net};

/// Where a backend stands. Transitions happen under the backend's `life` lock only.
pub(crate) enum Phase {
    /// Connecting (no connection yet) or handshaking (only `initialize` may be sent).
    Starting {
        generation: u64,
        conn: Option<Connection>,
    },
    Ready {
        generation: u64,
        conn: Connection,
    },
    /// Down. What is left of the connection (a child to reap, threads to join) is kept
    /// until a restart or the shutdown clears it.
    Failed {
        why: String,
        leftover: Option<Connection>,
    },
    /// Stopped by the router for good: nothing follows.
    Stopped,
}

/// The state names shown in status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Starting,
    Ready,
    Failed,
    Stopped,
}

impl State {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Ready => "ready",
            State::Failed => "failed",
            State::Stopped => "stopped",
        }
    }
}

impl Phase {
    pub(crate) fn state(&self) -> State {
        match self {
            Phase::Starting { .. } => State::Starting,
            Phase::Ready { .. } => State::Ready,
            Phase::Failed { .. } => State::Failed,
            Phase::Stopped => State::Stopped,
        }
    }

    /// The live connection of `generation`, if the phase still has it.
    pub(crate) fn live(&self, generation: u64) -> bool {
        match self {
            Phase::Starting { generation: g, .. } | Phase::Ready { generation: g, .. } => *g == generation,
            _ => false,
        }
    }

    pub(crate) fn conn(&self) -> Option<&Connection> {
        match self {
            Phase::Starting { conn, .. } | Phase::Failed { leftover: conn, .. } => conn.as_ref(),
            Phase::Ready { conn, .. } => Some(conn),
            Phase::Stopped => None,
        }
    }

    fn conn_mut(&mut self) -> Option<&mut Connection> {
        match self {
            Phase::Starting { conn, .. } | Phase::Failed { leftover: conn, .. } => conn.as_mut(),
            Phase::Ready { conn, .. } => Some(conn),
            Phase::Stopped => None,
        }
    }

    /// Takes the connection out, leaving the phase as it is otherwise (`Ready` becomes
    /// `Failed`, since it cannot stay ready without one).
    pub(crate) fn take_conn(&mut self) -> Option<Connection> {
        match std::mem::replace(self, Phase::Stopped) {
            Phase::Starting { generation, conn } => {
                *self = Phase::Starting { generation, conn: None };
                conn
            }
            Phase::Ready { conn, .. } => {
                *self = Phase::Failed { why: "stopped".into(), leftover: None };
                Some(conn)
            }
            Phase::Failed { why, leftover } => {
                *self = Phase::Failed { why, leftover: None };
                leftover
            }
            Phase::Stopped => None,
        }
    }
}

/// What the handshake told us, and what went wrong last: facts kept across restarts.
#[derive(Debug, Clone, Default)]
pub(crate) struct Facts {
    pub protocol_version: Option<String>,
    pub server_info: Option<Value>,
    pub capabilities: Value,
    pub instructions: Option<String>,
    pub last_error: Option<String>,
    pub handshake: Option<Duration>,
    /// The era the last handshake settled on (`server/discover` answered: modern).
    pub era: crate::era::Era,
}

/// Everything under the backend's `life` lock.
pub(crate) struct Life {
    pub phase: Phase,
    /// Counts starts: threads of an older connection cannot touch a newer one.
    pub generation: u64,
    pub facts: Facts,
}

impl Life {
    pub(crate) fn new() -> Life {
        Life { phase: Phase::Starting { generation: 0, conn: None }, generation: 0, facts: Facts::default() }
    }

    /// The child's exit status, if the connection has a child that exited.
    pub(crate) fn exit_status(&mut self) -> Option<String> {
        self.phase.conn_mut().and_then(|c| c.child.as_mut()).and_then(Child::try_status)
    }
}

/// One running connection to a backend: stopping it stops everything it started.
/// A transport's way for a caller to write its own message when nothing is queued ahead of
/// it (stdio), sparing the hand-off to the writer thread; it never blocks.
pub(crate) trait Inline: Send + Sync {
    /// Writes the request `id` (`line`, without newline) now, if that cannot block and
    /// cannot overtake anything queued; false leaves it to the queue.
    fn try_write(&self, id: u64, line: &str) -> bool;
    /// Counts commands put on (`1`) or not put on after all (`-1`) the queue.
    fn queued(&self, n: isize);
}

/// A connection's command queue: a bounded crossbeam channel of commands, or of boxed
/// ones. A bounded channel allocates every slot up front, and a `Command` slot is 48
/// bytes where a boxed one is 16 (~12 KiB against ~4 KiB per backend at the default
/// capacity of 256); the box costs an allocation only for a command that is queued.
pub(crate) enum Sender<T> {
    Plain(crossbeam_channel::Sender<T>),
    Boxed(crossbeam_channel::Sender<Box<T>>),
}

impl<T> Sender<T> {
    pub(crate) fn try_send(&self, msg: T) -> Result<(), TrySendError<T>> {
        match self {
            Sender::Plain(tx) => tx.try_send(msg),
            Sender::Boxed(tx) => tx.try_send(Box::new(msg)).map_err(|e| match e {
                TrySendError::Full(b) => TrySendError::Full(*b),
                TrySendError::Disconnected(b) => TrySendError::Disconnected(*b),
            }),
        }
    }

    pub(crate) fn send_deadline(&self, msg: T, deadline: Instant) -> Result<(), SendTimeoutError<T>> {
        match self {
            Sender::Plain(tx) => tx.send_deadline(msg, deadline),
            Sender::Boxed(tx) => tx.send_deadline(Box::new(msg), deadline).map_err(|e| match e {
                SendTimeoutError::Timeout(b) => SendTimeoutError::Timeout(*b),
                SendTimeoutError::Disconnected(b) => SendTimeoutError::Disconnected(*b),
            }),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Sender::Plain(tx) => tx.len(),
            Sender::Boxed(tx) => tx.len(),
        }
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        match self {
            Sender::Plain(tx) => Sender::Plain(tx.clone()),
            Sender::Boxed(tx) => Sender::Boxed(tx.clone()),
        }
    }
}

pub(crate) struct Connection {
    pub tx: Sender<Command>,
    /// Stdio: callers may write their own line (see `Inline`).
    pub inline: Option<Arc<dyn Inline>>,
    /// The child process (stdio).
    pub child: Option<Child>,
    /// Its stderr, in the shared drain (stdio).
    pub stderr: Option<super::stdio::Drained>,
    /// The network transport's stop handle.
    pub net: Option<Arc<dyn Net>>,
    pub threads: Vec<JoinHandle<()>>,
}

impl Connection {
    pub(crate) fn new(tx: crossbeam_channel::Sender<Command>) -> Connection {
        Connection::with(Sender::Plain(tx))
    }

    /// A connection whose queue carries boxed commands (see [`Sender`]).
    pub(crate) fn boxed(tx: crossbeam_channel::Sender<Box<Command>>) -> Connection {
        Connection::with(Sender::Boxed(tx))
    }

    fn with(tx: Sender<Command>) -> Connection {
        Connection { tx, inline: None, child: None, stderr: None, net: None, threads: Vec::new() }
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops it: closes the stream, stops the network transport, ends the child (closing
    /// stdin, then SIGTERM after `grace`, then SIGKILL) and joins the threads. Network
    /// threads may be inside a blocking read the server controls: they are given up to a
    /// second and then let go (they hold nothing but their own sockets, and end with them).
    pub(crate) fn stop(mut self, grace: Duration) {
        let _ = self.tx.try_send(Command::Shutdown);
        if let Some(child) = self.child.take() {
            child.terminate(grace);
        }
        // The child is gone: its stderr ends as soon as what it wrote last is logged.
        if let Some(stderr) = self.stderr.take() {
            stderr.finish(grace.clamp(Duration::from_millis(100), Duration::from_secs(1)));
        }
        let net = self.net.take();
        if let Some(net) = &net {
            net.stop();
        }
        let threads = std::mem::take(&mut self.threads);
        if net.is_some() {
            let until = Instant::now() + grace.clamp(Duration::from_millis(100), Duration::from_secs(1));
            while Instant::now() < until && !threads.iter().all(JoinHandle::is_finished) {
                std::thread::sleep(Duration::from_millis(5));
            }
            for t in threads.into_iter().filter(JoinHandle::is_finished) {
                let _ = t.join();
            }
        } else {
            for t in threads {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Connection {
    /// A connection dropped without `stop` (a transport that failed half-way) still ends
    /// what it started: no thread, fd or child is leaked (lesson 8).
    fn drop(&mut self) {
        if self.child.is_some() || self.stderr.is_some() || self.net.is_some() || !self.threads.is_empty() {
            let (tx, _) = crossbeam_channel::bounded(0);
            let me = Connection {
                tx: std::mem::replace(&mut self.tx, Sender::Plain(tx)),
                inline: self.inline.take(),
                child: self.child.take(),
                stderr: self.stderr.take(),
                net: self.net.take(),
                threads: std::mem::take(&mut self.threads),
            };
            me.stop(Duration::from_millis(200));
        }
    }
}

/// A backend as the threads of one connection see it. Their report that the connection
/// ended concerns that connection only: a thread of a replaced connection cannot take
/// down its successor.
#[derive(Clone)]
pub(crate) struct Link {
    backend: Arc<Backend>,
    generation: u64,
}

impl Link {
    pub(crate) fn new(backend: Arc<Backend>, generation: u64) -> Link {
        Link { backend, generation }
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The connection ended (EOF, a write or read that failed, the server gone).
    pub(crate) fn on_exit(&self, why: String) {
        self.backend.connection_ended(self.generation, why);
    }

    /// Starts a thread of this connection (named `mcprouter-<backend><suffix>`). A panic in
    /// it is caught and ends the connection, failing its calls at once.
    pub(crate) fn spawn_thread(
        &self,
        suffix: &str,
        f: impl FnOnce(&Link) + Send + 'static,
    ) -> Result<JoinHandle<()>, String> {
        let link = self.clone();
        let what = format!("mcprouter-{}{suffix}", self.backend.name());
        std::thread::Builder::new()
            .name(what.clone())
            .stack_size(super::THREAD_STACK)
            .spawn(move || {
                if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&link))) {
                    log::error!(
                        target: "mcprouter::backend",
                        "[{}] internal error: thread {what} panicked: {}",
                        link.name(),
                        crate::guard::panic_message(payload.as_ref())
                    );
                    link.on_exit(format!("internal error in thread {what}"));
                }
            })
            .map_err(|e| format!("cannot start a thread: {e}"))
    }
}

impl Deref for Link {
    type Target = Backend;

    fn deref(&self) -> &Backend {
        &self.backend
    }
}
