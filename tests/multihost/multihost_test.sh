#!/usr/bin/env bash
# ctest "multihost_demo": chipmesh demo across simulated hosts (network
# namespaces with private /dev/shm and /tmp, scripts/multihost/), 2 hosts x
# 2 chips and 3 hosts x 3 chips: one report from host 0 with every chip of
# every host, checked exact; then every collective on world() and on
# domains across and inside hosts (cluster_prog collectives) on 2 and 3
# hosts, and chipmesh bench allreduce across 2 hosts with its MPI peers
# (bench_hosts.sh -q); nothing left in any host's /dev/shm or /tmp.
# Skips (77) where namespaces cannot be made. Bounded: each run 100 s, set-up
# and tear-down 60 s each, so ctest's 600 s never cuts a tear-down short.
#   multihost_test.sh SOURCE_DIR CHIPMESH CLUSTER_PROG
set -uo pipefail
src=$1
chipmesh=$2
prog=$3
run=$src/scripts/multihost/mpirun_hosts.sh
# Under ASan the demo runs without LeakSanitizer, as in cluster_test: Open MPI
# keeps allocations to exit, many in dlclose()d MCA components that no
# suppression can name. Our own leaks are covered by every other test.
if [[ -n "${ASAN_OPTIONS:-}" ]]; then
  export ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0"
fi

check() {
  local hosts=$1 chips=$2 out rc
  out=$("$run" -t 100 "$hosts" "$chipmesh" demo --chips "$chips" --bytes 64KiB --iters 2 --json 2>&1)
  rc=$?
  echo "$out"
  [[ $rc -eq 77 ]] && exit 77
  if [[ $rc -ne 0 ]]; then
    echo "FAIL: $hosts hosts x $chips chips: exit status $rc" >&2
    exit 1
  fi
  local total=$((hosts * chips))
  if [[ $(grep -c '^{"ok":' <<<"$out") -ne 1 ]]; then
    echo "FAIL: $hosts hosts: expected exactly one report (host 0's)" >&2
    exit 1
  fi
  if ! grep -q "^{\"ok\":true,\"hosts\":$hosts,\"chips\":$total,.*\"wrong_elements\":0," <<<"$out"; then
    echo "FAIL: $hosts hosts x $chips chips: the report is not ok with hosts $hosts and chips $total" >&2
    exit 1
  fi
  if ! grep -q "private /dev/shm and /tmp clean" <<<"$out"; then
    echo "FAIL: $hosts hosts: a host's private /dev/shm or /tmp was not clean" >&2
    exit 1
  fi
}

check 2 2
check 3 3

collectives() {
  local hosts=$1 out rc
  out=$("$run" -t 100 "$hosts" "$prog" collectives 2>&1)
  rc=$?
  echo "$out"
  if [[ $rc -ne 0 ]] || [[ $(grep -c '^host [0-9]*: OK$' <<<"$out") -ne $hosts ]]; then
    echo "FAIL: collectives on $hosts hosts: exit status $rc" >&2
    exit 1
  fi
}
collectives 2
collectives 3

# chipmesh bench allreduce across 2 hosts with its MPI peers (quick sizes):
# one table from host 0, every result right, the peers' columns filled.
out=$(CHIPMESH_BUILD_DIR=$(dirname "$(dirname "$chipmesh")") "$src/scripts/multihost/bench_hosts.sh" -q 2 2>&1)
rc=$?
echo "$out"
if [[ $rc -ne 0 ]] || ! grep -q '^# .*#wrong total 0$' <<<"$out" ||
   [[ $(grep -c '^# allreduce across 2 hosts x 2 chips' <<<"$out") -ne 1 ]] ||
   ! grep -Eq '^ +65536 +16384 .* [0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+$' <<<"$out"; then
  echo "FAIL: bench_hosts.sh -q 2: exit status $rc, or not one complete table with #wrong 0" >&2
  exit 1
fi
echo "multihost_demo: OK"
