//! `mcprouter import FILE`: an MCP host's `mcpServers` file printed as the router's YAML.
//!
//! The YAML goes to stdout and nothing else does, so `mcprouter import .mcp.json >
//! mcprouter.yaml` gives a clean file; warnings (fields left out, disabled servers) go to
//! stderr.

use std::io::Write as _;
use std::path::Path;

use mcprouter::Config;
use mcprouter::config::{mcp_servers, read_config_file};

/// Runs the command; the exit code: 0 written, 2 a usage error or a file that cannot be converted.
pub fn run(args: &[String]) -> i32 {
    let file = match args {
        [f] if !f.starts_with('-') => f,
        _ => {
            eprintln!(
                "usage: mcprouter import FILE   (an mcpServers JSON file: .mcp.json, claude_desktop_config.json…)"
            );
            return 2;
        }
    };
    let converted = read_config_file(Path::new(file)).and_then(|text| {
        if !mcp_servers::is_mcp_servers(&text) {
            return Err(mcprouter::Error::Config(format!(
                "{file}: no top-level {} key; a YAML config needs no import",
                mcp_servers::KEY
            )));
        }
        mcp_servers::to_yaml(&text)
    });
    let out = match converted {
        Ok(out) => out,
        Err(e) => {
            eprintln!("mcprouter import: {e}");
            return 2;
        }
    };
    for w in &out.warnings {
        eprintln!("mcprouter import: warning: {file}: {w}");
    }
    // The YAML keeps its variables, so it may well load only where they are set (at serve
    // time): say so now rather than fail, naming the field and variable, never a value.
    if let Err(e) = Config::from_yaml(&out.yaml) {
        eprintln!("mcprouter import: note: in this environment the YAML does not load yet: {e}");
    }
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(out.yaml.as_bytes()).and_then(|()| stdout.flush()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("mcprouter import: writing the YAML: {e}");
            1
        }
    }
}
