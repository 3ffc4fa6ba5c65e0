"""The hand-written declarations in mcprouter/_bindings.py against the C header."""

from __future__ import annotations

import ctypes
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

import mcprouter
from mcprouter import _bindings, _ffi
from mcprouter._errors import Status

REPO = Path(__file__).resolve().parents[3]


def header_path() -> Optional[Path]:
    """$MCPROUTER_HEADER, else include/mcprouter.h of the repo the library was built in
    (…/target/debug/libmcprouter.so -> …/include/mcprouter.h), else this repo's."""
    env = os.environ.get("MCPROUTER_HEADER")
    if env:
        return Path(env)
    lib = os.environ.get("MCPROUTER_LIB")
    if lib:
        guess = Path(lib).resolve().parents[2] / "include" / "mcprouter.h"
        if guess.is_file():
            return guess
    guess = REPO / "include" / "mcprouter.h"
    return guess if guess.is_file() else None


HEADER = header_path()


def header_text() -> str:
    # A missing header fails the check against it; a skip would read as a pass.
    if HEADER is None:
        pytest.fail("include/mcprouter.h not found (set MCPROUTER_HEADER)")
    text = HEADER.read_text()
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return re.sub(r"^\s*#[^\n]*", " ", text, flags=re.M)


def header_functions() -> Dict[str, Tuple[str, List[str]]]:
    out = {}
    for m in re.finditer(r"([A-Za-z_][\w\s\*]*?)\b(mcprouter_\w+)\s*\(([^()]*)\)\s*;", header_text()):
        ret, name, params = m.group(1), m.group(2), m.group(3)
        ret = ret.split(";")[-1].split("}")[-1]
        args = [] if params.strip() in ("", "void") else [p.strip() for p in params.split(",")]
        out[name] = (" ".join(ret.split()), args)
    return out


def norm(c_type: str) -> str:
    return " ".join(c_type.replace("*", " * ").split()).replace("extern ", "")


def param_type(decl: str) -> str:
    """`const char *yaml` -> `const char *`; `uint32_t grace_ms` -> `uint32_t`."""
    decl = norm(decl)
    if "*" in decl:
        return decl[: decl.rindex("*") + 1]
    return decl.rsplit(" ", 1)[0]


def expected_ctype(c: str) -> Any:
    c = c.replace("struct ", "").replace("enum ", "")
    stars = c.count("*")
    base = c.replace("*", "").replace("const", "").strip()
    if stars == 0:
        return {
            "void": None,
            "mcprouter_status": ctypes.c_int,
            "uint32_t": ctypes.c_uint32,
            "int": ctypes.c_int,
            "size_t": ctypes.c_size_t,
            "mcprouter_log_cb": _bindings.LOG_CB,
        }[base]
    if stars == 1:
        if base == "char":
            # borrowed inputs and borrowed static results are c_char_p; an owned
            # `char *` *input* (string_free) must stay a raw pointer.
            return ctypes.c_char_p if c.startswith("const") else ctypes.c_void_p
        return ctypes.c_void_p  # opaque handles, void *
    if stars == 2:
        return ctypes.POINTER(ctypes.c_void_p)
    raise AssertionError(f"unexpected C type {c!r}")


def test_every_function_is_declared_exactly_like_the_header() -> None:
    funcs = header_functions()
    assert funcs, f"no prototypes parsed from {HEADER}"
    missing = sorted(set(_bindings.PROTOTYPES) - set(funcs))
    assert not missing, f"declared in _bindings.py but not in the header: {missing}"
    extra = sorted(set(funcs) - set(_bindings.PROTOTYPES))
    # New C functions are fine (append-only API), but say so.
    if extra:
        print(f"header functions without a Python declaration: {extra}")
    for name, (restype, argtypes) in _bindings.PROTOTYPES.items():
        ret, params = funcs[name]
        assert expected_ctype(norm(ret)) is restype, f"{name}: returns {ret!r}, declared {restype}"
        want = [expected_ctype(param_type(p)) for p in params]
        assert want == argtypes, f"{name}: header ({', '.join(params)}) vs declared {argtypes}"


def test_status_values_match_the_header() -> None:
    text = header_text()
    found = dict((m.group(1), int(m.group(2))) for m in re.finditer(r"MCPROUTER_STATUS_(\w+)\s*=\s*(\d+)", text))
    if not found:  # enumerators without explicit values: count them
        body = re.search(r"enum\s+\w*\s*\{([^}]*)\}", text, re.S)
        assert body
        names = re.findall(r"MCPROUTER_STATUS_(\w+)", body.group(1))
        found = {n: i for i, n in enumerate(names)}
    assert found == {s.name: s.value for s in Status}


def test_status_strings_exist_for_every_status() -> None:
    L = _bindings.lib()
    for s in Status:
        raw = L.mcprouter_status_str(s.value)
        assert raw, s


def test_string_free_and_error_free_accept_null() -> None:
    L = _bindings.lib()
    L.mcprouter_string_free(None)
    L.mcprouter_error_free(None)
    L.mcprouter_router_free(None)
    L.mcprouter_session_close(None)


def test_null_parameters_are_reported() -> None:
    L = _bindings.lib()
    err = ctypes.c_void_p()
    out = ctypes.c_void_p()
    st = L.mcprouter_router_new_from_yaml(None, ctypes.byref(out), ctypes.byref(err))
    assert st == Status.NULL_PARAMETER and not out.value
    with pytest.raises(mcprouter.NullParameterError):
        mcprouter._errors.check(st, err)
    assert err.value is None


def test_library_search_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MCPROUTER_LIB", str(tmp_path / "x.so"))
    assert _ffi.candidates() == [tmp_path / "x.so"]
    monkeypatch.delenv("MCPROUTER_LIB")
    paths = _ffi.candidates()
    assert paths[0].parent.name == _ffi.platform_tag()
    assert paths[0].parent.parent.name == "_native"


def test_invalid_utf8_and_null_err_out() -> None:
    L = _bindings.lib()
    out = ctypes.c_void_p()
    err = ctypes.c_void_p()
    st = L.mcprouter_router_new_from_yaml(b"backends: []\n# \xff\n", ctypes.byref(out), ctypes.byref(err))
    assert st == Status.INVALID_UTF8 and not out.value
    with pytest.raises(mcprouter.InvalidUtf8Error):
        mcprouter._errors.check(st, err)
    # err_out may be NULL: the status alone comes back.
    assert L.mcprouter_router_new_from_yaml(b"backends: [", ctypes.byref(out), None) == Status.CONFIG
    assert not out.value


def test_status_str_names_the_status() -> None:
    L = _bindings.lib()
    assert L.mcprouter_status_str(Status.CLOSED) == b"CLOSED"
    assert L.mcprouter_status_str(999) == b"UNKNOWN"
