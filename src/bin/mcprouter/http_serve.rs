//! `mcprouter serve --http`: the router behind the library's [`Gateway`] until SIGTERM or
//! SIGINT, then a graceful stop (streams drained for the router's shutdown grace).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mcprouter::{Config, Gateway, Router};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::Release);
}

/// Runs the gateway; `metrics` (the optional metrics listener) is dropped before the
/// router shuts down.
pub fn run<M>(
    o: &crate::options::Options,
    config: Config,
    cell: Arc<OnceLock<Router>>,
    metrics: Option<M>,
    grace: Duration,
) -> i32 {
    let mut settings = config.gateway.clone();
    settings.listen = o.http.clone();
    if let Some(p) = &o.path {
        settings.path = p.clone();
    }
    if let Some(p) = &o.sse_path {
        settings.sse_path = p.clone();
    }
    if let Some(p) = &o.messages_path {
        settings.messages_path = p.clone();
    }
    if let (Some(cert), Some(key)) = (&o.tls_cert, &o.tls_key) {
        settings.tls = Some(mcprouter::config::gateway::TlsFiles::new(cert, key));
    }
    if let Err(e) = settings.validate() {
        log::error!(target: "mcprouter", "mcprouter serve: {e}");
        return 2;
    }
    let router = match Router::new(config) {
        Ok(r) => r,
        Err(e) => {
            log::error!(target: "mcprouter", "mcprouter serve: {e}");
            return 1;
        }
    };
    let _ = cell.set(router.clone());
    let gateway = match Gateway::start(router.clone(), settings) {
        Ok(g) => g,
        Err(e) => {
            log::error!(target: "mcprouter", "mcprouter serve: {e}");
            drop(metrics);
            router.shutdown(grace);
            return 2;
        }
    };
    // Reloads on SIGHUP (and file changes with --watch); the gateway's own section is read
    // at start only. Many clients share the backends, so no client's capabilities apply.
    let reloader =
        crate::reload::start(router.clone(), o.config.clone().into(), o.watch, |c| c.router.serve_defaults());
    // Always shown: with port 0 it is the only way to learn the address.
    eprintln!("mcprouter: serving MCP on {}", gateway.url());
    if let Some(sse) = gateway.sse_url() {
        eprintln!("mcprouter: legacy HTTP+SSE clients: {sse}");
    }
    #[allow(unsafe_code)]
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
    }
    // A signal handler can do nothing but set the flag, so it is looked at a few times a second.
    while !STOP.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(100));
    }
    gateway.shutdown(grace);
    drop(reloader);
    drop(metrics);
    router.shutdown(grace);
    0
}
