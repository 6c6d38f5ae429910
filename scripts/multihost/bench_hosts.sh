#!/usr/bin/env bash
# `chipmesh bench allreduce` across simulated hosts (hosts.sh), with its Open
# MPI peers over the same hosts and TCP links in the same run:
#   1. MPI_Allreduce with one MPI rank per chip, laid out flat (H x C ranks);
#   2. the same, hierarchical in MPI (reduce in each node, allreduce between
#      the node leaders, broadcast);
#   3. chipmesh: one Worker per host with C chips, the allreduce over world().
# Host 0's chipmesh prints one table with all three (docs/PERFORMANCE.md).
#
#   bench_hosts.sh [-c CHIPS] [-m MIN_BYTES] [-M MAX_BYTES] [-q] H [chipmesh bench options...]
#
# Defaults: 2 chips per host, 8 B .. 16 MiB (x4; -q: .. 64 KiB, few
# iterations). Needs root (namespaces), Open MPI and a build in build/ (or
# CHIPMESH_BUILD_DIR) outside /tmp; exit status 77 when hosts cannot be made.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$(readlink -f "${CHIPMESH_BUILD_DIR:-$root/build}")
chips=2 lo=8 hi=$((16 << 20)) quick=""
while getopts c:m:M:q opt; do
  case $opt in
    c) chips=$OPTARG ;;
    m) lo=$OPTARG ;;
    M) hi=$OPTARG ;;
    q) quick=--quick; hi=$((64 << 10)) ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
n=${1:?usage: bench_hosts.sh [-c CHIPS] [-m MIN] [-M MAX] [-q] HOSTS [chipmesh bench options...]}
shift
cli=$build/bin/chipmesh
peer=$build/bin/chipmesh_bench_mpi_allreduce
for f in "$cli" "$peer"; do
  [[ -x $f ]] || { echo "bench_hosts.sh: $f is not built (cmake --build $build)" >&2; exit 1; }
done
source "$here/harness.sh"
harness_up bench_hosts.sh "$n" "$build"
dir=$MH_DIR
mkdir -p "$dir/results"

# The same sizes as the chipmesh side (x4 from MIN, then MAX), with the
# peer's BYTES:ITERS:WARMUP specs (iterations as allreduce_hosts.cpp).
specs=()
for ((s = lo < 4 ? 4 : lo; s <= hi; s *= 4)); do last=$((s / 4 * 4)); sizes+=("$last"); done
[[ ${last:-0} -ne $((hi / 4 * 4)) ]] && sizes+=("$((hi / 4 * 4))")
for s in "${sizes[@]}"; do
  if [[ -n $quick ]]; then it=3; else it=$(((256 << 20) / (s > 0 ? s : 1))); ((it < 5)) && it=5; ((it > 200)) && it=200; fi
  specs+=("$s:$it:3")
done

for form in flat hier; do
  flag=""; [[ $form == hier ]] && flag=--hierarchical
  echo "bench_hosts.sh: MPI_Allreduce $form, $((n * chips)) ranks ($n hosts x $chips)"
  timeout -k 10 600 "$here/agent.sh" "$first" \
    "$(mpirun_line $((n * chips)) "$chips") $peer $flag ${specs[*]}" >"$dir/results/$form.txt" ||
    echo "bench_hosts.sh: the MPI $form peer failed (exit $?); its columns stay empty" >&2
done
args=""
for a in "$@"; do args+=" $(printf '%q' "$a")"; done
echo "bench_hosts.sh: chipmesh, $n hosts x $chips chips"
timeout -k 10 600 "$here/agent.sh" "$first" \
  "$(mpirun_line "$n" 1) -x CHIPMESH_CLUSTER=mpi $cli bench allreduce --ranks $chips --min-bytes $lo --max-bytes $hi $quick --mpi-results $dir/results$args"
