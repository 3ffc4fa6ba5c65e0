#!/usr/bin/env bash
# Installs the C library into PREFIX: lib/libmcprouter.{a,so}, include/mcprouter.h,
# lib/pkgconfig/mcprouter.pc and the CMake package lib/cmake/mcprouter/, so that
#     cc app.c $(pkg-config --cflags --libs mcprouter)            # shared
#     cc app.c $(pkg-config --cflags --libs --static mcprouter)   # static deps listed
# work with PKG_CONFIG_PATH=PREFIX/lib/pkgconfig, and in CMake (CMAKE_PREFIX_PATH=PREFIX)
#     find_package(mcprouter CONFIG REQUIRED)
#     target_link_libraries(app PRIVATE mcprouter::mcprouter)     # or mcprouter::static
#
# usage: scripts/install.sh PREFIX        (PROFILE=release to install a release build)
# It builds the library first (cargo build [--release]); a no-op when it is up to date.
set -euo pipefail
if [[ $# -ne 1 ]]; then
    echo "usage: $0 PREFIX" >&2
    exit 2
fi
root=$(cd "$(dirname "$0")/.." && pwd)
profile=${PROFILE:-debug}
mkdir -p "$1"
prefix=$(cd "$1" && pwd)

cd "$root"
if [[ $profile == release ]]; then cargo build --release --lib; else cargo build --lib; fi
libdir="${CARGO_TARGET_DIR:-$root/target}/$profile"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
# What a static link of a Rust staticlib needs on this platform (rustc --print native-static-libs).
native_static_libs="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"
if [[ "$(uname -s)" == Darwin ]]; then native_static_libs="-lSystem -lc -lm"; fi

install -d "$prefix/lib/pkgconfig" "$prefix/lib/cmake/mcprouter" "$prefix/include"
install -m 644 "$libdir/libmcprouter.a" "$prefix/lib/"
shared=libmcprouter.so
[[ "$(uname -s)" == Darwin ]] && shared=libmcprouter.dylib
install -m 755 "$libdir/$shared" "$prefix/lib/"
install -m 644 include/mcprouter.h "$prefix/include/"
sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" -e "s|@NATIVE_STATIC_LIBS@|$native_static_libs|" \
    mcprouter.pc.in >"$prefix/lib/pkgconfig/mcprouter.pc"
# CMake: the same facts; paths are relative to the config file, so the prefix may move.
cmake_libs=$(printf '%s\n' $native_static_libs | sed -e 's/^-l//' -e '/^pthread$/d' -e '/^c$/d' -e '/^System$/d' | paste -sd ';' -)
bits=$(( $(getconf LONG_BIT) ))
sed -e "s|@VERSION@|$version|g" -e "s|@SHARED_LIB@|$shared|g" -e "s|@STATIC_LIB@|libmcprouter.a|g" \
    -e "s|@NATIVE_STATIC_LIBS_CMAKE@|$cmake_libs|g" cmake/mcprouterConfig.cmake.in \
    >"$prefix/lib/cmake/mcprouter/mcprouterConfig.cmake"
sed -e "s|@VERSION@|$version|g" -e "s|@SIZEOF_VOID_P@|$((bits / 8))|g" -e "s|@BITS@|$bits|g" \
    cmake/mcprouterConfigVersion.cmake.in >"$prefix/lib/cmake/mcprouter/mcprouterConfigVersion.cmake"
echo "installed mcprouter $version ($profile) into $prefix"
