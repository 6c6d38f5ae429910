#include "demo.h"

#include <sys/mman.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "chipmesh/collectives.h"
#include "chipmesh/errors.h"
#include "chipmesh/shared_memory.h"
#include "chipmesh/types.h"
#include "chipmesh/worker.h"
#include "demo_report.h"
#include "demo_values.h"
#include "knobs/knobs.h"
#include "logging/log.h"

namespace chipmesh::cli {

namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kDtypes[] = {"float32", "float16", "bfloat16", "int32", nullptr};
// The demo's choices: names of chipmesh/collectives.h the built-in kernel has.
constexpr const char* kModes[] = {"onephase", "twophase", "ring", "auto", nullptr};
constexpr const char* kOps[] = {"sum", "max", "min", nullptr};
constexpr uint64_t kPage = 4096;
// Per-rank kernel scratch the sim platform adds to each window: its default
// is 64 KiB (CHIPMESH_SIM_WORKSPACE_BYTES); 1 MiB leaves room for a raised one.
constexpr uint64_t kWorkspaceAllowance = 1 << 20;

int index_of(const char* const* list, const std::string& v) {
  for (int i = 0; list[i]; ++i)
    if (v == list[i]) return i;
  return -1;
}

std::string joined(const char* const* list) {
  std::string s;
  for (int i = 0; list[i]; ++i) s += std::string(i ? ", " : "") + list[i];
  return s;
}

// Fails early, with a clear message, when /dev/shm cannot hold the run
// (touching a tmpfs page beyond its size would raise SIGBUS instead).
void check_shm_space(const DemoOptions& o) {
  struct statvfs vfs;
  if (::statvfs("/dev/shm", &vfs) != 0) return;
  const double avail = static_cast<double>(vfs.f_bavail) * static_cast<double>(vfs.f_frsize);
  // Per chip a window of 2 * bytes (+ page, scratch); the staging is the
  // Worker's unnamed memory, not /dev/shm's.
  const double need = static_cast<double>(o.chips) *
                      (2.0 * static_cast<double>(o.bytes) + static_cast<double>(kPage + kWorkspaceAllowance));
  if (need > avail) {
    char msg[256];
    std::snprintf(msg, sizeof msg,
                  "%d chips x %llu bytes need about %.0f MiB of /dev/shm, only %.0f MiB are available",
                  o.chips, static_cast<unsigned long long>(o.bytes), need / (1 << 20), avail / (1 << 20));
    throw ConfigError(msg);
  }
}

double median_of_sorted(const std::vector<double>& v) {
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

uint64_t buffer_addr(const ChipContext& ctx, int chip, const std::string& name) {
  auto it = ctx.buffer_ptrs.find(name);
  if (it == ctx.buffer_ptrs.end())
    throw InternalError("chip " + std::to_string(chip) + " reported no '" + name + "' buffer");
  return it->second;
}

void run_steps(const DemoOptions& o, DemoReport& rep) {
  const DataType dtype = dtype_from_name(o.dtype);
  const uint64_t count = o.bytes / dtype_size(dtype);
  const ReduceOp op = parse_reduce_op(o.op);
  // Across hosts the inputs depend on the global rank, known once the
  // Worker joined: they are copied in after init() instead of staged.
  const bool cluster = rep.cluster;
  std::optional<DemoPattern> pattern;
  if (!cluster) pattern.emplace(o.chips, op);
  check_shm_space(o);
  // One random job token, unless the caller set one, so that the chips only
  // ever join this run's rootinfo.
  knobs::ensure_job_token("demo");

  // An empty rootinfo_path: the chips meet in the Worker's shared memory
  // (or, with CHIPMESH_RENDEZVOUS_DIR set, in a private directory there
  // that the Worker, or its chips should it die first, removes). Nothing of
  // the run is named before init().
  const std::string rootinfo;

  WorkerConfig cfg;
  for (int r = 0; r < o.chips; ++r) {
    cfg.device_ids.push_back(r);
    ChipBootstrapConfig chip;
    // Two buffers plus a page of slack; the platform may round it up.
    chip.comm = ChipCommBootstrapConfig{r, o.chips, rootinfo, static_cast<size_t>(2 * o.bytes + kPage)};
    ChipBufferSpec input;
    input.name = "input";
    input.dtype = dtype;
    input.count = count;
    input.nbytes = o.bytes;
    input.load_from_host = !cluster;
    ChipBufferSpec output = input;
    output.name = "output";
    output.load_from_host = false;
    output.store_to_host = true;
    chip.buffers = {input, output};
    cfg.chip_bootstrap_configs.push_back(std::move(chip));
  }
  cfg.platform = o.platform;
  if (cluster) cfg.cluster = "mpi";

  Worker worker(std::move(cfg));
  // Host staging, owned by the Worker and unnamed, so no kill of any process
  // leaves it: inputs filled with the closed-form values, outputs zero.
  std::vector<SharedMemory*> outputs;
  for (int r = 0; r < o.chips; ++r) {
    // In a cluster the inputs depend on the global chip number, known after
    // init(): they are copied in then (below), not staged.
    if (!cluster) {
      void* data = worker.stage_input(r, "input", o.bytes).data();
      for (uint64_t i = 0; i < count; ++i) store_element(dtype, data, i, pattern->input(r, i));
    }
    outputs.push_back(&worker.stage_output(r, "output", o.bytes));
  }
  knobs::test_pause_point("host_staging");
  const auto t0 = Clock::now();
  worker.init();
  const auto t1 = Clock::now();

  rep.phases_ms = worker.bringup_phases_ms();
  if (auto it = rep.phases_ms.find("total"); it != rep.phases_ms.end())
    rep.bringup_ms = it->second;
  else
    rep.bringup_ms = std::chrono::duration<double, std::milli>(t1 - t0).count();

  const auto& contexts = worker.chip_contexts();
  if (cluster) {
    rep.hosts = worker.num_hosts();
    rep.host_rank = worker.host_rank();
    rep.chips = static_cast<int>(worker.num_global_chips());
    if (rep.chips > kDemoMaxChips)
      throw ConfigError("--chips " + std::to_string(o.chips) + " on " + std::to_string(rep.hosts) + " hosts makes " +
                        std::to_string(rep.chips) + " chips; the demo's values are exact for at most " +
                        std::to_string(kDemoMaxChips) + " in all");
    pattern.emplace(rep.chips, op);
    std::vector<unsigned char> data(o.bytes);
    for (int c = 0; c < o.chips; ++c) {
      for (uint64_t i = 0; i < count; ++i) store_element(dtype, data.data(), i, pattern->input(worker.global_chip(c), i));
      worker.copy_to(c, buffer_addr(contexts.at(static_cast<size_t>(c)), c, "input"), data.data(), o.bytes);
    }
  }
  std::vector<int> chips;
  std::vector<Task> tasks;
  for (int c = 0; c < o.chips; ++c) {
    const ChipContext& ctx = contexts.at(static_cast<size_t>(c));
    chips.push_back(c);
    tasks.push_back(allreduce_task(buffer_addr(ctx, c, "input"), buffer_addr(ctx, c, "output"), count, dtype, op,
                                   parse_allreduce_algo(o.mode), static_cast<uint32_t>(o.chips)));
    // The output flush is its own request (flush_outputs), timed apart.
    tasks.back().flush_outputs = false;
  }
  // Across hosts: the hierarchical allreduce over world(), which returns
  // done (and flushed) on every host; its time includes the flush.
  auto one_call = [&](Orchestrator& orch) {
    if (cluster)
      orch.allreduce(worker.world(), "input", "output", count, dtype, op, parse_allreduce_algo(o.mode));
    else
      orch.submit_group(chips, tasks);
  };
  auto allreduce = [&] { worker.run(one_call); };
  auto flush = [&] { worker.run([&](Orchestrator& orch) { orch.flush_outputs(chips); }); };
  auto us_since = [](Clock::time_point a) { return std::chrono::duration<double, std::micro>(Clock::now() - a).count(); };

  allreduce();  // warm-up: first-touch, kernel library load
  flush();      // and the staging pages
  std::vector<double> us, flush_us;
  for (int k = 0; k < o.iters; ++k) {
    auto a = Clock::now();
    allreduce();
    us.push_back(us_since(a));
    a = Clock::now();
    flush();
    flush_us.push_back(us_since(a));
  }
  std::sort(us.begin(), us.end());
  const size_t n = us.size();
  rep.allreduce_us = median_of_sorted(us);
  rep.allreduce_us_min = us.front();
  rep.allreduce_us_mean = std::accumulate(us.begin(), us.end(), 0.0) / static_cast<double>(n);
  std::sort(flush_us.begin(), flush_us.end());
  rep.flush_us = median_of_sorted(flush_us);

  if (cluster) {
    // The inter-host step alone, as often: its share of the allreduce.
    std::vector<unsigned char> scratch(o.bytes);
    std::vector<double> inter;
    worker.host_allreduce(scratch.data(), count, dtype, op);  // warm-up
    for (int k = 0; k < o.iters; ++k) {
      const auto a = Clock::now();
      worker.host_allreduce(scratch.data(), count, dtype, op);
      inter.push_back(us_since(a));
    }
    std::sort(inter.begin(), inter.end());
    rep.inter_host_us = median_of_sorted(inter);
  }

  // Back to back: all K calls in one run(), as nccl-tests times them.
  const auto s0 = Clock::now();
  worker.run([&](Orchestrator& orch) {
    for (int k = 0; k < o.iters; ++k) one_call(orch);
  });
  rep.allreduce_stream_us = us_since(s0) / o.iters;

  // The check reads what the last flush brings: the staging is overwritten
  // first with a value no result can have (|result| <= 256 in every dtype),
  // so a flush that did not happen shows as wrong elements.
  for (SharedMemory* out : outputs) std::memset(out->data(), 0x7f, o.bytes);
  flush();

  // Every chip's output, as the last flush left it in its staging.
  double max_err = 0;
  for (int r = 0; r < o.chips; ++r) {
    const void* data = outputs[static_cast<size_t>(r)]->data();
    for (uint64_t i = 0; i < count; ++i) {
      const double got = load_element(dtype, data, i);
      const double want = static_cast<double>(pattern->expected(i));
      const double err = std::isnan(got) ? INFINITY : std::fabs(got - want);
      if (err == 0) continue;
      max_err = std::max(max_err, err);
      if (rep.wrong_elements++ == 0) {
        char buf[160];
        std::snprintf(buf, sizeof buf, "rank %d element %llu: got %g, expected %g", worker.global_chip(r),
                      static_cast<unsigned long long>(i), got, want);
        rep.first_wrong = buf;
      }
    }
  }
  rep.max_abs_error = max_err;
  if (cluster) {
    // Host 0 reports for every host: the counts of all of them.
    if (rep.wrong_elements)
      std::fprintf(stderr, "chipmesh demo: host %d: %llu wrong elements; first: %s\n", rep.host_rank,
                   static_cast<unsigned long long>(rep.wrong_elements), rep.first_wrong.c_str());
    int64_t wrong = static_cast<int64_t>(rep.wrong_elements);
    worker.host_allreduce(&wrong, 1, DataType::INT64, ReduceOp::SUM);
    worker.host_allreduce(&max_err, 1, DataType::FLOAT64, ReduceOp::MAX);
    if (wrong && !rep.wrong_elements) rep.first_wrong = "on another host (its stderr names it)";
    rep.wrong_elements = static_cast<uint64_t>(wrong);
    rep.max_abs_error = max_err;
  }

  worker.close();
}

}  // namespace

const char* const* demo_dtypes() { return kDtypes; }
const char* const* demo_modes() { return kModes; }
const char* const* demo_ops() { return kOps; }

std::string validate_demo_options(const DemoOptions& o) {
  if (o.chips < 1 || o.chips > kDemoMaxChips)
    return "--chips must be in 1.." + std::to_string(kDemoMaxChips) + ", got " + std::to_string(o.chips);
  if (index_of(kDtypes, o.dtype) < 0) return "--dtype must be one of " + joined(kDtypes) + ", got '" + o.dtype + "'";
  if (index_of(kModes, o.mode) < 0) return "--mode must be one of " + joined(kModes) + ", got '" + o.mode + "'";
  if (index_of(kOps, o.op) < 0) return "--op must be one of " + joined(kOps) + ", got '" + o.op + "'";
  if (o.platform.empty()) return "--platform must not be empty";
  if (o.iters < 1 || o.iters > 100000) return "--iters must be in 1..100000, got " + std::to_string(o.iters);
  const uint64_t size = dtype_size(dtype_from_name(o.dtype));
  if (o.bytes == 0 || o.bytes % size != 0)
    return "--bytes must be a positive multiple of the " + o.dtype + " element size (" + std::to_string(size) +
           "), got " + std::to_string(o.bytes);
  if (o.bytes > kDemoMaxBytes)
    return "--bytes must be at most " + std::to_string(kDemoMaxBytes) + ", got " + std::to_string(o.bytes);
  return "";
}

int run_demo(const DemoOptions& o) {
  if (std::string why = validate_demo_options(o); !why.empty()) {
    std::fprintf(stderr, "chipmesh demo: %s\n", why.c_str());
    return 2;
  }
  DemoReport rep;
  rep.chips = o.chips;
  rep.bytes = o.bytes;
  rep.elements = o.bytes / dtype_size(dtype_from_name(o.dtype));
  rep.dtype = o.dtype;
  rep.mode = o.mode;
  rep.op = o.op;
  rep.platform = o.platform;
  rep.iterations = o.iters;
  rep.cluster = !o.cluster.empty() || knobs::is_set(knobs::Id::Cluster);
  // AUTO by the bytes per chip and the chips, as the tasks below resolve it
  // (across hosts the hierarchical allreduce picks per level).
  if (parse_allreduce_algo(o.mode) == AllreduceAlgo::AUTO && !rep.cluster)
    rep.chosen_mode = std::string(allreduce_kernel::mode_name(
        allreduce_kernel::mode(AllreduceAlgo::AUTO, o.bytes, static_cast<uint64_t>(o.chips))));

  try {
    run_steps(o, rep);
  } catch (const Error& e) {
    rep.error = describe(e);
  } catch (const std::exception& e) {
    rep.error = e.what();
  }
  rep.ok = rep.error.empty() && rep.max_abs_error && rep.wrong_elements == 0;

  // The error goes to stderr; the report (text or JSON) to stdout.
  if (!rep.error.empty()) {
    CHIPMESH_WARN(CLI, "chipmesh demo failed: %s", rep.error.c_str());
    std::fprintf(stderr, "chipmesh demo: %s\n", rep.error.c_str());
  }
  std::fflush(stderr);
  // Across hosts only host 0 reports; the others print nothing but errors.
  if (rep.host_rank != 0) return rep.ok ? 0 : 1;
  if (o.json)
    print_demo_json(rep, stdout);
  else
    print_demo_text(rep, stdout);
  std::fflush(stdout);
  return rep.ok ? 0 : 1;
}

}  // namespace chipmesh::cli
