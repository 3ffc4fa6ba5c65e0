"""``Gateway``: the Python face of ``mcprouter_gateway`` (the router over Streamable HTTP)."""

from __future__ import annotations

from ctypes import byref, c_void_p
from typing import Optional

from ._bindings import lib, take_string
from ._errors import check
from ._managed import Managed
from ._router import Router, _cstr, _ms

__all__ = ["Gateway"]


class Gateway(Managed):
    """Serves a :class:`Router` to many MCP clients over Streamable HTTP, with the settings
    of its config's ``gateway:`` section.

    Thread-safe. Use it as a context manager, or call :meth:`close` (which stops it); the
    router keeps running and must be closed on its own.
    """

    _kind = "gateway"

    @classmethod
    def start(cls, router: Router, listen: Optional[str] = None) -> "Gateway":
        """Starts serving ``router``. ``listen`` (``"HOST:PORT"``, port 0 for a free one)
        overrides the config's address. Raises :class:`~mcprouter.ConfigError` when there is
        no address, or a non-loopback one without tokens, and
        :class:`~mcprouter.TransportError` when it cannot be bound."""
        addr = None if listen is None else _cstr(listen, "listen")
        out, err = c_void_p(), c_void_p()
        with router._borrow() as ptr:
            st = lib().mcprouter_gateway_start(ptr, addr, byref(out), byref(err))
        check(st, err)
        return cls(out.value or 0)

    @property
    def url(self) -> str:
        """The MCP endpoint's URL, ``http://HOST:PORT/PATH``."""
        out, err = c_void_p(), c_void_p()
        with self._borrow() as ptr:
            st = lib().mcprouter_gateway_url(ptr, byref(out), byref(err))
        check(st, err)
        return take_string(out.value) or ""

    def shutdown(self, grace: float = 5.0) -> None:
        """Stops accepting, lets open streams and calls finish for up to ``grace`` seconds,
        closes every HTTP session and joins the gateway's threads. Idempotent."""
        ms = _ms(grace, "grace")
        with self._borrow() as ptr:
            lib().mcprouter_gateway_shutdown(ptr, ms)

    def _delete(self, ptr: int) -> None:
        lib().mcprouter_gateway_free(ptr)
