"""Status codes become exceptions; JSON-RPC error replies become JsonRpcError."""

from __future__ import annotations

import threading
import time
from typing import Any, Dict

import pytest

import mcprouter
from conftest import config


def test_bad_yaml_is_config_error() -> None:
    with pytest.raises(mcprouter.ConfigError) as info:
        mcprouter.Router.from_yaml("backends: [unclosed")
    assert info.value.status is mcprouter.Status.CONFIG
    assert isinstance(info.value, mcprouter.MCPRouterError)
    assert str(info.value)


def test_invalid_config_names_the_problem() -> None:
    with pytest.raises(mcprouter.ConfigError, match="bogus"):
        mcprouter.Router.from_yaml("router: {bogus: 1}\nbackends: []\n")


def test_missing_file_is_config_error(tmp_path: Any) -> None:
    with pytest.raises(mcprouter.ConfigError):
        mcprouter.Router.from_file(tmp_path / "nope.yaml")


def test_nul_and_bad_utf8_are_refused_before_c() -> None:
    with pytest.raises(mcprouter.InvalidArgumentError):
        mcprouter.Router.from_yaml("backends: []\0")
    with pytest.raises(mcprouter.InvalidUtf8Error):
        mcprouter.Router.from_yaml("\udcff")


def test_unknown_tool_is_json_rpc_error(session: mcprouter.Session) -> None:
    with pytest.raises(mcprouter.JsonRpcError) as info:
        session.request("tools/call", {"name": "no_such_tool", "arguments": {}})
    assert info.value.code == -32602
    assert "no_such_tool" in info.value.message


def test_unknown_method_is_json_rpc_error(session: mcprouter.Session) -> None:
    with pytest.raises(mcprouter.JsonRpcError) as info:
        session.request("bogus/method")
    assert info.value.code == -32601


def test_closed_session_raises_closed_error(router: mcprouter.Router) -> None:
    s = router.session()
    s.close()
    s.close()  # idempotent
    assert s.closed
    with pytest.raises(mcprouter.ClosedError) as info:
        s.request("ping")
    assert info.value.status is mcprouter.Status.CLOSED
    with pytest.raises(mcprouter.ClosedError):
        s.next_event(0)


def test_session_of_a_shut_down_router_raises_closed_error(make_router: Any) -> None:
    r = make_router("solo")
    s = r.session()
    assert s.request("ping") == {}
    r.shutdown(grace=1)
    # The C side reports CLOSED: the Python handle is still open.
    assert not s.closed
    with pytest.raises(mcprouter.ClosedError):
        s.request("ping")
    with pytest.raises(mcprouter.ClosedError):
        s.next_event(1)
    with pytest.raises(mcprouter.ClosedError):
        r.session()
    with pytest.raises(mcprouter.ClosedError):
        r.status()
    r.shutdown(grace=1)  # idempotent
    r.close()
    with pytest.raises(mcprouter.ClosedError):
        r.status()
    assert s.closed  # closing the router closed its sessions


def test_request_timeout_cancels_the_call(make_router: Any) -> None:
    r = make_router("solo")
    with r.session() as s:
        started = time.monotonic()
        with pytest.raises(mcprouter.TimeoutError) as info:
            s.request("tools/call", {"name": "slow", "arguments": {"ms": 10_000}}, timeout=0.3)
        assert isinstance(info.value, TimeoutError)  # also the builtin
        assert time.monotonic() - started < 8  # not the call's 10 s
        # The backend saw the cancellation.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            text = s.request("tools/call", {"name": "cancelled", "arguments": {}})["content"][0]["text"]
            if text not in ("[]", ""):
                break
            time.sleep(0.05)
        assert text not in ("[]", ""), "the backend never saw the cancellation"


def test_router_deadline_is_a_json_rpc_error(make_router: Any) -> None:
    r = make_router("solo", timeout_ms=300)
    with r.session() as s:
        with pytest.raises(mcprouter.JsonRpcError) as info:
            s.request("tools/call", {"name": "hang", "arguments": {}})
        assert "timed out" in info.value.message


def test_close_unblocks_a_waiting_next_event(router: mcprouter.Router) -> None:
    s = router.session()
    box: Dict[str, Any] = {}

    def wait() -> None:
        try:
            box["event"] = s.next_event(timeout=None)
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.2)
    started = time.monotonic()
    s.close()
    t.join(5)
    assert not t.is_alive()
    assert time.monotonic() - started < 4.5  # woke up, not left to time out
    assert isinstance(box.get("error"), mcprouter.ClosedError)


def test_close_cancels_requests_in_flight(router: mcprouter.Router) -> None:
    s = router.session()
    box: Dict[str, Any] = {}

    def call() -> None:
        try:
            box["result"] = s.request("tools/call", {"name": "alpha__slow", "arguments": {"ms": 20_000}})
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.3)
    started = time.monotonic()
    s.close()
    t.join(5)
    assert not t.is_alive()
    assert time.monotonic() - started < 15  # not the call's 20 s
    assert isinstance(box.get("error"), mcprouter.ClosedError), box


def test_failed_backend_does_not_fail_the_router() -> None:
    r = mcprouter.Router.from_yaml(
        config("good") + "  - name: broken\n    command: /nonexistent/mcp-server\n"
    )
    try:
        states = {b["name"]: b["state"] for b in r.status()["backends"]}
        assert states["good"] == "ready" and states["broken"] != "ready"
    finally:
        r.close()


def test_error_hierarchy() -> None:
    e = mcprouter.ClosedError("x")
    assert e.status is mcprouter.Status.CLOSED and isinstance(e, mcprouter.Error)
    j = mcprouter.JsonRpcError(-32000, "boom", {"k": 1})
    assert isinstance(j, mcprouter.Error) and not isinstance(j, mcprouter.MCPRouterError)
    assert j.data == {"k": 1} and "boom" in str(j)
