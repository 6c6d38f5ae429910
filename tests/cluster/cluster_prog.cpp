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
//   cluster_prog collectives  every collective on world() and on domains
//                          allocated with global chips: across all hosts in
//                          reverse chip order, over two chips of the first
//                          and last hosts (none on the others), inside the
//                          last host; results checked exactly on every member
//   cluster_prog hostdies  allreduces over world() in a loop; host 1 SIGKILLs
//                          itself after 3 (printing the time): mpirun must
//                          end the job (multihost_faults.sh)
//   cluster_prog spin      allreduces over world() in a loop, printing
//                          "host <r>: running" after the first, until a
//                          signal ends the job (Ctrl-C of mpirun)
//   cluster_prog hoststops host 1 SIGSTOPs itself after init; the others'
//                          allreduce must fail with a CommError after
//                          CHIPMESH_COMM_TIMEOUT_S (the test sets 2) saying
//                          not every host arrived; chipmesh then aborts the
//                          MPI job at exit, which ends host 1 too; the
//                          survivors print OK and meet in
//                          $CHIPMESH_TEST_MEET_DIR before they exit
//   cluster_prog badargs   host 1 passes an allgather a count its buffers
//                          cannot hold: ConfigError there, CommError naming
//                          host 1 elsewhere; then an allreduce works everywhere
//   cluster_prog badname   host 1 names a buffer its chips do not have:
//                          ConfigError there, CommError naming host 1
//                          elsewhere (at once, not after the deadline); then
//                          an allreduce works everywhere
//   cluster_prog callmismatch  host 1 passes an allgather another count that
//                          its buffers can hold: the same ConfigError on every
//                          host; then an allreduce works everywhere
//   cluster_prog domainfails  host 1's chip 0 is dead when a domain over
//                          global chips 0 and 2 is allocated: ChipError on
//                          host 1, CommError elsewhere; host 0's part is
//                          released (the name is free again)
//   cluster_prog domainmismatch  host 1 allocates a domain with another
//                          window size: the same ConfigError on every host
// Prints "host <r>: OK" on success; any failure prints "host <r>: FAIL ..."
// and exits 1.
#define OMPI_SKIP_MPICXX 1
#include <mpi.h>
#include <sched.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "chipmesh/half.h"
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
    b.comm = ChipCommBootstrapConfig{c, chips, dir.empty() ? "" : (dir / "rootinfo").string(), 1 << 16};
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
  // float16 and bfloat16 across hosts (our MPI ops, combining in float32):
  // small integers, exact in both.
  for (DataType dt : {DataType::FLOAT16, DataType::BFLOAT16}) {
    const bool h = dt == DataType::FLOAT16;
    for (int c = 0; c < static_cast<int>(w.num_chips()); ++c) {
      std::vector<uint16_t> v(kCount);
      for (size_t i = 0; i < kCount; ++i) {
        const auto x = static_cast<float>(value(w.global_chip(c), i));
        v[i] = h ? half::float_to_half(x) : half::float_to_bf16(x);
      }
      w.copy_to(c, w.chip_contexts()[static_cast<size_t>(c)].buffer_ptrs.at("f_in"), v.data(), 2 * kCount);
    }
    w.run([&](Orchestrator& o) { o.allreduce(w.world(), "f_in", "f_out", kCount, dt, ReduceOp::SUM); });
    for (int c = 0; c < static_cast<int>(w.num_chips()); ++c) {
      std::vector<uint16_t> v(kCount);
      w.copy_from(c, v.data(), w.chip_contexts()[static_cast<size_t>(c)].buffer_ptrs.at("f_out"), 2 * kCount);
      for (size_t i = 0; i < kCount; ++i) {
        int want = 0;
        for (int g = 0; g < static_cast<int>(w.num_global_chips()); ++g) want += value(g, i);
        const float got = h ? half::half_to_float(v[i]) : half::bf16_to_float(v[i]);
        if (got != static_cast<float>(want))
          fail(std::string(h ? "float16" : "bfloat16") + " allreduce: chip " + std::to_string(c) + " element " +
               std::to_string(i) + ": got " + std::to_string(got) + ", expected " + std::to_string(want));
      }
    }
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

// --- every collective on world() and on domains across hosts ----------------

std::vector<int32_t> get(Worker& w, int chip, uint64_t addr, size_t n) {
  std::vector<int32_t> v(n);
  w.copy_from(chip, v.data(), addr, 4 * n);
  return v;
}

void put(Worker& w, int chip, uint64_t addr, const std::vector<int32_t>& v) { w.copy_to(chip, addr, v.data(), 4 * v.size()); }

// Element i of global domain rank r's input.
int32_t x(int r, size_t i) { return value(r, i); }

void expect_equal(const std::string& what, int chip, const std::vector<int32_t>& got,
                  const std::vector<int32_t>& want) {
  for (size_t i = 0; i < want.size(); ++i)
    if (got[i] != want[i])
      fail(what + ": chip " + std::to_string(chip) + " element " + std::to_string(i) + ": got " +
           std::to_string(got[i]) + ", expected " + std::to_string(want[i]));
}

// Runs every collective on `d` (int32 buffers `in` and `out` of kCount
// elements on every member) and checks this host's members, inside one
// run() (a domain lives until its run() ends).
void check_collectives(Worker& w, Orchestrator& o, const CommDomain& d, const std::string& in, const std::string& out) {
  const int G = d.global_size();
  const size_t c = kCount / static_cast<size_t>(G);
  const std::vector<int32_t> sentinel(kCount, 12345);
  auto addr = [&](int chip, const std::string& name) { return d.context(chip).buffer_ptrs.at(name); };
  auto fill = [&](size_t n) {
    for (int chip : d.chips()) {
      std::vector<int32_t> v(n);
      for (size_t i = 0; i < n; ++i) v[i] = x(d.global_rank_of(chip), i);
      put(w, chip, addr(chip, in), v);
      put(w, chip, addr(chip, out), sentinel);
    }
  };
  const std::string tag = "domain '" + d.name() + "' ";
  // The collectives within one host return at once; across hosts when done.
  auto run = [&](const std::function<void(Orchestrator&)>& f) {
    f(o);
    o.wait();
  };

  fill(c);
  run([&](Orchestrator& o) { o.allgather(d, in, out, c, DataType::INT32); });
  for (int chip : d.chips()) {
    std::vector<int32_t> want(static_cast<size_t>(G) * c);
    for (int j = 0; j < G; ++j)
      for (size_t i = 0; i < c; ++i) want[static_cast<size_t>(j) * c + i] = x(j, i);
    expect_equal(tag + "allgather", chip, get(w, chip, addr(chip, out), want.size()), want);
  }

  fill(static_cast<size_t>(G) * c);
  run([&](Orchestrator& o) { o.reduce_scatter(d, in, out, c, DataType::INT32, ReduceOp::SUM); });
  for (int chip : d.chips()) {
    const int r = d.global_rank_of(chip);
    std::vector<int32_t> want(c, 0);
    for (int j = 0; j < G; ++j)
      for (size_t i = 0; i < c; ++i) want[i] += x(j, static_cast<size_t>(r) * c + i);
    expect_equal(tag + "reduce_scatter", chip, get(w, chip, addr(chip, out), c), want);
  }

  const int broadcast_root = G - 1;
  fill(kCount);
  run([&](Orchestrator& o) { o.broadcast(d, in, out, kCount, DataType::INT32, broadcast_root); });
  for (int chip : d.chips()) {
    std::vector<int32_t> want(kCount);
    for (size_t i = 0; i < kCount; ++i) want[i] = x(broadcast_root, i);
    expect_equal(tag + "broadcast", chip, get(w, chip, addr(chip, out), kCount), want);
  }

  const int reduce_root = G > 1 ? 1 : 0;
  fill(kCount);
  run([&](Orchestrator& o) { o.reduce(d, in, out, kCount, DataType::INT32, ReduceOp::SUM, reduce_root); });
  for (int chip : d.chips()) {
    std::vector<int32_t> want(kCount, 0);
    for (int j = 0; j < G; ++j)
      for (size_t i = 0; i < kCount; ++i) want[i] += x(j, i);
    // The others' out is not written.
    expect_equal(tag + "reduce", chip, get(w, chip, addr(chip, out), kCount),
                 d.global_rank_of(chip) == reduce_root ? want : sentinel);
  }

  fill(static_cast<size_t>(G) * c);
  run([&](Orchestrator& o) { o.all_to_all(d, in, out, c, DataType::INT32); });
  for (int chip : d.chips()) {
    const int r = d.global_rank_of(chip);
    std::vector<int32_t> want(static_cast<size_t>(G) * c);
    for (int j = 0; j < G; ++j)
      for (size_t i = 0; i < c; ++i) want[static_cast<size_t>(j) * c + i] = x(j, static_cast<size_t>(r) * c + i);
    expect_equal(tag + "all_to_all", chip, get(w, chip, addr(chip, out), want.size()), want);
  }

  fill(kCount);
  run([&](Orchestrator& o) {
    o.allreduce(d, in, out, kCount, DataType::INT32, ReduceOp::MAX);
    o.barrier(d);
  });
  for (int chip : d.chips()) {
    std::vector<int32_t> want(kCount);
    for (size_t i = 0; i < kCount; ++i) {
      want[i] = x(0, i);
      for (int j = 1; j < G; ++j) want[i] = std::max(want[i], x(j, i));
    }
    expect_equal(tag + "allreduce", chip, get(w, chip, addr(chip, out), kCount), want);
  }
}

void collectives() {
  TmpDir dir;
  Worker w(config(2, dir.path));
  w.init();
  g_rank = w.host_rank();
  const int H = w.num_hosts(), all = static_cast<int>(w.num_global_chips());
  const std::vector<ChipBufferSpec> buffers = {{"in", DataType::INT32, kCount, 4 * kCount},
                                               {"out", DataType::INT32, kCount, 4 * kCount}};
  std::vector<int> reversed;
  for (int g = all - 1; g >= 0; --g) reversed.push_back(g);
  const std::vector<int> ends = {1, all - 2};             // host 0's chip 1, the last host's chip 0
  const std::vector<int> last_host = {all - 1, all - 2};  // inside the last host
  std::optional<CommDomain> kept;
  w.run([&](Orchestrator& o) {
    check_collectives(w, o, w.world(), "i_in", "i_out");
    CommDomain a = o.allocate_domain("reversed", reversed, 1 << 15, buffers);
    expect(a.spans_hosts() && a.global_size() == all && a.size() == 2, "domain 'reversed': sizes");
    expect(a.global_rank_of(0) == all - 1 - 2 * g_rank, "domain 'reversed': global_rank_of(0)");
    check_collectives(w, o, a, "in", "out");
    CommDomain b = o.allocate_domain("ends", ends, 1 << 15, buffers);
    const int b_local = g_rank == 0 || g_rank == H - 1 ? 1 : 0;
    expect(b.size() == b_local && b.global_size() == 2, "domain 'ends': sizes");
    check_collectives(w, o, b, "in", "out");
    o.release_domain(b);
    CommDomain c = o.allocate_domain("last_host", last_host, 1 << 15, buffers);
    expect(!c.spans_hosts() && c.global_size() == 2 && c.size() == (g_rank == H - 1 ? 2 : 0),
           "domain 'last_host': sizes");
    check_collectives(w, o, c, "in", "out");
    // The name is free again after release, on every host.
    CommDomain b2 = o.allocate_domain("ends", ends, 1 << 15, buffers);
    kept = b2;
  });
  expect(kept->released(), "run() releases the domains still live");
  w.close();
}

void domain_mismatch() {
  TmpDir dir;
  Worker w(config(2, dir.path));
  w.init();
  g_rank = w.host_rank();
  try {
    w.run([&](Orchestrator& o) { o.allocate_domain("d", {0, 2}, g_rank == 1 ? 8192 : 4096); });
    fail("allocate_domain did not throw");
  } catch (const ConfigError& e) {
    const std::string m = e.what();
    std::printf("host %d: error: %s\n", g_rank, m.c_str());
    expect(m.find("the hosts disagree") != std::string::npos && m.find("window_size 4096") != std::string::npos &&
               m.find("window_size 8192") != std::string::npos,
           "message: " + m);
  }
  // The job goes on.
  w.run([&](Orchestrator& o) { o.barrier(w.world()); });
}

// Allreduces over world() until `stop` says so or 60 s pass (then FAIL:
// nobody ended the job).
void loop_allreduce(Worker& w, const std::function<void(int)>& after) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (int i = 1; std::chrono::steady_clock::now() < until; ++i) {
    w.run([&](Orchestrator& o) {
      o.allreduce(w.world(), "f_in", "f_out", kCount, DataType::FLOAT32, ReduceOp::SUM);
    });
    after(i);
  }
  fail("still running after 60 s: nobody ended the job");
}

long long realtime_ms() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<long long>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

void host_dies() {
  // No directory of our own: the Worker makes the job's and its chips
  // remove it whoever is killed (the harness checks /tmp).
  Worker w(config(2, {}));
  w.init();
  g_rank = w.host_rank();
  loop_allreduce(w, [&](int i) {
    if (g_rank == 1 && i == 3) {
      std::printf("host 1: SIGKILL to itself at %lld ms\n", realtime_ms());
      std::fflush(stdout);
      kill(getpid(), SIGKILL);
    }
  });
}

void spin() {
  // No directory of our own: the Worker makes the job's and its chips
  // remove it whoever is killed (the harness checks /tmp).
  Worker w(config(2, {}));
  w.init();
  g_rank = w.host_rank();
  loop_allreduce(w, [&](int i) {
    if (i == 1) {
      std::printf("host %d: running\n", g_rank);
      std::fflush(stdout);
    }
  });
}

void host_stops() {
  Worker w(config(2, {}));
  w.init();
  g_rank = w.host_rank();
  if (g_rank == 1) {
    std::printf("host 1: stopping itself\n");
    std::fflush(stdout);
    raise(SIGSTOP);
    // mpirun continues a stopped process only to end it (SIGCONT, then
    // SIGTERM): wait for that.
    for (;;) pause();
  }
  const auto t0 = std::chrono::steady_clock::now();
  try {
    w.run([&](Orchestrator& o) {
      o.allreduce(w.world(), "f_in", "f_out", kCount, DataType::FLOAT32, ReduceOp::SUM);
    });
    fail("the allreduce did not throw");
  } catch (const CommError& e) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("host %d: error after %.2f s: %s\n", g_rank, s, e.what());
    const std::string m = e.what();
    expect(m.find("allreduce across hosts (local step)") != std::string::npos &&
               m.find("hosts arrived within 2 s") != std::string::npos,
           "message: " + m);
    expect(s < 10, "took " + std::to_string(s) + " s");
  }
  // The first survivor to exit aborts the job (chipmesh's exit handler after
  // a missed deadline), and mpirun then ends the others wherever they are.
  // So each survivor reports first and exits only once every survivor has:
  // they meet through files in a directory the test names, as host 1 is
  // stopped and no MPI call can complete.
  std::printf("host %d: OK\n", g_rank);
  std::fflush(stdout);
  const char* meet = std::getenv("CHIPMESH_TEST_MEET_DIR");
  expect(meet != nullptr, "CHIPMESH_TEST_MEET_DIR is not set");
  std::FILE* f = std::fopen((fs::path(meet) / ("host" + std::to_string(g_rank))).c_str(), "w");
  expect(f != nullptr, std::string("cannot create a file in ") + meet);
  std::fclose(f);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (int h = 0; h < w.num_hosts(); ++h) {
    if (h == 1) continue;
    const fs::path other = fs::path(meet) / ("host" + std::to_string(h));
    while (!fs::exists(other)) {
      expect(std::chrono::steady_clock::now() < until, "host " + std::to_string(h) + " never reported");
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  std::exit(0);
}

// Host 1 fails its own argument check; every host must learn it in the same
// step and the job must go on in step.
// Host 1's allgather of `in` (`count` elements a rank) fails its own checks
// with a ConfigError saying each of `host1_says`; the others get a CommError naming
// host 1 (from the settled step, at once); then an allreduce works everywhere.
void host_one_fails_allgather(const std::string& in, size_t count, const std::vector<std::string>& host1_says) {
  TmpDir dir;
  Worker w(config(2, dir.path));
  w.init();
  g_rank = w.host_rank();
  const size_t fits = kCount / w.num_global_chips();
  try {
    w.run([&](Orchestrator& o) {
      o.allgather(w.world(), g_rank == 1 ? in : "i_in", "i_out", g_rank == 1 ? count : fits, DataType::INT32);
    });
    fail("the allgather did not throw");
  } catch (const CommError& e) {
    std::printf("host %d: error: %s\n", g_rank, e.what());
    expect(g_rank != 1 && std::string(e.what()).find("allgather across hosts (local step) failed on host 1 (") !=
                              std::string::npos,
           std::string("message: ") + e.what());
  } catch (const ConfigError& e) {
    std::printf("host %d: error: %s\n", g_rank, e.what());
    bool says = g_rank == 1;
    for (const auto& part : host1_says) says = says && std::string(e.what()).find(part) != std::string::npos;
    expect(says, std::string("message: ") + e.what());
  }
  check_allreduce(w, ReduceOp::SUM);
}

// Host 1's buffers (and window) cannot hold num_global_chips() * 4 * kCount
// elements: by name, the count against the buffer, inside the settled step.
void bad_args() { host_one_fails_allgather("i_in", 4 * kCount, {"the input 'i_in' of chip 0 (rank ", " holds "}); }

void bad_name() { host_one_fails_allgather("no_such_buffer", kCount, {"has no buffer 'no_such_buffer'"}); }

// Every host's arguments pass its own checks, but host 1's count differs:
// the same ConfigError everywhere, before any mismatched MPI call.
void call_mismatch() {
  TmpDir dir;
  Worker w(config(2, dir.path));
  w.init();
  g_rank = w.host_rank();
  const size_t count = g_rank == 1 ? 100 : 150;
  try {
    w.run([&](Orchestrator& o) { o.allgather(w.world(), "i_in", "i_out", count, DataType::INT32); });
    fail("the allgather did not throw");
  } catch (const ConfigError& e) {
    const std::string m = e.what();
    std::printf("host %d: error: %s\n", g_rank, m.c_str());
    expect(m.find("the hosts disagree on the call") != std::string::npos &&
               m.find("allgather(count 150, int32)") != std::string::npos &&
               m.find("allgather(count 100, int32)") != std::string::npos,
           "message: " + m);
  }
  check_allreduce(w, ReduceOp::SUM);
}

void domain_fails() {
  TmpDir dir;
  Worker w(config(2, dir.path));
  w.init();
  g_rank = w.host_rank();
  if (g_rank == 1) {
    const pid_t pid = w.chip_pid(0);
    kill(pid, SIGKILL);
    // Wait until the Worker has seen it (its watcher reaps the chip).
    for (const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
         kill(pid, 0) == 0 && std::chrono::steady_clock::now() < until;)
      sched_yield();
  }
  try {
    w.run([&](Orchestrator& o) { o.allocate_domain("d", {0, 2}, 4096); });
    fail("allocate_domain did not throw");
  } catch (const CommError& e) {
    std::printf("host %d: error: %s\n", g_rank, e.what());
    expect(g_rank != 1 && std::string(e.what()).find("allocate_domain 'd' (local step) failed on host 1 (") !=
                              std::string::npos,
           std::string("message: ") + e.what());
  } catch (const ChipError& e) {
    std::printf("host %d: error: %s\n", g_rank, e.what());
    expect(g_rank == 1 && e.chip() == 0, std::string("message: ") + e.what());
  }
  // Host 0 released its part: the name is free; a domain over host 0's
  // chips alone (host 1 takes part without members).
  w.run([&](Orchestrator& o) {
    CommDomain d = o.allocate_domain("d", {0, 1}, 4096);
    expect(d.size() == (g_rank == 0 ? 2 : 0), "domain 'd' again: size");
    o.barrier(d);
  });
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
    else if (mode == "collectives")
      collectives();
    else if (mode == "domainmismatch")
      domain_mismatch();
    else if (mode == "hostdies")
      host_dies();
    else if (mode == "spin")
      spin();
    else if (mode == "hoststops")
      host_stops();
    else if (mode == "badargs")
      bad_args();
    else if (mode == "badname")
      bad_name();
    else if (mode == "callmismatch")
      call_mismatch();
    else if (mode == "domainfails")
      domain_fails();
    else
      fail("usage: cluster_prog basic|owninit|mismatch|window|platform|bringup|chipdies|collectives|domainmismatch|hostdies|spin|hoststops|badargs|badname|callmismatch|domainfails");
  } catch (const Error& e) {
    fail(describe(e));
  }
  std::printf("host %d: OK\n", g_rank);
  return 0;
}
