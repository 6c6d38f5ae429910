#!/usr/bin/env bash
# Simulated hosts on one machine for multi-host tests (docs/multi-host.md):
# each host is a network namespace with a veth pair onto a bridge (which
# lives in a namespace of its own, so nothing touches the machine's own
# network), a private-range address, its own hostname, and private /dev/shm
# and /tmp (bind-mounted by agent.sh in a mount namespace of each launch).
#
#   hosts.sh up   DIR N   create N hosts; DIR (empty, made by the caller)
#                          receives hosts.env, hostfile and h<i>/{shm,tmp}
#   hosts.sh down DIR     kill what runs in them, delete the namespaces,
#                          remove DIR; safe to run twice or after a failed up
#
# Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) and iproute2. `up` exits 77
# when namespaces cannot be created here.
set -euo pipefail

cmd=${1:?usage: hosts.sh up DIR N | down DIR}
dir=${2:?usage: hosts.sh up DIR N | down DIR}

down() {
  [[ -f "$dir/hosts.env" ]] && source "$dir/hosts.env"
  local ns
  for ns in ${MH_NAMESPACES:-}; do
    # Whatever still runs there (an orted, a chip) goes first.
    local pids
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [[ -n "$pids" ]] && kill -9 $pids 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf -- "$dir"
}

if [[ "$cmd" == down ]]; then
  down
  exit 0
fi

n=${3:?usage: hosts.sh up DIR N}
# A name and a subnet of this run: two runs at once do not collide.
tag="cmh$$"
subnet_octet=$(( ($$ % 200) + 20 ))
subnet="10.231.${subnet_octet}.0/24"
br="${tag}-br"
namespaces="$br"
for ((i = 0; i < n; i++)); do namespaces+=" ${tag}-h$i"; done
{
  echo "MH_NAMESPACES=\"$namespaces\""
  echo "MH_SUBNET=$subnet"
  echo "MH_HOSTS=$n"
} >"$dir/hosts.env"

if ! ip netns add "$br" 2>"$dir/netns.err"; then
  echo "hosts.sh: cannot create network namespaces here ($(cat "$dir/netns.err")); skipping" >&2
  down
  exit 77
fi
trap 'echo "hosts.sh: up failed; tearing down" >&2; down' ERR
ip -n "$br" link add br0 type bridge
ip -n "$br" link set br0 up
ip -n "$br" link set lo up
hosts=""
: >"$dir/hostfile"
for ((i = 0; i < n; i++)); do
  ns="${tag}-h$i"
  addr="10.231.${subnet_octet}.$((i + 1))"
  ip netns add "$ns"
  ip link add "${tag}v$i" netns "$br" type veth peer name eth0 netns "$ns"
  ip -n "$br" link set "${tag}v$i" master br0 up
  ip -n "$ns" addr add "$addr/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  mkdir -p "$dir/h$i/shm" "$dir/h$i/tmp"
  chmod 1777 "$dir/h$i/shm" "$dir/h$i/tmp"
  echo "$ns $addr $dir/h$i" >>"$dir/hosts.map"
  echo "$addr slots=1" >>"$dir/hostfile"
  hosts+="${hosts:+,}$addr"
done
echo "MH_HOSTLIST=$hosts" >>"$dir/hosts.env"
trap - ERR
# The rest of what a host needs (mount and UTS namespaces, bind mounts),
# tried once: where it is refused, skip as for the network namespaces.
if ! MH_DIR=$dir "$(dirname "${BASH_SOURCE[0]}")/agent.sh" "${hosts%%,*}" true 2>"$dir/agent.err"; then
  echo "hosts.sh: cannot enter a simulated host here ($(cat "$dir/agent.err")); skipping" >&2
  down
  exit 77
fi
