#!/usr/bin/env bash
# Runs PROGRAM under mpirun on N simulated hosts (hosts.sh), one process per
# host, TCP only over the hosts' bridge, then checks that every host's
# private /dev/shm and /tmp are empty, and tears everything down (also on
# failure or a signal).
#
#   mpirun_hosts.sh [-t SECONDS] N PROGRAM [ARGS...]
#
# SIGINT or SIGTERM to this script goes on to mpirun (as Ctrl-C in a
# terminal reaches it) and the checks still run once it has ended. After
# mpirun ends, every process left in a host (a chip outliving its Worker)
# gets 10 s to go before it counts as left behind.
#
# Exit status: PROGRAM's (through mpirun); 77 when namespaces cannot be
# made here or the build lives under /tmp (hidden by the private /tmp);
# 3 when PROGRAM succeeded but a host's /dev/shm or /tmp is not empty or a
# process outlived the job; 124 when the run took longer than SECONDS
# (default 120).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
limit=120
if [[ "${1:-}" == -t ]]; then
  limit=$2
  shift 2
fi
n=${1:?usage: mpirun_hosts.sh [-t SECONDS] N PROGRAM [ARGS...]}
shift
program=$(readlink -f "${1:?usage: mpirun_hosts.sh [-t SECONDS] N PROGRAM [ARGS...]}")
shift

# mpirun runs on host 0 and reaches the others through agent.sh
# (harness.sh has the flags and why).
source "$here/harness.sh"
harness_up mpirun_hosts.sh "$n" "$program"
dir=$MH_DIR
args=""
for a in "$@"; do args+=" $(printf '%q' "$a")"; done
# In a process group of its own (job control), with SIGINT not ignored as
# it would be for a background command: a signal to this script is passed
# to that group, as a terminal's Ctrl-C reaches mpirun and what it started.
set -m
started=$SECONDS
timeout -k 10 "$limit" "$here/agent.sh" "$first" \
  "$(mpirun_line "$n" 1) -x CHIPMESH_CLUSTER=mpi $(printf '%q' "$program")$args" &
job=$!
set +m
# To every process of the group but `timeout` itself, which would pass the
# signal on to mpirun a second time (and a second SIGINT makes mpirun quit
# at once, without its own clean-up).
pass_on() {
  local p
  for p in $(pgrep -g "$job"); do [[ $p != "$job" ]] && kill "-$1" "$p" 2>/dev/null; done
}
trap 'pass_on INT' INT
trap 'pass_on TERM' TERM
while :; do
  wait "$job"
  rc=$?
  # A trapped signal ends `wait` early; go on waiting while the job runs.
  if [[ $rc -gt 128 ]] && kill -0 "$job" 2>/dev/null; then continue; fi
  break
done
trap 'exit 130' INT TERM
# 124 (or 137 after the -k grace) from timeout; mpirun itself exits 137
# when a host's process was SIGKILLed, so the clock decides.
if [[ ($rc -eq 124 || $rc -eq 137) && $((SECONDS - started)) -ge $limit ]]; then
  echo "mpirun_hosts.sh: the run did not end within $limit s" >&2
  exit 124
fi

# Nothing of the job may outlive it: wait (up to 10 s) for every host's
# processes to end.
survivors() {
  local ns out=""
  for ns in $MH_NAMESPACES; do
    [[ $ns == "${MH_NAMESPACES%% *}" ]] && continue  # the bridge's
    out+="$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')"
  done
  echo "$out"
}
deadline=$((SECONDS + 10))
while [[ -n "$(survivors | tr -d ' ')" && $SECONDS -lt $deadline ]]; do sleep 0.05; done
stray=$(survivors | tr -s ' ')
if [[ -n "${stray// /}" ]]; then
  echo "mpirun_hosts.sh: processes outlived the job by 10 s:" >&2
  for p in $stray; do echo "  $p: $(tr '\0' ' ' </proc/$p/cmdline 2>/dev/null)" >&2; done
fi

left=0
for ((i = 0; i < n; i++)); do
  for d in shm tmp; do
    if [[ -n "$(ls -A "$dir/h$i/$d")" ]]; then
      echo "mpirun_hosts.sh: host $i left behind in its private /${d/shm/dev/shm}: $(ls -A "$dir/h$i/$d" | tr '\n' ' ')" >&2
      left=1
    fi
  done
done
[[ -n "${stray// /}" ]] && left=1
echo "mpirun_hosts.sh: $n hosts, exit status $rc, private /dev/shm and /tmp $([[ $left -eq 0 ]] && echo clean || echo NOT clean)$([[ -n "${stray// /}" ]] && echo ", processes left" || echo ", no process left")"
[[ $rc -eq 0 && $left -ne 0 ]] && exit 3
exit $rc
