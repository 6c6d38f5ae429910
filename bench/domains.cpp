// `chipmesh bench domains`: Orchestrator::allocate_domain + release_domain
// of a domain over every chip of a Worker (no bring-up communicator), for
// 2..16 chips, median and p99 of each. The Open MPI counterpart
// (MPI_Comm_split + MPI_Win_allocate_shared + MPI_Win_free) is not measured
// yet (a note says so).
#include <cstdio>
#include <variant>

#include "bench.h"
#include "chipmesh/worker.h"

namespace chipmesh::bench {

BenchResult run_domains(const BenchOptions& o) {
  BenchResult res;
  res.name = "domains";
  const auto start = Clock::now();
  const std::vector<int> chips =
      !o.chips.empty() ? o.chips : o.quick ? std::vector<int>{2, 4} : std::vector<int>{2, 4, 8, 16};
  const std::vector<uint64_t> windows = !o.windows.empty() ? o.windows : std::vector<uint64_t>{uint64_t{1} << 20};
  const int repeats = o.repeats > 0 ? o.repeats : o.quick ? 3 : 30;
  say(o.out, "domains: chips {");
  for (int n : chips) say(o.out, " %d", n);
  say(o.out, " }, %d allocate + release per point\n", repeats);
  Table t("domains", "allocate_domain + release_domain over every chip (ms)",
          {{"chips", "chips", 0},
           {"window", "window", 0},
           {"samples", "samples", 0},
           {"allocate_median_ms", "allocate", 3},
           {"allocate_p99_ms", "alloc p99", 3},
           {"release_median_ms", "release", 3},
           {"release_p99_ms", "rel p99", 3},
           {"total_median_ms", "total", 3}});
  try {
    for (int n : chips) {
      WorkerConfig cfg;
      cfg.platform = o.platform;
      std::vector<int> all;
      for (int i = 0; i < n; ++i) cfg.device_ids.push_back(i), all.push_back(i);
      Worker w(std::move(cfg));
      w.init();
      for (uint64_t window : windows) {
        std::vector<double> alloc, rel, total;
        w.run([&](Orchestrator& orch) {
          for (int k = 0; k < repeats + 1; ++k) {  // the first one warms up
            const auto t0 = Clock::now();
            CommDomain d = orch.allocate_domain("bench", all, window);
            const auto t1 = Clock::now();
            orch.release_domain(d);
            const auto t2 = Clock::now();
            if (k == 0) continue;
            alloc.push_back(ms_between(t0, t1));
            rel.push_back(ms_between(t1, t2));
            total.push_back(ms_between(t0, t2));
          }
        });
        const Stats a = stats_of(alloc), r = stats_of(rel);
        t.add_row({int64_t{n}, size_label(window), int64_t{repeats}, a.median, a.p99, r.median, r.p99,
                   median_of(total)});
      }
      w.close();
    }
  } catch (const std::exception& e) {
    res.failed = true;
    res.notes.push_back(std::string("chipmesh failed: ") + e.what());
  }
  {
    Target tg;
    tg.name = "allocate_domain + release_domain, largest chip count measured";
    const auto& rows = t.rows();
    char buf[96] = "not measured";
    if (!rows.empty())
      std::snprintf(buf, sizeof buf, "%.2f ms (%lld chips)", std::get<double>(rows.back().back()),
                    static_cast<long long>(std::get<int64_t>(rows.back().front())));
    tg.measured = buf;
    tg.threshold = "<= Open MPI MPI_Comm_split + MPI_Win_allocate_shared + MPI_Win_free";
    tg.known = false;  // the peer is not measured yet
    res.targets.push_back(tg);
  }
  res.notes.push_back(
      "Open MPI peer (MPI_Comm_split + MPI_Win_allocate_shared + MPI_Win_free) not measured yet");
  res.tables.push_back(std::move(t));
  res.seconds = ms_between(start, Clock::now()) / 1000.0;
  return res;
}

}  // namespace chipmesh::bench
