#!/usr/bin/env bash
# The main job: builds chipmesh and runs `chipmesh demo`: brings up 4 sim
# chips (one process each) with inputs staged from host shared memory, runs
# allreduce, checks every rank's result and reports bring-up time by phase,
# allreduce time, algbw/busbw and the max abs error (OK or FAILED).
# Extra arguments go to `chipmesh demo`, e.g.
#   bash scripts/demo.sh --chips 8 --bytes 64MiB --dtype bfloat16 --mode ring --json
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build"
jobs="${CHIPMESH_JOBS:-2}"

bash "$root/scripts/deps.sh"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target chipmesh_cli -j "$jobs"
exec "$build/bin/chipmesh" demo "$@"
