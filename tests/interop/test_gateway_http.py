"""Interop: the official Python MCP SDK (``mcp`` 2.3.0) over Streamable HTTP against
``mcprouter serve --http`` (gateway mode), fronting two test servers (alpha, beta).

Two clients run at once, each in its own HTTP session. Each lists tools, calls echo, follows
progress, and calls a tool that asks the client for sampling: client A through
``alpha__sample``, client B through ``beta__sample``, concurrently. Each client's sampling
callback answers with its own text, so a tool result naming the other client's text (or a
callback firing on the wrong client) shows a request relayed to the wrong session.

The binary is ``$MCPROUTER_BIN`` or ``<repo>/target/debug/mcprouter``; a missing binary
fails the test (it never skips).
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import anyio
import mcp.types as types
import pytest
from mcp import ClientSession
from mcp.client.session import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client
from test_python_sdk import router_binary, serve_http

REQUEST_TIMEOUT_S = 20


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def start_gateway(tmp: Path) -> tuple[subprocess.Popen[str], str]:
    binary = router_binary()
    backends = "".join(
        f"  - name: {n}\n    command: {binary}\n    args: [test-server, --name, {n}]\n" for n in ("alpha", "beta")
    )
    cfg = tmp / "gateway.yaml"
    cfg.write_text("backends:\n" + backends)
    return serve_http(cfg)


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
        async with streamable_http_client(url) as (read, write):
            async with ClientSession(read, write, sampling_callback=self.sampling_callback) as session:
                await session.initialize()
                tools = await session.list_tools()
                names = {t.name for t in tools.tools}
                assert {"alpha__echo", "beta__echo", "alpha__sample", "beta__sample"} <= names, names
                echo = await session.call_tool(f"{backend}__echo", {"message": f"hi {self.name}"})
                assert echo.content[0].text == f"hi {self.name}"  # type: ignore[union-attr]
                progress: list[float] = []

                async def on_progress(p: float, total: float | None, message: str | None) -> None:
                    progress.append(p)

                done = await session.call_tool(
                    f"{backend}__progress",
                    {"steps": 3},
                    read_timeout_seconds=REQUEST_TIMEOUT_S,
                    progress_callback=on_progress,
                )
                assert done.content[0].text == "done 3"  # type: ignore[union-attr]
                # Progress callbacks run in spawned tasks: wait for them, bounded.
                with anyio.fail_after(REQUEST_TIMEOUT_S):
                    while len(progress) < 3:
                        await anyio.sleep(0.01)
                sampled = await session.call_tool(
                    f"{backend}__sample", {"prompt": f"from {self.name}"}, read_timeout_seconds=REQUEST_TIMEOUT_S
                )
                results[self.name] = sampled.content[0].text  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_two_clients_over_http_each_get_their_own_sampling() -> None:
    with tempfile.TemporaryDirectory() as t:
        proc, url = start_gateway(Path(t))
        try:
            a, b = Client("A"), Client("B")
            results: dict[str, object] = {}
            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(a.run, url, "alpha", results)
                    tg.start_soon(b.run, url, "beta", results)
            assert results == {"A": "answer-from-A", "B": "answer-from-B"}, results
            assert len(a.sampled) == 1 and "from A" in a.sampled[0], a.sampled
            assert len(b.sampled) == 1 and "from B" in b.sampled[0], b.sampled
        finally:
            proc.terminate()
            assert proc.wait(timeout=30) == 0, "the gateway stops cleanly on SIGTERM"
