#!/usr/bin/env bash
# Benchmarks (docs/PERFORMANCE.md): installs what the peers and the report
# need when missing (Open MPI: openmpi-bin libopenmpi-dev; python3-matplotlib),
# builds chipmesh into build/ (Ninja, RelWithDebInfo), runs
# `chipmesh bench all --json build/bench/results.json` (bring-up, dispatch,
# copy, allreduce, each with its peer) and writes the report
# (build/bench/report.md and the three plots in build/bench/img/).
#   bash scripts/bench.sh                  # everything (about 10 minutes on 2 cores)
#   bash scripts/bench.sh allreduce --quick   # arguments go to `chipmesh bench`
# Environment: CHIPMESH_BUILD_DIR (default build), CHIPMESH_JOBS (default 2),
# CHIPMESH_BENCH_OUT (default <build>/bench).
# Run it on an otherwise idle machine: the figures are only as quiet as the host.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${CHIPMESH_BUILD_DIR:-build}"
[[ "$build" = /* ]] || build="$root/$build"
jobs="${CHIPMESH_JOBS:-2}"
out="${CHIPMESH_BENCH_OUT:-$build/bench}"

bash "$root/scripts/deps.sh"

# The peers and the report: installed when missing; without them the
# benchmarks still run and report the Open MPI peer as unavailable.
packages=(libcli11-dev nlohmann-json3-dev openmpi-bin libopenmpi-dev python3-matplotlib)
missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done
if ((${#missing[@]} > 0)); then
  echo "bench.sh: installing ${missing[*]}" >&2
  sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then sudo=(sudo); else sudo=(false); fi
  fi
  if ! { "${sudo[@]}" apt-get update -qq &&
         "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; }; then
    echo "bench.sh: could not install ${missing[*]}; going on (a missing peer is reported as unavailable)" >&2
  fi
fi

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$jobs" --target chipmesh_cli chipmesh_bench

args=("$@")
# No benchmark named (nothing, or options only): all of them.
if ((${#args[@]} == 0)) || [[ "${args[0]}" == -* ]]; then args=(all "${args[@]}"); fi
mkdir -p "$out"
echo "bench.sh: load average: $(cut -d' ' -f1-3 /proc/loadavg) (the figures need an idle machine)" >&2
rc=0
"$build/bin/chipmesh" bench "${args[@]}" --json "$out/results.json" | tee "$out/results.txt" || rc=$?

python=python3
/usr/bin/python3 -c 'import matplotlib' 2>/dev/null && python=/usr/bin/python3
if [[ -s "$out/results.json" ]]; then
  "$python" "$root/bench/report" --md "$out/report.md" --img-dir "$out/img" "$out/results.json"
  echo "bench.sh: results in $out (results.json, results.txt, report.md, img/)" >&2
fi
exit "$rc"
