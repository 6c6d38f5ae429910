// run_bench: runs the chosen benchmarks, prints their tables and the targets
// of issue 4, and writes everything as one JSON document.
#include <cstdlib>
#include <fstream>
#include <thread>

#include "bench.h"

namespace chipmesh::bench {

namespace {

const char* const kAll[] = {"bringup",        "dispatch",  "copy",   "allreduce", "allgather",
                            "reduce_scatter", "broadcast", "reduce", "alltoall", "domains"};

BenchResult run_one(const std::string& what, const BenchOptions& o) {
  if (what == "bringup") return run_bringup(o);
  if (what == "dispatch") return run_dispatch(o);
  if (what == "copy") return run_copy(o);
  if (what == "allreduce") return run_allreduce(o);
  if (what == "domains") return run_domains(o);
  return run_collective(o, what);
}

}  // namespace

bool write_json(const std::string& path, const nlohmann::json& j, std::FILE* out) {
  std::ofstream f(path, std::ios::trunc);
  f << j.dump(2) << "\n";
  f.close();
  if (!f) {
    say(out, "bench: cannot write %s\n", path.c_str());
    return false;
  }
  return true;
}

nlohmann::json results_json(const BenchOptions& o, const std::vector<BenchResult>& results) {
  nlohmann::json j;
  j["format"] = "chipmesh-bench-1";
  j["machine"] = machine_description();
  j["options"] = {{"what", o.what}, {"quick", o.quick}, {"no_mpi", o.no_mpi}, {"platform", o.platform}};
  j["benchmarks"] = nlohmann::json::array();
  for (const auto& r : results) j["benchmarks"].push_back(r.to_json());
  return j;
}

int run_bench(const BenchOptions& o) {
  std::vector<std::string> list;
  if (o.what == "all") {
    list.assign(std::begin(kAll), std::end(kAll));
  } else {
    for (const char* k : kAll)
      if (o.what == k) list.push_back(k);
    if (list.empty()) {
      say(o.out, "bench: unknown benchmark '%s' (bringup, dispatch, copy, allreduce, allgather, reduce_scatter, "
                 "broadcast, reduce, alltoall, domains, all)\n", o.what.c_str());
      return 2;
    }
  }
  const double load_before = load_average();
  say(o.out, "chipmesh bench %s%s: load average %.2f, %u cores\n", o.what.c_str(), o.quick ? " --quick" : "",
      load_before, std::thread::hardware_concurrency());
  std::vector<BenchResult> results;
  bool json_ok = true;
  for (const auto& what : list) {
    const double before = load_average();
    ForeignCpu foreign;
    results.push_back(run_one(what, o));
    BenchResult& r = results.back();
    r.load_before = before;
    r.load_after = load_average();
    r.foreign_cpu = foreign.share();
    r.steal = foreign.steal_share();
    for (const auto& t : r.tables) t.print(o.out);
    for (const auto& n : r.notes) say(o.out, "# %s\n", n.c_str());
    say(o.out,
        "# %s: %.1f s; load average %.2f before, %.2f after; other processes used %.0f%% of the cores, "
        "hypervisor steal %.0f%%\n\n",
        r.name.c_str(), r.seconds, r.load_before, r.load_after, 100 * r.foreign_cpu, 100 * r.steal);
    // Written after every benchmark: a later failure keeps what was measured.
    if (!o.json_path.empty()) json_ok = write_json(o.json_path, results_json(o, results), o.out);
  }

  say(o.out, "\n# Targets (issues 4 and 10)\n");
  for (const auto& r : results)
    for (const auto& t : r.targets)
      say(o.out, "  [%s] %s: %s (target %s)\n", !t.known ? " n/a  " : t.met ? " met  " : "missed", t.name.c_str(),
          t.measured.c_str(), t.threshold.c_str());
  int64_t wrong = 0;
  bool failed = false;
  for (const auto& r : results) wrong += r.wrong, failed = failed || r.failed;
  say(o.out, "\n# load average %.2f before, %.2f after; #wrong total %lld%s\n", load_before, load_average(),
      static_cast<long long>(wrong), failed ? "; a benchmark FAILED (see above)" : "");
  if (!o.json_path.empty() && json_ok) say(o.out, "# JSON: %s\n", o.json_path.c_str());
  return (wrong != 0 || failed || !json_ok) ? 1 : 0;
}

}  // namespace chipmesh::bench
