#!/usr/bin/env bash
# Installs what the project ships, as a user would, outside the repository, and uses it:
#   - the Python wheel (scripts/package-python.sh) into a fresh venv: a routed call through
#     the bundled library, an mcpServers file, the `mcprouter` console script, python -m;
#   - the npm tarball (scripts/package-node.sh) into a fresh folder (koffi from the npm
#     registry or its cache): require it, a routed call through the bundled library;
#   - scripts/install.sh PREFIX: a C++ program built with CMake (find_package, shared and
#     static targets, a refused incompatible version) and one with pkg-config, both run;
#   - the crate: `cargo package --list` holds what a build needs, the metadata is set, and
#     `cargo install --path .` gives a working `mcprouter`.
# Debug builds (already built by `cargo build --all-targets`), so it stays fast.
# A missing tool is a failure, never a skip. cmake is the pinned one from .deps/venv.
# usage: tests/packaging/run.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
# Each part must find its own files: nothing from the test environment points at target/.
unset MCPROUTER_LIB MCPROUTER_BIN MCPROUTER_KOFFI MCPROUTER_DEPS PYTHONPATH NODE_PATH

# cmake comes pinned from PyPI into .deps/venv (scripts/deps.sh), like every other test
# dependency: the machine image has none, and a system-wide install is not ours to make.
if [[ -x "$root/.deps/venv/bin/cmake" ]]; then
    mkdir -p "$root/.deps/bin"
    ln -sf "$root/.deps/venv/bin/cmake" "$root/.deps/bin/cmake"
    export PATH="$root/.deps/bin:$PATH"
fi
for tool in cargo python3 node npm cmake c++ pkg-config strip; do
    command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed (the packaging tests need it)"; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/mcprouter-packaging.XXXXXX")
trap 'rm -rf "$work"' EXIT
export PROFILE=debug
bin="${CARGO_TARGET_DIR:-$root/target}/debug/mcprouter"
cargo build --lib --bin mcprouter 2>&1 | tail -n 1

echo "== Python: wheel into a fresh venv"
wheel=$(scripts/package-python.sh "$work/dist" | tail -n 1)
case "$(basename "$wheel")" in
    *-py3-none-any.whl) echo "FAIL: $wheel is tagged any"; exit 1 ;;
    mcprouter-*-py3-none-linux_*.whl | mcprouter-*-py3-none-macosx_*.whl) ;;
    *) echo "FAIL: unexpected wheel name $wheel"; exit 1 ;;
esac
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --no-index --disable-pip-version-check "$wheel"
mkdir "$work/py"
cp tests/packaging/wheel_check.py "$work/py/"
(cd "$work/py" && "$work/venv/bin/python" wheel_check.py)

echo "== Node: npm tarball into a fresh folder"
tarball=$(scripts/package-node.sh "$work/dist" 2>/dev/null | tail -n 1)
listing=$(tar tzf "$tarball")
for f in package/index.d.ts package/lib/index.js "package/native/$(node -p 'process.platform + "-" + process.arch')/libmcprouter.so"; do
    grep -qx "$f" <<<"$listing" || { echo "FAIL: $tarball lacks $f"; exit 1; }
done
[[ ! -e bindings/node/native ]] || { echo "FAIL: npm pack left bindings/node/native behind"; exit 1; }
mkdir "$work/node"
cp tests/packaging/node_check.js "$work/node/"
(cd "$work/node" && echo '{"private": true}' >package.json &&
    npm install --no-audit --no-fund --prefer-offline --loglevel=error "$tarball" >"$work/npm.log" 2>&1 ||
    { cat "$work/npm.log"; exit 1; })
(cd "$work/node" && MCPROUTER_TEST_SERVER="$bin" node node_check.js)

echo "== C and C++: scripts/install.sh, then CMake and pkg-config"
prefix="$work/prefix"
scripts/install.sh "$prefix" | tail -n 1
for f in lib/cmake/mcprouter/mcprouterConfig.cmake lib/cmake/mcprouter/mcprouterConfigVersion.cmake lib/pkgconfig/mcprouter.pc; do
    [[ -f $prefix/$f ]] || { echo "FAIL: $f not installed"; exit 1; }
done
cmake -S tests/packaging/cpp -B "$work/cmake" -DCMAKE_PREFIX_PATH="$prefix" >"$work/cmake.log" 2>&1 ||
    { cat "$work/cmake.log"; exit 1; }
cmake --build "$work/cmake" -j 1 >"$work/cmake-build.log" 2>&1 || { cat "$work/cmake-build.log"; exit 1; }
"$work/cmake/app_shared" "$bin"
"$work/cmake/app_static" "$bin"
if cmake -S tests/packaging/cpp -B "$work/cmake-0.2" -DCMAKE_PREFIX_PATH="$prefix" -DMCPROUTER_WANT=0.2 >"$work/cmake-0.2.log" 2>&1; then
    echo "FAIL: find_package(mcprouter 0.2) accepted version 0.1"
    exit 1
fi
grep -q "mcprouterConfig.cmake, version: 0.1.0" "$work/cmake-0.2.log" ||
    { cat "$work/cmake-0.2.log"; echo "FAIL: the version refusal does not name the installed version"; exit 1; }
echo "find_package(mcprouter 0.2) refused 0.1: ok"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
# shellcheck disable=SC2046 # word splitting of pkg-config's flags is intended
c++ -std=c++17 -Wall -Wextra -Wpedantic -Werror tests/packaging/cpp/app.cpp -o "$work/app_pc" \
    $(pkg-config --cflags --libs mcprouter) -Wl,-rpath,"$(pkg-config --variable=libdir mcprouter)"
"$work/app_pc" "$bin"

echo "== Rust: the crate as cargo package would publish it"
files=$(cargo package --list --allow-dirty 2>/dev/null)
for f in Cargo.toml build.rs cbindgen.toml src/lib.rs src/config/mcp_servers.rs src/bin/mcprouter/main.rs include/mcprouter.h README.md; do
    grep -qx "$f" <<<"$files" || { echo "FAIL: cargo package leaves out $f"; exit 1; }
done
if grep -q '^tests/\|^bindings/\|^target/' <<<"$files"; then echo "FAIL: cargo package takes repository-only files"; exit 1; fi
cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
p = next(p for p in json.load(sys.stdin)["packages"] if p["name"] == "mcprouter")
missing = [k for k in ("description", "license", "repository", "documentation", "readme", "keywords", "categories") if not p.get(k)]
assert not missing, f"Cargo.toml [package] lacks {missing}"
assert any(t["kind"] == ["bin"] and t["name"] == "mcprouter" for t in p["targets"]), "no mcprouter binary target"
print("crate metadata: ok")'
# Into a temporary root, reusing this build's target dir (a fresh one would rebuild everything).
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}" cargo install --quiet --locked --debug --path . --root "$work/cargo" 2>/dev/null
[[ "$("$work/cargo/bin/mcprouter" version)" == "mcprouter $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)" ]] ||
    { echo "FAIL: cargo install gave no working mcprouter"; exit 1; }
echo "cargo install --path .: ok"

echo "packaging: wheel $(du -k "$wheel" | cut -f1) KiB, npm tarball $(du -k "$tarball" | cut -f1) KiB (debug builds, stripped): all passed"
