//! The Streamable HTTP transport (MCP 2025-03-26 and later) on ureq.
//!
//! Threads per backend: `concurrency` workers (`mcprouter-<name>-h<i>`) drain the backend's
//! bounded channel, each POSTing one message and reading its answer (a JSON body or an SSE
//! stream whose events are dispatched like stdio's lines), so calls run in parallel; and one
//! `-g` thread holding the optional GET stream of unsolicited messages. The session id and
//! negotiated protocol version are shared by all of them. The `server/discover` probe, and
//! everything after it once it named 2026-07-28, goes to `modern_http.rs` instead.

use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, bounded};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::value::RawValue;
use ureq::http::Response;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use crate::method::Method;

use super::life::{Connection, Link};
use super::sse::{SseError, SseReader};
use super::{Backend, Command, Net, Reply};

const ACCEPT_BOTH: &str = "application/json, text/event-stream";
/// How often a POST stream the server closed early (after an event id) is resumed.
const MAX_RESUMES: usize = 5;

/// Settings every network transport derives from a backend's config.
pub(super) struct NetSettings {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub connect: Duration,
    pub read: Duration,
    pub max_bytes: usize,
    pub concurrency: usize,
    /// The bound on one whole exchange (the longest a client call may take).
    pub per_call: Duration,
}

impl NetSettings {
    pub(super) fn of(b: &Backend) -> NetSettings {
        let c = &b.config;
        NetSettings {
            url: c.url.clone().unwrap_or_default(),
            headers: c.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            connect: Duration::from_millis(c.connect_timeout_ms.unwrap_or(10_000)),
            read: c.read_timeout_ms.map_or(b.timeout, Duration::from_millis),
            max_bytes: c.max_response_bytes.unwrap_or(b.max_message_bytes),
            concurrency: c.concurrency.unwrap_or(8),
            per_call: b.max_call,
        }
    }

    /// One agent per backend: its own connection pool; statuses are read, not errors;
    /// redirects are never followed (a redirect to another host could leak the headers).
    pub(super) fn agent(&self) -> ureq::Agent {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(self.connect))
            // Silence bounds: constant, so ureq sets them on a socket once. A bound that
            // shrinks as the exchange goes on (`timeout_per_call`) costs a setsockopt before
            // every read and write, splits a request's head from its body on the wire (Node
            // then reads the body a turn of its event loop later), and makes ureq resolve the
            // host on a new thread per request; the whole exchange is bounded in
            // `read_answer` instead.
            .timeout_per_read(Some(self.read))
            .timeout_per_write(Some(self.read))
            .max_idle_connections_per_host(self.concurrency + 2)
            .user_agent(concat!("mcprouter/", env!("CARGO_PKG_VERSION")))
            .build();
        ureq::Agent::with_parts(config, DefaultConnector::default(), Resolver::default())
    }
}

/// How long a host's addresses are reused before they are looked up again.
const RESOLVE_TTL: Duration = Duration::from_secs(1);

/// ureq looks the host up on every request, even one that reuses a pooled connection, and
/// under a timeout (ours bound every exchange) it does so on a thread of its own: a thread
/// spawned per call, 0.3–1.5 ms of each HTTP call on this machine (seen with strace). This
/// resolver asks ureq's own at most once per host per [`RESOLVE_TTL`] and reuses the answer.
#[derive(Debug, Default)]
struct Resolver {
    last: Mutex<Option<(Instant, String, ResolvedSocketAddrs)>>,
}

impl ureq::unversioned::resolver::Resolver for Resolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let key = format!("{}://{}", uri.scheme_str().unwrap_or(""), uri.authority().map_or("", |a| a.as_str()));
        if let Some((at, k, addrs)) = &*self.last.lock()
            && *k == key
            && at.elapsed() < RESOLVE_TTL
        {
            return Ok(addrs.clone());
        }
        let addrs = DefaultResolver::default().resolve(uri, config, timeout)?;
        *self.last.lock() = Some((Instant::now(), key, addrs.clone()));
        Ok(addrs)
    }
}

/// Whether `to` is on `from`'s origin (scheme, host and port, with default ports filled in
/// and hosts normalized by the URL standard) with the same userinfo: a server may send us
/// elsewhere on itself, never to another host nor with other credentials.
pub(super) fn same_origin(from: &url::Url, to: &url::Url) -> bool {
    // Origin equality is false for opaque origins (non-special schemes), as it should be.
    from.origin() == to.origin() && from.username() == to.username() && from.password() == to.password()
}

/// What went wrong with one exchange.
#[derive(Debug)]
pub(super) enum HttpError {
    /// Nothing listens there, or the name does not resolve.
    Unreachable(String),
    /// 404 on a request carrying a session id: the server forgot the session.
    SessionGone,
    /// 400/404/405 to `initialize` under `auto`: a legacy HTTP+SSE server.
    Legacy(u16),
    Other(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Unreachable(why) | HttpError::Other(why) => f.write_str(why),
            HttpError::SessionGone => f.write_str("the server no longer knows the session (404)"),
            HttpError::Legacy(code) => write!(f, "HTTP {code} to a Streamable HTTP initialize"),
        }
    }
}

pub(super) fn describe(e: &ureq::Error, settings: &NetSettings) -> HttpError {
    match e {
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
            HttpError::Unreachable(format!("cannot connect to {}: {e}", settings.url))
        }
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            HttpError::Unreachable(format!("cannot connect to {}: {e}", settings.url))
        }
        ureq::Error::Timeout(t) => HttpError::Other(format!("no answer from {} in time ({t})", settings.url)),
        _ => HttpError::Other(format!("HTTP exchange with {} failed: {e}", settings.url)),
    }
}

/// A non-2xx status as an error, with the start of the body for context.
pub(super) fn status_error(resp: Response<ureq::Body>, settings: &NetSettings) -> HttpError {
    let code = resp.status().as_u16();
    if resp.status().is_redirection() {
        let to = resp.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or("?").to_owned();
        let cross = url::Url::parse(&settings.url).is_ok_and(|b| b.join(&to).is_ok_and(|t| !same_origin(&b, &t)));
        let why = if cross { "redirects to another origin are refused" } else { "redirects are not followed" };
        return HttpError::Other(format!("HTTP {code} redirect to {to} from {}: {why}", settings.url));
    }
    let mut body = String::new();
    let _ = resp.into_body().into_reader().take(300).read_to_string(&mut body);
    let body: String = body.chars().filter(|c| !c.is_control()).take(200).collect();
    HttpError::Other(format!("HTTP {code} from {}{}{body}", settings.url, if body.is_empty() { "" } else { ": " }))
}

/// A body reader that gives up once `until` has passed: with the per-read timeout it bounds
/// a whole answer (a server trickling bytes cannot hold a worker past the call's bound).
pub(super) struct Until<R> {
    pub inner: R,
    pub until: Instant,
}

impl<R: Read> Read for Until<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if Instant::now() >= self.until {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the answer took longer than max_call_ms"));
        }
        self.inner.read(buf)
    }
}

/// A body reader that stops once its call is abandoned (see `read_answer`).
struct Watched<'a, R> {
    inner: R,
    abandoned: &'a dyn Fn() -> bool,
}

impl<R: Read> Read for Watched<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if (self.abandoned)() {
            return Err(std::io::Error::other("the call was abandoned"));
        }
        self.inner.read(buf)
    }
}

pub(super) fn content_type(resp: &Response<ureq::Body>) -> String {
    resp.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

pub(super) struct Http {
    pub(super) settings: NetSettings,
    pub(super) agent: ureq::Agent,
    auto: bool,
    session: Mutex<Option<String>>,
    version: Mutex<Option<String>>,
    /// The `initialize` request (its id and line), replayed when the server forgets the session.
    init_line: Mutex<Option<(u64, String)>>,
    /// Serializes re-initialization (held across its two POSTs; nothing else takes it).
    reinit: Mutex<()>,
    /// The GET stream: 0 not tried yet, 1 open, 2 none (405) or failed. It opens as soon as
    /// `initialize` is answered, and `notifications/initialized` waits (briefly) for it:
    /// servers send what follows initialization (list_changed, roots/list) on that stream
    /// and drop it when the stream is not there yet.
    get_state: AtomicU8,
    legacy: AtomicBool,
    /// Set when the `server/discover` probe was answered by a 2026-07-28 server: from then
    /// on every message takes the modern shape (`modern_http.rs`).
    pub(super) modern: AtomicBool,
    /// The `subscriptions/listen` streams held open on a modern server, by request id.
    pub(super) listens: Mutex<HashMap<String, Arc<AtomicBool>>>,
    pub(super) stopped: AtomicBool,
    /// Set when the server became unreachable and the backend was reported down, once.
    pub(super) down: AtomicBool,
    /// Set once `notifications/initialized` has been delivered (or failed). Workers send in
    /// parallel, so everything else waits for it: a request that overtook it would reach a
    /// server that is not initialized yet (server-everything then lists fewer tools).
    initialized: (Mutex<bool>, parking_lot::Condvar),
}

impl Http {
    fn open_gate(&self) {
        *self.initialized.0.lock() = true;
        self.initialized.1.notify_all();
    }

    /// Waits until `notifications/initialized` is out, the transport stops, or `until`.
    fn wait_gate(&self, until: Instant) {
        let mut open = self.initialized.0.lock();
        while !*open && !self.stopped.load(Ordering::Acquire) && Instant::now() < until {
            let _ = self.initialized.1.wait_until(&mut open, until.min(Instant::now() + Duration::from_millis(50)));
        }
    }
}

impl Net for Http {
    fn stop(&self) {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(sid) = self.session.lock().take() else { return };
        let mut req = self.agent.delete(&self.settings.url).header("Mcp-Session-Id", &sid);
        for (k, v) in &self.settings.headers {
            req = req.header(k, v);
        }
        if let Some(v) = self.version.lock().clone() {
            req = req.header("MCP-Protocol-Version", v);
        }
        // A server that does not answer quickly is not worth holding up a shutdown.
        let _ = req.config().timeout_global(Some(Duration::from_millis(500))).build().call();
    }

    fn wants_legacy(&self) -> bool {
        self.legacy.load(Ordering::Acquire)
    }
}

/// Starts the workers and the GET stream thread. Nothing is sent until the handshake.
pub(super) fn spawn(backend: &Link, auto: bool) -> Result<Connection, String> {
    let settings = NetSettings::of(backend);
    let agent = settings.agent();
    let workers = settings.concurrency;
    let http = Arc::new(Http {
        settings,
        agent,
        auto,
        session: Mutex::new(None),
        version: Mutex::new(None),
        init_line: Mutex::new(None),
        reinit: Mutex::new(()),
        get_state: AtomicU8::new(0),
        legacy: AtomicBool::new(false),
        modern: AtomicBool::new(false),
        listens: Mutex::new(HashMap::new()),
        stopped: AtomicBool::new(false),
        down: AtomicBool::new(false),
        initialized: (Mutex::new(false), parking_lot::Condvar::new()),
    });
    let (tx, rx) = bounded(backend.queue_capacity);
    let mut conn = Connection::new(tx);
    conn.net = Some(Arc::clone(&http) as Arc<dyn Net>);
    for i in 0..workers {
        let (h, rx) = (Arc::clone(&http), rx.clone());
        conn.threads.push(backend.spawn_thread(&format!("-h{i}"), move |b| worker(b, &h, &rx))?);
    }
    let h = Arc::clone(&http);
    conn.threads.push(backend.spawn_thread("-g", move |b| get_stream(b, &h))?);
    Ok(conn)
}

fn worker(backend: &Link, http: &Arc<Http>, rx: &Receiver<Command>) {
    while let Ok(cmd) = rx.recv() {
        if http.stopped.load(Ordering::Acquire) {
            break;
        }
        let (call_id, method) = match &cmd {
            Command::Call { id, method, .. } => (Some(*id), Some(*method)),
            Command::Notify { method, .. } => (None, Some(*method)),
            _ => (None, None),
        };
        // The probe and listens are modern by nature, the legacy handshake legacy (a probe
        // answered after its caller gave up must not make the fallback modern); the rest
        // follow what the probe found.
        let modern = match method {
            Some(Method::ServerDiscover | Method::SubscriptionsListen) => true,
            Some(Method::Initialize | Method::NotificationsInitialized) => {
                http.modern.store(false, Ordering::Release);
                false
            }
            _ => http.modern.load(Ordering::Acquire),
        };
        if modern && !matches!(cmd, Command::Shutdown) {
            super::modern_http::handle(backend, http, cmd);
            continue;
        }
        let Some(line) = cmd.into_line() else { break };
        let is_init = method == Some(Method::Initialize);
        if is_init {
            *http.init_line.lock() = Some((call_id.unwrap_or_default(), line.clone()));
        }
        let is_initialized = method == Some(Method::NotificationsInitialized);
        if is_initialized {
            let until = Instant::now() + Duration::from_secs(2);
            while http.get_state.load(Ordering::Acquire) == 0 && Instant::now() < until {
                thread::sleep(Duration::from_millis(2));
            }
        } else if !is_init {
            http.wait_gate(Instant::now() + backend.timeout);
        }
        let mut outcome = http.exchange(backend, &line, call_id, is_init);
        if is_initialized {
            http.open_gate();
        }
        if matches!(outcome, Err(HttpError::SessionGone)) && !is_init {
            // The server restarted or expired the session: initialize again, resend once.
            outcome = http.reinitialize(backend).and_then(|()| http.exchange(backend, &line, call_id, false));
        }
        if let Err(e) = outcome {
            if let HttpError::Legacy(_) = e {
                http.legacy.store(true, Ordering::Release);
            }
            if http.stopped.load(Ordering::Acquire) {
                break;
            }
            match call_id {
                Some(id) => backend.complete(id, Reply::Failed(e.to_string())),
                None => {
                    log::warn!(target: "mcprouter::backend", "[{}] a message was not delivered: {e}", backend.name())
                }
            }
            if matches!(e, HttpError::Unreachable(_)) && backend.is_ready() && !http.down.swap(true, Ordering::AcqRel) {
                // Down for good as far as we can tell: the supervisor restarts it with backoff.
                backend.on_exit(e.to_string());
            }
        }
    }
}

impl Http {
    fn post(&self, line: &str, with_version: bool) -> Result<Response<ureq::Body>, ureq::Error> {
        let mut req = self
            .agent
            .post(&self.settings.url)
            .header("Accept", ACCEPT_BOTH)
            .header("Content-Type", "application/json");
        for (k, v) in &self.settings.headers {
            req = req.header(k, v);
        }
        if let Some(sid) = self.session.lock().clone() {
            req = req.header("Mcp-Session-Id", sid);
        }
        if with_version && let Some(v) = self.version.lock().clone() {
            req = req.header("MCP-Protocol-Version", v);
        }
        req.send(line)
    }

    /// POSTs one message and dispatches whatever comes back, until the answer to `call_id`
    /// (when it is a request) has arrived.
    fn exchange(&self, backend: &Backend, line: &str, call_id: Option<u64>, is_init: bool) -> Result<(), HttpError> {
        let had_session = self.session.lock().is_some();
        let resp = self.post(line, !is_init).map_err(|e| describe(&e, &self.settings))?;
        let status = resp.status().as_u16();
        if !resp.status().is_success() {
            if is_init && self.auto && matches!(status, 400 | 404 | 405) {
                return Err(HttpError::Legacy(status));
            }
            if status == 404 && had_session {
                return Err(HttpError::SessionGone);
            }
            let err = status_error(resp, &self.settings);
            // The TypeScript SDK's servers answer an unknown session with 400 "No valid
            // session ID provided" where the spec says 404: treated the same.
            if status == 400 && had_session && err.to_string().to_ascii_lowercase().contains("session") {
                return Err(HttpError::SessionGone);
            }
            return Err(err);
        }
        if is_init && let Some(sid) = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()) {
            *self.session.lock() = Some(sid.to_owned());
        }
        let Some(id) = call_id else {
            // A notification or a response: 202 and no body, normally. Drain what there is.
            let _ = resp.into_body().into_reader().take(self.settings.max_bytes as u64).read_to_end(&mut Vec::new());
            return Ok(());
        };
        let mut on_message = |text: &str| -> bool {
            if is_init {
                self.note_version(text);
            }
            backend.dispatch(text) == Some(id)
        };
        self.read_answer(resp, &mut on_message, &|| false)
    }

    fn note_version(&self, text: &str) {
        #[derive(Deserialize)]
        struct R {
            result: Option<V>,
        }
        #[derive(Deserialize)]
        struct V {
            #[serde(rename = "protocolVersion")]
            protocol_version: Option<String>,
        }
        if let Ok(R { result: Some(V { protocol_version: Some(v) }) }) = serde_json::from_str::<R>(text) {
            *self.version.lock() = Some(v);
        }
    }

    /// Reads a JSON body or an SSE stream, handing each message to `on_message` until it
    /// says the answer to `id` has come. A stream the server ends early after giving an
    /// event id is resumed with GET and `Last-Event-ID` after its `retry` delay.
    pub(super) fn read_answer(
        &self,
        resp: Response<ureq::Body>,
        on_message: &mut dyn FnMut(&str) -> bool,
        abandoned: &dyn Fn() -> bool,
    ) -> Result<(), HttpError> {
        let max = self.settings.max_bytes;
        let until = Instant::now() + self.settings.per_call;
        let kind = content_type(&resp);
        if kind == "application/json" {
            let mut body = String::new();
            let reader = Until { inner: resp.into_body().into_reader(), until };
            let read = reader.take(max as u64 + 1).read_to_string(&mut body);
            if let Err(e) = read {
                return Err(HttpError::Other(format!("reading the response from {} failed: {e}", self.settings.url)));
            }
            if body.len() > max {
                return Err(HttpError::Other(format!("the response was larger than {max} bytes")));
            }
            if on_message(&body) {
                return Ok(());
            }
            return Err(HttpError::Other("the JSON response did not answer the request".into()));
        }
        if kind != "text/event-stream" {
            return Err(HttpError::Other(format!("unexpected content type {kind:?} in the answer to a request")));
        }
        let mut body = resp.into_body();
        let mut resumes = 0;
        loop {
            let reader = Until { inner: body.into_with_config().limit(u64::MAX).reader(), until };
            let reader = Watched { inner: reader, abandoned };
            let mut events = SseReader::new(BufReader::with_capacity(16 * 1024, reader), max, Some(max));
            loop {
                match events.next_event() {
                    // Checked before each read (keep-alive comments included), so a cancelled
                    // call's stream is dropped at the first bytes after its cancellation.
                    Err(_) if abandoned() => return Ok(()),
                    Ok(Some(ev)) if ev.kind == "message" => {
                        if serde_json::from_str::<&RawValue>(&ev.data).is_err() {
                            let shown: String = ev.data.chars().take(100).collect();
                            return Err(HttpError::Other(format!("malformed SSE event (data is not JSON): {shown}")));
                        }
                        if on_message(&ev.data) {
                            // The caller has its answer. The server should now end the
                            // stream: reading to its end (still dispatching) lets ureq
                            // reuse the connection, which saves a connect per call.
                            while let Ok(Some(ev)) = events.next_event() {
                                if ev.kind == "message" {
                                    on_message(&ev.data);
                                }
                            }
                            return Ok(());
                        }
                        if abandoned() {
                            // The caller is gone (cancelled, timed out): dropping the
                            // unfinished body closes the connection, which is how a
                            // 2026-07-28 server learns of a cancellation.
                            return Ok(());
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e @ SseError::Io(_)) if events.last_id.is_some() => {
                        log::debug!(target: "mcprouter::backend", "{e}; resuming");
                        break;
                    }
                    Err(e) => return Err(HttpError::Other(e.to_string())),
                }
            }
            let Some(last) = events.last_id.clone() else {
                return Err(HttpError::Other(format!(
                    "the server closed the response stream before answering (from {})",
                    self.settings.url
                )));
            };
            resumes += 1;
            if resumes > MAX_RESUMES || self.stopped.load(Ordering::Acquire) || Instant::now() >= until {
                return Err(HttpError::Other("the response stream kept closing before the answer".into()));
            }
            thread::sleep(Duration::from_millis(events.retry.unwrap_or(100).min(10_000)));
            let resp = self.get(Some(&last)).map_err(|e| describe(&e, &self.settings))?;
            if !resp.status().is_success() {
                return Err(status_error(resp, &self.settings));
            }
            body = resp.into_body();
        }
    }

    fn get(&self, last_event_id: Option<&str>) -> Result<Response<ureq::Body>, ureq::Error> {
        let mut req = self.agent.get(&self.settings.url).header("Accept", "text/event-stream");
        for (k, v) in &self.settings.headers {
            req = req.header(k, v);
        }
        if let Some(sid) = self.session.lock().clone() {
            req = req.header("Mcp-Session-Id", sid);
        }
        if let Some(v) = self.version.lock().clone() {
            req = req.header("MCP-Protocol-Version", v);
        }
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        // Long-lived: only silence (the per-read timeout) ends it.
        req.config().timeout_per_call(None).build().call()
    }

    /// Replays `initialize` and `notifications/initialized` under a new session. Several
    /// workers may find the session gone at once: only the first re-initializes.
    fn reinitialize(&self, backend: &Backend) -> Result<(), HttpError> {
        let stale = self.session.lock().clone();
        let _one = self.reinit.lock();
        if *self.session.lock() != stale {
            return Ok(());
        }
        log::info!(target: "mcprouter::backend", "[{}] session expired; initializing again", backend.name());
        let Some((init_id, init)) = self.init_line.lock().clone() else {
            return Err(HttpError::Other("the session expired before initialize".into()));
        };
        let init_id = init_id.to_string();
        *self.session.lock() = None;
        let resp = self.post(&init, false).map_err(|e| describe(&e, &self.settings))?;
        if !resp.status().is_success() {
            return Err(status_error(resp, &self.settings));
        }
        if let Some(sid) = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()) {
            *self.session.lock() = Some(sid.to_owned());
        }
        // The answer is the router's own business: checked here, never dispatched.
        let mut answered = |text: &str| -> bool {
            #[derive(Deserialize)]
            struct R<'a> {
                #[serde(borrow)]
                id: Option<&'a RawValue>,
            }
            serde_json::from_str::<R<'_>>(text).ok().and_then(|r| r.id).is_some_and(|i| i.get() == init_id)
        };
        self.read_answer(resp, &mut answered, &|| false)?;
        let note = crate::jsonrpc::notification("notifications/initialized", None);
        let resp = self.post(&note, true).map_err(|e| describe(&e, &self.settings))?;
        if !resp.status().is_success() {
            return Err(status_error(resp, &self.settings));
        }
        Ok(())
    }
}

/// Holds the optional GET stream of unsolicited messages. 405 means the server offers
/// none; otherwise it is reopened (with `Last-Event-ID`) whenever it ends.
fn get_stream(backend: &Backend, http: &Http) {
    let mut last_id: Option<String> = None;
    let mut backoff = Duration::from_millis(500);
    while !http.stopped.load(Ordering::Acquire) {
        if http.version.lock().is_none() {
            if http.modern.load(Ordering::Acquire) {
                return; // 2026-07-28 has no GET stream: changes come on listens.
            }
            thread::sleep(Duration::from_millis(2));
            continue;
        }
        let mut wait = backoff;
        let resp = http.get(last_id.as_deref());
        let open = matches!(&resp, Ok(r) if r.status().is_success() && content_type(r) == "text/event-stream");
        http.get_state.store(if open { 1 } else { 2 }, Ordering::Release);
        match resp {
            Ok(resp) if resp.status().as_u16() == 405 => return,
            Ok(resp) if open => {
                let reader =
                    BufReader::with_capacity(16 * 1024, resp.into_body().into_with_config().limit(u64::MAX).reader());
                // The stream as a whole is exempt from the size cap; each event is not.
                let mut events = SseReader::new(reader, http.settings.max_bytes, None);
                let began = Instant::now();
                loop {
                    if http.stopped.load(Ordering::Acquire) {
                        return;
                    }
                    match events.next_event() {
                        Ok(Some(ev)) if ev.kind == "message" => {
                            backend.dispatch(&ev.data);
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(SseError::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => break,
                        Err(e) => {
                            log::warn!(target: "mcprouter::backend", "[{}] GET stream: {e}", backend.name());
                            break;
                        }
                    }
                }
                last_id = events.last_id.clone().or(last_id);
                if began.elapsed() > Duration::from_secs(5) {
                    backoff = Duration::from_millis(500);
                }
                wait = events.retry.map_or(backoff, Duration::from_millis);
            }
            Ok(resp) => {
                log::debug!(target: "mcprouter::backend", "[{}] GET stream refused: {}", backend.name(), resp.status());
            }
            Err(e) => {
                log::debug!(target: "mcprouter::backend", "[{}] GET stream failed: {e}", backend.name());
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
        let until = Instant::now() + wait.min(Duration::from_secs(30));
        while Instant::now() < until && !http.stopped.load(Ordering::Acquire) {
            thread::sleep(Duration::from_millis(20));
        }
    }
}
