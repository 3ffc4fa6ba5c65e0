"""The package is mypy --strict clean (mypy is pinned in tests/deps/requirements.txt)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1]


def test_mypy_strict() -> None:
    # Without mypy this test fails rather than skips: a skipped type check reads as a pass.
    try:
        from mypy import api
    except ImportError:
        pytest.fail(
            f"mypy is not importable from {sys.executable}: run scripts/deps.sh and use .deps/venv/bin/python"
        )
    out, err, code = api.run(["--config-file", str(PKG / "pyproject.toml"), str(PKG / "mcprouter")])
    assert code == 0, out + err
