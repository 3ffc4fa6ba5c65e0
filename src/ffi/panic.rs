//! The panic boundary: no panic crosses the C ABI.
//!
//! Since Rust 1.81 a panic escaping an `extern "C"` function aborts the process, so
//! `catch_unwind` here is what turns a bug into `MCPROUTER_STATUS_PANIC` (with the panic
//! message in `err`) instead of killing the host. It needs `panic = "unwind"`, which every
//! profile keeps.

use std::any::Any;
use std::ffi::c_char;
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::error::{Failure, mcprouter_error};
use super::status::mcprouter_status;

/// Wraps the body of every export.
///
/// `ffi_boundary!(err = ERR, { ... })` is for functions that return `mcprouter_status`: the
/// body returns `Result<(), Failure>`, `*ERR` is cleared first and receives the failure
/// (or the panic) afterwards. `ffi_boundary!({ ... })` is for the rest: a panic returns
/// the type's [`PanicOrDefault`] value.
macro_rules! ffi_boundary {
    (err = $err:expr, $body:block) => {{
        let body = move || -> ::std::result::Result<(), $crate::ffi::error::Failure> { $body };
        // SAFETY: every export documents `err` as NULL or valid for writing one pointer.
        unsafe { $crate::ffi::panic::catch_status($err, body) }
    }};
    ($body:block) => {
        $crate::ffi::panic::catch_default(move || $body)
    };
}

/// What an export returns when its body panicked.
pub(crate) trait PanicOrDefault {
    fn panic_value() -> Self;
}

impl PanicOrDefault for () {
    fn panic_value() -> Self {}
}

impl PanicOrDefault for mcprouter_status {
    fn panic_value() -> Self {
        mcprouter_status::Panic
    }
}

impl PanicOrDefault for *const c_char {
    fn panic_value() -> Self {
        std::ptr::null()
    }
}

/// Runs `f`; a panic gives `T::panic_value()`.
pub(crate) fn catch_default<T: PanicOrDefault>(f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(payload) => {
            drop_payload(payload);
            T::panic_value()
        }
    }
}

/// Clears `*err`, runs `f`, and turns its failure or panic into a status and an error.
///
/// # Safety
/// `err` is NULL or valid for writing one pointer.
pub(crate) unsafe fn catch_status(
    err: *mut *mut mcprouter_error,
    f: impl FnOnce() -> Result<(), Failure>,
) -> mcprouter_status {
    if !err.is_null() {
        // SAFETY: per the contract above.
        unsafe { *err = std::ptr::null_mut() };
    }
    let failure = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return mcprouter_status::Ok,
        Ok(Err(failure)) => failure,
        Err(payload) => Failure::new(mcprouter_status::Panic, panic_message(payload)),
    };
    let status = failure.status;
    // Building the error allocates; even a panic there must not cross the boundary.
    // SAFETY: per the contract above.
    let _ = catch_unwind(AssertUnwindSafe(|| unsafe { failure.store(err) }));
    status
}

/// The panic's message, as `panic!` formatted it.
pub(crate) fn panic_message(payload: Box<dyn Any + Send>) -> String {
    let text = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    };
    drop_payload(payload);
    format!("mcprouter panicked: {text}")
}

/// A payload's own `Drop` may panic too; that second payload is leaked rather than dropped.
fn drop_payload(payload: Box<dyn Any + Send>) {
    if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(again);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::{mcprouter_error_free, mcprouter_error_message, mcprouter_error_status};

    #[test]
    fn a_panic_becomes_a_status_and_an_error() {
        let mut err = std::ptr::null_mut();
        // SAFETY: `err` is a valid out-param.
        let st = unsafe { catch_status(&mut err, || panic!("boom {}", 7)) };
        assert_eq!(st, mcprouter_status::Panic);
        // SAFETY: `err` was just returned by the library.
        unsafe {
            assert_eq!(mcprouter_error_status(err), mcprouter_status::Panic);
            let msg = std::ffi::CStr::from_ptr(mcprouter_error_message(err)).to_str().unwrap().to_owned();
            assert_eq!(msg, "mcprouter panicked: boom 7");
            mcprouter_error_free(err);
        }
        assert_eq!(catch_default::<mcprouter_status>(|| panic!("static")), mcprouter_status::Panic);
        assert!(catch_default::<*const c_char>(|| panic!("x")).is_null());
    }

    #[test]
    fn a_failure_with_a_nul_byte_keeps_its_message() {
        let mut err = std::ptr::null_mut();
        // SAFETY: `err` is a valid out-param.
        let st = unsafe { catch_status(&mut err, || Err(Failure::new(mcprouter_status::InvalidArgument, "a\0b"))) };
        assert_eq!(st, mcprouter_status::InvalidArgument);
        // SAFETY: `err` was just returned by the library.
        unsafe {
            let msg = std::ffi::CStr::from_ptr(mcprouter_error_message(err)).to_str().unwrap().to_owned();
            assert_eq!(msg, "a\\0b");
            mcprouter_error_free(err);
        }
    }
}
