"""Shared fixtures. The package is used from source: ``bindings/python`` goes on sys.path.

Environment:
  MCPROUTER_LIB            the native library (default: the package's own search order)
  MCPROUTER_BIN            the `mcprouter` binary whose `test-server` is the backend
                           (default <repo>/target/debug/mcprouter)
  MCPROUTER_DEPS           the pinned third-party deps (default <repo>/.deps)
  MCPROUTER_TEST_TIMEOUT   seconds before a hung test dumps every thread's stack and
                           kills the run (default 60)
"""

from __future__ import annotations

import faulthandler
import os
import sys
import textwrap
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
REPO = HERE.parents[2]

import mcprouter  # noqa: E402

TEST_TIMEOUT = float(os.environ.get("MCPROUTER_TEST_TIMEOUT", "60"))


def mcprouter_bin() -> Path:
    return Path(os.environ.get("MCPROUTER_BIN") or REPO / "target" / "debug" / "mcprouter")


def deps_dir() -> Path:
    return Path(os.environ.get("MCPROUTER_DEPS") or REPO / ".deps")


def backend_yaml(name: str, extra_args: Optional[List[str]] = None) -> str:
    args = ["test-server", "--name", name] + list(extra_args or [])
    quoted = ", ".join(f'"{a}"' for a in args)
    return f"  - name: {name}\n    command: \"{mcprouter_bin()}\"\n    args: [{quoted}]\n"


def config(*names: str, timeout_ms: int = 5000, extra: str = "") -> str:
    """A router config with one test-server backend per name."""
    head = f"router: {{request_timeout_ms: {timeout_ms}, shutdown_grace_ms: 1000}}\n{extra}backends:\n"
    return head + "".join(backend_yaml(n) for n in names)


@pytest.fixture(autouse=True)
def _watchdog() -> Iterator[None]:
    # A hang in native code cannot be interrupted from Python: dump every thread's stack
    # and exit instead of blocking CI forever.
    faulthandler.dump_traceback_later(TEST_TIMEOUT, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="session", autouse=True)
def _prerequisites() -> None:
    try:
        mcprouter.version()
    except mcprouter.LibraryNotFoundError as e:
        pytest.exit(f"cannot run the binding tests: {e}", returncode=2)
    if not mcprouter_bin().is_file():
        pytest.exit(f"cannot run the binding tests: no test-server binary at {mcprouter_bin()} "
                    "(build it, or set MCPROUTER_BIN)", returncode=2)


@pytest.fixture
def make_router() -> Iterator[Callable[..., mcprouter.Router]]:
    """``make_router(*names, **config_kw)``: a router on test-servers, closed after the test."""
    made: List[mcprouter.Router] = []

    def make(*names: str, **kw: object) -> mcprouter.Router:
        r = mcprouter.Router.from_yaml(config(*names, **kw))  # type: ignore[arg-type]
        made.append(r)
        return r

    try:
        yield make
    finally:
        for r in made:
            r.close()


@pytest.fixture(scope="module")
def router() -> Iterator[mcprouter.Router]:
    """alpha + beta: every tool name collides, so each is exposed as alpha__x and beta__x."""
    faulthandler.dump_traceback_later(TEST_TIMEOUT, exit=True)
    r = mcprouter.Router.from_yaml(config("alpha", "beta"))
    faulthandler.cancel_dump_traceback_later()
    try:
        yield r
    finally:
        faulthandler.dump_traceback_later(TEST_TIMEOUT, exit=True)
        r.close()
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def session(router: mcprouter.Router) -> Iterator[mcprouter.Session]:
    with router.session() as s:
        s.initialize(capabilities={"sampling": {}})
        yield s


def dedent(s: str) -> str:
    return textwrap.dedent(s).lstrip()
