"""Finding and loading the native library.

Search order (the first candidate that exists wins; a failed load of an existing file is
an error, not a reason to try the next one, so a broken library is never masked):

1. ``$MCPROUTER_LIB``, a path to the library file (nothing else is tried when it is set);
2. ``mcprouter/_native/<platform>-<machine>/<libname>``, where a platform wheel puts it;
3. ``<repo>/target/debug/`` then ``<repo>/target/release/`` when the package is used from a
   source checkout (``<repo>`` holds ``Cargo.toml``).
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
import threading
from pathlib import Path
from typing import List, Optional

__all__ = ["LibraryNotFoundError", "candidates", "load", "platform_tag"]

_MACHINES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}


class LibraryNotFoundError(ImportError):
    """No copy of the native library was found; the message lists every place looked at."""


def platform_tag() -> str:
    """``<sys.platform>-<machine>``, e.g. ``linux-x86_64``, ``darwin-aarch64``, ``win32-x86_64``."""
    machine = platform.machine().lower()
    return f"{sys.platform}-{_MACHINES.get(machine, machine)}"


def _libname() -> str:
    if sys.platform == "win32":
        return "mcprouter.dll"
    if sys.platform == "darwin":
        return "libmcprouter.dylib"
    return "libmcprouter.so"


def _repo_root() -> Optional[Path]:
    # bindings/python/mcprouter/_ffi.py -> the repository root, only in a source checkout.
    root = Path(__file__).resolve().parents[3]
    return root if (root / "Cargo.toml").is_file() else None


def candidates() -> List[Path]:
    """Every path that would be tried, in order."""
    env = os.environ.get("MCPROUTER_LIB")
    if env:
        return [Path(env)]
    name = _libname()
    out = [Path(__file__).resolve().parent / "_native" / platform_tag() / name]
    root = _repo_root()
    if root is not None:
        out += [root / "target" / "debug" / name, root / "target" / "release" / name]
    return out


_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None


def load() -> ctypes.CDLL:
    """Loads the library once per process (thread-safe) and returns it, undeclared."""
    global _lib
    with _lock:
        if _lib is None:
            tried = candidates()
            for path in tried:
                if path.is_file():
                    # CDLL (not PyDLL): the GIL is released for the whole native call,
                    # which is what lets blocking calls run in parallel from threads.
                    _lib = ctypes.CDLL(str(path))
                    break
            else:
                listed = "\n  ".join(str(p) for p in tried)
                raise LibraryNotFoundError(
                    f"libmcprouter was not found; looked at:\n  {listed}\n"
                    "Set MCPROUTER_LIB to the library's path, or build it with `cargo build`."
                )
        return _lib
