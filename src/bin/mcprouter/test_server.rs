//! `mcprouter test-server`: a small MCP server with knobs for fault injection, so the router's
//! tests can exercise real child processes without depending on third-party servers.

use serde_json::{Map, Value, json};

use crate::conformance_fixtures as conf;
use std::collections::HashMap;
use std::io::{self, BufRead, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

const VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
const LEVELS: &str = "debug info notice warning error critical alert emergency";
const WORDS: [&str; 4] = ["world", "wide", "wonder", "team"];
const ASK_TIMEOUT: Duration = Duration::from_secs(30);
/// How often slow work looks at its cancel flag.
const TICK: Duration = Duration::from_millis(10);

const USAGE: &str = "usage: mcprouter test-server [--name NAME] [--page-size N] [--many-tools N]
  [--protocol-version V] [--crash-after N] [--delay-ms N] [--hang-initialize]
  [--exit-on-start CODE] [--garbage-on-start] [--stderr-flood BYTES] [--huge-line BYTES]
  [--list-changed-after-init] [--sample-on-init]
  [--record-progress-token PATH] [--record-requests PATH] [--track-subscriptions] [--hostile-tools]
  [--extra-tool NAME]... [--template URI_TEMPLATE]... [--endless-pages N] [--pad-bytes N]
  [--hang-lists-after N] [--change-during-first-list]
  [--ws ADDR] [--http ADDR --http-fault close-mid-stream|bad-sse|endless-event|status-500|redirect-offsite|never-answer]
  [--emit-file PATH] [--conformance]
--ws serves MCP over WebSocket (subprotocol mcp) at ADDR instead of stdio, one server per
connection; --http serves a minimal Streamable HTTP server at ADDR/mcp whose `fault` tool
misbehaves as asked. Both print `listening on ws://ADDR` (or http://) on stderr.
--record-progress-token writes each tools/call's progress token (JSON) to PATH;
--record-requests appends every line received, byte for byte, to PATH;
--track-subscriptions makes `touch` notify only URIs the client subscribed to;
--hostile-tools lists spoof_progress, sample_after, sample_later, asked, log_later,
flood_log and sub_log.
--extra-tool adds a tool answering '<server name> <tool name>'; --template adds a resource
template, and with one the server reads any URI as '<server name> read <uri>'; --endless-pages
serves tools/list as endless pages of N tools (descriptions padded by --pad-bytes);
--hang-lists-after leaves every tools/list after the first N unanswered;
--change-during-first-list adds the dynamic tool while answering the first tools/list
(announcing it before that answer, which lacks it).
--emit-file writes every line of PATH to stdout, raw bytes as they are, once the client sends
notifications/initialized, then keeps serving (the hostile-backend fuzzer's lines).
--conformance adds the fixtures the official conformance suite calls by name (test_* tools,
test:// resources and prompts).
Flags are also read from MCP_TEST_FLAGS (space separated, appended to the arguments).";

/// Tool table, one `name|description|args` per line; args are `name:jsonType`, all required.
/// Text keeps `tools/list` and the dispatcher in `call_tool` easy to compare by eye.
const TOOLS: &str = "echo|Echo the message back|message:string
add|Add two numbers|a:number b:number
whoami|Return the server name|
env|Return an environment variable|name:string
pid|Return the process id|
slow|Sleep for ms milliseconds (cancellable)|ms:integer
hang|Never answer|
fail|Return a tool error|
crash|Exit with code 3 without answering|
progress|Send progress notifications|steps:integer
log|Send a log notification|message:string
sample|Ask the client for sampling/createMessage|prompt:string
elicit|Ask the client for elicitation/create|message:string
roots|Ask the client for roots/list|
notify_changed|Add the dynamic tool and announce list_changed|
touch|Send notifications/resources/updated|uri:string
stderr_flood|Write bytes of text to stderr|bytes:integer
garbage|Write a non-JSON line to stdout, then answer|
huge|Answer with a text block of bytes 'x' characters|bytes:integer
last_initialize|Return the initialize params received|
cancelled|Return the request ids cancelled so far|
meta|Return params._meta of this call|
stop_reading|Answer, then never read stdin again (a backend that stops reading)|";

/// Tools of hostile fixtures, listed only with `--hostile-tools` so the default catalog
/// (and the counts and sizes other tests rely on) stays as it was.
const HOSTILE_TOOLS: &str =
    "spoof_progress|Send count progress notifications for someone else's token|token:string count:integer
sample_after|Wait ms, then ask the client for sampling/createMessage|prompt:string ms:integer
sample_later|Answer at once; ask for sampling after ms (outcome in `asked`)|prompt:string ms:integer
asked|Return the outcomes of sample_later requests|
log_later|Answer at once; send a log notification after ms|message:string ms:integer
flood_log|Send count log notifications, whatever the level|count:integer
sub_log|Return the resources/subscribe and unsubscribe requests received|";

type Rpc<T = Value> = Result<T, (i64, String)>;
/// One page of a list plus the cursor of the next page, if any.
type Page = (Vec<Value>, Option<String>);

#[derive(Debug, Default, Clone)]
struct Config {
    ws: Option<String>,
    http: Option<String>,
    http_fault: Option<String>,
    name: String,
    page_size: usize,
    many_tools: usize,
    protocol_version: Option<String>,
    crash_after: Option<u64>,
    delay_ms: u64,
    hang_initialize: bool,
    exit_on_start: Option<i32>,
    garbage_on_start: bool,
    stderr_flood: usize,
    huge_line: usize,
    list_changed_after_init: bool,
    sample_on_init: bool,
    record_progress_token: Option<String>,
    record_requests: Option<String>,
    track_subscriptions: bool,
    hostile_tools: bool,
    extra_tools: Vec<String>,
    templates: Vec<String>,
    endless_pages: usize,
    pad_bytes: usize,
    hang_lists_after: Option<u64>,
    change_during_first_list: bool,
    emit_file: Option<String>,
    conformance: bool,
}

fn parse_args(args: &[String]) -> Result<Config, String> {
    fn num<T: std::str::FromStr>(flag: &str, v: String) -> Result<T, String> {
        let parsed = v.parse();
        parsed.map_err(|_| format!("{flag}: invalid number {v:?}"))
    }
    let name = "test".into();
    let mut c = Config { name, ..Config::default() };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || {
            let v = inline.clone().or_else(|| it.next().cloned());
            v.ok_or(format!("{flag} needs a value"))
        };
        match flag {
            "--name" => c.name = value()?,
            "--protocol-version" => c.protocol_version = Some(value()?),
            "--page-size" => c.page_size = num(flag, value()?)?,
            "--many-tools" => c.many_tools = num(flag, value()?)?,
            "--crash-after" => c.crash_after = Some(num(flag, value()?)?),
            "--delay-ms" => c.delay_ms = num(flag, value()?)?,
            "--exit-on-start" => c.exit_on_start = Some(num(flag, value()?)?),
            "--stderr-flood" => c.stderr_flood = num(flag, value()?)?,
            "--huge-line" => c.huge_line = num(flag, value()?)?,
            "--hang-initialize" => c.hang_initialize = true,
            "--garbage-on-start" => c.garbage_on_start = true,
            "--list-changed-after-init" => c.list_changed_after_init = true,
            "--sample-on-init" => c.sample_on_init = true,
            "--ws" => c.ws = Some(value()?),
            "--http" => c.http = Some(value()?),
            "--http-fault" => {
                let f = value()?;
                if !crate::test_http::FAULTS.contains(&f.as_str()) {
                    return Err(format!("unknown --http-fault {f}"));
                }
                c.http_fault = Some(f);
            }
            "--record-progress-token" => c.record_progress_token = Some(value()?),
            "--record-requests" => c.record_requests = Some(value()?),
            "--track-subscriptions" => c.track_subscriptions = true,
            "--hostile-tools" => c.hostile_tools = true,
            "--extra-tool" => c.extra_tools.push(value()?),
            "--template" => c.templates.push(value()?),
            "--endless-pages" => c.endless_pages = num(flag, value()?)?,
            "--pad-bytes" => c.pad_bytes = num(flag, value()?)?,
            "--hang-lists-after" => c.hang_lists_after = Some(num(flag, value()?)?),
            "--change-during-first-list" => c.change_during_first_list = true,
            "--emit-file" => c.emit_file = Some(value()?),
            "--conformance" => c.conformance = true,
            _ => return Err(format!("unknown flag: {arg}")),
        }
    }
    Ok(c)
}

/// Cursors are plain decimal offsets: opaque enough for clients, trivial to check in tests.
fn paginate(items: Vec<Value>, cursor: Option<&Value>, size: usize) -> Rpc<Page> {
    let bad = || invalid("bad cursor");
    let start = match cursor {
        None | Some(Value::Null) => 0,
        Some(Value::String(s)) => s.parse().ok().filter(|&n| n <= items.len()).ok_or_else(bad)?,
        Some(_) => return Err(bad()),
    };
    let size = if size == 0 { items.len() } else { size };
    let end = start.saturating_add(size).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    Ok((items[start..end].to_vec(), next))
}

/// Matches `test://<name>/item/{id}`; ids are a single non-empty path segment.
fn item_id<'a>(name: &str, uri: &'a str) -> Option<&'a str> {
    let rest = uri.strip_prefix("test://")?.strip_prefix(name)?;
    let id = rest.strip_prefix("/item/")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

/// Integers stay integers so `1 + 2` reads "3", not "3.0".
fn add(a: &Value, b: &Value) -> Option<Value> {
    let ints = a.as_i64().zip(b.as_i64());
    if let Some(s) = ints.and_then(|(x, y)| x.checked_add(y)) {
        return Some(s.into());
    }
    let s = a.as_f64()? + b.as_f64()?;
    if s.fract() == 0.0 && s.abs() < 9.0e15 {
        return Some((s as i64).into());
    }
    serde_json::Number::from_f64(s).map(Value::Number)
}

fn complete(p: &Value) -> Value {
    let greet_who = str_at(p, "/ref/type") == Some("ref/prompt")
        && str_at(p, "/ref/name") == Some("greet")
        && str_at(p, "/argument/name") == Some("who");
    if !greet_who {
        return json!({"completion": {"values": []}});
    }
    let prefix = str_at(p, "/argument/value").unwrap_or("");
    let values: Vec<&str> = WORDS.into_iter().filter(|w| w.starts_with(prefix)).collect();
    json!({"completion": {"values": values, "total": values.len(), "hasMore": false}})
}

fn ok(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

fn err(id: &Value, code: i64, message: impl Into<String>) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message.into()}})
}

fn text(s: &str) -> Value {
    json!({"content": [{"type": "text", "text": s}]})
}

fn tool_error(s: &str) -> Value {
    json!({"content": [{"type": "text", "text": s}], "isError": true})
}

fn invalid(what: impl std::fmt::Display) -> (i64, String) {
    (-32602, format!("Invalid params: {what}"))
}

/// String at a JSON pointer, e.g. `str_at(p, "/arguments/who")`.
fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn arg_str<'a>(a: &'a Value, k: &str) -> Rpc<&'a str> {
    let found = a.get(k).and_then(Value::as_str);
    found.ok_or_else(|| invalid(format!("argument {k:?} must be a string")))
}

fn arg_usize(a: &Value, k: &str) -> Rpc<usize> {
    let n = a.get(k).and_then(Value::as_u64);
    let found = n.and_then(|n| usize::try_from(n).ok());
    found.ok_or_else(|| invalid(format!("argument {k:?} must be a non-negative integer")))
}

fn flood_stderr(bytes: usize) {
    let pattern = "stderr flood padding ".repeat(4);
    let mut e = io::stderr().lock();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(80);
        let _ = e.write_all(&pattern.as_bytes()[..n - 1]);
        let _ = e.write_all(b"\n");
        left -= n;
    }
    let _ = e.flush();
}

#[derive(Default)]
struct State {
    init_params: Value,
    log_level: usize,
    cancelled: Vec<Value>,
    dynamic: bool,
    counter: u64,
    calls: u64,
    /// In-flight tools/call ids to cancel flags; keyed by the serialized id because `Value` is
    /// not `Hash`, and that keeps `1` and `"1"` distinct.
    inflight: HashMap<String, Arc<AtomicBool>>,
    /// Our outstanding server→client requests; `Some` once the client answered.
    replies: HashMap<String, Option<Value>>,
    /// Set by the `stop_reading` tool: the stdin loop stops reading for good.
    stop_reading: bool,
    /// What each `sample_later` request came to.
    asks: Vec<String>,
    /// URIs subscribed to, and every subscribe/unsubscribe request in order.
    subs: std::collections::HashSet<String>,
    sub_log: Vec<Value>,
    tools_lists: u64,
}

enum Outcome {
    Now(Option<Value>),
    Later(thread::JoinHandle<Option<Value>>),
}

struct Server {
    cfg: Config,
    out: Mutex<Box<dyn Write + Send>>,
    state: Mutex<State>,
    reply_cv: Condvar,
    next_id: AtomicU64,
}

impl Server {
    /// A panicking tool thread must not take the whole server down with a poisoned lock.
    fn st(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send_raw(&self, line: &str) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = out.write_all(line.as_bytes());
        let _ = out.write_all(b"\n");
        let _ = out.flush();
    }

    /// Writes the lines of `path` untouched (they may be invalid JSON or not even UTF-8):
    /// the fuzzer decides what a hostile server says, this only delivers it.
    fn emit_file(&self, path: &str) {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("test-server: --emit-file {path}: {e}");
                return;
            }
        };
        let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        for line in body.split(|&b| b == b'\n') {
            let _ = out.write_all(line);
            let _ = out.write_all(b"\n");
        }
        let _ = out.flush();
    }

    fn send(&self, v: &Value) {
        self.send_raw(&v.to_string());
    }

    fn respond(&self, v: &Value) {
        if self.cfg.delay_ms > 0 {
            thread::sleep(Duration::from_millis(self.cfg.delay_ms));
        }
        self.send(v);
    }

    /// Sends a notification (`id` None) or a server→client request.
    fn emit(&self, id: Option<&str>, method: &str, params: Option<Value>) {
        let mut m = json!({"jsonrpc": "2.0", "method": method});
        if let Some(id) = id {
            m["id"] = id.into();
        }
        if let Some(p) = params {
            m["params"] = p;
        }
        self.send(&m);
    }

    fn next_request_id(&self) -> String {
        format!("s-{}", self.next_id.fetch_add(1, SeqCst) + 1)
    }

    /// Sends a request to the client and waits for the whole response message.
    fn ask(&self, method: &str, params: Option<Value>, cancel: &AtomicBool) -> Result<Value, String> {
        let id = self.next_request_id();
        self.st().replies.insert(id.clone(), None);
        self.emit(Some(&id), method, params);
        let deadline = Instant::now() + ASK_TIMEOUT;
        let mut st = self.st();
        loop {
            if matches!(st.replies.get(&id), Some(Some(_))) {
                return st.replies.remove(&id).flatten().ok_or_else(String::new);
            }
            let now = Instant::now();
            if now >= deadline || cancel.load(SeqCst) {
                st.replies.remove(&id);
                let secs = ASK_TIMEOUT.as_secs();
                return Err(format!("no response to {method} within {secs}s"));
            }
            // Short waits so a cancellation is noticed without a second wakeup channel.
            let wait = (deadline - now).min(Duration::from_millis(50));
            st = match self.reply_cv.wait_timeout(st, wait) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// Asks the client and turns its answer into a tool result via `pick`.
    fn relay(
        &self,
        method: &str,
        params: Option<Value>,
        cancel: &AtomicBool,
        pick: fn(&Value) -> Option<String>,
    ) -> Value {
        match self.ask(method, params, cancel) {
            Err(e) => tool_error(&e),
            Ok(resp) => match (resp.get("error"), resp.get("result")) {
                (Some(e), _) => tool_error(&format!("{method} failed: {e}")),
                (None, Some(r)) => match pick(r) {
                    Some(t) => text(&t),
                    None => tool_error(&format!("unexpected {method} result: {r}")),
                },
                (None, None) => tool_error(&format!("malformed {method} response: {resp}")),
            },
        }
    }

    fn deliver(&self, id: &Value, msg: Value) {
        let Some(id) = id.as_str() else { return };
        let mut st = self.st();
        // Only requests we are waiting on; e.g. the --sample-on-init roots/list answer is dropped.
        if let Some(slot @ None) = st.replies.get_mut(id) {
            *slot = Some(msg);
            self.reply_cv.notify_all();
        }
    }

    fn handle_line(self: &Arc<Self>, line: &[u8]) {
        if let Some(path) = &self.cfg.record_requests {
            // The raw line, before any parsing: tests compare it with what the client sent.
            let record = std::fs::OpenOptions::new().create(true).append(true).open(path);
            let _ = record.and_then(|mut f| f.write_all(&[line, b"\n"].concat()));
        }
        match serde_json::from_slice::<Value>(line) {
            Err(e) => self.respond(&err(&Value::Null, -32700, format!("Parse error: {e}"))),
            Ok(Value::Array(items)) if items.is_empty() => {
                self.respond(&err(&Value::Null, -32600, "Invalid Request: empty batch"))
            }
            Ok(Value::Array(items)) => self.batch(items),
            Ok(msg) => {
                if let Outcome::Now(Some(r)) = self.dispatch(msg, false) {
                    self.respond(&r);
                }
            }
        }
    }

    fn batch(self: &Arc<Self>, items: Vec<Value>) {
        let outcomes: Vec<Outcome> = items.into_iter().map(|m| self.dispatch(m, true)).collect();
        let deferred = outcomes.iter().any(|o| matches!(o, Outcome::Later(_)));
        let me = Arc::clone(self);
        let finish = move || {
            let join = |o| match o {
                Outcome::Now(r) => r,
                Outcome::Later(h) => h.join().ok().flatten(),
            };
            let replies: Vec<Value> = outcomes.into_iter().filter_map(join).collect();
            if !replies.is_empty() {
                me.respond(&Value::Array(replies));
            }
        };
        // Joining on the reader thread would deadlock tools that wait for a client reply.
        if !deferred {
            finish();
        } else if let Err(e) = thread::Builder::new().name("batch".into()).spawn(finish) {
            eprintln!("test-server: cannot spawn batch thread: {e}");
        }
    }

    fn dispatch(self: &Arc<Self>, msg: Value, batch: bool) -> Outcome {
        let bad = |id: &Value| Outcome::Now(Some(err(id, -32600, "Invalid Request")));
        let Value::Object(mut m) = msg else {
            return bad(&Value::Null);
        };
        let id = m.remove("id");
        let params = m.remove("params").unwrap_or(Value::Null);
        let method = match m.remove("method") {
            Some(Value::String(s)) => s,
            None if id.is_some() && (m.contains_key("result") || m.contains_key("error")) => {
                let id = id.unwrap_or_default();
                m.insert("id".into(), id.clone());
                self.deliver(&id, Value::Object(m));
                return Outcome::Now(None);
            }
            _ => return bad(&id.unwrap_or_default()),
        };
        let Some(id) = id else {
            self.notification(&method, &params);
            return Outcome::Now(None);
        };
        match method.as_str() {
            "tools/call" => self.spawn_call(id, params, batch),
            "initialize" if self.cfg.hang_initialize => Outcome::Now(None),
            "tools/list" if self.hang_this_list() => Outcome::Now(None),
            _ => Outcome::Now(Some(match self.request(&method, &params) {
                Ok(r) => ok(&id, r),
                Err((code, message)) => err(&id, code, message),
            })),
        }
    }

    fn notification(&self, method: &str, p: &Value) {
        match method {
            "notifications/cancelled" => {
                let Some(rid) = p.get("requestId") else {
                    return;
                };
                let mut st = self.st();
                st.cancelled.push(rid.clone());
                if let Some(flag) = st.inflight.get(&rid.to_string()) {
                    flag.store(true, SeqCst);
                }
            }
            "notifications/initialized" => {
                if self.cfg.list_changed_after_init {
                    self.emit(None, "notifications/tools/list_changed", None);
                }
                if self.cfg.sample_on_init {
                    self.emit(Some(&self.next_request_id()), "roots/list", None);
                }
                if let Some(path) = &self.cfg.emit_file {
                    self.emit_file(path);
                }
            }
            _ => {}
        }
    }

    fn request(&self, method: &str, p: &Value) -> Rpc {
        let size = self.cfg.page_size;
        let list = |items: Vec<Value>, key: &str| -> Rpc {
            let (page, next) = paginate(items, p.get("cursor"), size)?;
            let mut r = Map::new();
            r.insert(key.into(), Value::Array(page));
            if let Some(n) = next {
                r.insert("nextCursor".into(), n.into());
            }
            Ok(Value::Object(r))
        };
        match method {
            "initialize" => Ok(self.initialize(p)),
            "ping" => Ok(json!({})),
            "resources/subscribe" | "resources/unsubscribe" => Ok(self.subscription(method, p)),
            "logging/setLevel" => {
                let level = str_at(p, "/level").unwrap_or("");
                let idx = LEVELS.split_whitespace().position(|l| l == level);
                self.st().log_level = idx.ok_or_else(|| invalid(format!("bad level {level:?}")))?;
                Ok(json!({}))
            }
            "tools/list" if self.cfg.endless_pages > 0 => Ok(self.endless_page(p.get("cursor"))),
            "tools/list" if self.cfg.change_during_first_list && !self.st().dynamic => {
                // Announced before this answer, which still lacks the new tool: the router
                // reads the announcement first and owes a refresh.
                let before = list(self.tools(), "tools");
                self.st().dynamic = true;
                self.emit(None, "notifications/tools/list_changed", None);
                before
            }
            "tools/list" => list(self.tools(), "tools"),
            "resources/list" => list(self.resources(), "resources"),
            "resources/templates/list" => list(self.templates(), "resourceTemplates"),
            "prompts/list" => list(self.prompts(), "prompts"),
            "resources/read" => self.read(p),
            "prompts/get" => self.prompt(p),
            "completion/complete" => {
                Ok(self.cfg.conformance.then(|| conf::complete(p)).flatten().unwrap_or_else(|| complete(p)))
            }
            _ => Err((-32601, format!("Method not found: {method}"))),
        }
    }

    fn initialize(&self, p: &Value) -> Value {
        self.st().init_params = p.clone();
        let asked = str_at(p, "/protocolVersion").filter(|v| VERSIONS.contains(v));
        let forced = self.cfg.protocol_version.as_deref();
        let version = forced.or(asked).unwrap_or(VERSIONS[0]);
        json!({
            "protocolVersion": version,
            "capabilities": {
                "tools": {"listChanged": true},
                "resources": {"subscribe": true, "listChanged": true},
                "prompts": {"listChanged": true},
                "completions": {},
                "logging": {},
            },
            "serverInfo": {"name": self.cfg.name, "version": "0.1.0"},
            "instructions": format!("test server {}", self.cfg.name),
        })
    }

    fn tools(&self) -> Vec<Value> {
        let schema = |spec: &str| {
            let mut props = Map::new();
            let mut required = Vec::new();
            for (name, ty) in spec.split_whitespace().filter_map(|a| a.split_once(':')) {
                props.insert(name.into(), json!({"type": ty}));
                required.push(name);
            }
            json!({"type": "object", "properties": props, "required": required})
        };
        let tool = |name: &str, description: &str, spec: &str| {
            let input_schema = schema(spec);
            json!({"name": name, "description": description, "inputSchema": input_schema})
        };
        let row = |line: &'static str| {
            let mut f = line.splitn(3, '|');
            let mut next = || f.next().unwrap_or("");
            tool(next(), next(), next())
        };
        let mut out: Vec<Value> = TOOLS.lines().map(row).collect();
        if self.cfg.hostile_tools {
            out.extend(HOSTILE_TOOLS.lines().map(row));
        }
        if self.st().dynamic {
            out.push(tool("dynamic", "Appears after notify_changed", ""));
        }
        let many = (0..self.cfg.many_tools).map(|i| format!("t{i:04}"));
        out.extend(many.map(|n| tool(&n, "Echo this tool's name", "")));
        out.extend(self.cfg.extra_tools.iter().map(|n| tool(n, "Name the server and the tool", "")));
        if self.cfg.conformance {
            out.extend(conf::tools());
        }
        out
    }

    /// Counts `tools/list` requests; true once more than `--hang-lists-after` came.
    fn hang_this_list(&self) -> bool {
        let Some(n) = self.cfg.hang_lists_after else {
            return false;
        };
        let mut st = self.st();
        st.tools_lists += 1;
        st.tools_lists > n
    }

    /// Page `cursor` (a decimal number) of a tool list that never ends.
    fn endless_page(&self, cursor: Option<&Value>) -> Value {
        let page: u64 = cursor.and_then(Value::as_str).and_then(|c| c.parse().ok()).unwrap_or(0);
        let pad = "x".repeat(self.cfg.pad_bytes);
        let schema = json!({"type": "object"});
        let tools: Vec<Value> = (0..self.cfg.endless_pages)
            .map(|i| json!({"name": format!("p{page}_{i}"), "description": pad, "inputSchema": schema}))
            .collect();
        json!({"tools": tools, "nextCursor": (page + 1).to_string()})
    }

    fn is_many(&self, name: &str) -> bool {
        let n = name.strip_prefix('t').and_then(|d| d.parse::<usize>().ok());
        n.is_some_and(|i| i < self.cfg.many_tools && format!("t{i:04}") == name)
    }

    fn base(&self) -> String {
        format!("test://{}/", self.cfg.name)
    }

    fn resources(&self) -> Vec<Value> {
        let base = self.base();
        let res = |r: &str| json!({"uri": format!("{base}{r}"), "name": r, "mimeType": "text/plain"});
        let mut out = vec![res("static"), res("counter")];
        if self.cfg.conformance {
            out.extend(conf::resources());
        }
        out
    }

    fn templates(&self) -> Vec<Value> {
        let uri = format!("{}item/{{id}}", self.base());
        let mut out = vec![json!({"uriTemplate": uri, "name": "item", "mimeType": "text/plain"})];
        let extra = self.cfg.templates.iter().enumerate();
        out.extend(extra.map(|(i, t)| json!({"uriTemplate": t, "name": format!("extra{i}")})));
        if self.cfg.conformance {
            out.extend(conf::templates());
        }
        out
    }

    fn prompts(&self) -> Vec<Value> {
        let who = json!({"name": "who", "description": "whom to greet", "required": true});
        let mut out = vec![
            json!({"name": "greet", "description": "greeting", "arguments": [who]}),
            json!({"name": "plain", "description": "plain prompt"}),
        ];
        if self.cfg.conformance {
            out.extend(conf::prompts());
        }
        out
    }

    fn read(&self, p: &Value) -> Rpc {
        let uri = str_at(p, "/uri").ok_or_else(|| invalid("missing uri"))?;
        if self.cfg.conformance
            && let Some(r) = conf::read(uri)
        {
            return Ok(r);
        }
        let rest = uri.strip_prefix(&self.base());
        let body = if rest == Some("static") {
            format!("static {}", self.cfg.name)
        } else if rest == Some("counter") {
            let mut st = self.st();
            st.counter += 1;
            st.counter.to_string()
        } else if let Some(id) = item_id(&self.cfg.name, uri) {
            format!("item {id}")
        } else if !self.cfg.templates.is_empty() {
            format!("{} read {uri}", self.cfg.name)
        } else {
            return Err((-32002, "Resource not found".into()));
        };
        Ok(json!({"contents": [{"uri": uri, "mimeType": "text/plain", "text": body}]}))
    }

    fn prompt(&self, p: &Value) -> Rpc {
        let name = &self.cfg.name;
        if self.cfg.conformance
            && let Some(r) = conf::prompt(str_at(p, "/name").unwrap_or(""), p.get("arguments").unwrap_or(&Value::Null))
        {
            return r.map_err(invalid);
        }
        let (description, text) = match str_at(p, "/name").unwrap_or("") {
            "greet" => {
                let who = str_at(p, "/arguments/who");
                let who = who.ok_or_else(|| invalid("missing required argument who"))?;
                ("greeting", format!("Hello, {who}, from {name}"))
            }
            "plain" => ("plain prompt", format!("plain prompt from {name}")),
            other => return Err((-32602, format!("Unknown prompt: {other}"))),
        };
        let message = json!({"role": "user", "content": {"type": "text", "text": text}});
        Ok(json!({"description": description, "messages": [message]}))
    }

    fn spawn_call(self: &Arc<Self>, id: Value, params: Value, batch: bool) -> Outcome {
        let key = id.to_string();
        let flag = Arc::new(AtomicBool::new(false));
        {
            let mut st = self.st();
            // Counted on arrival, not completion, so concurrent slow calls cannot postpone it.
            if self.cfg.crash_after.is_some_and(|n| st.calls >= n) {
                eprintln!("test-server: crashing after {} tool calls", st.calls);
                std::process::exit(4);
            }
            st.calls += 1;
            // Registered here, not in the thread, so a cancel on the very next line still finds it.
            st.inflight.insert(key.clone(), Arc::clone(&flag));
        }
        let me = Arc::clone(self);
        let reply_id = id.clone();
        let work = move || {
            let reply = match me.call_tool_hostile(&params, &flag) {
                Ok(Some(r)) => Some(ok(&id, r)),
                Ok(None) => None,
                Err((code, message)) => Some(err(&id, code, message)),
            };
            {
                let mut st = me.st();
                if st.inflight.get(&key).is_some_and(|f| Arc::ptr_eq(f, &flag)) {
                    st.inflight.remove(&key);
                }
            }
            let reply = reply.filter(|_| !flag.load(SeqCst));
            if batch {
                return reply;
            }
            if let Some(r) = reply {
                me.respond(&r);
            }
            None
        };
        match thread::Builder::new().name("tools/call".into()).spawn(work) {
            Ok(h) if batch => Outcome::Later(h),
            Ok(_) => Outcome::Now(None),
            Err(e) => {
                let message = format!("cannot spawn tool thread: {e}");
                Outcome::Now(Some(err(&reply_id, -32603, message)))
            }
        }
    }

    /// Hostile-fixture tools that outlive their call, and the progress-token recorder; the
    /// rest is `call_tool`.
    fn call_tool_hostile(self: &Arc<Self>, p: &Value, cancel: &AtomicBool) -> Rpc<Option<Value>> {
        if let (Some(path), Some(t)) = (&self.cfg.record_progress_token, p.pointer("/_meta/progressToken")) {
            let _ = std::fs::write(path, t.to_string());
        }
        let a = p.get("arguments").unwrap_or(&Value::Null);
        let later = match str_at(p, "/name") {
            Some("sample_later") => "sample_later",
            Some("log_later") => "log_later",
            _ => return self.call_tool(p, cancel),
        };
        let ms = Duration::from_millis(arg_usize(a, "ms")? as u64);
        let what = arg_str(a, if later == "sample_later" { "prompt" } else { "message" })?.to_owned();
        let me = Arc::clone(self);
        let work = move || {
            thread::sleep(ms);
            if later == "log_later" {
                let params = json!({"level": "info", "logger": me.cfg.name, "data": what});
                me.emit(None, "notifications/message", Some(params));
                return;
            }
            let message = json!({"role": "user", "content": {"type": "text", "text": what}});
            let params = json!({"messages": [message], "maxTokens": 50});
            let never = AtomicBool::new(false);
            let outcome = match me.ask("sampling/createMessage", Some(params), &never) {
                Ok(resp) => resp.to_string(),
                Err(e) => e,
            };
            me.st().asks.push(outcome);
        };
        thread::Builder::new().name("later".into()).spawn(work).map_err(|e| (-32603, e.to_string()))?;
        Ok(Some(text("later")))
    }

    fn subscription(&self, method: &str, p: &Value) -> Value {
        let uri = str_at(p, "/uri").unwrap_or("").to_owned();
        let mut st = self.st();
        st.sub_log.push(json!({"method": method, "uri": uri}));
        if method == "resources/subscribe" {
            st.subs.insert(uri);
        } else {
            st.subs.remove(&uri);
        }
        json!({})
    }

    /// The conformance fixtures' tools (`--conformance`); None for other names.
    fn call_conformance(&self, name: &str, p: &Value, a: &Value, cancel: &AtomicBool) -> Option<Rpc<Option<Value>>> {
        if let Some(r) = conf::simple_call(name) {
            return Some(Ok(Some(r)));
        }
        let pause = |ms: u64| thread::sleep(Duration::from_millis(ms));
        let reply = match name {
            "test_tool_with_logging" => {
                for (i, msg) in
                    ["Tool execution started", "Tool processing data", "Tool execution completed"].iter().enumerate()
                {
                    if i > 0 {
                        pause(50);
                    }
                    let params = json!({"level": "info", "logger": self.cfg.name, "data": msg});
                    self.emit(None, "notifications/message", Some(params));
                }
                text("Logging test completed")
            }
            "test_tool_with_progress" => {
                let token = p.pointer("/_meta/progressToken");
                for (i, progress) in [0, 50, 100].into_iter().enumerate() {
                    if i > 0 {
                        pause(50);
                    }
                    if let Some(t) = token {
                        let params = json!({"progressToken": t, "progress": progress, "total": 100});
                        self.emit(None, "notifications/progress", Some(params));
                    }
                }
                text("Progress test completed")
            }
            "test_reconnection" => {
                pause(100);
                text("Reconnection test completed")
            }
            "test_sampling" => {
                let prompt = a.get("prompt").and_then(Value::as_str).unwrap_or("");
                let message = json!({"role": "user", "content": {"type": "text", "text": prompt}});
                let params = json!({"messages": [message], "maxTokens": 100});
                match self.ask("sampling/createMessage", Some(params), cancel) {
                    Ok(resp) => match resp.pointer("/result/content/text").and_then(Value::as_str) {
                        Some(t) => text(&format!("LLM response: {t}")),
                        None => tool_error(&format!("sampling failed: {resp}")),
                    },
                    Err(e) => tool_error(&e),
                }
            }
            _ => {
                let params = conf::elicitation(name, a.get("message").and_then(Value::as_str))?;
                match self.ask("elicitation/create", Some(params), cancel) {
                    Ok(resp) => match resp.get("result") {
                        Some(r) => conf::elicitation_result(name, r),
                        None => tool_error(&format!("elicitation failed: {resp}")),
                    },
                    Err(e) => tool_error(&e),
                }
            }
        };
        Some(Ok(Some(reply)))
    }

    /// `Ok(None)` means "send no response at all" (hang, cancelled).
    fn call_tool(&self, p: &Value, cancel: &AtomicBool) -> Rpc<Option<Value>> {
        let name = str_at(p, "/name").ok_or_else(|| invalid("missing tool name"))?;
        let a = p.get("arguments").unwrap_or(&Value::Null);
        if self.cfg.conformance
            && let Some(r) = self.call_conformance(name, p, a, cancel)
        {
            return r;
        }
        let reply = match name {
            "echo" => text(arg_str(a, "message")?),
            "add" => {
                let (x, y) = (&a["a"], &a["b"]);
                let sum = add(x, y).ok_or_else(|| invalid("a and b must be numbers"))?;
                let mut r = text(&sum.to_string());
                r["structuredContent"] = json!({"sum": sum});
                r
            }
            "whoami" => text(&self.cfg.name),
            "env" => match std::env::var(arg_str(a, "name")?) {
                Ok(v) => text(&v),
                Err(_) => tool_error("unset"),
            },
            "pid" => text(&std::process::id().to_string()),
            "slow" => {
                let ms = arg_usize(a, "ms")?;
                // An absurd ms overflows Instant; treat it as "until cancelled".
                let end = Instant::now().checked_add(Duration::from_millis(ms as u64));
                loop {
                    if cancel.load(SeqCst) {
                        return Ok(None);
                    }
                    let left = end.map(|e| e.saturating_duration_since(Instant::now()));
                    if left == Some(Duration::ZERO) {
                        break;
                    }
                    thread::sleep(left.map_or(TICK, |l| l.min(TICK)));
                }
                text(&format!("slept {ms}"))
            }
            "hang" => return Ok(None),
            "fail" => tool_error("tool failed on purpose"),
            "crash" => {
                eprintln!("crashing");
                std::process::exit(3);
            }
            "progress" => {
                let steps = arg_usize(a, "steps")?;
                let token = p.pointer("/_meta/progressToken");
                for i in 1..=steps {
                    if cancel.load(SeqCst) {
                        return Ok(None);
                    }
                    if i > 1 {
                        thread::sleep(TICK);
                    }
                    if let Some(t) = token {
                        let mut params = json!({"progressToken": t, "progress": i, "total": steps});
                        params["message"] = format!("step {i}").into();
                        self.emit(None, "notifications/progress", Some(params));
                    }
                }
                text(&format!("done {steps}"))
            }
            "log" => {
                let message = arg_str(a, "message")?;
                // Honour logging/setLevel so the router's forwarding of it is observable.
                if self.st().log_level <= 1 {
                    let params = json!({"level": "info", "logger": self.cfg.name, "data": message});
                    self.emit(None, "notifications/message", Some(params));
                }
                text("logged")
            }
            "sample" => {
                let prompt = arg_str(a, "prompt")?;
                let message = json!({"role": "user", "content": {"type": "text", "text": prompt}});
                let params = json!({"messages": [message], "maxTokens": 50});
                let pick = |r: &Value| str_at(r, "/content/text").map(String::from);
                self.relay("sampling/createMessage", Some(params), cancel, pick)
            }
            "elicit" => {
                let schema = json!({"type": "object", "properties": {}});
                let params = json!({"message": arg_str(a, "message")?, "requestedSchema": schema});
                self.relay("elicitation/create", Some(params), cancel, |r| Some(r.to_string()))
            }
            "roots" => self.relay("roots/list", None, cancel, |r| Some(r.to_string())),
            "notify_changed" => {
                self.st().dynamic = true;
                self.emit(None, "notifications/tools/list_changed", None);
                text("changed")
            }
            "touch" => {
                let uri = arg_str(a, "uri")?;
                if !self.cfg.track_subscriptions || self.st().subs.contains(uri) {
                    self.emit(None, "notifications/resources/updated", Some(json!({"uri": uri})));
                }
                text("touched")
            }
            "stderr_flood" => {
                flood_stderr(arg_usize(a, "bytes")?);
                text("flooded")
            }
            "garbage" => {
                self.send_raw("this is not json {{{");
                text("garbage")
            }
            "huge" => text(&"x".repeat(arg_usize(a, "bytes")?)),
            "last_initialize" => text(&self.st().init_params.to_string()),
            "cancelled" => text(&Value::Array(self.st().cancelled.clone()).to_string()),
            "meta" => text(&p.get("_meta").unwrap_or(&Value::Null).to_string()),
            "stop_reading" => {
                self.st().stop_reading = true;
                text("stopped reading")
            }
            "spoof_progress" => {
                let token = arg_str(a, "token")?;
                for i in 1..=arg_usize(a, "count")? {
                    let params = json!({"progressToken": token, "progress": i, "message": "spoofed"});
                    self.emit(None, "notifications/progress", Some(params));
                    thread::sleep(TICK);
                }
                text("spoofed")
            }
            "sample_after" => {
                thread::sleep(Duration::from_millis(arg_usize(a, "ms")? as u64));
                let message = json!({"role": "user", "content": {"type": "text", "text": arg_str(a, "prompt")?}});
                let params = json!({"messages": [message], "maxTokens": 50});
                let pick = |r: &Value| str_at(r, "/content/text").map(String::from);
                self.relay("sampling/createMessage", Some(params), cancel, pick)
            }
            "asked" => text(&Value::from(self.st().asks.clone()).to_string()),
            "flood_log" => {
                for i in 0..arg_usize(a, "count")? {
                    let params = json!({"level": "info", "logger": self.cfg.name, "data": format!("flood {i}")});
                    self.emit(None, "notifications/message", Some(params));
                }
                text("flooded")
            }
            "sub_log" => text(&Value::Array(self.st().sub_log.clone()).to_string()),
            "dynamic" if self.st().dynamic => text("dynamic"),
            t if self.is_many(t) => text(t),
            t if self.cfg.extra_tools.iter().any(|x| x == t) => text(&format!("{} {t}", self.cfg.name)),
            _ => return Err((-32602, format!("Unknown tool: {name}"))),
        };
        Ok(Some(reply))
    }
}

/// Entry point for `mcprouter test-server ARGS...`; returns the process exit code.
pub fn run(mut args: Vec<String>) -> i32 {
    // Env flags let a router config inject faults without changing the command line.
    if let Ok(extra) = std::env::var("MCP_TEST_FLAGS") {
        args.extend(extra.split_whitespace().map(String::from));
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return 0;
    }
    let cfg = match parse_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("test-server: {e}\n{USAGE}");
            return 2;
        }
    };
    if let Some(code) = cfg.exit_on_start {
        return code;
    }
    if let Some(addr) = cfg.http.clone() {
        return crate::test_http::serve(&addr, cfg.http_fault.as_deref().unwrap_or(""), &cfg.name);
    }
    if let Some(addr) = cfg.ws.clone() {
        return serve_ws(&addr, cfg);
    }
    let server = Arc::new(Server {
        cfg,
        out: Mutex::new(Box::new(io::stdout())),
        state: Mutex::new(State::default()),
        reply_cv: Condvar::new(),
        next_id: AtomicU64::new(0),
    });
    if server.cfg.stderr_flood > 0 {
        flood_stderr(server.cfg.stderr_flood);
    }
    if server.cfg.garbage_on_start {
        server.send_raw("garbage on start: this is not json");
    }
    if server.cfg.huge_line > 0 {
        server.send_raw(&format!("\"{}\"", "x".repeat(server.cfg.huge_line.saturating_sub(2))));
    }
    let mut input = io::stdin().lock();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match input.read_until(b'\n', &mut buf) {
            Ok(0) => return 0,
            Ok(_) => {}
            Err(e) => {
                eprintln!("test-server: stdin: {e}");
                return 1;
            }
        }
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if server.st().stop_reading {
            // Alive but deaf: the router's writes fill the pipe and then block.
            loop {
                thread::sleep(Duration::from_secs(3600));
            }
        }
        server.handle_line(&buf);
    }
}

/// Everything the server writes, cut into lines, each sent as one WebSocket text frame by
/// the connection's thread.
struct LineSink {
    buf: Vec<u8>,
    tx: std::sync::mpsc::Sender<String>,
}

impl Write for LineSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        while let Some(i) = self.buf.iter().position(|&c| c == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=i).collect();
            let text = String::from_utf8_lossy(&line[..i]).into_owned();
            self.tx.send(text).map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `--ws ADDR`: one server per connection, each message one text frame (subprotocol `mcp`).
fn serve_ws(addr: &str, cfg: Config) -> i32 {
    let listener = match std::net::TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("test-server: cannot listen on {addr}: {e}");
            return 1;
        }
    };
    match listener.local_addr() {
        Ok(a) => eprintln!("listening on ws://{a}"),
        Err(e) => {
            eprintln!("test-server: {e}");
            return 1;
        }
    }
    for stream in listener.incoming().flatten() {
        let cfg = cfg.clone();
        let _ = thread::Builder::new().name("ws-conn".into()).spawn(move || ws_connection(stream, cfg));
    }
    0
}

fn ws_connection(stream: std::net::TcpStream, cfg: Config) {
    use tungstenite::handshake::server::{Request, Response};
    use tungstenite::{Message, http::HeaderValue};
    // The error type is tungstenite's own (its handshake callback's signature).
    #[allow(clippy::result_large_err)]
    let pick = |req: &Request, mut resp: Response| {
        let offered = req.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).unwrap_or("");
        if offered.split(',').any(|p| p.trim() == "mcp") {
            resp.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mcp"));
        }
        Ok(resp)
    };
    let Ok(mut ws) = tungstenite::accept_hdr(stream, pick) else { return };
    if ws.get_ref().set_read_timeout(Some(Duration::from_millis(5))).is_err() {
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let server = Arc::new(Server {
        cfg,
        out: Mutex::new(Box::new(LineSink { buf: Vec::new(), tx })),
        state: Mutex::new(State::default()),
        reply_cv: Condvar::new(),
        next_id: AtomicU64::new(0),
    });
    loop {
        while let Ok(line) = rx.try_recv() {
            if ws.send(Message::text(line)).is_err() {
                return;
            }
        }
        match ws.read() {
            Ok(Message::Text(t)) => server.handle_line(t.as_bytes()),
            Ok(Message::Close(_)) => return,
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize) -> Vec<Value> {
        (0..n).map(|i| json!(i)).collect()
    }

    #[test]
    fn paging_walks_all_items() {
        assert_eq!(paginate(items(5), None, 0).unwrap(), (items(5), None));
        let first = paginate(items(5), None, 2).unwrap();
        assert_eq!(first, (vec![json!(0), json!(1)], Some("2".into())));
        let last = paginate(items(5), Some(&json!("4")), 2).unwrap();
        assert_eq!(last, (vec![json!(4)], None));
        assert_eq!(paginate(items(4), Some(&json!("2")), 2).unwrap().1, None);
        assert_eq!(paginate(vec![], Some(&Value::Null), 3).unwrap(), (vec![], None));
    }

    #[test]
    fn paging_rejects_bad_cursors() {
        for c in [json!("x"), json!("6"), json!("-1"), json!(2), json!("")] {
            assert_eq!(paginate(items(5), Some(&c), 2).unwrap_err().0, -32602, "{c}");
        }
        assert!(paginate(items(5), Some(&json!("5")), 2).is_ok());
    }

    #[test]
    fn item_template_matching() {
        assert_eq!(item_id("a", "test://a/item/42"), Some("42"));
        for uri in ["test://a/item/", "test://a/item/4/2", "test://b/item/1", "test://ab/item/1"] {
            assert_eq!(item_id("a", uri), None, "{uri}");
        }
    }

    #[test]
    fn sums_and_completions() {
        assert_eq!(add(&json!(1), &json!(2)), Some(json!(3)));
        assert_eq!(add(&json!(1.5), &json!(1.5)).unwrap().to_string(), "3");
        assert_eq!(add(&json!(1.25), &json!(1)), Some(json!(2.25)));
        assert_eq!(add(&json!("1"), &json!(1)), None);
        let ask = json!({"ref": {"type": "ref/prompt", "name": "greet"},
                         "argument": {"name": "who", "value": "w"}});
        let want = json!({"values": ["world", "wide", "wonder"], "total": 3, "hasMore": false});
        assert_eq!(complete(&ask)["completion"], want);
        assert_eq!(complete(&json!({})), json!({"completion": {"values": []}}));
    }

    #[test]
    fn flags_parse() {
        let a = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let c = parse_args(&a("--name x --page-size=3 --hang-initialize --crash-after 0")).unwrap();
        assert_eq!((c.name.as_str(), c.page_size), ("x", 3));
        assert_eq!((c.hang_initialize, c.crash_after), (true, Some(0)));
        for bad in ["--bogus", "--delay-ms", "--delay-ms ten", "x"] {
            assert!(parse_args(&a(bad)).is_err(), "{bad}");
        }
    }
}
