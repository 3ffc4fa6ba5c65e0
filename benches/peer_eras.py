#!/usr/bin/env python3
"""The era table of issue #16, measured on the peers: each HTTP front (mcprouter, the npm
``mcp-proxy``, ``supergateway``) put in front of one stdio server, either

* ``legacy``: ``@modelcontextprotocol/server-everything`` (2025-11-25 only), or
* ``modern``: ``tests/interop/fixtures/modern_server.py`` (the Python SDK's dual-era ``MCPServer``),

and probed with the Python SDK 2.3 client in modern mode (``mode="auto"``: probes
``server/discover`` and speaks 2026-07-28 where answered) and in legacy mode (``initialize``).
Features: connect (handshake or discover, with the version the client ended up on),
tools/list, tools/call, sampling relayed to the client, progress, and a resource
subscription (``subscriptions/listen`` for a modern client, ``resources/subscribe`` for a
legacy one). Each cell says ``works`` or ``error: <what the client saw>``.

Run by hand (not part of the tests), after ``cargo build`` and ``scripts/deps.sh``:

    .deps/venv/bin/python benches/peer_eras.py [--peers mcprouter,mcp-proxy,supergateway]

It prints one Markdown table per peer.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import anyio
import mcp_types as types
from mcp.client import Client

REPO = Path(__file__).resolve().parents[1]
DEPS = REPO / ".deps"
MODULES = DEPS / "node" / "node_modules"
NODE = MODULES / ".bin" / "node"
PRELOAD = REPO / "tests" / "support" / "loopback.cjs"
MODERN_SERVER = REPO / "tests" / "interop" / "fixtures" / "modern_server.py"
EVERYTHING = MODULES / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
ROUTER = Path(os.environ.get("MCPROUTER_BIN") or REPO / "target" / "debug" / "mcprouter")

SAMPLED = "sampled by the probe"
FEATURES = ["connect", "tools/list", "tools/call", "sampling", "progress", "subscriptions"]
CELL_TIMEOUT_S = 25

# What each backend offers for each feature.
TOOLS = {
    "legacy": {
        "call": ("echo", {"message": "hi"}, "hi"),
        "sampling": ("trigger-sampling-request", {"prompt": "probe", "maxTokens": 16}, SAMPLED),
        "progress": ("trigger-long-running-operation", {"duration": 1, "steps": 2}, 2),
        "resource": "demo://resource/static/document/features.md",
        "touch": ("toggle-subscriber-updates", {}),
    },
    "modern": {
        "call": ("era-echo", {"message": "hi"}, "hi"),
        "sampling": ("era-sample", {"prompt": "probe"}, SAMPLED),
        "progress": ("era-progress", {"steps": 3}, 3),
        "resource": "era://static",
        "touch": ("era-touch", {}),
    },
}


def backend_argv(backend: str) -> list[str]:
    if backend == "legacy":
        return [str(NODE), "--require", str(PRELOAD), str(EVERYTHING), "stdio"]
    return [sys.executable, str(MODERN_SERVER), "modern"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_script(package: str, rel: str) -> list[str]:
    return [str(NODE), "--require", str(PRELOAD), str(MODULES / package / rel)]


def start_peer(peer: str, backend: str, workdir: Path) -> tuple[subprocess.Popen, str]:
    """Starts `peer` in front of `backend`; returns the process and its MCP URL."""
    argv = backend_argv(backend)
    quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if peer == "mcprouter":
        cfg = workdir / f"router-{backend}.yaml"
        args = ", ".join('"' + a.replace('"', '\\"') + '"' for a in argv[1:])
        cfg.write_text(
            "router:\n  request_timeout_ms: 30000\n  init_timeout_ms: 60000\n"
            f"backends:\n  - name: {backend}\n    command: \"{argv[0]}\"\n    args: [{args}]\n"
        )
        p = subprocess.Popen(
            [str(ROUTER), "serve", "--config", str(cfg), "--http", "127.0.0.1:0", "--log-level", "error"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert p.stderr is not None
        for line in p.stderr:
            m = re.search(r"serving MCP on (\S+)", line)
            if m:
                # Keep draining stderr so the child never blocks on it.
                threading_drain(p.stderr)
                return p, m.group(1)
        raise RuntimeError("mcprouter exited before listening")
    port = free_port()
    if peer == "mcp-proxy":
        cmd = node_script("mcp-proxy", "dist/bin/mcp-proxy.mjs")
        cmd += ["--port", str(port), "--host", "127.0.0.1", "--server", "stream", "--", *argv]
        return subprocess.Popen(cmd, **quiet), f"http://127.0.0.1:{port}/mcp"
    if peer == "supergateway":
        cmd = node_script("supergateway", "dist/index.js")
        cmd += ["--stdio", " ".join(argv), "--outputTransport", "streamableHttp", "--stateful"]
        cmd += ["--port", str(port), "--logLevel", "none"]
        return subprocess.Popen(cmd, **quiet), f"http://127.0.0.1:{port}/mcp"
    raise ValueError(peer)


def threading_drain(stream: Any) -> None:
    import threading

    threading.Thread(target=lambda: [None for _ in stream], daemon=True).start()


def wait_listening(url: str, deadline_s: float = 60) -> None:
    host, port = re.match(r"https?://([^:/]+):(\d+)", url).groups()  # type: ignore[union-attr]
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            with socket.create_connection((host, int(port)), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens at {url}")


class Probe:
    """Client callbacks, and what they saw."""

    def __init__(self) -> None:
        self.sampled = 0
        self.messages: list[Any] = []

    async def sampling(self, context: Any, params: Any) -> types.CreateMessageResult:
        self.sampled += 1
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text=SAMPLED), model="probe"
        )

    async def elicitation(self, context: Any, params: Any) -> types.ElicitResult:
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    async def roots(self, context: Any) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri="file:///tmp/probe", name="probe")])

    async def message(self, message: Any) -> None:
        self.messages.append(message)


def text_of(result: Any) -> str:
    return "".join(c.text for c in result.content if isinstance(c, types.TextContent))


def short(e: BaseException) -> str:
    # The innermost exception of a group says what happened.
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    kind = type(e).__name__
    text = f"{kind}: {msg}" if msg else kind
    return text if len(text) <= 90 else text[:87] + "..."


async def cell(fn: Callable[[], Awaitable[str]]) -> str:
    try:
        with anyio.fail_after(CELL_TIMEOUT_S):
            return await fn()
    except TimeoutError:
        return f"error: no answer in {CELL_TIMEOUT_S} s"
    except anyio.get_cancelled_exc_class():
        raise
    except BaseException as e:  # noqa: BLE001 (anything the client raises is the answer)
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        return f"error: {short(e)}"


async def probe(url: str, mode: str, backend: str) -> dict[str, str]:
    tools = TOOLS[backend]
    out: dict[str, str] = {}
    p = Probe()
    client = Client(
        url,
        mode=mode,
        read_timeout_seconds=CELL_TIMEOUT_S,
        sampling_callback=p.sampling,
        elicitation_callback=p.elicitation,
        list_roots_callback=p.roots,
        message_handler=p.message,
        client_info=types.Implementation(name="peer-eras-probe", version="0"),
        cache=None,
    )
    for f in FEATURES:
        out[f] = "-"
    try:
        with anyio.fail_after(CELL_TIMEOUT_S * (len(FEATURES) + 2)):
            async with client:
                out["connect"] = f"works ({client.protocol_version})"
                await run_cells(client, p, tools, out)
    except BaseException as e:  # noqa: BLE001 (what the client raises is the answer)
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        if out["connect"] == "-":
            out["connect"] = f"error: {short(e)}"
    return out


async def run_cells(client: Client, p: Probe, tools: dict[str, Any], out: dict[str, str]) -> None:
    async def tools_list() -> str:
        names = {t.name for t in (await client.list_tools()).tools}
        return "works" if tools["call"][0] in names else f"error: {tools['call'][0]} not listed"

    async def tools_call() -> str:
        name, args, want = tools["call"]
        r = await client.call_tool(name, args)
        return "works" if want in text_of(r) and not r.is_error else f"error: {text_of(r)[:80]}"

    async def sampling() -> str:
        name, args, want = tools["sampling"]
        r = await client.call_tool(name, args)
        t = text_of(r)
        if want in t and p.sampled:
            return "works"
        return f"error: {t[:80] or 'no text'}"

    async def progress() -> str:
        seen: list[float] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append(progress)

        name, args, want = tools["progress"]
        r = await client.call_tool(name, args, progress_callback=on_progress)
        if r.is_error:
            return f"error: {text_of(r)[:80]}"
        with anyio.move_on_after(5):
            while len(seen) < want:
                await anyio.sleep(0.05)
        if not seen:
            return "error: no progress notification"
        return "works" if len(seen) >= want else f"partial ({len(seen)} of {want} updates)"

    async def subscriptions() -> str:
        uri = tools["resource"]
        touch, touch_args = tools["touch"]
        if client.protocol_version == "2026-07-28":
            from mcp.shared.subscriptions import ResourceUpdated

            async with client.listen(resource_subscriptions=[uri]) as sub:
                if uri not in (sub.honored.resource_subscriptions or []):
                    return f"error: listen not honoured ({sub.honored})"
                await client.call_tool(touch, touch_args)
                event = await sub.__anext__()
                while event != ResourceUpdated(uri=uri):
                    event = await sub.__anext__()
                return "works (listen)"
        await client.session.subscribe_resource(uri)
        await client.call_tool(touch, touch_args)

        def updated() -> bool:
            return any(
                isinstance(m, types.ResourceUpdatedNotification) and str(m.params.uri) == uri for m in p.messages
            )

        while not updated():
            await anyio.sleep(0.05)
        return "works (subscribe)"

    for name, fn in [
        ("tools/list", tools_list),
        ("tools/call", tools_call),
        ("sampling", sampling),
        ("progress", progress),
        ("subscriptions", subscriptions),
    ]:
        out[name] = await cell(fn)


def table(peer: str, results: dict[tuple[str, str], dict[str, str]]) -> str:
    cols = [(c, b) for c in ("modern", "legacy") for b in ("modern", "legacy")]
    head = "| feature | " + " | ".join(f"{c} client × {b} backend" for c, b in cols) + " |"
    lines = [f"### {peer}", "", head, "|" + "---|" * (len(cols) + 1)]
    for f in FEATURES:
        row = [results.get(k, {}).get(f, "-").replace("|", "/") for k in cols]
        lines.append(f"| {f} | " + " | ".join(row) + " |")
    return "\n".join(lines)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--peers", default="mcprouter,mcp-proxy,supergateway")
    a = ap.parse_args()
    for need in (NODE, EVERYTHING, ROUTER):
        if not need.exists():
            sys.exit(f"missing {need}: run cargo build and scripts/deps.sh")
    with tempfile.TemporaryDirectory() as tmp:
        for peer in a.peers.split(","):
            results: dict[tuple[str, str], dict[str, str]] = {}
            for backend in ("modern", "legacy"):
                for client_era, mode in (("modern", "auto"), ("legacy", "legacy")):
                    # A fresh peer (and server) per client: server-everything's update
                    # switch is per server session, which a peer may share between clients.
                    proc, url = start_peer(peer, backend, Path(tmp))
                    try:
                        wait_listening(url)
                        results[(client_era, backend)] = await probe(url, mode, backend)
                        print(f"{peer} {client_era}-client {backend}-backend: {results[(client_era, backend)]}", file=sys.stderr)
                    finally:
                        proc.terminate()
                        try:
                            proc.wait(timeout=10)
                        except subprocess.TimeoutExpired:
                            proc.kill()
                            proc.wait()
            print(table(peer, results))
            print()


if __name__ == "__main__":
    anyio.run(main)
