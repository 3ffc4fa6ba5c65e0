"""mcprouter.set_log_callback: records arrive from the router's own threads."""

from __future__ import annotations

import threading
import time
import warnings
from typing import Any, List, Tuple

import pytest

import mcprouter
from conftest import config


@pytest.fixture
def records() -> Any:
    got: List[Tuple[int, str, str, int]] = []
    lock = threading.Lock()

    def fn(level: int, target: str, message: str) -> None:
        with lock:
            got.append((level, target, message, threading.get_ident()))

    mcprouter.set_log_callback(fn, mcprouter.LogLevel.INFO)
    try:
        yield got
    finally:
        mcprouter.set_log_callback(None)


def wait_for(pred: Any, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def test_log_records_come_from_router_threads(records: Any, make_router: Any) -> None:
    r = make_router("loggy")
    with r.session() as s:
        s.request("tools/call", {"name": "stderr_flood", "arguments": {"bytes": 160}})
    # The child's stderr is read by a router thread and logged at info.
    def stderr_lines() -> List[Any]:
        return [x for x in list(records) if x[1] == "mcprouter::backend::stderr" and "[loggy]" in x[2]]

    assert wait_for(lambda: len(stderr_lines()) >= 2), records
    assert all(x[0] == mcprouter.LogLevel.INFO for x in stderr_lines())
    assert all(x[3] != threading.get_ident() for x in stderr_lines())


def test_min_level_filters() -> None:
    got: List[Tuple[int, str, str]] = []
    mcprouter.set_log_callback(lambda lvl, tgt, msg: got.append((lvl, tgt, msg)), mcprouter.LogLevel.WARN)
    try:
        # A backend that cannot start logs an error; the good one's stderr is info only.
        r = mcprouter.Router.from_yaml(config("quiet") + "  - name: broken\n    command: /nonexistent/mcp-server\n")
        try:
            with r.session() as s:
                s.request("tools/call", {"name": "stderr_flood", "arguments": {"bytes": 160}})
            time.sleep(0.3)
        finally:
            r.close()
        assert any(lvl == mcprouter.LogLevel.ERROR and "broken" in msg for lvl, _, msg in got), got
        assert all(lvl <= mcprouter.LogLevel.WARN for lvl, _, _ in got), got
    finally:
        mcprouter.set_log_callback(None)


def test_exceptions_in_the_callback_are_reported_not_raised(make_router: Any) -> None:
    calls: List[int] = []

    def bad(level: int, target: str, message: str) -> None:
        calls.append(level)
        raise RuntimeError("callback bug")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mcprouter.set_log_callback(bad, mcprouter.LogLevel.INFO)
        try:
            r = make_router("oops")
            with r.session() as s:
                s.request("tools/call", {"name": "stderr_flood", "arguments": {"bytes": 80}})
                # the router keeps working
                assert s.request("ping") == {}
            assert wait_for(lambda: len(calls) > 0)
        finally:
            mcprouter.set_log_callback(None)
    assert any("callback bug" in str(w.message) for w in caught)


def test_replacing_and_clearing_the_callback(make_router: Any) -> None:
    first: List[str] = []
    second: List[str] = []
    mcprouter.set_log_callback(lambda l, t, m: first.append(m), mcprouter.LogLevel.INFO)
    mcprouter.set_log_callback(lambda l, t, m: second.append(m), mcprouter.LogLevel.INFO)
    try:
        r = make_router("swap")
        with r.session() as s:
            s.request("tools/call", {"name": "stderr_flood", "arguments": {"bytes": 80}})
        assert wait_for(lambda: any("[swap]" in m for m in second))
        assert not any("[swap]" in m for m in first)
    finally:
        mcprouter.set_log_callback(None)
    n = len(second)
    r2 = make_router("after")
    with r2.session() as s:
        s.request("tools/call", {"name": "stderr_flood", "arguments": {"bytes": 80}})
    time.sleep(0.2)
    assert not any("[after]" in m for m in second[n:])


def test_the_callback_may_clear_itself(make_router: Any) -> None:
    # The C API allows set_log_callback from inside the callback; the binding must not
    # deadlock on its own lock when another thread is replacing the callback meanwhile.
    seen = threading.Event()

    def once(level: int, target: str, message: str) -> None:
        seen.set()
        mcprouter.set_log_callback(None)

    mcprouter.set_log_callback(once, mcprouter.LogLevel.INFO)
    try:
        r = make_router("selfclear")
        with r.session() as s:
            s.request("tools/call", {"name": "stderr_flood", "arguments": {"bytes": 800}})
        assert seen.wait(5)
        mcprouter.set_log_callback(lambda l, t, m: None, mcprouter.LogLevel.INFO)
    finally:
        mcprouter.set_log_callback(None)
