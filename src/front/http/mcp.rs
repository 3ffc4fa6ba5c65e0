//! The MCP endpoint: POST (messages in; JSON or SSE out), GET (the session's own event
//! stream), DELETE (end the session), OPTIONS (CORS preflight), with the Streamable HTTP
//! rules on headers, sessions and versions.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::Shared;
use super::conn::Conn;
use super::request::Request;
use super::response::{Headers, Sink, write_full};
use super::sessions::{CallStream, HttpSession, SUPPORTED_VERSIONS, batches_allowed, new_session_id};
use crate::jsonrpc;

const ALLOW: &str = "GET, POST, DELETE, OPTIONS";

/// A JSON-RPC error without an id, the body of an HTTP error.
pub(crate) fn error_body(code: i64, message: &str) -> String {
    jsonrpc::error(None, code, message)
}

/// One request being answered, past the checks every endpoint shares.
pub(crate) struct Ctx<'a> {
    pub shared: &'a Arc<Shared>,
    pub stream: &'a mut Conn,
    pub req: &'a Request,
    /// CORS headers, when the request's origin gets them.
    pub cors: Headers,
    /// The configured client the bearer token identifies (`clients:`), if any.
    pub client: Option<String>,
}

impl Ctx<'_> {
    /// Writes an error answer; true when the connection may go on.
    pub fn fail(&mut self, status: u16, code: i64, message: &str) -> bool {
        self.reply(status, vec![], Some(&error_body(code, message)))
    }

    pub fn reply(&mut self, status: u16, mut headers: Headers, json: Option<&str>) -> bool {
        headers.extend(self.cors.iter().cloned());
        let ct = json.map(|_| "application/json");
        write_full(self.stream, status, &headers, ct, json.unwrap_or_default().as_bytes(), false).is_ok()
    }

    fn session_headers(&self, id: &str) -> Headers {
        let mut h: Headers = vec![("Mcp-Session-Id", id.to_owned())];
        h.extend(self.cors.iter().cloned());
        h
    }

    /// The session named by the request, or the error answer already written.
    fn session(&mut self) -> Result<Arc<HttpSession>, bool> {
        let Some(id) = self.req.header("mcp-session-id").map(str::to_owned) else {
            return Err(self.fail(400, -32000, "Bad Request: Mcp-Session-Id header is required"));
        };
        // A session belongs to the identity that opened it: another client's token does
        // not reach it (and learns nothing: it is "not found").
        let found = self.shared.sessions.get(&id).filter(|s| !s.is_closed() && self.owns(s));
        let Some(s) = found else {
            return Err(self.fail(404, -32001, "Session not found (unknown or expired): initialize a new one"));
        };
        if let Some(v) = self.req.header("mcp-protocol-version")
            && !SUPPORTED_VERSIONS.contains(&v)
        {
            let msg =
                format!("Bad Request: unsupported MCP-Protocol-Version (supported: {})", SUPPORTED_VERSIONS.join(", "));
            return Err(self.fail(400, -32000, &msg));
        }
        Ok(s)
    }

    pub fn owns(&self, s: &HttpSession) -> bool {
        let opened_by = s.session.client_id();
        match &self.client {
            Some(c) => opened_by == c,
            None => !self.shared.router.config().clients.iter().any(|k| k.name == opened_by),
        }
    }
}

/// A rate-limited reply (one request, refused with -32006) as HTTP 429 with
/// `Retry-After` in whole seconds, when nothing was streamed yet; else the usual answer.
fn finish(sink: &Sink, reply: &str) -> bool {
    // Most replies are not refusals: look for the code before parsing anything.
    let maybe = reply.contains("-32006");
    let limited = maybe
        .then(|| serde_json::from_str::<Value>(reply).ok())
        .flatten()
        .filter(|v| v["error"]["code"] == jsonrpc::RATE_LIMITED);
    if let Some(v) = limited {
        let ms = v["error"]["data"]["retryAfterMs"].as_u64().unwrap_or(1000);
        let secs = ms.div_ceil(1000).max(1);
        if let Some(ok) = sink.finish_status(429, &vec![("Retry-After", secs.to_string())], reply) {
            return ok;
        }
    }
    sink.finish(reply)
}

pub(crate) fn accepts(req: &Request, types: &[&str]) -> bool {
    let accept = req.header("accept").unwrap_or_default().to_ascii_lowercase();
    let listed = |t: &str| accept.split(',').any(|a| a.split(';').next().is_some_and(|m| m.trim() == t));
    listed("*/*") || types.iter().all(|t| listed(t))
}

/// A JSON POST's body as text, or the refusal to send: 415 for another Content-Type, 400
/// (-32700) for a body that is not UTF-8. Every POST endpoint (both eras, legacy SSE) reads
/// its body through this.
pub(crate) fn json_text(req: &Request) -> Result<&str, (u16, i64, &'static str)> {
    let ct = req.header("content-type").unwrap_or_default().to_ascii_lowercase();
    if ct.split(';').next().map(str::trim) != Some("application/json") {
        return Err((415, -32000, "Unsupported Media Type: Content-Type must be application/json"));
    }
    std::str::from_utf8(&req.body).map_err(|_| (400, jsonrpc::PARSE_ERROR, "Parse error: the body is not UTF-8"))
}

/// Answers one request on the connection; true when the connection may carry another.
pub(crate) fn handle(shared: &Arc<Shared>, stream: &mut Conn, req: &Request) -> bool {
    let checks = &shared.checks;
    let origin = req.header("origin");
    let cors = match checks.cors_for(origin) {
        Some(o) => vec![
            ("Access-Control-Allow-Origin", o),
            ("Vary", "Origin".into()),
            ("Access-Control-Expose-Headers", "Mcp-Session-Id, MCP-Protocol-Version, WWW-Authenticate".into()),
        ],
        None => Vec::new(),
    };
    let mut cx = Ctx { shared, stream, req, cors, client: None };
    let legacy = super::legacy_sse::endpoint(&shared.settings, &req.path);
    if req.path != shared.settings.path && legacy.is_none() {
        return cx.fail(404, -32000, "Not Found: no MCP endpoint at this path");
    }
    // DNS rebinding: a page on another site must not reach a local server through a name
    // it controls.
    if !checks.host_ok(req.header("host")) {
        return cx.fail(403, -32000, "Forbidden: Host not allowed");
    }
    if !checks.origin_ok(origin) {
        return cx.fail(403, -32000, "Forbidden: Origin not allowed");
    }
    if req.method == "OPTIONS" {
        if cx.cors.is_empty() {
            return cx.reply(405, vec![("Allow", ALLOW.into())], None);
        }
        let h: Headers = vec![
            ("Access-Control-Allow-Methods", ALLOW.into()),
            (
                "Access-Control-Allow-Headers",
                "Content-Type, Accept, Authorization, Mcp-Session-Id, MCP-Protocol-Version, Last-Event-ID, \
                 Mcp-Method, Mcp-Name"
                    .into(),
            ),
            ("Access-Control-Max-Age", "600".into()),
        ];
        return cx.reply(204, h, None);
    }
    let who = checks.authorize(req.header("authorization"));
    cx.client = who.flatten().map(str::to_owned);
    if who.is_none() {
        let challenge = if req.header("authorization").is_some() {
            r#"Bearer realm="mcprouter", error="invalid_token""#
        } else {
            r#"Bearer realm="mcprouter""#
        };
        let body = error_body(-32000, "Unauthorized: a valid bearer token is required");
        return cx.reply(401, vec![("WWW-Authenticate", challenge.into())], Some(&body));
    }
    if let Some(endpoint) = legacy {
        return super::legacy_sse::handle(&mut cx, endpoint);
    }
    // A 2026-07-28 request is stateless: its own shape (modern.rs).
    if super::modern::is_modern(req) {
        return super::modern::handle(shared, cx.stream, req, std::mem::take(&mut cx.cors), cx.client.take());
    }
    match req.method.as_str() {
        "POST" => post(&mut cx),
        "GET" => get(&mut cx),
        "DELETE" => delete(&mut cx),
        _ => {
            let body = error_body(-32000, "Method Not Allowed");
            cx.reply(405, vec![("Allow", ALLOW.into())], Some(&body))
        }
    }
}

/// What the gateway needs to know of a POSTed body.
pub(crate) struct Body {
    /// Requests (method and id): the POST gets an answer.
    pub request_ids: Vec<String>,
    progress_tokens: Vec<Value>,
    initialize: bool,
}

pub(crate) fn inspect(text: &str) -> Option<Body> {
    let v: Value = serde_json::from_str(text).ok()?;
    let items = match &v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    let mut b = Body { request_ids: Vec::new(), progress_tokens: Vec::new(), initialize: false };
    for m in items {
        let (Some(method), Some(id)) = (m.get("method").and_then(Value::as_str), m.get("id")) else { continue };
        b.request_ids.push(id.to_string());
        b.initialize |= method == "initialize";
        if let Some(t) = m.get("params").and_then(|p| p.get("_meta")).and_then(|m| m.get("progressToken")) {
            b.progress_tokens.push(t.clone());
        }
    }
    Some(b)
}

fn post(cx: &mut Ctx<'_>) -> bool {
    if !accepts(cx.req, &["application/json", "text/event-stream"]) {
        return cx.fail(406, -32000, "Not Acceptable: Accept must list application/json and text/event-stream");
    }
    let text = match json_text(cx.req) {
        Ok(t) => t,
        Err((status, code, why)) => return cx.fail(status, code, why),
    };
    let Some(body) = inspect(text) else {
        return cx.fail(400, jsonrpc::PARSE_ERROR, "Parse error: invalid JSON");
    };
    let batch = jsonrpc::is_batch(text);
    if body.initialize {
        if batch {
            return cx.fail(400, jsonrpc::INVALID_REQUEST, "Invalid Request: initialize must not be part of a batch");
        }
        return initialize(cx, text);
    }
    let hs = match cx.session() {
        Ok(s) => s,
        Err(keep) => return keep,
    };
    if batch && !batches_allowed(&hs.version) {
        let msg = format!("Invalid Request: JSON-RPC batches are not allowed in protocol version {}", hs.version);
        return cx.fail(400, jsonrpc::INVALID_REQUEST, &msg);
    }
    let busy = hs.busy();
    if body.request_ids.is_empty() {
        // Notifications and the client's answers: quick, no stream.
        return match hs.session.handle(text) {
            Ok(None) => cx.reply(202, cx.session_headers(&hs.id), None),
            Ok(Some(err)) => cx.reply(400, cx.session_headers(&hs.id), Some(&err)),
            Err(_) => cx.fail(404, -32001, "Session not found (it was closed)"),
        };
    }
    let Ok(clone) = cx.stream.try_clone() else { return false };
    let sink = Arc::new(Sink::new(clone, cx.session_headers(&hs.id)));
    let call = CallStream::new(Arc::clone(&sink), body.progress_tokens, body.request_ids);
    hs.start_call(&call);
    let reply = hs.session.handle(text);
    hs.finish_call(&call);
    drop(busy);
    match reply {
        Ok(Some(r)) => finish(&sink, &r),
        // Every request was cancelled by the client: nothing to answer.
        Ok(None) => sink.finish_empty(),
        Err(_) => {
            sink.end();
            false
        }
    }
}

fn initialize(cx: &mut Ctx<'_>, text: &str) -> bool {
    let shared = cx.shared;
    if shared.shutting.load(std::sync::atomic::Ordering::Acquire) {
        return cx.fail(503, -32000, "Service Unavailable: the gateway is shutting down");
    }
    if shared.sessions.is_full() {
        return cx.fail(503, jsonrpc::OVERLOADED, "Service Unavailable: too many sessions");
    }
    let Some(id) = new_session_id() else {
        return cx.fail(503, -32000, "Service Unavailable: no session id could be generated");
    };
    // A client the token identified is its own identity (the policy's, and the sticky
    // balancing key of all its sessions); any other caller is keyed by its session.
    let session = match shared.router.session(Some(cx.client.as_deref().unwrap_or(&id))) {
        Ok(s) => s,
        Err(_) => return cx.fail(503, -32000, "Service Unavailable: the router is closed"),
    };
    let reply = match session.handle(text) {
        Ok(Some(r)) => r,
        _ => return cx.fail(503, -32000, "Service Unavailable: the router is closed"),
    };
    let version = serde_json::from_str::<Value>(&reply)
        .ok()
        .and_then(|v| v["result"]["protocolVersion"].as_str().map(str::to_owned));
    let Some(version) = version else {
        // Refused: no session was made.
        session.close();
        return cx.reply(200, Vec::new(), Some(&reply));
    };
    let hs = HttpSession::new(id.clone(), session, version, shared.settings.replay_events);
    if !shared.sessions.insert(Arc::clone(&hs)) {
        hs.close();
        return cx.fail(503, jsonrpc::OVERLOADED, "Service Unavailable: too many sessions");
    }
    cx.reply(200, cx.session_headers(&id), Some(&reply))
}

fn get(cx: &mut Ctx<'_>) -> bool {
    if !accepts(cx.req, &["text/event-stream"]) {
        return cx.fail(406, -32000, "Not Acceptable: Accept must list text/event-stream");
    }
    let hs = match cx.session() {
        Ok(s) => s,
        Err(keep) => return keep,
    };
    let last = cx.req.header("last-event-id").and_then(|v| v.trim().parse::<u64>().ok());
    let _busy = hs.busy();
    let Ok(clone) = cx.stream.try_clone() else { return false };
    let sink = Arc::new(Sink::new(clone, cx.session_headers(&hs.id)));
    let g = &cx.shared.settings;
    let stop = hs.open_standalone(&sink, last, g.sse_retry_ms);
    let keepalive = Duration::from_millis(g.sse_keepalive_ms);
    let shutdown = cx.shared.shutdown_rx.clone();
    while sink.is_open() {
        crossbeam_channel::select! {
            recv(stop) -> _ => break,
            recv(shutdown) -> _ => break,
            default(keepalive) => {
                if !sink.comment() {
                    break;
                }
            }
        }
    }
    hs.close_standalone(&sink);
    sink.end()
}

fn delete(cx: &mut Ctx<'_>) -> bool {
    let hs = match cx.session() {
        Ok(s) => s,
        Err(keep) => return keep,
    };
    cx.shared.sessions.remove(&hs.id);
    hs.close();
    cx.reply(200, Vec::new(), None)
}
