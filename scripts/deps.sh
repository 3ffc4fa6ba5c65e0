#!/usr/bin/env bash
# Install the pinned third-party test dependencies into <repo>/.deps (git-ignored):
#   .deps/node/  npm ci of tests/deps/package.json + package-lock.json
#                (binaries in .deps/node/node_modules/.bin/)
#   .deps/venv/  Python venv with tests/deps/requirements.txt
# Each part is skipped when its stamp file holds the hash of its manifests (plus the
# tool versions), so a second run is a fast no-op. Runnable from any cwd.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MANIFESTS="$ROOT/tests/deps"
DEPS="$ROOT/.deps"
LOGS="$DEPS/logs"
mkdir -p "$DEPS" "$LOGS"

STEP="start"
on_error() {
    local rc=$?
    echo "deps: FAILED at step '$STEP' (exit $rc); see $LOGS/" >&2
    exit "$rc"
}
trap on_error ERR

# One installer at a time (CI and a developer shell, or two test runners).
exec 9>"$DEPS/.lock"
flock 9

# hash_of FILE... : sha256 of the given files' contents plus extra lines from stdin.
hash_of() {
    { cat "$@"; cat; } | sha256sum | cut -d' ' -f1
}

# run a step with its output in a log; on failure show the log's error lines
run_logged() {
    local log="$1"
    shift
    if ! "$@" >"$log" 2>&1; then
        if grep -qi 'error' "$log"; then
            echo "deps: --- first error lines of $log ---" >&2
            grep -i -m 8 'error' "$log" >&2 || true
        else
            echo "deps: --- last lines of $log ---" >&2
            tail -n 15 "$log" >&2
        fi
        return 1
    fi
}

# ---------------------------------------------------------------- node
STEP="node (npm ci)"
NODE_DIR="$DEPS/node"
NODE_STAMP="$NODE_DIR/.stamp"
node_hash="$(printf 'node %s\nnpm %s\n' "$(node --version)" "$(npm --version)" |
    hash_of "$MANIFESTS/package.json" "$MANIFESTS/package-lock.json")"
if [[ -f "$NODE_STAMP" && "$(cat "$NODE_STAMP")" == "$node_hash" &&
    -x "$NODE_DIR/node_modules/.bin/mcp-server-everything" &&
    -x "$NODE_DIR/node_modules/node/bin/node" ]]; then
    echo "deps: node packages up to date"
else
    echo "deps: installing node packages (npm ci) into .deps/node"
    rm -f "$NODE_STAMP"
    mkdir -p "$NODE_DIR"
    cp "$MANIFESTS/package.json" "$MANIFESTS/package-lock.json" "$NODE_DIR/"
    # --ignore-scripts: the only package with an install script is koffi, whose script
    # would try to build/fetch a binary; its prebuilt binary ships in the optional
    # dependency @koromix/koffi-<platform>, which is all it needs.
    (cd "$NODE_DIR" && run_logged "$LOGS/npm.log" npm ci --no-audit --no-fund --ignore-scripts)
    # The npm package `node` (Node 22 for the conformance suite, which needs it) fetches its
    # platform binary in an install script: run that one script, pinned by its own version.
    STEP="node (Node 22 binary)"
    (cd "$NODE_DIR" && run_logged "$LOGS/npm-node22.log" npm rebuild node --no-audit --no-fund)
    STEP="node (check)"
    (cd "$NODE_DIR" && run_logged "$LOGS/node-check.log" node -e '
        require("koffi");
        const fs = require("fs");
        const p = require.resolve("@modelcontextprotocol/server-everything/package.json");
        const v = JSON.parse(fs.readFileSync(p)).version;
        if (v !== "2026.8.31") throw new Error("server-everything " + v);
        const f = require.resolve("@modelcontextprotocol/server-filesystem/package.json");
        const fv = JSON.parse(fs.readFileSync(f)).version;
        if (fv !== "2026.8.31") throw new Error("server-filesystem " + fv);
        const c = require.resolve("@modelcontextprotocol/conformance/package.json");
        const cv = JSON.parse(fs.readFileSync(c)).version;
        if (cv !== "0.1.16") throw new Error("conformance " + cv);
    ')
    echo "$node_hash" >"$NODE_STAMP"
fi

# ---------------------------------------------------------------- python
STEP="python venv"
VENV="$DEPS/venv"
VENV_STAMP="$VENV/.stamp"
py_hash="$(printf 'python %s\n' "$(python3 -c 'import sys; print(sys.version)')" |
    hash_of "$MANIFESTS/requirements.txt")"
if [[ -f "$VENV_STAMP" && "$(cat "$VENV_STAMP")" == "$py_hash" && -x "$VENV/bin/python" ]]; then
    echo "deps: python venv up to date"
else
    echo "deps: creating python venv .deps/venv"
    rm -rf "$VENV"
    run_logged "$LOGS/venv.log" python3 -m venv "$VENV"
    STEP="python (pip install)"
    echo "deps: installing tests/deps/requirements.txt"
    run_logged "$LOGS/pip.log" "$VENV/bin/pip" install --no-input --disable-pip-version-check \
        --progress-bar off -r "$MANIFESTS/requirements.txt"
    STEP="python (check)"
    run_logged "$LOGS/pip-check.log" "$VENV/bin/python" -c \
        'import importlib.metadata as m; assert m.version("mcp") == "2.3.0", m.version("mcp"); import mcp.client.stdio, pytest, prometheus_client'
    echo "$py_hash" >"$VENV_STAMP"
fi

STEP="done"
echo "deps: ready in .deps/"
