//! `mcprouter demo`: two copies of the project's test server behind one router, showing the
//! merged catalog with a name collision, routed calls, a deadline, and a backend that dies.

use std::time::{Duration, Instant};

use mcprouter::{Router, Session};
use serde_json::Value;

pub fn run() -> i32 {
    match demo() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("demo failed: {e}");
            1
        }
    }
}

fn demo() -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let exe = serde_json::to_string(&exe.to_string_lossy()).map_err(|e| e.to_string())?;
    let yaml = format!(
        "router:\n  name: demo-router\n  init_timeout_ms: 3000\n\
         backends:\n\
         \x20 - name: alpha\n    command: {exe}\n    args: [test-server, --name, alpha]\n\
         \x20 - name: beta\n    command: {exe}\n    args: [test-server, --name, beta]\n    timeout_ms: 1000\n\
         \x20 - name: ghost\n    command: /nonexistent/mcp-server\n"
    );
    println!("== config (a built-in demo: two copies of the project's test server, one missing program)\n{yaml}");
    let t = Instant::now();
    let router = Router::from_yaml(&yaml).map_err(|e| e.to_string())?;
    println!("== router started in {:.1} ms\n", t.elapsed().as_secs_f64() * 1000.0);
    print!("{}", crate::serve::status_table(&router.status()));
    let s = router.session(Some("demo-client")).map_err(|e| e.to_string())?;

    let init = call(
        &s,
        "initialize",
        r#"{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"demo","version":"1"}}"#,
    )?;
    println!(
        "\n== initialize -> serverInfo {} protocol {}",
        init["result"]["serverInfo"], init["result"]["protocolVersion"]
    );
    let _ = s.handle(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);

    let tools = call(&s, "tools/list", "{}")?;
    let names: Vec<&str> =
        tools["result"]["tools"].as_array().into_iter().flatten().filter_map(|t| t["name"].as_str()).collect();
    println!("\n== tools/list: {} tools (names both backends serve are prefixed with the backend name)", names.len());
    println!("   {}", names.join(", "));

    println!("\n== routed calls");
    show(&s, "tools/call", r#"{"name":"alpha__echo","arguments":{"message":"hello from the demo"}}"#)?;
    show(&s, "tools/call", r#"{"name":"beta__whoami","arguments":{}}"#)?;
    show(&s, "resources/read", r#"{"uri":"test://beta/static"}"#)?;
    show(&s, "prompts/get", r#"{"name":"alpha__greet","arguments":{"who":"world"}}"#)?;
    show(&s, "tools/call", r#"{"name":"no_such_tool","arguments":{}}"#)?;

    println!("\n== a call that hangs gets an error at its deadline (beta: timeout_ms 1000)");
    show(&s, "tools/call", r#"{"name":"beta__hang","arguments":{}}"#)?;

    println!("\n== beta crashes mid-call: the caller gets a clean error at once, alpha keeps serving");
    show(&s, "tools/call", r#"{"name":"beta__crash","arguments":{}}"#)?;
    show(&s, "tools/call", r#"{"name":"beta__echo","arguments":{"message":"anyone there?"}}"#)?;
    show(&s, "tools/call", r#"{"name":"alpha__echo","arguments":{"message":"still here"}}"#)?;

    // The dispatcher drops beta's items from the catalog and tells the client.
    let mut events = Vec::new();
    while let Ok(Some(ev)) = s.next_event(Duration::from_millis(300)) {
        events.push(ev);
    }
    println!(
        "\n== events sent to the client on its own: {}",
        if events.is_empty() { "none".into() } else { events.join(" ") }
    );
    println!();
    print!("{}", crate::serve::status_table(&router.status()));
    drop(s);
    let t = Instant::now();
    router.shutdown(Duration::from_millis(500));
    println!("\n== shut down in {:.1} ms: children reaped, threads joined", t.elapsed().as_secs_f64() * 1000.0);
    Ok(())
}

fn call(s: &Session, method: &str, params: &str) -> Result<Value, String> {
    let msg = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params}}}"#);
    let reply = s.handle(&msg).map_err(|e| e.to_string())?.ok_or("no reply")?;
    serde_json::from_str(&reply).map_err(|e| e.to_string())
}

fn show(s: &Session, method: &str, params: &str) -> Result<(), String> {
    let t = Instant::now();
    let v = call(s, method, params)?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    let shown = if let Some(e) = v.get("error") {
        format!("ERROR {} {}", e["code"], e["message"])
    } else {
        let r = &v["result"];
        let text = r["content"][0]["text"]
            .as_str()
            .or(r["contents"][0]["text"].as_str())
            .or(r["messages"][0]["content"]["text"].as_str());
        text.map(|t| format!("{t:?}")).unwrap_or_else(|| r.to_string())
    };
    println!("   {method:<15} {params}\n     -> {shown}  ({ms:.1} ms)");
    Ok(())
}
