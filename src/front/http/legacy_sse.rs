//! The legacy HTTP+SSE transport (2024-11-05), served next to Streamable HTTP for the
//! clients that still use it.
//!
//! `GET sse_path` opens a session: the router session lives exactly as long as that
//! stream, and its first event, `endpoint`, names the URL to POST messages to
//! (`messages_path?sessionId=<128 random bits>`). A POST is answered 202 at once; its
//! reply, and everything else the router sends the client (progress, logs, sampling,
//! elicitation and roots requests, list changes), goes on the stream, in order (the
//! session's pump and [`HttpSession::legacy_reply`]). When the stream goes (the client
//! left, or a write failed), the session closes, which cancels its calls in flight.
//!
//! Threads: an open stream holds one connection thread, so streams are capped
//! (`max_sse_streams`, below `max_connections`, so POSTs always find a thread). A POST
//! carrying requests keeps its connection thread until the reply is on the stream, and
//! closes its connection after the 202: the client may need to POST again (a sampling
//! answer) before that reply exists, and must not queue that POST on a connection whose
//! thread is waiting.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::mcp::{Ctx, accepts, inspect, json_text};
use super::response::{Sink, write_full};
use super::sessions::{HttpSession, new_session_id};
use crate::config::GatewaySettings;
use crate::jsonrpc;

/// How often an open stream's thread looks for a departed client.
const TICK: Duration = Duration::from_millis(250);

/// The legacy endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `GET sse_path`: the session's event stream.
    Stream,
    /// `POST messages_path?sessionId=...`: one message (or batch) from the client.
    Messages,
}

/// Which legacy endpoint `path` is, if the transport is on.
pub(crate) fn endpoint(s: &GatewaySettings, path: &str) -> Option<Endpoint> {
    if !s.legacy_sse {
        None
    } else if path == s.sse_path {
        Some(Endpoint::Stream)
    } else if path == s.messages_path {
        Some(Endpoint::Messages)
    } else {
        None
    }
}

/// Answers a request to a legacy endpoint, past the shared checks (Host, Origin, token);
/// true when the connection may carry another.
pub(crate) fn handle(cx: &mut Ctx<'_>, endpoint: Endpoint) -> bool {
    match (endpoint, cx.req.method.as_str()) {
        (Endpoint::Stream, "GET") => stream(cx),
        (Endpoint::Messages, "POST") => message(cx),
        (Endpoint::Stream, _) => not_allowed(cx, "GET, OPTIONS"),
        (Endpoint::Messages, _) => not_allowed(cx, "POST, OPTIONS"),
    }
}

fn not_allowed(cx: &mut Ctx<'_>, allow: &str) -> bool {
    let body = super::mcp::error_body(-32000, "Method Not Allowed");
    cx.reply(405, vec![("Allow", allow.into())], Some(&body))
}

/// `GET sse_path`: a new session, for as long as its stream stays open.
fn stream(cx: &mut Ctx<'_>) -> bool {
    if !accepts(cx.req, &["text/event-stream"]) {
        return cx.fail(406, -32000, "Not Acceptable: Accept must list text/event-stream");
    }
    let shared = Arc::clone(cx.shared);
    if shared.shutting.load(std::sync::atomic::Ordering::Acquire) {
        return cx.fail(503, -32000, "Service Unavailable: the gateway is shutting down");
    }
    if shared.legacy.is_full() || !shared.stream_room() {
        return cx.fail(503, jsonrpc::OVERLOADED, "Service Unavailable: too many SSE streams");
    }
    let Some(id) = new_session_id() else {
        return cx.fail(503, -32000, "Service Unavailable: no session id could be generated");
    };
    // The same identity rule as a Streamable HTTP session (mcp.rs, `initialize`).
    let session = match shared.router.session(Some(cx.client.as_deref().unwrap_or(&id))) {
        Ok(s) => s,
        Err(_) => return cx.fail(503, -32000, "Service Unavailable: the router is closed"),
    };
    let hs = HttpSession::new_legacy(id.clone(), session);
    if !shared.legacy.insert(Arc::clone(&hs)) {
        hs.close();
        return cx.fail(503, jsonrpc::OVERLOADED, "Service Unavailable: too many SSE streams");
    }
    let busy = hs.busy();
    let sink = match cx.stream.try_clone() {
        Ok(clone) => Arc::new(Sink::new(clone, cx.cors.clone())),
        Err(_) => {
            shared.legacy.remove(&id);
            hs.close();
            return false;
        }
    };
    let first = format!("event: endpoint\ndata: {}?sessionId={id}\n\n", shared.settings.messages_path);
    let mut open = hs.open_legacy(&sink, &first);
    let keepalive = Duration::from_millis(shared.settings.sse_keepalive_ms);
    let mut quiet_since = Instant::now();
    while open && sink.is_open() && !hs.is_closed() {
        crossbeam_channel::select! {
            recv(shared.shutdown_rx) -> _ => break,
            default(TICK) => {}
        }
        // The client sends nothing more on this connection: readable means gone.
        if sink.peer_gone() {
            break;
        }
        if quiet_since.elapsed() >= keepalive {
            open = sink.comment();
            quiet_since = Instant::now();
        }
    }
    shared.legacy.remove(&id);
    hs.close();
    drop(busy);
    sink.end();
    false
}

/// `POST messages_path?sessionId=...`: 202 at once; the reply goes on the stream.
fn message(cx: &mut Ctx<'_>) -> bool {
    let shared = Arc::clone(cx.shared);
    let Some(id) = cx.req.query_param("sessionId").or_else(|| cx.req.query_param("session_id")) else {
        return cx.fail(400, -32000, "Bad Request: the sessionId query parameter is required");
    };
    let found = shared.legacy.get(id).filter(|s| !s.is_closed() && cx.owns(s));
    let Some(hs) = found else {
        return cx.fail(404, -32001, "Session not found (unknown, or its SSE stream closed): open a new stream");
    };
    let text = match json_text(cx.req) {
        Ok(t) => t,
        Err((status, code, why)) => return cx.fail(status, code, why),
    };
    let Some(body) = inspect(text) else {
        return cx.fail(400, jsonrpc::PARSE_ERROR, "Parse error: invalid JSON");
    };
    let _busy = hs.busy();
    if body.request_ids.is_empty() {
        // Notifications and the client's answers: quick, and the connection stays.
        return match hs.session.handle(text) {
            Ok(reply) => {
                if let Some(err) = reply {
                    hs.legacy_reply(&err);
                }
                cx.reply(202, Vec::new(), None)
            }
            Err(_) => cx.fail(404, -32001, "Session not found (it was closed)"),
        };
    }
    if write_full(cx.stream, 202, &cx.cors, None, b"", true).is_err() {
        return false;
    }
    // The client has its whole answer: free its connection now (see the module doc).
    cx.stream.shutdown();
    if let Ok(Some(reply)) = hs.session.handle(text) {
        hs.legacy_reply(&reply);
    }
    false
}
