// `chipmesh bench bringup`: Worker::init() until every ChipContext is ready,
// and init + close, for N chips and two window sizes, with the phase split
// and the first two kernels after it (an allreduce over the whole window:
// page tables that bring-up does not build are built by the first kernel
// that touches the pages, so its cost shows there, not hidden);
// side by side with the fork floor and Open MPI (mpirun wall time and
// MPI_Init-to-window-ready), alternating runs. With --parent-memory, also
// what the chips' fork costs a user's data in this process.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>

#include "bench.h"
#include "chipmesh/shared_memory.h"
#include "chipmesh/worker.h"
#include "fork_floor.h"
#include "mpi_peer.h"

namespace chipmesh::bench {

namespace {

constexpr size_t kStagingBytes = 4096;  // one small load_from_host buffer per chip
const char* const kPhases[] = {"setup", "fork", "comm_init", "windows", "staging", "handshake", "total"};

struct ChipmeshSample {
  double init_ms = 0, init_close_ms = 0;
  double first_kernel_ms = 0, second_kernel_ms = 0;
  double parent_write_ms = 0, parent_rewrite_ms = 0;
  std::map<std::string, double> phases;
};

// A user's data: private memory this process wrote before init(). Each
// chip's fork copies its page tables and write-protects it (copy-on-write
// with the chip), so the next write after init() faults on every page and
// copies it, and the copies stay for as long as the chips live.
class ParentMemory {
 public:
  explicit ParentMemory(size_t bytes) : bytes_(bytes) {
    if (bytes_ == 0) return;
    // Written again with the chips alive, it is held twice: keep it to a
    // quarter of the machine rather than meet the OOM killer.
    const uint64_t machine =
        static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
    if (bytes_ > machine / 4)
      throw std::runtime_error("--parent-memory " + std::to_string(bytes_) + " bytes is more than a quarter of this "
                               "machine's memory (" + std::to_string(machine) + " bytes): it is held twice while "
                               "the chips live");
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
      throw std::runtime_error("--parent-memory: cannot map " + std::to_string(bytes_) +
                               " bytes: " + std::strerror(errno));
    data_ = static_cast<unsigned char*>(p);
    std::memset(data_, 1, bytes_);
  }
  ~ParentMemory() {
    if (data_) munmap(data_, bytes_);
  }
  ParentMemory(const ParentMemory&) = delete;
  ParentMemory& operator=(const ParentMemory&) = delete;
  size_t bytes() const { return bytes_; }
  const unsigned char* data() const { return data_; }
  // Writes every byte (a new value each time, so no write is skipped); ms.
  double write_ms() {
    const auto t0 = Clock::now();
    std::memset(data_, ++value_, bytes_);
    return ms_between(t0, Clock::now());
  }

 private:
  size_t bytes_;
  unsigned char* data_ = nullptr;
  unsigned char value_ = 1;
};

// One Worker bring-up of n chips with a window of `window` bytes and a
// 4 KiB input staged from host shared memory; the staging objects are made
// before the clock starts and removed right after init (as a launcher would).
// With `parent` (--parent-memory): after the kernels, its first write with
// the chips alive, and after close() a second one.
ChipmeshSample chipmesh_bringup(const BenchOptions& o, int n, size_t window, ParentMemory* parent) {
  std::vector<SharedMemory> staging;
  struct Unlink {
    std::vector<SharedMemory>& s;
    ~Unlink() {
      for (auto& m : s) m.unlink();
    }
  } unlink_guard{staging};
  WorkerConfig cfg;
  cfg.platform = o.platform;
  cfg.bootstrap_timeout = std::chrono::seconds(120);
  const bool staged = o.inputs == "staged";
  for (int r = 0; r < n; ++r) {
    if (!staged) {
      staging.push_back(SharedMemory::create(staging_name("bringup"), kStagingBytes));
      std::memset(staging.back().data(), r, kStagingBytes);
    }
    cfg.device_ids.push_back(r);
    ChipBootstrapConfig c;
    // An empty rootinfo_path: the Worker's own rendezvous, what `chipmesh
    // demo` and most users get (a path under an ext4 /tmp cost 0.6 ms more).
    c.comm = ChipCommBootstrapConfig{r, n, "", window};
    ChipBufferSpec in;
    in.name = "input";
    in.dtype = DataType::UINT8;
    in.count = kStagingBytes;
    in.nbytes = kStagingBytes;
    in.load_from_host = true;
    // The rest of the window: what the first kernels reduce.
    ChipBufferSpec data;
    data.name = "data";
    data.dtype = DataType::FLOAT32;
    data.count = (window - kStagingBytes) / sizeof(float);
    data.nbytes = data.count * sizeof(float);
    c.buffers = {in};
    if (data.count > 0) c.buffers.push_back(data);
    if (!staged) c.host_inputs = {HostBufferStaging{"input", staging.back().name(), kStagingBytes}};
    cfg.chip_bootstrap_configs.push_back(std::move(c));
  }
  Worker w(std::move(cfg));
  if (staged)
    for (int r = 0; r < n; ++r) std::memset(w.stage_input(r, "input", kStagingBytes).data(), r, kStagingBytes);
  if (parent && o.exclude_parent_memory) w.exclude_from_chips(parent->data(), parent->bytes());
  ChipmeshSample s;
  const auto t0 = Clock::now();
  w.init();
  const auto t1 = Clock::now();
  for (auto& m : staging) m.unlink();
  s.phases = w.bringup_phases_ms();
  const size_t count = (window - kStagingBytes) / sizeof(float);
  double kernel_ms[2] = {0, 0};
  for (double& k : kernel_ms) {
    if (count == 0) break;  // a window of a page or less: no room for data
    const auto k0 = Clock::now();
    w.run([&](Orchestrator& orch) {
      orch.allreduce(w.world(), "data", "data", count, DataType::FLOAT32, ReduceOp::SUM);
    });
    k = ms_between(k0, Clock::now());
  }
  if (parent) s.parent_write_ms = parent->write_ms();
  const auto t2 = Clock::now();
  w.close();
  const auto t3 = Clock::now();
  if (parent) s.parent_rewrite_ms = parent->write_ms();
  s.init_ms = ms_between(t0, t1);
  s.first_kernel_ms = kernel_ms[0];
  s.second_kernel_ms = kernel_ms[1];
  s.init_close_ms = ms_between(t0, t1) + ms_between(t2, t3);
  return s;
}

// "init_to_ready_ms=1.2 init_ms=..." -> map
std::map<std::string, double> parse_kv(const std::string& text) {
  std::map<std::string, double> kv;
  std::istringstream in(text);
  for (std::string tok; in >> tok;) {
    auto eq = tok.find('=');
    if (eq == std::string::npos) continue;
    try {
      kv[tok.substr(0, eq)] = std::stod(tok.substr(eq + 1));
    } catch (...) {
    }
  }
  return kv;
}

Cell opt(const std::vector<double>& v) { return v.empty() ? Cell{} : Cell{median_of(v)}; }
Cell ratio(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.empty() || b.empty()) return Cell{};
  return Cell{median_of(a) / median_of(b)};
}

}  // namespace

BenchResult run_bringup(const BenchOptions& o) {
  BenchResult res;
  res.name = "bringup";
  const auto start = Clock::now();
  const std::vector<int> chips = !o.chips.empty() ? o.chips : o.quick ? std::vector<int>{1, 2} : std::vector<int>{1, 2, 4, 8, 16};
  std::vector<size_t> windows =
      o.quick ? std::vector<size_t>{size_t{1} << 20} : std::vector<size_t>{size_t{1} << 20, size_t{64} << 20};
  if (!o.windows.empty()) windows.assign(o.windows.begin(), o.windows.end());
  const int repeats = o.repeats > 0 ? o.repeats : o.quick ? 2 : 21;
  const int mpi_repeats = o.quick ? 1 : std::min(repeats, 7);
  MpiPeer mpi(o);
  // Written once before every run, as a user's data that lives across them.
  std::unique_ptr<ParentMemory> parent;

  Table phases("bringup_phases", "bring-up phases (chipmesh, median ms of " + std::to_string(repeats) + " runs)",
               {{"chips", "chips", 0},
                {"window_bytes", "window(B)", 0},
                {"setup_ms", "setup", 3},
                {"fork_ms", "fork", 3},
                {"comm_init_ms", "comm_init", 3},
                {"windows_ms", "windows", 3},
                {"staging_ms", "staging", 3},
                {"handshake_ms", "handshake", 3},
                {"total_ms", "total", 3},
                {"first_kernel_ms", "1st kernel", 3},
                {"second_kernel_ms", "2nd kernel", 3}});
  Table peers("bringup", "bring-up vs peers (median ms; ratio = chipmesh / peer)",
              {{"chips", "chips", 0},
               {"window_bytes", "window(B)", 0},
               {"init_ms", "init", 3},
               {"init_p99_ms", "init p99", 3},
               {"init_close_ms", "init+close", 3},
               {"fork_floor_ms", "fork floor", 3},
               {"ratio_floor", "x floor", 2},
               {"mpi_init_to_ready_ms", "MPI init->ready", 3},
               {"ratio_mpi", "x MPI", 3},
               {"mpirun_wall_ms", "mpirun wall", 1},
               {"ratio_mpirun", "init+close x mpirun", 3}});
  Table parent_mem("bringup_parent_memory",
                   std::string("what the chips' fork costs memory this process wrote before init()") +
                       (o.exclude_parent_memory ? ", left out of the chips (exclude_from_chips)" : "") +
                       " (median ms)",
                   {{"chips", "chips", 0},
                    {"window_bytes", "window(B)", 0},
                    {"parent_bytes", "parent(B)", 0},
                    {"init_ms", "init", 3},
                    {"fork_floor_ms", "fork floor", 3},
                    {"parent_write_ms", "write after init", 3},
                    {"parent_rewrite_ms", "write after close", 3},
                    {"write_ratio", "x after close", 2}});

  std::map<std::pair<int, size_t>, double> init_by_point, floor_by_point;
  say(o.out, "bringup: chips {");
  for (int n : chips) say(o.out, " %d", n);
  say(o.out, " }, windows {");
  for (size_t w : windows) say(o.out, " %s", size_label(w).c_str());
  say(o.out, " }, %d runs per point (Open MPI: %d)\n", repeats, mpi_repeats);
  try {
    if (o.parent_memory > 0) parent = std::make_unique<ParentMemory>(o.parent_memory);
    chipmesh_bringup(o, 1, windows[0], nullptr);  // warm-up: plugin and page cache
    fork_floor_ms(1);
    for (size_t window : windows) {
      for (int n : chips) {
        std::map<std::string, std::vector<double>> ph;
        std::vector<double> init, init_close, floor, mpi_ready, mpi_wall, first_kernel, second_kernel;
        std::vector<double> parent_write, parent_rewrite;
        for (int r = 0; r < repeats; ++r) {
          ChipmeshSample s = chipmesh_bringup(o, n, window, parent.get());
          parent_write.push_back(s.parent_write_ms);
          parent_rewrite.push_back(s.parent_rewrite_ms);
          init.push_back(s.init_ms);
          init_close.push_back(s.init_close_ms);
          first_kernel.push_back(s.first_kernel_ms);
          second_kernel.push_back(s.second_kernel_ms);
          for (const char* p : kPhases) ph[p].push_back(s.phases.count(p) ? s.phases[p] : 0.0);
          floor.push_back(fork_floor_ms(n));
          // The floor's forks write-protected it too: the next run starts warm.
          if (parent) parent->write_ms();
          if (r < mpi_repeats && mpi.available()) {
            ProcessResult pr =
                mpi.run(n, MpiPeer::kBringupProgram, {std::to_string(window)}, o.quick ? 60.0 : 180.0);
            auto kv = parse_kv(pr.out);
            if (pr.ok() && kv.count("init_to_ready_ms")) {
              mpi_ready.push_back(kv["init_to_ready_ms"]);
              mpi_wall.push_back(pr.wall_ms);
            }
          }
        }
        const Stats st = stats_of(init);
        phases.add_row({int64_t{n}, static_cast<int64_t>(window), median_of(ph["setup"]), median_of(ph["fork"]),
                        median_of(ph["comm_init"]),
                        median_of(ph["windows"]), median_of(ph["staging"]), median_of(ph["handshake"]),
                        median_of(ph["total"]), median_of(first_kernel), median_of(second_kernel)});
        peers.add_row({int64_t{n}, static_cast<int64_t>(window), st.median, st.p99, median_of(init_close),
                       median_of(floor), ratio(init, floor), opt(mpi_ready), ratio(init, mpi_ready), opt(mpi_wall),
                       ratio(init_close, mpi_wall)});
        say(o.out, "  %2d chips, %s window: init %.3f ms, fork floor %.3f ms%s\n", n, size_label(window).c_str(),
            st.median, median_of(floor),
            mpi_ready.empty() ? "" : (", MPI init->ready " + std::to_string(median_of(mpi_ready)) + " ms").c_str());
        if (parent)
          parent_mem.add_row({int64_t{n}, static_cast<int64_t>(window), static_cast<int64_t>(parent->bytes()),
                              st.median, median_of(floor), median_of(parent_write), median_of(parent_rewrite),
                              ratio(parent_write, parent_rewrite)});
        init_by_point[{n, window}] = st.median;
        floor_by_point[{n, window}] = median_of(floor);
      }
    }
  } catch (const std::exception& e) {
    res.failed = true;
    res.notes.push_back(std::string("chipmesh failed: ") + e.what());
    say(o.out, "bringup: FAILED: %s\n", e.what());
  }
  // Issue 10's targets (issue 4's: 8 chips, 1 MiB, <= 10 ms and <= 3x the floor).
  const size_t small = size_t{1} << 20, big = size_t{64} << 20;
  for (int n : {8, 16}) {
    Target t{"bring-up, " + std::to_string(n) + " chips, 1 MiB windows", "not measured (not in this run)",
             "<= 1.5x fork floor", false, false};
    if (parent) {
      t.measured = "not measured (--parent-memory: the fork floor forks that memory too)";
      t.known = false;
    } else if (init_by_point.count({n, small})) {
      const double i = init_by_point[{n, small}], f = floor_by_point[{n, small}];
      char buf[160];
      std::snprintf(buf, sizeof buf, "%.2f ms = %.2fx fork floor (%.2f ms)", i, i / f, f);
      t.measured = buf;
      t.met = i <= 1.5 * f;
      t.known = true;
    }
    res.targets.push_back(t);
    Target w{"bring-up, " + std::to_string(n) + " chips, 64 MiB vs 1 MiB windows", "not measured (not in this run)",
             "<= 1.2x", false, false};
    if (parent) {
      w.measured = "not measured (--parent-memory)";
      w.known = false;
    } else if (init_by_point.count({n, small}) && init_by_point.count({n, big})) {
      char buf[160];
      const double r = init_by_point[{n, big}] / init_by_point[{n, small}];
      std::snprintf(buf, sizeof buf, "%.2f ms vs %.2f ms = %.2fx", init_by_point[{n, big}], init_by_point[{n, small}], r);
      w.measured = buf;
      w.met = r <= 1.2;
      w.known = true;
    }
    res.targets.push_back(w);
  }
  phases.add_note("setup: init() until the first fork (the shared region, host arenas, rendezvous); fork: init() "
                  "until the parent has forked all chips (setup included); comm_init, windows, staging: slowest chip; "
                  "handshake: the rest of init (mailbox wait); each chip stages a 4 KiB input " +
                  std::string(o.inputs == "staged" ? "through Worker::stage_input (in the window file, no copy)"
                                                   : "from host shared memory of its own (copied)"));
  phases.add_note("1st kernel, 2nd kernel: the two run() calls right after init, each an in-place float32 sum "
                  "allreduce (world, algorithm auto) of the rest of the window (window - 4 KiB); the first pays the "
                  "page faults of every window page it touches");
  peers.add_note("init: Worker::init() call until every ChipContext is ready; init+close: the same plus close() "
                 "(after the two kernels, not timed here); fork floor: N fork + waitpid of an "
                 "empty child; MPI init->ready: MPI_Init start to window ready after MPI_Barrier, max over ranks");
  peers.add_note(mpi.note());
  if (mpi.available() || !mpi.version().empty())
    peers.add_note("MPI command: " + mpi.command_line(8, MpiPeer::kBringupProgram, {"1048576"}));
  res.notes.push_back(mpi.note());
  res.tables.push_back(std::move(peers));
  res.tables.push_back(std::move(phases));
  if (parent) {
    parent_mem.add_note("parent: private memory (4 KiB pages) this process wrote before the runs; write after init: "
                        "its next write, after init() and the two kernels, with the chips alive (each page was "
                        "write-protected by the chips' fork: a fault and a copy, which stays while they live); "
                        "write after close: the one after close(); init and fork floor as above, with it mapped");
    res.tables.push_back(std::move(parent_mem));
  }
  res.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return res;
}

}  // namespace chipmesh::bench
