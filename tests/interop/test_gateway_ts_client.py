"""Interop: the official TypeScript MCP SDK client (``@modelcontextprotocol/sdk`` 1.32.2,
driven by ``ts_client.cjs``) against ``mcprouter serve --http`` fronting two test servers
(alpha, beta), over Streamable HTTP and over the legacy HTTP+SSE endpoints.

For each transport two clients run at once, each its own session: A calls through alpha,
B through beta, and each answers sampling with its own text, so a request relayed to the
wrong client shows in the results. A missing Node or SDK fails the test (it never skips).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from test_gateway_http import start_gateway

REPO = Path(__file__).resolve().parents[2]
NODE_MODULES = REPO / ".deps" / "node" / "node_modules"
CLIENT = Path(__file__).resolve().parent / "ts_client.cjs"
TIMEOUT_S = 60


def run_clients(mode: str, url: str) -> dict[str, dict]:
    node = shutil.which("node")
    assert node, "node is not on PATH"
    assert (NODE_MODULES / "@modelcontextprotocol" / "sdk" / "package.json").is_file(), "run scripts/deps.sh"
    env = {**os.environ, "NODE_PATH": str(NODE_MODULES)}
    procs = {
        name: subprocess.Popen(
            [node, str(CLIENT), mode, url, name, backend],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, backend in (("A", "alpha"), ("B", "beta"))
    }
    out = {}
    for name, p in procs.items():
        stdout, stderr = p.communicate(timeout=TIMEOUT_S)
        assert p.returncode == 0, f"{mode} client {name} failed: {stderr}"
        out[name] = json.loads(stdout.strip().splitlines()[-1])
    return out


@pytest.mark.parametrize("mode", ["streamable", "sse"])
def test_two_ts_clients_each_get_their_own_sampling(mode: str) -> None:
    with tempfile.TemporaryDirectory() as t:
        proc, url = start_gateway(Path(t))
        try:
            target = url if mode == "streamable" else url.rsplit("/", 1)[0] + "/sse"
            results = run_clients(mode, target)
            for name, backend in (("A", "alpha"), ("B", "beta")):
                r = results[name]
                assert {f"{backend}__echo", f"{backend}__sample"} <= set(r["tools"]), r
                assert r["echo"] == f"hi {name}", r
                assert r["sample"] == f"answer-from-{name}", r
                assert len(r["sampled"]) == 1 and f"from {name}" in r["sampled"][0], r
        finally:
            proc.terminate()
            assert proc.wait(timeout=30) == 0, "the gateway stops cleanly on SIGTERM"
