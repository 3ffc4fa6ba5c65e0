#!/usr/bin/env bash
# The profiling hook of the overhead bench: scenario 1's routed path (tools/call whoami through
# Session::handle to one test-server backend) under callgrind.
#
#   scripts/profile.sh [CALLS]      # default 300 calls
#
# Only the calls themselves are counted: the bench calls two marker functions around them,
# where callgrind zeroes and dumps its counters. Every thread of the bench process is counted
# (the caller, the backend's writer and reader threads, the dispatcher); the backend child
# process and the kernel are not. Prints the top 15 functions by inclusive cost, the top 15
# inside mcprouter, and the top 15 by self cost. PROFILE_KEEP=DIR keeps the callgrind file.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
calls="${1:-300}"

if ! command -v valgrind >/dev/null || ! command -v callgrind_annotate >/dev/null; then
  echo "profile.sh: needs valgrind and callgrind_annotate (Debian: apt-get install valgrind)" >&2
  exit 1
fi

echo "=== building the bench (release profile)"
bench=$(cargo bench --bench overhead --no-run 2>&1 | tee /dev/stderr | sed -n 's/^ *Executable .*(\(.*\))$/\1/p' | tail -n1)
if [ ! -x "$bench" ]; then
  echo "profile.sh: could not find the bench executable in cargo's output" >&2
  exit 1
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "=== callgrind: $calls routed calls"
if ! valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" \
  --zero-before=mcprouter_bench_profile_start --dump-before=mcprouter_bench_profile_stop \
  "$bench" --bench --profile "$calls" 2>"$out/valgrind.log"; then
  cat "$out/valgrind.log" >&2
  exit 1
fi
part="$out/callgrind.out.1" # the dump taken at the stop marker: exactly the profiled calls
if [ ! -s "$part" ]; then
  echo "profile.sh: callgrind wrote no dump at the stop marker" >&2
  exit 1
fi
if [ -n "${PROFILE_KEEP:-}" ]; then
  mkdir -p "$PROFILE_KEEP" && cp "$part" "$PROFILE_KEEP/" && echo "(kept $PROFILE_KEEP/callgrind.out.1)"
fi

total=$(sed -n 's/^summary: //p' "$part")
echo "$total instructions in the profiled calls: $((total / calls)) per call (bench process, user space)"

# Function lines of callgrind_annotate, with paths shortened and the object name dropped.
functions() {
  callgrind_annotate "$1" --auto=no --threshold=100 "$part" | sed -n '/file:function$/,$p' | sed '1,2d' | grep -v '^ *$' |
    sed -E 's/ \[[^]]*\]$//; s#[^ ]*/\.cargo/registry/src/[^/]*/##; s#/rustc/[0-9a-f]+/##; s#'"$PWD"'/##'
}
functions --inclusive=yes >"$out/inclusive.txt"
functions --inclusive=no >"$out/self.txt"
# The bench's own client work (formatting each request, parsing each reply) runs on the
# main thread outside Session::handle: left out, what remains is the router's share.
cost() { awk -v pat="$1" '$0 ~ pat { gsub(",", "", $1); print $1; exit }' "$out/inclusive.txt"; }
bench_main=$(cost ':overhead::main$')
in_handle=$(cost ':mcprouter::session::Session::handle$')
if [ -n "$bench_main" ] && [ -n "$in_handle" ]; then
  router=$((total - (bench_main - in_handle)))
  echo "$router of them in the router: $((router / calls)) per call (all threads but the bench's own client work)"
fi
echo
echo "=== top 15 functions by inclusive cost"
head -n 15 "$out/inclusive.txt"
echo
echo "=== top 15 functions inside mcprouter by inclusive cost"
awk '/:mcprouter::/ && n++ < 15' "$out/inclusive.txt"
echo
echo "=== top 15 functions by self cost"
# Frames alive across the markers (main, thread entry points, the backend's reader and writer
# loops) get their callees' unreturned costs as "self" in a mid-run dump: left out here.
grep -Ev 'libc-start|below main|lang_start|__rust_begin_short_backtrace|:main$|clone\.S|start_thread|thread_start|vtable\.shim|\?\?\?:0x' \
  "$out/self.txt" | awk 'NR <= 15' # awk reads to the end: no SIGPIPE under pipefail
