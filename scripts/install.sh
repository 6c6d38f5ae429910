#!/usr/bin/env bash
# Installs chipmesh for a user, offline, from a clone: the Debian packages it
# needs (scripts/deps.sh), a Release build in build-install/, then
# `cmake --install` into PREFIX (default /usr/local): the `chipmesh` command,
# libchipmesh and its plugins, the headers and CMake package, and the Python
# package `chipmesh` in PREFIX/lib/python3.X/dist-packages (on Debian's
# /usr/bin/python3 path for PREFIX=/usr/local; otherwise put that directory
# on PYTHONPATH).
#   PREFIX=/usr/local  CHIPMESH_CMAKE_ARGS="..."  bash scripts/install.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="${PREFIX:-/usr/local}"
build="$root/build-install"
read -r -a extra <<<"${CHIPMESH_CMAKE_ARGS:-}"

bash "$root/scripts/deps.sh"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCHIPMESH_BUILD_TESTS=OFF \
  -DCHIPMESH_BUILD_EXAMPLES=OFF "${extra[@]}"
cmake --build "$build" -j "${CHIPMESH_JOBS:-2}"
sudo=()
if [[ ! -w "$prefix" && $(id -u) -ne 0 ]] && command -v sudo >/dev/null 2>&1; then sudo=(sudo); fi
"${sudo[@]}" cmake --install "$build" --prefix "$prefix"
site="$(grep -o '[^ ]*/chipmesh/__init__.py' "$build/install_manifest.txt" | head -1)"
echo "install.sh: installed into $prefix; Python package in $(dirname "$(dirname "$site")")"
