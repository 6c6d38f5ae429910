#!/usr/bin/env bash
# The launch agent of a simulated host (Open MPI's plm_rsh_agent, in place
# of ssh), and the way into one:  agent.sh [-d DIR] HOST COMMAND...
# HOST is a host's address (as in the hostfile). Runs COMMAND, joined with
# spaces and run by sh as ssh would, inside the host's network namespace,
# with its own hostname (UTS namespace) and private /dev/shm and /tmp (a
# mount namespace of its own; every process of the host is a child of the
# one orted or mpirun started this way, so they all see the same ones).
# DIR (hosts.sh's) comes from -d or MH_DIR.
set -euo pipefail
if [[ "${1:-}" == -d ]]; then
  MH_DIR=$2
  shift 2
fi
dir=${MH_DIR:?agent.sh: MH_DIR is not set}
host=${1:?usage: agent.sh [-d DIR] HOST COMMAND...}
shift
line=$(awk -v a="$host" '$2 == a' "$dir/hosts.map")
if [[ -z "$line" ]]; then
  echo "agent.sh: unknown host '$host' (not in $dir/hosts.map)" >&2
  exit 255
fi
read -r ns _ hdir <<<"$line"
exec ip netns exec "$ns" unshare --mount --uts --propagation private \
  /bin/sh -c 'hostname "$1" && mount --bind "$2/shm" /dev/shm && mount --bind "$2/tmp" /tmp && shift 2 && exec /bin/sh -c "$*"' \
  agent "$ns" "$hdir" "$@"
