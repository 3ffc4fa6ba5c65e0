//! Command-line options of `serve` and `check`, and the stderr logger they install.

use std::io::Write as _;
use std::str::FromStr;

use log::{Level, LevelFilter};
use mcprouter::Config;
use mcprouter::config::mcp_servers;
use mcprouter::logging::{self, Format, Logger, Sink};
use mcprouter::redact::Redactor;

/// Environment variable for the log level when `--log-level` is not given.
pub const LOG_ENV: &str = "MCPROUTER_LOG";

#[derive(Debug)]
pub struct Options {
    pub config: String,
    pub log_format: Format,
    pub log_level: LevelFilter,
    /// `serve` only: where to serve `GET /metrics` and `GET /status`.
    pub metrics_listen: Option<String>,
    /// `serve` only: allow a non-loopback `metrics_listen` address.
    pub metrics_listen_any: bool,
    /// `check` only: print `Router::status()` as JSON instead of the table.
    pub json: bool,
    /// `serve` only: serve Streamable HTTP on this address instead of stdio.
    pub http: Option<String>,
    /// `serve --http` only: the MCP endpoint's path (default: the config's, else `/mcp`).
    pub path: Option<String>,
    /// `serve --http` only: the legacy SSE stream's path (default: the config's, else `/sse`).
    pub sse_path: Option<String>,
    /// `serve --http` only: the legacy SSE message path (default: the config's, else `/messages`).
    pub messages_path: Option<String>,
    /// `serve --http` only: serve HTTPS with this certificate chain (PEM); needs `--tls-key`.
    pub tls_cert: Option<String>,
    /// `serve --http` only: the private key (PEM) of `--tls-cert`.
    pub tls_key: Option<String>,
    /// `serve` only: reload when the config file changes (SIGHUP always reloads).
    pub watch: bool,
    /// `serve` on stdio only: the client identity to serve as (overrides `serve_client`).
    pub client: Option<String>,
}

/// Parses the options of `serve` or `check` (`cmd`); `--flag value` and `--flag=value`.
pub fn parse(cmd: &str, args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        config: String::new(),
        log_format: Format::Text,
        log_level: env_level()?,
        metrics_listen: None,
        metrics_listen_any: false,
        json: false,
        http: None,
        path: None,
        sse_path: None,
        messages_path: None,
        tls_cert: None,
        tls_key: None,
        watch: false,
        client: None,
    };
    let mut config = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = || inline.clone().or_else(|| it.next().cloned()).ok_or_else(|| format!("{flag} needs a value"));
        match (flag, cmd) {
            ("--config" | "-c", _) => config = Some(value()?),
            ("--log-format", _) => o.log_format = parse_format(&value()?)?,
            ("--log-level", _) => o.log_level = parse_level(flag, &value()?)?,
            ("--metrics-listen", "serve") => o.metrics_listen = Some(value()?),
            ("--metrics-listen-any", "serve") if inline.is_none() => o.metrics_listen_any = true,
            ("--json", "check") if inline.is_none() => o.json = true,
            ("--http", "serve") => o.http = Some(value()?),
            ("--path", "serve") => o.path = Some(value()?),
            ("--sse-path", "serve") => o.sse_path = Some(value()?),
            ("--messages-path", "serve") => o.messages_path = Some(value()?),
            ("--tls-cert", "serve") => o.tls_cert = Some(value()?),
            ("--tls-key", "serve") => o.tls_key = Some(value()?),
            ("--watch", "serve") if inline.is_none() => o.watch = true,
            ("--client", "serve") => o.client = Some(value()?),
            _ => return Err(format!("unknown option {arg:?}")),
        }
    }
    o.config = config.ok_or("--config FILE is required")?;
    let http_only = [&o.path, &o.sse_path, &o.messages_path, &o.tls_cert, &o.tls_key];
    if http_only.iter().any(|f| f.is_some()) && o.http.is_none() {
        return Err("--path, --sse-path, --messages-path, --tls-cert and --tls-key need --http".into());
    }
    if o.tls_cert.is_some() != o.tls_key.is_some() {
        return Err("--tls-cert and --tls-key go together".into());
    }
    if o.client.is_some() && o.http.is_some() {
        return Err("--client is for stdio: the gateway knows its clients by their credentials".into());
    }
    Ok(o)
}

fn parse_format(v: &str) -> Result<Format, String> {
    match v {
        "json" => Ok(Format::Json),
        "text" => Ok(Format::Text),
        other => Err(format!("--log-format must be json or text, not {other:?}")),
    }
}

fn parse_level(what: &str, v: &str) -> Result<LevelFilter, String> {
    LevelFilter::from_str(v.trim())
        .map_err(|_| format!("{what} must be one of off, error, warn, info, debug, trace; not {v:?}"))
}

/// `MCPROUTER_LOG`, or `warn`. A value that is not a level is an error rather than
/// silently ignored: a user who set it expects to see more (or less) than the default.
pub fn env_level() -> Result<LevelFilter, String> {
    match std::env::var(LOG_ENV) {
        Ok(v) if !v.trim().is_empty() => parse_level(LOG_ENV, &v),
        _ => Ok(LevelFilter::Warn),
    }
}

/// Installs the process-wide logger: stderr only (stdout carries the protocol), every
/// record through `redactor`.
pub fn install_logger(format: Format, level: LevelFilter, redactor: Redactor) {
    // Fails only if a logger is already installed, which main never does twice.
    let _ = logging::install(Logger::new(level, Sink::Stderr(format), redactor));
}

/// Loads the config and installs the logger with the redactor it calls for (its secrets plus
/// `MCPROUTER_REDACT`). When the config cannot be loaded the logger still goes in, with the
/// `MCPROUTER_REDACT` values only, so the error is reported in the chosen format, redacted.
pub fn load_and_install(o: &Options, cmd: &str) -> Option<(Config, Redactor)> {
    match load(&o.config) {
        Ok((config, warnings)) => {
            let redactor = logging::redactor_for(&config);
            install_logger(o.log_format, o.log_level, redactor.clone());
            for w in warnings {
                log::warn!(target: "mcprouter", "{}: {w}", o.config);
            }
            Some((config, redactor))
        }
        Err(e) => {
            install_logger(o.log_format, o.log_level, Redactor::new(logging::env_redact_list(), Vec::new()));
            log::error!(target: "mcprouter", "mcprouter {cmd}: {e}");
            None
        }
    }
}

/// The config at `path`, YAML or an MCP host's `mcpServers` JSON (decided by content), with
/// the latter's warnings returned rather than logged: no logger is installed yet.
fn load(path: &str) -> mcprouter::Result<(Config, Vec<String>)> {
    let text = mcprouter::config::read_config_file(std::path::Path::new(path))?;
    if mcp_servers::is_mcp_servers(&text) {
        let import = mcp_servers::import(&text)?;
        return Ok((import.config, import.warnings));
    }
    Ok((Config::from_yaml(&text)?, Vec::new()))
}

/// Writes one line in the log format regardless of the level filter: for the few facts a
/// user must always see, such as the address a port-0 metrics listener got.
pub fn announce(format: Format, redactor: &Redactor, target: &str, msg: &str, fields: &[(&str, &str)]) {
    let mut line = match format {
        Format::Json => logging::json_line(Level::Info, target, msg, fields, redactor),
        Format::Text => logging::text_line(Level::Info, target, msg, fields, redactor),
    };
    line.push('\n');
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn flags() {
        let o = parse(
            "serve",
            &args(&[
                "--config",
                "f.yaml",
                "--log-format=json",
                "--log-level",
                "TRACE",
                "--metrics-listen",
                "127.0.0.1:0",
            ]),
        )
        .unwrap();
        assert_eq!(o.config, "f.yaml");
        assert_eq!(o.log_format, Format::Json);
        assert_eq!(o.log_level, LevelFilter::Trace);
        assert_eq!(o.metrics_listen.as_deref(), Some("127.0.0.1:0"));
        assert!(!o.metrics_listen_any && !o.json);
        assert!(parse("check", &args(&["-c", "f", "--json"])).unwrap().json);
        for bad in [
            &["--config", "f", "--json"][..],
            &["--config", "f", "--log-format", "xml"],
            &["--config", "f", "--log-level", "loud"],
            &["--config"],
            &["--log-level", "info"],
            &["--config", "f", "--metrics-listen-any=yes"],
        ] {
            assert!(parse("serve", &args(bad)).is_err(), "{bad:?}");
        }
        assert!(parse("check", &args(&["--config", "f", "--metrics-listen", "127.0.0.1:1"])).is_err());
        let o = parse("serve", &args(&["-c", "f", "--http", "127.0.0.1:0", "--path=/x"])).unwrap();
        assert_eq!((o.http.as_deref(), o.path.as_deref()), (Some("127.0.0.1:0"), Some("/x")));
        assert!(parse("serve", &args(&["-c", "f", "--path", "/x"])).is_err());
        assert!(parse("serve", &args(&["-c", "f", "--sse-path", "/x"])).is_err());
        let o = parse("serve", &args(&["-c", "f", "--http", "h:1", "--sse-path", "/e", "--messages-path=/m"])).unwrap();
        assert_eq!((o.sse_path.as_deref(), o.messages_path.as_deref()), (Some("/e"), Some("/m")));
        assert!(parse("serve", &args(&["-c", "f", "--http", "h:1", "--tls-cert", "c.pem"])).is_err());
        assert!(parse("serve", &args(&["-c", "f", "--tls-cert", "c.pem", "--tls-key", "k.pem"])).is_err());
        let o = parse("serve", &args(&["-c", "f", "--http", "h:1", "--tls-cert", "c", "--tls-key", "k"])).unwrap();
        assert_eq!((o.tls_cert.as_deref(), o.tls_key.as_deref()), (Some("c"), Some("k")));
        assert!(parse("check", &args(&["-c", "f", "--http", "127.0.0.1:0"])).is_err());
    }
}
