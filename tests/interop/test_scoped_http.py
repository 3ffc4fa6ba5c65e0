"""Interop: per-session backends (``scope: session``, issue #13) seen by the official Python
MCP SDK (``mcp`` 2.3.0) over Streamable HTTP through ``mcprouter serve --http``.

Two clients hold sessions at once. The backend ``desk`` is per session: each client's calls
reach a process of its own (its ``pid`` tool answers that process's id, its ``counter``
resource counts that process's reads), while the shared backend ``hall`` answers both from one
process. When a client ends its session (DELETE), its process stops.

The binary is ``$MCPROUTER_BIN`` or ``<repo>/target/debug/mcprouter``; a missing binary
fails the test (it never skips).
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from test_python_sdk import router_binary, serve_http



@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def start_gateway(tmp: Path) -> tuple[subprocess.Popen[str], str]:
    binary = router_binary()
    cfg = tmp / "gateway.yaml"
    cfg.write_text(
        "backends:\n"
        f"  - name: desk\n    command: {binary}\n    args: [test-server, --name, desk]\n    scope: session\n"
        f"  - name: hall\n    command: {binary}\n    args: [test-server, --name, hall]\n"
    )
    return serve_http(cfg)


def alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return ") Z " not in stat.read_text()
    except FileNotFoundError:
        return False


async def text_of(session: ClientSession, tool: str) -> str:
    r = await session.call_tool(tool, {})
    assert not r.is_error, r
    return r.content[0].text  # type: ignore[union-attr]


async def counter(session: ClientSession) -> str:
    r = await session.read_resource("test://desk/counter")
    return r.contents[0].text  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_each_http_session_gets_its_own_desk_and_shares_the_hall() -> None:
    with tempfile.TemporaryDirectory() as t:
        proc, url = start_gateway(Path(t))
        try:
            with anyio.fail_after(60):
                async with streamable_http_client(url) as (ra, wa), streamable_http_client(url) as (rb, wb):
                    async with ClientSession(ra, wa) as a, ClientSession(rb, wb) as b:
                        await a.initialize()
                        await b.initialize()
                        desk_a, desk_b = await text_of(a, "desk__pid"), await text_of(b, "desk__pid")
                        assert desk_a != desk_b, "two sessions share a per-session backend"
                        assert await text_of(a, "desk__pid") == desk_a, "a session lost its process"
                        assert await text_of(a, "hall__pid") == await text_of(b, "hall__pid")
                        assert [await counter(a), await counter(a), await counter(b)] == ["1", "2", "1"]
                        assert alive(int(desk_a)) and alive(int(desk_b))
                # Leaving the transports ends both HTTP sessions (the SDK sends DELETE).
                with anyio.fail_after(30):
                    while alive(int(desk_a)) or alive(int(desk_b)):
                        await anyio.sleep(0.01)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
