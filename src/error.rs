//! The library's one error type.

use std::fmt;

/// Everything that can go wrong at the library's surface.
///
/// Failures of a single routed call are not `Error`s: they become JSON-RPC error replies,
/// because that is what an MCP client expects. `Error` is for the router itself: a bad
/// config, a closed session, a router that has shut down.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid; the message names the field path and line.
    Config(String),
    /// An argument was not acceptable (for example a message that is not UTF-8).
    InvalidArgument(String),
    /// The session was closed or the router has shut down.
    Closed,
    /// Nothing arrived within the allotted time.
    Timeout,
    /// An operating-system level failure (spawning a process, reading a file).
    Io(String),
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(m) => write!(f, "invalid configuration: {m}"),
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Error::Closed => f.write_str("the session or router is closed"),
            Error::Timeout => f.write_str("timed out"),
            Error::Io(m) => write!(f, "i/o error: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_small_and_thread_safe() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Error>();
        assert!(std::mem::size_of::<Error>() <= 32);
    }
}
