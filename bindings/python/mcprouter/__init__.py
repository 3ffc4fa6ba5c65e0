"""mcprouter: route MCP (Model Context Protocol) JSON-RPC traffic from one client to a
fleet of MCP servers. Python bindings (ctypes) over ``libmcprouter``.

>>> import mcprouter
>>> with mcprouter.Router.from_file("router.yaml") as router:   # doctest: +SKIP
...     with router.session() as s:
...         s.initialize()
...         tools = s.request("tools/list")["tools"]
...         s.request("tools/call", {"name": "alpha__echo", "arguments": {"message": "hi"}})

The native library is found through ``$MCPROUTER_LIB``, then the package's ``_native/``
folder, then a source checkout's ``target/{debug,release}/`` (see :mod:`mcprouter._ffi`).
"""

from __future__ import annotations

from ._bindings import lib as _lib
from ._errors import (
    AlreadyUsedError,
    CircuitOpenError,
    ClosedError,
    ConfigError,
    Error,
    InvalidArgumentError,
    InvalidUtf8Error,
    JsonRpcError,
    MCPRouterError,
    NoBackendError,
    NullParameterError,
    PanicError,
    ProtocolError,
    QueueFullError,
    Status,
    TimeoutError,
    TransportError,
)
from ._ffi import LibraryNotFoundError
from ._gateway import Gateway
from ._log import LogCallback, LogLevel, set_log_callback
from ._router import JsonMessage, Reply, Router, Session

__version__ = "0.1.0"

__all__ = [
    "AlreadyUsedError",
    "CircuitOpenError",
    "ClosedError",
    "ConfigError",
    "Error",
    "Gateway",
    "InvalidArgumentError",
    "InvalidUtf8Error",
    "JsonMessage",
    "JsonRpcError",
    "LibraryNotFoundError",
    "LogCallback",
    "LogLevel",
    "MCPRouterError",
    "NoBackendError",
    "NullParameterError",
    "PanicError",
    "ProtocolError",
    "QueueFullError",
    "Reply",
    "Router",
    "Session",
    "Status",
    "TimeoutError",
    "TransportError",
    "set_log_callback",
    "version",
]


def version() -> str:
    """The native library's version (``mcprouter_version()``)."""
    raw = _lib().mcprouter_version()
    return raw.decode("utf-8") if raw else ""
