// The parent side: a Worker forks one chip process per device, brings them up
// (bootstrap_context in each, reported on a bootstrap mailbox), dispatches
// kernels and control operations to them, and tears everything down.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "chipmesh/comm_domain.h"
#include "chipmesh/errors.h"
#include "chipmesh/shared_memory.h"
#include "chipmesh/types.h"

namespace chipmesh {

struct WorkerConfig {
  std::vector<int> device_ids;
  std::string platform = "sim";
  // One per device id; empty: chips start without a communicator.
  std::vector<ChipBootstrapConfig> chip_bootstrap_configs;
  // Deadline of init()'s bring-up, and of the rendezvous of every
  // Orchestrator::allocate_domain (a member that never comes).
  std::chrono::milliseconds bootstrap_timeout{120000};
  // "": one host (or what CHIPMESH_CLUSTER says). "mpi": this process is
  // one host's Worker in an MPI job (mpirun, one process per host; SPMD):
  // init() joins it (MPI_Init unless the program did it), checks that every
  // host has the same job, and world() spans every chip of every host
  // (docs/multi-host.md). ConfigError when chipmesh was built without MPI.
  std::string cluster;
};

struct ChipContext {
  int device_id = -1;
  int rank = -1;    // -1 without a communicator
  int nranks = 0;
  uint64_t device_ctx = 0;
  uint64_t local_window_base = 0;
  uint64_t actual_window_size = 0;
  std::map<std::string, uint64_t> buffer_ptrs;
};

// A failure on one chip: names the chip and carries the chip's own
// "<kind>: <message>" (or the signal that killed it).
class ChipError : public Error {
 public:
  ChipError(int chip, int device_id, pid_t pid, const std::string& cause);
  int chip() const { return chip_; }
  int device_id() const { return device_id_; }
  pid_t pid() const { return pid_; }
  const std::string& cause() const { return cause_; }

 private:
  int chip_;
  int device_id_;
  pid_t pid_;
  std::string cause_;
};

// A tensor argument of a kernel: an address in the chip's device space.
struct TensorArg {
  uint64_t addr = 0;
  DataType dtype = DataType::FLOAT32;
  std::vector<uint64_t> shape;
};

// One kernel call. `library` is a path to a kernel library or empty for the
// built-in kernels (libchipmesh_kernels.so, next to libchipmesh).
struct Task {
  std::string kernel;
  std::string library;
  std::vector<TensorArg> tensors;
  std::vector<uint64_t> scalars;
  // The communicator whose CommContext the kernel gets: a DomainContext's
  // device_ctx for this chip (the typed collectives set it), or 0 for the
  // bring-up communicator. A value that is neither fails the task.
  uint64_t comm_ctx = 0;
  // After a successful kernel the chip copies its store_to_host buffers into
  // their output staging before the task completes. false: it does not;
  // Orchestrator::flush_outputs does it later (back-to-back tasks that only
  // the last result of matters, or to time the kernel without the flush).
  bool flush_outputs = true;
};

class Worker;

// Handed to Worker::run's function: submits tasks; run() returns once every
// submitted task is done.
class Orchestrator {
 public:
  // One task on one chip (chip = index into device_ids).
  void submit(int chip, const Task& task);
  // One task per chip, dispatched all-or-nothing: no other task is
  // interleaved on any of these chips, so kernels may wait on each other.
  void submit_group(const std::vector<int>& chips, const std::vector<Task>& tasks);
  // The same task on every chip listed.
  void submit_group(const std::vector<int>& chips, const Task& task);
  // Blocks until every task submitted so far is done; throws ChipError on
  // the first failure.
  void wait();
  // Copies the store_to_host buffers of each chip listed into their output
  // staging, after the tasks queued on it before (for tasks submitted with
  // flush_outputs = false); a chip without such buffers is not asked (no
  // round trip, no error). Returns at once, like submit: wait() (or the end
  // of run()) waits. As after a task, nothing is flushed when the chip's
  // last task failed: that chip's flush fails (ChipError) and its staging
  // stays untouched.
  void flush_outputs(const std::vector<int>& chips);

  // Communication domains (docs/domains.md): a communicator over `chips`
  // (dense domain ranks in that order), each member with its own window of
  // at least `window_size` bytes (zeroed) and the `buffers` carved from it
  // in order, as at bring-up (placement "window"; load_from_host /
  // store_to_host are a ConfigError). Blocks until every member has joined;
  // tasks already queued on a member run first. ConfigError (before
  // anything is dispatched): a name that is live, an empty or bad chip
  // list, window_size 0, buffers that do not fit. A member that dies or
  // fails fails the call (ChipError naming it) once every member settled;
  // what the others made is destroyed.
  CommDomain allocate_domain(const std::string& name, const std::vector<int>& chips, size_t window_size,
                             const std::vector<ChipBufferSpec>& buffers = {});
  // Destroys the domain's communicator on every live member (after the
  // tasks queued before it) and frees its name; idempotent. The handle and
  // its copies report released(). ChipError naming a member that failed or
  // died (the domain is released regardless). Domains still live when the
  // orchestration function returns or throws are released by run().
  void release_domain(CommDomain& d);

  // Collectives over a domain (docs/collectives.md). `in` / `out` hold one
  // device address per domain rank, in that member's memory: inside its
  // window (used where it lies, no extra copy) or inside one Worker::malloc
  // allocation of its chip (then every member moves the data through its
  // window's staging area in chunks, so the data may be far larger than
  // the window); counts are elements. Arguments are checked before
  // anything is dispatched (ConfigError: a vector whose length is not the
  // domain's size, a root outside it, a count whose bytes overflow, an
  // address in neither, a window too small to stage through, a dtype/op
  // the kernels do not support); the call is then
  // dispatched all-or-nothing on the domain's chips and returns at once:
  // wait() (or the end of run()) waits, and a failure throws ChipError.
  // in == out is in place.
  void allreduce(const CommDomain& d, const std::vector<uint64_t>& in, const std::vector<uint64_t>& out, size_t count,
                 DataType dtype, ReduceOp op, AllreduceAlgo algo = AllreduceAlgo::AUTO);
  // out holds size() * count_per_rank: block j is rank j's in.
  void allgather(const CommDomain& d, const std::vector<uint64_t>& in, const std::vector<uint64_t>& out,
                 size_t count_per_rank, DataType dtype);
  // in holds size() * count_per_rank; rank r's out is block r reduced.
  void reduce_scatter(const CommDomain& d, const std::vector<uint64_t>& in, const std::vector<uint64_t>& out,
                      size_t count_per_rank, DataType dtype, ReduceOp op);
  // Every out = the root's in (root: a domain rank).
  void broadcast(const CommDomain& d, const std::vector<uint64_t>& in, const std::vector<uint64_t>& out, size_t count,
                 DataType dtype, int root);
  // The root's out = every in reduced; out is significant on the root only.
  void reduce(const CommDomain& d, const std::vector<uint64_t>& in, const std::vector<uint64_t>& out, size_t count,
              DataType dtype, ReduceOp op, int root);
  // in and out hold size() * count_per_peer; block j of rank r's out is
  // block r of rank j's in.
  void all_to_all(const CommDomain& d, const std::vector<uint64_t>& in, const std::vector<uint64_t>& out,
                  size_t count_per_peer, DataType dtype);
  void barrier(const CommDomain& d);
  // The same with buffer names, resolved per member in the domain's
  // buffers (for world(), the bootstrap buffers); ConfigError naming the
  // chip when a member lacks one.
  void allreduce(const CommDomain& d, const std::string& in, const std::string& out, size_t count, DataType dtype,
                 ReduceOp op, AllreduceAlgo algo = AllreduceAlgo::AUTO);
  void allgather(const CommDomain& d, const std::string& in, const std::string& out, size_t count_per_rank,
                 DataType dtype);
  void reduce_scatter(const CommDomain& d, const std::string& in, const std::string& out, size_t count_per_rank,
                      DataType dtype, ReduceOp op);
  void broadcast(const CommDomain& d, const std::string& in, const std::string& out, size_t count, DataType dtype,
                 int root);
  void reduce(const CommDomain& d, const std::string& in, const std::string& out, size_t count, DataType dtype,
              ReduceOp op, int root);
  void all_to_all(const CommDomain& d, const std::string& in, const std::string& out, size_t count_per_peer,
                  DataType dtype);

 private:
  friend class Worker;
  explicit Orchestrator(Worker& w) : worker_(w) {}
  Worker& worker_;
};

// Threads: one thread at a time per Worker (its calls, and the Orchestrator
// of its run(), are not synchronized against each other), except
// interrupt(). (Python's Worker makes calls from several threads take
// turns.) Workers of their own in several threads of one process are
// independent: each may init(), run() and close() while the others do.
// Forks: a Worker belongs to the process that created it (its chips are
// that process's children). In a fork of it (os.fork(), a child that
// exits through its destructors) every call that reaches the chips throws
// ConfigError, and interrupt(), close() and the destructor leave the chips
// and the shared memory to the owner.
class Worker {
 public:
  // ConfigError: configs given but count != device_ids; two chips with one
  // rank of a communicator, or disagreeing on its nranks; a communicator
  // meeting in the Worker's memory (empty rootinfo_path) missing a rank.
  explicit Worker(WorkerConfig cfg);
  ~Worker();                          // closes if the user did not
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Forks one process per chip and waits for their bring-up. Each fork
  // copies this process's page tables and write-protects its private
  // memory (copy-on-write with the chips), so data this process wrote
  // before init() costs bring-up time (about 17 ms per GiB per chip on the
  // AMD EPYC VM of docs/PERFORMANCE.md), its next write after init() faults
  // and copies every page (18x a warm write), and those copies stay
  // allocated for as long as the chips live. Allocate large host data
  // after init(), map it shared (MAP_SHARED, stage_input / stage_output,
  // POSIX shared memory), which fork neither copies nor protects, or leave
  // it out of the chips (exclude_from_chips).
  // Any thread may call it, and others may go on meanwhile (another
  // Worker's init(), logging, loading a platform): called on a thread other
  // than the main one, the chips are forked by a thread of the Worker's own
  // that lives until close() (a chip's parent-death signal follows the
  // thread that forked it), and the locks of chipmesh a chip takes are held
  // across the forks, so no chip starts with one another thread held.
  void init();
  const std::vector<ChipContext>& chip_contexts() const;  // error before init()

  // Memory of this process that no chip needs (a model, a dataset, a
  // user's arrays): the whole pages in [ptr, ptr + bytes) are left out of
  // the chips' forks (MADV_DONTFORK while init() forks them, inherited by
  // other forks again after), so they cost bring-up nothing and their next
  // write after init() is a plain write, held once. A chip that touches
  // them dies of SIGSEGV (a ChipError). Before init(), on memory that stays
  // mapped until init() returns (freed and mapped again by something else,
  // that is what gets left out); ConfigError after init(), for a null
  // pointer or 0 bytes, and from init() when it is not mapped. Pages
  // marked MADV_DONTFORK by someone else before are inherited by forks
  // after init().
  void exclude_from_chips(const void* ptr, size_t bytes);

  // Host staging the Worker owns (before init()): an unnamed region of
  // `bytes` for `buffer` of `chip`, recorded as that chip's host input
  // (load_from_host) or host output (store_to_host) in its bootstrap config.
  // Fill an input before init(); read an output after a run(). Nothing of
  // it is ever in /dev/shm, so no kill of any process leaves it behind; it
  // lives until the Worker is destroyed. ConfigError: after init(), a chip
  // outside the job, no chip_bootstrap_configs, a buffer already staged
  // that way. DeviceError naming the size when memory is short.
  // An input of a load_from_host buffer of exactly `bytes`, on a platform
  // whose transport adopts window files (sim), is a view of the chip's
  // window file at the buffer's offset: what is written there is in the
  // window at bring-up without a copy.
  SharedMemory& stage_input(int chip, const std::string& buffer, size_t bytes);
  SharedMemory& stage_output(int chip, const std::string& buffer, size_t bytes);
  // The bring-up communicator of chip_bootstrap_configs as a domain (name
  // "world", allocation id 0, chips in rank order); ConfigError if there is
  // none (or before init()).
  const CommDomain& world() const;
  // Calls `orch` with this run's Orchestrator, then waits for what it
  // queued and releases the domains still live. ConfigError when called
  // from inside `orch` of a run() of this Worker (queue on its Orchestrator).
  void run(const std::function<void(Orchestrator&)>& orch);
  uint64_t malloc(int chip, size_t nbytes);
  // `ptr` from malloc on that chip; 0 does nothing (as free(NULL)).
  void free(int chip, uint64_t ptr);
  // Host <-> device copies, after the requests queued on the chip. Where the
  // parent maps the range (a window or host-arena address on sim) it is one
  // memcpy here; the lines it reads then stay shared with the chip, whose
  // next write to them is slower (1 MiB on a 2-vCPU AMD EPYC VM: 39-92 us,
  // and 560 in its slow state, against 22-26; docs/PERFORMANCE.md): read an
  // output that kernels rewrite every step through a store_to_host staging
  // instead.
  void copy_to(int chip, uint64_t dst, const void* src, size_t nbytes);
  void copy_from(int chip, void* dst, uint64_t src, size_t nbytes);
  // Idempotent; ConfigError when called from inside run()'s `orch`.
  void close();

  // Bring-up time of the last init(), by phase (ms), measured in the chips
  // and the parent: setup (until the first fork), fork (until the last,
  // setup included), comm_init, windows, staging, handshake, total.
  std::map<std::string, double> bringup_phases_ms() const;
  size_t num_chips() const;
  pid_t chip_pid(int chip) const;

  // Hosts of the job (docs/multi-host.md): 1 and 0 on one host. In a
  // cluster these need init() (ConfigError before). A chip's global index
  // is the chips of the lower hosts plus its local index.
  int num_hosts() const;
  int host_rank() const;
  size_t num_global_chips() const;
  int global_chip(int local_chip) const;  // ConfigError outside 0..num_chips()-1
  // Collective over the hosts' Worker processes (every host calls it, in
  // the same order as its other cross-host calls): reduces `count` elements
  // of host memory in place; on one host it does nothing. For what an SPMD
  // program agrees on outside the chips (a check's verdict, a metric).
  // float32, float64, int32, int64; ConfigError otherwise.
  void host_allreduce(void* data, size_t count, DataType dtype, ReduceOp op);

  // Stops a blocking init() or run() from another thread (a Ctrl-C watcher):
  // marks the worker interrupted and sends SIGTERM to every chip forked so
  // far (chips forked later are terminated as they appear). The blocking
  // call then fails with a ChipError whose cause says "interrupted" (or the
  // chip's death); init() and run() refuse to start afterwards. The caller
  // then close()s. Only atomics and kill(2): safe from any thread at any
  // time, also before init() (init() then fails at once).
  void interrupt() noexcept;
  bool interrupted() const noexcept;

 private:
  friend class Orchestrator;
  SharedMemory& stage(int chip, const std::string& buffer, size_t bytes, bool input);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace chipmesh
