# Sourced by mpirun_hosts.sh and bench_hosts.sh: making the simulated hosts
# and the mpirun command line that reaches them.
#
#   harness_up WHO N PATH  needs root, the tools and PATH (a program or build)
#                          outside /tmp (else exits 77, naming WHO); makes N
#                          hosts in a fresh directory under /run (MH_DIR),
#                          torn down from an EXIT trap; sources hosts.env
#                          (MH_HOSTLIST, MH_SUBNET, MH_NAMESPACES) and sets
#                          `first`, the host mpirun runs on.
#   mpirun_line NP SLOTS_PER_HOST  prints "mpirun ... -np NP --host h0:S,..."
#                          with the flags below; the program follows. The hosts share this machine's
# cores, and each would bind its processes (and so its chips) to its "first"
# core, the same one on every host: --bind-to none (bound, a cross-host
# allreduce took 8-12 ms of time slices, not 0.1 ms). For the same reason
# MPI yields when idle (mpi_yield_when_idle, what Open MPI does by itself when
# it knows it is oversubscribed): busy-polling MPI ranks on shared cores made
# each MPI_Allreduce of 4 ranks on 2 cores take 8-24 ms of time slices.
# TCP only, over the hosts' subnet; agent.sh in place of ssh.
harness_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

harness_up() {
  local who=$1 n=$2 path=$3 tool
  if [[ $(id -u) -ne 0 ]]; then
    echo "$who: needs root for network and mount namespaces; skipping" >&2
    exit 77
  fi
  for tool in ip unshare mpirun timeout; do
    if ! command -v "$tool" >/dev/null; then
      echo "$who: $tool is not installed; skipping" >&2
      exit 77
    fi
  done
  case "$path/" in
    /tmp/*)
      echo "$who: $path is under /tmp, which every simulated host replaces by its own; skipping" >&2
      exit 77
      ;;
  esac
  # Outside /tmp, which the hosts do not see; /run is root's tmpfs.
  MH_DIR=$(mktemp -d "${MH_ROOT:-/run}/chipmesh-mh.XXXXXX") || exit 1
  trap 'timeout -k 5 60 "$harness_here/hosts.sh" down "$MH_DIR"' EXIT
  trap 'exit 130' INT TERM
  timeout -k 5 60 "$harness_here/hosts.sh" up "$MH_DIR" "$n" || exit $?
  source "$MH_DIR/hosts.env"
  export MH_DIR OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  first=${MH_HOSTLIST%%,*}
}

mpirun_line() {
  local np=$1 slots=$2 hosts="" h
  for h in ${MH_HOSTLIST//,/ }; do hosts+="${hosts:+,}$h:$slots"; done
  echo "mpirun --allow-run-as-root -np $np --host $hosts --map-by ppr:$slots:node --bind-to none" \
    "--mca plm_rsh_agent $harness_here/agent.sh" \
    "--mca mpi_yield_when_idle 1 --mca pml ob1 --mca btl tcp,self --mca btl_tcp_if_include $MH_SUBNET --mca oob_tcp_if_include $MH_SUBNET" \
    "-x MH_DIR"
}
