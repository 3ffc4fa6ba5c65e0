"""The ``mcprouter`` command of a wheel: runs the bundled Rust binary with the same arguments.

The wheel carries the binary next to the library, in ``_native/<platform>-<machine>/``; a
source checkout falls back to ``<repo>/target/{debug,release}/``. On POSIX the Python process
is replaced (``exec``), so signals, stdin/stdout (the MCP stream of ``mcprouter serve``) and the
exit status are the binary's own; elsewhere it runs as a child and its status is passed on.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import List, NoReturn, Optional, Sequence

from ._ffi import _repo_root, platform_tag

__all__ = ["binary", "candidates", "main"]


def _exe() -> str:
    return "mcprouter.exe" if sys.platform == "win32" else "mcprouter"


def candidates() -> List[Path]:
    """Every path that would be tried for the binary, in order."""
    out = [Path(__file__).resolve().parent / "_native" / platform_tag() / _exe()]
    root = _repo_root()
    if root is not None:
        out += [root / "target" / "debug" / _exe(), root / "target" / "release" / _exe()]
    return out


def binary() -> Optional[Path]:
    """The ``mcprouter`` binary this package runs, or None when there is none."""
    return next((p for p in candidates() if p.is_file() and os.access(p, os.X_OK)), None)


def main(argv: Optional[Sequence[str]] = None) -> NoReturn:
    """Entry point of the ``mcprouter`` console script and of ``python -m mcprouter``."""
    args = list(sys.argv[1:] if argv is None else argv)
    exe = binary()
    if exe is None:
        listed = "\n  ".join(str(p) for p in candidates())
        sys.stderr.write(
            f"mcprouter: the mcprouter binary is not in this installation; looked at:\n  {listed}\n"
            "Install a platform wheel (scripts/package-python.sh builds one), or `cargo install mcprouter`.\n"
        )
        raise SystemExit(127)
    if os.name == "posix":
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(str(exe), [str(exe), *args])
    raise SystemExit(subprocess.call([str(exe), *args]))
