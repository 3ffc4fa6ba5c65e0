"""``Gateway``: the router served over Streamable HTTP, driven through the binding and
reached with plain HTTP requests (the standard library's client)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Callable, Dict, Optional, Tuple

import pytest

import mcprouter

HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def post(url: str, body: Dict[str, Any], session: Optional[str] = None) -> Tuple[int, Dict[str, str], str]:
    headers = dict(HEADERS)
    if session is not None:
        headers["Mcp-Session-Id"] = session
        headers["MCP-Protocol-Version"] = "2025-11-25"
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode()


def reply_of(content_type: str, text: str) -> Dict[str, Any]:
    """The JSON-RPC reply in a JSON body or in the last `data:` event of an SSE body."""
    if content_type.startswith("text/event-stream"):
        data = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
        return json.loads(data[-1])
    return json.loads(text)


def test_a_gateway_serves_the_router_over_http(make_router: Callable[..., mcprouter.Router]) -> None:
    router = make_router("alpha")
    with mcprouter.Gateway.start(router, "127.0.0.1:0") as gw:
        assert gw.url.startswith("http://127.0.0.1:") and gw.url.endswith("/mcp")
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                           "clientInfo": {"name": "binding-test", "version": "1"}}}
        status, headers, body = post(gw.url, init)
        assert status == 200, body
        sid = headers["mcp-session-id"]
        assert len(sid) >= 32
        status, _, _ = post(gw.url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, sid)
        assert status == 202
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "echo", "arguments": {"message": "over http"}}}
        status, headers, body = post(gw.url, call, sid)
        assert status == 200, body
        reply = reply_of(headers.get("content-type", ""), body)
        assert reply["result"]["content"][0]["text"] == "over http"
        # Without the session id the gateway refuses, with a clear status.
        status, _, _ = post(gw.url, call)
        assert status == 400
        gw.shutdown(1.0)
    # The router keeps running after its gateway stops.
    with router.session() as s:
        s.initialize()
        assert s.request("tools/call", {"name": "whoami", "arguments": {}})["content"][0]["text"] == "alpha"


def test_a_gateway_refuses_a_non_loopback_address_without_tokens(make_router: Callable[..., mcprouter.Router]) -> None:
    router = make_router("alpha")
    with pytest.raises(mcprouter.Error):
        mcprouter.Gateway.start(router, "0.0.0.0:0")
