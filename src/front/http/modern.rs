//! The 2026-07-28 shape of the MCP endpoint (`basic/transports/streamable-http.mdx`): a POST
//! whose `MCP-Protocol-Version` is 2026-07-28 is one stateless request. No session id is
//! required or minted: each request gets a router session of its own, closed after the
//! answer (a call waiting for the client's input lives on in its own, `session/mrtr.rs`).
//! The answer is JSON, or a request-scoped SSE stream once something must go before it
//! (progress, a `subscriptions/listen` stream); the client closing that stream cancels the
//! request. Header rules: `Mcp-Method` (every request) and `Mcp-Name` (`tools/call`,
//! `prompts/get`, `resources/read`, plain or `=?base64?…?=`) must match the body, and the
//! version header the body's `_meta`; a header repeated with another value matches nothing:
//! else 400 with -32020. An unknown method is 404 with -32601; GET and DELETE are 405. Open
//! listens count against `max_sse_streams` with the legacy SSE streams (503 past it).

use super::conn::Conn;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;

use super::Shared;
use super::mcp::{accepts, error_body, json_text};
use super::request::Request;
use super::response::{Headers, Sink, sse_event, write_full};
use crate::era::{
    HEADER_MISMATCH, KEY_VERSION, MISSING_CAPABILITY, MODERN, UNSUPPORTED_VERSION, decode_header as decode,
};
use crate::jsonrpc;

/// The client id of requests that no bearer token names: shared by them (sticky balancing,
/// the binding of a parked call's `requestState`, which stays a 128-bit secret).
const ANONYMOUS: &str = "anonymous-2026";

/// What a 2026-07-28 client may ask (2026-07-28 schema, `ClientRequest`).
const METHODS: [&str; 10] = [
    "server/discover",
    "completion/complete",
    "prompts/get",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "subscriptions/listen",
    "tools/call",
    "tools/list",
];

/// Whether a request is for this endpoint shape: its version header names 2026-07-28.
pub(crate) fn is_modern(req: &Request) -> bool {
    req.header("mcp-protocol-version").is_some_and(|v| v.trim() == MODERN)
}

struct Cx<'a> {
    stream: &'a mut Conn,
    cors: Headers,
}

impl Cx<'_> {
    fn reply(&mut self, status: u16, mut headers: Headers, json: Option<&str>) -> bool {
        headers.extend(self.cors.iter().cloned());
        let ct = json.map(|_| "application/json");
        write_full(self.stream, status, &headers, ct, json.unwrap_or_default().as_bytes(), false).is_ok()
    }

    fn fail(&mut self, status: u16, code: i64, message: &str) -> bool {
        self.reply(status, vec![], Some(&error_body(code, message)))
    }
}

/// Answers one 2026-07-28 request; true when the connection may carry another. Origin,
/// host and the bearer token were checked by the caller; `client` is who the token names.
pub(crate) fn handle(
    shared: &Arc<Shared>,
    stream: &mut Conn,
    req: &Request,
    cors: Headers,
    client: Option<String>,
) -> bool {
    let mut cx = Cx { stream, cors };
    if req.method != "POST" {
        let body = error_body(-32000, "Method Not Allowed: a 2026-07-28 request is a POST");
        return cx.reply(405, vec![("Allow", "POST, OPTIONS".into())], Some(&body));
    }
    if !accepts(req, &["application/json", "text/event-stream"]) {
        return cx.fail(406, -32000, "Not Acceptable: Accept must list application/json and text/event-stream");
    }
    let text = match json_text(req) {
        Ok(t) => t,
        Err((status, code, why)) => return cx.fail(status, code, why),
    };
    let Ok(msg) = serde_json::from_str::<Value>(text) else {
        return cx.fail(400, jsonrpc::PARSE_ERROR, "Parse error: invalid JSON");
    };
    let Some(obj) = msg.as_object() else {
        return cx.fail(400, jsonrpc::INVALID_REQUEST, "Invalid Request: a 2026-07-28 body is one JSON-RPC message");
    };
    let Some(method) = obj.get("method").and_then(Value::as_str) else {
        return cx.fail(400, jsonrpc::INVALID_REQUEST, "Invalid Request: a 2026-07-28 client sends no responses");
    };
    let Some(id) = obj.get("id") else {
        // No client notification means anything here (a cancellation is closing the stream).
        return cx.reply(202, vec![], None);
    };
    if let Err(why) = headers_match(req, method, obj.get("params")) {
        return cx.reply(400, vec![], Some(&jsonrpc::error(Some(&id.to_string()), HEADER_MISMATCH, &why)));
    }
    let enveloped = obj.get("params").and_then(|p| p.pointer("/_meta")).is_some_and(|m| m.get(KEY_VERSION).is_some());
    if !enveloped {
        let msg = format!("Invalid params: a {MODERN} request needs params._meta[\"{KEY_VERSION}\"]");
        return cx.reply(400, vec![], Some(&jsonrpc::error(Some(&id.to_string()), jsonrpc::INVALID_PARAMS, &msg)));
    }
    if !METHODS.contains(&method) {
        let msg = format!("Method not found: {}", crate::session::clip(method));
        return cx.reply(404, vec![], Some(&jsonrpc::error(Some(&id.to_string()), jsonrpc::METHOD_NOT_FOUND, &msg)));
    }
    // A listen holds its connection's thread until the client leaves: capped (mod.rs).
    let _slot = match method {
        "subscriptions/listen" => match shared.take_listen() {
            Some(slot) => Some(slot),
            None => return cx.fail(503, jsonrpc::OVERLOADED, "Service Unavailable: too many open streams"),
        },
        _ => None,
    };
    let session = match shared.router.session(Some(client.as_deref().unwrap_or(ANONYMOUS))) {
        Ok(s) => s,
        Err(_) => return cx.fail(503, -32000, "Service Unavailable: the router is closed"),
    };
    let Ok(clone) = cx.stream.try_clone() else { return false };
    let sink = Sink::new(clone, cx.cors.clone());
    let done = AtomicBool::new(false);
    let cancel = jsonrpc::notification("notifications/cancelled", Some(&format!("{{\"requestId\":{id}}}")));
    let reply = std::thread::scope(|sc| {
        // Events of this request go before its answer, on its own stream; a client that
        // closes the stream cancels the request.
        let pump = std::thread::Builder::new().name("mcprouter-gw-modern".into()).spawn_scoped(sc, || {
            let mut cancelled = false;
            while !done.load(Ordering::Acquire) {
                if session.wait_event(Duration::from_millis(100)) {
                    while let Ok(Some(ev)) = session.next_event(Duration::ZERO) {
                        if !sink.send(&sse_event(None, None, &ev)) {
                            break;
                        }
                    }
                }
                if !cancelled && sink.peer_gone() {
                    cancelled = true;
                    let _ = session.handle(&cancel);
                }
            }
        });
        let reply = session.handle(text);
        done.store(true, Ordering::Release);
        if let Ok(p) = pump {
            let _ = p.join();
        }
        reply
    });
    // What the backends sent before the answer, then the answer.
    while let Ok(Some(ev)) = session.next_event(Duration::ZERO) {
        sink.send(&sse_event(None, None, &ev));
    }
    drop(session);
    match reply {
        Ok(Some(r)) => match status_of(&r) {
            200 => sink.finish(&r),
            status => sink.finish_status(status, &vec![], &r).unwrap_or_else(|| sink.finish(&r)),
        },
        Ok(None) => sink.finish_empty(),
        Err(_) => {
            sink.end();
            false
        }
    }
}

/// The HTTP status of an answer (2026-07-28 `streamable-http.mdx`): the envelope's errors
/// are 400, the rest 200.
fn status_of(reply: &str) -> u16 {
    if !reply.contains("\"error\"") {
        return 200;
    }
    let code = serde_json::from_str::<Value>(reply).ok().and_then(|v| v["error"]["code"].as_i64());
    match code {
        Some(jsonrpc::INVALID_PARAMS | UNSUPPORTED_VERSION | HEADER_MISMATCH | MISSING_CAPABILITY) => 400,
        _ => 200,
    }
}

/// The one value of header `name`. Sent twice with different values, it is refused: a
/// proxy in front may have read the other one, so neither can be trusted to match the body.
fn single<'a>(req: &'a Request, name: &str) -> Result<Option<&'a str>, String> {
    let mut values = req.headers.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let first = values.next();
    if values.any(|v| Some(v) != first) {
        return Err(format!("the {name} header is sent more than once, with different values"));
    }
    Ok(first)
}

/// The request's headers against its body (SEP-2243).
fn headers_match(req: &Request, method: &str, params: Option<&Value>) -> Result<(), String> {
    single(req, "mcp-protocol-version")?;
    let body_version = params.and_then(|p| p.pointer("/_meta")).and_then(|m| m.get(KEY_VERSION));
    if let Some(v) = body_version.and_then(Value::as_str)
        && v != MODERN
    {
        return Err(format!("MCP-Protocol-Version is {MODERN} but params._meta names {}", crate::session::clip(v)));
    }
    match single(req, "mcp-method")?.map(decode) {
        Some(Ok(m)) if m == method => {}
        Some(Ok(_)) => return Err("Mcp-Method does not match the body's method".into()),
        Some(Err(e)) => return Err(format!("Mcp-Method: {e}")),
        None => return Err("the Mcp-Method header is required".into()),
    }
    let target = match method {
        "tools/call" | "prompts/get" => params.and_then(|p| p.get("name")),
        "resources/read" => params.and_then(|p| p.get("uri")),
        _ => return Ok(()),
    };
    let Some(target) = target.and_then(Value::as_str) else { return Ok(()) };
    match single(req, "mcp-name")?.map(decode) {
        Some(Ok(n)) if n == target => Ok(()),
        Some(Ok(_)) => Err("Mcp-Name does not match the body's name or uri".into()),
        Some(Err(e)) => Err(format!("Mcp-Name: {e}")),
        None => Err(format!("the Mcp-Name header is required for {method}")),
    }
}
