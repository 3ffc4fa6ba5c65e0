"""Exceptions: one class per ``mcprouter_status``, plus :class:`JsonRpcError`.

The hierarchy::

    Error
    ├── MCPRouterError            the C call failed (.status, .message)
    │   ├── NullParameterError, InvalidArgumentError, InvalidUtf8Error, ConfigError,
    │   ├── TimeoutError (also a builtins.TimeoutError), QueueFullError, CircuitOpenError,
    │   ├── NoBackendError, TransportError, ProtocolError, ClosedError, AlreadyUsedError,
    │   └── PanicError
    └── JsonRpcError              the router answered with a JSON-RPC error (.code, .data)
"""

from __future__ import annotations

import builtins
import ctypes
import enum
from typing import Any, Dict, Optional, Type

__all__ = [
    "AlreadyUsedError",
    "CircuitOpenError",
    "ClosedError",
    "ConfigError",
    "Error",
    "InvalidArgumentError",
    "InvalidUtf8Error",
    "JsonRpcError",
    "MCPRouterError",
    "NoBackendError",
    "NullParameterError",
    "PanicError",
    "ProtocolError",
    "QueueFullError",
    "Status",
    "TimeoutError",
    "TransportError",
    "check",
    "error_for",
]


class Status(enum.IntEnum):
    """``mcprouter_status``; values are append-only (checked against the header by a test)."""

    OK = 0
    NULL_PARAMETER = 1
    INVALID_ARGUMENT = 2
    INVALID_UTF8 = 3
    CONFIG = 4
    TIMEOUT = 5
    QUEUE_FULL = 6
    CIRCUIT_OPEN = 7
    NO_BACKEND = 8
    TRANSPORT = 9
    PROTOCOL = 10
    CLOSED = 11
    ALREADY_USED = 12
    PANIC = 13


class Error(Exception):
    """Base of every exception this package raises."""


class MCPRouterError(Error):
    """A libmcprouter call failed with ``status``."""

    #: the status this class stands for (subclasses override it)
    default_status: Optional[Status] = None

    def __init__(self, message: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        st = status if status is not None else self.default_status
        try:
            self.status: Optional[Status] = Status(st) if st is not None else None
        except ValueError:  # a newer library with a status this package does not know
            self.status = None
        self.raw_status: Optional[int] = st
        self.message = message

    def __str__(self) -> str:
        name = self.status.name if self.status is not None else self.raw_status
        return f"{self.message} [{name}]"


class NullParameterError(MCPRouterError, ValueError):
    default_status = Status.NULL_PARAMETER


class InvalidArgumentError(MCPRouterError, ValueError):
    default_status = Status.INVALID_ARGUMENT


class InvalidUtf8Error(MCPRouterError, ValueError):
    default_status = Status.INVALID_UTF8


class ConfigError(MCPRouterError):
    default_status = Status.CONFIG


class TimeoutError(MCPRouterError, builtins.TimeoutError):  # noqa: A001 (like asyncio.TimeoutError)
    default_status = Status.TIMEOUT


class QueueFullError(MCPRouterError):
    default_status = Status.QUEUE_FULL


class CircuitOpenError(MCPRouterError):
    default_status = Status.CIRCUIT_OPEN


class NoBackendError(MCPRouterError):
    default_status = Status.NO_BACKEND


class TransportError(MCPRouterError):
    default_status = Status.TRANSPORT


class ProtocolError(MCPRouterError):
    default_status = Status.PROTOCOL


class ClosedError(MCPRouterError):
    default_status = Status.CLOSED


class AlreadyUsedError(MCPRouterError):
    default_status = Status.ALREADY_USED


class PanicError(MCPRouterError):
    default_status = Status.PANIC


_BY_STATUS: Dict[int, Type[MCPRouterError]] = {}
for _cls in (
    NullParameterError,
    InvalidArgumentError,
    InvalidUtf8Error,
    ConfigError,
    TimeoutError,
    QueueFullError,
    CircuitOpenError,
    NoBackendError,
    TransportError,
    ProtocolError,
    ClosedError,
    AlreadyUsedError,
    PanicError,
):
    assert _cls.default_status is not None
    _BY_STATUS[_cls.default_status] = _cls


class JsonRpcError(Error):
    """The router (or a backend through it) answered a request with a JSON-RPC error."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(code, message, data)
        self.code = code
        self.message = message
        self.data = data

    def __str__(self) -> str:
        return f"JSON-RPC error {self.code}: {self.message}"

    @classmethod
    def from_object(cls, err: Any) -> "JsonRpcError":
        if not isinstance(err, dict):
            return cls(-32603, f"malformed error object: {err!r}")
        code = err.get("code")
        return cls(code if isinstance(code, int) else -32603, str(err.get("message", "")), err.get("data"))


def error_for(status: int, message: Optional[str] = None) -> MCPRouterError:
    """The exception for ``status``; the message defaults to ``mcprouter_status_str``."""
    if message is None:
        from ._bindings import lib

        raw = lib().mcprouter_status_str(status)
        message = raw.decode("utf-8", "replace") if raw else f"status {status}"
    return _BY_STATUS.get(status, MCPRouterError)(message, status)


def _take_error(ptr: int) -> MCPRouterError:
    """Builds the exception from an owned ``mcprouter_error *`` and frees it."""
    from ._bindings import lib

    L = lib()
    try:
        status = int(L.mcprouter_error_status(ptr))
        raw = L.mcprouter_error_message(ptr)
        message = raw.decode("utf-8", "replace") if raw else None
    finally:
        L.mcprouter_error_free(ptr)
    return error_for(status, message)


def check(status: int, err: ctypes.c_void_p) -> None:
    """Raises the exception for a failed call. ``err`` is the call's ``mcprouter_error *``
    out-param; it is always freed here when set, even on success."""
    exc = _take_error(err.value) if err.value else None
    err.value = None
    if status == Status.OK:
        return
    if exc is None or exc.raw_status != status:
        # No error object (NULL err_out or an allocation failure), or one that disagrees
        # with the return value: the return value is authoritative.
        exc = error_for(status, exc.message if exc is not None else None)
    raise exc
