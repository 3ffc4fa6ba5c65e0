//! The C API: `include/mcprouter.h` is generated from this module by cbindgen.
//!
//! All of the crate's `unsafe` lives here. Conventions (they are repeated in the header):
//! - every fallible function returns `mcprouter_status` and takes `mcprouter_error **err`
//!   last; `err` may be NULL, `*err` is set to NULL on entry and receives an owned error when
//!   the status is not OK;
//! - out-params are set to NULL on entry and receive a value only on success;
//! - inputs are borrowed for the call only; returned strings are owned by the caller and
//!   freed with `mcprouter_string_free`;
//! - every function may be called from any thread; a `_free`/`_close` must not race other
//!   calls on the same handle;
//! - no panic crosses the boundary (`ffi_boundary!`).
//!
//! The safety contract of every `unsafe extern "C" fn` is that conventions block, stated
//! once at the top of the header rather than in a `# Safety` section per function.
#![allow(clippy::missing_safety_doc)]

#[macro_use]
mod panic;
mod handle;

// The header lists functions in the order cbindgen meets these modules.
mod router;

mod gateway;

mod session;

mod strings;

mod error;

mod status;

mod log;

pub use error::{mcprouter_error, mcprouter_error_free, mcprouter_error_message, mcprouter_error_status};
pub use gateway::{
    mcprouter_gateway, mcprouter_gateway_free, mcprouter_gateway_shutdown, mcprouter_gateway_start,
    mcprouter_gateway_url,
};
pub use log::{mcprouter_log_cb, mcprouter_log_next, mcprouter_log_queue, mcprouter_set_log_callback};
pub use router::{
    mcprouter_router, mcprouter_router_free, mcprouter_router_metrics, mcprouter_router_new_from_file,
    mcprouter_router_new_from_yaml, mcprouter_router_shutdown, mcprouter_router_status,
};
pub use session::{
    mcprouter_reply_cb, mcprouter_session, mcprouter_session_close, mcprouter_session_handle,
    mcprouter_session_handle_async, mcprouter_session_next_event, mcprouter_session_open,
};
pub use status::{mcprouter_status, mcprouter_status_arg, mcprouter_status_str};
pub use strings::{mcprouter_str, mcprouter_string_free, mcprouter_version};
