// The collectives of the Orchestrator on a domain that spans hosts
// (docs/multi-host.md). Each is one settled local step (the argument checks,
// waiting for the chips' earlier work, reading the local members' data out
// of their windows), one MPI step between the hosts' Worker processes on the
// domain's cluster of hosts, and the write back into the local members
// (then their store_to_host flush). They return when done. A failure up to
// the MPI step fails the call on every member host: its own error where it
// happened, a CommError naming that host elsewhere.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "chipmesh/worker.h"

namespace chipmesh::across_hosts {

// The argument checks of the call; they run inside the settled step.
using Check = std::function<void()>;
using Addrs = std::vector<uint64_t>;

// Where [addr, addr + bytes) of a chip lies in this process (its lent
// window, populated), or nullptr: then the data goes through copies.
using View = std::function<unsigned char*(int chip, uint64_t addr, size_t bytes)>;

// allreduce: the local step is the built-in allreduce kernel among this
// host's members (`submit` checks and submits it without the output flush,
// returning the chips), then MPI_Allreduce of one copy per host, in place
// in the first member's window where `view` reaches it.
void allreduce(Worker& w, Orchestrator& o, const CommDomain& d, const std::function<std::vector<int>()>& submit,
               const View& view, const Addrs& out, size_t count, DataType dtype, ReduceOp op);
// barrier: the local barrier kernel (`submit`), then MPI_Barrier.
void barrier(Orchestrator& o, const CommDomain& d, const std::function<void()>& submit);

// The others move the data through the host: each local member's input is
// read out of its window, the hosts exchange (MPI_Allgatherv, MPI_Bcast,
// MPI_Reduce, MPI_Reduce_scatter, MPI_Alltoallv) and each member's output
// is written back. Roots are global domain ranks.
void allgather(Worker& w, Orchestrator& o, const CommDomain& d, const Check& check, const Addrs& in, const Addrs& out,
               size_t count, DataType dtype);
void reduce_scatter(Worker& w, Orchestrator& o, const CommDomain& d, const Check& check, const Addrs& in,
                    const Addrs& out, size_t count, DataType dtype, ReduceOp op);
void broadcast(Worker& w, Orchestrator& o, const CommDomain& d, const Check& check, const Addrs& in, const Addrs& out,
               size_t count, DataType dtype, int root);
void reduce(Worker& w, Orchestrator& o, const CommDomain& d, const Check& check, const Addrs& in, const Addrs& out,
            size_t count, DataType dtype, ReduceOp op, int root);
void all_to_all(Worker& w, Orchestrator& o, const CommDomain& d, const Check& check, const Addrs& in,
                const Addrs& out, size_t count, DataType dtype);

}  // namespace chipmesh::across_hosts
