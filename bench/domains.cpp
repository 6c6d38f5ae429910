// `chipmesh bench domains`: Orchestrator::allocate_domain + release_domain
// of a domain over every chip of a Worker (no bring-up communicator), for
// 2..16 chips, median and p99 of each, next to the Open MPI counterpart in
// the same invocation (bench/mpi/mpi_domains.c: MPI_Comm_split +
// MPI_Win_allocate_shared, then MPI_Win_free + MPI_Comm_free, on as many
// ranks as chips).
#include <cstdio>
#include <sstream>
#include <variant>

#include "bench.h"
#include "mpi_peer.h"
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
           {"total_median_ms", "total", 3},
           {"mpi_allocate_median_ms", "MPI alloc", 3},
           {"mpi_release_median_ms", "MPI rel", 3},
           {"mpi_total_median_ms", "MPI total", 3},
           {"ratio_mpi", "x MPI", 2}});
  MpiPeer mpi(o);
  double worst_ratio = -1;
  int worst_at = 0;
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
        // The peer on as many ranks, after chipmesh's runs (never both at once).
        Cell ma, mr, mt, ratio;
        if (mpi.available()) {
          say(o.out, "  %d ranks: Open MPI\n", n);
          ProcessResult pr = mpi.run(n, MpiPeer::kDomainsProgram,
                                     {std::to_string(window) + ":" + std::to_string(repeats)}, o.quick ? 120.0 : 400.0);
          std::istringstream in(pr.ok() ? pr.out : std::string());
          std::string word;
          unsigned long long bytes = 0;
          std::vector<double> pa, pr_ms, pt;
          if (in >> bytes >> word && word == "alloc") {
            for (double v; in >> v;) pa.push_back(v);
            in.clear();
            if (in >> word && word == "release")
              for (double v; in >> v;) pr_ms.push_back(v);
          }
          if (!pa.empty() && pa.size() == pr_ms.size()) {
            for (size_t k = 0; k < pa.size(); ++k) pt.push_back(pa[k] + pr_ms[k]);
            ma = median_of(pa), mr = median_of(pr_ms), mt = median_of(pt);
            const double ratio_v = median_of(total) / median_of(pt);
            ratio = ratio_v;
            if (ratio_v > worst_ratio) worst_ratio = ratio_v, worst_at = n;
          }
        }
        t.add_row({int64_t{n}, size_label(window), int64_t{repeats}, a.median, a.p99, r.median, r.p99,
                   median_of(total), ma, mr, mt, ratio});
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
      std::snprintf(buf, sizeof buf, "%.2f ms (%lld chips)", std::get<double>(rows.back()[7]) /* total */,
                    static_cast<long long>(std::get<int64_t>(rows.back().front())));
    tg.measured = buf;
    if (worst_ratio > 0) {
      char more[96];
      std::snprintf(more, sizeof more, "; worst %.2fx Open MPI (%d chips)", worst_ratio, worst_at);
      tg.measured += more;
    }
    tg.threshold = "<= Open MPI MPI_Comm_split + MPI_Win_allocate_shared + MPI_Win_free";
    tg.known = worst_ratio > 0;
    tg.met = tg.known && worst_ratio <= 1.0;
    res.targets.push_back(tg);
  }
  res.notes.push_back(mpi.note());
  res.notes.push_back("MPI alloc: MPI_Comm_split + MPI_Win_allocate_shared, MPI rel: MPI_Win_free + MPI_Comm_free, on "
                      "as many ranks as chips, max over ranks, median; x MPI = chipmesh total / MPI total");
  res.tables.push_back(std::move(t));
  res.seconds = ms_between(start, Clock::now()) / 1000.0;
  return res;
}

}  // namespace chipmesh::bench
