//! Strings across the boundary: borrowed NUL-terminated UTF-8 inputs, owned outputs freed
//! with `mcprouter_string_free`, and `mcprouter_str` views for callbacks.

use std::ffi::{CStr, CString, c_char};
use std::marker::PhantomData;

use super::error::Failure;
use super::status::mcprouter_status;

/// A borrowed UTF-8 string view handed to callbacks: `len` bytes at `data`, **not**
/// NUL-terminated. Valid only while the callback runs: copy it to keep it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mcprouter_str<'a> {
    /// The first byte; never NULL (an empty string points at a static empty buffer).
    pub data: *const c_char,
    /// The length in bytes.
    pub len: usize,
    _borrow: PhantomData<&'a str>,
}

impl<'a> mcprouter_str<'a> {
    /// A view of `s` that lives as long as `s`.
    pub fn new(s: &'a str) -> mcprouter_str<'a> {
        mcprouter_str { data: s.as_ptr().cast(), len: s.len(), _borrow: PhantomData }
    }
}

/// Reads a borrowed input string.
///
/// # Safety
/// `ptr` is NULL or points at a NUL-terminated string that stays unchanged during the call.
pub(crate) unsafe fn input_str<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: per the contract above.
    let bytes = unsafe { CStr::from_ptr(ptr) };
    bytes.to_str().map_err(|e| {
        Failure::new(
            mcprouter_status::InvalidUtf8,
            format!("{what} is not valid UTF-8 (bad byte at offset {})", e.valid_up_to()),
        )
    })
}

/// Like [`input_str`], but NULL is allowed and gives `None`.
///
/// # Safety
/// As for [`input_str`].
pub(crate) unsafe fn input_opt_str<'a>(ptr: *const c_char, what: &str) -> Result<Option<&'a str>, Failure> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: per the contract above.
    unsafe { input_str(ptr, what) }.map(Some)
}

/// Turns a string into an owned C string for the caller, freed by `mcprouter_string_free`.
pub(crate) fn output_string(s: String, what: &str) -> Result<*mut c_char, Failure> {
    CString::new(s).map(CString::into_raw).map_err(|e| {
        Failure::new(mcprouter_status::Protocol, format!("{what} contains a NUL byte at offset {}", e.nul_position()))
    })
}

/// An out-param: checked for NULL, cleared on entry, written once on success.
pub(crate) struct OutParam<T>(*mut *mut T);

impl<T> OutParam<T> {
    /// Clears `*out` (so it reads NULL whatever happens next) and checks it is not NULL.
    ///
    /// # Safety
    /// `out` is NULL or valid for writing one pointer.
    pub(crate) unsafe fn new(out: *mut *mut T, what: &str) -> Result<OutParam<T>, Failure> {
        if out.is_null() {
            return Err(Failure::null(what));
        }
        // SAFETY: per the contract above.
        unsafe { *out = std::ptr::null_mut() };
        Ok(OutParam(out))
    }

    /// Hands `value` to the caller.
    pub(crate) fn write(self, value: *mut T) {
        // SAFETY: checked non-NULL and writable when `self` was made.
        unsafe { *self.0 = value };
    }
}

/// Frees a string returned by this library (`reply_out`, `event_out`, `text_out`,
/// `json_out`, or the reply of `mcprouter_session_handle_async`). NULL is a no-op; any other
/// pointer, or freeing twice, is undefined behaviour.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mcprouter_string_free(s: *mut c_char) {
    ffi_boundary!({
        if !s.is_null() {
            // SAFETY: `s` came from `CString::into_raw` in `output_string`.
            drop(unsafe { CString::from_raw(s) });
        }
    })
}

/// Returns the library's version, `"MAJOR.MINOR.PATCH"`, equal to `MCPROUTER_VERSION` in the
/// header it was built with. Static: never free it.
#[unsafe(no_mangle)]
pub extern "C" fn mcprouter_version() -> *const c_char {
    ffi_boundary!({ concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast() })
}
