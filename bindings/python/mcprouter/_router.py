"""``Router`` and ``Session``: the Python face of ``mcprouter_router`` / ``mcprouter_session``."""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
import weakref
from ctypes import byref, c_uint64, c_void_p
from typing import Any, Dict, List, Mapping, Optional, Set, Union

from ._bindings import lib, take_string
from ._errors import (
    ClosedError,
    InvalidArgumentError,
    InvalidUtf8Error,
    JsonRpcError,
    ProtocolError,
    Status,
    TimeoutError,
    check,
)
from ._managed import Managed

__all__ = ["Router", "Session", "JsonMessage", "Reply"]

#: What :meth:`Session.handle` accepts: JSON text or a JSON-able message / batch.
JsonMessage = Union[str, bytes, Mapping[str, Any], List[Any]]
#: What it returns: a reply object, a batch reply, or nothing (notifications, responses).
Reply = Union[Dict[str, Any], List[Any], None]

#: How long one native next_event call may block, so a concurrent close() is noticed.
_EVENT_SLICE = 0.1
_DEFAULT_PROTOCOL = "2025-06-18"


def _cstr(text: Union[str, bytes], what: str) -> bytes:
    """UTF-8 bytes for a ``const char *`` argument; refuses what C would silently cut."""
    if isinstance(text, bytes):
        data = text
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InvalidUtf8Error(f"{what} is not UTF-8: {e}") from None
    else:
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError as e:  # lone surrogates
            raise InvalidUtf8Error(f"{what} is not valid Unicode: {e}") from None
    if b"\0" in data:
        raise InvalidArgumentError(f"{what} contains a NUL character")
    return data


def _ms(seconds: float, what: str) -> int:
    if seconds != seconds or seconds < 0:  # NaN or negative
        raise ValueError(f"{what} must be >= 0 seconds, got {seconds!r}")
    return min(int(seconds * 1000), 0xFFFFFFFF)


class Router(Managed):
    """A running router: owns the backends (child processes) and their catalog.

    Thread-safe. Use it as a context manager, or call :meth:`close`; closing closes the
    sessions opened from it and stops the backends (joining their threads, which may take
    up to the configured ``shutdown_grace_ms``).
    """

    _kind = "router"

    def __init__(self, ptr: int) -> None:
        super().__init__(ptr)
        self._sessions: "weakref.WeakSet[Session]" = weakref.WeakSet()
        self._sessions_lock = threading.Lock()

    @classmethod
    def from_yaml(cls, text: str) -> "Router":
        """Validates the YAML config, starts every backend and waits for their handshakes
        (a backend that fails does not fail the router: see :meth:`status`).

        Raises :class:`~mcprouter.ConfigError` for an invalid config."""
        out, err = c_void_p(), c_void_p()
        st = lib().mcprouter_router_new_from_yaml(_cstr(text, "the config"), byref(out), byref(err))
        check(st, err)
        return cls(out.value or 0)

    @classmethod
    def from_file(cls, path: "Union[str, os.PathLike[str]]") -> "Router":
        """Like :meth:`from_yaml`, reading the config from ``path``."""
        raw = os.fsencode(path)
        if b"\0" in raw:
            raise InvalidArgumentError("the path contains a NUL character")
        out, err = c_void_p(), c_void_p()
        st = lib().mcprouter_router_new_from_file(raw, byref(out), byref(err))
        check(st, err)
        return cls(out.value or 0)

    def reload(self, config: str) -> int:
        """Applies a new YAML config without a restart and returns its generation (the
        config the router started with is 1). Validated first: a bad config raises
        :class:`~mcprouter.ConfigError` (naming the field and line) and the running one
        keeps serving. Unchanged backends keep their process; added and changed ones
        start before this returns; removed ones finish their calls in flight, then stop.
        Sessions stay open and receive ``notifications/*/list_changed``."""
        text = _cstr(config, "the config")
        generation, err = c_uint64(), c_void_p()
        with self._borrow() as ptr:
            st = lib().mcprouter_router_reload_from_yaml(ptr, text, byref(generation), byref(err))
        check(st, err)
        return generation.value

    def reload_from_file(self, path: "Union[str, os.PathLike[str]]") -> int:
        """Like :meth:`reload`, reading the config from ``path``."""
        raw = os.fsencode(path)
        if b"\0" in raw:
            raise InvalidArgumentError("the path contains a NUL character")
        generation, err = c_uint64(), c_void_p()
        with self._borrow() as ptr:
            st = lib().mcprouter_router_reload_from_file(ptr, raw, byref(generation), byref(err))
        check(st, err)
        return generation.value

    def session(self, client_id: Optional[str] = None) -> "Session":
        """Opens a session: one MCP client. ``client_id`` keys sticky balancing; ``None``
        lets the router generate one."""
        cid = None if client_id is None else _cstr(client_id, "client_id")
        out, err = c_void_p(), c_void_p()
        with self._borrow() as ptr:
            st = lib().mcprouter_session_open(ptr, cid, byref(out), byref(err))
        check(st, err)
        session = Session(out.value or 0, self)
        with self._sessions_lock:
            self._sessions.add(session)
        return session

    def metrics(self) -> str:
        """Prometheus text exposition of the router's metrics."""
        out, err = c_void_p(), c_void_p()
        with self._borrow() as ptr:
            st = lib().mcprouter_router_metrics(ptr, byref(out), byref(err))
        check(st, err)
        return take_string(out.value) or ""

    def status(self) -> Dict[str, Any]:
        """Every backend's state, counts and last error (the parsed status JSON)."""
        out, err = c_void_p(), c_void_p()
        with self._borrow() as ptr:
            st = lib().mcprouter_router_status(ptr, byref(out), byref(err))
        check(st, err)
        value = json.loads(take_string(out.value) or "null")
        if not isinstance(value, dict):
            raise ProtocolError(f"router status is not a JSON object: {value!r}")
        return value

    def shutdown(self, grace: float = 5.0) -> None:
        """Stops the backends: each child's stdin is closed, and after ``grace`` seconds it
        is terminated, then killed. From then on every call on the router and its
        sessions raises :class:`~mcprouter.ClosedError`; :meth:`close` still frees the
        handle. Blocks until every backend thread has been joined. Idempotent."""
        ms = _ms(grace, "grace")
        with self._borrow() as ptr:
            lib().mcprouter_router_shutdown(ptr, ms)

    def _closing(self) -> None:
        with self._sessions_lock:
            sessions = list(self._sessions)
        for s in sessions:
            s.close()

    def _delete(self, ptr: int) -> None:
        lib().mcprouter_router_free(ptr)


class Session(Managed):
    """One MCP client of a :class:`Router`.

    Thread-safe: several threads may call :meth:`request` at once (a long ``tools/call``
    on one thread while another answers a sampling request is the normal case).
    """

    _kind = "session"

    def __init__(self, ptr: int, router: Router) -> None:
        super().__init__(ptr)
        # Keeps the Python router (hence its handle) alive as long as the session.
        self.router = router
        self._ids = itertools.count(1)
        self._ids_lock = threading.Lock()
        self._inflight: Set[int] = set()

    # -- raw messages -------------------------------------------------------------------
    def _handle_text(self, text: bytes) -> Optional[str]:
        out, err = c_void_p(), c_void_p()
        with self._borrow() as ptr:
            st = lib().mcprouter_session_handle(ptr, text, byref(out), byref(err))
        check(st, err)
        return take_string(out.value)

    def handle(self, message: JsonMessage) -> Reply:
        """Handles one JSON-RPC message or batch, given as text or as a JSON-able object,
        and returns the parsed reply: ``None`` for notifications, responses (such as the
        answer to a sampling request), all-notification batches and cancelled requests.

        Malformed input gets a JSON-RPC error *reply*; exceptions mean the call itself
        failed (e.g. :class:`~mcprouter.ClosedError`)."""
        if isinstance(message, (str, bytes)):
            text = _cstr(message, "the message")
        else:
            text = _cstr(json.dumps(message, separators=(",", ":")), "the message")
        reply = self._handle_text(text)
        if reply is None:
            return None
        value = json.loads(reply)
        if not isinstance(value, (dict, list)):
            raise ProtocolError(f"reply is neither an object nor a batch: {reply[:200]!r}")
        return value

    # -- requests -----------------------------------------------------------------------
    def _next_id(self) -> int:
        with self._ids_lock:
            return next(self._ids)

    def request(self, method: str, params: Optional[Mapping[str, Any]] = None, timeout: Optional[float] = None) -> Any:
        """Sends a request with a fresh id and returns its ``result``.

        Raises :class:`~mcprouter.JsonRpcError` when the reply is an error. With
        ``timeout`` (seconds), a request still running then is cancelled (an MCP
        ``notifications/cancelled`` goes to the backend) and
        :class:`~mcprouter.TimeoutError` is raised; without it the router's own per-call
        deadline (``request_timeout_ms``) applies."""
        rid = self._next_id()
        msg: Dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = dict(params)
        text = _cstr(json.dumps(msg, separators=(",", ":")), "the request")
        self._inflight.add(rid)
        try:
            if timeout is None:
                reply = self._handle_text(text)
            else:
                reply = self._with_timeout(rid, text, timeout)
        finally:
            self._inflight.discard(rid)
        if reply is None:
            if self.closed:
                raise ClosedError(f"the session was closed while {method} was in flight")
            raise ProtocolError(f"{method} (id {rid}) was cancelled and got no reply")
        value = json.loads(reply)
        if not isinstance(value, dict):
            raise ProtocolError(f"reply is not a JSON object: {reply[:200]!r}")
        if "error" in value:
            raise JsonRpcError.from_object(value["error"])
        return value.get("result")

    def _with_timeout(self, rid: int, text: bytes, timeout: float) -> Optional[str]:
        _ms(timeout, "timeout")
        done = threading.Event()
        box: Dict[str, Any] = {}

        def run() -> None:
            try:
                box["reply"] = self._handle_text(text)
            except BaseException as e:  # handed to the caller below
                box["error"] = e
            finally:
                done.set()

        threading.Thread(target=run, name=f"mcprouter-request-{rid}", daemon=True).start()
        if not done.wait(timeout):
            self._cancel(rid, f"timed out after {timeout:g} s")
            raise TimeoutError(f"request {rid} timed out after {timeout:g} s")
        if "error" in box:
            raise box["error"]
        reply: Optional[str] = box.get("reply")
        return reply

    def _cancel(self, rid: int, reason: str) -> None:
        """Cancels our own request ``rid``, even while the session is closing."""
        msg = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": rid, "reason": reason}}
        text = json.dumps(msg).encode()
        with self._borrow_unchecked() as ptr:
            if ptr is None:
                return
            out, err = c_void_p(), c_void_p()
            st = lib().mcprouter_session_handle(ptr, text, byref(out), byref(err))
            take_string(out.value)
            try:
                check(st, err)
            except ClosedError:
                pass

    def notify(self, method: str, params: Optional[Mapping[str, Any]] = None) -> None:
        """Sends a notification (no id, no reply)."""
        msg: Dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = dict(params)
        self._handle_text(_cstr(json.dumps(msg, separators=(",", ":")), "the notification"))

    def initialize(
        self,
        *,
        protocol_version: str = _DEFAULT_PROTOCOL,
        capabilities: Optional[Mapping[str, Any]] = None,
        client_info: Optional[Mapping[str, Any]] = None,
    ) -> Dict[str, Any]:
        """The MCP handshake: ``initialize`` then ``notifications/initialized``. Returns the
        ``initialize`` result."""
        params = {
            "protocolVersion": protocol_version,
            "capabilities": dict(capabilities or {}),
            "clientInfo": dict(client_info or {"name": "mcprouter-python", "version": "0.1.0"}),
        }
        result = self.request("initialize", params)
        self.notify("notifications/initialized")
        if not isinstance(result, dict):
            raise ProtocolError(f"initialize result is not an object: {result!r}")
        return result

    # -- events -------------------------------------------------------------------------
    def next_event(self, timeout: Optional[float] = 0.0) -> Optional[Dict[str, Any]]:
        """The next notification or server-to-client request for this client (progress,
        log messages, ``sampling/createMessage``…), waiting up to ``timeout`` seconds
        (``None``: no limit, ``0``: just look). ``None`` when nothing came.

        Answer a server-to-client request with :meth:`handle` (a JSON-RPC response with
        the event's ``id``). Raises :class:`~mcprouter.ClosedError` once the session or
        router is closed and no event is left."""
        deadline = None if timeout is None else time.monotonic() + _ms(timeout, "timeout") / 1000
        L = lib()
        with self._borrow() as ptr:
            while True:
                if self.closed:
                    raise ClosedError("the session was closed")
                left = _EVENT_SLICE if deadline is None else max(0.0, deadline - time.monotonic())
                out, err = c_void_p(), c_void_p()
                st = L.mcprouter_session_next_event(ptr, _ms(min(left, _EVENT_SLICE), "slice"), byref(out), byref(err))
                if st == Status.TIMEOUT and not out.value:
                    check(Status.OK, err)  # frees an error object, if one was made
                    if deadline is not None and time.monotonic() >= deadline:
                        return None
                    continue
                check(st, err)
                text = take_string(out.value)
                if text is None:
                    raise ProtocolError("next_event succeeded without an event")
                event = json.loads(text)
                if not isinstance(event, dict):
                    raise ProtocolError(f"event is not a JSON object: {text[:200]!r}")
                return event

    # -- lifecycle ----------------------------------------------------------------------
    def _closing(self) -> None:
        # Requests of ours still in flight on other threads would otherwise hold the
        # handle until the backend answers: cancel them so close() takes effect now.
        for rid in list(self._inflight):
            self._cancel(rid, "the client closed the session")

    def _delete(self, ptr: int) -> None:
        lib().mcprouter_session_close(ptr)
