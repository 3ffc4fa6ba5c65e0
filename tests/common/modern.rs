//! The 2026-07-28 fixture server (`tests/interop/fixtures/modern_server.py`, on the Python
//! SDK) as a backend: the interpreter that runs it and its config entry.

use std::process::{Command, Stdio};

pub const MODERN_SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/fixtures/modern_server.py");

/// The Python that imports the SDK (`MCPROUTER_PYTHON`, else the `.deps` venv); panics
/// with how to get it when it does not: a missing peer fails the test, never skips it.
pub fn python() -> String {
    let python = std::env::var("MCPROUTER_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/.deps/venv/bin/python").to_owned());
    let ok = Command::new(&python)
        .args(["-c", "import mcp.server.mcpserver"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "{python} cannot import the Python MCP SDK: run scripts/deps.sh (or set MCPROUTER_PYTHON)");
    python
}

/// A stdio backend entry running the fixture as `name`, with `era` (auto, legacy, modern).
pub fn modern_backend(name: &str, era: &str) -> String {
    format!(
        "  - name: {name}\n    command: {}\n    args: {}\n    era: {era}\n",
        serde_json::to_string(&python()).unwrap(),
        serde_json::to_string(&[MODERN_SERVER, name]).unwrap()
    )
}
