//! `mcprouter_session`: one MCP client of a router.

use std::ffi::{CString, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::error::{Failure, mcprouter_error, to_cstring_lossy};
use super::handle::{ArcCastable, arc_borrow, arc_clone, arc_into_ptr, arc_take};
use super::panic::panic_message;
use super::router::{mcprouter_router, open_router};
use super::status::mcprouter_status;
use super::strings::{OutParam, input_opt_str, input_str, output_string};
use crate::Session;

/// One MCP client of a router: it answers JSON-RPC messages as a single MCP server would and
/// queues what the router sends the client on its own (notifications, requests from
/// backends) for `mcprouter_session_next_event`.
///
/// Thread contract: thread-safe. Several threads may call `mcprouter_session_handle` on one
/// session at once (a long `tools/call` need not hold up the answer to a sampling request),
/// and another may wait in `mcprouter_session_next_event`. Only `mcprouter_session_close`
/// must not race other calls on the same handle. A session keeps its router alive.
pub struct mcprouter_session {
    _private: [u8; 0],
}

impl ArcCastable for mcprouter_session {
    type RustType = Session;
}

/// Receives the outcome of `mcprouter_session_handle_async`, exactly once, on a library
/// thread. `status` is what `mcprouter_session_handle` would have returned. `reply` is the
/// JSON-RPC reply, owned by the callback (free it with `mcprouter_string_free`), or NULL for
/// a notification or on failure. `error_message` is NULL on success, otherwise a
/// NUL-terminated message valid only during the call. The callback may call any mcprouter
/// function (close the session, start another call); it must not unwind.
pub type mcprouter_reply_cb = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        status: mcprouter_status,
        reply: *mut c_char,
        error_message: *const c_char,
    ),
>;

/// Opens a session on a router. `client_id` (nullable, NUL-terminated UTF-8, borrowed for
/// the call) keys sticky balancing; NULL gets a generated id. On success `*out` receives a
/// session that the caller closes with `mcprouter_session_close`.
///
/// Errors: `NULL_PARAMETER` (`r` or `out` NULL), `INVALID_UTF8`, `CLOSED` (the router has
/// shut down).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mcprouter_session_open(
    r: *const mcprouter_router,
    client_id: *const c_char,
    out: *mut *mut mcprouter_session,
    err: *mut *mut mcprouter_error,
) -> mcprouter_status {
    ffi_boundary!(err = err, {
        // SAFETY: `out` NULL or writable, `r` NULL or live, `client_id` NULL or a C string.
        let out = unsafe { OutParam::new(out, "out") }?;
        let router = unsafe { open_router(r) }?;
        let client_id = unsafe { input_opt_str(client_id, "client_id") }?;
        let session = router.session(client_id)?;
        out.write(arc_into_ptr(Arc::new(session)));
        Ok(())
    })
}

/// Handles one JSON-RPC message or batch (`message_json`, NUL-terminated UTF-8, borrowed for
/// the call) and blocks until the reply is ready: each routed request waits at most its
/// backend's deadline.
///
/// On success `*reply_out` receives the reply (owned: free it with `mcprouter_string_free`),
/// or NULL when there is none (notifications, responses, all-notification batches, requests
/// the client cancelled). A message that is not valid JSON-RPC, and a routed call that fails
/// (unknown tool, backend down, deadline passed), succeed with a JSON-RPC error reply.
///
/// Errors: `NULL_PARAMETER`, `INVALID_UTF8`, `CLOSED` (the router has shut down).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mcprouter_session_handle(
    s: *const mcprouter_session,
    message_json: *const c_char,
    reply_out: *mut *mut c_char,
    err: *mut *mut mcprouter_error,
) -> mcprouter_status {
    ffi_boundary!(err = err, {
        // SAFETY: `reply_out` NULL or writable, `s` NULL or live, `message_json` NULL or a C string.
        let out = unsafe { OutParam::new(reply_out, "reply_out") }?;
        let session = unsafe { arc_borrow(s) }.ok_or_else(|| Failure::null("session"))?;
        let message = unsafe { input_str(message_json, "message_json") }?;
        if let Some(reply) = session.handle(message)? {
            out.write(output_string(reply, "the reply")?);
        }
        Ok(())
    })
}

/// Waits up to `timeout_ms` for the next message the router sends this client on its own
/// (a notification such as `notifications/message` or `notifications/tools/list_changed`,
/// or a request such as `sampling/createMessage`, to be answered through
/// `mcprouter_session_handle`).
///
/// On success `*event_out` receives the JSON message (owned: free it with
/// `mcprouter_string_free`). When nothing came in time the status is `TIMEOUT` and
/// `*event_out` is NULL; `0` polls without waiting.
///
/// Errors: `NULL_PARAMETER`, `TIMEOUT`, `CLOSED` (the router has shut down and every
/// queued event has been read).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mcprouter_session_next_event(
    s: *const mcprouter_session,
    timeout_ms: u32,
    event_out: *mut *mut c_char,
    err: *mut *mut mcprouter_error,
) -> mcprouter_status {
    ffi_boundary!(err = err, {
        // SAFETY: `event_out` NULL or writable, `s` NULL or live.
        let out = unsafe { OutParam::new(event_out, "event_out") }?;
        let session = unsafe { arc_borrow(s) }.ok_or_else(|| Failure::null("session"))?;
        match session.next_event(Duration::from_millis(u64::from(timeout_ms)))? {
            Some(event) => out.write(output_string(event, "the event")?),
            None => {
                return Err(Failure::new(mcprouter_status::Timeout, format!("no event within {timeout_ms} ms")));
            }
        }
        Ok(())
    })
}

/// Closes the session and frees the handle: requests it still has in flight are cancelled
/// on their backends, and requests a backend sent it that it never answered are refused.
/// An asynchronous call still running keeps what it needs and still calls back: with its
/// reply, with none (it was cancelled), or with `CLOSED`. NULL is a no-op.
///
/// The handle must not be used again, nor closed while another thread uses it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mcprouter_session_close(s: *mut mcprouter_session) {
    ffi_boundary!({
        // SAFETY: `s` is NULL or a handle the caller gives up here.
        if let Some(session) = unsafe { arc_take(s.cast_const()) } {
            session.close();
        }
    })
}

/// How many asynchronous calls may run at once, library-wide.
const MAX_ASYNC_CALLS: usize = 256;
static ASYNC_CALLS: AtomicUsize = AtomicUsize::new(0);

/// The userdata of an asynchronous call, only ever handed back to its callback.
struct UserData(*mut c_void);

// SAFETY: `mcprouter_session_handle_async` documents that the callback and its userdata are
// used on a library thread.
unsafe impl Send for UserData {}

/// Like `mcprouter_session_handle`, without blocking: the message is copied, the call runs
/// on a library thread, and `cb(userdata, status, reply, error_message)` is invoked exactly
/// once on that thread with the outcome (see `mcprouter_reply_cb`). By the time `cb` runs,
/// the library holds no reference to the session any more.
///
/// Returns `OK` when the call was started; then, and only then, `cb` will be called. Any
/// other status means it was not started and `cb` will never be called: `NULL_PARAMETER`
/// (`s`, `message_json` or `cb` NULL), `INVALID_UTF8`, `QUEUE_FULL` (256 asynchronous calls
/// already running), `TRANSPORT` (no thread could be started).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mcprouter_session_handle_async(
    s: *const mcprouter_session,
    message_json: *const c_char,
    cb: mcprouter_reply_cb,
    userdata: *mut c_void,
) -> mcprouter_status {
    ffi_boundary!(err = std::ptr::null_mut(), {
        // SAFETY: `s` NULL or live, `message_json` NULL or a C string.
        let session = unsafe { arc_clone(s) }.ok_or_else(|| Failure::null("session"))?;
        let cb = cb.ok_or_else(|| Failure::null("cb"))?;
        let message = unsafe { input_str(message_json, "message_json") }?.to_owned();
        if ASYNC_CALLS.fetch_add(1, Ordering::AcqRel) >= MAX_ASYNC_CALLS {
            ASYNC_CALLS.fetch_sub(1, Ordering::AcqRel);
            let msg = format!("{MAX_ASYNC_CALLS} asynchronous calls are already running");
            return Err(Failure::new(mcprouter_status::QueueFull, msg));
        }
        let userdata = UserData(userdata);
        let spawned = std::thread::Builder::new()
            .name("mcprouter-async".into())
            .spawn(move || run_async(session, message, cb, userdata));
        if let Err(e) = spawned {
            ASYNC_CALLS.fetch_sub(1, Ordering::AcqRel);
            return Err(Failure::new(mcprouter_status::Transport, format!("cannot start a thread: {e}")));
        }
        Ok(())
    })
}

type ReplyFn = unsafe extern "C" fn(*mut c_void, mcprouter_status, *mut c_char, *const c_char);

fn run_async(session: Arc<Session>, message: String, cb: ReplyFn, userdata: UserData) {
    let outcome = catch_unwind(AssertUnwindSafe(|| session.handle(&message)));
    // Let go of the session first: if C already closed it, this may be the last reference.
    drop(session);
    let (status, reply, failure): (mcprouter_status, *mut c_char, Option<CString>) = match outcome {
        Ok(Ok(None)) => (mcprouter_status::Ok, std::ptr::null_mut(), None),
        Ok(Ok(Some(reply))) => match output_string(reply, "the reply") {
            Ok(p) => (mcprouter_status::Ok, p, None),
            Err(f) => (f.status, std::ptr::null_mut(), Some(to_cstring_lossy(f.message))),
        },
        Ok(Err(e)) => (mcprouter_status::from(&e), std::ptr::null_mut(), Some(to_cstring_lossy(e.to_string()))),
        Err(payload) => (mcprouter_status::Panic, std::ptr::null_mut(), Some(to_cstring_lossy(panic_message(payload)))),
    };
    ASYNC_CALLS.fetch_sub(1, Ordering::AcqRel);
    let message_ptr = failure.as_ref().map_or(std::ptr::null(), |m| m.as_ptr());
    // SAFETY: the caller handed us `cb` and `userdata` for exactly this call.
    unsafe { cb(userdata.0, status, reply, message_ptr) };
}
