//! `serve --metrics-listen ADDR`: `GET /metrics` (Prometheus text 0.0.4) and `GET /status`
//! (JSON) on a small HTTP/1.1 endpoint.
//!
//! Loopback only unless `--metrics-listen-any`: `/status` names every backend, its pid and
//! its last error, which is nothing to hand to the network by accident. Both bodies go
//! through the logger's redactor, since a backend's last error may quote its command line.
//!
//! Plain std sockets with a fixed number of threads: one accept thread and `WORKERS`
//! answering threads behind a bounded queue. Each connection gets one answer and is closed,
//! and a client that sends slowly is cut off by a read timeout, so idle or slow clients can
//! hold at most `WORKERS` threads for a moment, never grow their number. When the queue is
//! full a new connection is closed at once.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, TrySendError, bounded};
use mcprouter::Router;
use mcprouter::redact::Redactor;

const WORKERS: usize = 2;
const QUEUE: usize = 32;
/// The longest a client may take to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_HEAD: u64 = 8 * 1024;

/// A bound listener that does not serve yet (bound first, so a bad address fails before
/// any backend starts).
pub struct Listener {
    socket: TcpListener,
    addr: SocketAddr,
}

/// The serving threads. Dropping it stops and joins them and closes the socket.
pub struct Running {
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
    threads: Vec<JoinHandle<()>>,
}

/// Binds `spec` (`IP:PORT` or `host:PORT`; port 0 picks a free port). Every address the
/// spec resolves to must be loopback unless `allow_any`.
pub fn bind(spec: &str, allow_any: bool) -> Result<Listener, String> {
    let addrs: Vec<SocketAddr> =
        spec.to_socket_addrs().map_err(|e| format!("--metrics-listen {spec:?}: {e}"))?.collect();
    let Some(&first) = addrs.first() else {
        return Err(format!("--metrics-listen {spec:?} resolves to no address"));
    };
    if !allow_any && !addrs.iter().all(|a| a.ip().is_loopback()) {
        return Err(format!(
            "--metrics-listen {spec} is not a loopback address; /metrics and /status would be \
             reachable from other hosts. Pass --metrics-listen-any to allow it"
        ));
    }
    let socket = TcpListener::bind(first).map_err(|e| format!("--metrics-listen {spec}: {e}"))?;
    let addr = socket.local_addr().unwrap_or(first);
    Ok(Listener { socket, addr })
}

impl Listener {
    /// The bound address (with the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts `mcprouter-metrics` (accepts) and its answering threads. Until `router` is
    /// set (serve starts its backends when the client's first message arrives), both paths
    /// answer 503.
    pub fn start(self, router: Arc<OnceLock<Router>>, redactor: Redactor) -> Result<Running, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = bounded::<TcpStream>(QUEUE);
        let mut running = Running { stop: Arc::clone(&stop), addr: self.addr, threads: Vec::new() };
        for i in 0..WORKERS {
            let (rx, router, redactor) = (rx.clone(), router.clone(), redactor.clone());
            let t = std::thread::Builder::new()
                .name(format!("mcprouter-metrics-{i}"))
                .spawn(move || answer_loop(&rx, &router, &redactor))
                .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
            running.threads.push(t);
        }
        let socket = self.socket;
        let t = std::thread::Builder::new()
            .name("mcprouter-metrics".into())
            .spawn(move || {
                for conn in socket.incoming() {
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    match tx.try_send(conn) {
                        Ok(()) => {}
                        // Busy: closing now costs the client a retry, never a thread.
                        Err(TrySendError::Full(c)) => drop(c),
                        Err(TrySendError::Disconnected(_)) => return,
                    }
                }
            })
            .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
        running.threads.push(t);
        Ok(running)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wakes the accept loop, which then sees `stop`; its sender's drop ends the workers.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        for t in self.threads.drain(..).rev() {
            let _ = t.join();
        }
    }
}

fn answer_loop(rx: &Receiver<TcpStream>, router: &OnceLock<Router>, redactor: &Redactor) {
    while let Ok(conn) = rx.recv() {
        // The client may be gone or too slow; either way the connection is done.
        let _ = answer(conn, router, redactor);
    }
}

fn answer(conn: TcpStream, router: &OnceLock<Router>, redactor: &Redactor) -> std::io::Result<()> {
    conn.set_read_timeout(Some(READ_TIMEOUT))?;
    conn.set_write_timeout(Some(READ_TIMEOUT))?;
    let mut head = BufReader::new((&conn).take(MAX_HEAD));
    let mut request_line = String::new();
    head.read_line(&mut request_line)?;
    // The rest of the head is read (to its blank line) only so the client sees an orderly close.
    let mut line = String::new();
    while head.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split(['?', '#']).next().unwrap_or("");
    let readable = matches!(method, "GET" | "HEAD");
    const WAITING: &str = "the backends start when the client sends its first message\n";
    let (status, content_type, body) = match (readable, path, router.get()) {
        (true, "/metrics" | "/status", None) => {
            ("503 Service Unavailable", "text/plain; charset=utf-8", WAITING.to_owned())
        }
        (true, "/metrics", Some(router)) => {
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8", redactor.redact(&router.metrics()).into_owned())
        }
        (true, "/status", Some(router)) => {
            ("200 OK", "application/json", redactor.redact(&router.status().to_string()).into_owned())
        }
        (true, _, _) => {
            ("404 Not Found", "text/plain; charset=utf-8", "not found; try /metrics or /status\n".to_owned())
        }
        (false, _, _) => ("405 Method Not Allowed", "text/plain; charset=utf-8", "only GET and HEAD\n".to_owned()),
    };
    let allow = if readable { "" } else { "Allow: GET, HEAD\r\n" };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    );
    if method != "HEAD" {
        out.push_str(&body);
    }
    (&conn).write_all(out.as_bytes())
}
