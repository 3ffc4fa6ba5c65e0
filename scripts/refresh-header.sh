#!/usr/bin/env bash
# Regenerates include/mcprouter.h: builds the crate (build.rs runs cbindgen into OUT_DIR)
# and copies the generated header over the checked-in one.
set -euo pipefail
cd "$(dirname "$0")/.."
out_dir=$(cargo build --message-format=json 2>/dev/null \
    | grep '"reason":"build-script-executed"' | grep '#mcprouter@' \
    | sed 's/.*"out_dir":"\([^"]*\)".*/\1/' | tail -n 1)
if [[ -z "$out_dir" || ! -f "$out_dir/mcprouter.h" ]]; then
    echo "refresh-header: could not find the generated header (is the build failing?)" >&2
    exit 1
fi
cp "$out_dir/mcprouter.h" include/mcprouter.h
echo "include/mcprouter.h refreshed from $out_dir/mcprouter.h"
