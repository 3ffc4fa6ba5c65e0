#!/usr/bin/env bash
# Builds the npm tarball of the Node package (bindings/node) with this machine's libmcprouter in
# native/<platform>-<arch>/ and the type declarations (index.d.ts), so that
#     npm install mcprouter-0.1.0.tgz
# gives `require('mcprouter')` with nothing else to build (koffi comes from the npm registry).
#
# usage: scripts/package-node.sh [OUTDIR]     (default dist/; PROFILE=debug packs a debug build)
# It builds first (cargo build --release --lib; a no-op when up to date), then runs `npm pack`,
# whose prepack script (bindings/node/tools/prebuild.js) copies and strips the library.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
profile=${PROFILE:-release}
out=${1:-$root/dist}
mkdir -p "$out"
out=$(cd "$out" && pwd)

cd "$root"
if [[ $profile == release ]]; then cargo build --release --lib; else cargo build --lib; fi
case "$(uname -s)" in
    Darwin) lib=libmcprouter.dylib ;;
    MINGW* | MSYS* | CYGWIN*) lib=mcprouter.dll ;;
    *) lib=libmcprouter.so ;;
esac
export MCPROUTER_LIB="${CARGO_TARGET_DIR:-$root/target}/$profile/$lib"
cd bindings/node
# --json: the file name on stdout, whatever npm prints about the contents.
npm pack --json --pack-destination "$out" | node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
        console.log(require("node:path").join(process.argv[1], JSON.parse(s)[0].filename));
    });' "$out"
