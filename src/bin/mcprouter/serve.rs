//! `mcprouter serve`: the router as one MCP server on stdio, and `mcprouter check`.

use std::io::{BufReader, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mcprouter::framing::{Line, read_line_limited};
use mcprouter::jsonrpc::{self, Message};
use mcprouter::{Router, Session};

use crate::metrics_http;
use crate::options::{Options, announce, load_and_install};

/// Requests handled at once; beyond it the reader handles inline, which pushes back on the client.
const MAX_CONCURRENT: usize = 256;

pub fn run(o: &Options) -> i32 {
    let Some((config, redactor)) = load_and_install(o, "serve") else {
        return 2;
    };
    // Bound before any backend starts, so a refused or busy address costs nothing.
    let listener = match o.metrics_listen.as_deref().map(|spec| metrics_http::bind(spec, o.metrics_listen_any)) {
        None => None,
        Some(Ok(l)) => Some(l),
        Some(Err(e)) => {
            log::error!(target: "mcprouter", "mcprouter serve: {e}");
            return 2;
        }
    };
    let max = config.router.max_message_bytes;
    let grace = Duration::from_millis(config.router.shutdown_grace_ms);
    let router = match Router::new(config) {
        Ok(r) => r,
        Err(e) => {
            log::error!(target: "mcprouter", "mcprouter serve: {e}");
            return 1;
        }
    };
    // Stopped (thread joined, socket closed) when dropped, before the router shuts down.
    let metrics = match listener {
        None => None,
        Some(l) => {
            let addr = l.addr();
            match l.start(router.clone(), redactor.clone()) {
                Ok(running) => {
                    // Always shown, whatever the level: with port 0 it is the only way to learn it.
                    let url = format!("http://{addr}");
                    let msg = format!("metrics listening on {url}");
                    announce(o.log_format, &redactor, "mcprouter::metrics", &msg, &[("addr", &url)]);
                    Some(running)
                }
                Err(e) => {
                    log::error!(target: "mcprouter", "mcprouter serve: {e}");
                    router.shutdown(grace);
                    return 1;
                }
            }
        }
    };
    let session = match router.session(Some("stdio")) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            log::error!(target: "mcprouter", "mcprouter serve: {e}");
            drop(metrics);
            router.shutdown(grace);
            return 1;
        }
    };
    let (out_tx, out_rx) = crossbeam_channel::bounded::<String>(1024);
    let writer = std::thread::spawn(move || {
        let mut out = std::io::stdout().lock();
        for line in out_rx {
            if out.write_all(line.as_bytes()).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush()).is_err() {
                break;
            }
        }
    });
    let pump = {
        let (s, tx) = (Arc::clone(&session), out_tx.clone());
        std::thread::spawn(move || {
            while let Ok(ev) = s.next_event(Duration::from_millis(200)) {
                if let Some(ev) = ev {
                    if tx.send(ev).is_err() {
                        break;
                    }
                }
            }
        })
    };

    let busy = Arc::new(AtomicUsize::new(0));
    let mut input = BufReader::with_capacity(64 * 1024, std::io::stdin().lock());
    let mut buf = Vec::new();
    loop {
        match read_line_limited(&mut input, &mut buf, max) {
            Ok(Line::Eof) | Err(_) => break,
            Ok(Line::TooLong(_)) => {
                let msg = format!("Invalid Request: message exceeds the limit of {max} bytes");
                let _ = out_tx.send(jsonrpc::error(None, jsonrpc::INVALID_REQUEST, &msg));
            }
            Ok(Line::Complete) => {
                let text = match String::from_utf8(std::mem::take(&mut buf)) {
                    Ok(t) if t.trim().is_empty() => continue,
                    Ok(t) => t,
                    Err(_) => {
                        let _ = out_tx.send(jsonrpc::error(None, jsonrpc::PARSE_ERROR, "Parse error: not UTF-8"));
                        continue;
                    }
                };
                // Requests may block for a long time (a tool call waiting on the client's
                // own answer to a sampling request), so each runs on its own thread; the
                // rest is quick and keeps its order.
                let is_request =
                    jsonrpc::is_batch(&text) || matches!(jsonrpc::parse(&text), Ok(Message::Request { .. }));
                if is_request && busy.load(Ordering::Acquire) < MAX_CONCURRENT {
                    busy.fetch_add(1, Ordering::AcqRel);
                    let (s, tx, b) = (Arc::clone(&session), out_tx.clone(), Arc::clone(&busy));
                    let spawned = std::thread::Builder::new().stack_size(512 * 1024).spawn(move || {
                        reply(&s, &text, &tx);
                        b.fetch_sub(1, Ordering::AcqRel);
                    });
                    if spawned.is_err() {
                        busy.fetch_sub(1, Ordering::AcqRel);
                        let _ = out_tx.send(jsonrpc::error(None, jsonrpc::OVERLOADED, "router overloaded"));
                    }
                } else {
                    reply(&session, &text, &out_tx);
                }
            }
        }
    }
    // stdin closed: let calls in flight finish (each is bounded by its deadline), then stop.
    let end = Instant::now() + Duration::from_secs(60);
    while busy.load(Ordering::Acquire) > 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(metrics);
    session.close();
    router.shutdown(grace);
    let _ = pump.join();
    drop(out_tx);
    let _ = writer.join();
    0
}

fn reply(session: &Session, text: &str, out: &crossbeam_channel::Sender<String>) {
    if let Ok(Some(r)) = session.handle(text) {
        let _ = out.send(r);
    }
}

pub fn check(o: &Options) -> i32 {
    let Some((config, redactor)) = load_and_install(o, "check") else {
        return 2;
    };
    let router = match Router::new(config) {
        Ok(r) => r,
        Err(e) => {
            log::error!(target: "mcprouter", "mcprouter check: {e}");
            return 2;
        }
    };
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
    out
}
