//! Streamable HTTP in its 2026-07-28 shape, towards a backend the `server/discover` probe
//! found modern (`http.rs` hands these messages here). Each request is a self-contained POST:
//! no session id, no `initialize`, no GET stream; its headers mirror the body
//! (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`). A 4xx whose body is a JSON-RPC error
//! is the server's answer, not a transport failure. There are no client-to-server
//! notifications: cancelling a call is closing its response stream, and a
//! `subscriptions/listen` is a long POST held by a thread of its own, so it never takes a
//! worker from calls.

use std::io::{BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use ureq::http::Response;

use crate::era;
use crate::method::Method;

use super::http::{Http, HttpError, content_type, describe, status_error};
use super::life::Link;
use super::sse::SseReader;
use super::{Command, Reply};

/// What the headers mirror from a message's body.
#[derive(Deserialize)]
struct Head {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    method: String,
    #[serde(default)]
    params: Option<Value>,
}

pub(super) fn handle(backend: &Link, http: &Arc<Http>, cmd: Command) {
    match cmd {
        Command::Call { id, method, line } => {
            let Err(e) = exchange(backend, http, id, method, &line) else { return };
            if http.stopped.load(Ordering::Acquire) {
                return;
            }
            backend.complete(id, Reply::Failed(e.to_string()));
            if matches!(e, HttpError::Unreachable(_)) && backend.is_ready() && !http.down.swap(true, Ordering::AcqRel) {
                backend.on_exit(e.to_string());
            }
        }
        Command::Notify { method: Method::SubscriptionsListen, line } => listen(backend, http, line),
        Command::Notify { method: Method::NotificationsCancelled, line } => cancelled(http, &line),
        Command::Notify { line, .. } | Command::Respond(line) => {
            // 2026-07-28 HTTP carries requests only (a server asks through MRTR results).
            let shown: String = line.chars().take(100).collect();
            log::debug!(target: "mcprouter::backend", "[{}] not sent to a 2026-07-28 server: {shown}", backend.name());
        }
        Command::Shutdown => {}
    }
}

/// POSTs one modern message with the headers that mirror it.
fn post(http: &Http, line: &str) -> Result<Response<ureq::Body>, ureq::Error> {
    let head = serde_json::from_str::<Head>(line).ok();
    let method = head.as_ref().map_or("", |h| h.method.as_str());
    let mut req = http
        .agent
        .post(&http.settings.url)
        .header("Accept", "application/json, text/event-stream")
        .header("Content-Type", "application/json");
    for (k, v) in &http.settings.headers {
        req = req.header(k, v);
    }
    req = req.header("MCP-Protocol-Version", era::MODERN).header("Mcp-Method", era::encode_header(method));
    let key = match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    };
    let params = head.as_ref().and_then(|h| h.params.as_ref());
    if let Some(name) = key.and_then(|k| params?.get(k)?.as_str()) {
        req = req.header("Mcp-Name", era::encode_header(name));
    }
    req.send(line)
}

/// One request: its answer (JSON or a request-scoped SSE stream) completes the call; a
/// 4xx with a JSON-RPC error completes it with that error.
fn exchange(backend: &Link, http: &Http, id: u64, method: Method, line: &str) -> Result<(), HttpError> {
    let resp = post(http, line).map_err(|e| describe(&e, &http.settings))?;
    let status = resp.status();
    // A 4xx with a JSON-RPC body is the server's verdict on the request (-32020/-32021/
    // -32022/-32602 are 400, an unknown method 404); a 5xx stays a failure of the backend,
    // which health checks and the breaker count.
    if status.is_client_error() {
        let error = error_answer(http, resp)?;
        backend.complete(id, Reply::Err(error));
        return Ok(());
    }
    if !status.is_success() {
        return Err(status_error(resp, &http.settings));
    }
    let mut on_message = |text: &str| -> bool {
        if method == Method::ServerDiscover && names_modern(text) {
            // Set before the answer is dispatched: what the handshake sends next is modern.
            http.modern.store(true, Ordering::Release);
        }
        backend.dispatch(text) == Some(id)
    };
    let abandoned = || backend.pending.with(id, |_| ()).is_none();
    http.read_answer(resp, &mut on_message, &abandoned)
}

/// The JSON-RPC error in an error status's body, or the status as a transport error.
fn error_answer(http: &Http, resp: Response<ureq::Body>) -> Result<Box<RawValue>, HttpError> {
    #[derive(Deserialize)]
    struct Body {
        error: Box<RawValue>,
    }
    let code = resp.status().as_u16();
    let json = content_type(&resp) == "application/json";
    let mut body = String::new();
    let _ = resp.into_body().into_reader().take(64 * 1024).read_to_string(&mut body);
    match serde_json::from_str::<Body>(&body) {
        Ok(b) if json && b.error.get().starts_with('{') => Ok(b.error),
        _ => {
            let shown: String = body.chars().filter(|c| !c.is_control()).take(200).collect();
            let sep = if shown.is_empty() { "" } else { ": " };
            Err(HttpError::Other(format!("HTTP {code} from {}{sep}{shown}", http.settings.url)))
        }
    }
}

/// Whether a `server/discover` answer is a result naming 2026-07-28.
fn names_modern(text: &str) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(text) else { return false };
    v.pointer("/result/supportedVersions").and_then(Value::as_array).is_some_and(|s| s.iter().any(|x| x == era::MODERN))
}

/// Closing a listen's stream is its cancellation; a call's stream is closed by its own
/// worker once it sees the call gone (`read_answer`'s `abandoned`).
fn cancelled(http: &Http, line: &str) {
    let Ok(head) = serde_json::from_str::<Head>(line) else { return };
    let Some(Value::String(id)) = head.params.as_ref().and_then(|p| p.get("requestId")) else { return };
    if let Some(stop) = http.listens.lock().remove(id) {
        stop.store(true, Ordering::Release);
    }
}

/// Opens a `subscriptions/listen` on a thread of its own, reopened whenever the server ends
/// it, until it is cancelled or the connection stops. (Its thread is not joined: it ends at
/// its next event or read timeout, like the GET stream of a legacy connection.)
fn listen(backend: &Link, http: &Arc<Http>, line: String) {
    let Some(Value::String(id)) = serde_json::from_str::<Head>(&line).ok().and_then(|h| h.id) else { return };
    let stop = Arc::new(AtomicBool::new(false));
    if let Some(old) = http.listens.lock().insert(id, Arc::clone(&stop)) {
        old.store(true, Ordering::Release);
    }
    let h = Arc::clone(http);
    if let Err(e) = backend.spawn_thread("-l", move |b| hold_listen(b, &h, &line, &stop)) {
        log::warn!(target: "mcprouter::backend", "[{}] could not listen: {e}", backend.name());
    }
}

fn hold_listen(backend: &Link, http: &Http, line: &str, stop: &AtomicBool) {
    let done = || stop.load(Ordering::Acquire) || http.stopped.load(Ordering::Acquire);
    let mut backoff = Duration::from_millis(500);
    while !done() {
        let began = Instant::now();
        match post(http, line) {
            Ok(resp) if resp.status().is_success() && content_type(&resp) == "text/event-stream" => {
                let reader =
                    BufReader::with_capacity(16 * 1024, resp.into_body().into_with_config().limit(u64::MAX).reader());
                let mut events = SseReader::new(reader, http.settings.max_bytes, None);
                while !done() {
                    match events.next_event() {
                        Ok(Some(ev)) if ev.kind == "message" => {
                            backend.dispatch(&ev.data);
                        }
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => break,
                    }
                }
            }
            Ok(resp) => {
                log::debug!(target: "mcprouter::backend", "[{}] listen refused: {}", backend.name(), resp.status());
            }
            Err(e) => log::debug!(target: "mcprouter::backend", "[{}] listen failed: {e}", backend.name()),
        }
        if began.elapsed() > Duration::from_secs(5) {
            backoff = Duration::from_millis(500);
        }
        let until = Instant::now() + backoff;
        while Instant::now() < until && !done() {
            thread::sleep(Duration::from_millis(20));
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}
