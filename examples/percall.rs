//! Per-call latency of `tools/call` through `Session::handle`, for comparing the Rust API
//! with the C ABI, Python and Node bindings (see benches/bindings.sh). Prints one JSON line.
//!
//! `cargo run --release --example percall -- <mcprouter binary> <calls>`

use std::time::Instant;

fn main() -> Result<(), mcprouter::Error> {
    let mut args = std::env::args().skip(1);
    let server = args.next().unwrap_or_else(|| "target/release/mcprouter".into());
    let calls: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(2000);
    let yaml = format!("backends:\n  - name: alpha\n    command: {server:?}\n    args: [test-server, --name, alpha]\n");
    let router = mcprouter::Router::from_yaml(&yaml)?;
    let session = router.session(Some("percall"))?;
    let msg = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{}}}"#;
    for _ in 0..200 {
        session.handle(msg)?;
    }
    let mut us: Vec<f64> = (0..calls)
        .map(|_| {
            let t = Instant::now();
            let _ = session.handle(msg);
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    us.sort_by(f64::total_cmp);
    println!(
        "{{\"lang\":\"rust\",\"calls\":{calls},\"p50_us\":{:.1},\"p99_us\":{:.1}}}",
        us[us.len() / 2],
        us[us.len() * 99 / 100]
    );
    router.shutdown(std::time::Duration::from_secs(1));
    Ok(())
}
