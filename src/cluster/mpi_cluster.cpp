// The cluster layer on MPI: one MPI rank per host (its Worker process). MPI
// carries only host-level control (agreement, settled steps) and the
// inter-host step of hierarchical collectives; chips never call MPI.
// The C API only: the deprecated C++ bindings need libmpi_cxx.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "chipmesh/collectives.h"
#include "chipmesh/errors.h"
#include "cluster/cluster.h"

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
};

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

// MPI_Finalize at exit, only when chipmesh called MPI_Init (and nobody
// finalized since): a program that initialized MPI itself finalizes it.
void finalize_at_exit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
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
    default: return MPI_DATATYPE_NULL;
  }
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::SUM: return MPI_SUM;
    case ReduceOp::PROD: return MPI_PROD;
    case ReduceOp::MAX: return MPI_MAX;
    case ReduceOp::MIN: return MPI_MIN;
  }
  return MPI_OP_NULL;
}

class MpiCluster final : public Cluster {
 public:
  MpiCluster() {
    ensure_initialized();
    // A communicator of our own: a program's traffic on MPI_COMM_WORLD never
    // matches ours.
    check(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    HostRecord mine{};
    if (gethostname(mine.hostname, sizeof mine.hostname - 1) != 0) std::strcpy(mine.hostname, "?");
    hosts_.resize(static_cast<size_t>(size_));
    check(MPI_Allgather(&mine, sizeof mine, MPI_BYTE, hosts_.data(), sizeof mine, MPI_BYTE, comm_),
          "MPI_Allgather of the host names");
    set_this_host(host_name(rank_));
  }
  ~MpiCluster() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string host_name(int r) const override {
    return "host " + std::to_string(r) + " (" + hosts_.at(static_cast<size_t>(r)).hostname + ")";
  }

  void agree(const JobShape& s) override {
    ShapeRecord mine{};
    mine.chips = s.chips;
    mine.window_size = s.window_size;
    copy_cut(mine.platform, sizeof mine.platform, s.platform);
    std::vector<ShapeRecord> all(static_cast<size_t>(size_));
    check(MPI_Allgather(&mine, sizeof mine, MPI_BYTE, all.data(), sizeof mine, MPI_BYTE, comm_),
          "MPI_Allgather of the job shapes");
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

  bool settle(const char* step, const std::string& error) override {
    StatusRecord mine{};
    mine.failed = error.empty() ? 0 : 1;
    copy_cut(mine.message, sizeof mine.message, error);
    std::vector<StatusRecord> all(static_cast<size_t>(size_));
    check(MPI_Allgather(&mine, sizeof mine, MPI_BYTE, all.data(), sizeof mine, MPI_BYTE, comm_),
          "MPI_Allgather of the step status");
    if (mine.failed) return false;
    for (int r = 0; r < size_; ++r)
      if (all[static_cast<size_t>(r)].failed)
        throw CommError(std::string("cluster: ") + step + " failed on " + host_name(r) + ": " +
                        all[static_cast<size_t>(r)].message + " (seen on " + me() + ")");
    return true;
  }

  void allreduce(void* data, size_t count, DataType dtype, ReduceOp op) override {
    check_allreduce(dtype, op);
    const size_t es = dtype_size(dtype);
    auto* p = static_cast<unsigned char*>(data);
    // MPI counts are ints: large buffers go in slices.
    constexpr size_t kSlice = size_t{1} << 30;
    for (size_t done = 0; done < count;) {
      const size_t n = std::min(kSlice, count - done);
      check(MPI_Allreduce(MPI_IN_PLACE, p + done * es, static_cast<int>(n), mpi_type(dtype), mpi_op(op), comm_),
            "MPI_Allreduce between the hosts");
      done += n;
    }
  }

  void barrier() override { check(MPI_Barrier(comm_), "MPI_Barrier between the hosts"); }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  std::vector<HostRecord> hosts_;
};

}  // namespace

bool available() { return true; }

std::unique_ptr<Cluster> join(const std::string& kind) {
  if (kind != "mpi") throw ConfigError("WorkerConfig::cluster: unknown cluster '" + kind + "' (\"\" or \"mpi\")");
  return std::make_unique<MpiCluster>();
}

void check_allreduce(DataType dtype, ReduceOp op) {
  if (mpi_type(dtype) == MPI_DATATYPE_NULL)
    throw ConfigError("allreduce across hosts: dtype " + std::string(dtype_name(dtype)) +
                      " is not yet supported across hosts (float32, float64, int32, int64)");
  if (mpi_op(op) == MPI_OP_NULL) throw ConfigError("allreduce across hosts: unknown reduce op");
}

}  // namespace chipmesh::cluster
