//! The `mcpServers` JSON format that Claude Desktop, Claude Code (`.mcp.json`), Cursor and
//! most MCP hosts use, read as a router config:
//!
//! ```json
//! {"mcpServers": {
//!   "files": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"],
//!             "env": {"DEBUG": "1"}},
//!   "docs":  {"type": "http", "url": "https://example.com/mcp",
//!             "headers": {"Authorization": "Bearer ${DOCS_TOKEN}"}}
//! }}
//! ```
//!
//! A file is one when its top level has an `mcpServers` key; the loader decides by content,
//! not by file name, since JSON is also YAML. Each entry becomes a backend named after its
//! key, in file order: stdio with `command` (`args`, `env`, `cwd`), a network backend with
//! `url` (`headers`), its transport taken from `type` (or `transport`) when given. Router
//! settings keep their defaults.
//!
//! Variables are expanded the way those hosts do it: `${VAR}`, `${VAR:-default}` and
//! Cursor's `${env:VAR}`, in `command`, `args`, `env`, `cwd`, `url` and `headers`; any other
//! `$` is literal (no `$$` escape, unlike the YAML format). An entry with `"disabled": true`
//! (Cline, Roo, Windsurf) or `"enabled": false` is left out. Fields no host-neutral meaning
//! is known for (`alwaysAllow`, `autoApprove`, `timeout`, `envFile`…) and other top-level
//! keys are reported as warnings, never failures: host-specific keys are common.
//!
//! As with YAML, errors name the entry and field (and the line of the entry), never a value.
//!
//! [`to_yaml`] writes such a file as the router's YAML (`mcprouter import`), keeping its
//! variables for the YAML format to expand.

mod to_yaml;

use serde_json::{Map, Value};

pub use to_yaml::{YamlImport, to_yaml};

use super::{Config, yaml::scrub};
use crate::error::{Error, Result};

/// The top-level key that marks the format.
pub const KEY: &str = "mcpServers";

/// Fields of an entry that the router understands.
const KNOWN_FIELDS: [&str; 10] =
    ["command", "args", "env", "cwd", "url", "type", "transport", "headers", "disabled", "enabled"];

/// What reading an `mcpServers` file produced.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Import {
    /// The validated config, one backend per enabled entry.
    pub config: Config,
    /// Things left out (unknown fields, disabled entries, other top-level keys), one
    /// sentence each, naming keys only.
    pub warnings: Vec<String>,
}

impl Config {
    /// Parses, expands and validates a file in the `mcpServers` format (see
    /// [`mcp_servers`](crate::config::mcp_servers)). Warnings go to the `log` crate
    /// (target `mcprouter::config`); [`import`] returns them instead.
    ///
    /// [`Config::from_yaml`] and [`Config::from_file`] also accept this format, detected
    /// by its top-level `mcpServers` key.
    pub fn from_mcp_servers_json(text: &str) -> Result<Config> {
        import(text).map(Import::logged)
    }
}

impl Import {
    /// Logs the warnings and returns the config.
    pub(crate) fn logged(self) -> Config {
        for w in &self.warnings {
            log::warn!(target: "mcprouter::config", "{w}");
        }
        self.config
    }
}

/// Whether `text` is an `mcpServers` document: a JSON (or YAML) mapping with that top-level key.
pub fn is_mcp_servers(text: &str) -> bool {
    // The cheap test first: almost every YAML config never mentions the key.
    text.contains(KEY) && document(text).is_some_and(|d| d.get(KEY).is_some())
}

/// Reads an `mcpServers` document, with `${VAR}` taken from the environment.
pub fn import(text: &str) -> Result<Import> {
    import_with_env(text, &|k| std::env::var(k).ok())
}

/// [`import`] with variables looked up in `lookup`.
pub(crate) fn import_with_env(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Import> {
    let (servers, mut warnings) = servers(text)?;
    let mut backends = Vec::new();
    let mut names = Vec::new();
    let expand = |s: &str| expand(s, lookup);
    for (name, entry) in &servers {
        let at = Entry { name, line: line_of_entry(text, name) };
        if let Converted::Enabled(b) = backend(&at, entry, &expand, &mut warnings)? {
            backends.push(b);
            names.push(name.as_str());
        }
    }
    let tree = serde_json::json!({ "backends": backends });
    let config: Config =
        serde_json::from_value(tree).map_err(|e| Error::Config(format!("{KEY}: {}", scrub(&e.to_string()))))?;
    // Validation speaks of `backends[i]`; the user wrote `mcpServers.<name>`.
    config.validate().map_err(|e| match e {
        Error::Config(msg) => Error::Config(rename_backend_paths(&msg, &names, text)),
        other => other,
    })?;
    Ok(Import { config, warnings })
}

/// The `mcpServers` object of a document, with warnings about the other top-level keys.
fn servers(text: &str) -> Result<(Map<String, Value>, Vec<String>)> {
    let doc = match serde_json::from_str::<Value>(text) {
        Ok(v) => v,
        // Not JSON: maybe the same structure written as YAML. If that fails too, the JSON
        // error (with its line and column) is the useful one.
        Err(json_err) => serde_norway::from_str::<Value>(text)
            .map_err(|_| Error::Config(format!("{KEY} file: not valid JSON: {}", scrub(&json_err.to_string()))))?,
    };
    let Value::Object(mut top) = doc else {
        return Err(Error::Config(format!("{KEY} file: the document must be a JSON object")));
    };
    let mut warnings = Vec::new();
    let others: Vec<&str> = top.keys().map(String::as_str).filter(|k| *k != KEY).collect();
    if !others.is_empty() {
        warnings.push(format!("ignoring top-level keys other than {KEY}: {}", others.join(", ")));
    }
    match top.remove(KEY) {
        Some(Value::Object(m)) => Ok((m, warnings)),
        Some(Value::Null) => Ok((Map::new(), warnings)),
        Some(_) => Err(Error::Config(format!("{KEY}: must be an object of named servers"))),
        None => Err(Error::Config(format!("no top-level {KEY} key"))),
    }
}

/// The document as a generic value: JSON, else YAML.
fn document(text: &str) -> Option<Value> {
    serde_json::from_str(text).ok().or_else(|| serde_norway::from_str(text).ok())
}

/// Where an entry is, for messages.
struct Entry<'a> {
    name: &'a str,
    line: Option<usize>,
}

impl Entry<'_> {
    fn error(&self, field: &str, why: impl std::fmt::Display) -> Error {
        Error::Config(format!("{}{}: {why}{}", self.path(), field_suffix(field), self.line_suffix()))
    }

    fn path(&self) -> String {
        format!("{KEY}.{}", quote_if_needed(self.name))
    }

    fn line_suffix(&self) -> String {
        self.line.map(|l| format!(" (line {l})")).unwrap_or_default()
    }
}

fn field_suffix(field: &str) -> String {
    if field.is_empty() { String::new() } else { format!(".{field}") }
}

/// The rule `Config::validate` applies to backend names, checked here first so that the error
/// can say which entry to rename.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A name shown as written when it is a valid backend name, JSON-quoted otherwise.
fn quote_if_needed(name: &str) -> String {
    if valid_name(name) { name.to_owned() } else { Value::String(name.to_owned()).to_string() }
}

/// What became of one entry.
enum Converted {
    /// The backend, as a tree in the YAML schema.
    Enabled(Value),
    /// Switched off in the file (`disabled: true` or `enabled: false`).
    Disabled,
}

/// One entry as a backend in the YAML schema, each string passed through `text` (which
/// expands variables, or rewrites them for the YAML format) and any failure of it reported
/// against the field.
fn backend(
    at: &Entry<'_>,
    entry: &Value,
    text: &dyn Fn(&str) -> std::result::Result<String, String>,
    warnings: &mut Vec<String>,
) -> Result<Converted> {
    if !valid_name(at.name) {
        return Err(at.error(
            "",
            "not a usable backend name: a name must be 1-64 characters of [A-Za-z0-9_-] \
             (it prefixes colliding tool names); rename the entry",
        ));
    }
    let Value::Object(fields) = entry else {
        return Err(at.error("", "must be an object (with a command or a url)"));
    };
    let flag = |key: &str| -> Result<Option<bool>> {
        match fields.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(at.error(key, "must be true or false")),
        }
    };
    if flag("disabled")? == Some(true) || flag("enabled")? == Some(false) {
        warnings.push(format!("{}: disabled, left out", at.path()));
        return Ok(Converted::Disabled);
    }
    let unknown: Vec<&str> = fields.keys().map(String::as_str).filter(|k| !KNOWN_FIELDS.contains(k)).collect();
    if !unknown.is_empty() {
        warnings.push(format!("{}: ignoring fields the router does not use: {}", at.path(), unknown.join(", ")));
    }

    let expand = |field: &str, s: &str| text(s).map_err(|why| at.error(field, why));
    let string = |field: &str| -> Result<Option<String>> {
        match fields.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match scalar_text(v) {
                Some(s) => expand(field, &s).map(Some),
                None => Err(at.error(field, "must be a string")),
            },
        }
    };
    let strings = |field: &str| -> Result<Vec<String>> {
        match fields.get(field) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let here = format!("{field}[{i}]");
                    scalar_text(v).ok_or_else(|| at.error(&here, "must be a string")).and_then(|s| expand(&here, &s))
                })
                .collect(),
            Some(_) => Err(at.error(field, "must be an array of strings")),
        }
    };
    let table = |field: &str| -> Result<Map<String, Value>> {
        match fields.get(field) {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| {
                    let here = format!("{field}.{k}");
                    let s = scalar_text(v).ok_or_else(|| at.error(&here, "must be a string"))?;
                    Ok((k.clone(), Value::String(expand(&here, &s)?)))
                })
                .collect(),
            Some(_) => Err(at.error(field, "must be an object of strings")),
        }
    };

    let command = string("command")?;
    let url = string("url")?;
    let kind = match (fields.get("type"), fields.get("transport")) {
        (Some(t), _) if !t.is_null() => Some(("type", t)),
        (_, Some(t)) if !t.is_null() => Some(("transport", t)),
        _ => None,
    };
    let transport = match kind {
        None => None,
        Some((field, Value::String(t))) => Some(transport_of(t).ok_or_else(|| {
            at.error(field, "unknown transport (want stdio, http, streamable-http, sse or websocket)")
        })?),
        Some((field, _)) => return Err(at.error(field, "must be a string")),
    };

    let mut b = Map::new();
    b.insert("name".into(), Value::String(at.name.to_owned()));
    match (command, url) {
        (Some(_), Some(_)) => return Err(at.error("", "has both a command and a url; keep one")),
        (None, None) => return Err(at.error("", "needs a command (a local server) or a url (a remote one)")),
        (Some(command), None) => {
            if transport.is_some_and(|t| t != "stdio") {
                return Err(at.error("command", "a local server (command) takes type stdio, or no type"));
            }
            b.insert("command".into(), Value::String(command));
            b.insert("args".into(), strings("args")?.into_iter().map(Value::String).collect());
            b.insert("env".into(), Value::Object(table("env")?));
            if let Some(cwd) = string("cwd")? {
                b.insert("cwd".into(), Value::String(cwd));
            }
            for field in ["headers"] {
                if fields.get(field).is_some_and(|v| !v.is_null()) {
                    return Err(at.error(field, "only a remote server (url) takes headers"));
                }
            }
        }
        (None, Some(url)) => {
            if transport == Some("stdio") {
                return Err(at.error("url", "type stdio needs a command, not a url"));
            }
            for field in ["args", "env", "cwd"] {
                if fields.get(field).is_some_and(|v| !v.is_null()) {
                    return Err(at.error(field, format_args!("only a local server (command) takes {field}")));
                }
            }
            // No type: `auto`, which tries streamable HTTP and falls back to legacy SSE.
            if let Some(t) = transport {
                b.insert("transport".into(), Value::String(t.to_owned()));
            }
            b.insert("url".into(), Value::String(url));
            b.insert("headers".into(), Value::Object(table("headers")?));
        }
    }
    Ok(Converted::Enabled(Value::Object(b)))
}

/// A host's transport name in the router's spelling.
fn transport_of(t: &str) -> Option<&'static str> {
    Some(match t.to_ascii_lowercase().as_str() {
        "stdio" => "stdio",
        "http" | "streamable-http" | "streamable_http" | "streamablehttp" => "streamable_http",
        "sse" => "sse",
        "ws" | "websocket" => "websocket",
        _ => return None,
    })
}

/// Strings as they are; numbers and booleans as written (hosts pass `"PORT": 8080` on).
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Expands `${VAR}`, `${VAR:-default}` and `${env:VAR}`; every other `$` stays as written.
/// An unset variable without a default is an error naming it (Claude Code refuses such a
/// config too), never its value.
fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("${") {
        out.push_str(&rest[..pos]);
        let body = &rest[pos + 2..];
        let Some(end) = body.find('}') else {
            out.push_str(&rest[pos..]);
            return Ok(out);
        };
        let expr = &body[..end];
        match super::env::reference(expr.strip_prefix("env:").unwrap_or(expr)) {
            Some((name, default)) => out.push_str(&super::env::value(name, default, lookup)?),
            // Not a variable reference a host would expand: keep it.
            None => out.push_str(&rest[pos..pos + 2 + end + 1]),
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The 1-based line of the entry `"name":` inside the `mcpServers` object, when the text is
/// laid out so that it can be found.
fn line_of_entry(text: &str, name: &str) -> Option<usize> {
    let start = text.find(KEY)?;
    let quoted = Value::String(name.to_owned()).to_string();
    let mut from = start + KEY.len();
    while let Some(off) = text[from..].find(&quoted) {
        let at = from + off;
        let after = text[at + quoted.len()..].trim_start();
        if after.starts_with(':') {
            return Some(text[..at].matches('\n').count() + 1);
        }
        from = at + quoted.len();
    }
    None
}

/// `backends[3].url: …` → `mcpServers.docs.url: … (line 9)`.
fn rename_backend_paths(msg: &str, names: &[&str], text: &str) -> String {
    let Some(rest) = msg.strip_prefix("backends[") else { return format!("{KEY}: {msg}") };
    let Some((index, tail)) = rest.split_once(']') else { return format!("{KEY}: {msg}") };
    let Some(name) = index.parse::<usize>().ok().and_then(|i| names.get(i)) else {
        return format!("{KEY}: {msg}");
    };
    let line = line_of_entry(text, name).map(|l| format!(" (line {l})")).unwrap_or_default();
    let tail = tail.strip_prefix(".name").unwrap_or(tail);
    format!("{KEY}.{name}{tail}{line}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Transport;

    fn vars(k: &str) -> Option<String> {
        match k {
            "TOKEN" => Some("sk-secret-123".into()),
            "HOME" => Some("/home/u".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn load(text: &str) -> Result<Import> {
        import_with_env(text, &vars)
    }

    fn err(text: &str) -> String {
        load(text).unwrap_err().to_string()
    }

    const CLAUDE_DESKTOP: &str = r#"{
  "mcpServers": {
    "filesystem": {
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-filesystem", "${HOME}/Desktop"],
      "env": {"DEBUG": "1", "PORT": 8080}
    },
    "github": {
      "command": "docker",
      "args": ["run", "-i", "--rm", "ghcr.io/github/github-mcp-server"],
      "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "${TOKEN}"}
    }
  },
  "globalShortcut": "Ctrl+Space"
}"#;

    #[test]
    fn claude_desktop_file_maps_to_stdio_backends_in_order() {
        let i = load(CLAUDE_DESKTOP).unwrap();
        let b = &i.config.backends;
        assert_eq!(b.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(), ["filesystem", "github"]);
        assert_eq!(b[0].transport(), Transport::Stdio);
        assert_eq!(b[0].command, "npx");
        assert_eq!(b[0].args[2], "/home/u/Desktop");
        assert_eq!(b[0].env["PORT"], "8080");
        assert_eq!(b[1].env["GITHUB_PERSONAL_ACCESS_TOKEN"], "sk-secret-123");
        assert_eq!(i.warnings, ["ignoring top-level keys other than mcpServers: globalShortcut"]);
    }

    #[test]
    fn project_mcp_json_with_remote_servers() {
        let text = r#"{"mcpServers": {
            "docs": {"type": "http", "url": "https://docs.example.com/mcp",
                     "headers": {"Authorization": "Bearer ${env:TOKEN}"}},
            "legacy": {"type": "sse", "url": "http://127.0.0.1:9/sse"},
            "cursor-style": {"url": "https://x.example.com/mcp"},
            "streamy": {"transport": "streamable-http", "url": "https://y.example.com/mcp"},
            "sock": {"type": "websocket", "url": "ws://127.0.0.1:9/mcp"},
            "local": {"type": "stdio", "command": "server", "cwd": "/srv"}
        }}"#;
        let b = load(text).unwrap().config.backends;
        let t: Vec<Transport> = b.iter().map(|b| b.transport()).collect();
        use Transport::*;
        assert_eq!(t, [StreamableHttp, Sse, Auto, StreamableHttp, Websocket, Stdio]);
        assert_eq!(b[0].headers["Authorization"], "Bearer sk-secret-123");
        assert_eq!(b[0].url.as_deref(), Some("https://docs.example.com/mcp"));
        assert_eq!(b[5].cwd.as_deref(), Some(std::path::Path::new("/srv")));
    }

    #[test]
    fn disabled_entries_and_host_specific_fields_are_warnings() {
        let text = r#"{"mcpServers": {
            "on": {"command": "a", "alwaysAllow": ["x"], "autoApprove": [], "timeout": 60},
            "off": {"command": "b", "disabled": true},
            "off2": {"url": "https://z.example.com", "enabled": false},
            "on2": {"command": "c", "disabled": false}
        }}"#;
        let i = load(text).unwrap();
        let names: Vec<&str> = i.config.backends.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["on", "on2"]);
        assert_eq!(
            i.warnings,
            [
                "mcpServers.on: ignoring fields the router does not use: alwaysAllow, autoApprove, timeout",
                "mcpServers.off: disabled, left out",
                "mcpServers.off2: disabled, left out",
            ]
        );
    }

    #[test]
    fn expansion_follows_the_hosts() {
        let e = |s: &str| expand(s, &vars);
        assert_eq!(
            e("${TOKEN}|${env:HOME}|${NOPE:-d}|${EMPTY:-e}|$$|$x|${not a var}").unwrap(),
            "sk-secret-123|/home/u|d|e|$$|$x|${not a var}"
        );
        assert_eq!(e("tail ${").unwrap(), "tail ${");
        let why = e("${MISSING}").unwrap_err();
        assert!(why.contains("MISSING") && why.contains("not set"), "{why}");
    }

    #[test]
    fn bad_names_are_refused_clearly() {
        let text = "{\n  \"mcpServers\": {\n    \"my server\": {\"command\": \"x\"}\n  }\n}";
        let msg = err(text);
        assert!(msg.contains(r#"mcpServers."my server""#), "{msg}");
        assert!(msg.contains("[A-Za-z0-9_-]") && msg.contains("(line 3)"), "{msg}");
        let long = format!(r#"{{"mcpServers": {{"{}": {{"command": "x"}}}}}}"#, "a".repeat(65));
        assert!(err(&long).contains("1-64 characters"));
        assert!(load(&long.replace(&"a".repeat(65), &"a".repeat(64))).is_ok());
    }

    #[test]
    fn mistakes_name_the_entry_and_field_never_the_value() {
        let cases = [
            (r#"{"mcpServers": {"a": {"command": "x", "url": "https://h"}}}"#, "mcpServers.a: has both"),
            (r#"{"mcpServers": {"a": {}}}"#, "mcpServers.a: needs a command"),
            (r#"{"mcpServers": {"a": "x"}}"#, "mcpServers.a: must be an object"),
            (r#"{"mcpServers": {"a": {"command": ["sk-secret"]}}}"#, "mcpServers.a.command: must be a string"),
            (r#"{"mcpServers": {"a": {"command": "x", "args": "sk-secret"}}}"#, "mcpServers.a.args: must be an array"),
            (
                r#"{"mcpServers": {"a": {"command": "x", "env": {"K": {"v": "sk-secret"}}}}}"#,
                "mcpServers.a.env.K: must be a string",
            ),
            (
                r#"{"mcpServers": {"a": {"url": "https://h", "type": "sk-secret"}}}"#,
                "mcpServers.a.type: unknown transport",
            ),
            (r#"{"mcpServers": {"a": {"url": "https://h", "type": "stdio"}}}"#, "mcpServers.a.url: type stdio"),
            (r#"{"mcpServers": {"a": {"command": "x", "type": "http"}}}"#, "mcpServers.a.command: a local server"),
            (
                r#"{"mcpServers": {"a": {"url": "https://h", "env": {"K": "sk-secret"}}}}"#,
                "mcpServers.a.env: only a local",
            ),
            (
                r#"{"mcpServers": {"a": {"command": "x", "headers": {"K": "sk-secret"}}}}"#,
                "mcpServers.a.headers: only a remote",
            ),
            (
                r#"{"mcpServers": {"a": {"url": "ftp://sk-secret"}}}"#,
                "mcpServers.a.url: must start with http:// or https://",
            ),
            (
                r#"{"mcpServers": {"a": {"command": "x", "disabled": "sk-secret"}}}"#,
                "mcpServers.a.disabled: must be true",
            ),
            (
                r#"{"mcpServers": {"a": {"command": "${MISSING}"}}}"#,
                "mcpServers.a.command: environment variable MISSING",
            ),
            (r#"{"mcpServers": ["sk-secret"]}"#, "mcpServers: must be an object"),
            (r#"{"mcpServers": {"a": {"command": "sk-secret"}}"#, "not valid JSON"),
        ];
        for (text, want) in cases {
            let msg = err(text);
            assert!(msg.contains(want), "{text}\n  gave: {msg}\n  want: {want}");
            assert!(!msg.contains("sk-secret"), "a value leaked: {msg}");
        }
    }

    #[test]
    fn detection_is_by_content() {
        assert!(is_mcp_servers(CLAUDE_DESKTOP));
        assert!(is_mcp_servers("mcpServers:\n  a:\n    command: x\n"), "the same structure in YAML");
        assert!(!is_mcp_servers("backends:\n  - name: mcpServers\n    command: x\n"));
        assert!(!is_mcp_servers("router:\n  name: x # mcpServers\n"));
        assert!(!is_mcp_servers("{\"backends\": []}"));
        // YAML text with the key is read through the same mapping.
        let c = load("mcpServers:\n  a:\n    command: x\n    args: [--flag]\n").unwrap().config;
        assert_eq!(c.backends[0].args, ["--flag"]);
        assert!(load("{\"mcpServers\": {}}").unwrap().config.backends.is_empty());
        assert!(load("{\"mcpServers\": null}").unwrap().config.backends.is_empty());
    }

    #[test]
    fn the_yaml_loader_accepts_the_format() {
        let c = Config::from_yaml_with_env(CLAUDE_DESKTOP, &vars).unwrap();
        assert_eq!(c.backends.len(), 2);
        assert_eq!(c.router.name, Config::default().router.name);
        let dup = "{\"mcpServers\": {\"a\": {\"command\": \"x\"}, \"a\": {\"command\": \"y\"}}}";
        // serde_json keeps the last of duplicate keys, as JavaScript hosts do.
        assert_eq!(Config::from_yaml_with_env(dup, &vars).unwrap().backends[0].command, "y");
    }

    #[test]
    fn validation_errors_point_at_the_entry() {
        let text = "{\n\"mcpServers\": {\n  \"ok\": {\"command\": \"x\"},\n  \"bad\": {\"url\": \"https://\"}\n}}";
        let msg = err(text);
        assert!(msg.contains(": mcpServers.bad.url: must start with http:// or https:// and name a host"), "{msg}");
        assert!(msg.ends_with("(line 4)"), "{msg}");
    }
}
