// `chipmesh bench copy`: Worker::copy_to / copy_from and load_from_host
// staging bandwidth for 4 KiB .. 256 MiB, side by side with memcpy of the
// same size in one process, alternating runs.
#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <new>

#include "bench.h"
#include "chipmesh/collectives.h"
#include "chipmesh/shared_memory.h"
#include "chipmesh/worker.h"

namespace chipmesh::bench {

namespace {

// Host buffers, touched once so no sample pays first-touch page faults, and
// page aligned (64-byte alignment, as numpy's and device staging buffers
// have, is what matters): memcpy and the copies compare at the same relative
// alignment (with malloc's 16-byte offset, copies into or out of
// page-aligned device memory paid memcpy's own misalignment cost: copy_from
// at 64 KiB 0.82-0.85x memcpy). Left out of every fork (MADV_DONTFORK): the
// chips of this bench's Workers never read them, and a fork that shared them
// copy-on-write made the parent's next write to every page a fault, memcpy's
// included (256 MiB: 0.6 GB/s on the PVM AMD EPYC of docs/PERFORMANCE.md).
class HostBuffer {
 public:
  explicit HostBuffer(size_t n) : bytes_(n > 0 ? n : 1) {
    void* m = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) throw std::bad_alloc();
    p_ = static_cast<unsigned char*>(m);
    madvise(m, bytes_, MADV_DONTFORK);
    for (size_t i = 0; i < n; ++i) p_[i] = static_cast<unsigned char>(i * 31 + 7);
  }
  ~HostBuffer() { munmap(p_, bytes_); }
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;
  unsigned char* get() const { return p_; }

 private:
  unsigned char* p_ = nullptr;
  size_t bytes_;  // mapped (a page even for 0)
};

double time_us(const std::function<void()>& f) {
  const auto t0 = Clock::now();
  f();
  return us_between(t0, Clock::now());
}

// `chips` chips in one communicator, each with one uint8 buffer of `size`
// bytes in its window, loaded from the host (`input`) or stored to it.
WorkerConfig chips_with(const BenchOptions& o, TempDir& tmp, const char* buffer, size_t size, bool input,
                        int chips = 1) {
  WorkerConfig cfg;
  cfg.platform = o.platform;
  const std::string rootinfo = tmp.fresh("rootinfo");
  for (int r = 0; r < chips; ++r) {
    cfg.device_ids.push_back(r);
    ChipBootstrapConfig c;
    c.comm = ChipCommBootstrapConfig{r, chips, rootinfo, size + 4096};
    ChipBufferSpec b;
    b.name = buffer;
    b.dtype = DataType::UINT8;
    b.count = size;
    b.nbytes = size;
    b.load_from_host = input;
    b.store_to_host = !input;
    c.buffers = {b};
    cfg.chip_bootstrap_configs.push_back(c);
  }
  return cfg;
}

// Staging sample: bring up one chip whose `input` buffer (size bytes) is
// loaded from host memory, and time its staging phase as measured in the
// chip. in_window: staged with Worker::stage_input, which places the input
// in the chip's window file when the platform adopts window files (sim
// does), so bring-up finds it in place; `write_us` gets the user's side,
// stage_input plus the one copy into it (page allocation included).
// Otherwise: an object of the caller's own (SharedMemory::create), which
// the chip attaches and copies into the window at bring-up. The result is
// read back and checked (`wrong`).
double staging_ms(const BenchOptions& o, size_t size, TempDir& tmp, const unsigned char* data, bool in_window,
                  double* write_us, bool* wrong) {
  SharedMemory own;
  struct Unlink {
    SharedMemory& s;
    ~Unlink() { s.unlink(); }
  } guard{own};
  WorkerConfig cfg = chips_with(o, tmp, "input", size, true);
  if (!in_window) {
    own = SharedMemory::create(staging_name("copy"), size);
    std::memcpy(own.data(), data, size);
    cfg.chip_bootstrap_configs[0].host_inputs = {HostBufferStaging{"input", own.name(), size}};
  }
  Worker w(std::move(cfg));
  if (in_window) {
    const auto t0 = Clock::now();
    SharedMemory& in = w.stage_input(0, "input", size);
    std::memcpy(in.data(), data, size);
    *write_us = us_between(t0, Clock::now());
  }
  w.init();
  own.unlink();
  auto ph = w.bringup_phases_ms();
  HostBuffer back(size);
  w.copy_from(0, back.get(), w.chip_contexts()[0].buffer_ptrs.at("input"), size);
  *wrong = std::memcmp(back.get(), data, size) != 0;
  w.close();
  return ph["staging"];
}

// The largest size of the two-chip flush.
constexpr size_t kFlush2Max = size_t{16} << 20;

// Flush samples: `chips` chips, each with an `out` buffer (size bytes)
// store_to_host into Worker::stage_output staging. Before each sample the
// chips write `out` themselves, as a kernel would (an allreduce of their
// `src`, which holds `data`, into `out`, without its flush), and the parent
// clears the stagings; each sample is then one run() of
// Orchestrator::flush_outputs on every chip, submit to done: the chips' one
// copy each into their staging plus the request's round trip. The stagings
// are checked against `chips` times `data` (uint8 sums wrap) (`wrong`).
std::vector<double> flush_us(const BenchOptions& o, size_t size, TempDir& tmp, const unsigned char* data, int reps,
                             int chips, bool* wrong) {
  WorkerConfig cfg = chips_with(o, tmp, "out", size, false, chips);
  for (ChipBootstrapConfig& c : cfg.chip_bootstrap_configs) {
    c.comm->window_size += size;
    ChipBufferSpec src = c.buffers[0];
    src.name = "src";
    src.store_to_host = false;
    c.buffers.push_back(src);
  }
  Worker w(std::move(cfg));
  std::vector<SharedMemory*> outs;
  std::vector<int> all;
  for (int c = 0; c < chips; ++c) {
    outs.push_back(&w.stage_output(c, "out", size));
    all.push_back(c);
  }
  w.init();
  std::vector<Task> writes;
  for (int c = 0; c < chips; ++c) {
    const auto& ptrs = w.chip_contexts()[static_cast<size_t>(c)].buffer_ptrs;
    w.copy_to(c, ptrs.at("src"), data, size);
    writes.push_back(allreduce_task(ptrs.at("src"), ptrs.at("out"), size, DataType::UINT8, ReduceOp::SUM,
                                    AllreduceAlgo::AUTO, static_cast<uint32_t>(chips)));
    writes.back().flush_outputs = false;
  }
  std::vector<double> us;
  for (int r = -1; r < reps; ++r) {  // r = -1: warm (the stagings' first touch)
    w.run([&](Orchestrator& orch) { orch.submit_group(all, writes); });
    for (SharedMemory* out : outs) std::memset(out->data(), 0, size);
    const double t = time_us([&] { w.run([&](Orchestrator& orch) { orch.flush_outputs(all); }); });
    if (r >= 0) us.push_back(t);
  }
  *wrong = false;
  for (SharedMemory* out : outs) {
    const auto* got = static_cast<const unsigned char*>(out->data());
    for (size_t i = 0; i < size && !*wrong; ++i) *wrong = got[i] != static_cast<unsigned char>(data[i] * chips);
  }
  w.close();
  return us;
}

}  // namespace

BenchResult run_copy(const BenchOptions& o) {
  BenchResult res;
  res.name = "copy";
  const auto start = Clock::now();
  const uint64_t lo = o.min_bytes ? o.min_bytes : 4096;
  const uint64_t hi = o.max_bytes ? o.max_bytes : o.quick ? (uint64_t{1} << 20) : (uint64_t{256} << 20);
  if (lo > hi)
    throw ConfigError("copy: --max-bytes " + size_label(hi) + " is below the smallest size, " +
                      size_label(lo) + (o.min_bytes ? " (--min-bytes)" : " (the default --min-bytes)"));
  std::vector<size_t> sizes;
  for (uint64_t s = lo; s <= hi; s *= 4) sizes.push_back(s);
  if (!sizes.empty() && sizes.back() != hi) sizes.push_back(hi);
  say(o.out, "copy: %s .. %s (x4), 1 chip\n", size_label(lo).c_str(), size_label(hi).c_str());

  Table t("copy", "copy bandwidth (GB/s = 1e9 B/s; median; ratio = chipmesh / memcpy)",
          {{"size_bytes", "size(B)", 0},
           {"memcpy_gbps", "memcpy", 2},
           {"copy_to_gbps", "copy_to", 2},
           {"copy_to_ratio", "x memcpy", 2},
           {"copy_from_gbps", "copy_from", 2},
           {"copy_from_ratio", "x memcpy", 2},
           {"staging_gbps", "staging", 2},
           {"staging_ratio", "x memcpy", 2},
           {"own_staging_gbps", "own obj", 2},
           {"own_staging_ratio", "x memcpy", 2},
           {"flush_gbps", "flush", 2},
           {"flush_ratio", "x memcpy", 2},
           {"flush2_gbps", "flush x2", 2},
           {"flush2_ratio", "x memcpy", 2},
           {"memcpy_us", "memcpy(us)", 1},
           {"copy_to_us", "copy_to(us)", 1},
           {"copy_from_us", "copy_from(us)", 1},
           {"staging_us", "staging(us)", 1},
           {"stage_write_us", "stage+write(us)", 1},
           {"own_staging_us", "own obj(us)", 1},
           {"flush_us", "flush(us)", 1},
           {"flush2_us", "flush x2(us)", 1}});
  double worst_to = 1e9, worst_from = 1e9, worst_staging = 1e9, worst_flush = 1e9;
  std::string worst_to_at, worst_from_at, worst_staging_at, worst_flush_at;
  try {
    TempDir tmp;
    const size_t max = sizes.back();
    HostBuffer src(max), dst(max), peer(max);
    WorkerConfig cfg;
    cfg.platform = o.platform;
    cfg.device_ids = {0};
    Worker w(std::move(cfg));
    w.init();
    const uint64_t dev = w.malloc(0, max);
    w.copy_to(0, dev, src.get(), max);  // first touch of the device memory
    for (size_t size : sizes) {
      const int reps = o.quick ? 3 : static_cast<int>(std::clamp<size_t>((size_t{2} << 30) / size, 7, 301));
      const int staging_reps = o.quick ? 1 : size >= (size_t{64} << 20) ? 3 : 7;
      std::vector<double> mc, to, from, st, sw, so;
      w.copy_to(0, dev, src.get(), size);  // warm
      w.copy_from(0, dst.get(), dev, size);
      for (int r = 0; r < reps; ++r) {
        mc.push_back(time_us([&] { std::memcpy(peer.get(), src.get(), size); }));
        to.push_back(time_us([&] { w.copy_to(0, dev, src.get(), size); }));
        from.push_back(time_us([&] { w.copy_from(0, dst.get(), dev, size); }));
        if (r < staging_reps) {
          double write_us = 0, unused = 0;
          bool bad_in = false, bad_own = false;
          st.push_back(staging_ms(o, size, tmp, src.get(), true, &write_us, &bad_in) * 1e3);
          sw.push_back(write_us);
          so.push_back(staging_ms(o, size, tmp, src.get(), false, &unused, &bad_own) * 1e3);
          if (bad_in || bad_own) {
            res.wrong += 1;
            res.notes.push_back("load_from_host (" + std::string(bad_in ? "stage_input" : "own object") +
                                ") brought different bytes at " + size_label(size));
          }
        }
      }
      if (std::memcmp(dst.get(), src.get(), size) != 0) {
        res.wrong += 1;
        res.notes.push_back("copy_from returned different bytes than copy_to wrote at " + size_label(size));
      }
      const double m = median_of(mc), a = median_of(to), b = median_of(from), s = median_of(st);
      const double s_own = median_of(so), s_write = median_of(sw);
      bool bad_flush = false, bad_flush2 = false;
      const double f = median_of(flush_us(o, size, tmp, src.get(), staging_reps, 1, &bad_flush));
      // Past 16 MiB both chips stream either way; the windows and stagings
      // of two chips would only press on /dev/shm.
      const bool two = size <= kFlush2Max;
      const double f2 =
          two ? median_of(flush_us(o, size, tmp, src.get(), staging_reps, 2, &bad_flush2)) : std::nan("");
      if (bad_flush || bad_flush2) {
        res.wrong += 1;
        res.notes.push_back(std::string("store_to_host flushed different bytes") + (bad_flush2 ? " (2 chips)" : "") +
                            " at " + size_label(size));
      }
      const double gf = gbps(size, f), gf2 = gbps(2 * size, f2);
      const double g = gbps(size, m), ga = gbps(size, a), gb = gbps(size, b), gs = gbps(size, s);
      const double g_own = gbps(size, s_own);
      const Cell none{};
      t.add_row({static_cast<int64_t>(size), g, ga, ga / g, gb, gb / g, gs, gs / g, g_own, g_own / g, gf, gf / g,
                 two ? Cell{gf2} : none, two ? Cell{gf2 / g} : none, m, a, b, s, s_write, s_own, f,
                 two ? Cell{f2} : none});
      say(o.out,
          "  %8s: memcpy %6.2f GB/s, copy_to %6.2f, copy_from %6.2f, staging %6.2f (own object %6.2f), flush %6.2f, "
          "2 chips %6.2f\n",
          size_label(size).c_str(), g, ga, gb, gs, g_own, gf, gf2);
      if (size >= (size_t{1} << 20) && gf / g < worst_flush) worst_flush = gf / g, worst_flush_at = size_label(size);
      // Issue 10: copies from 64 KiB on; staging (issue 4) from 1 MiB on.
      if (size >= (size_t{64} << 10)) {
        if (ga / g < worst_to) worst_to = ga / g, worst_to_at = size_label(size);
        if (gb / g < worst_from) worst_from = gb / g, worst_from_at = size_label(size);
      }
      if (size >= (size_t{1} << 20) && gs / g < worst_staging) worst_staging = gs / g, worst_staging_at = size_label(size);
    }
    w.free(0, dev);
    w.close();
  } catch (const std::exception& e) {
    res.failed = true;
    res.notes.push_back(std::string("chipmesh failed: ") + e.what());
    say(o.out, "copy: FAILED: %s\n", e.what());
  }
  t.add_note("copy_to / copy_from: Worker calls on one chip, into memory from Worker::malloc (one memcpy into the "
             "chip's host arena when the platform offers one, else 256 KiB chunks through the request ring; "
             "CHIPMESH_HOST_ARENA_BYTES=0 forces the ring); "
             "staging: load_from_host at bring-up, the chip's staging phase, of an input staged with "
             "Worker::stage_input (in the chip's window file when the platform adopts one: nothing left to copy); "
             "stage+write: stage_input and the user's one copy into it, page allocation included; own obj: an "
             "input in an object of the caller's own (SharedMemory::create), copied into the window at bring-up; "
             "every staged input read back and checked; flush: store_to_host of a buffer into Worker::stage_output "
             "staging after the chip wrote the buffer, one run() of Orchestrator::flush_outputs (the chip's one copy "
             "and the request's round trip), "
             "checked; flush x2: the same on 2 chips at once, GB/s of both buffers together (up to 16 MiB); memcpy: "
             "one process, warm buffers");
  res.tables.push_back(std::move(t));
  auto target = [&](const char* what, const char* from, double worst, const std::string& at) {
    Target tg{std::string(what) + " >= " + from, std::string("not measured (no size >= ") + from + ")",
              ">= 90% of memcpy", false, false};
    if (!at.empty()) {
      char buf[128];
      std::snprintf(buf, sizeof buf, "worst %.0f%% of memcpy (at %s)", worst * 100, at.c_str());
      tg.measured = buf;
      tg.met = worst >= 0.9;
      tg.known = true;
    }
    res.targets.push_back(tg);
  };
  target("copy_to", "64 KiB", worst_to, worst_to_at);
  target("copy_from", "64 KiB", worst_from, worst_from_at);
  target("load_from_host staging", "1 MiB", worst_staging, worst_staging_at);
  target("store_to_host flush", "1 MiB", worst_flush, worst_flush_at);
  res.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return res;
}

}  // namespace chipmesh::bench
