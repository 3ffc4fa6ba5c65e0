//! The legacy HTTP+SSE transport (MCP 2024-11-05): one long GET event stream carries every
//! server message; the client POSTs each of its messages to the URL the stream's first
//! `endpoint` event names (same origin only).
//!
//! Threads: `-s` reads the stream and dispatches `message` events; `concurrency` workers
//! (`-h<i>`) POST. The stream ending is the backend ending: `on_exit` and a restart.

use std::io::BufReader;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crossbeam_channel::{Receiver, bounded};

use super::http::{NetSettings, describe, same_origin, status_error};
use super::life::{Connection, Link};
use super::sse::SseReader;
use super::{Backend, Command, Net, Reply};

struct Legacy {
    stopped: AtomicBool,
}

impl Net for Legacy {
    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
    }
}

/// Resolves the `endpoint` event's data as a URL reference against the stream URL (so
/// `//host/x` and `\\host` are other hosts, as a browser reads them); refuses another
/// origin. The URL returned is the one checked, in the serialization every client reads
/// the same way.
fn resolve(sse_url: &str, data: &str) -> Result<String, String> {
    let base = url::Url::parse(sse_url).map_err(|_| "bad url")?;
    let url =
        base.join(data.trim()).map_err(|e| format!("the server named an endpoint that is not a URL ({e}); refused"))?;
    if !same_origin(&base, &url) {
        return Err(format!("the server named an endpoint on another origin ({url}); refused"));
    }
    Ok(url.into())
}

/// Opens the event stream, waits for its `endpoint` event until `deadline`, and starts the
/// threads.
pub(super) fn spawn(backend: &Link, deadline: Instant) -> Result<Connection, String> {
    let settings = NetSettings::of(backend);
    let agent = settings.agent();
    let state = Arc::new(Legacy { stopped: AtomicBool::new(false) });
    let mut req = agent.get(&settings.url).header("Accept", "text/event-stream");
    for (k, v) in &settings.headers {
        req = req.header(k, v);
    }
    // The stream is the only way answers come: it may be silent for as long as calls take.
    let resp = req
        .config()
        .timeout_per_read(None)
        .timeout_per_call(None)
        .timeout_recv_response(Some(settings.read))
        .build()
        .call()
        .map_err(|e| describe(&e, &settings).to_string())?;
    if !resp.status().is_success() {
        return Err(status_error(resp, &settings).to_string());
    }
    let reader = BufReader::with_capacity(16 * 1024, resp.into_body().into_with_config().limit(u64::MAX).reader());
    let mut events = SseReader::new(reader, settings.max_bytes, None);
    let name = backend.name().to_owned();
    let (found_tx, found_rx) = bounded::<Result<String, String>>(1);
    let st = Arc::clone(&state);
    let url = settings.url.clone();
    let stream = backend.spawn_thread("-s", move |b| {
        let mut found = Some(found_tx);
        let why = loop {
            match events.next_event() {
                Ok(Some(ev)) if ev.kind == "endpoint" => {
                    if let Some(tx) = found.take() {
                        let _ = tx.send(resolve(&url, &ev.data));
                    }
                }
                Ok(Some(ev)) if ev.kind == "message" => {
                    if st.stopped.load(Ordering::Acquire) {
                        return;
                    }
                    b.dispatch(&ev.data);
                }
                Ok(Some(_)) => {}
                Ok(None) => break "the server closed its event stream".to_owned(),
                Err(e) => break e.to_string(),
            }
        };
        if let Some(tx) = found.take() {
            let _ = tx.send(Err(format!("no endpoint event: {why}")));
        }
        if !st.stopped.load(Ordering::Acquire) {
            b.on_exit(why);
        }
    })?;
    // Owned by the connection from here on: an error below drops it, which stops the stream.
    let (tx, rx) = bounded(backend.queue_capacity);
    let mut conn = Connection::new(tx);
    conn.net = Some(Arc::clone(&state) as Arc<dyn Net>);
    conn.threads.push(stream);
    let endpoint = match found_rx.recv_deadline(deadline) {
        Ok(r) => r?,
        Err(_) => return Err("the event stream sent no endpoint event in time".into()),
    };
    log::debug!(target: "mcprouter::backend", "[{name}] legacy SSE endpoint {endpoint}");
    let poster = Arc::new(Poster { settings, agent, endpoint, state });
    for i in 0..poster.settings.concurrency {
        let (p, rx) = (Arc::clone(&poster), rx.clone());
        let t = backend.spawn_thread(&format!("-h{i}"), move |b| p.work(b, &rx))?;
        conn.threads.push(t);
    }
    Ok(conn)
}

struct Poster {
    settings: NetSettings,
    agent: ureq::Agent,
    endpoint: String,
    state: Arc<Legacy>,
}

impl Poster {
    fn work(&self, backend: &Backend, rx: &Receiver<Command>) {
        while let Ok(cmd) = rx.recv() {
            if self.state.stopped.load(Ordering::Acquire) {
                break;
            }
            let call_id = match &cmd {
                Command::Call { id, .. } => Some(*id),
                _ => None,
            };
            let Some(line) = cmd.into_line() else { break };
            let mut req = self.agent.post(&self.endpoint).header("Content-Type", "application/json");
            for (k, v) in &self.settings.headers {
                req = req.header(k, v);
            }
            let failure = match req.send(line.as_str()) {
                Ok(resp) if resp.status().is_success() => {
                    let _ = resp.into_body().into_reader().take(64 * 1024).read_to_end(&mut Vec::new());
                    None
                }
                Ok(resp) => Some(status_error(resp, &self.settings).to_string()),
                Err(e) => Some(describe(&e, &self.settings).to_string()),
            };
            if let Some(why) = failure {
                match call_id {
                    Some(id) => backend.complete(id, Reply::Failed(why)),
                    None => {
                        log::warn!(target: "mcprouter::backend", "[{}] a message was not delivered: {why}", backend.name())
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::resolve;

    #[test]
    fn endpoints_resolve_against_the_stream_url_and_stay_on_its_origin() {
        let u = "http://127.0.0.1:5/sse";
        assert_eq!(resolve(u, "/message?sessionId=1").unwrap(), "http://127.0.0.1:5/message?sessionId=1");
        assert_eq!(resolve(u, "messages/?s=2").unwrap(), "http://127.0.0.1:5/messages/?s=2");
        assert_eq!(resolve("http://h/a/sse", "m").unwrap(), "http://h/a/m");
        assert_eq!(resolve(u, "http://127.0.0.1:5/m").unwrap(), "http://127.0.0.1:5/m");
        assert!(resolve(u, "http://evil.example/m").is_err());
        assert!(resolve(u, "http://127.0.0.1:6/m").is_err());
    }

    #[test]
    fn endpoints_on_other_hosts_are_refused_however_they_are_spelled() {
        let u = "http://good.example/sse";
        for evil in [
            "http://good.example@evil.example/m",
            "http://good.example:80@evil.example/m",
            "//evil.example/m",
            "///evil.example/m",
            "\\\\evil.example\\m",
            "/\\evil.example/m",
            "http:\\\\evil.example\\m",
            "http://evil.example%2fgood.example/m",
            "http://%65vil.example/m",
            "https://good.example/m",
            "ws://good.example/m",
            "http://good.example:8080/m",
            "javascript:alert(1)",
            "data:text/plain,x",
            "http://[::1]/m",
        ] {
            assert!(resolve(u, evil).is_err(), "{evil} was accepted");
        }
        assert!(resolve(u, "http://[bad/m").is_err());
        assert!(resolve("not a url", "/m").is_err());
    }

    #[test]
    fn endpoints_on_the_same_origin_resolve_to_the_url_that_was_checked() {
        let u = "http://good.example/a/sse?x=1";
        let same = |data: &str| resolve(u, data).unwrap_or_else(|e| panic!("{data}: {e}"));
        assert_eq!(same("http://good.example:80/m"), "http://good.example/m", "default port");
        assert_eq!(same("HTTP://GOOD.example/m"), "http://good.example/m", "case of scheme and host");
        assert_eq!(same("http://%67ood.example/m"), "http://good.example/m", "percent-encoded host");
        assert_eq!(same("//good.example/m"), "http://good.example/m");
        assert_eq!(same("  m?s=1  "), "http://good.example/a/m?s=1");
        assert_eq!(same("../b/../m"), "http://good.example/m");
        assert_eq!(same("?s=2"), "http://good.example/a/sse?s=2");
        assert_eq!(same("/m%2F..%2Fx"), "http://good.example/m%2F..%2Fx", "encoded slashes stay in the path");
        assert_eq!(resolve("https://h/sse", "https://h:443/m").unwrap(), "https://h/m");
        assert!(resolve("https://h/sse", "http://h:443/m").is_err());
        let v6 = "http://[::1]:5/sse";
        assert_eq!(resolve(v6, "http://[0:0::1]:5/m").unwrap(), "http://[::1]:5/m");
        assert!(resolve(v6, "http://[::2]:5/m").is_err());
        // Userinfo must match the configured URL's: a server cannot add or swap credentials.
        assert!(resolve("http://h/sse", "http://user@h/m").is_err());
        assert_eq!(resolve("http://u:p@h/sse", "/m").unwrap(), "http://u:p@h/m");
        assert!(resolve("http://u:p@h/sse", "http://h/m").is_err());
        assert!(resolve("http://u:p@h/sse", "http://u:q@h/m").is_err());
    }
}
