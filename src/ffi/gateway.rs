//! `mcprouter_gateway`: serve a router to many clients over Streamable HTTP.

use std::ffi::c_char;
use std::sync::Arc;
use std::time::Duration;

use super::error::mcprouter_error;
use super::handle::{ArcCastable, arc_borrow, arc_into_ptr, arc_take};
use super::router::{mcprouter_router, open_router};
use super::status::mcprouter_status;
use super::strings::{OutParam, output_string};
use crate::front::http::Gateway;

/// A running HTTP gateway: the router's MCP endpoint (Streamable HTTP) and its connection
/// threads.
///
/// Thread contract: thread-safe; only `mcprouter_gateway_free` must not race other calls on
/// the same handle.
pub struct mcprouter_gateway {
    _private: [u8; 0],
}

impl ArcCastable for mcprouter_gateway {
    type RustType = Gateway;
}

/// Starts serving `router` over HTTP with the settings of its config's `gateway:` section.
/// `listen` (`HOST:PORT`, port 0 for a free one) overrides the section's address; NULL keeps
/// it. The router stays usable from C; the gateway holds its own reference to it.
///
/// On success `*out` receives a gateway that the caller stops with
/// `mcprouter_gateway_shutdown` and frees with `mcprouter_gateway_free`.
///
/// Errors: `NULL_PARAMETER` (`router` or `out` NULL), `INVALID_UTF8`, `CLOSED`, `CONFIG`
/// (no address, or a non-loopback address without tokens), `TRANSPORT` (the address cannot
/// be bound, or a thread could not be started).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mcprouter_gateway_start(
    router: *const mcprouter_router,
    listen: *const c_char,
    out: *mut *mut mcprouter_gateway,
    err: *mut *mut mcprouter_error,
) -> mcprouter_status {
    ffi_boundary!(err = err, {
        // SAFETY: `out` NULL or writable, `router` NULL or live, `listen` NULL or a C string.
        let out = unsafe { OutParam::new(out, "out") }?;
        let router = unsafe { open_router(router) }?;
        let listen =
            if listen.is_null() { None } else { Some(unsafe { super::strings::input_str(listen, "listen") }?) };
        let mut settings = router.config().gateway.clone();
        if let Some(addr) = listen {
            settings.listen = Some(addr.to_owned());
        }
        let gateway = Gateway::start(router.clone(), settings)?;
        out.write(arc_into_ptr(Arc::new(gateway)));
        Ok(())
    })
}

/// Writes the gateway's MCP endpoint URL (`http://HOST:PORT/PATH`) to `*url_out` (owned: free
/// it with `mcprouter_string_free`).
///
/// Errors: `NULL_PARAMETER`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mcprouter_gateway_url(
    g: *const mcprouter_gateway,
    url_out: *mut *mut c_char,
    err: *mut *mut mcprouter_error,
) -> mcprouter_status {
    ffi_boundary!(err = err, {
        // SAFETY: `url_out` NULL or writable, `g` NULL or a live gateway handle.
        let out = unsafe { OutParam::new(url_out, "url_out") }?;
        let gateway = unsafe { arc_borrow(g) }.ok_or_else(|| super::error::Failure::null("gateway"))?;
        out.write(output_string(gateway.url(), "url")?);
        Ok(())
    })
}

/// Stops accepting, lets open streams and calls finish for up to `grace_ms`, closes every
/// HTTP session and joins the gateway's threads. The router keeps running. Idempotent; NULL
/// is a no-op.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mcprouter_gateway_shutdown(g: *mut mcprouter_gateway, grace_ms: u32) {
    ffi_boundary!({
        // SAFETY: `g` is NULL or a live gateway handle (the header's contract).
        if let Some(gateway) = unsafe { arc_borrow(g.cast_const()) } {
            gateway.shutdown(Duration::from_millis(u64::from(grace_ms)));
        }
    })
}

/// Frees the gateway handle, shutting it down first if that has not been done. NULL is a
/// no-op. The handle must not be used again, nor freed while another thread uses it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mcprouter_gateway_free(g: *mut mcprouter_gateway) {
    ffi_boundary!({
        // SAFETY: `g` is NULL or a handle the caller gives up here.
        drop(unsafe { arc_take(g.cast_const()) });
    })
}
