#!/usr/bin/env python3
"""The official MCP conformance suite (server scenarios, all of them) against the gateway.

Targets, each run with `conformance server --suite all`:
  router-test-server     mcprouter serve --http, fronting `mcprouter test-server --conformance` (stdio)
  router-everything      mcprouter serve --http, fronting server-everything (stdio)
  everything-direct      server-everything's own Streamable HTTP endpoint (for comparison)

Each scenario's result (pass: no FAILURE check) is compared with tests/conformance/baseline.json:
a scenario expected to pass that fails is a regression; one that passes directly on
server-everything but fails through the router must be listed under "explained" with a reason.
`--update` rewrites the baseline from this run. Needs .deps (scripts/deps.sh) and the debug binary.
"""

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / ".deps" / "node" / "node_modules"
NODE22 = NODE_MODULES / "node" / "bin" / "node"
SUITE = NODE_MODULES / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
EVERYTHING = NODE_MODULES / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
LOOPBACK = ROOT / "tests" / "support" / "loopback.cjs"
BASELINE = Path(__file__).with_name("baseline.json")
BIN = Path(os.environ.get("MCPROUTER_BIN", ROOT / "target" / "debug" / "mcprouter"))
# A whole target's run; the suite itself takes a few seconds.
SUITE_TIMEOUT = 120


def need(path: Path, what: str) -> None:
    if not path.exists():
        sys.exit(f"conformance: {what} missing at {path} (run scripts/deps.sh and cargo build)")


def start_router(config: str, tmp: Path, name: str):
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(config)
    proc = subprocess.Popen(
        [str(BIN), "serve", "--config", str(cfg), "--http", "127.0.0.1:0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    # The gateway announces its address once it listens: wait for that line.
    for line in proc.stderr:
        m = re.search(r"serving MCP on (http://\S+)", line)
        if m:
            return proc, m.group(1).replace("127.0.0.1", "localhost")
    proc.wait()
    sys.exit(f"conformance: the gateway for {name} exited with {proc.returncode} before listening")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_everything_http():
    port = free_port()
    env = dict(os.environ, PORT=str(port))
    proc = subprocess.Popen(
        [str(NODE22), "--require", str(LOOPBACK), str(EVERYTHING), "streamableHttp"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # It prints a line once listening; wait for the port to accept instead of guessing.
    while proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, f"http://localhost:{port}/mcp"
        except OSError:
            line = proc.stdout.readline()  # blocks until the server says something more
            if not line and proc.poll() is not None:
                break
    sys.exit(f"conformance: server-everything (HTTP) exited with {proc.returncode}")


def run_suite(url: str, out: Path) -> dict:
    res = subprocess.run(
        [str(NODE22), str(SUITE), "server", "--url", url, "--suite", "all", "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=SUITE_TIMEOUT,
    )
    results = {}
    for d in sorted(out.iterdir()):
        m = re.match(r"server-(.+)-\d{4}-\d\d-\d\dT", d.name)
        checks_file = d / "checks.json"
        if not m or not checks_file.exists():
            continue
        checks = json.loads(checks_file.read_text())
        failed = [c for c in checks if c.get("status") == "FAILURE"]
        results[m.group(1)] = "fail" if failed else "pass"
    if not results:
        sys.exit(f"conformance: the suite produced no results for {url}:\n{res.stdout[-3000:]}")
    return results


def stop(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> int:
    for p, what in [(NODE22, "Node 22 (npm package node)"), (SUITE, "@modelcontextprotocol/conformance"),
                    (EVERYTHING, "server-everything"), (BIN, "the mcprouter binary")]:
        need(p, what)
    update = "--update" in sys.argv
    targets = {}
    with tempfile.TemporaryDirectory(prefix="mcprouter-conformance-") as t:
        tmp = Path(t)
        configs = {
            "router-test-server": f"backends:\n  - name: fixtures\n    command: {json.dumps(str(BIN))}\n"
                                  f"    args: [test-server, --conformance]\n",
            "router-everything": f"backends:\n  - name: everything\n    command: {json.dumps(str(NODE22))}\n"
                                 f"    args: [{json.dumps(str(EVERYTHING))}, stdio]\n",
        }
        for name, cfg in configs.items():
            proc, url = start_router(cfg, tmp, name)
            try:
                targets[name] = run_suite(url, tmp / f"out-{name}")
            finally:
                stop(proc)
            # The gateway must exit by itself on SIGTERM (graceful shutdown).
            if proc.returncode != 0:
                print(f"conformance: the gateway for {name} exited with {proc.returncode} on SIGTERM")
                return 1
        proc, url = start_everything_http()
        try:
            targets["everything-direct"] = run_suite(url, tmp / "out-everything-direct")
        finally:
            stop(proc)

    scenarios = sorted(set().union(*targets.values()))
    names = list(targets)
    print(f"{'scenario':34} " + " ".join(f"{n:20}" for n in names))
    for s in scenarios:
        print(f"{s:34} " + " ".join(f"{targets[n].get(s, '-'):20}" for n in names))

    baseline = json.loads(BASELINE.read_text()) if BASELINE.exists() else {"targets": {}, "explained": {}}
    if update:
        baseline["targets"] = targets
        BASELINE.write_text(json.dumps(baseline, indent=2, sort_keys=True) + "\n")
        print(f"conformance: baseline written to {BASELINE}")
    problems = []
    for n, results in targets.items():
        for s, want in baseline["targets"].get(n, {}).items():
            got = results.get(s, "missing")
            if want == "pass" and got != "pass":
                problems.append(f"regression: {n} {s}: expected pass, got {got}")
    explained = baseline.get("explained", {})
    for s, direct in targets["everything-direct"].items():
        routed = targets["router-everything"].get(s, "missing")
        if direct == "pass" and routed != "pass" and s not in explained:
            problems.append(f"{s}: passes on server-everything directly but not through the router (unexplained)")
    for s in scenarios:
        if targets["router-test-server"].get(s) != "pass" and s not in explained:
            problems.append(f"{s}: fails through the router with the conformance fixtures (unexplained)")
    for p in problems:
        print(f"conformance: {p}")
    if problems:
        return 1
    print(f"conformance: {len(scenarios)} scenarios, no regression")
    return 0


if __name__ == "__main__":
    sys.exit(main())
