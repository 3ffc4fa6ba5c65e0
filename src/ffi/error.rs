//! `mcprouter_error`: the owned error a failed call hands back through its `err` out-param.
//!
//! There is no thread-local "last error": bindings such as koffi's `.async` run calls on
//! worker threads, so the error travels with the call that failed.

use std::ffi::{CString, c_char};

use super::handle::{BoxCastable, box_borrow, box_into_ptr, box_take};
use super::status::mcprouter_status;
use crate::Error;

/// An error returned by a failed call: a status code and a message.
///
/// Owned by the caller, who frees it with `mcprouter_error_free`. It is immutable, so it may
/// be read from any thread, and freed on any thread once no other thread reads it.
pub struct mcprouter_error {
    _private: [u8; 0],
}

/// The value behind a `mcprouter_error *`.
pub(crate) struct ErrorData {
    status: mcprouter_status,
    message: CString,
}

impl BoxCastable for mcprouter_error {
    type RustType = ErrorData;
}

/// Why a call failed, before it crosses to C.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub status: mcprouter_status,
    pub message: String,
}

impl Failure {
    pub(crate) fn new(status: mcprouter_status, message: impl Into<String>) -> Failure {
        Failure { status, message: message.into() }
    }

    pub(crate) fn null(what: &str) -> Failure {
        Failure::new(mcprouter_status::NullParameter, format!("{what} is NULL"))
    }

    /// Stores the failure in `*err` when `err` is not NULL.
    ///
    /// # Safety
    /// `err` is NULL or valid for writing one pointer.
    pub(crate) unsafe fn store(self, err: *mut *mut mcprouter_error) {
        if err.is_null() {
            return;
        }
        let data = Box::new(ErrorData { status: self.status, message: to_cstring_lossy(self.message) });
        // SAFETY: `err` is valid for writes per the contract above.
        unsafe { *err = box_into_ptr(data) };
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::new(mcprouter_status::from(&e), e.to_string())
    }
}

/// A message with interior NULs shown as `\0` rather than cut short.
pub(crate) fn to_cstring_lossy(message: String) -> CString {
    CString::new(message).unwrap_or_else(|e| {
        let text = String::from_utf8_lossy(&e.into_vec()).replace('\0', "\\0");
        CString::new(text).unwrap_or_default()
    })
}

/// Returns the error's status code, or `MCPROUTER_STATUS_NULL_PARAMETER` when `e` is NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mcprouter_error_status(e: *const mcprouter_error) -> mcprouter_status {
    ffi_boundary!({
        // SAFETY: `e` is NULL or a live error (caller's contract).
        match unsafe { box_borrow(e) } {
            Some(data) => data.status,
            None => mcprouter_status::NullParameter,
        }
    })
}

/// Returns the error's message: NUL-terminated UTF-8, borrowed from `e` and valid until
/// `mcprouter_error_free(e)`. Never NULL: a NULL `e` gives a static message saying so.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mcprouter_error_message(e: *const mcprouter_error) -> *const c_char {
    ffi_boundary!({
        // SAFETY: `e` is NULL or a live error (caller's contract).
        match unsafe { box_borrow(e) } {
            Some(data) => data.message.as_ptr(),
            None => c"mcprouter_error_message: the error is NULL".as_ptr(),
        }
    })
}

/// Frees an error returned through an `err` out-param. NULL is a no-op; freeing twice is
/// undefined behaviour.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mcprouter_error_free(e: *mut mcprouter_error) {
    ffi_boundary!({
        // SAFETY: `e` is NULL or an error the caller owns and gives up here.
        drop(unsafe { box_take(e) });
    })
}
