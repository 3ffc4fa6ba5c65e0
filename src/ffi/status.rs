//! `mcprouter_status`: the one return code of every fallible export.

use std::ffi::{c_char, c_uint};

use crate::Error;

/// What a call returned. Every fallible function returns one of these; anything but
/// `MCPROUTER_STATUS_OK` comes with an `mcprouter_error` when the caller passed `err`.
///
/// The values are fixed and the list is append-only: a code is never renumbered or reused,
/// and a retired code stays here as a comment. Treat a value you do not know as a failure.
///
/// A routed call that fails inside the router (unknown tool, backend down, circuit open,
/// queue full, deadline passed) is not a status: `mcprouter_session_handle` returns
/// `MCPROUTER_STATUS_OK` with a JSON-RPC error reply, because that is what an MCP client
/// expects. The codes for those conditions are reserved for calls that fail outside a reply.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum mcprouter_status {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullParameter = 1,
    /// An argument was not acceptable.
    InvalidArgument = 2,
    /// A string argument was not valid UTF-8.
    InvalidUtf8 = 3,
    /// The configuration is invalid (or its file could not be read); the message names the
    /// field and line.
    Config = 4,
    /// Nothing arrived within the allotted time (`mcprouter_session_next_event`).
    Timeout = 5,
    /// The library cannot take more work right now (too many asynchronous calls in flight).
    QueueFull = 6,
    /// Reserved: a backend's circuit breaker is open.
    CircuitOpen = 7,
    /// Reserved: no backend can serve the request.
    NoBackend = 8,
    /// An operating-system level failure: spawning a thread or process, reading a pipe.
    Transport = 9,
    /// Output that cannot cross the C boundary (for example a NUL byte inside a string).
    Protocol = 10,
    /// The session was closed or the router has shut down.
    Closed = 11,
    /// Reserved: a single-use object was used twice.
    AlreadyUsed = 12,
    /// The library panicked; the message says where. The handles stay usable, but the
    /// call's work may be half done.
    Panic = 13,
    // Next free value: 14. A retired code stays listed here, commented out, forever.
}

/// The `mcprouter_status` accepted by `mcprouter_status_str`, received as a plain integer so
/// that a value this version does not know (from a newer header, or any integer a binding
/// passes) is not undefined behaviour. `cbindgen.toml` renames it to `mcprouter_status` in the
/// header, where a C enum and an `unsigned int` are passed alike.
pub type mcprouter_status_arg = c_uint;

impl mcprouter_status {
    /// Every code, in value order.
    pub const ALL: [mcprouter_status; 14] = [
        Self::Ok,
        Self::NullParameter,
        Self::InvalidArgument,
        Self::InvalidUtf8,
        Self::Config,
        Self::Timeout,
        Self::QueueFull,
        Self::CircuitOpen,
        Self::NoBackend,
        Self::Transport,
        Self::Protocol,
        Self::Closed,
        Self::AlreadyUsed,
        Self::Panic,
    ];

    /// The code for a raw value, if this version knows it.
    pub fn from_raw(value: u32) -> Option<mcprouter_status> {
        Self::ALL.get(usize::try_from(value).ok()?).copied()
    }

    /// The code's name without the `MCPROUTER_STATUS_` prefix, NUL-terminated.
    pub(crate) fn name_nul(self) -> &'static str {
        match self {
            Self::Ok => "OK\0",
            Self::NullParameter => "NULL_PARAMETER\0",
            Self::InvalidArgument => "INVALID_ARGUMENT\0",
            Self::InvalidUtf8 => "INVALID_UTF8\0",
            Self::Config => "CONFIG\0",
            Self::Timeout => "TIMEOUT\0",
            Self::QueueFull => "QUEUE_FULL\0",
            Self::CircuitOpen => "CIRCUIT_OPEN\0",
            Self::NoBackend => "NO_BACKEND\0",
            Self::Transport => "TRANSPORT\0",
            Self::Protocol => "PROTOCOL\0",
            Self::Closed => "CLOSED\0",
            Self::AlreadyUsed => "ALREADY_USED\0",
            Self::Panic => "PANIC\0",
        }
    }

    /// The code's name without the `MCPROUTER_STATUS_` prefix.
    pub fn name(self) -> &'static str {
        let n = self.name_nul();
        &n[..n.len() - 1]
    }
}

impl From<&Error> for mcprouter_status {
    /// No wildcard arm: inside this crate the match over the `#[non_exhaustive]` error is
    /// exhaustive, so a new variant fails the build here until it gets a code.
    fn from(e: &Error) -> Self {
        match e {
            Error::Config(_) => Self::Config,
            Error::InvalidArgument(_) => Self::InvalidArgument,
            Error::Closed => Self::Closed,
            Error::Timeout => Self::Timeout,
            Error::Io(_) => Self::Transport,
        }
    }
}

/// Returns the name of a status code without its `MCPROUTER_STATUS_` prefix (for example
/// `"NULL_PARAMETER"`), or `"UNKNOWN"` for a value this version does not know.
///
/// The string is static: never free it. Callable from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn mcprouter_status_str(st: mcprouter_status_arg) -> *const c_char {
    ffi_boundary!({
        match mcprouter_status::from_raw(st) {
            Some(s) => s.name_nul().as_ptr().cast(),
            None => c"UNKNOWN".as_ptr(),
        }
    })
}
