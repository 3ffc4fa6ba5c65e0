//! `mcprouter schema`: the JSON Schema generated from the config types accepts every config
//! the project shows (README's YAML blocks, the configs in examples/, what `mcprouter import`
//! writes) and refuses the mistakes the loader refuses. Validation is Python's `jsonschema`
//! from `.deps/venv` (tests/deps/requirements.txt): an independent implementation. Without
//! it the test fails, never skips.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::{Value, json};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// README YAML blocks that are not whole configs, each with the reason. None today: every
/// block is a config a user may copy as it is.
const README_FRAGMENTS: &[(&str, &str)] = &[];

/// The schema `mcprouter schema` prints, checked to be the library's.
fn schema() -> Value {
    let out = Command::new(BIN).arg("schema").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, mcprouter::Config::json_schema());
    printed
}

/// The errors of each document against `schema` (an empty list: valid), from jsonschema.
fn validate(schema: &Value, docs: &[(String, Value)]) -> Vec<(String, Vec<String>)> {
    let python = Path::new(ROOT).join(".deps/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/deps.sh (jsonschema is pinned in tests/deps)",
        python.display()
    );
    // One folder per call: the tests run in parallel.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("mcprouter-schema-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (schema_file, docs_file) = (dir.join("schema.json"), dir.join("docs.json"));
    std::fs::write(&schema_file, schema.to_string()).unwrap();
    let docs_json: Vec<Value> = docs.iter().map(|(n, d)| json!([n, d])).collect();
    std::fs::write(&docs_file, Value::Array(docs_json).to_string()).unwrap();
    let script = r#"
import json, sys
import jsonschema
schema = json.load(open(sys.argv[1]))
cls = jsonschema.validators.validator_for(schema)
cls.check_schema(schema)
v = cls(schema)
out = [[name, [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(doc)]]
       for name, doc in json.load(open(sys.argv[2]))]
print(json.dumps(out))
"#;
    let out = Command::new(&python).arg("-c").arg(script).arg(&schema_file).arg(&docs_file).output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "python jsonschema failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn yaml_to_json(name: &str, yaml: &str) -> Value {
    serde_norway::from_str(yaml).unwrap_or_else(|e| panic!("{name}: not YAML: {e}\n{yaml}"))
}

/// README's fenced ```yaml blocks, named by their first line number.
fn readme_configs() -> Vec<(String, Value)> {
    let text = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let mut docs = Vec::new();
    let mut block: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match &mut block {
            None if line.trim_start().starts_with("```yaml") => block = Some((i + 2, String::new())),
            Some((start, body)) if line.trim_start().starts_with("```") => {
                let name = format!("README.md:{start}");
                let fragment = README_FRAGMENTS.iter().any(|(first, _)| body.starts_with(first));
                if !fragment {
                    docs.push((name.clone(), yaml_to_json(&name, body)));
                }
                block = None;
            }
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    docs
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { out.extend(files(&path)) } else { out.push(path) }
    }
    out.sort();
    out
}

/// The configs in examples/: YAML and JSON files, and the config literals the Rust and C
/// examples build (a string starting `backends:` or `router:`), with each interpolated value
/// (`{server:?}`, `%s`) standing as a plain string.
fn example_configs() -> Vec<(String, Value)> {
    let mut docs = Vec::new();
    for path in files(&Path::new(ROOT).join("examples")) {
        let name = path.strip_prefix(ROOT).unwrap().display().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml" | "json") => docs.push((name.clone(), yaml_to_json(&name, &text))),
            Some(ext @ ("rs" | "c")) => {
                for (n, literal) in config_literals(&text, ext == "c").into_iter().enumerate() {
                    let name = format!("{name}#{n}");
                    docs.push((name.clone(), yaml_to_json(&name, &literal)));
                }
            }
            _ => {}
        }
    }
    docs
}

fn config_literals(source: &str, c: bool) -> Vec<String> {
    let mut found = Vec::new();
    for start in ["\"backends:", "\"router:"] {
        let mut from = 0;
        while let Some(at) = source[from..].find(start).map(|i| i + from) {
            from = at + 1;
            let formatted = source[..at].trim_end().ends_with("format!(");
            let raw = string_literal(&source[at + 1..]);
            found.push(if c {
                raw.replace("%s", "x")
            } else if formatted {
                format_placeholders(&raw)
            } else {
                raw
            });
        }
    }
    found
}

/// The value of a Rust or C string literal whose body starts `text` (escapes `\n`, `\"`,
/// `\\`, and Rust's line continuation).
fn string_literal(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '"' => break,
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('\n') => {
                    while chars.peek().is_some_and(|c| c.is_whitespace()) {
                        chars.next();
                    }
                }
                Some(other) => out.push(other),
                None => break,
            },
            other => out.push(other),
        }
    }
    out
}

/// `format!` text with each `{…}` argument as `x`, and `{{`/`}}` as braces.
fn format_placeholders(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(ch) = chars.next() {
        match (ch, chars.peek()) {
            ('{', Some('{')) | ('}', Some('}')) => {
                out.push(ch);
                chars.next();
            }
            ('{', _) => {
                for c in chars.by_ref() {
                    if c == '}' {
                        break;
                    }
                }
                out.push('x');
            }
            _ => out.push(ch),
        }
    }
    out
}

fn assert_valid(schema: &Value, docs: &[(String, Value)]) {
    let failures: Vec<_> = validate(schema, docs).into_iter().filter(|(_, errors)| !errors.is_empty()).collect();
    assert!(failures.is_empty(), "configs the schema refuses: {failures:#?}");
}

#[test]
fn readme_yaml_blocks_are_valid() {
    watchdog(120);
    let docs = readme_configs();
    assert!(docs.len() >= 4, "README's config blocks were not found: {}", docs.len());
    assert_valid(&schema(), &docs);
}

#[test]
fn example_configs_are_valid() {
    watchdog(120);
    // Configs whose first literal is only the start: the rest is appended in code (and the
    // example loads the whole of it through the real loader when it runs).
    const PARTIAL: &[(&str, &str)] =
        &[("examples/policy_cost.rs#0", "its clients, rules and limits are pushed in a loop after this literal")];
    let docs: Vec<(String, Value)> =
        example_configs().into_iter().filter(|(n, _)| !PARTIAL.iter().any(|(p, _)| p == n)).collect();
    let names: Vec<&str> = docs.iter().map(|(n, _)| n.as_str()).collect();
    for must in ["examples/embed.rs#0", "examples/percall.rs#0", "examples/c/basic.c#0"] {
        assert!(names.contains(&must), "{must} not found in {names:?}");
    }
    assert_valid(&schema(), &docs);
}

#[test]
fn imported_configs_are_valid() {
    watchdog(120);
    let dir = Path::new(ROOT).join("tests/fixtures/mcp_servers");
    let docs: Vec<(String, Value)> = files(&dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let yaml = mcprouter::config::mcp_servers::to_yaml(&std::fs::read_to_string(&p).unwrap()).unwrap().yaml;
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name.clone(), yaml_to_json(&name, &yaml))
        })
        .collect();
    assert!(docs.len() >= 3);
    assert_valid(&schema(), &docs);
}

/// The schema is as lenient as the loader (what loads is never flagged) and as strict on
/// the rest: each case below is checked against both.
#[test]
fn the_schema_agrees_with_the_loader() {
    watchdog(120);
    let accepted = [
        "",
        "router:\n",
        "router:\n  request_timeout_ms: ${TIMEOUT:-5000}\n  prefix: ${PREFIX:-always}\n  restart:\n    enabled: ${RESTART:-true}\n",
        "backends:\n  - name: a\n    command: x\n    env: {PORT: 8080, DEBUG: true}\n    tools:\n",
        "pools:\n  - {name: p, backends: [a], strategy: sticky}\nbackends:\n  - {name: a, command: x}\n",
        "gateway:\n  tokens:\n    - env: TOKEN\n    - file: /run/token\n",
    ];
    let refused = [
        "backends:\n  - name: a\n    comand: x\n",
        "backends:\n  - command: x\n",
        "router:\n  prefix: sometimes\n",
        "router:\n  request_timeout_ms: soon\n",
        "router:\n  request_timeout_ms: -1\n",
        "pools:\n  - {name: p, backends: [a], strategy: random}\nbackends:\n  - {name: a, command: x}\n",
        "gateway:\n  tokens:\n    - {env: TOKEN, file: /run/token}\n",
        "gateway:\n  tokens:\n    - {}\n",
        "routers: {}\n",
    ];
    for y in accepted {
        // The variables' defaults apply: none of them is set in a test run.
        if let Err(e) = mcprouter::Config::from_yaml(y) {
            panic!("the loader refuses {y:?}: {e}");
        }
    }
    for y in refused {
        assert!(mcprouter::Config::from_yaml(y).is_err(), "the loader accepts {y:?}");
    }
    let docs: Vec<(String, Value)> =
        accepted.iter().chain(&refused).map(|y| ((*y).to_owned(), yaml_to_json(y, y))).collect();
    let results = validate(&schema(), &docs);
    for (i, (y, errors)) in results.iter().enumerate() {
        let want_valid = i < accepted.len();
        assert_eq!(errors.is_empty(), want_valid, "{y:?}: {errors:?}");
    }
}
