// Run under mpirun, one process per "host" (cluster_test.cpp starts it):
// a Worker with cluster "mpi" per process, forking its own chips.
//   cluster_prog basic     accessors, world(), hierarchical allreduce
//                          (sum/max/min of float32 and int32) and barrier,
//                          results checked exactly
//   cluster_prog mismatch  host r brings 1 + r chips: init() must throw a
//                          ConfigError naming the hosts on every host
//   cluster_prog window    host 1 asks for a larger bring-up window: the
//                          same ConfigError on every host
//   cluster_prog platform  host 1 names a platform that does not exist: it
//                          throws its own error, the others a CommError
//                          naming host 1
//   cluster_prog bringup   host 1's chips declare a buffer larger than the
//                          window: ChipError there, CommError elsewhere
//   cluster_prog owninit   the program calls MPI_Init itself, then runs
//                          `basic`: chipmesh must not finalize MPI (the
//                          program does, after the Worker is gone)
//   cluster_prog chipdies  after init, host 1 kills its chip 0; the
//                          allreduce over world() then fails on every host
//                          (ChipError on host 1, CommError elsewhere)
// Prints "host <r>: OK" on success; any failure prints "host <r>: FAIL ..."
// and exits 1.
#define OMPI_SKIP_MPICXX 1
#include <mpi.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "chipmesh/worker.h"

using namespace chipmesh;
namespace fs = std::filesystem;

namespace {

int g_rank = -1;

[[noreturn]] void fail(const std::string& why) {
  std::printf("host %d: FAIL %s\n", g_rank, why.c_str());
  std::fflush(stdout);
  std::exit(1);
}

void expect(bool ok, const std::string& what) {
  if (!ok) fail(what);
}

// The rootinfo lives in a private directory of this process: two "hosts" on
// one machine never share one (nor do real hosts share a file system).
struct TmpDir {
  fs::path path;
  TmpDir() {
    std::string t = (fs::temp_directory_path() / "chipmesh_cluster_test_XXXXXX").string();
    if (!mkdtemp(t.data())) fail("mkdtemp");
    path = t;
  }
  ~TmpDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

constexpr size_t kCount = 1000;

WorkerConfig config(int chips, const fs::path& dir) {
  WorkerConfig cfg;
  cfg.cluster = "mpi";
  for (int c = 0; c < chips; ++c) {
    cfg.device_ids.push_back(c);
    ChipBootstrapConfig b;
    b.comm = ChipCommBootstrapConfig{c, chips, (dir / "rootinfo").string(), 1 << 16};
    for (const char* name : {"f_in", "f_out"}) b.buffers.push_back({name, DataType::FLOAT32, kCount, 4 * kCount});
    for (const char* name : {"i_in", "i_out"}) b.buffers.push_back({name, DataType::INT32, kCount, 4 * kCount});
    cfg.chip_bootstrap_configs.push_back(b);
  }
  return cfg;
}

// Input of global chip g at element i: small integers, exact in float32.
int value(int g, size_t i) { return static_cast<int>((g * 7 + static_cast<int>(i) * 3) % 19) - 9; }

void check_allreduce(Worker& w, ReduceOp op) {
  const int n = static_cast<int>(w.num_chips());
  const int total = static_cast<int>(w.num_global_chips());
  for (int c = 0; c < n; ++c) {
    std::vector<float> f(kCount);
    std::vector<int32_t> v(kCount);
    for (size_t i = 0; i < kCount; ++i) f[i] = static_cast<float>(v[i] = value(w.global_chip(c), i));
    const auto& ctx = w.chip_contexts()[static_cast<size_t>(c)];
    w.copy_to(c, ctx.buffer_ptrs.at("f_in"), f.data(), 4 * kCount);
    w.copy_to(c, ctx.buffer_ptrs.at("i_in"), v.data(), 4 * kCount);
  }
  w.run([&](Orchestrator& o) {
    o.allreduce(w.world(), "f_in", "f_out", kCount, DataType::FLOAT32, op);
    o.allreduce(w.world(), "i_in", "i_out", kCount, DataType::INT32, op);
  });
  for (int c = 0; c < n; ++c) {
    std::vector<float> f(kCount);
    std::vector<int32_t> v(kCount);
    const auto& ctx = w.chip_contexts()[static_cast<size_t>(c)];
    w.copy_from(c, f.data(), ctx.buffer_ptrs.at("f_out"), 4 * kCount);
    w.copy_from(c, v.data(), ctx.buffer_ptrs.at("i_out"), 4 * kCount);
    for (size_t i = 0; i < kCount; ++i) {
      int want = value(0, i);
      for (int g = 1; g < total; ++g) {
        const int x = value(g, i);
        want = op == ReduceOp::SUM ? want + x : op == ReduceOp::MAX ? std::max(want, x) : std::min(want, x);
      }
      if (f[i] != static_cast<float>(want) || v[i] != want)
        fail("op " + std::to_string(static_cast<int>(op)) + " chip " + std::to_string(c) + " element " +
             std::to_string(i) + ": got " + std::to_string(f[i]) + " / " + std::to_string(v[i]) + ", expected " +
             std::to_string(want));
    }
  }
}

void basic() {
  TmpDir dir;
  Worker w(config(2, dir.path));
  w.init();
  g_rank = w.host_rank();
  const char* ranks = std::getenv("OMPI_COMM_WORLD_SIZE");
  const int hosts = ranks ? std::atoi(ranks) : 1;
  expect(w.num_hosts() == hosts, "num_hosts " + std::to_string(w.num_hosts()) + ", expected " + std::to_string(hosts));
  expect(w.num_global_chips() == static_cast<size_t>(2 * hosts), "num_global_chips");
  expect(w.global_chip(1) == 2 * w.host_rank() + 1, "global_chip(1)");
  const CommDomain& world = w.world();
  expect(world.spans_hosts() && world.global_size() == 2 * hosts && world.size() == 2, "world() sizes");
  expect(world.global_rank_of(1) == 2 * w.host_rank() + 1, "world().global_rank_of(1)");
  for (ReduceOp op : {ReduceOp::SUM, ReduceOp::MAX, ReduceOp::MIN}) check_allreduce(w, op);
  w.run([&](Orchestrator& o) { o.barrier(w.world()); });
  // Not yet across hosts: a clear ConfigError, on every host alike.
  try {
    w.run([&](Orchestrator& o) { o.broadcast(w.world(), "f_in", "f_out", kCount, DataType::FLOAT32, 0); });
    fail("broadcast across hosts did not throw");
  } catch (const ConfigError& e) {
    expect(std::strstr(e.what(), "not yet supported across hosts") != nullptr, std::string("message: ") + e.what());
  }
  w.close();
}

int env_rank() {
  const char* r = std::getenv("OMPI_COMM_WORLD_RANK");
  return r ? std::atoi(r) : 0;
}

void mismatch() {
  TmpDir dir;
  const char* r = std::getenv("OMPI_COMM_WORLD_RANK");
  g_rank = r ? std::atoi(r) : 0;
  Worker w(config(1 + g_rank, dir.path));
  try {
    w.init();
    fail("init() did not throw on a chip count mismatch");
  } catch (const ConfigError& e) {
    const std::string m = e.what();
    std::printf("host %d: error: %s\n", g_rank, m.c_str());
    expect(m.find("chips per host") != std::string::npos && m.find("host 0 (") != std::string::npos &&
               m.find("host 1 (") != std::string::npos && m.find("has 1") != std::string::npos &&
               m.find("has 2") != std::string::npos,
           "message: " + m);
  }
}

// Same chips, but host 1 asks for a larger bring-up window.
void window_mismatch() {
  TmpDir dir;
  g_rank = env_rank();
  WorkerConfig cfg = config(2, dir.path);
  if (g_rank == 1)
    for (auto& b : cfg.chip_bootstrap_configs) b.comm->window_size = 1 << 17;
  Worker w(cfg);
  try {
    w.init();
    fail("init() did not throw on a window size mismatch");
  } catch (const ConfigError& e) {
    const std::string m = e.what();
    std::printf("host %d: error: %s\n", g_rank, m.c_str());
    expect(m.find("bring-up window size: host 0 (") != std::string::npos && m.find("has 65536") != std::string::npos &&
               m.find("host 1 (") != std::string::npos && m.find("has 131072") != std::string::npos,
           "message: " + m);
  }
}

// Host 1 fails a step of init() in its own way; every other host must get a
// CommError naming host 1 and the step, and nobody may hang.
void one_host_fails(const std::string& mode) {
  TmpDir dir;
  g_rank = env_rank();
  WorkerConfig cfg = config(2, dir.path);
  if (g_rank == 1 && mode == "platform") cfg.platform = "no_such_platform";
  if (g_rank == 1 && mode == "bringup")
    for (auto& b : cfg.chip_bootstrap_configs) b.buffers.push_back({"huge", DataType::FLOAT32, 1 << 15, 4 << 15});
  Worker w(cfg);
  try {
    w.init();
    fail("init() did not throw");
  } catch (const CommError& e) {
    const std::string m = e.what();
    std::printf("host %d: error: %s\n", g_rank, m.c_str());
    expect(g_rank != 1, "host 1 got a CommError: " + m);
    const std::string step = mode == "platform" ? "loading the platform failed on host 1 (" : "bring-up failed on host 1 (";
    expect(m.find(step) != std::string::npos, "message: " + m);
  } catch (const Error& e) {
    std::printf("host %d: error: %s\n", g_rank, describe(e).c_str());
    expect(g_rank == 1, "host " + std::to_string(g_rank) + " got " + describe(e));
    // A chip's error names its host too.
    if (mode == "bringup")
      expect(std::string(e.what()).find(", host 1 (") != std::string::npos, std::string("message: ") + e.what());
  }
}

void chip_dies() {
  TmpDir dir;
  Worker w(config(2, dir.path));
  w.init();
  g_rank = w.host_rank();
  if (g_rank == 1) kill(w.chip_pid(0), SIGKILL);
  try {
    w.run([&](Orchestrator& o) {
      o.allreduce(w.world(), "f_in", "f_out", kCount, DataType::FLOAT32, ReduceOp::SUM);
    });
    fail("the allreduce did not throw");
  } catch (const CommError& e) {
    std::printf("host %d: error: %s\n", g_rank, e.what());
    expect(g_rank != 1 && std::string(e.what()).find("allreduce across hosts (local step) failed on host 1 (") !=
                              std::string::npos,
           std::string("message: ") + e.what());
  } catch (const ChipError& e) {
    std::printf("host %d: error: %s\n", g_rank, e.what());
    expect(g_rank == 1 && e.chip() == 0, std::string("message: ") + e.what());
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  try {
    if (mode == "basic") {
      basic();
    } else if (mode == "owninit") {
      MPI_Init(&argc, &argv);
      basic();
      int finalized = 1;
      MPI_Finalized(&finalized);
      expect(!finalized, "chipmesh finalized MPI that the program initialized");
      // Still usable by the program after the Worker closed.
      int sum = 1;
      MPI_Allreduce(MPI_IN_PLACE, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
      int size = 0;
      MPI_Comm_size(MPI_COMM_WORLD, &size);
      expect(sum == size, "MPI_Allreduce after the Worker closed");
      MPI_Finalize();
    }
    else if (mode == "mismatch")
      mismatch();
    else if (mode == "window")
      window_mismatch();
    else if (mode == "platform" || mode == "bringup")
      one_host_fails(mode);
    else if (mode == "chipdies")
      chip_dies();
    else
      fail("usage: cluster_prog basic|owninit|mismatch|window|platform|bringup|chipdies");
  } catch (const Error& e) {
    fail(describe(e));
  }
  std::printf("host %d: OK\n", g_rank);
  return 0;
}
