//! `mcprouter serve`: the router as one MCP server on stdio (the library's stdio front,
//! plus the metrics endpoint), and `mcprouter check`.

use std::io::{BufReader, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mcprouter::Router;
use mcprouter::front::stdio;

use crate::metrics_http;
use crate::options::{Options, announce, load_and_install};

pub fn run(o: &Options) -> i32 {
    let Some((mut config, redactor)) = load_and_install(o, "serve") else {
        return 2;
    };
    if o.client.is_some() {
        // Checked with the rest of the config when the router starts: it must name a client.
        config.serve_client.clone_from(&o.client);
    }
    config.router.serve_defaults();
    // Bound before any backend starts, so a refused or busy address costs nothing.
    let listener = match o.metrics_listen.as_deref().map(|spec| metrics_http::bind(spec, o.metrics_listen_any)) {
        None => None,
        Some(Ok(l)) => Some(l),
        Some(Err(e)) => {
            log::error!(target: "mcprouter", "mcprouter serve: {e}");
            return 2;
        }
    };
    // Serves (503) from now on; the router is set once the client's first message has
    // started it. Stopped (thread joined, socket closed) before the router shuts down.
    let cell = Arc::new(OnceLock::new());
    let metrics = match listener {
        None => None,
        Some(l) => {
            let addr = l.addr();
            match l.start(Arc::clone(&cell), redactor.clone()) {
                Ok(running) => {
                    // Always shown, whatever the level: with port 0 it is the only way to learn it.
                    let url = format!("http://{addr}");
                    let msg = format!("metrics listening on {url}");
                    announce(o.log_format, &redactor, "mcprouter::metrics", &msg, &[("addr", &url)]);
                    Some(running)
                }
                Err(e) => {
                    log::error!(target: "mcprouter", "mcprouter serve: {e}");
                    return 1;
                }
            }
        }
    };
    if o.http.is_some() {
        let grace = Duration::from_millis(config.router.shutdown_grace_ms);
        return crate::http_serve::run(o, config, cell, metrics, grace);
    }
    // Not the locked handle: whichever serving thread reads next takes the input (see stdio).
    let mut input = BufReader::with_capacity(64 * 1024, std::io::stdin());
    let output: stdio::Output = Arc::new(emit);
    let served = stdio::serve(config, &mut input, output, |router, client_caps| {
        let _ = cell.set(router.clone());
        // Reloads on SIGHUP (and file changes with --watch) until serve ends, applying the
        // client's capabilities to each new config as at start, so unchanged backends stay.
        let reloader = crate::reload::start(router.clone(), o.config.clone().into(), o.watch, move |c| {
            c.router.serve_defaults();
            if let Some(caps) = &client_caps {
                c.router.declare_for_single_client(caps);
            }
        });
        (reloader, metrics)
    });
    match served {
        Ok(()) => 0,
        Err(e) => {
            log::error!(target: "mcprouter", "mcprouter serve: {e}");
            1
        }
    }
}

/// Lines waiting for stdout, and whether a thread is writing them out.
static PENDING: parking_lot::Mutex<(Vec<u8>, bool)> = parking_lot::Mutex::new((Vec::new(), false));
static GONE: AtomicBool = AtomicBool::new(false);

/// Writes one message to stdout; false once stdout is gone. Many serving threads finish at
/// once under load: rather than queue on stdout's lock (a sleep and a wake-up each) and
/// write one line per syscall, a thread that finds another writing leaves its line with
/// it, and the writer writes all that gathered in one write and flush. Lines keep the
/// order in which they were handed over. Alone, a thread writes its own line uncopied.
fn emit(line: &str) -> bool {
    {
        let mut p = PENDING.lock();
        if p.1 {
            p.0.extend_from_slice(line.as_bytes());
            p.0.push(b'\n');
            return !GONE.load(Ordering::Acquire);
        }
        p.1 = true;
    }
    let mut ok = write_out(&[line.as_bytes(), b"\n"]);
    let mut batch = Vec::new();
    loop {
        {
            let mut p = PENDING.lock();
            if p.0.is_empty() {
                p.1 = false;
                break;
            }
            std::mem::swap(&mut p.0, &mut batch);
        }
        ok &= write_out(&[&batch]);
        batch.clear();
    }
    if !ok {
        GONE.store(true, Ordering::Release);
    }
    ok && !GONE.load(Ordering::Acquire)
}

fn write_out(parts: &[&[u8]]) -> bool {
    let mut out = std::io::stdout().lock();
    parts.iter().try_for_each(|p| out.write_all(p)).and_then(|()| out.flush()).is_ok()
}

pub fn check(o: &Options) -> i32 {
    let Some((config, redactor)) = load_and_install(o, "check") else {
        return 2;
    };
    let settle = Duration::from_millis(config.router.init_timeout_ms);
    let router = match Router::new(config) {
        Ok(r) => r,
        Err(e) => {
            log::error!(target: "mcprouter", "mcprouter check: {e}");
            return 2;
        }
    };
    // A backend that announced a change at start (list_changed) is shown with its new lists;
    // one that keeps changing is shown as it stands, marked pending.
    router.settle(settle);
    let status = router.status();
    // A backend's last error may quote its command line or a secret it printed.
    if o.json {
        let text = serde_json::to_string_pretty(&status).unwrap_or_default();
        println!("{}", redactor.redact(&text));
    } else {
        print!("{}", redactor.redact(&status_table(&status)));
    }
    let ok = status["backends"].as_array().is_some_and(|b| b.iter().all(|b| b["state"] == "ready"));
    router.shutdown(Duration::from_millis(500));
    if ok { 0 } else { 1 }
}

/// A human table of `Router::status()`.
pub fn status_table(status: &serde_json::Value) -> String {
    let mut out = format!(
        "{:<16} {:<15} {:<8} {:<11} {:>5} {:>9} {:>7} {:>10}  {}\n",
        "BACKEND", "TRANSPORT", "STATE", "PROTOCOL", "TOOLS", "RESOURCES", "PROMPTS", "HANDSHAKE", "LAST ERROR"
    );
    for b in status["backends"].as_array().into_iter().flatten() {
        let hs = b["handshake_ms"].as_f64().map(|ms| format!("{ms:.1} ms")).unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{:<16} {:<15} {:<8} {:<11} {:>5} {:>9} {:>7} {:>10}  {}\n",
            b["name"].as_str().unwrap_or("?"),
            b["transport"].as_str().unwrap_or("?"),
            b["state"].as_str().unwrap_or("?"),
            b["protocol_version"].as_str().unwrap_or("-"),
            b["tools"].to_string(),
            b["resources"].to_string(),
            b["prompts"].to_string(),
            hs,
            b["last_error"].as_str().unwrap_or(""),
        ));
    }
    for w in status["router"]["catalog"]["warnings"].as_array().into_iter().flatten() {
        out.push_str(&format!("warning: {}\n", w.as_str().unwrap_or_default()));
    }
    if status["router"]["catalog"]["refresh_pending"] == true {
        out.push_str("note: a catalog refresh is still pending; the counts above may be stale\n");
    }
    out
}
