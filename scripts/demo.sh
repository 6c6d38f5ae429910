#!/usr/bin/env bash
# The main job: builds chipmesh and brings up 4 sim chips (one process each),
# printing every rank's window and buffer addresses and the bring-up time.
# Extra arguments go to the example, e.g. `bash scripts/demo.sh --chips 8`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build"
jobs="${CHIPMESH_JOBS:-2}"

bash "$root/scripts/deps.sh"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target chipmesh_bringup -j "$jobs"
exec "$build/bin/chipmesh_bringup" "$@"
