//! The per-call cost of a policy decision and of a rate-limit check, on their own:
//! what `tools/call` pays before it reaches a backend (issue #14).
//!
//! `cargo run --release --example policy_cost -- <mcprouter binary>`
//!
//! The decision runs the session's own path (`Router::may_call_tool`: the client's
//! profile, the cached view of the current catalog, one map lookup) over a catalog of 500
//! tools with 40 clients in 4 groups; a glob scan over the same rules is printed beside it
//! for scale. The limit check is `Limits::admit` with a client bucket, a client-on-backend
//! bucket, a backend bucket and a quota, all of which admit.

use std::time::{Duration, Instant};

use mcprouter::config::{Config, glob_match};
use mcprouter::limits::Limits;

const N: u32 = 1_000_000;

fn per_op(threads: u32, f: impl Fn(u32) + Sync) -> f64 {
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for i in 0..N {
                    f(i);
                }
            });
        }
    });
    t.elapsed().as_nanos() as f64 / f64::from(N * threads)
}

fn main() -> Result<(), mcprouter::Error> {
    let server = std::env::args().nth(1).unwrap_or_else(|| "target/release/mcprouter".into());
    let mut yaml = format!(
        "backends:\n  - name: alpha\n    command: {server:?}\n    args: [test-server, --name, alpha, --many-tools, '500']\nclients:\n"
    );
    for i in 0..40 {
        yaml.push_str(&format!("  - {{name: c{i}, groups: [g{}]}}\n", i % 4));
    }
    yaml.push_str("policy:\n  rules:\n");
    let globs = ["t00*", "t01*", "t02?0", "*echo", "t03*", "t04*1", "*who*", "t0?9?"];
    for g in 0..4 {
        yaml.push_str(&format!("    - groups: [g{g}]\n      tools: {{allow: {globs:?}, deny: [\"t0{g}5*\"]}}\n"));
    }
    yaml.push_str("limits:\n  backends:\n    - {backend: alpha, rate: 1000000}\n  clients:\n    - {client: c0, rate: 1000000, quota: {calls: 1000000000}}\n  client_backends:\n    - {client: c0, backend: alpha, rate: 1000000}\n");
    let config = Config::from_yaml(&yaml)?;
    let router = mcprouter::Router::new(config.clone())?;
    let names: Vec<String> = (0..500).map(|i| format!("t{i:04}")).collect();
    assert!(router.may_call_tool("c0", "t0010") && !router.may_call_tool("c0", "t0050"));
    router.may_call_tool("c1", "t0001");
    let decide = |i: u32| {
        let name = &names[(i % 500) as usize];
        std::hint::black_box(router.may_call_tool(std::hint::black_box("c1"), name));
    };
    println!(
        "policy decision (profile + cached view + lookup): {:>6.1} ns/op (1 thread), {:>6.1} ns/op (2 threads)",
        per_op(1, decide),
        per_op(2, decide)
    );
    let scan = |i: u32| {
        let name = names[(i % 500) as usize].as_str();
        let denied = glob_match("t015*", name);
        std::hint::black_box(!denied && globs.iter().any(|g| glob_match(g, name)));
    };
    println!("for scale, one glob scan of the same rule:        {:>6.1} ns/op", per_op(1, scan));

    let now = Instant::now();
    let limits = Limits::new(&config, &["alpha".to_owned()], now);
    let admit = |i: u32| {
        let at = now + Duration::from_nanos(u64::from(i));
        std::hint::black_box(limits.admit(Some(0), 0, at).is_ok());
    };
    // One thread only: the buckets hold a million tokens, and every call here must be admitted.
    println!("rate-limit check (3 buckets + quota, admitted):   {:>6.1} ns/op", per_op(1, admit));
    assert!(
        limits.admit(Some(0), 0, now + Duration::from_millis(1)).is_ok(),
        "still admitting: the figure is the admitted path"
    );
    let none = Limits::new(&Config::default(), &["alpha".to_owned()], now);
    println!(
        "rate-limit check (no limits configured):          {:>6.1} ns/op",
        per_op(1, |_| {
            std::hint::black_box(none.admit(None, 0, now).is_ok());
        })
    );
    router.shutdown(Duration::from_secs(1));
    Ok(())
}
