#!/usr/bin/env bash
# Builds the platform wheel of the Python package (bindings/python) for this machine, with
# libmcprouter and the mcprouter binary inside, so that
#     pip install dist/mcprouter-*-py3-none-linux_x86_64.whl
# gives `import mcprouter` and the `mcprouter` command with nothing else installed.
#
# usage: scripts/package-python.sh [OUTDIR]     (default dist/; PROFILE=debug packs a debug build)
# It builds first (cargo build --release --lib --bin mcprouter; a no-op when up to date). The
# copies packed are stripped of debug info when `strip` exists (the build in target/ is not).
# Needs only python3 >= 3.11 (tomllib): the wheel is written by bindings/python/build_wheel.py.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
profile=${PROFILE:-release}
out=${1:-$root/dist}
mkdir -p "$out"
out=$(cd "$out" && pwd)
python=${PYTHON:-python3}

cd "$root"
if [[ $profile == release ]]; then
    cargo build --release --lib --bin mcprouter
else
    cargo build --lib --bin mcprouter
fi
dir="${CARGO_TARGET_DIR:-$root/target}/$profile"
case "$(uname -s)" in
    Darwin) lib=libmcprouter.dylib exe=mcprouter ;;
    MINGW* | MSYS* | CYGWIN*) lib=mcprouter.dll exe=mcprouter.exe ;;
    *) lib=libmcprouter.so exe=mcprouter ;;
esac

stage=$(mktemp -d "${TMPDIR:-/tmp}/mcprouter-wheel.XXXXXX")
trap 'rm -rf "$stage"' EXIT
cp "$dir/$lib" "$dir/$exe" "$stage/"
if command -v strip >/dev/null; then
    strip --strip-debug "$stage/$lib" "$stage/$exe" 2>/dev/null || strip -S "$stage/$lib" "$stage/$exe"
fi
"$python" bindings/python/build_wheel.py --lib "$stage/$lib" --bin "$stage/$exe" --out "$out"
