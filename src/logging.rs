//! Structured (JSON) log lines and a `log::Log` implementation with a
//! pluggable sink.
//!
//! A record's `log` key-value fields (`log::info!(session = s, duration_ms =
//! ms; "…")`) become top-level keys of its JSON line, numbers and booleans
//! keeping their type; the text format appends them as `key=value`.
//!
//! Every string that reaches a sink has been through a [`Redactor`]: the
//! message, the target, field names and field values. There is no way to log
//! around it, which is the point: redaction that can be forgotten will be.
//! [`redactor_for`] builds the redactor a router's configuration calls for.
//!
//! The library never installs a global logger on its own; an embedding
//! application decides whether to call [`install`] or to route `log` records
//! into its own logging.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use log::kv::{self, VisitSource, VisitValue};
use log::{Level, LevelFilter, Log, Metadata, Record, SetLoggerError};

use crate::Config;
use crate::config::BackendConfig;
use crate::redact::{REDACTED, Redactor, is_secret_name};

/// Keys that `json_line` writes itself. A caller field with one of these
/// names is written as `field_<name>` instead, so a line never has duplicate
/// keys (which many JSON parsers resolve silently and differently).
const RESERVED_KEYS: [&str; 4] = ["ts", "level", "target", "msg"];

/// Formats one log record as a single-line JSON object:
/// `{"ts":"2026-11-25T22:10:00.123Z","level":"INFO","target":"…","msg":"…",…fields}`.
///
/// The timestamp is the current time in UTC with millisecond precision.
/// Target, message, field names and values are redacted; the value of a
/// field whose name is sensitive (e.g. `token`) is replaced entirely. The
/// result contains no raw newline, so it is exactly one line.
pub fn json_line(level: Level, target: &str, message: &str, fields: &[(&str, &str)], redactor: &Redactor) -> String {
    json_line_at(SystemTime::now(), level, target, message, fields, redactor)
}

/// [`json_line`] with an explicit timestamp (for tests and for replaying
/// records that carry their own time).
pub fn json_line_at(
    ts: SystemTime,
    level: Level,
    target: &str,
    message: &str,
    fields: &[(&str, &str)],
    redactor: &Redactor,
) -> String {
    let fields: Vec<Field<'_>> =
        fields.iter().map(|(k, v)| Field { key: Cow::Borrowed(k), value: FieldValue::Str(Cow::Borrowed(v)) }).collect();
    let mut out = String::with_capacity(96 + message.len() + fields.len() * 24);
    write_json(&mut out, ts, level, target, message, &fields, redactor);
    out
}

/// Formats one record as a human-readable line (no trailing newline):
/// `2026-11-25T22:10:00.123Z INFO  target: message key=value key="a b"`.
/// Redacted like [`json_line`]; control characters are escaped so a
/// message cannot forge extra lines.
pub fn text_line(level: Level, target: &str, message: &str, fields: &[(&str, &str)], redactor: &Redactor) -> String {
    let fields: Vec<Field<'_>> =
        fields.iter().map(|(k, v)| Field { key: Cow::Borrowed(k), value: FieldValue::Str(Cow::Borrowed(v)) }).collect();
    let mut out = String::with_capacity(48 + message.len() + fields.len() * 16);
    write_text(&mut out, SystemTime::now(), level, target, message, &fields, redactor);
    out
}

/// One structured field of a record. Numbers and booleans keep their type
/// in JSON output (`"duration_ms":1.25`, not `"1.25"`), so log pipelines can
/// aggregate them without parsing strings.
struct Field<'a> {
    key: Cow<'a, str>,
    value: FieldValue<'a>,
}

enum FieldValue<'a> {
    /// Text: always redacted before it is written.
    Str(Cow<'a, str>),
    /// A JSON number or boolean literal, produced by this module from a
    /// numeric or boolean value (never from caller text), so it needs
    /// neither escaping nor redaction.
    Literal(String),
}

fn write_json(
    out: &mut String,
    ts: SystemTime,
    level: Level,
    target: &str,
    message: &str,
    fields: &[Field<'_>],
    redactor: &Redactor,
) {
    out.push_str("{\"ts\":\"");
    push_rfc3339(out, ts);
    out.push_str("\",\"level\":\"");
    out.push_str(level.as_str());
    out.push_str("\",\"target\":");
    push_json_str(out, &redactor.redact(target));
    out.push_str(",\"msg\":");
    push_json_str(out, &redactor.redact(message));
    for Field { key, value } in fields {
        out.push(',');
        let key_red = redactor.redact(key);
        if RESERVED_KEYS.contains(&key_red.as_ref()) {
            let prefixed = format!("field_{key_red}");
            push_json_str(out, &prefixed);
        } else {
            push_json_str(out, &key_red);
        }
        out.push(':');
        if redactor.is_sensitive_field(key) {
            push_json_str(out, REDACTED);
        } else {
            match value {
                FieldValue::Str(v) => push_json_str(out, &redactor.redact(v)),
                FieldValue::Literal(v) => out.push_str(v),
            }
        }
    }
    out.push('}');
}

fn write_text(
    out: &mut String,
    ts: SystemTime,
    level: Level,
    target: &str,
    message: &str,
    fields: &[Field<'_>],
    redactor: &Redactor,
) {
    push_rfc3339(out, ts);
    let _ = write!(out, " {:<5} ", level.as_str());
    push_text(out, &redactor.redact(target));
    out.push_str(": ");
    push_text(out, &redactor.redact(message));
    for Field { key, value } in fields {
        out.push(' ');
        push_text(out, &redactor.redact(key));
        out.push('=');
        if redactor.is_sensitive_field(key) {
            out.push_str(REDACTED);
            continue;
        }
        match value {
            FieldValue::Literal(v) => out.push_str(v),
            FieldValue::Str(v) => {
                let v = redactor.redact(v);
                // Quote what would otherwise be ambiguous to split on.
                if v.is_empty() || v.contains(|c: char| c.is_whitespace() || c == '"' || c == '=' || c.is_control()) {
                    out.push('"');
                    push_text(out, &v.replace('\\', "\\\\").replace('"', "\\\""));
                    out.push('"');
                } else {
                    push_text(out, &v);
                }
            }
        }
    }
}

/// Collects a record's key-value pairs (the `log` crate's `kv` feature:
/// `log::info!(session = id, duration_ms = ms; "msg")`).
#[derive(Default)]
struct Collect<'kvs> {
    fields: Vec<Field<'kvs>>,
}

impl<'kvs> VisitSource<'kvs> for Collect<'kvs> {
    fn visit_pair(&mut self, key: kv::Key<'kvs>, value: kv::Value<'kvs>) -> Result<(), kv::Error> {
        let key = match key.to_borrowed_str() {
            Some(k) => Cow::Borrowed(k),
            None => Cow::Owned(key.as_str().to_owned()),
        };
        let mut typed = Typed(None);
        let _ = value.visit(&mut typed);
        let value = typed.0.unwrap_or_else(|| FieldValue::Str(Cow::Owned(value.to_string())));
        self.fields.push(Field { key, value });
        Ok(())
    }
}

/// Turns one `kv::Value` into a [`FieldValue`], keeping numbers and booleans
/// typed and borrowing string values where the record allows it.
struct Typed<'kvs>(Option<FieldValue<'kvs>>);

impl<'kvs> VisitValue<'kvs> for &mut Typed<'kvs> {
    fn visit_any(&mut self, value: kv::Value<'_>) -> Result<(), kv::Error> {
        self.0 = Some(FieldValue::Str(Cow::Owned(value.to_string())));
        Ok(())
    }

    fn visit_null(&mut self) -> Result<(), kv::Error> {
        self.0 = Some(FieldValue::Literal("null".to_owned()));
        Ok(())
    }

    fn visit_u64(&mut self, v: u64) -> Result<(), kv::Error> {
        self.0 = Some(FieldValue::Literal(v.to_string()));
        Ok(())
    }

    fn visit_i64(&mut self, v: i64) -> Result<(), kv::Error> {
        self.0 = Some(FieldValue::Literal(v.to_string()));
        Ok(())
    }

    fn visit_u128(&mut self, v: u128) -> Result<(), kv::Error> {
        self.0 = Some(FieldValue::Literal(v.to_string()));
        Ok(())
    }

    fn visit_i128(&mut self, v: i128) -> Result<(), kv::Error> {
        self.0 = Some(FieldValue::Literal(v.to_string()));
        Ok(())
    }

    fn visit_f64(&mut self, v: f64) -> Result<(), kv::Error> {
        // JSON has no NaN or infinity; those stay text.
        self.0 = Some(if v.is_finite() {
            FieldValue::Literal(format!("{v}"))
        } else {
            FieldValue::Str(Cow::Owned(v.to_string()))
        });
        Ok(())
    }

    fn visit_bool(&mut self, v: bool) -> Result<(), kv::Error> {
        self.0 = Some(FieldValue::Literal(if v { "true" } else { "false" }.to_owned()));
        Ok(())
    }

    fn visit_str(&mut self, v: &str) -> Result<(), kv::Error> {
        self.0 = Some(FieldValue::Str(Cow::Owned(v.to_owned())));
        Ok(())
    }

    fn visit_borrowed_str(&mut self, v: &'kvs str) -> Result<(), kv::Error> {
        self.0 = Some(FieldValue::Str(Cow::Borrowed(v)));
        Ok(())
    }

    fn visit_char(&mut self, v: char) -> Result<(), kv::Error> {
        self.0 = Some(FieldValue::Str(Cow::Owned(v.to_string())));
        Ok(())
    }
}

/// Formats `t` as RFC 3339 UTC with milliseconds, e.g.
/// `2026-11-25T22:10:00.123Z`. Times before 1970 are clamped to the epoch
/// (the system clock is the only source, and a log line must never fail).
pub fn rfc3339_utc(t: SystemTime) -> String {
    let mut s = String::with_capacity(24);
    push_rfc3339(&mut s, t);
    s
}

fn push_rfc3339(out: &mut String, t: SystemTime) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let millis = d.subsec_millis();
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, day) = civil_from_days(days);
    // Writing into a String cannot fail.
    let _ =
        write!(out, "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, (rem % 3600) / 60, rem % 60);
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian
/// calendar. Howard Hinnant's `civil_from_days`, restricted to non-negative
/// inputs (we clamp to the epoch), so all arithmetic is unsigned.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a
    // "year" and the month lengths follow a simple pattern.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097; // day of 400-year era, [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // March-based month, [0, 11]
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Appends `s` as a JSON string literal. Escapes `"`, `\` and all control
/// characters (so the line stays one line); everything else, including
/// non-ASCII, is written as-is (JSON text is UTF-8).
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let b = s.as_bytes();
    let mut last = 0;
    let mut i = 0;
    // Byte scan: everything but these passes through unchanged. 0xE2 starts U+2028/2029
    // (E2 80 A8/A9); other sequences starting with it are copied as they are.
    while let Some(&c) = b.get(i) {
        let esc: &str = match c {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..0x20 | 0x7f => "",
            0xE2 if matches!(b.get(i + 1..i + 3), Some([0x80, 0xA8 | 0xA9])) => "",
            _ => {
                i += 1;
                continue;
            }
        };
        // `i` is at an ASCII byte or at the start of a 3-byte sequence: a char boundary.
        out.push_str(s.get(last..i).unwrap_or(""));
        if esc.is_empty() {
            // U+2028/2029 are valid in JSON but end lines in JavaScript and
            // some log viewers; escaping them keeps "one record per line".
            let ch = s.get(i..).and_then(|r| r.chars().next()).unwrap_or('\0');
            let _ = write!(out, "\\u{:04x}", ch as u32);
            last = i + ch.len_utf8();
        } else {
            out.push_str(esc);
            last = i + 1;
        }
        i = last;
    }
    out.push_str(s.get(last..).unwrap_or(""));
    out.push('"');
}

/// How records written to stderr are formatted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line (see [`json_line`]).
    Json,
    /// `2026-11-25T22:10:00.123Z INFO  target: message`, for humans.
    Text,
}

/// Callback sink signature: level, target, and the redacted JSON line
/// (without trailing newline).
pub type LogCallback = Box<dyn Fn(Level, &str, &str) + Send + Sync>;

/// Where the [`Logger`] sends records.
pub enum Sink {
    /// Write to the process's stderr.
    Stderr(Format),
    /// Hand each record, as a redacted JSON line, to the embedding
    /// application (e.g. to forward into its own logging or over FFI).
    Callback(LogCallback),
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sink::Stderr(fmt) => f.debug_tuple("Stderr").field(fmt).finish(),
            Sink::Callback(_) => f.write_str("Callback(..)"),
        }
    }
}

thread_local! {
    /// Set while this thread is inside `Logger::log`. A callback sink that
    /// itself logs (directly or through a library) would otherwise recurse
    /// without bound; such nested records are dropped.
    static IN_LOG: Cell<bool> = const { Cell::new(false) };
}

/// A `log::Log` implementation: level filter, redaction, sink.
#[derive(Debug)]
pub struct Logger {
    level: LevelFilter,
    sink: Sink,
    redactor: Redactor,
}

impl Logger {
    /// Creates a logger that passes records at `level` or more severe to
    /// `sink`, redacted by `redactor`.
    pub fn new(level: LevelFilter, sink: Sink, redactor: Redactor) -> Self {
        Logger { level, sink, redactor }
    }

    /// The level filter.
    pub fn level(&self) -> LevelFilter {
        self.level
    }

    fn emit(&self, record: &Record<'_>) {
        let args = record.args();
        // Static messages (`log::info!("ready")`) need no formatting.
        let msg: Cow<'_, str> = match args.as_str() {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(args.to_string()),
        };
        let level = record.level();
        let target = record.target();
        let mut kv = Collect::default();
        // A failing `Source` (a user type) loses its remaining fields, never the record.
        let _ = record.key_values().visit(&mut kv);
        let fields = kv.fields;
        let mut line = String::with_capacity(128 + msg.len() + fields.len() * 24);
        match &self.sink {
            Sink::Stderr(Format::Json) => {
                write_json(&mut line, SystemTime::now(), level, target, &msg, &fields, &self.redactor);
                line.push('\n');
                write_stderr(&line);
            }
            Sink::Stderr(Format::Text) => {
                write_text(&mut line, SystemTime::now(), level, target, &msg, &fields, &self.redactor);
                line.push('\n');
                write_stderr(&line);
            }
            Sink::Callback(cb) => {
                write_json(&mut line, SystemTime::now(), level, target, &msg, &fields, &self.redactor);
                // A panicking callback must not unwind into whatever code
                // happened to call `log::info!`; the record is lost instead.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(level, target, &line)));
            }
        }
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        if IN_LOG.with(|f| f.replace(true)) {
            return; // nested call from inside a sink; see IN_LOG
        }
        // Reset through a guard so a panic while formatting the record
        // (e.g. a user `Display` impl) does not silence this thread forever.
        struct Reset;
        impl Drop for Reset {
            fn drop(&mut self) {
                IN_LOG.with(|f| f.set(false));
            }
        }
        let _reset = Reset;
        self.emit(record);
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// One record as a redacted JSON line (ts, level, target, msg and its key-value fields), the
/// shape log callbacks across the C ABI receive.
pub fn record_json(record: &Record<'_>, redactor: &Redactor) -> String {
    let args = record.args();
    let msg: Cow<'_, str> = match args.as_str() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(args.to_string()),
    };
    let mut kv = Collect::default();
    let _ = record.key_values().visit(&mut kv);
    let mut line = String::with_capacity(128 + msg.len() + kv.fields.len() * 24);
    write_json(&mut line, SystemTime::now(), record.level(), record.target(), &msg, &kv.fields, redactor);
    line
}

/// One `write_all` per record so concurrent threads do not interleave
/// partial lines. Errors are ignored: there is nowhere left to report a
/// failure to write a log line, and logging must not panic (as `eprintln!`
/// would) when stderr is closed.
fn write_stderr(line: &str) {
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Text-format writer: control characters are escaped so a message cannot
/// forge extra log lines (log injection) or emit terminal escape codes.
fn push_text(out: &mut String, s: &str) {
    for ch in s.chars() {
        match ch {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push('\t'),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// Installs `logger` as the process-global `log` logger and sets the global
/// max level to its filter. Fails if a logger is already installed (the
/// `log` crate allows only one per process).
pub fn install(logger: Logger) -> Result<(), SetLoggerError> {
    let level = logger.level;
    log::set_boxed_logger(Box::new(logger))?;
    log::set_max_level(level);
    Ok(())
}

/// The secret values [`redactor_for`] masks: from the config and `MCPROUTER_REDACT`.
pub fn redactor_secrets(config: &Config) -> Vec<String> {
    let mut secrets = config_secrets(config);
    secrets.extend(env_redact_list());
    secrets
}

/// Environment variable with extra literal values to mask, comma-separated
/// (e.g. a token the router's host process knows about but no config names).
pub const REDACT_ENV: &str = "MCPROUTER_REDACT";

/// The [`Redactor`] for a router running `config`: the built-in rules, plus
/// every secret value found in the configuration (see [`config_secrets`]),
/// plus the values listed in the `MCPROUTER_REDACT` environment variable.
///
/// The `mcprouter` command builds its logger's redactor with this; an
/// embedding application (or the C ABI) should do the same, so a secret it
/// put in a backend's `env` cannot reach its logs through a backend's
/// stderr or an error message.
pub fn redactor_for(config: &Config) -> Redactor {
    Redactor::new(redactor_secrets(config), Vec::new())
}

/// The values listed in `MCPROUTER_REDACT` (comma-separated, each trimmed;
/// empty entries ignored). For a redactor before any config is loaded:
/// `Redactor::new(env_redact_list(), vec![])`.
pub fn env_redact_list() -> Vec<String> {
    std::env::var(REDACT_ENV).map(|v| split_list(&v)).unwrap_or_default()
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// Secret values in a configuration, for [`Redactor::new`]:
/// - each backend `env` value whose name passes [`is_secret_name`]
///   (`GITHUB_TOKEN`, `API_KEY`, `DB_PASSWORD`…);
/// - each backend argument that is the value of a secret-looking flag, as
///   `--api-key VALUE` or `--api-key=VALUE`;
/// - each network backend `headers` value that is a credential (Authorization,
///   Cookie, or a secret-looking name), the token after `Bearer`, and the
///   password in its `url`;
/// - the password of any `scheme://user:password@host` URL in an `env`
///   value or argument (the redactor masks the `user:password` form by
///   itself; the bare password may also be printed on its own).
///
/// Values shorter than [`crate::redact::MIN_SECRET_LEN`] are dropped by
/// [`Redactor::new`].
pub fn config_secrets(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for b in &config.backends {
        out.extend(backend_secrets(b));
    }
    out
}

/// The redactor for text a backend's errors produce, before it reaches a client: the
/// built-in rules, that backend's secrets (see [`config_secrets`]), every value of its
/// `headers`, the values of secret-looking query parameters in its `url`, and the
/// `MCPROUTER_REDACT` list.
pub fn backend_redactor(b: &BackendConfig) -> Redactor {
    let mut secrets = backend_secrets(b);
    // A client has no business seeing any configured header value, credential or not.
    secrets.extend(b.headers.values().cloned());
    secrets.extend(b.url.as_deref().map(secret_query_values).unwrap_or_default());
    secrets.extend(env_redact_list());
    Redactor::new(secrets, Vec::new())
}

/// Values of query parameters whose name looks secret (`?apikey=…&token=…`), raw and
/// percent-decoded, so either spelling in an error message is masked.
fn secret_query_values(url: &str) -> Vec<String> {
    let Some((_, query)) = url.split_once('?') else { return Vec::new() };
    let query = query.split('#').next().unwrap_or_default();
    let mut out = Vec::new();
    for (name, value) in query.split('&').filter_map(|kv| kv.split_once('=')) {
        if is_secret_name(name) || Redactor::default().is_sensitive_field(name) {
            out.push(value.to_owned());
            out.push(percent_decode(value));
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex =
            b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The secrets of one backend's configuration (see [`config_secrets`]).
fn backend_secrets(b: &BackendConfig) -> Vec<String> {
    let mut out = Vec::new();
    {
        // Credential headers (Authorization, Cookie, X-Api-Key…) are masked, and the token
        // of `Bearer TOKEN` on its own too.
        for (name, value) in &b.headers {
            let lower = name.to_ascii_lowercase();
            let credential = matches!(lower.as_str(), "authorization" | "proxy-authorization" | "cookie")
                || is_secret_name(&name.to_ascii_uppercase().replace('-', "_"));
            if !credential {
                continue;
            }
            out.push(value.clone());
            if let Some((_, token)) = value.split_once(' ') {
                out.push(token.trim().to_owned());
            }
        }
        out.extend(b.url.as_deref().and_then(url_password));
        for (name, value) in &b.env {
            if is_secret_name(name) {
                out.push(value.clone());
            }
            out.extend(url_password(value));
        }
        let mut prev_is_secret_flag = false;
        for arg in &b.args {
            if prev_is_secret_flag && !arg.starts_with('-') {
                out.push(arg.clone());
            }
            prev_is_secret_flag = false;
            if let Some(flag) = arg.strip_prefix('-') {
                match flag.split_once('=') {
                    Some((name, value)) if is_secret_name(name) => out.push(value.to_owned()),
                    Some(_) => {}
                    None => prev_is_secret_flag = is_secret_name(flag),
                }
            }
            out.extend(url_password(arg));
        }
    }
    out
}

/// The password in the first `scheme://user:password@host` of `s`.
fn url_password(s: &str) -> Option<String> {
    let rest = &s[s.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then(|| password.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[test]
    fn backend_redactor_masks_userinfo_query_secrets_and_headers() {
        let c = crate::Config::from_yaml(
            "backends:\n  - name: h\n    url: http://u:pa55word@h:1/mcp?apikey=top%2Fsecret&page=2\n    headers: {X-Tenant: tenant-secret-1}\n",
        )
        .unwrap();
        let r = backend_redactor(&c.backends[0]);
        let leaked =
            "cannot connect to http://u:pa55word@h:1/mcp?apikey=top%2Fsecret&page=2 (top/secret, tenant-secret-1)";
        let out = r.redact(leaked);
        for secret in ["pa55word", "top%2Fsecret", "top/secret", "tenant-secret-1"] {
            assert!(!out.contains(secret), "{out}");
        }
        assert!(out.contains("page=2"), "{out}");
    }

    #[test]
    fn timestamps() {
        let at = |secs: u64, ms: u64| rfc3339_utc(UNIX_EPOCH + Duration::from_millis(secs * 1000 + ms));
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 0), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(1_795_644_600, 123), "2026-11-25T22:10:00.123Z");
        assert_eq!(at(4_107_542_399, 999), "2100-02-28T23:59:59.999Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000Z");
        assert_eq!(rfc3339_utc(UNIX_EPOCH - Duration::from_secs(5)), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn civil_matches_naive_day_counting() {
        let (mut y, mut m, mut d) = (1970u64, 1u64, 1u64);
        for days in 0..(400 * 366) {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn json_escaping_and_reserved_keys() {
        let r = Redactor::default();
        let line = json_line(Level::Warn, "t", "a\"b\\c\nd\u{1}e\u{2028}", &[("msg", "x"), ("k", "v")], &r);
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["msg"], "a\"b\\c\nd\u{1}e\u{2028}");
        assert_eq!(v["field_msg"], "x");
        assert_eq!(v["k"], "v");
        assert_eq!(v["level"], "WARN");
    }

    #[test]
    fn json_strings_round_trip() {
        const FRAGS: [&str; 12] =
            ["a", "\"", "\\", "\n", "\u{1}", "\u{7f}", "é", "\u{2028}", "\u{2029}", "\u{2030}", "€", "😀"];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..5_000 {
            let mut s = String::new();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            for k in 0..(state % 12) {
                s.push_str(FRAGS[((state >> (k * 5)) % 12) as usize]);
            }
            let mut out = String::new();
            push_json_str(&mut out, &s);
            assert!(!out.contains(['\n', '\u{2028}', '\u{2029}', '\u{7f}']), "{out:?}");
            assert_eq!(serde_json::from_str::<String>(&out).unwrap(), s);
        }
    }

    #[test]
    fn callback_sink_is_redacted_and_panic_safe() {
        let got: Arc<Mutex<Vec<String>>> = Arc::default();
        let g = got.clone();
        let logger = Logger::new(
            LevelFilter::Info,
            Sink::Callback(Box::new(move |_, _, line| {
                if line.contains("boom") {
                    panic!("callback panicked");
                }
                g.lock().unwrap().push(line.to_string());
            })),
            Redactor::new(vec!["canary-123".into()], vec![]),
        );
        let rec = |msg: std::fmt::Arguments<'_>, level| {
            logger.log(&Record::builder().args(msg).level(level).target("x").build());
        };
        rec(format_args!("key canary-123 sent"), Level::Info);
        rec(format_args!("too verbose"), Level::Debug);
        rec(format_args!("boom"), Level::Error);
        rec(format_args!("after"), Level::Error);
        let got = got.lock().unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].contains("key [REDACTED] sent"));
        assert!(!IN_LOG.with(Cell::get));
    }

    fn capture(level: LevelFilter, redactor: Redactor) -> (Logger, Arc<Mutex<Vec<String>>>) {
        let got: Arc<Mutex<Vec<String>>> = Arc::default();
        let g = got.clone();
        let sink = Sink::Callback(Box::new(move |_, _, line| g.lock().unwrap().push(line.to_string())));
        (Logger::new(level, sink, redactor), got)
    }

    #[test]
    fn key_values_become_typed_top_level_keys() {
        let (logger, got) = capture(LevelFilter::Trace, Redactor::new(vec!["canary-kv-1".into()], vec![]));
        let kvs: [(&str, log::kv::Value<'_>); 9] = [
            ("session", "s-1".into()),
            ("method", "tools/call".into()),
            ("name", "alpha__echo".into()),
            ("backend", "alpha".into()),
            ("duration_ms", 1.5f64.into()),
            ("id", 42u64.into()),
            ("ok", true.into()),
            ("error", "backend said canary-kv-1 and Bearer abc.def".into()),
            ("api_token", 12345u64.into()),
        ];
        logger.log(
            &Record::builder()
                .args(format_args!("tools/call ok"))
                .level(Level::Info)
                .target("mcprouter::access")
                .key_values(&kvs)
                .build(),
        );
        let got = got.lock().unwrap();
        let v: serde_json::Value = serde_json::from_str(&got[0]).unwrap();
        assert_eq!(v["target"], "mcprouter::access");
        assert_eq!(v["session"], "s-1");
        assert_eq!(v["method"], "tools/call");
        assert_eq!(v["name"], "alpha__echo");
        assert_eq!(v["backend"], "alpha");
        assert_eq!(v["duration_ms"], 1.5);
        assert_eq!(v["id"], 42);
        assert_eq!(v["ok"], true);
        assert_eq!(v["error"], "backend said [REDACTED] and Bearer [REDACTED]");
        assert_eq!(v["api_token"], REDACTED, "a sensitive name hides even a number");
    }

    #[test]
    fn text_lines_carry_fields_and_stay_one_line() {
        let r = Redactor::new(vec!["canary-txt-1".into()], vec![]);
        let line = text_line(
            Level::Warn,
            "t",
            "m\nforged line",
            &[("k", "v"), ("empty", ""), ("spaced", "a \"b\" canary-txt-1"), ("password", "p")],
            &r,
        );
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.ends_with(r#"t: m\nforged line k=v empty="" spaced="a \"b\" [REDACTED]" password=[REDACTED]"#),
            "{line}"
        );
    }

    #[test]
    fn non_finite_floats_stay_valid_json() {
        let (logger, got) = capture(LevelFilter::Info, Redactor::default());
        let kvs: [(&str, log::kv::Value<'_>); 1] = [("x", f64::NAN.into())];
        logger.log(&Record::builder().args(format_args!("m")).level(Level::Info).key_values(&kvs).build());
        let v: serde_json::Value = serde_json::from_str(&got.lock().unwrap()[0]).unwrap();
        assert_eq!(v["x"], "NaN");
    }

    #[test]
    fn secrets_come_from_env_names_flags_and_url_passwords() {
        let cfg = crate::Config::from_yaml(
            r#"
backends:
  - name: a
    command: srv
    args: ["--api-key", "canary-flag-1", "--token=canary-flag-2", "--name", "plainvalue", "--keys", "-v",
           "https://u:canary-url-1@h/x", "--path", "/tmp/x"]
    env: {GITHUB_TOKEN: canary-env-1, DB_PASSWORD: canary-env-2, HOME: /home/u,
          DATABASE_URL: "postgres://app:canary-url-2@db:5432/app"}
"#,
        )
        .unwrap();
        let mut s = config_secrets(&cfg);
        s.sort();
        assert_eq!(
            s,
            ["canary-env-1", "canary-env-2", "canary-flag-1", "canary-flag-2", "canary-url-1", "canary-url-2"]
        );
        assert_eq!(url_password("x://h/a:b@c"), None, "an @ after the path is not userinfo");
        assert_eq!(url_password("x://user@h"), None);
        assert_eq!(split_list(" a, ,b ,"), ["a", "b"]);
        let r = redactor_for(&cfg);
        assert_eq!(r.redact("echo canary-env-1 canary-url-2"), "echo [REDACTED] [REDACTED]");
    }
}
