//! Network backends end to end: `@modelcontextprotocol/server-everything` (npm, installed by
//! `scripts/deps.sh` into `.deps/`) in its Streamable HTTP and legacy SSE modes, bound to
//! 127.0.0.1 on ephemeral ports, used as backends of one router.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// A server-everything process, killed on drop.
struct Everything {
    child: Child,
    port: u16,
}

impl Drop for Everything {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts server-everything in `mode` (`streamableHttp` or `sse`). A missing server fails
/// the test, whatever the environment says: a skip would read as a pass.
fn everything(mode: &str) -> Everything {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let script = root.join(".deps/node/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(script.exists(), "server-everything is missing ({}): run scripts/deps.sh", script.display());
    everything_on(&script, mode, free_port())
}

/// Starts server-everything's `script` in `mode` on `port` and waits until it listens.
fn everything_on(script: &std::path::Path, mode: &str, port: u16) -> Everything {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let child = Command::new("node")
        .arg("--require")
        .arg(root.join("tests/support/loopback.cjs"))
        .arg(script)
        .arg(mode)
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("node starts");
    let server = Everything { child, port };
    let end = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "server-everything {mode} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

fn net_backend(name: &str, transport: &str, url: &str) -> String {
    format!("  - name: {name}\n    transport: {transport}\n    url: {url}\n    headers: {{X-Test: mcprouter}}\n")
}

/// Lists, calls, progress and the sampling relay through one backend of `s`.
fn exercise(s: &mcprouter::Session, prefix: &str) {
    // server-everything registers some tools just after initialization (list_changed).
    let want = format!("{prefix}trigger-sampling-request");
    let end = Instant::now() + Duration::from_secs(10);
    let mut names = tool_names(s);
    while !names.contains(&want) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
        names = tool_names(s);
    }
    assert!(names.contains(&want) && names.contains(&format!("{prefix}echo")), "{names:?}");
    assert_eq!(tool_text(s, &format!("{prefix}echo"), json!({"message": "hi"})).unwrap(), "Echo: hi");
    let sum = tool_text(s, &format!("{prefix}get-sum"), json!({"a": 2, "b": 40})).unwrap();
    assert!(sum.contains("42"), "{sum}");

    std::thread::scope(|scope| {
        let long = scope.spawn(|| {
            call(
                s,
                20,
                "tools/call",
                json!({"name": format!("{prefix}trigger-long-running-operation"),
                       "arguments": {"duration": 1, "steps": 3},
                       "_meta": {"progressToken": "tok-1"}}),
            )
        });
        let mut seen = Vec::new();
        let end = Instant::now() + Duration::from_secs(10);
        while seen.len() < 3 && Instant::now() < end {
            if let Ok(Some(ev)) = s.next_event(Duration::from_millis(100)) {
                let v: Value = serde_json::from_str(&ev).unwrap();
                if v["method"] == "notifications/progress" {
                    assert_eq!(v["params"]["progressToken"], "tok-1", "the client's own token comes back: {v}");
                    seen.push(v["params"]["progress"].clone());
                }
            }
        }
        let v = long.join().unwrap();
        assert!(v["result"]["content"][0]["text"].as_str().unwrap().contains("completed"), "{v}");
        assert_eq!(seen.len(), 3, "three progress events: {seen:?}");
    });

    std::thread::scope(|scope| {
        let sampled = scope.spawn(|| {
            call(
                s,
                21,
                "tools/call",
                json!({"name": format!("{prefix}trigger-sampling-request"), "arguments": {"prompt": "say hi", "maxTokens": 5}}),
            )
        });
        let Some(req) = wait_event(s, "sampling/createMessage", Duration::from_secs(10)) else {
            panic!("no sampling request from {prefix}; the call ended with {}", sampled.join().unwrap());
        };
        let answer = json!({"jsonrpc": "2.0", "id": req["id"], "result": {
            "role": "assistant", "model": "test-model", "content": {"type": "text", "text": "sampled hi"}}});
        assert!(s.handle(&answer.to_string()).unwrap().is_none());
        let v = sampled.join().unwrap();
        assert!(v.to_string().contains("sampled hi"), "{v}");
    });
}

#[test]
fn streamable_http_and_legacy_sse_backends_serve_everything() {
    let (http, sse) = (everything("streamableHttp"), everything("sse"));
    let r = router(
        "",
        &[
            net_backend("h", "streamable_http", &format!("http://127.0.0.1:{}/mcp", http.port)),
            net_backend("s", "sse", &format!("http://127.0.0.1:{}/sse", sse.port)),
            // No transport: Streamable HTTP is tried first, the 404 sends it to legacy SSE.
            format!("  - name: a\n    url: http://127.0.0.1:{}/sse\n", sse.port),
        ],
    );
    let s = r.session(None).unwrap();
    initialize(&s, json!({"sampling": {}}));
    let status = r.status();
    for b in status["backends"].as_array().unwrap() {
        assert_eq!(b["state"], "ready", "{b}");
    }
    exercise(&s, "h__");
    exercise(&s, "s__");
    assert_eq!(tool_text(&s, "a__echo", json!({"message": "auto"})).unwrap(), "Echo: auto");
    r.shutdown(Duration::from_secs(2));
}

#[test]
fn a_restarted_http_server_is_initialized_again_transparently() {
    let mut http = everything("streamableHttp");
    let port = http.port;
    let r = router("", &[net_backend("h", "streamable_http", &format!("http://127.0.0.1:{port}/mcp"))]);
    let s = r.session(None).unwrap();
    assert_eq!(tool_text(&s, "echo", json!({"message": "one"})).unwrap(), "Echo: one");
    // Let the refresh that follows initialization (list_changed) finish first: a call the
    // router makes while nothing listens would rightly take the backend down.
    let end = Instant::now() + Duration::from_secs(10);
    while !tool_names(&s).contains(&"trigger-sampling-request".to_owned()) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    // A new server process on the same port knows nothing of the session: 404, then the
    // router initializes again and resends the call once.
    let _ = http.child.kill();
    let _ = http.child.wait();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let script = root.join(".deps/node/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    let _again = everything_on(&script, "streamableHttp", port);
    assert_eq!(tool_text(&s, "echo", json!({"message": "two"})).unwrap(), "Echo: two");
    r.shutdown(Duration::from_secs(2));
}

#[test]
fn the_first_catalog_of_an_http_backend_is_fetched_after_initialized() {
    // Issue #11 item 2: HTTP workers send in parallel, and the catalog fetch used to overtake
    // `notifications/initialized`; server-everything then listed only the tools it has before
    // initialization. The first catalog must already hold what it registers on `initialized`.
    let http = everything("streamableHttp");
    for round in 0..5 {
        let r = router("", &[net_backend("h", "streamable_http", &format!("http://127.0.0.1:{}/mcp", http.port))]);
        let s = r.session(None).unwrap();
        let names = tool_names(&s);
        assert!(names.contains(&"trigger-sampling-request".to_owned()), "round {round}: {names:?}");
        r.shutdown(Duration::from_secs(2));
    }
}
