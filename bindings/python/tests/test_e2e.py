"""End to end against two of the project's test servers (alpha, beta) behind one router."""

from __future__ import annotations

import threading
import time
from typing import Any, Dict

import pytest

import mcprouter


def text_of(result: Dict[str, Any]) -> str:
    return "".join(c.get("text", "") for c in result["content"])


def wait_event(session: mcprouter.Session, method: str, timeout: float = 5) -> Dict[str, Any]:
    """The next event with ``method``, skipping others (e.g. list_changed broadcasts)."""
    deadline = time.monotonic() + timeout
    while True:
        ev = session.next_event(timeout=max(0.0, deadline - time.monotonic()))
        assert ev is not None, f"no {method} event within {timeout} s"
        if ev.get("method") == method:
            return ev


def test_version_is_semver() -> None:
    parts = mcprouter.version().split(".")
    assert len(parts) == 3 and all(p.isdigit() for p in parts)


def test_initialize(router: mcprouter.Router) -> None:
    with router.session("client-1") as s:
        result = s.initialize()
        assert result["serverInfo"]["name"] == "mcprouter"
        assert "tools" in result["capabilities"]
        assert result["protocolVersion"]


def test_tools_list_prefixes_colliding_names(session: mcprouter.Session) -> None:
    names = {t["name"] for t in session.request("tools/list")["tools"]}
    assert {"alpha__echo", "beta__echo", "alpha__add", "beta__slow"} <= names
    assert "echo" not in names


def test_tools_call_reaches_the_right_backend(session: mcprouter.Session) -> None:
    r = session.request("tools/call", {"name": "alpha__echo", "arguments": {"message": "héllo ✓"}})
    assert text_of(r) == "héllo ✓"
    assert text_of(session.request("tools/call", {"name": "beta__whoami", "arguments": {}})) == "beta"
    r = session.request("tools/call", {"name": "alpha__add", "arguments": {"a": 2, "b": 40}})
    assert r["structuredContent"] == {"sum": 42}


def test_tool_error_is_a_result_not_an_exception(session: mcprouter.Session) -> None:
    r = session.request("tools/call", {"name": "alpha__fail", "arguments": {}})
    assert r["isError"] is True


def test_resources(session: mcprouter.Session) -> None:
    uris = {r["uri"] for r in session.request("resources/list")["resources"]}
    assert {"test://alpha/static", "test://beta/static"} <= uris
    r = session.request("resources/read", {"uri": "test://beta/static"})
    assert r["contents"][0]["text"] == "static beta"


def test_prompts(session: mcprouter.Session) -> None:
    names = {p["name"] for p in session.request("prompts/list")["prompts"]}
    assert {"alpha__greet", "beta__greet"} <= names
    r = session.request("prompts/get", {"name": "alpha__greet", "arguments": {"who": "Ada"}})
    assert r["messages"][0]["content"]["text"] == "Hello, Ada, from alpha"


def test_progress_events(session: mcprouter.Session) -> None:
    params = {"name": "alpha__progress", "arguments": {"steps": 3}, "_meta": {"progressToken": "tok-1"}}
    assert text_of(session.request("tools/call", params)) == "done 3"
    seen = [wait_event(session, "notifications/progress")["params"] for _ in range(3)]
    # The router rewrote the token on the way in and restores the client's on the way out.
    assert [p["progressToken"] for p in seen] == ["tok-1"] * 3
    assert [p["progress"] for p in seen] == [1, 2, 3]


def test_log_notification_event(session: mcprouter.Session) -> None:
    session.request("tools/call", {"name": "beta__log", "arguments": {"message": "to the client"}})
    ev = wait_event(session, "notifications/message")
    assert ev["params"]["data"] == "to the client"


def test_next_event_times_out_with_none(session: mcprouter.Session) -> None:
    assert session.next_event(timeout=0) is None
    assert session.next_event(timeout=0.2) is None


def test_answering_a_sampling_request(session: mcprouter.Session) -> None:
    box: Dict[str, Any] = {}

    def call() -> None:
        try:
            box["result"] = session.request("tools/call", {"name": "alpha__sample", "arguments": {"prompt": "2+2?"}})
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=call)
    t.start()
    try:
        ev = wait_event(session, "sampling/createMessage")
        assert ev["params"]["messages"][0]["content"]["text"] == "2+2?"
        answer = {"role": "assistant", "content": {"type": "text", "text": "four"}, "model": "by-hand"}
        # A response has no reply of its own.
        assert session.handle({"jsonrpc": "2.0", "id": ev["id"], "result": answer}) is None
    finally:
        t.join(10)
    assert not t.is_alive()
    assert "error" not in box, box.get("error")
    assert text_of(box["result"]) == "four"


def test_handle_text_batches_and_notifications(session: mcprouter.Session) -> None:
    reply = session.handle('{"jsonrpc":"2.0","id":"a","method":"ping"}')
    assert reply == {"jsonrpc": "2.0", "id": "a", "result": {}}
    batch = session.handle([
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "beta__echo", "arguments": {"message": "b"}}},
    ])
    assert isinstance(batch, list) and sorted(r["id"] for r in batch) == [1, 2]
    assert session.handle({"jsonrpc": "2.0", "method": "notifications/initialized"}) is None
    parse_error = session.handle("{not json")
    assert isinstance(parse_error, dict) and parse_error["error"]["code"] == -32700


def test_status_and_metrics(router: mcprouter.Router) -> None:
    st = router.status()
    assert {b["name"]: b["state"] for b in st["backends"]} == {"alpha": "ready", "beta": "ready"}
    text = router.metrics()
    assert 'mcprouter_backend_up{backend="alpha"} 1' in text
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:  # pragma: no cover - pinned in tests/deps/requirements.txt
        return
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert "mcprouter_backend_up" in families


def test_from_file(tmp_path: Any, make_router: Any) -> None:
    from conftest import config

    path = tmp_path / "router.yaml"
    path.write_text(config("gamma"))
    with mcprouter.Router.from_file(path) as r, r.session() as s:
        s.initialize()
        # a single backend: no prefixes
        assert text_of(s.request("tools/call", {"name": "whoami", "arguments": {}})) == "gamma"


@pytest.mark.parametrize("client_id", [None, "sticky-client"])
def test_session_client_id(router: mcprouter.Router, client_id: Any) -> None:
    with router.session(client_id) as s:
        assert s.request("ping") == {}
