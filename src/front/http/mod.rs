//! Gateway mode: the router as one Streamable HTTP MCP server (2025-11-25 shape) for many
//! clients at once, with the legacy HTTP+SSE endpoints (2024-11-05, `legacy_sse.rs`) beside. Each HTTP session (`Mcp-Session-Id`) is one router [`Session`] whose
//! client id is the session id, so balancing is sticky per session and what the router
//! sends a client reaches only that client.
//!
//! Threads: `mcprouter-gw-accept` (the listener), at most `max_connections`
//! `mcprouter-gw` connection workers (`server.rs`), one `mcprouter-gw-pump` per session
//! with a request in flight or a stream open, at most `max_connections` of them
//! (`sessions.rs`), and `mcprouter-gw-reaper` (idle sessions). No thread per client beyond
//! those caps.
//!
//! [`Session`]: crate::Session

mod checks;
mod conn;
mod legacy_sse;
mod mcp;
mod modern;
mod request;
mod response;
mod server;
mod sessions;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

pub use crate::config::GatewaySettings;
use crate::error::{Error, Result};
use crate::router::Router;

/// What the connection threads share.
pub(crate) struct Shared {
    router: Router,
    settings: GatewaySettings,
    checks: checks::Checks,
    /// The TLS server config, when `settings.tls` is set.
    tls: Option<Arc<rustls::ServerConfig>>,
    sessions: sessions::Table,
    /// Legacy HTTP+SSE sessions (`legacy_sse.rs`), one per open stream.
    legacy: sessions::Table,
    /// The cap on event pump threads, shared by both tables.
    pumps: Arc<sessions::PumpSlots>,
    shutting: AtomicBool,
    /// Disconnected at shutdown: wakes every GET stream.
    shutdown_rx: Receiver<()>,
    conns: server::Connections,
    /// Connection worker threads alive.
    workers: std::sync::atomic::AtomicUsize,
    /// Open 2026-07-28 `subscriptions/listen` streams (`modern.rs`).
    listens: std::sync::atomic::AtomicUsize,
}

impl Shared {
    /// Streams that hold a connection thread for as long as the client likes (legacy SSE
    /// streams and modern listens) stay under `max_sse_streams` together, so requests
    /// always find a thread: without the cap, a client could take every thread with them.
    fn stream_cap(&self) -> usize {
        let s = &self.settings;
        s.max_sse_streams.unwrap_or(s.max_connections / 2).min(s.max_connections.saturating_sub(1))
    }

    /// A slot for one more listen stream, if the cap allows.
    pub(crate) fn take_listen(self: &Arc<Self>) -> Option<ListenSlot> {
        let cap = self.stream_cap().saturating_sub(self.legacy.len());
        self.listens.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < cap).then_some(n + 1)).ok()?;
        Some(ListenSlot(Arc::clone(self)))
    }

    /// Whether a legacy SSE stream may open, besides the legacy table's own cap.
    pub(crate) fn stream_room(&self) -> bool {
        self.legacy.len() + self.listens.load(Ordering::Acquire) < self.stream_cap()
    }
}

/// One open listen stream; frees its slot when dropped.
pub(crate) struct ListenSlot(Arc<Shared>);

impl Drop for ListenSlot {
    fn drop(&mut self) {
        self.0.listens.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A running HTTP front door. `Send + Sync`. It does not own the router: shut the router
/// down after the gateway. Dropping it shuts it down with no grace.
pub struct Gateway {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown_tx: Mutex<Option<Sender<()>>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    reaper_stop: Mutex<Option<Sender<()>>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("addr", &self.addr).field("path", &self.shared.settings.path).finish()
    }
}

fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

impl Gateway {
    /// Binds `settings.listen` (required) and starts serving `router`. Fails on an
    /// invalid setting, a token reference that cannot be read, an address that cannot be
    /// bound, or a non-loopback address with no tokens configured.
    pub fn start(router: Router, settings: GatewaySettings) -> Result<Gateway> {
        settings.validate()?;
        let listen = settings
            .listen
            .clone()
            .ok_or_else(|| Error::Config("gateway.listen: an address to listen on is required".into()))?;
        let checks = checks::Checks::new(&settings, &router.config().clients)?;
        let tls = settings.tls.as_ref().map(conn::server_config).transpose()?;
        let addrs: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&listen)
            .map_err(|e| Error::Config(format!("gateway.listen: cannot resolve {listen}: {e}")))?
            .collect();
        if addrs.is_empty() {
            return Err(Error::Config(format!("gateway.listen: {listen} resolves to no address")));
        }
        if !checks.has_tokens() && !addrs.iter().all(is_loopback) {
            return Err(Error::Config(format!(
                "gateway.listen: {listen} is not a loopback address; configure gateway.tokens to serve beyond this machine"
            )));
        }
        let listener =
            TcpListener::bind(&addrs[..]).map_err(|e| Error::Io(format!("cannot listen on {listen}: {e}")))?;
        let addr = listener.local_addr()?;
        let (shutdown_tx, shutdown_rx) = crossbeam_channel::bounded(1);
        let pumps = sessions::PumpSlots::new(settings.max_connections);
        let shared = Arc::new(Shared {
            router,
            sessions: sessions::Table::new(settings.max_sessions, Arc::clone(&pumps)),
            legacy: sessions::Table::new(settings.sse_stream_cap(), Arc::clone(&pumps)),
            pumps,
            settings,
            checks,
            tls,
            shutting: AtomicBool::new(false),
            shutdown_rx,
            conns: server::Connections::default(),
            workers: std::sync::atomic::AtomicUsize::new(0),
            listens: std::sync::atomic::AtomicUsize::new(0),
        });
        let pool = server::Pool::new(Arc::clone(&shared));
        let accept = std::thread::Builder::new()
            .name("mcprouter-gw-accept".into())
            .spawn(move || pool.run(listener))
            .map_err(|e| Error::Io(format!("cannot start the gateway's accept thread: {e}")))?;
        let (reaper_tx, reaper_rx) = crossbeam_channel::bounded::<()>(1);
        let s = Arc::clone(&shared);
        let reaper = std::thread::Builder::new()
            .name("mcprouter-gw-reaper".into())
            .stack_size(256 * 1024)
            .spawn(move || reap(&s, &reaper_rx));
        let mut threads = vec![accept];
        match reaper {
            Ok(h) => threads.push(h),
            Err(e) => log::error!(target: "mcprouter::gateway", "cannot start the session reaper: {e}"),
        }
        let scheme = if shared.tls.is_some() { "https" } else { "http" };
        log::info!(target: "mcprouter::gateway", "serving MCP on {scheme}://{addr}{}", shared.settings.path);
        if shared.settings.legacy_sse {
            let s = &shared.settings;
            log::info!(target: "mcprouter::gateway", "legacy HTTP+SSE on {scheme}://{addr}{} (messages: {})", s.sse_path, s.messages_path);
        }
        Ok(Gateway {
            shared,
            addr,
            shutdown_tx: Mutex::new(Some(shutdown_tx)),
            threads: Mutex::new(threads),
            reaper_stop: Mutex::new(Some(reaper_tx)),
        })
    }

    /// The address bound (with the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn scheme(&self) -> &'static str {
        if self.shared.tls.is_some() { "https" } else { "http" }
    }

    /// The endpoint's URL, `http://ADDR/PATH` (`https` with TLS).
    pub fn url(&self) -> String {
        format!("{}://{}{}", self.scheme(), self.addr, self.shared.settings.path)
    }

    /// The legacy HTTP+SSE stream's URL, `http://ADDR/SSE_PATH` (`https` with TLS), when
    /// that transport is on.
    pub fn sse_url(&self) -> Option<String> {
        let s = &self.shared.settings;
        s.legacy_sse.then(|| format!("{}://{}{}", self.scheme(), self.addr, s.sse_path))
    }

    /// Sessions open now (Streamable HTTP and legacy SSE).
    pub fn session_count(&self) -> usize {
        self.shared.sessions.len() + self.shared.legacy.len()
    }

    /// Connections open now.
    pub fn connection_count(&self) -> usize {
        self.shared.conns.len()
    }

    /// Connection worker threads alive now (at most `max_connections`).
    pub fn worker_threads(&self) -> usize {
        self.shared.workers.load(Ordering::Acquire)
    }

    /// Event pump threads alive now (at most `max_connections`).
    pub fn pump_threads(&self) -> usize {
        self.shared.pumps.alive()
    }

    /// Stops accepting, ends the GET streams, lets calls in flight finish for up to
    /// `grace`, then closes every session (cancelling what is left) and every connection,
    /// and joins the gateway's threads. Idempotent. The router keeps running.
    pub fn shutdown(&self, grace: Duration) {
        let Some(tx) = self.shutdown_tx.lock().take() else { return };
        let deadline = Instant::now() + grace;
        self.shared.shutting.store(true, Ordering::Release);
        drop(tx);
        drop(self.reaper_stop.lock().take());
        // Wakes the accept loop, which sees the flag and stops.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        self.shared.conns.cut_idle();
        self.shared.conns.wait_empty(deadline);
        for s in self.shared.sessions.take_all().into_iter().chain(self.shared.legacy.take_all()) {
            s.close();
            s.abort_streams();
        }
        self.shared.conns.cut_all();
        let threads: Vec<_> = self.threads.lock().drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown(Duration::ZERO);
    }
}

/// Expires idle sessions until told to stop.
fn reap(shared: &Shared, stop: &Receiver<()>) {
    let idle = Duration::from_millis(shared.settings.session_idle_ms);
    let tick = (idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(5));
    while let Err(crossbeam_channel::RecvTimeoutError::Timeout) = stop.recv_timeout(tick) {
        for s in shared.sessions.take_expired(idle) {
            log::debug!(target: "mcprouter::gateway", "session expired after {} ms idle", idle.as_millis());
            s.close();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn gateway_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<super::Gateway>();
    }
}
