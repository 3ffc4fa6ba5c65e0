//! The `gateway:` section: the router's own Streamable HTTP front door
//! (`mcprouter serve --http`, [`crate::front::http::Gateway`]).
//!
//! Secrets never sit in the config: a bearer token is a reference (`env: NAME` or
//! `file: PATH`), read when the gateway starts.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use super::lines::Locator;
use super::{MAX_BYTES, MAX_DURATION_MS};
use crate::error::{Error, Result};

/// Upper bound of `gateway.max_connections` (one thread each).
pub const MAX_CONNECTIONS: usize = 4096;
/// Upper bound of `gateway.max_sessions`.
pub const MAX_SESSIONS: usize = 100_000;
/// Upper bound of `gateway.replay_events` (per session, kept in memory).
pub const MAX_REPLAY_EVENTS: usize = 10_000;

/// Where a bearer token is read from. Exactly one of the two.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{"required": ["env"]}, {"required": ["file"]}]))]
#[non_exhaustive]
pub struct TokenRef {
    /// The name of an environment variable holding the token.
    #[serde(default)]
    pub env: Option<String>,
    /// A file holding the token (one line; surrounding whitespace is ignored).
    #[serde(default)]
    pub file: Option<PathBuf>,
}

impl TokenRef {
    /// A token read from the environment variable `name`.
    pub fn env(name: impl Into<String>) -> TokenRef {
        TokenRef { env: Some(name.into()), file: None }
    }

    /// A token read from the file at `path`.
    pub fn file(path: impl Into<PathBuf>) -> TokenRef {
        TokenRef { env: None, file: Some(path.into()) }
    }

    /// Reads the token. The error names the reference, never the value.
    pub fn resolve(&self) -> Result<String> {
        let (value, what) = match (&self.env, &self.file) {
            (Some(name), None) => (std::env::var(name).ok(), format!("environment variable {name}")),
            (None, Some(path)) => {
                let text = super::read_config_file(path).map_err(|e| Error::Config(format!("gateway.tokens: {e}")))?;
                (Some(text), format!("file {}", path.display()))
            }
            _ => return Err(Error::Config("gateway.tokens: each entry needs exactly one of env or file".into())),
        };
        match value.map(|v| v.trim().to_owned()) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(Error::Config(format!("gateway.tokens: the {what} is unset or empty"))),
        }
    }
}

/// The gateway's certificate and key (`gateway.tls`): it serves HTTPS with them.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsFiles {
    /// The certificate chain, PEM, the server's own certificate first.
    pub cert: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl TlsFiles {
    /// The files at `cert` and `key`.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> TlsFiles {
        TlsFiles { cert: cert.into(), key: key.into() }
    }
}

/// Settings of the HTTP front door. Every field has a default, so `gateway: {}` serves
/// loopback on `/mcp` once a listen address is given (here or on the command line).
#[derive(Debug, Clone, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct GatewaySettings {
    /// `HOST:PORT` to listen on (port 0 picks a free one). `--http` overrides it.
    pub listen: Option<String>,
    /// The MCP endpoint's path. `--path` overrides it. Default `/mcp`.
    pub path: String,
    /// Serve the legacy HTTP+SSE transport (2024-11-05) too, for clients that still use
    /// it: `GET sse_path` opens a session's event stream, whose first event names the URL
    /// to POST messages to (`messages_path?sessionId=...`). Default true.
    pub legacy_sse: bool,
    /// The legacy transport's stream path. `--sse-path` overrides it. Default `/sse`.
    pub sse_path: String,
    /// The legacy transport's message path. `--messages-path` overrides it. Default
    /// `/messages`.
    pub messages_path: String,
    /// Legacy SSE streams open at once (each is a session, and holds a connection thread
    /// for as long as it is open); past it, `GET sse_path` gets 503. At most
    /// `max_connections - 1`, so POSTs always find a thread. Default: half of
    /// `max_connections`.
    pub max_sse_streams: Option<usize>,
    /// `Host` header names accepted (with or without a port); `*` accepts any. Empty: the
    /// loopback names `localhost`, `127.0.0.1`, `[::1]`.
    pub allowed_hosts: Vec<String>,
    /// `Origin`s accepted (`scheme://host[:port]`, or a bare host name for any scheme and
    /// port); `*` accepts any. Empty: loopback origins only. A request without `Origin`
    /// (not from a browser) is not checked.
    pub allowed_origins: Vec<String>,
    /// Origins given CORS headers (browser clients). Empty: CORS is off.
    pub cors_origins: Vec<String>,
    /// Serve HTTPS with this certificate and key (`--tls-cert`, `--tls-key`). Absent:
    /// plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Bearer tokens, as references. Empty: no authentication, and only a loopback
    /// address may be bound.
    pub tokens: Vec<TokenRef>,
    /// Connections served at once (one thread each); past it, 503. 1 to 4096, default 256.
    pub max_connections: usize,
    /// Sessions open at once; past it, `initialize` gets 503. 1 to 100 000, default 1024.
    pub max_sessions: usize,
    /// Largest request body; past it, 413. 1 KiB to 1 GiB, default 4 MiB.
    pub max_body_bytes: usize,
    /// A request's head and body must arrive within this (a slow client is cut off with
    /// 408). Default 10 s.
    pub read_timeout_ms: u64,
    /// A write that makes no progress for this long drops the connection. Default 10 s.
    pub write_timeout_ms: u64,
    /// An idle kept-alive connection is closed after this. Default 15 s.
    pub keep_alive_ms: u64,
    /// A session with no request and no open stream for this long expires (404
    /// afterwards). Default 30 min.
    pub session_idle_ms: u64,
    /// Events of a session's GET stream kept for `Last-Event-ID` resumption. 0 to
    /// 10 000, default 256.
    pub replay_events: usize,
    /// The SSE `retry` sent on GET streams. Default 1 s.
    pub sse_retry_ms: u64,
    /// A comment line is sent on an idle SSE stream this often (finds dead peers). Default 15 s.
    pub sse_keepalive_ms: u64,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            listen: None,
            path: "/mcp".into(),
            legacy_sse: true,
            sse_path: "/sse".into(),
            messages_path: "/messages".into(),
            max_sse_streams: None,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            cors_origins: Vec::new(),
            tls: None,
            tokens: Vec::new(),
            max_connections: 256,
            max_sessions: 1024,
            max_body_bytes: 4 * 1024 * 1024,
            read_timeout_ms: 10_000,
            write_timeout_ms: 10_000,
            keep_alive_ms: 15_000,
            session_idle_ms: 30 * 60 * 1000,
            replay_events: 256,
            sse_retry_ms: 1000,
            sse_keepalive_ms: 15_000,
        }
    }
}

impl GatewaySettings {
    /// Parses a `gateway:` section on its own (YAML or JSON, with or without the
    /// `gateway:` key), validated.
    pub fn from_yaml(text: &str) -> Result<GatewaySettings> {
        let tree: serde_norway::Value =
            serde_norway::from_str(text).map_err(|e| Error::Config(super::yaml::scrub(&e.to_string())))?;
        let tree = match tree {
            serde_norway::Value::Null => serde_norway::Value::Mapping(Default::default()),
            serde_norway::Value::Mapping(m) if m.len() == 1 && m.contains_key("gateway") => {
                m.get("gateway").cloned().unwrap_or_default()
            }
            other => other,
        };
        let s: GatewaySettings = super::yaml::from_tree(tree, text)?;
        s.validate()?;
        Ok(s)
    }

    /// Checks the ranges and shapes serde cannot.
    pub fn validate(&self) -> Result<()> {
        validate(self, Locator(None))
    }

    /// The cap on open legacy SSE streams (0 when the legacy transport is off).
    pub fn sse_stream_cap(&self) -> usize {
        if !self.legacy_sse {
            return 0;
        }
        self.max_sse_streams.unwrap_or(self.max_connections / 2).min(self.max_connections.saturating_sub(1))
    }
}

/// The checks of the `gateway` section; called from `Config::validate`.
pub(super) fn validate(g: &GatewaySettings, at: Locator<'_>) -> Result<()> {
    let err = |field: &str, why: &str| {
        Error::Config(format!("gateway.{field}: {why}{}", at.path(&format!("gateway.{field}"))))
    };
    let bad_path =
        |p: &str| !p.starts_with('/') || p.bytes().any(|b| b.is_ascii_whitespace() || b == b'?' || b == b'#');
    for (field, p) in [("path", &g.path), ("sse_path", &g.sse_path), ("messages_path", &g.messages_path)] {
        if bad_path(p) {
            return Err(err(field, "must start with / and hold no spaces, ? or #"));
        }
    }
    if g.legacy_sse {
        let paths = [&g.path, &g.sse_path, &g.messages_path];
        if paths[0] == paths[1] || paths[0] == paths[2] || paths[1] == paths[2] {
            return Err(err("sse_path", "path, sse_path and messages_path must differ"));
        }
        if let Some(n) = g.max_sse_streams
            && (n == 0 || n >= g.max_connections)
        {
            return Err(err("max_sse_streams", "must be between 1 and max_connections - 1 (POSTs need a thread too)"));
        }
    }
    if let Some(listen) = &g.listen
        && listen.parse::<std::net::SocketAddr>().is_err()
        && !listen.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
    {
        return Err(err("listen", "must be HOST:PORT"));
    }
    if let Some(t) = &g.tls {
        if t.cert.as_os_str().is_empty() {
            return Err(err("tls.cert", "must name a PEM file"));
        }
        if t.key.as_os_str().is_empty() {
            return Err(err("tls.key", "must name a PEM file"));
        }
    }
    for (i, t) in g.tokens.iter().enumerate() {
        match (&t.env, &t.file) {
            (Some(n), None) if !n.is_empty() => {}
            (None, Some(p)) if !p.as_os_str().is_empty() => {}
            _ => return Err(err(&format!("tokens[{i}]"), "needs exactly one of env: NAME or file: PATH")),
        }
    }
    for (field, list) in [
        ("allowed_hosts", &g.allowed_hosts),
        ("allowed_origins", &g.allowed_origins),
        ("cors_origins", &g.cors_origins),
    ] {
        if list.iter().any(|v| v.trim().is_empty() || v.bytes().any(|b| b.is_ascii_whitespace())) {
            return Err(err(field, "entries must be non-empty and hold no spaces"));
        }
    }
    let counts = [
        ("max_connections", g.max_connections as u64, 1, MAX_CONNECTIONS as u64),
        ("max_sessions", g.max_sessions as u64, 1, MAX_SESSIONS as u64),
        ("max_body_bytes", g.max_body_bytes as u64, 1024, MAX_BYTES),
        ("replay_events", g.replay_events as u64, 0, MAX_REPLAY_EVENTS as u64),
        ("read_timeout_ms", g.read_timeout_ms, 1, MAX_DURATION_MS),
        ("write_timeout_ms", g.write_timeout_ms, 1, MAX_DURATION_MS),
        ("keep_alive_ms", g.keep_alive_ms, 1, MAX_DURATION_MS),
        ("session_idle_ms", g.session_idle_ms, 1, MAX_DURATION_MS),
        ("sse_retry_ms", g.sse_retry_ms, 0, MAX_DURATION_MS),
        ("sse_keepalive_ms", g.sse_keepalive_ms, 1, MAX_DURATION_MS),
    ];
    for (field, v, min, max) in counts {
        if !(min..=max).contains(&v) {
            return Err(err(field, &format!("must be between {min} and {max}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_parsing() {
        let g = GatewaySettings::from_yaml("").unwrap();
        assert_eq!(g, GatewaySettings::default());
        let g = GatewaySettings::from_yaml(
            "gateway:\n  listen: 127.0.0.1:0\n  path: /x\n  tokens: [{env: T}, {file: /t}]\n",
        )
        .unwrap();
        assert_eq!(g.path, "/x");
        assert_eq!(g.tokens, vec![TokenRef::env("T"), TokenRef::file("/t")]);
    }

    #[test]
    fn inline_tokens_and_bad_values_are_refused() {
        for bad in [
            "tokens: [abc]",
            "tokens: [{token: abc}]",
            "tokens: [{env: A, file: /b}]",
            "tokens: [{}]",
            "tls: {cert: /c}",
            "tls: {cert: '', key: /k}",
            "path: mcp",
            "sse_path: /mcp",
            "messages_path: sse",
            "max_sse_streams: 256",
            "listen: nowhere",
            "max_connections: 0",
            "max_body_bytes: 10",
            "unknown: 1",
        ] {
            let e = GatewaySettings::from_yaml(bad).unwrap_err().to_string();
            assert!(!e.contains("abc"), "{bad}: {e}");
        }
    }

    #[test]
    fn tokens_resolve_from_a_file() {
        let dir = std::env::temp_dir().join(format!("mcprouter-gw-token-{}", std::process::id()));
        std::fs::write(&dir, "s3cret\n").unwrap();
        assert_eq!(TokenRef::file(&dir).resolve().unwrap(), "s3cret");
        std::fs::write(&dir, "\n").unwrap();
        assert!(TokenRef::file(&dir).resolve().is_err());
        let _ = std::fs::remove_file(&dir);
        assert!(TokenRef::env("MCPROUTER_SURELY_UNSET_TOKEN_VAR").resolve().is_err());
    }
}
