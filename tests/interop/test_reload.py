"""Interop: hot reload (issue #15) seen by the official Python MCP SDK (``mcp`` 2.3.0).

Run with ``.deps/venv/bin/python -m pytest tests/interop`` after ``scripts/deps.sh``.

``mcprouter serve --watch --metrics-listen 127.0.0.1:0`` starts with the project's test
server (alpha) only. The test rewrites the config file to add
``@modelcontextprotocol/server-memory`` (2026.8.31): the SDK client gets
``notifications/tools/list_changed`` and lists the memory tools without reconnecting, and
calls one. Then a call to memory is put in flight (the memory process is stopped with
SIGSTOP first, so the call is certainly still in flight: the router's metrics say so), the
config is rewritten without memory, the client gets list_changed again and a list without
memory's tools, the router reports memory as draining, and once the process is continued
(SIGCONT) the call completes with memory's answer and memory is stopped.

Every wait is for a fact (a notification, a metric, a status field), bounded by a timeout
that fails the test. A missing binary, node or server-memory fails, never skips.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import urllib.request
from pathlib import Path

import anyio
import mcp.types as types
import pytest

from test_python_sdk import REPO, Recorder, connect, diagnostics, router_binary, text_of, yaml_str

MEMORY_PKG = REPO / ".deps" / "node" / "node_modules" / "@modelcontextprotocol" / "server-memory"
MEMORY_VERSION = "2026.8.31"
TEST_TIMEOUT_S = 90
MEMORY_TOOLS = {"create_entities", "read_graph", "search_nodes"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def memory_entry() -> Path:
    manifest = MEMORY_PKG / "package.json"
    if not manifest.is_file():
        pytest.fail(f"server-memory is not installed at {MEMORY_PKG}: run scripts/deps.sh")
    meta = json.loads(manifest.read_text())
    assert meta["version"] == MEMORY_VERSION, f"server-memory {meta['version']} installed"
    entry = MEMORY_PKG / meta["bin"]["mcp-server-memory"]
    assert entry.is_file(), entry
    return entry


def config_text(router_bin: Path, memory_file: Path | None) -> str:
    text = (
        "router:\n"
        "  request_timeout_ms: 30000\n"
        "backends:\n"
        "  - name: alpha\n"
        f"    command: {yaml_str(str(router_bin))}\n"
        f"    args: [{', '.join(map(yaml_str, ['test-server', '--name', 'alpha']))}]\n"
    )
    if memory_file is not None:
        text += (
            "  - name: memory\n"
            "    command: node\n"
            f"    args: [{yaml_str(str(memory_entry()))}]\n"
            f"    env: {{MEMORY_FILE_PATH: {yaml_str(str(memory_file))}}}\n"
        )
    return text


def children_of(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry.name))
    return out


def serve_pid(config: Path) -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"serve" in cmd and str(config).encode() in cmd:
                return int(entry.name)
    raise AssertionError("the mcprouter serve process was not found")


def memory_pid(serve: int, memory_file: Path) -> int:
    for pid in children_of(serve):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if str(memory_file).encode() in env:
            return pid
    raise AssertionError("server-memory's process was not found among serve's children")


async def until(fact, what: str, timeout: float = 30) -> object:
    """Polls `fact()` (a blocking read of the router's own report) until it is truthy."""
    with anyio.move_on_after(timeout):
        while True:
            value = await anyio.to_thread.run_sync(fact)
            if value:
                return value
            await anyio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.mark.anyio
async def test_sdk_sees_a_backend_added_and_removed_by_reload(tmp_path: Path) -> None:
    router_bin = router_binary()
    if shutil.which("node") is None:
        pytest.fail("node is not on PATH")
    memory_entry()
    config = tmp_path / "mcprouter.yaml"
    memory_file = tmp_path / "memory.jsonl"
    config.write_text(config_text(router_bin, None))
    recorder = Recorder()
    errlog = tmp_path / "mcprouter.stderr"
    args = ["serve", "--config", str(config), "--watch", "--metrics-listen", "127.0.0.1:0"]
    with diagnostics(errlog, "mcprouter"), anyio.fail_after(TEST_TIMEOUT_S):
        async with connect(str(router_bin), args, recorder, errlog, roots=False) as session:
            await session.initialize()
            url = await until(
                lambda: (m := re.search(r"metrics listening on (http://\S+)", errlog.read_text())) and m.group(1),
                "the metrics address",
            )

            def get(path: str) -> str:
                with urllib.request.urlopen(f"{url}{path}", timeout=5) as r:
                    return r.read().decode()

            names = {t.name for t in (await session.list_tools()).tools}
            assert "whoami" in names and not MEMORY_TOOLS & names

            # Add server-memory: the client hears of it and lists it, without reconnecting.
            changed = lambda: recorder.count(types.ToolListChangedNotification)  # noqa: E731
            before = changed()
            config.write_text(config_text(router_bin, memory_file))
            await recorder.wait_until(lambda: changed() > before, 30, "list_changed after adding memory")
            names = {t.name for t in (await session.list_tools()).tools}
            assert MEMORY_TOOLS <= names, sorted(names)
            assert json.loads(get("/status"))["config"]["generation"] == 2
            made = await session.call_tool(
                "create_entities",
                {"entities": [{"name": "reload", "entityType": "test", "observations": ["hot"]}]},
            )
            assert not made.is_error, text_of(made)

            # A call in flight on memory: its process is paused so the call cannot finish yet.
            pid = memory_pid(serve_pid(config), memory_file)
            os.kill(pid, signal.SIGSTOP)
            result: dict[str, types.CallToolResult] = {}
            try:
                async with anyio.create_task_group() as tg:

                    async def in_flight() -> None:
                        result["graph"] = await session.call_tool("read_graph", {})

                    tg.start_soon(in_flight)
                    await until(
                        lambda: 'mcprouter_in_flight{backend="memory"} 1' in get("/metrics"),
                        "the call in flight on memory",
                    )
                    # Remove memory while its call is in flight.
                    before = changed()
                    config.write_text(config_text(router_bin, None))
                    await recorder.wait_until(lambda: changed() > before, 30, "list_changed after removing memory")
                    names = {t.name for t in (await session.list_tools()).tools}
                    assert not MEMORY_TOOLS & names, sorted(names)
                    status = json.loads(get("/status"))
                    assert status["config"]["generation"] == 3
                    assert status["config"]["draining_backends"] == 1, status["config"]
                    assert "graph" not in result, "the call waited for the paused server"
                    os.kill(pid, signal.SIGCONT)
            finally:
                os.kill(pid, signal.SIGCONT)
            graph = result["graph"]
            assert not graph.is_error, text_of(graph)
            assert "reload" in text_of(graph), text_of(graph)
            await until(
                lambda: json.loads(get("/status"))["config"]["draining_backends"] == 0,
                "memory stopped after its drain",
            )
            assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
            whoami = await session.call_tool("whoami", {})
            assert text_of(whoami) == "alpha"
