//! The `mcprouter` command: `serve` the router over stdio, `check` a config, `import` an MCP
//! host's `mcpServers` file as YAML, print the config's JSON `schema`, run the `demo`, or act
//! as the project's own `test-server`.

mod conformance_fixtures;
mod demo;
mod http_serve;
mod import;
mod metrics_http;
mod options;
mod reload;
mod serve;
mod test_http;
mod test_server;

use std::io::Write as _;
use std::process::ExitCode;

const USAGE: &str = "\
usage: mcprouter <command> [options]

commands:
  serve --config FILE     serve every configured backend as one MCP server on stdio
        [--metrics-listen 127.0.0.1:PORT]   GET /metrics (Prometheus) and GET /status (JSON)
        [--metrics-listen-any]              allow a non-loopback --metrics-listen address
        [--http 127.0.0.1:PORT [--path /mcp]]  serve Streamable HTTP (gateway mode) instead
                                            of stdio; see the config's gateway: section
        [--sse-path /sse] [--messages-path /messages]  the legacy HTTP+SSE endpoints' paths
        [--tls-cert CERT.pem --tls-key KEY.pem]       serve HTTPS
        [--watch]                           reload when FILE changes (SIGHUP always reloads)
        [--client NAME]                     on stdio, serve as this configured client
  check --config FILE     start every backend, print a status table, exit 1 if any failed
        [--json]                            print the status as JSON instead
  import FILE             print an mcpServers JSON file (.mcp.json, claude_desktop_config.json)
                          as the equivalent YAML config; warnings go to stderr
  schema                  print the JSON Schema of the YAML config (for editors: see README)
  demo                    run the built-in demo (needs nothing installed)
  test-server [flags]     the project's own MCP test server (fault injection)
  version                 print the version

serve and check also take:
  --log-format json|text  one JSON object per line, or text for humans (default text)
  --log-level LEVEL       off|error|warn|info|debug|trace (default: MCPROUTER_LOG, else warn)

Logs go to stderr only (stdout carries the protocol), with credentials masked: built-in rules,
secret-looking values from the config, and the comma-separated values in MCPROUTER_REDACT.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest = args[1..].to_vec();
    let code = match cmd.as_str() {
        "test-server" => test_server::run(rest),
        "import" => import::run(&rest),
        "schema" if rest.is_empty() => {
            // Pretty-printing a Value cannot fail; a closed stdout (`| head`) is an error, not a panic.
            let text = serde_json::to_string_pretty(&mcprouter::Config::json_schema()).unwrap_or_default();
            match writeln!(std::io::stdout().lock(), "{text}") {
                Ok(()) => 0,
                Err(_) => 1,
            }
        }
        "schema" => {
            eprintln!("usage: mcprouter schema   (takes no options)");
            2
        }
        "serve" | "check" => match options::parse(cmd, &rest) {
            Ok(o) if cmd == "serve" => serve::run(&o),
            Ok(o) => serve::check(&o),
            Err(e) => {
                eprintln!("mcprouter {cmd}: {e}\n\n{USAGE}");
                2
            }
        },
        "demo" => match options::env_level() {
            Ok(level) => {
                let redactor = mcprouter::redact::Redactor::new(mcprouter::logging::env_redact_list(), Vec::new());
                options::install_logger(mcprouter::logging::Format::Text, level, redactor);
                demo::run()
            }
            Err(e) => {
                eprintln!("mcprouter demo: {e}");
                2
            }
        },
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
