"""``Managed``: the base of every object that owns a native handle.

Closing must be safe while another thread is inside a native call with the same handle
(freeing it then would be a use-after-free in C). So each call *borrows* the pointer
(:meth:`Managed._borrow`), and :meth:`Managed.close` only marks the object closed; the
pointer is freed by whichever of ``close()`` or the last borrow finishes last. After
``close()`` no new borrow is granted: they raise :class:`~mcprouter.ClosedError`.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from types import TracebackType
from typing import Iterator, Optional, Type, TypeVar

from ._errors import ClosedError

__all__ = ["Managed"]

M = TypeVar("M", bound="Managed")


class Managed:
    """Owns one native pointer; idempotent :meth:`close`, a context manager, and a
    ``__del__`` backstop (which cannot run while a borrow holds a reference)."""

    _ptr: Optional[int] = None
    _closed: bool = True
    _kind: str = "object"

    def __init__(self, ptr: int) -> None:
        if not ptr:
            raise ValueError("NULL handle")
        self._lock = threading.Lock()
        self._borrows = 0
        self._ptr = ptr
        self._closed = False

    # -- to implement -------------------------------------------------------------------
    def _delete(self, ptr: int) -> None:
        """Frees the native handle. Called exactly once, with no borrow outstanding."""
        raise NotImplementedError

    def _closing(self) -> None:
        """Hook run by ``close()`` before the handle is freed (or its freeing deferred);
        it may still borrow the handle through :meth:`_borrow_unchecked`."""

    # -- lifecycle ----------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    @contextmanager
    def _borrow(self) -> Iterator[int]:
        """The pointer, guaranteed valid until the ``with`` block ends."""
        with self._lock:
            if self._closed or self._ptr is None:
                raise ClosedError(f"the {self._kind} is closed")
            self._borrows += 1
            ptr = self._ptr
        try:
            yield ptr
        finally:
            self._release()

    @contextmanager
    def _borrow_unchecked(self) -> Iterator[Optional[int]]:
        """Like :meth:`_borrow` but also after ``close()`` (until the handle is freed);
        yields ``None`` once it is gone."""
        with self._lock:
            ptr = self._ptr
            if ptr is not None:
                self._borrows += 1
        try:
            yield ptr
        finally:
            if ptr is not None:
                self._release()

    def _release(self) -> None:
        with self._lock:
            self._borrows -= 1
            ptr = self._take_if_unused()
        if ptr is not None:
            self._delete(ptr)

    def _take_if_unused(self) -> Optional[int]:
        # Caller holds self._lock.
        if self._closed and self._borrows == 0 and self._ptr is not None:
            ptr, self._ptr = self._ptr, None
            return ptr
        return None

    def close(self) -> None:
        """Closes the object; idempotent. Calls in progress on other threads finish first
        (the handle is freed when the last of them returns)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._closing()
        finally:
            with self._lock:
                ptr = self._take_if_unused()
            if ptr is not None:
                self._delete(ptr)

    def __enter__(self: M) -> M:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # Only a backstop: a half-constructed object has no _lock, and at interpreter
        # exit the library may already be unusable.
        if getattr(self, "_lock", None) is None:
            return
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self._closed else hex(self._ptr or 0)
        return f"<{type(self).__name__} {state}>"
