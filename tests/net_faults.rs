//! The project's test server over WebSocket, and its misbehaving HTTP modes: each bad peer
//! gives a clear error for the call involved, in bounded time, and disturbs nothing else.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[test]
fn websocket_backend_lists_calls_relays_and_comes_back_after_a_drop() {
    let ws = listen(&["--ws", "127.0.0.1:0", "--name", "wsrv"]);
    let r = router(
        "restart: {initial_backoff_ms: 100}",
        &[format!("  - name: w\n    transport: websocket\n    url: {}/mcp\n", ws.url), backend("local", &[])],
    );
    let s = r.session(None).unwrap();
    initialize(&s, json!({"sampling": {}}));
    assert_eq!(tool_text(&s, "w__whoami", json!({})).unwrap(), "wsrv");
    assert_eq!(tool_text(&s, "w__add", json!({"a": 2, "b": 40})).unwrap(), "42");
    std::thread::scope(|scope| {
        let t = scope.spawn(|| tool_text(&s, "w__sample", json!({"prompt": "hi"})));
        let req = wait_event(&s, "sampling/createMessage", Duration::from_secs(5)).expect("sampling relayed");
        let answer = json!({"jsonrpc": "2.0", "id": req["id"], "result": {
            "role": "assistant", "model": "m", "content": {"type": "text", "text": "over ws"}}});
        s.handle(&answer.to_string()).unwrap();
        assert!(t.join().unwrap().unwrap().contains("over ws"));
    });
    // The connection dies with the call in flight: the call fails at once, the backend is
    // reconnected through the restart path, the local backend never notices.
    let began = Instant::now();
    let err = tool_text(&s, "w__crash", json!({})).unwrap_err();
    assert_eq!(err.0, -32000, "{err:?}");
    assert!(began.elapsed() < Duration::from_secs(3));
    assert_eq!(tool_text(&s, "local__whoami", json!({})).unwrap(), "local");
    // The crash took the whole server process down; a new one on the same address is
    // picked up by the restart with backoff.
    let addr = ws.url.trim_start_matches("ws://").to_owned();
    drop(ws);
    let _again = listen(&["--ws", &addr, "--name", "wsrv2"]);
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        match tool_text(&s, "w__whoami", json!({})) {
            Ok(name) => break assert_eq!(name, "wsrv2"),
            Err(e) if Instant::now() < end => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("the websocket backend did not come back: {e:?}"),
        }
    }
    r.shutdown(Duration::from_secs(1));
}

#[test]
fn bad_http_peers_fail_only_their_calls_in_bounded_time() {
    let faults = ["close-mid-stream", "bad-sse", "endless-event", "status-500", "redirect-offsite", "never-answer"];
    let servers: Vec<Listening> =
        faults.iter().map(|f| listen(&["--http", "127.0.0.1:0", "--http-fault", f, "--name", f])).collect();
    let mut backends: Vec<String> = faults
        .iter()
        .zip(&servers)
        .map(|(f, l)| {
            format!(
                "  - name: {f}\n    transport: streamable_http\n    url: {}/mcp\n    timeout_ms: 3000\n    read_timeout_ms: 1500\n    max_response_bytes: 65536\n",
                l.url
            )
        })
        .collect();
    backends.push(backend("local", &[]));
    let r = router("", &backends);
    let s = r.session(None).unwrap();
    let expect = [
        ("close-mid-stream", "closed the response stream"),
        ("bad-sse", "malformed SSE event"),
        ("endless-event", "exceeded 65536 bytes"),
        ("status-500", "HTTP 500"),
        ("redirect-offsite", "another origin"),
        ("never-answer", "no answer"),
    ];
    std::thread::scope(|scope| {
        let calls: Vec<_> = expect
            .iter()
            .map(|(f, want)| {
                let s = &s;
                scope.spawn(move || {
                    let began = Instant::now();
                    let err = tool_text(s, &format!("{f}__fault"), json!({})).unwrap_err();
                    let took = began.elapsed();
                    assert!(err.1.contains(want), "{f}: {err:?}");
                    assert!(took < Duration::from_secs(5), "{f}: took {took:?}");
                })
            })
            .collect();
        // Meanwhile, everything else is served as usual.
        for _ in 0..20 {
            assert_eq!(tool_text(&s, "whoami", json!({})).unwrap(), "local");
        }
        for c in calls {
            c.join().unwrap();
        }
    });
    // Each bad peer is usable again for calls that do not trip it.
    for f in faults {
        assert_eq!(tool_text(&s, &format!("{f}__echo"), json!({})).unwrap(), format!("echo from {f}"));
    }
    r.shutdown(Duration::from_secs(1));
}

#[test]
fn an_http_server_that_goes_away_takes_the_backend_down_until_it_is_back() {
    let first = listen(&["--http", "127.0.0.1:0", "--http-fault", "status-500", "--name", "one"]);
    let addr = first.url.trim_start_matches("http://").to_owned();
    let r = router(
        "restart: {initial_backoff_ms: 100, max_backoff_ms: 200}",
        &[format!("  - name: h\n    transport: streamable_http\n    url: {}/mcp\n", first.url), backend("local", &[])],
    );
    let s = r.session(None).unwrap();
    assert_eq!(tool_text(&s, "h__echo", json!({})).unwrap(), "echo from one");
    drop(first);
    // Nothing listens: the call fails at once, the backend is down (its tools leave the
    // catalog), the other backend is untouched.
    let began = Instant::now();
    let err = tool_text(&s, "h__echo", json!({})).unwrap_err();
    assert_eq!(err.0, -32000, "{err:?}");
    assert!(err.1.contains("cannot connect"), "{err:?}");
    assert!(began.elapsed() < Duration::from_secs(2));
    assert_eq!(tool_text(&s, "whoami", json!({})).unwrap(), "local");
    // Back on the same address: the supervisor's restart reconnects and re-initializes.
    let _second = listen(&["--http", &addr, "--http-fault", "status-500", "--name", "two"]);
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        match tool_text(&s, "h__echo", json!({})) {
            Ok(text) => break assert_eq!(text, "echo from two"),
            Err(_) if Instant::now() < end => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("the HTTP backend did not come back: {e:?}"),
        }
    }
    r.shutdown(Duration::from_secs(1));
}

#[test]
fn shutdown_deletes_the_http_session() {
    let server = listen(&["--http", "127.0.0.1:0", "--http-fault", "status-500", "--name", "one"]);
    let r = router("", &[format!("  - name: h\n    transport: streamable_http\n    url: {}/mcp\n", server.url)]);
    let s = r.session(None).unwrap();
    assert_eq!(tool_text(&s, "echo", json!({})).unwrap(), "echo from one");
    r.shutdown(Duration::from_secs(1));
    let line = server.stderr.recv_timeout(Duration::from_secs(5)).expect("a DELETE");
    assert_eq!(line, "DELETE session fault-session");
}

#[test]
fn a_server_that_refuses_connections_for_a_while_is_probed_not_cooled_down() {
    // Issue #11 item 6: refusals are not a crash loop. The cooldown here is ten minutes; the
    // server comes back after more refusals than max_restarts allows, and must be used again
    // long before any cooldown could end.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let r = router(
        "restart: {initial_backoff_ms: 20, max_backoff_ms: 100, max_restarts: 2, window_ms: 60000, cooldown_ms: 600000}",
        &[format!("  - name: h\n    transport: streamable_http\n    url: http://{addr}/mcp\n"), backend("local", &[])],
    );
    let restarts = || r.status()["backends"][0]["restarts"].as_u64().unwrap_or(0);
    while restarts() < 5 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _server = listen(&["--http", &addr, "--http-fault", "status-500", "--name", "back"]);
    let s = r.session(None).unwrap();
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        match tool_text(&s, "h__echo", json!({})) {
            Ok(text) => break assert_eq!(text, "echo from back"),
            Err(_) if Instant::now() < end => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("the HTTP backend was not probed again: {e:?}"),
        }
    }
    r.shutdown(Duration::from_secs(1));
}
