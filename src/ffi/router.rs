//! `mcprouter_router`: create, inspect, stop and free a router.

use std::ffi::c_char;
use std::sync::Arc;
use std::time::Duration;

use super::error::{Failure, mcprouter_error};
use super::handle::{ArcCastable, arc_borrow, arc_into_ptr, arc_take};
use super::status::mcprouter_status;
use super::strings::{OutParam, input_str, output_string};
use crate::Router;

/// A running router: the backends (MCP servers), their merged catalog, and the threads that
/// serve them.
///
/// Thread contract: thread-safe. Any number of threads may use one router at once, through
/// any function that takes `const mcprouter_router *`, and `mcprouter_router_shutdown`.
/// Only `mcprouter_router_free` must not race other calls on the same handle.
pub struct mcprouter_router {
    _private: [u8; 0],
}

impl ArcCastable for mcprouter_router {
    type RustType = Router;
}

/// Borrows the router behind `r`, or fails with `NULL_PARAMETER` / `CLOSED`.
///
/// # Safety
/// `r` is NULL or a live router handle.
pub(crate) unsafe fn open_router<'a>(r: *const mcprouter_router) -> Result<&'a Router, Failure> {
    // SAFETY: per the contract above.
    let router = unsafe { arc_borrow(r) }.ok_or_else(|| Failure::null("router"))?;
    if router.is_closed() {
        return Err(crate::Error::Closed.into());
    }
    Ok(router)
}

/// Parses a YAML configuration and starts a router: every backend is started in parallel
/// and the call blocks until their handshakes finish (at most `router.init_timeout_ms`).
/// A backend that fails to start does not fail the call; `mcprouter_router_status` reports it.
///
/// `yaml` is NUL-terminated UTF-8, borrowed for the call. On success `*out` receives a router
/// that the caller frees with `mcprouter_router_free`.
///
/// Errors: `NULL_PARAMETER` (`yaml` or `out` NULL), `INVALID_UTF8`, `CONFIG` (the message
/// names the field and line), `TRANSPORT` (a thread could not be started).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mcprouter_router_new_from_yaml(
    yaml: *const c_char,
    out: *mut *mut mcprouter_router,
    err: *mut *mut mcprouter_error,
) -> mcprouter_status {
    ffi_boundary!(err = err, {
        // SAFETY: `out` is NULL or writable; `yaml` NULL or a C string (the header's contract).
        let out = unsafe { OutParam::new(out, "out") }?;
        let yaml = unsafe { input_str(yaml, "yaml") }?;
        let config = crate::Config::from_yaml(yaml)?;
        // The log callback is process-wide: it must mask this config's secrets too, from the
        // first record the backends' start may log.
        super::log::register_secrets(crate::logging::redactor_secrets(&config));
        let router = Router::new(config)?;
        out.write(arc_into_ptr(Arc::new(router)));
        Ok(())
    })
}

/// Like `mcprouter_router_new_from_yaml`, reading the YAML from the file at `path`
/// (NUL-terminated UTF-8, borrowed for the call). A file that cannot be read is a `CONFIG`
/// error naming the path.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mcprouter_router_new_from_file(
    path: *const c_char,
    out: *mut *mut mcprouter_router,
    err: *mut *mut mcprouter_error,
) -> mcprouter_status {
    ffi_boundary!(err = err, {
        // SAFETY: as in `mcprouter_router_new_from_yaml`.
        let out = unsafe { OutParam::new(out, "out") }?;
        let path = unsafe { input_str(path, "path") }?;
        let config = crate::Config::from_file(path)?;
        super::log::register_secrets(crate::logging::redactor_secrets(&config));
        let router = Router::new(config)?;
        out.write(arc_into_ptr(Arc::new(router)));
        Ok(())
    })
}

/// Applies a new YAML configuration to a running router without a restart (see the
/// README's "Hot reload"). The config is validated first: a bad one is refused whole with
/// the same errors as `mcprouter_router_new_from_yaml`, and the running config keeps
/// serving. Unchanged backends keep their process and state; added and changed ones are
/// started before this returns; removed and replaced ones finish their calls in flight,
/// then stop. Open sessions stay open and are told which lists changed (list_changed).
///
/// `yaml` is NUL-terminated UTF-8, borrowed for the call. On success, when
/// `generation_out` is not NULL, it receives the new config's generation (the config the
/// router started with is 1). Blocks while new backends start; one reload runs at a time.
///
/// Errors: `NULL_PARAMETER` (`r` or `yaml` NULL), `INVALID_UTF8`, `CONFIG` (the message
/// names the field and line), `CLOSED` (after `mcprouter_router_shutdown`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mcprouter_router_reload_from_yaml(
    r: *const mcprouter_router,
    yaml: *const c_char,
    generation_out: *mut u64,
    err: *mut *mut mcprouter_error,
) -> mcprouter_status {
    ffi_boundary!(err = err, {
        // SAFETY: `r` NULL or live, `yaml` NULL or a C string (the header's contract).
        let router = unsafe { open_router(r) }?;
        let yaml = unsafe { input_str(yaml, "yaml") }?;
        let parsed = crate::Config::from_yaml(yaml);
        // The log callback is process-wide: it must mask the new config's secrets too.
        if let Ok(config) = &parsed {
            super::log::register_secrets(crate::logging::redactor_secrets(config));
        }
        let generation = router.reload_parsed(parsed)?;
        // SAFETY: `generation_out` is NULL or writable (the header's contract).
        unsafe { write_optional(generation_out, generation) };
        Ok(())
    })
}

/// Like `mcprouter_router_reload_from_yaml`, reading the YAML from the file at `path`
/// (NUL-terminated UTF-8, borrowed for the call). A file that cannot be read is a `CONFIG`
/// error naming the path; the running config keeps serving.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mcprouter_router_reload_from_file(
    r: *const mcprouter_router,
    path: *const c_char,
    generation_out: *mut u64,
    err: *mut *mut mcprouter_error,
) -> mcprouter_status {
    ffi_boundary!(err = err, {
        // SAFETY: as in `mcprouter_router_reload_from_yaml`.
        let router = unsafe { open_router(r) }?;
        let path = unsafe { input_str(path, "path") }?;
        let parsed = crate::Config::from_file(path);
        if let Ok(config) = &parsed {
            super::log::register_secrets(crate::logging::redactor_secrets(config));
        }
        let generation = router.reload_parsed(parsed)?;
        // SAFETY: as above.
        unsafe { write_optional(generation_out, generation) };
        Ok(())
    })
}

/// Writes `value` to an optional out-param.
///
/// # Safety
/// `out` is NULL or valid for a write of a `u64`.
unsafe fn write_optional(out: *mut u64, value: u64) {
    if !out.is_null() {
        // SAFETY: per the contract above.
        unsafe { out.write(value) };
    }
}

/// Writes the router's metrics, in the Prometheus text exposition format, to `*text_out`
/// (owned: free it with `mcprouter_string_free`).
///
/// Errors: `NULL_PARAMETER`, `CLOSED` (after `mcprouter_router_shutdown`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mcprouter_router_metrics(
    r: *const mcprouter_router,
    text_out: *mut *mut c_char,
    err: *mut *mut mcprouter_error,
) -> mcprouter_status {
    ffi_boundary!(err = err, {
        // SAFETY: `text_out` NULL or writable, `r` NULL or live (the header's contract).
        let out = unsafe { OutParam::new(text_out, "text_out") }?;
        let router = unsafe { open_router(r) }?;
        out.write(output_string(router.metrics(), "metrics")?);
        Ok(())
    })
}

/// Writes the router's status as a JSON object to `*json_out` (owned: free it with
/// `mcprouter_string_free`): `{"router": {name, version, closed, sessions, session_backends,
/// uptime_ms, catalog}, "config": {generation, last_reload: null | {at_unix_ms, ok, error},
/// draining_backends}, "backends": [{name, transport, state, protocol_version, tools, resources,
/// prompts, in_flight, queue_depth, handshake_ms, pid, last_error, ...}]}`.
///
/// Errors: `NULL_PARAMETER`, `CLOSED` (after `mcprouter_router_shutdown`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mcprouter_router_status(
    r: *const mcprouter_router,
    json_out: *mut *mut c_char,
    err: *mut *mut mcprouter_error,
) -> mcprouter_status {
    ffi_boundary!(err = err, {
        // SAFETY: as in `mcprouter_router_metrics`.
        let out = unsafe { OutParam::new(json_out, "json_out") }?;
        let router = unsafe { open_router(r) }?;
        out.write(output_string(router.status().to_string(), "status")?);
        Ok(())
    })
}

/// Stops the router without freeing the handle: open sessions fail with `CLOSED` from now
/// on, each backend's stdin is closed and after `grace_ms` it is terminated, then killed;
/// every thread is joined before this returns. Later calls on the router and its sessions
/// return `CLOSED`; the handle must still be freed with `mcprouter_router_free`.
///
/// Idempotent; NULL is a no-op. May be called from any thread while others use the router.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mcprouter_router_shutdown(r: *mut mcprouter_router, grace_ms: u32) {
    ffi_boundary!({
        // SAFETY: `r` is NULL or a live router handle (the header's contract).
        if let Some(router) = unsafe { arc_borrow(r.cast_const()) } {
            router.shutdown(Duration::from_millis(u64::from(grace_ms)));
        }
    })
}

/// Frees the router handle. Open sessions keep the router running; when the last of them
/// is closed too, the router stops (with the configured `router.shutdown_grace_ms`) and
/// that call blocks until its threads are joined. NULL is a no-op.
///
/// The handle must not be used again, nor freed while another thread uses it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mcprouter_router_free(r: *mut mcprouter_router) {
    ffi_boundary!({
        // SAFETY: `r` is NULL or a handle the caller gives up here.
        drop(unsafe { arc_take(r.cast_const()) });
    })
}
