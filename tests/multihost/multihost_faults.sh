#!/usr/bin/env bash
# ctest "multihost_faults" (labels multihost, faults): a job across simulated
# hosts (scripts/multihost/) ended by a fault must end everywhere, soon, and
# leave nothing on any host:
#   - host 1's Worker SIGKILLed mid-run (3 hosts x 2 chips): mpirun exits
#     non-zero within 10 s of the kill, naming the host's rank;
#   - Ctrl-C of mpirun mid-run (SIGINT to its process group, 2 hosts x 2
#     chips): mpirun exits non-zero within 10 s;
# and in both no process of the job is left on any host and every host's
# private /dev/shm and /tmp is empty (mpirun_hosts.sh checks). Skips (77)
# where namespaces cannot be made.
#   multihost_faults.sh SOURCE_DIR CLUSTER_PROG
set -uo pipefail
src=$1
prog=$2
run=$src/scripts/multihost/mpirun_hosts.sh
if [[ -n "${ASAN_OPTIONS:-}" ]]; then
  export ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0"  # as in multihost_test.sh
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
now_ms() { date +%s%3N; }
fail() {
  echo "--- output:"
  cat "$out"
  echo "FAIL: $*" >&2
  exit 1
}
clean_or_fail() {
  grep -q "private /dev/shm and /tmp clean, no process left" "$out" ||
    fail "$1: something of the job was left on a host"
}

# 1. A host's Worker killed mid-run.
"$run" -t 100 3 "$prog" hostdies >"$out" 2>&1
rc=$?
end=$(now_ms)
[[ $rc -eq 77 ]] && { cat "$out"; exit 77; }
[[ $rc -eq 0 || $rc -eq 124 ]] && fail "host killed: mpirun exit status $rc (expected a failure, not $rc)"
killed=$(sed -n 's/^host 1: SIGKILL to itself at \([0-9]*\) ms$/\1/p' "$out")
[[ -n "$killed" ]] || fail "host killed: host 1 never reached its kill"
grep -q "FAIL" "$out" && fail "host killed: a host reported a failure of its own"
grep -Eq "rank 1 .*(signal 9|Killed)|process rank 1" "$out" || fail "host killed: mpirun did not name rank 1"
clean_or_fail "host killed"
echo "host killed: mpirun exit status $rc; job over everywhere $((end - killed)) ms after the kill (the hosts' clean-up checks included)"
((end - killed < 10000)) || fail "host killed: the job took $((end - killed)) ms to end (limit 10000)"

# 2. Ctrl-C of mpirun: SIGINT to the harness, which passes it to mpirun's
#    process group as a terminal would.
set -m
"$run" -t 100 2 "$prog" spin >"$out" 2>&1 &
job=$!
set +m
deadline=$((SECONDS + 60))
until [[ $(grep -c ': running$' "$out") -ge 2 ]]; do
  if ! kill -0 "$job" 2>/dev/null; then wait "$job"; [[ $? -eq 77 ]] && { cat "$out"; exit 77; }; fail "Ctrl-C: the job ended before it ran"; fi
  ((SECONDS < deadline)) || { kill -TERM -- -"$job"; wait "$job"; fail "Ctrl-C: the hosts never reported running"; }
  sleep 0.05
done
sent=$(now_ms)
kill -INT "$job"
wait "$job"
rc=$?
end=$(now_ms)
[[ $rc -eq 0 || $rc -eq 124 ]] && fail "Ctrl-C: mpirun exit status $rc (expected a failure)"
grep -q "FAIL" "$out" && fail "Ctrl-C: a host reported a failure of its own"
clean_or_fail "Ctrl-C"
echo "Ctrl-C: mpirun exit status $rc; job over everywhere $((end - sent)) ms after SIGINT (the hosts' clean-up checks included)"
((end - sent < 10000)) || fail "Ctrl-C: the job took $((end - sent)) ms to end (limit 10000)"
cat "$out"
echo "multihost_faults: OK"
