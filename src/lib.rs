//! mcprouter: an embeddable router for Model Context Protocol traffic.
//!
//! A [`Router`] starts and supervises a fleet of MCP servers (backends) and merges their
//! tools, prompts and resources into one catalog. Each MCP client is a [`Session`]: hand it
//! one JSON-RPC message at a time with [`Session::handle`] and it answers as a single MCP
//! server would, routing each call to the backend that owns it.
//!
//! ```no_run
//! let router = mcprouter::Router::from_yaml("backends:\n  - name: fs\n    command: mcp-server-filesystem\n    args: [/tmp]\n")?;
//! let session = router.session(None)?;
//! let reply = session.handle(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)?;
//! println!("{}", reply.unwrap_or_default());
//! # Ok::<(), mcprouter::Error>(())
//! ```
#![deny(missing_docs)]
#![deny(unsafe_code)]

/// Internal modules: private, except to the crate's own tests, loom models and benches,
/// which build it with the `internals` feature.
macro_rules! internal {
    ($($name:ident),* $(,)?) => {
        $(
            #[cfg(feature = "internals")]
            #[doc(hidden)]
            #[allow(missing_docs)]
            pub mod $name;
            #[cfg(not(feature = "internals"))]
            #[allow(dead_code, unused_imports)]
            mod $name;
        )*
    };
}

internal!(budget, clock, framing, generation, jsonrpc, limits, metrics, pending, policy, supervisor, sync);

mod backend;
pub mod balance;
pub mod breaker;
mod catalog;
pub mod config;
mod core;
mod era;
mod error;
#[allow(unsafe_code)]
#[allow(non_camel_case_types)]
pub mod ffi;
mod fnv;
pub mod front;
mod guard;
mod hub;
pub mod logging;
mod method;
mod mrtr;
pub mod redact;
mod router;
mod session;
mod upkeep;

pub use config::Config;
pub use error::{Error, Result};
pub use front::http::Gateway;
pub use router::Router;
pub use session::{MAX_BATCH, Session};

#[cfg(test)]
mod tests {
    #[test]
    fn public_types_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<crate::Router>();
        check::<crate::Session>();
        check::<crate::Error>();
        check::<crate::Gateway>();
    }
}
