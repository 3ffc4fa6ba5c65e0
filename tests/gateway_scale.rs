//! A thousand concurrent sessions on the HTTP gateway: every one is served, the gateway's
//! threads stay within their caps, memory grows by a bounded amount per session, and a
//! session opened before the crowd still works after it. Its own test binary: it counts
//! the process's threads, which another test's gateway would add to.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use mcprouter::Gateway;
use mcprouter::config::GatewaySettings;

const SESSIONS: usize = 1000;
const CLIENT_THREADS: usize = 10;
const MAX_CONNECTIONS: usize = 16;

fn post(addr: SocketAddr, session: Option<&str>, body: &str) -> (u16, Option<String>, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    let mut head = format!(
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/json, text/event-stream\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(id) = session {
        head.push_str(&format!("Mcp-Session-Id: {id}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP head in {raw:?}"));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    let sid = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("mcp-session-id"))
        .map(|(_, v)| v.trim().to_owned());
    (status, sid, body.to_owned())
}

fn open_session(addr: SocketAddr) -> String {
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let (status, sid, body) = post(addr, None, init);
    assert_eq!(status, 200, "{body}");
    let sid = sid.expect("a session id");
    let (status, _, _) = post(addr, Some(&sid), r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    assert_eq!(status, 202);
    sid
}

fn ping(addr: SocketAddr, sid: &str) {
    let (status, _, body) = post(addr, Some(sid), r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#);
    assert_eq!((status, body.as_str()), (200, r#"{"jsonrpc":"2.0","id":2,"result":{}}"#));
}

/// This process's threads whose name starts with `prefix`.
fn threads(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("a number")
}

#[test]
fn a_thousand_sessions_with_bounded_threads_and_memory() {
    let router = common::router("", &[common::backend("alpha", &[])]);
    let mut settings = GatewaySettings::from_yaml(&format!("max_connections: {MAX_CONNECTIONS}\n")).unwrap();
    settings.listen = Some("127.0.0.1:0".into());
    let g = Gateway::start(router.clone(), settings).expect("gateway starts");
    let a = g.addr();
    let first = open_session(a);
    ping(a, &first);
    let before = rss_kib();

    let opened: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..CLIENT_THREADS)
            .map(|_| {
                s.spawn(move || {
                    (0..SESSIONS / CLIENT_THREADS)
                        .map(|_| {
                            let sid = open_session(a);
                            ping(a, &sid);
                            sid
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("client thread")).collect()
    });
    assert_eq!(opened.len(), SESSIONS);
    assert_eq!(g.session_count(), SESSIONS + 1, "every session is open at once");

    // Threads: connection workers and event pumps each within max_connections (plus the
    // accept loop and the reaper), whatever the number of sessions.
    let gateway_threads = threads("mcprouter-gw");
    assert!(gateway_threads <= 2 * MAX_CONNECTIONS + 2, "{gateway_threads} gateway threads for {SESSIONS} sessions");
    assert!(g.worker_threads() <= MAX_CONNECTIONS && g.pump_threads() <= MAX_CONNECTIONS);
    // Pumps run only while a session is busy: with every client idle, they all end.
    while threads("mcprouter-gw-pump") > 0 {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Memory: a bounded amount per session (a router session, its queues, the HTTP state).
    let grown = rss_kib().saturating_sub(before);
    eprintln!("{SESSIONS} sessions: RSS grew by {grown} KiB ({} KiB per session)", grown / SESSIONS as u64);
    assert!(grown < 64 * 1024, "RSS grew by {grown} KiB for {SESSIONS} sessions");

    // The session opened before the crowd, and one from it, still work.
    ping(a, &first);
    ping(a, &opened[SESSIONS / 2]);
    g.shutdown(Duration::from_secs(1));
    assert_eq!(g.session_count(), 0);
    router.shutdown(Duration::from_secs(1));
}
