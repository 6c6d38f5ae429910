#!/usr/bin/env bash
# Builds chipmesh and runs the whole test suite.
#   CHIPMESH_BUILD_DIR  build directory (default: build), relative to the repo
#   CHIPMESH_CMAKE_ARGS extra arguments for the cmake configure step
#   CHIPMESH_JOBS       parallel build and test jobs (default: 2)
#   CHIPMESH_CTEST_EXCLUDE  a ctest -E regex of tests to leave out (default: none)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${CHIPMESH_BUILD_DIR:-build}"
[[ "$build" = /* ]] || build="$root/$build"
jobs="${CHIPMESH_JOBS:-2}"
read -r -a extra <<<"${CHIPMESH_CMAKE_ARGS:-}"

bash "$root/scripts/deps.sh"
cmake -S "$root" -B "$build" -G Ninja "${extra[@]}"
cmake --build "$build" -j "$jobs"
# Tests that touch /dev/shm hold RESOURCE_LOCK dev_shm, so -j is safe.
exclude=()
[[ -n "${CHIPMESH_CTEST_EXCLUDE:-}" ]] && exclude=(-E "$CHIPMESH_CTEST_EXCLUDE")
ctest --test-dir "$build" --output-on-failure -j "$jobs" "${exclude[@]}"
