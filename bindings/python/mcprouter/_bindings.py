"""Every C declaration of libmcprouter, written by hand from ``include/mcprouter.h``.

``tests/test_bindings.py`` parses the header and fails when a prototype here differs from
it (name, return type or any parameter), so the two cannot drift apart silently.

Ownership rules the declarations encode:

* owned ``char *`` outputs are received as ``c_void_p`` (a ``c_char_p`` would copy the
  bytes and lose the pointer), then copied with :func:`take_string`, which frees them with
  ``mcprouter_string_free``;
* ``const char *`` results that are borrowed (``mcprouter_error_message``, ``_status_str``,
  ``_version``) are ``c_char_p``: ctypes copies them and nothing is freed;
* handles are ``c_void_p``; ``mcprouter_error *`` out-params are read, then freed by
  :mod:`mcprouter._errors`.
"""

from __future__ import annotations

import ctypes
import threading
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char_p,
    c_int,
    c_size_t,
    c_uint32,
    c_void_p,
)
from typing import Any, Dict, List, Optional, Tuple

from . import _ffi

__all__ = ["LOG_CB", "MCPRouterStr", "PROTOTYPES", "lib", "take_string"]


class MCPRouterStr(Structure):
    """``mcprouter_str``: a borrowed UTF-8 view, *not* NUL-terminated, valid only during
    the callback it is passed to."""

    _fields_ = [("data", c_void_p), ("len", c_size_t)]

    def text(self) -> str:
        if not self.data or not self.len:
            return ""
        return ctypes.string_at(self.data, self.len).decode("utf-8", "replace")


#: ``void (*mcprouter_log_cb)(void *userdata, int level, mcprouter_str target, mcprouter_str message)``
LOG_CB = CFUNCTYPE(None, c_void_p, c_int, MCPRouterStr, MCPRouterStr)

_status = c_int  # mcprouter_status: a C enum, int-sized
_handle = c_void_p  # every opaque pointer
_out = POINTER(c_void_p)  # every `T **` out-param (handles, owned strings, errors)

#: name -> (restype, argtypes), in header order.
PROTOTYPES: Dict[str, Tuple[Any, List[Any]]] = {
    "mcprouter_router_new_from_yaml": (_status, [c_char_p, _out, _out]),
    "mcprouter_router_new_from_file": (_status, [c_char_p, _out, _out]),
    # generation_out is a `uint64_t *` (NULL allowed): passed as byref(c_uint64).
    "mcprouter_router_reload_from_yaml": (_status, [_handle, c_char_p, c_void_p, _out]),
    "mcprouter_router_reload_from_file": (_status, [_handle, c_char_p, c_void_p, _out]),
    "mcprouter_session_open": (_status, [_handle, c_char_p, _out, _out]),
    "mcprouter_session_handle": (_status, [_handle, c_char_p, _out, _out]),
    "mcprouter_session_next_event": (_status, [_handle, c_uint32, _out, _out]),
    "mcprouter_session_close": (None, [_handle]),
    "mcprouter_router_metrics": (_status, [_handle, _out, _out]),
    "mcprouter_router_status": (_status, [_handle, _out, _out]),
    "mcprouter_router_shutdown": (None, [_handle, c_uint32]),
    "mcprouter_router_free": (None, [_handle]),
    "mcprouter_gateway_start": (_status, [_handle, c_char_p, _out, _out]),
    "mcprouter_gateway_url": (_status, [_handle, _out, _out]),
    "mcprouter_gateway_shutdown": (None, [_handle, c_uint32]),
    "mcprouter_gateway_free": (None, [_handle]),
    "mcprouter_string_free": (None, [c_void_p]),
    "mcprouter_error_status": (_status, [_handle]),
    "mcprouter_error_message": (c_char_p, [_handle]),
    "mcprouter_error_free": (None, [_handle]),
    "mcprouter_status_str": (c_char_p, [_status]),
    "mcprouter_version": (c_char_p, []),
    "mcprouter_set_log_callback": (None, [LOG_CB, c_void_p, c_int]),
}

_lock = threading.Lock()
_declared: Optional[ctypes.CDLL] = None


def lib() -> ctypes.CDLL:
    """The loaded library with every prototype declared (loaded on first use, so that
    ``import mcprouter`` works without the native library)."""
    global _declared
    if _declared is not None:
        return _declared
    with _lock:
        if _declared is None:
            cdll = _ffi.load()
            missing = [name for name in PROTOTYPES if not hasattr(cdll, name)]
            if missing:
                raise _ffi.LibraryNotFoundError(
                    f"{cdll._name} lacks {', '.join(missing)}: not a matching libmcprouter"
                )
            for name, (restype, argtypes) in PROTOTYPES.items():
                fn = getattr(cdll, name)
                fn.restype = restype
                fn.argtypes = argtypes
            _declared = cdll
    return _declared


def take_string(ptr: Optional[int]) -> Optional[str]:
    """Copies an owned ``char *`` into a ``str`` and frees it; ``None`` for NULL."""
    if not ptr:
        return None
    try:
        return ctypes.string_at(ptr).decode("utf-8")
    finally:
        lib().mcprouter_string_free(ptr)
