"""Interop: the official Python MCP SDK's legacy HTTP+SSE client (``mcp.client.sse.sse_client``,
``mcp`` 2.3.0) against ``mcprouter serve --http`` (its ``/sse`` + ``/messages`` endpoints),
fronting ``@modelcontextprotocol/server-everything`` over stdio and two test servers
(alpha, beta).

Two SSE clients run at once, each its own router session. Each lists tools, calls
server-everything's ``echo`` through the router, and calls a tool that asks the client for
sampling: client A through ``alpha__sample``, client B through ``beta__sample``,
concurrently. Each client's sampling callback answers with its own text, so a result naming
the other client's text (or a callback firing on the wrong client) shows a request relayed
to the wrong stream.

The binary is ``$MCPROUTER_BIN`` or ``<repo>/target/debug/mcprouter``; a missing binary or
server-everything fails the test (it never skips).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import anyio
import mcp.types as types
import pytest
from mcp import ClientSession
from mcp.client.session import ClientRequestContext
from mcp.client.sse import sse_client

from test_python_sdk import everything_command, router_binary, serve_http, text_of, wait_for_tools, yaml_str

REQUEST_TIMEOUT_S = 20


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def start_gateway(tmp: Path) -> tuple[subprocess.Popen[str], str]:
    binary = router_binary()
    node_cmd, node_args = everything_command()
    cfg = tmp / "gateway.yaml"
    cfg.write_text(
        "router:\n"
        "  init_timeout_ms: 15000\n"
        "backends:\n"
        + "".join(
            f"  - name: {n}\n    command: {yaml_str(str(binary))}\n    args: [test-server, --name, {n}]\n"
            for n in ("alpha", "beta")
        )
        + "  - name: everything\n"
        f"    command: {yaml_str(node_cmd)}\n"
        f"    args: [{', '.join(map(yaml_str, node_args))}]\n"
    )
    return serve_http(cfg, r"legacy HTTP\+SSE clients: (http://\S+)")


class Client:
    def __init__(self, name: str) -> None:
        self.name = name
        self.sampled: list[str] = []

    async def sampling_callback(
        self, context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        self.sampled.append(str(params.messages[0].content))
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text=f"answer-from-{self.name}"), model="m"
        )

    async def run(self, url: str, backend: str, results: dict[str, object]) -> None:
        async with sse_client(url) as (read, write):
            async with ClientSession(
                read, write, read_timeout_seconds=REQUEST_TIMEOUT_S, sampling_callback=self.sampling_callback
            ) as session:
                await session.initialize()
                await wait_for_tools(
                    session, {"everything__echo", "alpha__echo", "alpha__sample", "beta__sample"}, REQUEST_TIMEOUT_S
                )
                echo = await session.call_tool("everything__echo", {"message": f"hi {self.name}"})
                assert text_of(echo) == f"Echo: hi {self.name}", echo
                echo = await session.call_tool(f"{backend}__echo", {"message": f"hi {self.name}"})
                assert text_of(echo) == f"hi {self.name}", echo
                sampled = await session.call_tool(f"{backend}__sample", {"prompt": f"from {self.name}"})
                results[self.name] = text_of(sampled)


@pytest.mark.anyio
async def test_two_legacy_sse_clients_each_get_their_own_sampling() -> None:
    with tempfile.TemporaryDirectory() as t:
        proc, url = start_gateway(Path(t))
        try:
            assert url.endswith("/sse"), url
            a, b = Client("A"), Client("B")
            results: dict[str, object] = {}
            with anyio.fail_after(90):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(a.run, url, "alpha", results)
                    tg.start_soon(b.run, url, "beta", results)
            assert results == {"A": "answer-from-A", "B": "answer-from-B"}, results
            assert len(a.sampled) == 1 and "from A" in a.sampled[0], a.sampled
            assert len(b.sampled) == 1 and "from B" in b.sampled[0], b.sampled
        finally:
            proc.terminate()
            assert proc.wait(timeout=30) == 0, "the gateway stops cleanly on SIGTERM"
