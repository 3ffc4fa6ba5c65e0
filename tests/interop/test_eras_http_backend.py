"""Interop: the era of a Streamable HTTP backend, probed like a stdio one.

Behind ``mcprouter serve`` (stdio) or ``mcprouter check``:

* ``mh``: ``tests/interop/fixtures/modern_server.py NAME --http``, the Python SDK 2.3's
  ``MCPServer`` over Streamable HTTP: it answers 2026-07-28 POSTs statelessly (it routes on
  the ``MCP-Protocol-Version`` header) and ``initialize`` with a session. The router's
  ``server/discover`` probe must find it modern and then speak the modern HTTP shape to it
  (headers per POST, no session, no GET stream, listens on threads of their own).
* ``everything``: ``@modelcontextprotocol/server-everything streamableHttp`` (legacy only):
  the probe is refused in a way no modern server refuses, so the router falls back to
  ``initialize``.

The SDK client is the router's client, in both modes. Each wait is for a fact.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import anyio
import mcp_types as types
import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_eras import MODERN_SERVER, SAMPLED, Callbacks, text_of, wait_for  # noqa: E402
from test_python_sdk import LOOPBACK_PRELOAD, everything_entry, router_binary, yaml_str  # noqa: E402
from test_transports import free_port, wait_listening  # noqa: E402

REQUEST_TIMEOUT_S = 30
TEST_TIMEOUT_S = 90


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@contextmanager
def modern_http(name: str, logdir: Path) -> Iterator[str]:
    """The SDK's modern server over HTTP; yields its URL (announced on its stdout)."""
    proc = subprocess.Popen(
        [sys.executable, str(MODERN_SERVER), name, "--http"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=(logdir / f"{name}.err").open("w"),
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on http://"), f"{line!r}; see {logdir / f'{name}.err'}"
        yield line.removeprefix("listening on ")
    finally:
        proc.kill()
        proc.wait(timeout=10)


@contextmanager
def everything_http(logdir: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        ["node", "--require", str(LOOPBACK_PRELOAD), str(everything_entry()), "streamableHttp"],
        env={**os.environ, "PORT": str(port)},
        stdin=subprocess.DEVNULL,
        stdout=(logdir / "everything.out").open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_listening(port, proc, "server-everything streamableHttp")
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.kill()
        proc.wait(timeout=10)


def write_config(path: Path, backends: dict[str, tuple[str, str]]) -> None:
    """`backends`: name → (url, extra YAML keys on one line, or "")."""
    lines = ["router:", "  name: mcprouter", "  request_timeout_ms: 30000", "  init_timeout_ms: 30000", "backends:"]
    for name, (url, extra) in backends.items():
        lines += [f"  - name: {name}", f"    url: {yaml_str(url)}"]
        if extra:
            lines.append(f"    {extra}")
    path.write_text("\n".join(lines) + "\n")


def check_status(cfg: Path) -> dict[str, dict[str, Any]]:
    out = subprocess.run(
        [str(router_binary()), "check", "--config", str(cfg), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return {b["name"]: b for b in json.loads(out.stdout)["backends"]}


@asynccontextmanager
async def router_client(cfg: Path, mode: str, calls: Callbacks, message_handler: Any = None) -> AsyncIterator[Client]:
    params = StdioServerParameters(
        command=str(router_binary()), args=["serve", "--config", str(cfg)], env=dict(os.environ)
    )
    client = Client(
        params,
        mode=mode,
        read_timeout_seconds=REQUEST_TIMEOUT_S,
        client_info=types.Implementation(name="eras-http-test", version="0"),
        message_handler=message_handler,
        cache=None,
        sampling_callback=calls.sampling_callback,
        elicitation_callback=calls.elicitation_callback,
        list_roots_callback=calls.list_roots_callback,
    )
    async with client:
        yield client


def test_http_backends_are_probed_modern_and_legacy(tmp_path: Path) -> None:
    """`era: auto` over Streamable HTTP: the SDK's modern server is found modern (no
    initialize: it reports no session), server-everything legacy, whether the transport is
    named or left to `auto`; a pinned `era: modern` reaches the modern server too."""
    with modern_http("mh", tmp_path) as mh, everything_http(tmp_path) as ev:
        cfg = tmp_path / "router.yaml"
        write_config(
            cfg,
            {
                "mh": (mh, "transport: streamable_http"),
                "mh_auto": (mh, ""),
                "mh_pinned": (mh, "era: modern"),
                "everything": (ev, "transport: streamable_http"),
                "everything_auto": (ev, ""),
            },
        )
        status = check_status(cfg)
        for name in ("mh", "mh_auto", "mh_pinned"):
            b = status[name]
            assert (b["state"], b["era"], b["protocol_version"]) == ("ready", "modern", "2026-07-28"), b
            assert b["tools"] >= 10, b
        for name in ("everything", "everything_auto"):
            b = status[name]
            assert (b["state"], b["era"]) == ("ready", "legacy"), b
            assert b["protocol_version"] != "2026-07-28", b


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_either_client_reaches_a_modern_http_backend(tmp_path: Path, mode: str) -> None:
    """tools/list, tools/call (Mcp-Name), resources/read (Mcp-Name from the uri),
    prompts/get and an MRTR sampling round, through a modern HTTP backend, for a modern
    client (its `input_required` passes through) and a legacy one (the router asks it with
    sampling/createMessage and retries with the answer)."""
    calls = Callbacks()
    with modern_http("mh", tmp_path) as mh, everything_http(tmp_path) as ev:
        cfg = tmp_path / "router.yaml"
        write_config(cfg, {"mh": (mh, ""), "everything": (ev, "")})
        with anyio.fail_after(TEST_TIMEOUT_S):
            async with router_client(cfg, mode, calls) as c:
                names = {t.name for t in (await c.list_tools()).tools}
                assert {"era-echo", "era-sample", "echo", "get-sum"} <= names, names
                r = await c.call_tool("era-echo", {"message": "over http"})
                assert "mh echo: over http (version 2026-07-28)" in text_of(r), text_of(r)
                r = await c.call_tool("get-sum", {"a": 2, "b": 3})
                assert "5" in text_of(r), text_of(r)
                contents = (await c.read_resource("era://static")).contents
                assert any("static text of mh" in getattr(x, "text", "") for x in contents), contents
                prompt = await c.get_prompt("era-greet", {"who": "Ada"})
                assert "Greet Ada from mh" in json.dumps(prompt.model_dump(mode="json"))
                r = await c.call_tool("era-sample", {"prompt": f"{mode} asks over http"})
                assert f"sampled: {SAMPLED}" in text_of(r), text_of(r)
                assert len(calls.sampling) == 1
                first = calls.sampling[0].messages[0].content
                assert isinstance(first, types.TextContent) and first.text == f"{mode} asks over http"


@pytest.mark.anyio
async def test_a_modern_http_backends_errors_are_answers(tmp_path: Path) -> None:
    """A client that declares no sampling: the modern HTTP backend answers the call 400 with
    -32021, which reaches the client as that error (not a transport failure), and the
    backend keeps serving."""
    from mcp.shared.exceptions import MCPError

    with modern_http("mh", tmp_path) as mh:
        cfg = tmp_path / "router.yaml"
        write_config(cfg, {"mh": (mh, "")})
        params = StdioServerParameters(
            command=str(router_binary()), args=["serve", "--config", str(cfg)], env=dict(os.environ)
        )
        with anyio.fail_after(TEST_TIMEOUT_S):
            async with Client(params, mode="legacy", read_timeout_seconds=REQUEST_TIMEOUT_S, cache=None) as c:
                for _ in range(6):  # past the breaker's default failure threshold, were it counted
                    with pytest.raises(MCPError) as raised:
                        await c.call_tool("era-sample", {"prompt": "nobody to ask"})
                    assert raised.value.code == -32021, raised.value.error
                    assert raised.value.data == {"requiredCapabilities": {"sampling": {}}}, raised.value.error
                r = await c.call_tool("era-echo", {"message": "still here"})
                assert "still here" in text_of(r), text_of(r)


@pytest.mark.anyio
@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")
async def test_list_changes_and_updates_come_through_listens_on_a_modern_http_backend(tmp_path: Path) -> None:
    """The router's own subscriptions/listen on the HTTP backend (its tools listChanged) and
    one per subscribed URI carry tools/list_changed and resources/updated to a legacy client,
    while calls keep flowing beside the long listen POSTs."""
    seen: list[Any] = []

    async def handler(message: Any) -> None:
        seen.append(message)

    calls = Callbacks()
    with modern_http("mh", tmp_path) as mh:
        cfg = tmp_path / "router.yaml"
        write_config(cfg, {"mh": (mh, "")})
        with anyio.fail_after(TEST_TIMEOUT_S):
            async with router_client(cfg, "legacy", calls, message_handler=handler) as c:
                await c.session.subscribe_resource("era://static")

                def updated() -> bool:
                    return any(
                        isinstance(m, types.ResourceUpdatedNotification) and str(m.params.uri) == "era://static"
                        for m in seen
                    )

                # The listen is opened asynchronously: touch until its stream carries the update.
                with anyio.move_on_after(20):
                    while not updated():
                        await c.call_tool("era-touch", {})
                        with anyio.move_on_after(0.5):
                            while not updated():
                                await anyio.sleep(0.05)
                assert updated(), "resources/updated for era://static"
                for i in range(5):
                    r = await c.call_tool("era-echo", {"message": f"beside the listens {i}"})
                    assert f"beside the listens {i}" in text_of(r)
                await c.call_tool("era-grow", {})
                await wait_for(
                    lambda: any(isinstance(m, types.ToolListChangedNotification) for m in seen), "tools/list_changed"
                )
                names = {t.name for t in (await c.list_tools()).tools}
                assert "era-grown" in names, names
