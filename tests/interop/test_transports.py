"""Interop: one ``mcprouter serve`` config mixing all four transports, used by the official
Python SDK client over stdio.

Backends (all on 127.0.0.1, ephemeral ports):

* ``local``: ``mcprouter test-server`` over stdio;
* ``http``: ``@modelcontextprotocol/server-everything streamableHttp`` (``/mcp``);
* ``sse``: ``@modelcontextprotocol/server-everything sse`` (``/sse`` + ``/message``);
* ``ws``: ``mcprouter test-server --ws 127.0.0.1:0`` (no maintained WebSocket MCP server is
  installable here: the Python SDK dropped its server in 2.x, supergateway binds every
  interface).

``echo`` is served by all four, so each gets its backend's prefix. Helpers, timeouts and the
server-everything facts are those of ``test_python_sdk.py``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import anyio
import pytest
from contextlib import contextmanager

from test_python_sdk import (
    LOOPBACK_PRELOAD,
    TEST_TIMEOUT_S,
    Recorder,
    check_progress,
    check_sampling,
    connect,
    diagnostics,
    everything_entry,
    router_binary,
    text_of,
    wait_for_tools,
    yaml_str,
)

START_TIMEOUT_S = 20


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, what: str) -> None:
    end = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"{what} did not listen on 127.0.0.1:{port} within {START_TIMEOUT_S}s")


@contextmanager
def servers(router_bin: Path, logdir: Path) -> Iterator[dict[str, str]]:
    procs: list[subprocess.Popen] = []
    try:
        urls: dict[str, str] = {}
        for mode, path in (("streamableHttp", "/mcp"), ("sse", "/sse")):
            port = free_port()
            proc = subprocess.Popen(
                ["node", "--require", str(LOOPBACK_PRELOAD), str(everything_entry()), mode],
                env={**os.environ, "PORT": str(port)},
                stdin=subprocess.DEVNULL,
                stdout=(logdir / f"{mode}.out").open("w"),
                stderr=subprocess.STDOUT,
            )
            procs.append(proc)
            wait_listening(port, proc, f"server-everything {mode}")
            urls[mode] = f"http://127.0.0.1:{port}{path}"
        ws = subprocess.Popen(
            [str(router_bin), "test-server", "--ws", "127.0.0.1:0", "--name", "wsrv"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(ws)
        assert ws.stderr is not None
        line = ws.stderr.readline().strip()
        assert line.startswith("listening on ws://"), line
        urls["ws"] = line.removeprefix("listening on ") + "/mcp"
        yield urls
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=10)


@pytest.mark.anyio
async def test_sdk_through_router_with_all_four_transports(tmp_path: Path) -> None:
    router_bin = router_binary()
    with servers(router_bin, tmp_path) as urls:
        config = tmp_path / "mcprouter.yaml"
        config.write_text(
            "router:\n"
            "  init_timeout_ms: 15000\n"
            "backends:\n"
            "  - name: local\n"
            f"    command: {yaml_str(str(router_bin))}\n"
            f"    args: [{yaml_str('test-server')}, {yaml_str('--name')}, {yaml_str('local')}]\n"
            "  - name: http\n"
            "    transport: streamable_http\n"
            f"    url: {yaml_str(urls['streamableHttp'])}\n"
            "  - name: sse\n"
            "    transport: sse\n"
            f"    url: {yaml_str(urls['sse'])}\n"
            "  - name: ws\n"
            "    transport: websocket\n"
            f"    url: {yaml_str(urls['ws'])}\n"
        )
        recorder = Recorder()
        errlog = tmp_path / "mcprouter.stderr"
        with diagnostics(errlog, "mcprouter"), anyio.fail_after(TEST_TIMEOUT_S):
            async with connect(
                str(router_bin), ["serve", "--config", str(config)], recorder, errlog, roots=False
            ) as session:
                await session.initialize()
                await wait_for_tools(
                    session,
                    {
                        "local__echo",
                        "http__echo",
                        "sse__echo",
                        "ws__echo",
                        "http__trigger-long-running-operation",
                        "sse__trigger-sampling-request",
                        "http__trigger-sampling-request",
                    },
                    timeout=15,
                )
                for name, expected in (
                    ("local__echo", "via local"),
                    ("ws__echo", "via ws"),
                    ("http__echo", "Echo: via http"),
                    ("sse__echo", "Echo: via sse"),
                ):
                    via = name.split("__")[0]
                    result = await session.call_tool(name, {"message": f"via {via}"})
                    assert not result.is_error, text_of(result)
                    assert text_of(result) == expected, (name, text_of(result))
                whoami = await session.call_tool("ws__whoami", {})
                assert text_of(whoami) == "wsrv"
                total = await session.call_tool("http__get-sum", {"a": 2, "b": 40})
                assert text_of(total) == "The sum of 2 and 40 is 42."
                await check_progress(session, "http__trigger-long-running-operation")
                await check_progress(session, "sse__trigger-long-running-operation")
                await check_sampling(session, "http__trigger-sampling-request", recorder)
                await check_sampling(session, "sse__trigger-sampling-request", recorder)
                errors = [n for n in recorder.notifications if isinstance(n, Exception)]
                assert not errors, errors
