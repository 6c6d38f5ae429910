// The cluster layer on MPI: one MPI rank per host (its Worker process). MPI
// carries only host-level control (agreement, settled steps) and the
// inter-host step of hierarchical collectives; chips never call MPI.
// Built as the plugin libchipmesh_cluster_mpi.so (cluster_plugin.h), opened
// by cluster_loader.cpp when a Worker joins a cluster. The C API only: the
// deprecated C++ bindings need libmpi_cxx.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#include <unistd.h>

#include <time.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "chipmesh/collectives.h"
#include "chipmesh/errors.h"
#include "chipmesh/half.h"
#include "cluster/cluster.h"
#include "cluster/cluster_plugin.h"
#include "knobs/knobs.h"

namespace chipmesh::cluster {
namespace {

// Fixed-size records: every host sends the same bytes to MPI_Allgather.
struct HostRecord {
  char hostname[256];
};
struct ShapeRecord {
  int64_t chips;
  uint64_t window_size;
  char platform[256];
};
struct StatusRecord {
  int32_t failed;
  char message[1020];
  uint64_t call_hash;
  char call[248];
};
struct CallRecord {
  uint64_t hash;
  char description[504];
};

// FNV-1a: the same value on every host whatever its build.
uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
  return h;
}

// MPI counts and displacements are int.
int int_count(size_t n, const char* what) {
  if (n > static_cast<size_t>(INT_MAX))
    throw ConfigError(std::string("cluster: ") + what + " of " + std::to_string(n) +
                      " exceeds the 2^31 - 1 that one MPI call carries between two hosts; split the call");
  return static_cast<int>(n);
}

std::vector<int> int_counts(const std::vector<size_t>& counts, std::vector<int>* displs, const char* what) {
  std::vector<int> out;
  size_t total = 0;
  for (size_t c : counts) {
    if (displs) displs->push_back(int_count(total, what));
    out.push_back(int_count(c, what));
    total += c;
  }
  int_count(total, what);
  return out;
}

void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw CommError(std::string("cluster: ") + what + " failed: " + std::string(text, static_cast<size_t>(len)));
}

void copy_cut(char* dst, size_t cap, const std::string& s) {
  const size_t n = std::min(cap - 1, s.size());
  std::memcpy(dst, s.data(), n);
  dst[n] = '\0';
}

// Set when a host missed a control step's deadline: the job cannot go on,
// and MPI_Finalize would wait for that host forever.
std::atomic<bool> broken{false};

// MPI_Finalize at exit, only when chipmesh called MPI_Init (and nobody
// finalized since): a program that initialized MPI itself finalizes it.
// After a missed deadline, MPI_Abort instead: mpirun then ends every host's
// process (the late one too) and exits non-zero.
void finalize_at_exit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (broken.load()) {
    // exit() flushes stdio only after its handlers; MPI_Abort never returns,
    // so flush here or the program's last buffered output is lost.
    std::fflush(nullptr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Finalize();
}

void ensure_initialized() {
  static std::once_flag once;
  std::call_once(once, [] {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (finalized) throw ConfigError("cluster \"mpi\": MPI was already finalized in this process");
    if (initialized) return;
    int provided = 0;
    check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided), "MPI_Init_thread");
    std::atexit(finalize_at_exit);
  });
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) throw ConfigError("cluster \"mpi\": MPI was already finalized in this process");
}

MPI_Datatype mpi_type(DataType t) {
  switch (t) {
    case DataType::FLOAT32: return MPI_FLOAT;
    case DataType::FLOAT64: return MPI_DOUBLE;
    case DataType::INT32: return MPI_INT32_T;
    case DataType::INT64: return MPI_INT64_T;
    case DataType::INT8: return MPI_INT8_T;
    case DataType::UINT8: return MPI_UINT8_T;
    case DataType::FLOAT16:
    case DataType::BFLOAT16: return MPI_UINT16_T;  // with our ops (mpi_op)
    default: return MPI_DATATYPE_NULL;
  }
}

MPI_Op builtin_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::SUM: return MPI_SUM;
    case ReduceOp::PROD: return MPI_PROD;
    case ReduceOp::MAX: return MPI_MAX;
    case ReduceOp::MIN: return MPI_MIN;
  }
  return MPI_OP_NULL;
}

// float16 and bfloat16 have no MPI type: they travel as 16-bit words and
// reduce with ops of our own that combine each pair in float32 and round
// back (as the chips' kernels accumulate in float32 within a host).
template <float (*To)(uint16_t), uint16_t (*From)(float), ReduceOp Op>
void half_op(void* in, void* inout, int* len, MPI_Datatype*) {
  const auto* a = static_cast<const uint16_t*>(in);
  auto* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *len; ++i) {
    const float x = To(a[i]), y = To(b[i]);
    const float r = Op == ReduceOp::SUM ? x + y : Op == ReduceOp::PROD ? x * y : Op == ReduceOp::MAX ? (x > y ? x : y)
                                                                                                 : (x < y ? x : y);
    b[i] = From(r);
  }
}

template <float (*To)(uint16_t), uint16_t (*From)(float)>
std::array<MPI_Op, 4> make_half_ops() {
  MPI_User_function* fns[4] = {half_op<To, From, ReduceOp::SUM>, half_op<To, From, ReduceOp::PROD>,
                               half_op<To, From, ReduceOp::MAX>, half_op<To, From, ReduceOp::MIN>};
  std::array<MPI_Op, 4> ops{};
  for (size_t k = 0; k < 4; ++k) MPI_Op_create(fns[k], 1, &ops[k]);
  return ops;
}

// The MPI op of `op` on `dtype` (MPI_OP_NULL: none). The half ops are made
// once, after MPI_Init (joining comes first).
MPI_Op mpi_op(DataType dtype, ReduceOp op) {
  const auto k = static_cast<size_t>(op);
  if (k >= 4) return MPI_OP_NULL;
  if (dtype == DataType::FLOAT16) {
    static const std::array<MPI_Op, 4> ops = make_half_ops<half::half_to_float, half::float_to_half>();
    return ops[k];
  }
  if (dtype == DataType::BFLOAT16) {
    static const std::array<MPI_Op, 4> ops = make_half_ops<half::bf16_to_float, half::float_to_bf16>();
    return ops[k];
  }
  return builtin_op(op);
}

class MpiCluster final : public Cluster {
 public:
  MpiCluster() {
    ensure_initialized();
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    HostRecord mine{};
    if (gethostname(mine.hostname, sizeof mine.hostname - 1) != 0) std::strcpy(mine.hostname, "?");
    hosts_.resize(static_cast<size_t>(size_));
    hosts_[static_cast<size_t>(rank_)] = mine;
    // A communicator of our own: a program's traffic on MPI_COMM_WORLD never
    // matches ours.
    MPI_Request req = MPI_REQUEST_NULL;
    check(MPI_Comm_idup(MPI_COMM_WORLD, &comm_, &req), "MPI_Comm_idup");
    wait(req, "joining (MPI_Comm_idup)");
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    gather(&mine, sizeof mine, hosts_.data(), "joining (MPI_Allgather of the host names)");
    set_this_host(host_name(rank_));
  }
  // A cluster over `comm` (ours to free): `hosts` and `world_ranks` name
  // its ranks as the job's cluster does.
  MpiCluster(MPI_Comm comm, std::vector<HostRecord> hosts, std::vector<int> world_ranks)
      : comm_(comm), hosts_(std::move(hosts)), world_ranks_(std::move(world_ranks)) {
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  ~MpiCluster() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }

  // MPI_Allgather of a fixed-size record, the control steps' exchange, with
  // the communicators' deadline (CHIPMESH_COMM_TIMEOUT_S): a host that never
  // arrives (stopped, hung, running other code) is a CommError here, not a
  // wait without end.
  void gather(const void* mine, size_t bytes, void* all, const char* what) {
    MPI_Request req = MPI_REQUEST_NULL;
    check(MPI_Iallgather(mine, static_cast<int>(bytes), MPI_BYTE, all, static_cast<int>(bytes), MPI_BYTE, comm_,
                         &req),
          what);
    wait(req, what);
  }

  // Completes `req` or throws the CommError of a host that never arrived.
  void wait(MPI_Request& req, const char* what) {
    const auto limit = std::chrono::seconds(knobs::integer(knobs::Id::CommTimeoutS));
    const auto deadline = std::chrono::steady_clock::now() + limit;
    for (int polls = 0;; ++polls) {
      int done = 0;
      check(MPI_Test(&req, &done, MPI_STATUS_IGNORE), what);
      if (done) return;
      if (std::chrono::steady_clock::now() >= deadline) {
        broken = true;
        throw CommError(std::string("cluster: ") + what + ": not all of the " + std::to_string(size_) +
                        " hosts arrived within " + std::to_string(limit.count()) +
                        " s (CHIPMESH_COMM_TIMEOUT_S; seen on " + me() +
                        "): a host is stopped, hung or running other code; the job cannot go on (chipmesh "
                        "aborts the MPI job at exit)");
      }
      // Spin briefly, then poll every 100 us: waiting for a slow host must
      // not take a core from its chips.
      if (polls > 1000) {
        const timespec ts{0, 100000};
        nanosleep(&ts, nullptr);
      }
    }
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string host_name(int r) const override {
    const int job_rank = world_ranks_.empty() ? r : world_ranks_.at(static_cast<size_t>(r));
    return "host " + std::to_string(job_rank) + " (" + hosts_.at(static_cast<size_t>(r)).hostname + ")";
  }

  void agree(const JobShape& s) override {
    ShapeRecord mine{};
    mine.chips = s.chips;
    mine.window_size = s.window_size;
    copy_cut(mine.platform, sizeof mine.platform, s.platform);
    std::vector<ShapeRecord> all(static_cast<size_t>(size_));
    gather(&mine, sizeof mine, all.data(), "agreeing on the job (MPI_Allgather of the job shapes)");
    // Every host builds the same message from the same records.
    std::string why;
    auto differs = [&](const char* what, auto get) {
      for (int r = 1; r < size_; ++r)
        if (get(all[static_cast<size_t>(r)]) != get(all[0])) {
          why += std::string(why.empty() ? "" : "; ") + what + ": " + host_name(0) + " has " + get(all[0]) + ", " +
                 host_name(r) + " has " + get(all[static_cast<size_t>(r)]);
          return;
        }
    };
    differs("chips per host", [](const ShapeRecord& x) { return std::to_string(x.chips); });
    differs("bring-up window size", [](const ShapeRecord& x) { return std::to_string(x.window_size); });
    differs("platform", [](const ShapeRecord& x) { return std::string(x.platform); });
    if (!why.empty())
      throw ConfigError("cluster: the " + std::to_string(size_) + " hosts disagree on the job (seen on " + me() +
                        "): " + why);
  }

  bool settle(const char* step, const std::string& error, const std::string& call) override {
    StatusRecord mine{};
    mine.failed = error.empty() ? 0 : 1;
    copy_cut(mine.message, sizeof mine.message, error);
    mine.call_hash = fnv1a(call);
    copy_cut(mine.call, sizeof mine.call, call);
    std::vector<StatusRecord> all(static_cast<size_t>(size_));
    gather(&mine, sizeof mine, all.data(), (std::string(step) + " (MPI_Allgather of the step status)").c_str());
    if (mine.failed) return false;
    for (int r = 0; r < size_; ++r)
      if (all[static_cast<size_t>(r)].failed)
        throw CommError(std::string("cluster: ") + step + " failed on " + host_name(r) + ": " +
                        all[static_cast<size_t>(r)].message + " (seen on " + me() + ")");
    for (int r = 1; r < size_; ++r)
      if (all[static_cast<size_t>(r)].call_hash != all[0].call_hash)
        throw ConfigError(std::string("cluster: ") + step + ": the hosts disagree on the call (seen on " + me() +
                          "): " + host_name(0) + " calls " + all[0].call + ", " + host_name(r) + " calls " +
                          all[static_cast<size_t>(r)].call);
    return true;
  }

  void allreduce(void* data, size_t count, DataType dtype, ReduceOp op) override {
    check_reducible("allreduce", dtype, op);
    const size_t es = dtype_size(dtype);
    auto* p = static_cast<unsigned char*>(data);
    // MPI counts are ints: large buffers go in slices.
    constexpr size_t kSlice = size_t{1} << 30;
    for (size_t done = 0; done < count;) {
      const size_t n = std::min(kSlice, count - done);
      check(MPI_Allreduce(MPI_IN_PLACE, p + done * es, static_cast<int>(n), mpi_type(dtype), mpi_op(dtype, op), comm_),
            "MPI_Allreduce between the hosts");
      done += n;
    }
  }

  void barrier() override { check(MPI_Barrier(comm_), "MPI_Barrier between the hosts"); }

  std::shared_ptr<Cluster> split(bool member) override {
    MPI_Comm sub = MPI_COMM_NULL;
    check(MPI_Comm_split(comm_, member ? 0 : MPI_UNDEFINED, rank_, &sub), "MPI_Comm_split of the hosts");
    std::vector<int> flags(static_cast<size_t>(size_));
    const int mine = member ? 1 : 0;
    gather(&mine, sizeof mine, flags.data(), "splitting the hosts (MPI_Allgather of the members)");
    if (!member) return nullptr;
    std::vector<HostRecord> hosts;
    std::vector<int> ranks;
    for (int r = 0; r < size_; ++r)
      if (flags[static_cast<size_t>(r)]) {
        hosts.push_back(hosts_[static_cast<size_t>(r)]);
        ranks.push_back(world_ranks_.empty() ? r : world_ranks_[static_cast<size_t>(r)]);
      }
    return std::make_shared<MpiCluster>(sub, std::move(hosts), std::move(ranks));
  }

  void check_same(const std::string& what, const std::string& description) override {
    CallRecord mine{};
    mine.hash = fnv1a(description);
    copy_cut(mine.description, sizeof mine.description, description);
    std::vector<CallRecord> all(static_cast<size_t>(size_));
    gather(&mine, sizeof mine, all.data(), (what + " (MPI_Allgather of the call descriptions)").c_str());
    for (int r = 1; r < size_; ++r)
      if (all[static_cast<size_t>(r)].hash != all[0].hash)
        throw ConfigError(what + ": the hosts disagree (seen on " + me() + "): " + host_name(0) + " calls it with " +
                          all[0].description + ", " + host_name(r) + " with " +
                          all[static_cast<size_t>(r)].description);
  }

  void allgatherv(const void* send, void* recv, const std::vector<size_t>& counts) override {
    std::vector<int> displs;
    const std::vector<int> n = int_counts(counts, &displs, "an allgather across hosts");
    check(MPI_Allgatherv(send, n[static_cast<size_t>(rank_)], MPI_BYTE, recv, n.data(), displs.data(), MPI_BYTE,
                         comm_),
          "MPI_Allgatherv between the hosts");
  }

  void broadcast(void* data, size_t bytes, int root) override {
    check(MPI_Bcast(data, int_count(bytes, "a broadcast across hosts"), MPI_BYTE, root, comm_),
          "MPI_Bcast between the hosts");
  }

  void reduce(void* data, size_t count, DataType dtype, ReduceOp op, int root) override {
    check_reducible("reduce", dtype, op);
    const int n = int_count(count, "a reduce across hosts");
    check(MPI_Reduce(rank_ == root ? MPI_IN_PLACE : data, rank_ == root ? data : nullptr, n, mpi_type(dtype),
                     mpi_op(dtype, op), root, comm_),
          "MPI_Reduce between the hosts");
  }

  void reduce_scatter(const void* send, void* recv, const std::vector<size_t>& counts, DataType dtype,
                      ReduceOp op) override {
    check_reducible("reduce_scatter", dtype, op);
    const std::vector<int> n = int_counts(counts, nullptr, "a reduce_scatter across hosts");
    check(MPI_Reduce_scatter(send, recv, n.data(), mpi_type(dtype), mpi_op(dtype, op), comm_),
          "MPI_Reduce_scatter between the hosts");
  }

  void alltoallv(const void* send, const std::vector<size_t>& scounts, void* recv,
                 const std::vector<size_t>& rcounts) override {
    std::vector<int> sd, rd;
    const std::vector<int> sn = int_counts(scounts, &sd, "an all_to_all across hosts");
    const std::vector<int> rn = int_counts(rcounts, &rd, "an all_to_all across hosts");
    check(MPI_Alltoallv(send, sn.data(), sd.data(), MPI_BYTE, recv, rn.data(), rd.data(), MPI_BYTE, comm_),
          "MPI_Alltoallv between the hosts");
  }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  std::vector<HostRecord> hosts_;
  std::vector<int> world_ranks_;  // of a split cluster: each rank's rank in the job
};

std::unique_ptr<Cluster> join_mpi() { return std::make_unique<MpiCluster>(); }

void check_mpi_reducible(const char* what, DataType dtype, ReduceOp op) {
  if (mpi_type(dtype) == MPI_DATATYPE_NULL)
    throw ConfigError(std::string(what) + " across hosts: dtype " + std::string(dtype_name(dtype)) +
                      " is not supported across hosts (float32, float16, bfloat16, float64, int8, uint8, int32, "
                      "int64)");
  if (mpi_op(dtype, op) == MPI_OP_NULL) throw ConfigError(std::string(what) + " across hosts: unknown reduce op");
}

void mpi_reduce_local(const void* in, void* inout, size_t count, DataType dtype, ReduceOp op) {
  check_mpi_reducible("a reduction", dtype, op);
  const size_t es = dtype_size(dtype);
  constexpr size_t kSlice = size_t{1} << 30;
  for (size_t done = 0; done < count;) {
    const size_t n = std::min(kSlice, count - done);
    check(MPI_Reduce_local(static_cast<const unsigned char*>(in) + done * es,
                           static_cast<unsigned char*>(inout) + done * es, static_cast<int>(n), mpi_type(dtype),
                           mpi_op(dtype, op)),
          "MPI_Reduce_local");
    done += n;
  }
}

}  // namespace
}  // namespace chipmesh::cluster

extern "C" __attribute__((visibility("default"))) const chipmesh::cluster::Plugin* chipmesh_cluster_mpi_plugin_v1() {
  using namespace chipmesh::cluster;
  static const Plugin plugin{kPluginVersion, join_mpi, check_mpi_reducible, mpi_reduce_local};
  return &plugin;
}
