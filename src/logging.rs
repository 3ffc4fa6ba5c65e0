//! Structured (JSON) log lines and a `log::Log` implementation with a
//! pluggable sink.
//!
//! Every string that reaches a sink has been through a [`Redactor`]: the
//! message, the target, field names and field values. There is no way to log
//! around it, which is the point: redaction that can be forgotten will be.
//!
//! The library never installs a global logger on its own; an embedding
//! application decides whether to call [`install`] or to route `log` records
//! into its own logging.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter, Log, Metadata, Record, SetLoggerError};

use crate::redact::{REDACTED, Redactor};

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
    let mut out = String::with_capacity(96 + message.len() + fields.len() * 24);
    out.push_str("{\"ts\":\"");
    push_rfc3339(&mut out, ts);
    out.push_str("\",\"level\":\"");
    out.push_str(level.as_str());
    out.push_str("\",\"target\":");
    push_json_str(&mut out, &redactor.redact(target));
    out.push_str(",\"msg\":");
    push_json_str(&mut out, &redactor.redact(message));
    for (key, value) in fields {
        out.push(',');
        let key_red = redactor.redact(key);
        if RESERVED_KEYS.contains(&key_red.as_ref()) {
            let prefixed = format!("field_{key_red}");
            push_json_str(&mut out, &prefixed);
        } else {
            push_json_str(&mut out, &key_red);
        }
        out.push(':');
        if redactor.is_sensitive_field(key) {
            push_json_str(&mut out, REDACTED);
        } else {
            push_json_str(&mut out, &redactor.redact(value));
        }
    }
    out.push('}');
    out
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
    let mut last = 0;
    for (i, ch) in s.char_indices() {
        let esc: &str = match ch {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if (c as u32) < 0x20 || c == '\u{7f}' => "",
            // U+2028/2029 are valid in JSON but end lines in JavaScript and
            // some log viewers; escaping them keeps "one record per line".
            '\u{2028}' | '\u{2029}' => "",
            _ => continue,
        };
        out.push_str(s.get(last..i).unwrap_or(""));
        if esc.is_empty() {
            let _ = write!(out, "\\u{:04x}", ch as u32);
        } else {
            out.push_str(esc);
        }
        last = i + ch.len_utf8();
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
        match &self.sink {
            Sink::Stderr(Format::Json) => {
                let mut line = json_line(level, target, &msg, &[], &self.redactor);
                line.push('\n');
                write_stderr(&line);
            }
            Sink::Stderr(Format::Text) => {
                let mut line = String::with_capacity(48 + msg.len());
                push_rfc3339(&mut line, SystemTime::now());
                let _ = write!(line, " {:<5} ", level.as_str());
                push_text(&mut line, &self.redactor.redact(target));
                line.push_str(": ");
                push_text(&mut line, &self.redactor.redact(&msg));
                line.push('\n');
                write_stderr(&line);
            }
            Sink::Callback(cb) => {
                let line = json_line(level, target, &msg, &[], &self.redactor);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

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
}
