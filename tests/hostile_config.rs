//! Issue #10, hostile configs and secrets: numbers that would abort on allocation, config
//! errors that echo values, `${VAR}` values that inject YAML, config "files" that are
//! devices or FIFOs, and backend credentials leaking into client replies.

mod common;

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, call, watchdog};
use serde_json::json;

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mcprouter-hostile-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Runs `mcprouter check --config <path>`, failing the test if it takes longer than 20 s.
fn check(path: &std::path::Path) -> (bool, String) {
    let mut child = Command::new(BIN)
        .args(["check", "--config"])
        .arg(path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mcprouter check --config {} did not finish", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn huge_queue_capacity_is_a_config_error_not_an_abort() {
    watchdog(120);
    let e = mcprouter::Router::from_yaml("router:\n  queue_capacity: 100000000000\n").unwrap_err().to_string();
    assert!(e.contains("router.queue_capacity") && e.contains("line 2") && e.contains("1000000"), "{e}");
    let e = mcprouter::Router::from_yaml(
        "backends:\n  - name: h\n    url: http://127.0.0.1:9/mcp\n    concurrency: 18446744073709551615\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("backends[0].concurrency") && e.contains("line 4"), "{e}");
}

#[test]
fn config_type_errors_do_not_echo_the_value() {
    watchdog(120);
    let e = mcprouter::Router::from_yaml("router:\n  queue_capacity: \"sk-live-abc\"\n").unwrap_err().to_string();
    assert!(!e.contains("sk-live-abc"), "{e}");
    assert!(e.contains("router.queue_capacity") && e.contains("invalid type: string") && e.contains("line 2"), "{e}");
}

#[test]
fn env_values_cannot_add_backends_and_comments_are_not_expanded() {
    watchdog(120);
    // A unique variable name: nothing else in this test process reads it.
    let var = "MCPROUTER_HOSTILE_CONFIG_INJECT";
    // SAFETY (edition 2024 marks set_var unsafe): no other thread reads this variable.
    unsafe { std::env::set_var(var, "x\n  - name: evil\n    command: /bin/sh # trailing") };
    let y = format!(
        "# ${{MCPROUTER_UNSET_IN_A_COMMENT}} is only mentioned here\nrouter:\n  name: \"${{{var}}}\"\nbackends: []\n"
    );
    let c = mcprouter::config::Config::from_yaml(&y).unwrap();
    assert!(c.backends.is_empty(), "a variable's value added a backend");
    assert_eq!(c.router.name, "x\n  - name: evil\n    command: /bin/sh # trailing");
}

#[test]
fn check_refuses_dev_zero_and_fifos_at_once() {
    watchdog(120);
    let (ok, out) = check(std::path::Path::new("/dev/zero"));
    assert!(!ok && out.contains("not a regular file"), "{out}");
    let fifo = scratch("config.fifo");
    let _ = std::fs::remove_file(&fifo);
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let (ok, out) = check(&fifo);
    assert!(!ok && out.contains("not a regular file"), "{out}");
    let big = scratch("big.yaml");
    std::fs::write(&big, format!("router:\n  name: r\n{}", "#\n".repeat(3 * 1024 * 1024))).unwrap();
    let (ok, out) = check(&big);
    assert!(!ok && out.contains("limit"), "{out}");
    let _ = std::fs::remove_file(&fifo);
    let _ = std::fs::remove_file(&big);
}

#[test]
fn unreachable_backend_error_reaches_the_client_without_its_secrets() {
    watchdog(120);
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let y = format!(
        "router:\n  init_timeout_ms: 2000\n  request_timeout_ms: 2000\n  restart: {{enabled: false}}\n  \
         resource_routes:\n    - {{prefix: \"vault://\", backend: h}}\n\
         backends:\n  - name: h\n    transport: streamable_http\n    \
         url: http://user:s3cr3tpass@127.0.0.1:{port}/mcp?apikey=topsecret\n    \
         headers: {{X-Tenant-Key: hdrsecretvalue}}\n"
    );
    let r = mcprouter::Router::from_yaml(&y).unwrap();
    let s = r.session(None).unwrap();
    let init =
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}});
    call(&s, 1, "initialize", init);
    let v = call(&s, 2, "resources/read", json!({"uri": "vault://x"}));
    let text = v.to_string();
    assert_eq!(v["error"]["code"], -32000, "{text}");
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("\"h\"") && msg.contains("unavailable"), "{text}");
    for secret in ["s3cr3tpass", "topsecret", "hdrsecretvalue"] {
        assert!(!text.contains(secret), "{secret} leaked to the client: {text}");
    }
    r.shutdown(Duration::from_millis(200));
}

#[test]
fn unknown_pool_strategy_names_field_values_and_line_but_not_the_value() {
    watchdog(120);
    let y = "backends:\n  - name: a\n    command: x\npools:\n  - name: p\n    backends: [a]\n    strategy: \"sk-live-fastest\"\n";
    let e = mcprouter::Router::from_yaml(y).unwrap_err().to_string();
    assert!(e.contains("pools[0].strategy") && e.contains("line 7") && !e.contains("sk-live"), "{e}");
    for name in ["round_robin", "weighted_round_robin", "least_connections", "sticky"] {
        assert!(e.contains(name), "{e}");
    }
}
