#!/usr/bin/env bash
# Per-call latency of one `tools/call` (the test server's `whoami`) through the router from
# Rust, Python (ctypes) and Node (koffi), measured one after the other in the same run, and
# printed as ratios against Rust. Needs `scripts/deps.sh` (for koffi and the venv).
#   benches/bindings.sh [calls]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
calls=${1:-2000}
cargo build --release --quiet --examples --bin mcprouter --lib
bin="$PWD/target/release/mcprouter"
export MCPROUTER_LIB="$PWD/target/release/libmcprouter.so"
rust=$(target/release/examples/percall "$bin" "$calls")
python=$(.deps/venv/bin/python - "$bin" "$calls" <<'PY'
import json, sys, time
sys.path.insert(0, "bindings/python")
import mcprouter
server, calls = sys.argv[1], int(sys.argv[2])
yaml = f"backends:\n  - name: alpha\n    command: {json.dumps(server)}\n    args: [test-server, --name, alpha]\n"
with mcprouter.Router.from_yaml(yaml) as router:
    s = router.session("percall")
    for _ in range(200):
        s.request("tools/call", {"name": "whoami", "arguments": {}})
    us = []
    for _ in range(calls):
        t = time.perf_counter()
        s.request("tools/call", {"name": "whoami", "arguments": {}})
        us.append((time.perf_counter() - t) * 1e6)
    us.sort()
    print(json.dumps({"lang": "python", "calls": calls, "p50_us": round(us[len(us)//2], 1), "p99_us": round(us[len(us)*99//100], 1)}))
PY
)
node=$(node - "$bin" "$calls" <<'JS'
const mcprouter = require('./bindings/node');
(async () => {
    const [server, calls] = [process.argv[2], Number(process.argv[3])];
    const yaml = `backends:\n  - name: alpha\n    command: ${JSON.stringify(server)}\n    args: [test-server, --name, alpha]\n`;
    const router = await mcprouter.Router.fromYaml(yaml);
    const s = router.session('percall');
    for (let i = 0; i < 200; i++) await s.request('tools/call', { name: 'whoami', arguments: {} });
    const us = [];
    for (let i = 0; i < calls; i++) {
        const t = process.hrtime.bigint();
        await s.request('tools/call', { name: 'whoami', arguments: {} });
        us.push(Number(process.hrtime.bigint() - t) / 1000);
    }
    us.sort((a, b) => a - b);
    console.log(JSON.stringify({ lang: 'node', calls, p50_us: +us[us.length >> 1].toFixed(1), p99_us: +us[Math.floor(us.length * 0.99)].toFixed(1) }));
    await router.close();
})();
JS
)
python3 - "$rust" "$python" "$node" <<'PY'
import json, sys
rows = [json.loads(a) for a in sys.argv[1:]]
base = rows[0]
print(f"{'binding':<8} {'p50 µs':>9} {'p99 µs':>9} {'p50 vs Rust':>12} {'added p50 µs':>13}")
for r in rows:
    print(f"{r['lang']:<8} {r['p50_us']:>9.1f} {r['p99_us']:>9.1f} {r['p50_us']/base['p50_us']:>11.2f}x {r['p50_us']-base['p50_us']:>13.1f}")
PY
