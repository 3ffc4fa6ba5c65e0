//! `mcprouter_set_log_callback`: the library's `log` records, delivered to a C function.
//!
//! `log::set_logger` is process-global, so the library installs its logger only when a C
//! caller first asks for it; a Rust program that links the rlib keeps its own logger.

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;

use super::error::{Failure, mcprouter_error};
use super::status::mcprouter_status;
use super::strings::{OutParam, mcprouter_str, output_string};

/// Receives one log record. `level` is 1 = error, 2 = warn, 3 = info, 4 = debug, 5 = trace
/// (as Rust's `log::Level`); `target` names the module (for example `"mcprouter::session"`);
/// `message` is the whole record as one redacted JSON object (`ts`, `level`, `target`,
/// `msg` and the record's fields, such as `method`, `backend`, `outcome`, `duration_ms` on
/// access records). Both views are valid only during the call.
///
/// Called on the library's internal threads, possibly several at once: it must be
/// thread-safe, return quickly, never unwind (no C++ exception may escape it), and may call
/// `mcprouter_set_log_callback` but no other mcprouter function.
pub type mcprouter_log_cb = Option<
    unsafe extern "C" fn(userdata: *mut c_void, level: c_int, target: mcprouter_str<'_>, message: mcprouter_str<'_>),
>;

/// The installed callback. `userdata` is only ever handed back to the callback, on whatever
/// thread logs, which the C caller accepted when installing it.
struct Sink {
    cb: unsafe extern "C" fn(*mut c_void, c_int, mcprouter_str<'_>, mcprouter_str<'_>),
    userdata: *mut c_void,
    max_level: log::LevelFilter,
}

// SAFETY: the callback's contract (documented on `mcprouter_log_cb`) makes it and its
// userdata usable from any thread, concurrently.
unsafe impl Send for Sink {}
// SAFETY: as above.
unsafe impl Sync for Sink {}

/// The current sink. Logging clones the `Arc` out and calls without holding the lock;
/// replacing the sink waits for those clones to go (see `mcprouter_set_log_callback`).
static SINK: Mutex<Option<Arc<Sink>>> = Mutex::new(None);
/// Whether `log::set_logger` accepted our logger; decided on the first non-NULL callback.
static OURS: OnceLock<bool> = OnceLock::new();

/// Records kept for `mcprouter_log_next`: the pull alternative to a callback, for hosts
/// that cannot take calls on foreign threads (Node, where a callback would block the
/// logging thread until JavaScript runs).
struct Queue {
    tx: crossbeam_channel::Sender<String>,
    rx: crossbeam_channel::Receiver<String>,
    max_level: log::LevelFilter,
}

static QUEUE: Mutex<Option<Arc<Queue>>> = Mutex::new(None);

/// The most verbose level any consumer wants.
fn wanted_level() -> log::LevelFilter {
    let sink = SINK.lock().as_ref().map_or(log::LevelFilter::Off, |s| s.max_level);
    let queue = QUEUE.lock().as_ref().map_or(log::LevelFilter::Off, |q| q.max_level);
    sink.max(queue)
}

fn logger_installed() -> bool {
    *OURS.get_or_init(|| log::set_logger(&LOGGER).is_ok())
}

thread_local! {
    /// Set while this thread runs the user's callback.
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

struct CallbackLogger;

static LOGGER: CallbackLogger = CallbackLogger;

impl log::Log for CallbackLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= wanted_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        // A record logged by the callback itself (through some Rust it calls) is dropped
        // rather than recursing.
        if IN_CALLBACK.with(Cell::get) {
            return;
        }
        let sink = SINK.lock().clone().filter(|s| record.level() <= s.max_level);
        let queue = QUEUE.lock().clone().filter(|q| record.level() <= q.max_level);
        if sink.is_none() && queue.is_none() {
            return;
        }
        // Always redacted: backend stderr and error messages can carry credentials.
        let message = crate::logging::record_json(record, &global());
        if let Some(q) = queue {
            // A full queue drops the record: logging must never block the router.
            let _ = q.tx.try_send(message.clone());
        }
        let Some(sink) = sink else { return };
        let level = record.level() as c_int;
        IN_CALLBACK.with(|c| c.set(true));
        // SAFETY: the C caller promised a callback that is callable from any thread.
        unsafe { (sink.cb)(sink.userdata, level, mcprouter_str::new(record.target()), mcprouter_str::new(&message)) };
        IN_CALLBACK.with(|c| c.set(false));
    }

    fn flush(&self) {}
}

fn level_filter(min_level: c_int) -> log::LevelFilter {
    match min_level {
        i if i <= 0 => log::LevelFilter::Off,
        1 => log::LevelFilter::Error,
        2 => log::LevelFilter::Warn,
        3 => log::LevelFilter::Info,
        4 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    }
}

/// Sends the library's log records to `cb`, or stops sending them when `cb` is NULL.
///
/// Records whose level number is at most `min_level` are delivered: 3 delivers errors,
/// warnings and info; 0 or less delivers nothing; above 5 counts as 5. `userdata` is passed
/// back to every call of `cb`, untouched.
///
/// The first call with a non-NULL `cb` installs a process-global `log` logger (the library
/// installs none otherwise). If the process already has one (a Rust host that set its own),
/// this logger cannot be installed and `cb` is never called; a Rust host should use its own.
///
/// When this function returns, the previous callback is no longer running and will not be
/// called again, so its `userdata` may be freed; the exception is a call made from inside a
/// callback, which cannot wait for itself. Callable from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn mcprouter_set_log_callback(cb: mcprouter_log_cb, userdata: *mut c_void, min_level: c_int) {
    ffi_boundary!({
        let sink = cb.map(|cb| Arc::new(Sink { cb, userdata, max_level: level_filter(min_level) }));
        let ours = if sink.is_some() { logger_installed() } else { OURS.get() == Some(&true) };
        if !ours {
            // Another logger owns `log` (or none was ever asked for): nothing would reach
            // this callback, so keep nothing.
            return;
        }
        let old = std::mem::replace(&mut *SINK.lock(), sink);
        log::set_max_level(wanted_level());
        // Wait until no thread still holds the old sink (each holds it only around one call).
        if let Some(old) = old
            && !IN_CALLBACK.with(Cell::get)
        {
            while Arc::strong_count(&old) > 1 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    })
}

/// Starts keeping the library's log records in a bounded queue that
/// `mcprouter_log_next` reads: the pull alternative to `mcprouter_set_log_callback` for
/// hosts that cannot take calls on library threads (Node). `min_level` is as for the
/// callback; 0 or less stops queueing and drops what is queued. `capacity` 0 means 1024;
/// when the queue is full, new records are dropped rather than blocking the router.
///
/// Like the callback, this installs a process-global `log` logger on first use, and does
/// nothing if the process already has another one. Callable from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn mcprouter_log_queue(min_level: c_int, capacity: u32) {
    ffi_boundary!({
        let level = level_filter(min_level);
        let queue = (level != log::LevelFilter::Off && logger_installed()).then(|| {
            let cap = if capacity == 0 { 1024 } else { capacity as usize };
            let (tx, rx) = crossbeam_channel::bounded(cap);
            Arc::new(Queue { tx, rx, max_level: level })
        });
        *QUEUE.lock() = queue;
        if OURS.get() == Some(&true) {
            log::set_max_level(wanted_level());
        }
    })
}

/// Waits up to `timeout_ms` for the next queued log record (see `mcprouter_log_queue`).
/// On success `*record_out` receives the record as one redacted JSON object (`ts`, `level`,
/// `target`, `msg` and the record's fields; owned: free it with `mcprouter_string_free`).
///
/// Errors: `NULL_PARAMETER`, `TIMEOUT` (nothing within `timeout_ms`), `CLOSED` (queueing is
/// off). Callable from any thread; concurrent readers each get different records.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mcprouter_log_next(
    timeout_ms: u32,
    record_out: *mut *mut c_char,
    err: *mut *mut mcprouter_error,
) -> mcprouter_status {
    ffi_boundary!(err = err, {
        // SAFETY: `record_out` is NULL or writable.
        let out = unsafe { OutParam::new(record_out, "record_out") }?;
        let Some(queue) = QUEUE.lock().clone() else {
            return Err(Failure::new(mcprouter_status::Closed, "log queueing is off (see mcprouter_log_queue)"));
        };
        match queue.rx.recv_timeout(Duration::from_millis(u64::from(timeout_ms))) {
            Ok(record) => out.write(output_string(record, "the log record")?),
            Err(_) => {
                return Err(Failure::new(mcprouter_status::Timeout, format!("no log record within {timeout_ms} ms")));
            }
        }
        Ok(())
    })
}

/// Secrets of every router made through the C ABI in this process (from its config): the log
/// callback is process-global, so it masks all of them. Owned here, by the one logger that
/// needs it; a Rust program's own logger uses each router's own redactor.
static GLOBAL: std::sync::RwLock<Option<std::sync::Arc<crate::redact::Redactor>>> = std::sync::RwLock::new(None);
static GLOBAL_SECRETS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Adds a config's secret values to the process-wide redactor (see [`global`]).
pub(crate) fn register_secrets(secrets: impl IntoIterator<Item = String>) {
    let mut all = GLOBAL_SECRETS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let before = all.len();
    for s in secrets {
        if !all.contains(&s) {
            all.push(s);
        }
    }
    if all.len() != before || GLOBAL.read().map(|g| g.is_none()).unwrap_or(true) {
        let fresh = std::sync::Arc::new(crate::redact::Redactor::new(all.clone(), Vec::new()));
        *GLOBAL.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(fresh);
    }
}

/// The process-wide redactor: the built-in rules plus every registered secret.
fn global() -> std::sync::Arc<crate::redact::Redactor> {
    if let Some(r) = GLOBAL.read().ok().and_then(|g| g.clone()) {
        return r;
    }
    register_secrets(Vec::new());
    GLOBAL
        .read()
        .ok()
        .and_then(|g| g.clone())
        .unwrap_or_else(|| std::sync::Arc::new(crate::redact::Redactor::new(Vec::new(), Vec::new())))
}
