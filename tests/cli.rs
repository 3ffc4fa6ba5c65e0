//! The `mcprouter` command: `serve` over real pipes, `check`, and `demo`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

fn write_config(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mcprouter-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("config.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn serve_speaks_mcp_on_stdio_and_handles_calls_concurrently() {
    watchdog(240);
    let cfg = write_config("serve", &config("", &[backend("alpha", &[]), backend("beta", &[])]));
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&cfg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let v: Value = serde_json::from_str(&line).expect("stdout carries only JSON-RPC");
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    let mut send = |v: Value| writeln!(stdin, "{v}").unwrap();
    let next = || rx.recv_timeout(Duration::from_secs(10)).expect("a message from serve");

    send(
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"sampling":{}},"clientInfo":{"name":"t","version":"1"}}}),
    );
    let v = next();
    assert_eq!(v["result"]["protocolVersion"], "2025-06-18", "the client's supported version is echoed");
    send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}));
    // A tool call that needs the client's answer to a sampling request: serve must keep
    // reading stdin while the call is in flight.
    send(
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"alpha__sample","arguments":{"prompt":"q"}}}),
    );
    let req = next();
    assert_eq!(req["method"], "sampling/createMessage", "{req}");
    send(json!({"jsonrpc":"2.0","id":3,"method":"ping"}));
    assert_eq!(next()["id"], 3, "ping answered while the sampling call waits");
    send(
        json!({"jsonrpc":"2.0","id":req["id"],"result":{"role":"assistant","content":{"type":"text","text":"answer"},"model":"m"}}),
    );
    let v = next();
    assert_eq!(v["id"], 2);
    assert_eq!(v["result"]["content"][0]["text"], "answer");
    writeln!(stdin, "not json").unwrap();
    assert_eq!(next()["error"]["code"], -32700);
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success(), "serve exits cleanly on stdin EOF: {status}");
}

#[test]
fn check_prints_a_table_and_fails_when_a_backend_fails() {
    watchdog(240);
    let good = write_config("good", &config("", &[backend("alpha", &[])]));
    let out = Command::new(BIN).args(["check", "--config"]).arg(&good).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("alpha") && text.contains("ready") && text.contains("2025-11-25"), "{text}");
    let bad = write_config(
        "bad",
        &config("init_timeout_ms: 300", &[backend("alpha", &[]), backend("mute", &["--hang-initialize"])]),
    );
    let out = Command::new(BIN).args(["check", "--config"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("failed"));
    let broken = write_config("broken", "backends:\n  - name: x\n");
    let out = Command::new(BIN).args(["check", "--config"]).arg(&broken).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("backends[0].command"));
}

#[test]
fn check_shows_the_lists_a_backend_announced_at_start() {
    // Issue #11: the backend changes its tools while answering the first listing and says
    // so first; check must print the catalog with the change, not before it.
    watchdog(240);
    let cfg = write_config("settle", &config("", &[backend("alpha", &["--change-during-first-list"])]));
    let out = Command::new(BIN).args(["check", "--json", "--config"]).arg(&cfg).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["backends"][0]["tools"], TEST_SERVER_TOOLS + 1, "{status}");
    assert_eq!(status["router"]["catalog"]["refresh_pending"], false);
}

#[test]
fn the_demo_runs_with_nothing_installed() {
    watchdog(240);
    let out = Command::new(BIN).arg("demo").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    for needle in ["alpha__echo", "beta__echo", "timed out", "unavailable", "still here", "shut down"] {
        assert!(text.contains(needle), "demo output lacks {needle:?}:\n{text}");
    }
}
