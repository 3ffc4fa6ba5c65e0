//! Embedding mcprouter in a Rust program: start a router over the project's test server,
//! speak MCP through a session, and read what the router sends on its own.
//!
//! `cargo build && cargo run --example embed -- target/debug/mcprouter`

use std::time::Duration;

fn main() -> Result<(), mcprouter::Error> {
    let server = std::env::args().nth(1).unwrap_or_else(|| "target/debug/mcprouter".into());
    let yaml = format!(
        "backends:\n  - name: alpha\n    command: {server:?}\n    args: [test-server, --name, alpha]\n  \
         - name: beta\n    command: {server:?}\n    args: [test-server, --name, beta]\n"
    );
    let router = mcprouter::Router::from_yaml(&yaml)?;
    let session = router.session(Some("embed-example"))?;
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"embed","version":"1"}}}"#;
    println!("{}", session.handle(init)?.unwrap_or_default());
    // `echo` is served by both backends, so the catalog calls them alpha__echo and beta__echo.
    let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"beta__echo","arguments":{"message":"hi"},"_meta":{"progressToken":"p1"}}}"#;
    println!("{}", session.handle(call)?.unwrap_or_default());
    let log = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"alpha__log","arguments":{"message":"a log line"}}}"#;
    println!("{}", session.handle(log)?.unwrap_or_default());
    while let Some(event) = session.next_event(Duration::from_millis(200))? {
        println!("event: {event}");
    }
    println!("{}", serde_json::to_string_pretty(&router.status()["router"]).unwrap_or_default());
    router.shutdown(Duration::from_secs(1));
    Ok(())
}
