//! `mcprouter import`: an `mcpServers` file written out as the router's YAML, for a user to
//! grow into a full config.
//!
//! Variables are kept, not expanded: the YAML is meant to be kept and loaded later,
//! maybe where other values are set. They are rewritten into the YAML format's syntax,
//! so that loading the YAML gives, in any environment, the backends the `mcpServers` file
//! gives in it: `${env:VAR}` becomes `${VAR}`, and a `$` the hosts leave literal is written
//! `$$`.

use serde_json::{Map, Value};

use super::{Converted, Entry, KEY, backend, line_of_entry, servers};
use crate::error::{Error, Result};

/// What [`to_yaml`] produced.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct YamlImport {
    /// The config: a `backends:` list, in file order, with disabled entries as comments.
    pub yaml: String,
    /// Things left out (unknown fields, disabled entries, other top-level keys), one
    /// sentence each, naming keys only.
    pub warnings: Vec<String>,
}

/// Writes an `mcpServers` document as YAML for [`Config::from_yaml`](crate::Config::from_yaml).
/// Entries are checked as the loader checks them (names, fields, transports); values are not
/// validated, since they may still hold variables.
pub fn to_yaml(text: &str) -> Result<YamlImport> {
    let (servers, mut warnings) = servers(text)?;
    let mut items = String::new();
    let mut any_enabled = false;
    for (name, entry) in &servers {
        let at = Entry { name, line: line_of_entry(text, name) };
        match backend(&at, entry, &|s| Ok(yaml_syntax(s)), &mut warnings)? {
            Converted::Enabled(b) => {
                any_enabled = true;
                items.push_str(&indent(&list_item(b)?, "  "));
            }
            Converted::Disabled => items.push_str(&disabled(&at, entry)),
        }
    }
    let mut yaml = format!(
        "# Written by `mcprouter import` from an {KEY} file: one backend per server.\n\
         # Router settings keep their defaults; see README \"Configuration\" for more.\n"
    );
    yaml.push_str(if any_enabled { "backends:\n" } else { "backends: []\n" });
    yaml.push_str(&items);
    Ok(YamlImport { yaml, warnings })
}

/// A disabled entry, as a comment: the reason, then the entry as it would be enabled (when
/// it converts), for the user to uncomment.
fn disabled(at: &Entry<'_>, entry: &Value) -> String {
    let mut out = format!("  # {}: disabled in the {KEY} file, left out\n", at.path());
    let mut fields = entry.as_object().cloned().unwrap_or_default();
    fields.remove("disabled");
    fields.remove("enabled");
    // Its warnings were not asked for: the entry is left out.
    let converted = backend(at, &Value::Object(fields), &|s| Ok(yaml_syntax(s)), &mut Vec::new());
    if let Ok(Converted::Enabled(b)) = converted
        && let Ok(item) = list_item(b)
    {
        out.push_str(&indent(&item, "  # "));
    }
    out
}

/// One backend as a YAML sequence item (`- name: …`), empty lists and maps left out: they
/// are the defaults.
fn list_item(backend: Value) -> Result<String> {
    let backend = match backend {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !matches!(v, Value::Array(a) if a.is_empty()))
                .filter(|(_, v)| !matches!(v, Value::Object(o) if o.is_empty()))
                .collect::<Map<String, Value>>(),
        ),
        other => other,
    };
    // The serializer quotes every string YAML would read as something else (`"8080"`,
    // `"true"`, `"~"`, a leading `#`), so values come back exactly.
    serde_norway::to_string(&[backend]).map_err(|e| Error::Config(format!("{KEY}: cannot write YAML: {e}")))
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines().map(|l| format!("{prefix}{l}\n")).collect()
}

/// A string of the `mcpServers` format in the YAML format's variable syntax: the same text
/// once expanded. `${VAR}` and `${VAR:-default}` stay, `${env:VAR}` loses its `env:`, and
/// every other `$` (which the hosts keep as written) is doubled, as the YAML format
/// reads `$$` as one `$`.
pub(super) fn yaml_syntax(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let at = &rest[pos..];
        if let Some((reference, after)) = reference(at) {
            out.push_str("${");
            out.push_str(reference);
            out.push('}');
            rest = after;
        } else {
            out.push_str("$$");
            rest = &at[1..];
        }
    }
    out.push_str(rest);
    out
}

/// The `VAR` or `VAR:-default` of a reference the hosts expand at the start of `text`, and
/// what follows it; the same rule as `expand`.
fn reference(text: &str) -> Option<(&str, &str)> {
    let body = text.strip_prefix("${")?;
    let end = body.find('}')?;
    let expr = &body[..end];
    let expr = expr.strip_prefix("env:").unwrap_or(expr);
    let name = expr.split_once(":-").map_or(expr, |(n, _)| n);
    let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    valid.then_some((expr, &body[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use crate::config::mcp_servers::import_with_env;

    /// Two environments, so that the round trip cannot pass by expanding early.
    fn set(k: &str) -> Option<String> {
        match k {
            "TOKEN" => Some("sk-abc$1".into()),
            "HOME" => Some("/home/u".into()),
            "TICKETS_KEY" => Some("tk-9".into()),
            "OPENWEATHER_API_KEY" => Some("ow-1".into()),
            "DOCS_URL" => Some("https://docs.internal/mcp".into()),
            _ => None,
        }
    }

    fn other(k: &str) -> Option<String> {
        match k {
            "TOKEN" => Some("${HOME}".into()),
            "HOME" => Some("/root".into()),
            "TICKETS_KEY" | "OPENWEATHER_API_KEY" => Some("$$".into()),
            "PROJECT_ROOT" => Some("/src".into()),
            _ => None,
        }
    }

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/mcp_servers/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The YAML gives the backends the JSON gives, in the same environment.
    fn round_trip(json: &str, lookup: &dyn Fn(&str) -> Option<String>) {
        let direct = import_with_env(json, lookup).unwrap();
        let out = to_yaml(json).unwrap();
        assert_eq!(out.warnings, direct.warnings);
        let via_yaml = Config::from_yaml_with_env(&out.yaml, lookup).unwrap_or_else(|e| panic!("{e}\n{}", out.yaml));
        assert_eq!(format!("{:#?}", via_yaml.backends), format!("{:#?}", direct.config.backends), "{}", out.yaml);
    }

    #[test]
    fn fixtures_round_trip_in_any_environment() {
        for name in ["claude_desktop_config.json", "claude_code.mcp.json", "cline_mcp_settings.json"] {
            let json = fixture(name);
            round_trip(&json, &set);
            round_trip(&json, &other);
        }
    }

    #[test]
    fn variables_are_kept_and_disabled_entries_are_comments() {
        let yaml = to_yaml(&fixture("claude_code.mcp.json")).unwrap().yaml;
        assert!(yaml.contains("Authorization: Bearer ${TOKEN}"), "{yaml}");
        assert!(yaml.contains("${DOCS_URL:-https://docs.example.com/mcp}"), "{yaml}");
        assert!(yaml.contains("--format=$${not a variable}"), "{yaml}");
        let out = to_yaml(&fixture("cline_mcp_settings.json")).unwrap();
        assert!(
            out.yaml.contains("  # mcpServers.browser: disabled in the mcpServers file, left out\n"),
            "{}",
            out.yaml
        );
        assert!(out.yaml.contains("  # - name: browser\n"), "{}", out.yaml);
        assert!(out.yaml.contains("  # mcpServers.search: disabled"), "{}", out.yaml);
        assert!(!out.yaml.contains("disabled: true") && !out.yaml.contains("autoApprove"), "{}", out.yaml);
        assert!(out.warnings.iter().any(|w| w.contains("weather: ignoring fields") && w.contains("autoApprove")));
    }

    #[test]
    fn strings_yaml_would_misread_come_back_exactly() {
        let tricky = [
            "1",
            "08",
            "0x1F",
            "0o17",
            "1e3",
            "-.5",
            ".inf",
            ".nan",
            "true",
            "False",
            "yes",
            "no",
            "on",
            "off",
            "null",
            "~",
            "",
            " lead",
            "trail ",
            "a: b",
            "#x",
            "a #b",
            "- x",
            "? q",
            "multi\nline\n",
            "tab\tin",
            "*ref",
            "&anchor",
            "!tag",
            "@at",
            "`tick",
            "'single",
            "\"double",
            "%pct",
            "{a: 1}",
            "[a]",
            "2024-01-01",
            "é ünï",
            "bell\u{7}",
            "cr\r",
            "---",
            "...",
            "|",
            ">",
            "a,b",
            "=",
            "<<",
        ];
        let env: Map<String, Value> =
            tricky.iter().enumerate().map(|(i, v)| (format!("K{i}"), Value::String((*v).into()))).collect();
        let args: Vec<Value> = tricky.iter().map(|v| Value::String((*v).into())).collect();
        let json = serde_json::json!({"mcpServers": {"t": {"command": "x", "args": args, "env": env}}}).to_string();
        round_trip(&json, &set);
        let c = Config::from_yaml_with_env(&to_yaml(&json).unwrap().yaml, &set).unwrap();
        assert_eq!(c.backends[0].args, tricky);
    }

    #[test]
    fn dollar_rewriting_matches_each_format() {
        assert_eq!(
            yaml_syntax("${A}|${env:B}|${C:-d$}|$x|$$|${ no}|${|$"),
            "${A}|${B}|${C:-d$}|$$x|$$$$|$${ no}|$${|$$"
        );
    }

    #[test]
    fn all_disabled_is_an_empty_list() {
        let out = to_yaml(r#"{"mcpServers": {"a": {"command": "x", "disabled": true}}}"#).unwrap();
        assert!(out.yaml.contains("backends: []\n  # mcpServers.a: disabled"), "{}", out.yaml);
        assert!(Config::from_yaml(&out.yaml).unwrap().backends.is_empty());
    }

    #[test]
    fn entries_are_checked_as_the_loader_checks_them() {
        let e = to_yaml(r#"{"mcpServers": {"my server": {"command": "x"}}}"#).unwrap_err().to_string();
        assert!(e.contains("not a usable backend name"), "{e}");
        let e = to_yaml(r#"{"mcpServers": {"a": {"command": "x", "url": "https://h"}}}"#).unwrap_err().to_string();
        assert!(e.contains("mcpServers.a: has both"), "{e}");
    }
}
