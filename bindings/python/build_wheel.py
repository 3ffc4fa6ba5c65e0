"""Builds the platform wheel: the pure-Python package plus this machine's native library and
``mcprouter`` binary in ``mcprouter/_native/<platform>-<machine>/``.

Standard library only, so it needs no network and no build backend: a wheel is a zip file
with a ``.dist-info`` folder (PEP 427, PEP 491), written here directly. Metadata comes from
``pyproject.toml``, the one source of truth shared with the setuptools (pure, source) build.

The tag is ``py3-none-<platform>``: ctypes needs no particular Python or ABI, but the library
and binary are for this OS and CPU. The platform is ``sysconfig.get_platform()`` as a wheel
tag (``linux_x86_64``, ``macosx_11_0_arm64``, ``win_amd64``): exactly what was built, installable
here and on machines like it. A ``manylinux`` tag would be a promise about glibc and the
libraries linked, which only a check such as auditwheel can make; none is claimed.

usage: python build_wheel.py --lib PATH --bin PATH --out DIR
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.util
import os
import re
import sysconfig
import time
import tomllib
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Tuple

HERE = Path(__file__).resolve().parent
PACKAGE = HERE / "mcprouter"


def _ffi() -> Any:
    # _ffi.py alone (standard library only): importing the package would load a library.
    spec = importlib.util.spec_from_file_location("_mcprouter_ffi", PACKAGE / "_ffi.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wheel_platform() -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", sysconfig.get_platform())


def metadata(project: Dict[str, Any]) -> str:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {project['name']}",
        f"Version: {project['version']}",
        f"Summary: {project['description']}",
        f"Requires-Python: {project['requires-python']}",
        f"License: {project['license']['text']}",
    ]
    lines += [f"Classifier: {c}" for c in project.get("classifiers", [])]
    lines += [f"Project-URL: {k}, {v}" for k, v in project.get("urls", {}).items()]
    for extra, reqs in project.get("optional-dependencies", {}).items():
        lines.append(f"Provides-Extra: {extra}")
        lines += [f'Requires-Dist: {r}; extra == "{extra}"' for r in reqs]
    lines.append("Description-Content-Type: text/markdown")
    readme = (HERE / str(project["readme"])).read_text(encoding="utf-8")
    return "\n".join(lines) + "\n\n" + readme


def entry_points(project: Dict[str, Any]) -> str:
    scripts = project.get("scripts", {})
    return "[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in scripts.items())


def build(lib: Path, binary: Path, out: Path) -> Path:
    project = tomllib.loads((HERE / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    name, version = project["name"], project["version"]
    tag = f"py3-none-{wheel_platform()}"
    dist_info = f"{name}-{version}.dist-info"
    native = f"mcprouter/_native/{_ffi().platform_tag()}"

    # (path in the wheel, bytes, executable)
    files: List[Tuple[str, bytes, bool]] = []
    for src in sorted(PACKAGE.rglob("*")):
        rel = src.relative_to(HERE).as_posix()
        if src.is_file() and "__pycache__" not in rel and "/_native/" not in rel and src.suffix in (".py", ".typed"):
            files.append((rel, src.read_bytes(), False))
    files.append((f"{native}/{lib.name}", lib.read_bytes(), True))
    files.append((f"{native}/{binary.name}", binary.read_bytes(), True))
    files.append((f"{dist_info}/METADATA", metadata(project).encode(), False))
    wheel = f"Wheel-Version: 1.0\nGenerator: mcprouter build_wheel.py\nRoot-Is-Purelib: false\nTag: {tag}\n"
    files.append((f"{dist_info}/WHEEL", wheel.encode(), False))
    files.append((f"{dist_info}/entry_points.txt", entry_points(project).encode(), False))

    record = []
    for path, data, _ in files:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files.append((f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode(), False))

    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{name}-{version}-{tag}.whl"
    # A fixed date (or SOURCE_DATE_EPOCH) so the same inputs give the same wheel.
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "315532800"))
    stamp = max(epoch, 315532800)
    date = time.gmtime(stamp)[:6]
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path, data, executable in files:
            info = zipfile.ZipInfo(path, date_time=date)
            info.external_attr = (0o100755 if executable else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lib", type=Path, required=True, help="libmcprouter.so (.dylib, mcprouter.dll)")
    ap.add_argument("--bin", type=Path, required=True, help="the mcprouter binary")
    ap.add_argument("--out", type=Path, required=True, help="folder for the .whl")
    a = ap.parse_args()
    print(build(a.lib, a.bin, a.out))


if __name__ == "__main__":
    main()
