# Sourced by mpirun_hosts.sh and bench_hosts.sh: the mpirun command line that
# reaches the simulated hosts of hosts.env (MH_HOSTLIST, MH_SUBNET).
#   mpirun_line NP SLOTS_PER_HOST  ->  prints "mpirun ... -np NP --host h0:S,h1:S,..."
# then the program and its arguments follow. The hosts share this machine's
# cores, and each would bind its processes (and so its chips) to its "first"
# core, the same one on every host: --bind-to none (bound, a cross-host
# allreduce took 8-12 ms of time slices, not 0.1 ms). For the same reason
# MPI yields when idle (mpi_yield_when_idle, what Open MPI does by itself when
# it knows it is oversubscribed): busy-polling MPI ranks on shared cores made
# each MPI_Allreduce of 4 ranks on 2 cores take 8-24 ms of time slices.
# TCP only, over the hosts' subnet; agent.sh in place of ssh.
mpirun_line() {
  local np=$1 slots=$2 hosts="" h
  for h in ${MH_HOSTLIST//,/ }; do hosts+="${hosts:+,}$h:$slots"; done
  echo "mpirun --allow-run-as-root -np $np --host $hosts --map-by ppr:$slots:node --bind-to none" \
    "--mca plm_rsh_agent $(dirname "${BASH_SOURCE[0]}")/agent.sh" \
    "--mca mpi_yield_when_idle 1 --mca pml ob1 --mca btl tcp,self --mca btl_tcp_if_include $MH_SUBNET --mca oob_tcp_if_include $MH_SUBNET" \
    "-x MH_DIR"
}
