//! Issue #11: through the router a client sees what it would see directly. Against the real
//! official servers, installed by scripts/deps.sh.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn node_server(package: &str, args: &[&str]) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(".deps/node/node_modules/@modelcontextprotocol")
        .join(package)
        .join("dist/index.js");
    assert!(script.exists(), "{package} is missing: run scripts/deps.sh");
    let mut all = vec![script.to_string_lossy().into_owned()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    format!("  - name: fs\n    command: node\n    args: {}\n", serde_json::to_string(&all).unwrap())
}

#[test]
fn the_clients_roots_narrow_server_filesystem_as_they_do_directly() {
    let base = std::env::temp_dir().join(format!("mcprouter-roots-{}", std::process::id()));
    let (inside, outside) = (base.join("inside"), base.join("outside"));
    std::fs::create_dir_all(&inside).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "not for this client").unwrap();
    // The server is started on the parent; the client's roots allow only `inside`.
    let r = router("", &[node_server("server-filesystem", &[base.to_str().unwrap()])]);
    let s = r.session(None).unwrap();
    initialize(&s, json!({"roots": {"listChanged": true}}));
    // The server learns of the client's roots (roots/list_changed) and asks for them.
    let end = Instant::now() + Duration::from_secs(20);
    let ask = loop {
        assert!(Instant::now() < end, "server-filesystem never asked the client for its roots");
        if let Some(ev) = s.next_event(Duration::from_millis(100)).unwrap() {
            let v: Value = serde_json::from_str(&ev).unwrap();
            if v["method"] == "roots/list" {
                break v;
            }
        }
    };
    let uri = format!("file://{}", inside.display());
    let answer = json!({"jsonrpc":"2.0","id":ask["id"],"result":{"roots":[{"uri": uri, "name": "inside"}]}});
    assert!(s.handle(&answer.to_string()).unwrap().is_none());
    // Wait for the fact: the server's allowed directories are now the client's root.
    let inside_text = inside.canonicalize().unwrap().display().to_string();
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let dirs = tool_text(&s, "list_allowed_directories", json!({})).unwrap_or_default();
        if dirs.contains(&inside_text)
            && !dirs.lines().any(|l| l.trim() == base.canonicalize().unwrap().display().to_string())
        {
            break;
        }
        assert!(Instant::now() < end, "allowed directories never narrowed: {dirs}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let secret = outside.join("secret.txt");
    let read = call(&s, 90, "tools/call", json!({"name": "read_text_file", "arguments": {"path": secret}}));
    let text = read.to_string();
    assert!(!text.contains("not for this client"), "read outside the client's roots: {text}");
    assert!(read["result"]["isError"] == true || read.get("error").is_some(), "{read}");
    r.shutdown(Duration::from_secs(2));
    let _ = std::fs::remove_dir_all(&base);
}
