"""Interop: both protocol eras, on both sides of ``mcprouter serve``.

The Python SDK 2.3 ``mcp.client.Client`` is the client: ``mode="auto"`` probes
``server/discover`` and, when the router answers it, speaks 2026-07-28 (each request carries
its ``_meta`` envelope, results carry ``resultType``); ``mode="legacy"`` does the
``initialize`` handshake. Behind the router:

* ``modern``: ``tests/interop/fixtures/modern_server.py``, a dual-era server built with the
  SDK's ``MCPServer``; the router's ``server/discover`` probe finds it modern.
* ``everything``: ``@modelcontextprotocol/server-everything`` (legacy only: it answers the
  probe -32601, so the router falls back to ``initialize``).

Each test names the cell of the README's era table it backs.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import anyio
import mcp_types as types
import pytest
from mcp.client import Client, ClientRequestContext
from mcp.client.stdio import StdioServerParameters

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_python_sdk import everything_command, router_binary, serve_http, yaml_str  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MODERN_SERVER = Path(__file__).resolve().parent / "fixtures" / "modern_server.py"
REQUEST_TIMEOUT_S = 30
TEST_TIMEOUT_S = 90
SAMPLED = "sampled by the client"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def write_config(path: Path, *, modern_era: str = "auto") -> None:
    node_cmd, node_args = everything_command()
    path.write_text(
        "router:\n"
        "  name: mcprouter\n"
        "  request_timeout_ms: 30000\n"
        "  init_timeout_ms: 60000\n"
        "backends:\n"
        "  - name: modern\n"
        f"    command: {yaml_str(sys.executable)}\n"
        f"    args: [{yaml_str(str(MODERN_SERVER))}, modern]\n"
        f"    era: {modern_era}\n"
        "  - name: everything\n"
        f"    command: {yaml_str(node_cmd)}\n"
        f"    args: [{', '.join(map(yaml_str, node_args))}]\n"
    )


class Callbacks:
    """What the router asks of the client: sampling, elicitation, roots, each counted."""

    def __init__(self) -> None:
        self.sampling: list[Any] = []
        self.elicitation: list[Any] = []
        self.roots = 0

    async def sampling_callback(self, context: ClientRequestContext, params: types.CreateMessageRequestParams):
        self.sampling.append(params)
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text=SAMPLED), model="test-model"
        )

    async def elicitation_callback(self, context: ClientRequestContext, params: Any):
        self.elicitation.append(params)
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    async def list_roots_callback(self, context: ClientRequestContext):
        self.roots += 1
        return types.ListRootsResult(roots=[types.Root(uri="file:///tmp/eras-root", name="eras")])


@asynccontextmanager
async def router_client(
    tmp_path: Path,
    mode: str,
    calls: Callbacks | None,
    message_handler: Any = None,
    client_args: dict[str, Any] | None = None,
    **config: str,
) -> AsyncIterator[Client]:
    """The router over stdio and an SDK client of it; `calls=None`: a client that declares
    no sampling, elicitation or roots."""
    cfg = tmp_path / "router.yaml"
    write_config(cfg, **config)
    params = StdioServerParameters(
        command=str(router_binary()), args=["serve", "--config", str(cfg)], env=dict(os.environ)
    )
    callbacks: dict[str, Any] = {}
    if calls is not None:
        callbacks = {
            "sampling_callback": calls.sampling_callback,
            "elicitation_callback": calls.elicitation_callback,
            "list_roots_callback": calls.list_roots_callback,
        }
    client = Client(
        params,
        mode=mode,
        read_timeout_seconds=REQUEST_TIMEOUT_S,
        client_info=types.Implementation(name="eras-test", version="0"),
        message_handler=message_handler,
        cache=None,
        **callbacks,
        **(client_args or {}),
    )
    async with client:
        yield client


def text_of(result: Any) -> str:
    return "".join(c.text for c in result.content if isinstance(c, types.TextContent))


# ------------------------------------------------------------------ modern client (auto mode)


@pytest.mark.anyio
async def test_modern_client_discovers_the_router_and_lists_both_eras(tmp_path: Path) -> None:
    """Cells: discover / lists — modern client × modern and legacy backends."""
    calls = Callbacks()
    with anyio.fail_after(TEST_TIMEOUT_S):
        async with router_client(tmp_path, "auto", calls) as c:
            assert c.protocol_version == "2026-07-28", c.protocol_version
            assert c.server_info is not None and c.server_info.name == "mcprouter"
            assert c.server_capabilities.tools is not None
            assert "modern speaks both eras" in (c.instructions or "")
            names = {t.name for t in (await c.list_tools()).tools}
            assert {"era-echo", "era-sample", "echo", "get-sum"} <= names, names
            # A modern backend sees a modern request (the router forwards the envelope).
            r = await c.call_tool("era-echo", {"message": "hi"})
            assert "version 2026-07-28" in text_of(r), text_of(r)
            # A legacy backend answers a modern client.
            r = await c.call_tool("get-sum", {"a": 2, "b": 3})
            assert "5" in text_of(r), text_of(r)
            contents = (await c.read_resource("era://static")).contents
            assert any("static text of modern" in getattr(x, "text", "") for x in contents)
            prompt = await c.get_prompt("era-greet", {"who": "Ada"})
            assert "Ada" in json.dumps(prompt.model_dump(mode="json"))


# ------------------------------------------------------------------ legacy client


@pytest.mark.anyio
async def test_legacy_client_reaches_a_modern_backend(tmp_path: Path) -> None:
    """Cells: lists / calls / read / prompt — legacy client × modern backend."""
    calls = Callbacks()
    with anyio.fail_after(TEST_TIMEOUT_S):
        async with router_client(tmp_path, "legacy", calls) as c:
            assert c.protocol_version == "2025-11-25", c.protocol_version
            names = {t.name for t in (await c.list_tools()).tools}
            assert {"era-echo", "echo"} <= names, names
            r = await c.call_tool("era-echo", {"message": "hi"})
            # The router speaks 2026-07-28 to the modern backend on the legacy client's behalf.
            assert "version 2026-07-28" in text_of(r), text_of(r)
            r = await c.call_tool("echo", {"message": "legacy"})
            assert "legacy" in text_of(r)
            contents = (await c.read_resource("era://static")).contents
            assert any("static text of modern" in getattr(x, "text", "") for x in contents)


@pytest.mark.anyio
async def test_a_backend_pinned_legacy_is_not_probed(tmp_path: Path) -> None:
    """Config `era: legacy`: the dual-era fixture is reached through `initialize`."""
    calls = Callbacks()
    with anyio.fail_after(TEST_TIMEOUT_S):
        async with router_client(tmp_path, "auto", calls, modern_era="legacy") as c:
            r = await c.call_tool("era-echo", {"message": "hi"})
            assert "version 2025-11-25" in text_of(r), text_of(r)


# ------------------------------------------------------------------ sampling / elicitation / roots across eras


@pytest.mark.anyio
async def test_legacy_client_answers_a_modern_backends_input_requests(tmp_path: Path) -> None:
    """Cells: sampling / elicitation / roots — legacy client × modern backend.

    The modern backend answers `input_required`; the router asks the legacy client with
    JSON-RPC requests and retries the call with the answers and the backend's requestState."""
    calls = Callbacks()
    with anyio.fail_after(TEST_TIMEOUT_S):
        async with router_client(tmp_path, "legacy", calls) as c:
            r = await c.call_tool("era-sample", {"prompt": "legacy asks"})
            assert f"sampled: {SAMPLED}" in text_of(r), text_of(r)
            assert len(calls.sampling) == 1
            first = calls.sampling[0].messages[0].content
            assert isinstance(first, types.TextContent) and first.text == "legacy asks"
            r = await c.call_tool("era-elicit", {})
            assert "hello Ada" in text_of(r), text_of(r)
            assert len(calls.elicitation) == 1
            r = await c.call_tool("era-roots", {})
            assert "file:///tmp/eras-root" in text_of(r), text_of(r)


@pytest.mark.anyio
async def test_modern_client_answers_a_legacy_backends_requests_through_input_required(tmp_path: Path) -> None:
    """Cells: sampling / elicitation — modern client × legacy backend.

    server-everything sends sampling/createMessage and elicitation/create mid-call; the
    router answers the modern client's call `input_required` with a requestState of its own,
    keeps the backend's call waiting, and delivers the client's inputResponses to it."""
    calls = Callbacks()
    with anyio.fail_after(TEST_TIMEOUT_S):
        async with router_client(tmp_path, "auto", calls) as c:
            assert c.protocol_version == "2026-07-28"
            r = await c.call_tool("trigger-sampling-request", {"prompt": "modern asks", "maxTokens": 16})
            assert SAMPLED in text_of(r), text_of(r)
            assert len(calls.sampling) == 1
            first = calls.sampling[0].messages[0].content
            assert isinstance(first, types.TextContent) and "modern asks" in first.text
            r = await c.call_tool("trigger-elicitation-request", {})
            assert "Ada" in text_of(r), text_of(r)
            assert len(calls.elicitation) == 1


@pytest.mark.anyio
async def test_modern_client_and_modern_backend_pass_input_required_through(tmp_path: Path) -> None:
    """Cells: sampling / elicitation / roots — modern client × modern backend (the backend's
    own requestState travels verbatim)."""
    calls = Callbacks()
    with anyio.fail_after(TEST_TIMEOUT_S):
        async with router_client(tmp_path, "auto", calls) as c:
            r = await c.call_tool("era-sample", {"prompt": "modern to modern"})
            assert f"sampled: {SAMPLED}" in text_of(r), text_of(r)
            r = await c.call_tool("era-elicit", {})
            assert "hello Ada" in text_of(r), text_of(r)
            r = await c.call_tool("era-roots", {})
            assert "file:///tmp/eras-root" in text_of(r), text_of(r)
            assert (len(calls.sampling), len(calls.elicitation), calls.roots) == (1, 1, 1)


@pytest.mark.anyio
async def test_legacy_client_and_legacy_backend_keep_the_relay(tmp_path: Path) -> None:
    """Cells: sampling / elicitation — legacy client × legacy backend (the existing relay)."""
    calls = Callbacks()
    with anyio.fail_after(TEST_TIMEOUT_S):
        async with router_client(tmp_path, "legacy", calls) as c:
            r = await c.call_tool("trigger-sampling-request", {"prompt": "legacy to legacy", "maxTokens": 16})
            assert SAMPLED in text_of(r), text_of(r)
            r = await c.call_tool("trigger-elicitation-request", {})
            assert "Ada" in text_of(r), text_of(r)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_capability_the_client_did_not_declare_is_refused_with_32021(tmp_path: Path, mode: str) -> None:
    """Cells: a capability the client did not declare — {modern, legacy} client × modern
    backend. The client declares no sampling: the modern backend (told so by the envelope
    the router sends, the client's own or its handshake's) answers -32021 with
    `requiredCapabilities`, and the client gets exactly that."""
    from mcp.shared.exceptions import MCPError

    with anyio.fail_after(TEST_TIMEOUT_S):
        async with router_client(tmp_path, mode, None) as c:
            with pytest.raises(MCPError) as raised:
                await c.call_tool("era-sample", {"prompt": "nobody to ask"})
            assert raised.value.code == -32021, raised.value.error
            assert raised.value.data == {"requiredCapabilities": {"sampling": {}}}, raised.value.error
            # The router keeps serving the client.
            r = await c.call_tool("era-echo", {"message": "still here"})
            assert "still here" in text_of(r)


# ------------------------------------------------------------------ logging across eras


class LogSeen:
    def __init__(self) -> None:
        self.data: list[str] = []

    async def __call__(self, params: types.LoggingMessageNotificationParams) -> None:
        self.data.append(str(params.data))


@pytest.mark.anyio
@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")
async def test_a_legacy_clients_log_level_reaches_a_modern_backend(tmp_path: Path) -> None:
    """Cell: logging — legacy client × modern backend. `logging/setLevel` is not a 2026-07-28
    method: the router keeps the level and sends it with each call as `_meta` `logLevel`, so
    the backend logs at the client's level and its messages reach the client."""
    seen = LogSeen()
    with anyio.fail_after(TEST_TIMEOUT_S):
        async with router_client(tmp_path, "legacy", Callbacks(), client_args={"logging_callback": seen}) as c:
            await c.set_logging_level("warning")
            r = await c.call_tool("era-log", {"message": "L"})
            assert "logLevel warning" in text_of(r), text_of(r)
            await wait_for(lambda: "warning L" in seen.data, "the warning the modern backend logged")
            # The backend sent the info line before the warning, had it sent it at all.
            assert "info L" not in seen.data, seen.data


@pytest.mark.anyio
async def test_a_modern_clients_log_level_reaches_a_modern_backend(tmp_path: Path) -> None:
    """Cell: logging — modern client × modern backend. The request's `logLevel` passes
    through; the backend's messages at that level reach the client."""
    seen = LogSeen()
    args = {"logging_callback": seen, "log_level": "warning"}
    with anyio.fail_after(TEST_TIMEOUT_S):
        async with router_client(tmp_path, "auto", Callbacks(), client_args=args) as c:
            assert c.protocol_version == "2026-07-28"
            r = await c.call_tool("era-log", {"message": "M"})
            assert "logLevel warning" in text_of(r), text_of(r)
            await wait_for(lambda: "warning M" in seen.data, "the warning the modern backend logged")
            assert "info M" not in seen.data, seen.data


# ------------------------------------------------------------------ progress and subscriptions across eras

EVERYTHING_DOC = "demo://resource/static/document/features.md"


class ProgressSeen:
    def __init__(self) -> None:
        self.updates: list[tuple[float, float | None]] = []

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.updates.append((progress, total))


async def wait_for(predicate, what: str, timeout: float = 20) -> None:
    with anyio.move_on_after(timeout):
        while not predicate():
            await anyio.sleep(0.05)
    assert predicate(), f"timed out waiting for {what}"


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_progress_reaches_either_client_from_either_backend(tmp_path: Path, mode: str) -> None:
    """Cells: progress — {modern, legacy} client × {modern, legacy} backend."""
    calls = Callbacks()
    with anyio.fail_after(TEST_TIMEOUT_S):
        async with router_client(tmp_path, mode, calls) as c:
            seen = ProgressSeen()
            r = await c.call_tool("era-progress", {"steps": 3}, progress_callback=seen)
            assert "3 steps done" in text_of(r)
            await wait_for(lambda: len(seen.updates) == 3, "3 progress updates from the modern backend")
            # The SDK runs each progress callback in a task of its own: their order is not kept.
            assert sorted(p for p, _ in seen.updates) == [1, 2, 3]
            seen = ProgressSeen()
            r = await c.call_tool("trigger-long-running-operation", {"duration": 1, "steps": 2}, progress_callback=seen)
            assert not r.is_error, text_of(r)
            await wait_for(lambda: len(seen.updates) == 2, "2 progress updates from server-everything")


@pytest.mark.anyio
async def test_modern_client_listens_to_both_eras(tmp_path: Path) -> None:
    """Cells: subscriptions — modern client × modern backend (a listen of the router's own on
    it) and × legacy backend (resources/subscribe on it); list changes through the merged catalog."""
    from mcp.shared.subscriptions import ResourceUpdated, ToolsListChanged

    calls = Callbacks()
    with anyio.fail_after(TEST_TIMEOUT_S):
        async with router_client(tmp_path, "auto", calls) as c:
            async with c.listen(tools_list_changed=True, resource_subscriptions=["era://static", EVERYTHING_DOC]) as sub:
                assert set(sub.honored.resource_subscriptions or []) == {"era://static", EVERYTHING_DOC}, sub.honored
                await c.call_tool("era-touch", {})
                event = await sub.__anext__()
                assert event == ResourceUpdated(uri="era://static"), event
                await c.call_tool("toggle-subscriber-updates", {})
                event = await sub.__anext__()
                while event != ResourceUpdated(uri=EVERYTHING_DOC):
                    event = await sub.__anext__()
                await c.call_tool("era-grow", {})
                event = await sub.__anext__()
                while not isinstance(event, ToolsListChanged):
                    event = await sub.__anext__()
            names = {t.name for t in (await c.list_tools()).tools}
            assert "era-grown" in names, names


@pytest.mark.anyio
async def test_legacy_client_subscribes_to_a_modern_backend(tmp_path: Path) -> None:
    """Cells: subscriptions — legacy client × modern backend (resources/subscribe becomes a
    subscriptions/listen on the backend), and list_changed from a modern backend."""
    seen: list[Any] = []

    async def handler(message: Any) -> None:
        seen.append(message)

    calls = Callbacks()
    with anyio.fail_after(TEST_TIMEOUT_S):
        async with router_client(tmp_path, "legacy", calls, message_handler=handler) as c:
            await c.session.subscribe_resource("era://static")
            await c.call_tool("era-touch", {})

            def updated() -> bool:
                return any(
                    isinstance(m, types.ResourceUpdatedNotification) and str(m.params.uri) == "era://static" for m in seen
                )

            await wait_for(updated, "resources/updated for era://static")
            await c.session.unsubscribe_resource("era://static")
            await c.call_tool("era-grow", {})
            await wait_for(lambda: any(isinstance(m, types.ToolListChangedNotification) for m in seen), "tools/list_changed")
            names = {t.name for t in (await c.list_tools()).tools}
            assert "era-grown" in names, names


# ------------------------------------------------------------------ the HTTP gateway, 2026-07-28 shape


@asynccontextmanager
async def gateway(tmp_path: Path) -> AsyncIterator[str]:
    cfg = tmp_path / "router.yaml"
    write_config(cfg)
    proc, url = serve_http(cfg)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.anyio
async def test_modern_client_over_http_is_served_statelessly(tmp_path: Path) -> None:
    """Cells (HTTP front): discover, calls to both eras, sampling modern client × legacy
    backend across stateless requests (the retry is a new POST on a new connection's session)."""
    calls = Callbacks()
    with anyio.fail_after(TEST_TIMEOUT_S):
        async with gateway(tmp_path) as url:
            client = Client(
                url,
                mode="auto",
                read_timeout_seconds=REQUEST_TIMEOUT_S,
                sampling_callback=calls.sampling_callback,
                elicitation_callback=calls.elicitation_callback,
                list_roots_callback=calls.list_roots_callback,
                cache=None,
            )
            async with client as c:
                assert c.protocol_version == "2026-07-28", c.protocol_version
                names = {t.name for t in (await c.list_tools()).tools}
                assert {"era-echo", "get-sum"} <= names, names
                r = await c.call_tool("era-echo", {"message": "über http"})
                assert "version 2026-07-28" in text_of(r), text_of(r)
                r = await c.call_tool("get-sum", {"a": 1, "b": 2})
                assert "3" in text_of(r), text_of(r)
                r = await c.call_tool("trigger-sampling-request", {"prompt": "over http", "maxTokens": 16})
                assert SAMPLED in text_of(r), text_of(r)
                r = await c.call_tool("era-sample", {"prompt": "over http"})
                assert f"sampled: {SAMPLED}" in text_of(r), text_of(r)
                seen = ProgressSeen()
                await c.call_tool("era-progress", {"steps": 2}, progress_callback=seen)
                await wait_for(lambda: len(seen.updates) == 2, "progress over the request's SSE stream")


@pytest.mark.anyio
async def test_legacy_client_over_http_keeps_its_session(tmp_path: Path) -> None:
    """Cells (HTTP front): a legacy client still gets the session-based shape, and reaches the
    modern backend."""
    calls = Callbacks()
    with anyio.fail_after(TEST_TIMEOUT_S):
        async with gateway(tmp_path) as url:
            async with Client(url, mode="legacy", read_timeout_seconds=REQUEST_TIMEOUT_S, cache=None) as c:
                assert c.protocol_version == "2025-11-25"
                r = await c.call_tool("era-echo", {"message": "legacy http"})
                assert "version 2026-07-28" in text_of(r), text_of(r)


@pytest.mark.anyio
async def test_a_modern_stdio_clients_declared_capabilities_reach_the_backends(tmp_path: Path) -> None:
    """`mcprouter serve` tells its backends the capabilities the first request's `_meta`
    declares, as it does with `initialize`: without sampling, server-everything does not
    offer its sampling tool."""
    cfg = tmp_path / "router.yaml"
    write_config(cfg)
    params = StdioServerParameters(command=str(router_binary()), args=["serve", "--config", str(cfg)], env=dict(os.environ))
    with anyio.fail_after(TEST_TIMEOUT_S):
        async with Client(params, mode="auto", read_timeout_seconds=REQUEST_TIMEOUT_S, cache=None) as c:
            assert c.protocol_version == "2026-07-28"
            names = {t.name for t in (await c.list_tools()).tools}
            assert "get-sum" in names and "trigger-sampling-request" not in names, names
