"""The package is mypy --strict clean (mypy is pinned in tests/deps/requirements.txt)."""

from __future__ import annotations

from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1]


def test_mypy_strict() -> None:
    api = pytest.importorskip("mypy.api")
    out, err, code = api.run(["--config-file", str(PKG / "pyproject.toml"), str(PKG / "mcprouter")])
    assert code == 0, out + err
