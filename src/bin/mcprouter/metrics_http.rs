//! `serve --metrics-listen ADDR`: `GET /metrics` (Prometheus text 0.0.4) and `GET /status`
//! (JSON) on a small HTTP endpoint, served by one named thread through tiny_http.
//!
//! Loopback only unless `--metrics-listen-any`: `/status` names every backend, its pid and
//! its last error, which is nothing to hand to the network by accident. Both bodies go
//! through the logger's redactor, since a backend's last error may quote its command line.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use mcprouter::Router;
use mcprouter::redact::Redactor;
use tiny_http::{Header, Method, Request, Response, Server};

/// A bound listener that does not serve yet (bound first, so a bad address fails before
/// any backend starts).
pub struct Listener {
    server: Server,
    addr: SocketAddr,
}

/// The serving thread. Dropping it stops the thread and closes the socket.
pub struct Running {
    server: Arc<Server>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
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
    let server = Server::http(first).map_err(|e| format!("--metrics-listen {spec}: {e}"))?;
    let addr = server.server_addr().to_ip().unwrap_or(first);
    Ok(Listener { server, addr })
}

impl Listener {
    /// The bound address (with the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts the thread `mcprouter-metrics` answering with `router`'s metrics and status.
    pub fn start(self, router: Router, redactor: Redactor) -> Result<Running, String> {
        let server = Arc::new(self.server);
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (Arc::clone(&server), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("mcprouter-metrics".into())
            .spawn(move || serve_loop(&s, &st, &router, &redactor))
            .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
        Ok(Running { server, stop, thread: Some(thread) })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_loop(server: &Server, stop: &AtomicBool, router: &Router, redactor: &Redactor) {
    loop {
        match server.recv() {
            Ok(req) => respond(req, router, redactor),
            // `unblock` (our Drop) makes `recv` fail; so does a failed accept, which is no
            // reason to stop serving.
            Err(_) if stop.load(Ordering::Acquire) => return,
            Err(e) => {
                log::warn!(target: "mcprouter::metrics", "metrics endpoint: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn respond(req: Request, router: &Router, redactor: &Redactor) {
    let path = req.url().split(['?', '#']).next().unwrap_or("");
    let readable = matches!(req.method(), Method::Get | Method::Head);
    let (code, content_type, body) = match (readable, path) {
        (true, "/metrics") => {
            (200, "text/plain; version=0.0.4; charset=utf-8", redactor.redact(&router.metrics()).into_owned())
        }
        (true, "/status") => (200, "application/json", redactor.redact(&router.status().to_string()).into_owned()),
        (true, _) => (404, "text/plain; charset=utf-8", "not found; try /metrics or /status\n".to_owned()),
        (false, _) => (405, "text/plain; charset=utf-8", "only GET and HEAD\n".to_owned()),
    };
    let mut resp = Response::from_string(body).with_status_code(code);
    for (name, value) in [("Content-Type", content_type), ("Cache-Control", "no-store")] {
        if let Ok(h) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            resp = resp.with_header(h);
        }
    }
    if code == 405 {
        if let Ok(h) = Header::from_bytes(&b"Allow"[..], &b"GET, HEAD"[..]) {
            resp = resp.with_header(h);
        }
    }
    // The client may have gone away; nothing to do about it.
    let _ = req.respond(resp);
}
