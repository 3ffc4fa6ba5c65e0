"""Routing the library's log records to a Python function.

The C callback fires on the router's own threads, possibly several at once. Only an
integer (a slab key) crosses the C boundary as ``userdata``; the trampoline is a
module-level ``CFUNCTYPE`` object, so it lives as long as the module.
"""

from __future__ import annotations

import atexit
import enum
import sys
import threading
import warnings
from typing import Callable, Dict, Optional

from ._bindings import LOG_CB, MCPRouterStr, lib

__all__ = ["LogLevel", "LogCallback", "set_log_callback"]

#: ``fn(level, target, message)``
LogCallback = Callable[[int, str, str], None]


class LogLevel(enum.IntEnum):
    """Levels as the library reports them (the Rust ``log`` crate's order: lower is more
    severe). ``min_level`` selects records at that level or more severe."""

    ERROR = 1
    WARN = 2
    INFO = 3
    DEBUG = 4
    TRACE = 5


# Serialises set_log_callback, so the slab matches what C holds. Not taken when a callback
# itself calls set_log_callback (allowed by the C API): the outer call may be holding it
# while C waits for that very callback to return.
_lock = threading.Lock()
_in_callback = threading.local()
_slab: Dict[int, LogCallback] = {}
_next_key = 1
_atexit_registered = False


def _report(exc: BaseException) -> None:
    msg = f"mcprouter log callback raised {type(exc).__name__}: {exc}"
    try:
        warnings.warn(msg, RuntimeWarning, stacklevel=1)
    except Exception:  # warnings turned into errors: stderr is all that is left
        try:
            sys.stderr.write(msg + "\n")
        except Exception:
            pass


def _deliver(userdata: Optional[int], level: int, target: MCPRouterStr, message: MCPRouterStr) -> None:
    # Runs on a router thread; an exception must never propagate into C.
    _in_callback.active = True
    try:
        fn = _slab.get(userdata or 0)
        if fn is not None:
            fn(int(level), target.text(), message.text())
    except BaseException as e:
        _report(e)
    finally:
        _in_callback.active = False


#: The C function pointer; module-level so it is never garbage-collected while C holds it.
_trampoline = LOG_CB(_deliver)


def set_log_callback(fn: Optional[LogCallback], min_level: int = LogLevel.INFO) -> None:
    """Sends the library's log records at ``min_level`` or more severe to
    ``fn(level, target, message)``; ``None`` stops it. Process-wide: replaces any previous
    callback.

    ``fn`` runs on the router's internal threads, possibly concurrently, and must not
    block for long (it delays the thread that logged). Exceptions it raises are
    reported with :mod:`warnings` and otherwise ignored."""
    if getattr(_in_callback, "active", False):
        _set(fn, min_level)
    else:
        with _lock:
            _set(fn, min_level)


def _set(fn: Optional[LogCallback], min_level: int) -> None:
    global _next_key, _atexit_registered
    L = lib()
    old = list(_slab)
    if fn is None:
        L.mcprouter_set_log_callback(LOG_CB(), None, int(min_level))
    else:
        key = _next_key
        _next_key += 1
        _slab[key] = fn
        L.mcprouter_set_log_callback(_trampoline, key, int(min_level))
        if not _atexit_registered:
            # Router threads may outlive the interpreter's finalization; they must
            # not call into it then.
            atexit.register(_unregister_at_exit)
            _atexit_registered = True
    # A record already past the C side with an old key finds nothing: dropped.
    for k in old:
        _slab.pop(k, None)


def _unregister_at_exit() -> None:
    try:
        set_log_callback(None)
    except Exception:
        pass
