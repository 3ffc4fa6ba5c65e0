//! The WebSocket transport on tungstenite (subprotocol `mcp`, one JSON-RPC message per text
//! frame). Not part of the MCP specification, but what the TypeScript SDK's WebSocket
//! client speaks.
//!
//! One thread per backend (`mcprouter-<name>-ws`) owns the socket: tungstenite blocks, so the
//! socket has a short read timeout and every timeout is an idle tick in which the thread
//! writes what the backend's channel holds, pings, and checks for silence. The connection
//! ending is the backend ending: `on_exit`, then the supervisor's restart with backoff.

use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError, bounded};
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

use super::http::NetSettings;
use super::life::{Connection, Link};
use super::{Backend, Command, Net};

/// How long a read waits before the thread looks at its channel again: the most a queued
/// message waits while the server is silent.
const TICK: Duration = Duration::from_millis(5);
/// Keep-alive: a ping after this much silence; no frame at all for three times it ends
/// the connection.
const PING_EVERY: Duration = Duration::from_secs(15);

struct Ws {
    stopped: AtomicBool,
}

impl Net for Ws {
    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
    }
}

fn is_idle(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if matches!(io.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
}

/// Connects, upgrades with subprotocol `mcp`, and starts the socket's thread.
pub(super) fn spawn(backend: &Link) -> Result<Connection, String> {
    let settings = NetSettings::of(backend);
    let url = settings.url.as_str();
    let parsed = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    if parsed.scheme() != "ws" {
        return Err(format!("{url}: only ws:// is supported by the WebSocket transport (no TLS)"));
    }
    // host:port only: the authority may carry userinfo, which must not reach an error.
    let authority = match (parsed.host_str(), parsed.port_or_known_default()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        _ => return Err(format!("{url}: names no host")),
    };
    let addr = parsed
        .socket_addrs(|| None)
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .into_iter()
        .next()
        .ok_or_else(|| format!("{authority} resolves to nothing"))?;
    let stream =
        TcpStream::connect_timeout(&addr, settings.connect).map_err(|e| format!("cannot connect to {url}: {e}"))?;
    let _ = stream.set_nodelay(true);
    stream.set_read_timeout(Some(settings.connect)).map_err(|e| e.to_string())?;
    let mut request = url.into_client_request().map_err(|e| format!("{url}: {e}"))?;
    let headers = request.headers_mut();
    headers.insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mcp"));
    for (k, v) in &settings.headers {
        let name = tungstenite::http::HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("header {k}: {e}"))?;
        let value = HeaderValue::from_str(v).map_err(|e| format!("header {k}: {e}"))?;
        headers.insert(name, value);
    }
    let config =
        WebSocketConfig::default().max_message_size(Some(settings.max_bytes)).max_frame_size(Some(settings.max_bytes));
    let (ws, response) =
        tungstenite::client::client_with_config(request, stream, Some(config)).map_err(|e| match e {
            tungstenite::HandshakeError::Interrupted(_) => format!("{url}: the WebSocket handshake timed out"),
            tungstenite::HandshakeError::Failure(e) => format!("{url}: WebSocket handshake failed: {e}"),
        })?;
    let chosen = response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok());
    if chosen != Some("mcp") {
        return Err(format!("{url}: the server did not accept the mcp subprotocol (it chose {chosen:?})"));
    }
    ws.get_ref().set_read_timeout(Some(TICK)).map_err(|e| e.to_string())?;
    let state = Arc::new(Ws { stopped: AtomicBool::new(false) });
    let (tx, rx) = bounded(backend.queue_capacity);
    let mut conn = Connection::new(tx);
    conn.net = Some(Arc::clone(&state) as Arc<dyn Net>);
    let t = backend.spawn_thread("-ws", move |b| {
        let why = serve(b, &state, ws, &rx);
        if !state.stopped.load(Ordering::Acquire) {
            b.on_exit(why);
        }
    })?;
    conn.threads.push(t);
    Ok(conn)
}

/// Runs the connection until it ends; returns why.
fn serve(backend: &Backend, state: &Ws, mut ws: WebSocket<TcpStream>, rx: &Receiver<Command>) -> String {
    let mut heard = Instant::now();
    let mut pinged = Instant::now();
    loop {
        let mut wrote = false;
        loop {
            match rx.try_recv().map(Command::into_line) {
                Ok(Some(line)) => {
                    if let Err(e) = ws.write(Message::text(line)) {
                        return format!("the WebSocket write failed: {e}");
                    }
                    wrote = true;
                }
                Ok(None) | Err(TryRecvError::Disconnected) => {
                    let _ = ws.close(None);
                    let _ = ws.flush();
                    return "the connection was closed".into();
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        if state.stopped.load(Ordering::Acquire) {
            let _ = ws.close(None);
            let _ = ws.flush();
            return "the connection was closed".into();
        }
        if wrote && let Err(e) = ws.flush() {
            return format!("the WebSocket write failed: {e}");
        }
        match ws.read() {
            Ok(Message::Text(text)) => {
                heard = Instant::now();
                backend.dispatch(text.as_str());
            }
            Ok(Message::Binary(_)) => {
                heard = Instant::now();
                log::warn!(target: "mcprouter::backend", "[{}] sent a binary frame; MCP uses text frames", backend.name());
            }
            Ok(Message::Close(frame)) => {
                return match frame {
                    Some(f) => format!("the server closed the WebSocket ({} {})", f.code, f.reason),
                    None => "the server closed the WebSocket".into(),
                };
            }
            Ok(_) => heard = Instant::now(),
            Err(e) if is_idle(&e) => {}
            Err(e) => return format!("the WebSocket broke: {e}"),
        }
        if heard.elapsed() > PING_EVERY && pinged.elapsed() > PING_EVERY {
            pinged = Instant::now();
            if let Err(e) = ws.send(Message::Ping(Vec::new().into()))
                && !is_idle(&e)
            {
                return format!("the WebSocket ping failed: {e}");
            }
        }
        if heard.elapsed() > PING_EVERY * 3 {
            return format!("the WebSocket server was silent for {} s, even to pings", (PING_EVERY * 3).as_secs());
        }
    }
}
