//! `mcprouter check --config .mcp.json`: the `mcpServers` JSON of MCP hosts as a config, with a
//! local (stdio) and a remote (streamable HTTP) test server.

mod common;

use std::process::Command;

use common::*;
use serde_json::{Value, json};

fn write(name: &str, doc: &Value) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mcprouter-mcpservers-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(".mcp.json");
    std::fs::write(&p, serde_json::to_string_pretty(doc).unwrap()).unwrap();
    p
}

#[test]
fn check_reads_a_project_mcp_json() {
    watchdog(240);
    let remote = listen(&["--http", "127.0.0.1:0", "--name", "remote"]);
    let file = write(
        "ok",
        &json!({"mcpServers": {
            // What Claude Code writes for a local server, plus host-specific keys.
            "local": {"type": "stdio", "command": BIN, "args": ["test-server", "--name", "${MCPS_NAME:-local}"],
                      "env": {"MCPS_TOKEN": "${env:MCPS_TOKEN}"}, "alwaysAllow": ["echo"]},
            "remote": {"type": "http", "url": format!("{}/mcp", remote.url),
                       "headers": {"Authorization": "Bearer ${MCPS_TOKEN}"}},
            "off": {"command": "/nonexistent/server", "disabled": true}
        }}),
    );
    let out = Command::new(BIN)
        .args(["check", "--json", "--config"])
        .arg(&file)
        .env("MCPS_TOKEN", "tok-123")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let backends = status["backends"].as_array().unwrap();
    let names: Vec<&str> = backends.iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["local", "remote"], "{status}");
    for b in backends {
        assert_eq!(b["state"], "ready", "{status}");
        assert!(b["tools"].as_u64().unwrap() > 0, "{status}");
    }
    // The warnings reach the log, naming keys and never the token.
    assert!(stderr.contains("mcpServers.off: disabled, left out"), "{stderr}");
    assert!(stderr.contains("ignoring fields the router does not use: alwaysAllow"), "{stderr}");
    assert!(!stderr.contains("tok-123"), "{stderr}");
}

#[test]
fn a_name_that_is_not_a_backend_name_is_refused() {
    watchdog(60);
    let file = write("badname", &json!({"mcpServers": {"my server": {"command": BIN, "args": ["test-server"]}}}));
    let out = Command::new(BIN).args(["check", "--config"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(r#"mcpServers."my server": not a usable backend name"#), "{stderr}");
}
