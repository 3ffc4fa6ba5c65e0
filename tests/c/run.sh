#!/usr/bin/env bash
# Builds and runs the C tests against the real C toolchain:
#   - include/mcprouter.h compiled twice in one TU as C11 and as C++17, warnings as errors;
#   - smoke.c, misuse.c, threads.c and reload.c linked against the static and the shared library,
#     each run under valgrind (leaks of kind definite/indirect fail);
#   - smoke.c under AddressSanitizer with the static library;
#   - scripts/install.sh into a temporary prefix, then smoke.c built with pkg-config.
# Every tool is required: a missing C++ compiler, valgrind, pkg-config or a compiler that
# cannot link AddressSanitizer is a failure, never a skip, so a green run means all of the
# above ran.
# The test MCP server is the crate's own binary, passed as $MCPROUTER_BIN.
# usage: tests/c/run.sh          (CC and CXX are honoured)
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
CC=${CC:-cc}
CXX=${CXX:-c++}

echo "== cargo build (debug: static + shared library, test server)"
cargo build 2>&1 || { echo "cargo build failed"; exit 1; }
libdir="${CARGO_TARGET_DIR:-$root/target}/debug"
export MCPROUTER_BIN="$libdir/mcprouter"
for f in "$libdir/libmcprouter.a" "$libdir/libmcprouter.so" "$MCPROUTER_BIN"; do
    [[ -f $f ]] || { echo "missing $f"; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/mcprouter-c.XXXXXX")
trap 'rm -rf "$work"' EXIT
cflags=(-std=c11 -Wall -Wextra -Wpedantic -Werror -g -I"$root/include")
sys_libs=(-lpthread -ldl -lm)
passed=0
failed=0
failures=()

ok() { passed=$((passed + 1)); echo "ok   $1"; }
not_ok() { failed=$((failed + 1)); failures+=("$1"); echo "FAIL $1"; }

# need TOOL: true when TOOL is on PATH; otherwise counts a failure that names it.
need() {
    if command -v "$1" >/dev/null; then return 0; fi
    not_ok "required tool missing: $1 (install it; these tests never skip)"
    return 1
}

echo "== required tools"
need "$CC"
have_cxx=0 && need "$CXX" && have_cxx=1
valgrind_bin="" && need valgrind && valgrind_bin=$(command -v valgrind)
have_pkg_config=0 && need pkg-config && have_pkg_config=1

# step NAME COMMAND...: runs a command, counts it, shows its output only when it fails.
step() {
    local name=$1
    shift
    if "$@" >"$work/step.log" 2>&1; then ok "$name"; else cat "$work/step.log"; not_ok "$name"; fi
}

# run_test NAME EXE [env...]: runs a test program (under valgrind when available) and
# prints its "N passed, N failed" line and valgrind's summary lines.
run_test() {
    local name=$1 exe=$2 rc
    shift 2
    if [[ -n $valgrind_bin ]]; then
        env "$@" "$valgrind_bin" --leak-check=full --error-exitcode=99 \
            --errors-for-leak-kinds=definite,indirect --log-file="$work/$name.vg" \
            "$exe" >"$work/$name.out" 2>&1
        rc=$?
    else
        env "$@" "$exe" >"$work/$name.out" 2>&1
        rc=$?
    fi
    if [[ $rc -ne 0 ]]; then
        cat "$work/$name.out"
        [[ -n $valgrind_bin ]] && cat "$work/$name.vg"
    else
        grep -E '^[0-9]+ passed, [0-9]+ failed' "$work/$name.out" | sed "s/^/     $name: /"
    fi
    if [[ -n $valgrind_bin ]]; then
        grep -hE 'ERROR SUMMARY|definitely lost|indirectly lost|All heap blocks were freed' "$work/$name.vg" \
            | sed -E "s/^==[0-9]+== +/     $name valgrind: /"
    fi
    if [[ $rc -eq 0 ]]; then ok "$name (exit 0)"; else not_ok "$name (exit $rc)"; fi
}

echo "== header: twice in one TU, C11 and C++17, -Wall -Wextra -Wpedantic -Werror"
step "header-c11" "$CC" "${cflags[@]}" -c tests/c/header_check.c -o "$work/header_c.o"
if [[ $have_cxx == 1 ]]; then
    step "header-c++17" "$CXX" -x c++ -std=c++17 -Wall -Wextra -Wpedantic -Werror -I"$root/include" \
        -c tests/c/header_check.c -o "$work/header_cxx.o"
else
    not_ok "header-c++17: no C++ compiler ($CXX)"
fi

echo "== build and run: static and shared library${valgrind_bin:+, under valgrind}"
for prog in smoke misuse threads reload; do
    step "build $prog-static" "$CC" "${cflags[@]}" "tests/c/$prog.c" -o "$work/$prog-static" \
        "$libdir/libmcprouter.a" "${sys_libs[@]}"
    step "build $prog-shared" "$CC" "${cflags[@]}" "tests/c/$prog.c" -o "$work/$prog-shared" \
        -L"$libdir" -lmcprouter -Wl,-rpath,"$libdir" "${sys_libs[@]}"
    for kind in static shared; do
        if [[ -x "$work/$prog-$kind" ]]; then run_test "$prog-$kind" "$work/$prog-$kind"; fi
    done
done

echo "== examples/c/basic.c (the README's C example), static library"
step "build example-basic" "$CC" "${cflags[@]}" examples/c/basic.c -o "$work/example-basic" \
    "$libdir/libmcprouter.a" "${sys_libs[@]}"
[[ -x "$work/example-basic" ]] && run_test "example-basic" "$work/example-basic"

echo "== AddressSanitizer: smoke, static library"
if "$CC" "${cflags[@]}" -fsanitize=address -fno-omit-frame-pointer tests/c/smoke.c -o "$work/smoke-asan" \
    "$libdir/libmcprouter.a" "${sys_libs[@]}" >"$work/asan-build.log" 2>&1; then
    saved=$valgrind_bin
    valgrind_bin=""   # ASan and valgrind do not mix
    run_test "smoke-asan" "$work/smoke-asan" ASAN_OPTIONS=detect_leaks=1
    valgrind_bin=$saved
else
    sed 's/^/     /' "$work/asan-build.log"
    not_ok "smoke-asan: $CC cannot link -fsanitize=address with the static library (install libasan)"
fi

echo "== install into a temporary prefix, build with pkg-config"
prefix="$work/prefix"
if [[ $have_pkg_config != 1 ]]; then
    not_ok "the pkg-config build: pkg-config is not installed"
elif scripts/install.sh "$prefix" >"$work/install.log" 2>&1; then
    ok "scripts/install.sh"
    export PKG_CONFIG_PATH="$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
    pc_libdir=$(pkg-config --variable=libdir mcprouter)
    # shellcheck disable=SC2046 # word splitting of pkg-config's flags is intended
    step "pkg-config shared build" "$CC" -std=c11 -Wall -Wextra -Wpedantic -Werror tests/c/smoke.c \
        -o "$work/smoke-pc" $(pkg-config --cflags --libs mcprouter) -Wl,-rpath,"$pc_libdir" -lpthread
    # shellcheck disable=SC2046
    step "pkg-config static build" "$CC" -std=c11 -Wall -Wextra -Wpedantic -Werror tests/c/smoke.c \
        -o "$work/smoke-pc-static" $(pkg-config --cflags mcprouter) -L"$pc_libdir" \
        -Wl,-Bstatic -lmcprouter -Wl,-Bdynamic $(pkg-config --static --libs-only-l mcprouter | sed 's/-lmcprouter//')
    saved=$valgrind_bin
    valgrind_bin=""   # already run under valgrind above; this checks the installed layout
    [[ -x "$work/smoke-pc" ]] && run_test "smoke-pkg-config" "$work/smoke-pc"
    [[ -x "$work/smoke-pc-static" ]] && run_test "smoke-pkg-config-static" "$work/smoke-pc-static"
    valgrind_bin=$saved
else
    cat "$work/install.log"
    not_ok "scripts/install.sh"
fi

echo
if [[ $failed -ne 0 ]]; then printf 'failed: %s\n' "${failures[@]}"; fi
echo "C tests: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
