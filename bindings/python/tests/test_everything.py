"""Interop with a third-party server: @modelcontextprotocol/server-everything over stdio,
side by side with the project's test server (installed by scripts/deps.sh)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterator

import pytest

import mcprouter
from conftest import backend_yaml, deps_dir

ENTRY = deps_dir() / "node" / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
NODE = shutil.which("node")



@pytest.fixture(scope="module")
def everything() -> Iterator[mcprouter.Router]:
    # A missing peer fails every test here: a skip would let a run without the interop
    # dependencies pass as if it had checked them.
    if NODE is None:
        pytest.fail("node is not on PATH: install Node.js, then run scripts/deps.sh")
    if not ENTRY.is_file():
        pytest.fail(f"server-everything is missing ({ENTRY}): run scripts/deps.sh")
    yaml = (
        "router: {request_timeout_ms: 10000, init_timeout_ms: 20000, shutdown_grace_ms: 1000}\n"
        "backends:\n"
        f"  - name: everything\n    command: {json.dumps(str(NODE))}\n"
        f"    args: [{json.dumps(str(Path(ENTRY)))}, stdio]\n"
        + backend_yaml("alpha")
    )
    r = mcprouter.Router.from_yaml(yaml)
    try:
        yield r
    finally:
        r.close()


def test_everything_is_ready(everything: mcprouter.Router) -> None:
    states = {b["name"]: b for b in everything.status()["backends"]}
    assert states["everything"]["state"] == "ready", states["everything"]


def test_list_and_call_echo(everything: mcprouter.Router) -> None:
    with everything.session() as s:
        s.initialize()
        tools = []
        cursor = None
        while True:
            page = s.request("tools/list", {"cursor": cursor} if cursor else None)
            tools += [t["name"] for t in page["tools"]]
            cursor = page.get("nextCursor")
            if not cursor:
                break
        # Both serve `echo`: prefixed. get-sum only exists on everything: unprefixed.
        assert {"everything__echo", "alpha__echo", "get-sum"} <= set(tools)
        r = s.request("tools/call", {"name": "everything__echo", "arguments": {"message": "interop"}})
        assert r["content"][0]["text"] == "Echo: interop"
        r = s.request("tools/call", {"name": "get-sum", "arguments": {"a": 1, "b": 2}})
        assert "3" in r["content"][0]["text"]
        r = s.request("tools/call", {"name": "alpha__echo", "arguments": {"message": "local"}})
        assert r["content"][0]["text"] == "local"
