//! `mcprouter import FILE`: the YAML on stdout is what the library writes, warnings go to
//! stderr, and the YAML serves the same backends as the `mcpServers` file it came from.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use mcprouter::Config;
use mcprouter::config::mcp_servers;
use serde_json::{Value, json};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mcp_servers").join(name)
}

fn import(file: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("import").arg(file);
    // The fixtures' variables: unset unless a test sets them, whatever the caller's shell has.
    for k in ["TOKEN", "TICKETS_KEY", "DOCS_URL", "PROJECT_ROOT", "OPENWEATHER_API_KEY"] {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mcprouter-import-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn prints_the_library_yaml_and_warns_on_stderr() {
    watchdog(60);
    for name in ["claude_desktop_config.json", "claude_code.mcp.json", "cline_mcp_settings.json"] {
        let out = import(&fixture(name), &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {stderr}");
        let want = mcp_servers::to_yaml(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), want.yaml, "{name}");
        for w in &want.warnings {
            assert!(stderr.contains(w.as_str()), "{name}: {w}\n{stderr}");
        }
    }
    let out = import(&fixture("cline_mcp_settings.json"), &[("OPENWEATHER_API_KEY", "ow-secret-1")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("warning: ") && stderr.contains("mcpServers.browser: disabled, left out"), "{stderr}");
    assert!(stderr.contains("mcpServers.weather: ignoring fields the router does not use: autoApprove, timeout"));
    assert!(!stderr.contains("note:"), "every variable is set: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("# mcpServers.browser: disabled in the mcpServers file, left out"), "{stdout}");
    assert!(stdout.contains("OPENWEATHER_API_KEY: ${OPENWEATHER_API_KEY}") && !stdout.contains("ow-secret-1"));
}

#[test]
fn the_yaml_loads_as_the_json_does() {
    watchdog(60);
    // This file names no variable, so the test's own environment is the same for both.
    let file = fixture("claude_desktop_config.json");
    let out = import(&file, &[]);
    assert!(out.status.success());
    let from_yaml = Config::from_yaml(&String::from_utf8(out.stdout).unwrap()).unwrap();
    let from_json = Config::from_file(&file).unwrap();
    assert_eq!(format!("{:#?}", from_yaml.backends), format!("{:#?}", from_json.backends));
    assert_eq!(from_yaml.backends.len(), 4);
}

#[test]
fn a_variable_unset_here_is_a_note_not_a_failure() {
    watchdog(60);
    let out = import(&fixture("claude_code.mcp.json"), &[("HOME", "/home/u")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("note: in this environment the YAML does not load yet"), "{stderr}");
    assert!(stderr.contains("environment variable TOKEN is not set"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Authorization: Bearer ${TOKEN}"));
}

#[test]
fn refusals_exit_2() {
    watchdog(60);
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let out = import(&readme, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no top-level mcpServers key"));
    assert!(out.stdout.is_empty());
    let bad = temp_dir("bad").join(".mcp.json");
    std::fs::write(&bad, r#"{"mcpServers": {"my server": {"command": "x", "args": ["sk-secret"]}}}"#).unwrap();
    let out = import(&bad, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains(r#"mcpServers."my server": not a usable backend name"#) && !stderr.contains("sk-secret"));
    for args in [&[][..], &["a", "b"], &["--help"]] {
        let out = Command::new(BIN).arg("import").args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("usage: mcprouter import FILE"));
    }
}

/// The whole path: a project `.mcp.json` naming a local test server and a remote one, with
/// variables, imported and then served from the YAML.
#[test]
fn imported_yaml_serves_the_same_backends() {
    watchdog(240);
    let remote = listen(&["--http", "127.0.0.1:0", "--name", "remote"]);
    let dir = temp_dir("serve");
    let json = dir.join(".mcp.json");
    let doc = json!({"mcpServers": {
        "local": {"type": "stdio", "command": BIN, "args": ["test-server", "--name", "${IMPORT_NAME:-local}"],
                  "env": {"IMPORT_TOKEN": "${env:IMPORT_TOKEN}"}, "alwaysAllow": ["echo"]},
        "remote": {"type": "http", "url": format!("{}/mcp", remote.url),
                   "headers": {"Authorization": "Bearer ${IMPORT_TOKEN}"}},
        "off": {"command": "/nonexistent/server", "disabled": true}
    }});
    std::fs::write(&json, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    let env = [("IMPORT_TOKEN", "tok-123")];
    let out = import(&json, &env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let yaml = dir.join("mcprouter.yaml");
    std::fs::write(&yaml, &out.stdout).unwrap();
    let check = |config: &Path| -> Vec<(String, String)> {
        let out = Command::new(BIN).args(["check", "--json", "--config"]).arg(config).envs(env).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let status: Value = serde_json::from_slice(&out.stdout).unwrap();
        let backends = status["backends"].as_array().unwrap();
        backends.iter().map(|b| (b["name"].as_str().unwrap().to_owned(), b["state"].to_string())).collect()
    };
    let served = check(&yaml);
    assert_eq!(served, check(&json));
    assert_eq!(served.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["local", "remote"]);
    assert!(served.iter().all(|(_, s)| s == "\"ready\""), "{served:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// README's host recipe: its JSON is these files, verbatim.
fn recipe(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/recipes").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    assert!(readme.contains(&format!("```json\n{text}```\n")), "README must show {} verbatim", path.display());
    text
}

#[test]
fn the_host_recipes_read_back_as_one_mcprouter_serve() {
    watchdog(60);
    for (name, command, config) in [
        ("claude_code.mcp.json", "mcprouter", "mcprouter.yaml"),
        (
            "claude_desktop_config.json",
            "/Users/you/.cargo/bin/mcprouter",
            "/Users/you/.config/mcprouter/mcprouter.yaml",
        ),
    ] {
        let import = mcp_servers::import(&recipe(name)).unwrap();
        assert!(import.warnings.is_empty(), "{name}: {:?}", import.warnings);
        let b = &import.config.backends;
        assert_eq!(b.len(), 1, "{name}");
        assert_eq!((b[0].name.as_str(), b[0].command.as_str()), ("mcprouter", command), "{name}");
        assert_eq!(b[0].args, ["serve", "--config", config], "{name}");
        assert_eq!(b[0].transport(), mcprouter::config::Transport::Stdio);
    }
}

/// The Claude Code recipe run as the host runs it: `mcprouter` from the PATH, started in the
/// project folder, serving the `mcprouter.yaml` that `mcprouter import` wrote from the
/// project's former `.mcp.json`.
#[test]
fn the_claude_code_recipe_serves_the_imported_servers() {
    watchdog(240);
    let project = temp_dir("recipe");
    let former = project.join("former.mcp.json");
    let doc = json!({"mcpServers": {"notes": {"command": BIN, "args": ["test-server", "--name", "notes"]}}});
    std::fs::write(&former, doc.to_string()).unwrap();
    let out = import(&former, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(project.join("mcprouter.yaml"), &out.stdout).unwrap();
    std::fs::write(project.join(".mcp.json"), recipe("claude_code.mcp.json")).unwrap();
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = std::env::join_paths(
        std::iter::once(bin_dir.to_path_buf())
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .unwrap();
    // The router stands for the host: it starts the recipe's one server as Claude Code would.
    let out = Command::new(BIN)
        .args(["check", "--json", "--config", ".mcp.json"])
        .current_dir(&project)
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let b = &status["backends"][0];
    assert_eq!((b["name"].as_str(), b["state"].as_str()), (Some("mcprouter"), Some("ready")), "{status}");
    assert!(b["tools"].as_u64().unwrap() > 0, "the imported server's tools come through: {status}");
    let _ = std::fs::remove_dir_all(&project);
}
