//! The `mcprouter` command: `serve` the router over stdio, `check` a config, run the `demo`,
//! or act as the project's own `test-server`.

mod demo;
mod serve;
mod stderr_log;
mod test_server;

use std::process::ExitCode;

const USAGE: &str = "\
usage: mcprouter <command> [options]

commands:
  serve --config FILE     serve every configured backend as one MCP server on stdio
  check --config FILE     start every backend, print a status table, exit 1 if any failed
  demo                    run the built-in demo (needs nothing installed)
  test-server [flags]     the project's own MCP test server (fault injection)
  version                 print the version

environment: MCPROUTER_LOG=error|warn|info|debug|trace (default warn; logs go to stderr)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest = args[1..].to_vec();
    let code = match cmd.as_str() {
        "test-server" => test_server::run(rest),
        "serve" | "check" => {
            stderr_log::install();
            match config_arg(&rest) {
                Ok(path) if cmd == "serve" => serve::run(&path),
                Ok(path) => serve::check(&path),
                Err(e) => {
                    eprintln!("mcprouter {cmd}: {e}\n\n{USAGE}");
                    2
                }
            }
        }
        "demo" => {
            stderr_log::install();
            demo::run()
        }
        "version" | "--version" | "-V" => {
            println!("mcprouter {}", env!("CARGO_PKG_VERSION"));
            0
        }
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            0
        }
        other => {
            eprintln!("mcprouter: unknown command {other:?}\n\n{USAGE}");
            2
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn config_arg(args: &[String]) -> Result<String, String> {
    let mut it = args.iter();
    let mut path = None;
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" | "-c" => path = it.next().cloned(),
            s if s.starts_with("--config=") => path = Some(s["--config=".len()..].to_owned()),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    path.ok_or_else(|| "--config FILE is required".to_owned())
}
