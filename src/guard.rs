//! Panics on router-owned threads: a panic is a bug, but it must cost one request or one
//! connection, never a hung caller or a dead host process.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The text of a panic payload, cut short: it goes into one log record.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned());
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// Runs a long-lived loop (`f` returns when the loop should end) and starts it again after a
/// panic, logging each one, until it returns normally. For threads that own no connection:
/// the dispatcher and the health checker.
pub(crate) fn keep_running(what: &str, mut f: impl FnMut()) {
    while let Err(payload) = catch_unwind(AssertUnwindSafe(&mut f)) {
        log::error!(target: "mcprouter", "internal error: thread {what} panicked and restarts: {}", panic_message(payload.as_ref()));
    }
}
