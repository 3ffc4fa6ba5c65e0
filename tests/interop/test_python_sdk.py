"""Interop: the official Python MCP SDK (``mcp`` 2.3.0) as a client of ``mcprouter serve``.

Run with ``.deps/venv/bin/python -m pytest tests/interop`` after ``scripts/deps.sh``.

* ``test_sdk_against_router`` starts ``mcprouter serve --config FILE`` through the SDK's
  stdio client, fronting two backends: the project's own ``mcprouter test-server --name
  alpha`` and ``@modelcontextprotocol/server-everything`` (stdio, loopback-only preload),
  with the default ``prefix: conditional``: ``echo``, served by both, becomes ``alpha__echo`` and
  ``everything__echo``; unique names stay as they are. It lists tools, calls both echoes and ``get-sum``, reads
  ``test://alpha/static``, gets the prompt ``greet``, follows progress of
  ``trigger-long-running-operation`` and answers the sampling request of
  ``trigger-sampling-request`` through the router.
  The binary is ``$MCPROUTER_BIN`` or ``<repo>/target/debug/mcprouter``
  (``$CARGO_TARGET_DIR/debug/mcprouter`` when that is set). A missing binary fails the test:
  it never skips.
* ``test_sdk_against_everything_directly`` is the baseline: the same client flow pointed
  straight at server-everything (unprefixed names), proving the SDK usage and the
  server-everything facts the router test relies on.

Facts this relies on (server-everything 2026.8.31, mcp 2.3.0):
* ``ClientSession(read, write, read_timeout_seconds, sampling_callback=,
  list_roots_callback=, logging_callback=, message_handler=, ...)``; a capability
  (sampling / roots / elicitation) is declared only when its callback is given.
  ``session.initialize()`` does the legacy ``initialize`` handshake (2025-11-25); the
  higher-level ``mcp.client.Client`` would first probe ``server/discover`` (mode "auto").
* server-everything registers ``trigger-sampling-request`` only when the client declared
  sampling, ``get-roots-list`` only with roots; it does so after ``notifications/initialized``,
  sending one ``notifications/tools/list_changed`` per tool registered then, and ~350 ms later
  a ``roots/list`` request (id 0) when roots were declared.
* ``call_tool(name, args, read_timeout_seconds, progress_callback)``: the SDK uses the
  request id as ``_meta.progressToken``; the callback gets ``(progress, total, message)`` and
  runs in a spawned task, so it is awaited with a bounded wait rather than assumed done.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import anyio
import mcp.types as types
import pytest
from mcp import ClientSession
from mcp.client.session import ClientRequestContext
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

REPO = Path(__file__).resolve().parents[2]
LOOPBACK_PRELOAD = REPO / "tests" / "support" / "loopback.cjs"
EVERYTHING_PKG = REPO / ".deps" / "node" / "node_modules" / "@modelcontextprotocol" / "server-everything"
EVERYTHING_VERSION = "2026.8.31"

TEST_TIMEOUT_S = 60  # whole test, including process start and shutdown
REQUEST_TIMEOUT_S = 20  # any single request
SAMPLED_TEXT = "sampled!"
SAMPLING_PROMPT = "interop-sampling-probe"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --------------------------------------------------------------------------- helpers


def everything_entry() -> Path:
    """server-everything's bin script (package.json "bin": mcp-server-everything -> dist/index.js)."""
    manifest = EVERYTHING_PKG / "package.json"
    if not manifest.is_file():
        pytest.fail(f"server-everything is not installed at {EVERYTHING_PKG}: run scripts/deps.sh")
    meta = json.loads(manifest.read_text())
    assert meta["version"] == EVERYTHING_VERSION, f"server-everything {meta['version']} installed"
    entry = EVERYTHING_PKG / meta["bin"]["mcp-server-everything"]
    assert entry.is_file(), entry
    return entry


def everything_command() -> tuple[str, list[str]]:
    return "node", ["--require", str(LOOPBACK_PRELOAD), str(everything_entry()), "stdio"]


def router_binary() -> Path:
    """The mcprouter binary; a missing one fails the test (see the module docstring)."""
    if os.environ.get("MCPROUTER_BIN"):
        path = Path(os.environ["MCPROUTER_BIN"])
    else:
        target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
        if not target.is_absolute():
            target = REPO / target
        path = target / "debug" / "mcprouter"
    if not (path.is_file() and os.access(path, os.X_OK)):
        reason = (
            f"mcprouter binary not found at {path} (build it with `cargo build`, or point "
            "MCPROUTER_BIN at it)"
        )
        pytest.fail(reason)
    return path


SERVING_MCP = r"serving MCP on (http://\S+)"


def serve_http(cfg: Path, announced: str = SERVING_MCP) -> tuple[subprocess.Popen[str], str]:
    """Starts `mcprouter serve --http` on a free loopback port with config `cfg`; returns the
    process and the URL its log line `announced` names (the gateway's own, or its legacy SSE
    one). A gateway that exits first fails the test."""
    proc = subprocess.Popen(
        [str(router_binary()), "serve", "--config", str(cfg), "--http", "127.0.0.1:0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        m = re.search(announced, line)
        if m:
            return proc, m.group(1)
    proc.wait()
    raise AssertionError(f"the gateway exited with {proc.returncode} before listening")


def yaml_str(value: str) -> str:
    # A JSON string is a valid YAML double-quoted scalar.
    return json.dumps(value)


def write_router_config(path: Path, router_bin: Path) -> None:
    node_cmd, node_args = everything_command()
    alpha_args = ["test-server", "--name", "alpha"]
    path.write_text(
        "router:\n"
        "  name: mcprouter\n"
        "backends:\n"
        "  - name: alpha\n"
        f"    command: {yaml_str(str(router_bin))}\n"
        f"    args: [{', '.join(map(yaml_str, alpha_args))}]\n"
        "  - name: everything\n"
        f"    command: {yaml_str(node_cmd)}\n"
        f"    args: [{', '.join(map(yaml_str, node_args))}]\n"
    )


class Recorder:
    """Everything the server sends us on its own: notifications, logs, server->client requests."""

    def __init__(self) -> None:
        self.notifications: list[Any] = []
        self.logs: list[types.LoggingMessageNotificationParams] = []
        self.sampling_requests: list[types.CreateMessageRequestParams] = []
        self.roots_requests = 0
        self.changed = anyio.Event()  # set (and replaced) on every inbound item

    def _poke(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    async def sampling_callback(
        self, context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        self.sampling_requests.append(params)
        self._poke()
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=SAMPLED_TEXT),
            model="test-model",
        )

    async def list_roots_callback(self, context: ClientRequestContext) -> types.ListRootsResult:
        self.roots_requests += 1
        self._poke()
        return types.ListRootsResult(roots=[types.Root(uri="file:///tmp/mcprouter-interop", name="interop")])

    async def logging_callback(self, params: types.LoggingMessageNotificationParams) -> None:
        self.logs.append(params)
        self._poke()

    async def message_handler(self, message: Any) -> None:
        # Server notifications (progress included: the SDK tees them here as well as to the
        # per-request progress callback) and transport exceptions.
        self.notifications.append(message)
        self._poke()

    def count(self, kind: type) -> int:
        return sum(isinstance(n, kind) for n in self.notifications)

    async def wait_until(self, predicate, timeout: float, what: str) -> None:
        with anyio.move_on_after(timeout):
            while not predicate():
                await self.changed.wait()
        assert predicate(), f"timed out after {timeout}s waiting for {what}"


class Progress:
    def __init__(self) -> None:
        self.updates: list[tuple[float, float | None, str | None]] = []

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.updates.append((progress, total, message))


@asynccontextmanager
async def connect(
    command: str, args: list[str], recorder: Recorder, errlog_path: Path, *, roots: bool
) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(command=command, args=args, env=dict(os.environ))
    with errlog_path.open("w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(
                read,
                write,
                read_timeout_seconds=REQUEST_TIMEOUT_S,
                sampling_callback=recorder.sampling_callback,
                list_roots_callback=recorder.list_roots_callback if roots else None,
                logging_callback=recorder.logging_callback,
                message_handler=recorder.message_handler,
                client_info=types.Implementation(name="mcprouter-interop", version="0"),
            ) as session:
                yield session


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


async def wait_for_tools(session: ClientSession, expected: set[str], timeout: float) -> set[str]:
    """List tools until all `expected` names are there (a backend may add tools just after
    its initialization and announce them with list_changed); bounded by `timeout`."""
    names: set[str] = set()
    with anyio.move_on_after(timeout):
        while True:
            names = {t.name for t in (await session.list_tools()).tools}
            if expected <= names:
                return names
            await anyio.sleep(0.2)
    missing = sorted(expected - names)
    hint = ""
    if any(name.endswith("trigger-sampling-request") for name in missing):
        hint = " (server-everything lists trigger-sampling-request only to a client that declared sampling)"
    raise AssertionError(f"tools missing after {timeout}s: {missing}; listed: {sorted(names)}{hint}")


async def check_progress(session: ClientSession, tool: str) -> None:
    progress = Progress()
    result = await session.call_tool(
        tool, {"duration": 1, "steps": 3}, read_timeout_seconds=REQUEST_TIMEOUT_S, progress_callback=progress
    )
    assert not result.is_error, text_of(result)
    assert "Long running operation completed" in text_of(result), text_of(result)
    # Progress callbacks run in spawned tasks: give the last ones a moment.
    with anyio.move_on_after(2):
        while len(progress.updates) < 3:
            await anyio.sleep(0.05)
    assert len(progress.updates) >= 1, "no progress notification arrived for the long-running call"
    values = [p for p, _, _ in progress.updates]
    assert values == sorted(values), f"progress not increasing: {progress.updates}"
    assert all(total == 3 for _, total, _ in progress.updates), progress.updates


async def check_sampling(session: ClientSession, tool: str, recorder: Recorder) -> None:
    before = len(recorder.sampling_requests)
    result = await session.call_tool(tool, {"prompt": SAMPLING_PROMPT, "maxTokens": 16})
    assert not result.is_error, text_of(result)
    assert SAMPLED_TEXT in text_of(result), text_of(result)
    assert len(recorder.sampling_requests) == before + 1, "sampling callback was not called exactly once"
    request = recorder.sampling_requests[-1]
    assert request.max_tokens == 16
    first = request.messages[0].content
    assert isinstance(first, types.TextContent) and SAMPLING_PROMPT in first.text, request


def stderr_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no stderr captured)"


@contextmanager
def diagnostics(errlog: Path, label: str) -> Iterator[None]:
    """On failure: print the server's stderr, and raise a lone exception out of the
    anyio/SDK task-group wrappers so pytest shows it plainly."""
    try:
        yield
    except BaseException as exc:
        print(f"--- {label} stderr ---\n{stderr_tail(errlog)}", file=sys.stderr)
        leaf: BaseException = exc
        while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
            leaf = leaf.exceptions[0]
        if leaf is not exc and not isinstance(leaf, BaseExceptionGroup):
            raise leaf from None
        raise


# --------------------------------------------------------------------------- tests


@pytest.mark.anyio
async def test_sdk_against_everything_directly(tmp_path: Path) -> None:
    """Baseline: the same SDK flow straight against server-everything."""
    if shutil.which("node") is None:
        pytest.fail("node is not on PATH")
    command, args = everything_command()
    recorder = Recorder()
    errlog = tmp_path / "everything.stderr"
    with diagnostics(errlog, "server-everything"), anyio.fail_after(TEST_TIMEOUT_S):
        async with connect(command, args, recorder, errlog, roots=True) as session:
            init = await session.initialize()
            assert init.server_info.name == "mcp-servers/everything"
            assert init.protocol_version == "2025-11-25"
            assert init.capabilities.tools is not None and init.capabilities.tools.list_changed

            names = await wait_for_tools(
                session,
                {"echo", "get-sum", "trigger-long-running-operation", "trigger-sampling-request", "get-roots-list"},
                timeout=10,
            )
            # declared sampling + roots, not elicitation: 12 base tools + 3 conditional
            assert "trigger-elicitation-request" not in names
            assert len(names) == 15, sorted(names)

            # Right after initialized: list_changed per late-registered tool, then roots/list.
            await recorder.wait_until(
                lambda: recorder.count(types.ToolListChangedNotification) >= 1,
                5,
                "notifications/tools/list_changed after initialize",
            )
            await recorder.wait_until(lambda: recorder.roots_requests >= 1, 5, "roots/list from the server")
            await recorder.wait_until(
                lambda: any("Roots updated" in str(log.data) for log in recorder.logs),
                5,
                "the 'Roots updated' log message",
            )

            echo = await session.call_tool("echo", {"message": "hello interop"})
            assert text_of(echo) == "Echo: hello interop"

            total = await session.call_tool("get-sum", {"a": 2, "b": 40})
            assert text_of(total) == "The sum of 2 and 40 is 42."

            roots = await session.call_tool("get-roots-list", {})
            assert "file:///tmp/mcprouter-interop" in text_of(roots), text_of(roots)

            resource = await session.read_resource("demo://resource/static/document/features.md")
            assert resource.contents and isinstance(resource.contents[0], types.TextResourceContents)
            assert resource.contents[0].text

            prompt = await session.get_prompt("args-prompt", {"city": "Lyon"})
            assert isinstance(prompt.messages[0].content, types.TextContent)
            assert prompt.messages[0].content.text == "What's weather in Lyon?"

            await check_progress(session, "trigger-long-running-operation")
            await check_sampling(session, "trigger-sampling-request", recorder)

            # No transport-level exception surfaced to the message handler.
            errors = [n for n in recorder.notifications if isinstance(n, Exception)]
            assert not errors, errors


@pytest.mark.anyio
async def test_sdk_against_router(tmp_path: Path) -> None:
    """The SDK client through `mcprouter serve` fronting alpha + server-everything."""
    router_bin = router_binary()
    if shutil.which("node") is None:
        pytest.fail("node is not on PATH")
    config = tmp_path / "mcprouter.yaml"
    write_router_config(config, router_bin)
    recorder = Recorder()
    errlog = tmp_path / "mcprouter.stderr"
    with diagnostics(errlog, "mcprouter"), anyio.fail_after(TEST_TIMEOUT_S):
        async with connect(
            str(router_bin), ["serve", "--config", str(config)], recorder, errlog, roots=False
        ) as session:
            try:
                init = await session.initialize()
            except MCPError as e:
                pytest.fail(f"mcprouter serve failed the initialize handshake: {e} (its stderr is printed below)")
            assert init.capabilities.tools is not None, init.capabilities

            names = await wait_for_tools(
                session,
                {
                    "alpha__echo",
                    "everything__echo",
                    "get-sum",
                    "trigger-long-running-operation",
                    # listed only if the router declared sampling to server-everything
                    "trigger-sampling-request",
                },
                timeout=15,
            )
            assert "echo" not in names, "a name present on two backends must not be exposed bare"

            echo = await session.call_tool("alpha__echo", {"message": "hello alpha"})
            assert not echo.is_error, text_of(echo)
            assert text_of(echo) == "hello alpha"

            echo2 = await session.call_tool("everything__echo", {"message": "hello everything"})
            assert text_of(echo2) == "Echo: hello everything"

            total = await session.call_tool("get-sum", {"a": 2, "b": 40})
            assert text_of(total) == "The sum of 2 and 40 is 42."

            resource = await session.read_resource("test://alpha/static")
            assert resource.contents, resource
            assert str(resource.contents[0].uri) == "test://alpha/static"
            assert isinstance(resource.contents[0], types.TextResourceContents)
            assert "alpha" in resource.contents[0].text, resource

            prompt = await session.get_prompt("greet", {"who": "interop"})
            assert prompt.messages, prompt
            prompt_text = " ".join(
                m.content.text for m in prompt.messages if isinstance(m.content, types.TextContent)
            )
            assert "interop" in prompt_text, prompt

            await check_progress(session, "trigger-long-running-operation")
            await check_sampling(session, "trigger-sampling-request", recorder)

            errors = [n for n in recorder.notifications if isinstance(n, Exception)]
            assert not errors, errors
