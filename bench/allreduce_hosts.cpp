// `chipmesh bench allreduce` started by mpirun, one process per host
// (--cluster mpi or CHIPMESH_CLUSTER=mpi; docs/multi-host.md): the
// hierarchical allreduce over world() (float32 sum, out of place, every
// result checked), the time of its inter-host step alone (MPI_Allreduce of
// the same bytes between the hosts' Worker processes), and the Open MPI
// peers measured in the same harness run over the same hosts
// (scripts/multihost/bench_hosts.sh): MPI_Allreduce with one rank per chip
// laid out flat, and the same data reduced hierarchically in MPI. Host 0
// prints the table; the others print only errors.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "bench.h"
#include "chipmesh/worker.h"
#include "mpi_peer.h"

namespace chipmesh::bench {

namespace {



int iters_for(uint64_t bytes, bool quick) {
  if (quick) return 3;
  return static_cast<int>(std::clamp<uint64_t>((uint64_t{256} << 20) / std::max<uint64_t>(bytes, 1), 5, 200));
}

// The peer's figures from a file of bench/mpi/mpi_allreduce.c lines.
std::map<uint64_t, PeerPoint> read_peer(const std::string& path) {
  std::map<uint64_t, PeerPoint> points;
  std::ifstream f(path);
  if (!f) return points;
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  parse_peer_output(text, points);
  return points;
}

}  // namespace

int run_bench_across_hosts(const BenchOptions& o) {
  if (o.what != "allreduce") {
    std::fprintf(stderr, "chipmesh bench: across hosts only 'allreduce' is measured (got '%s')\n", o.what.c_str());
    return 2;
  }
  const int chips = o.ranks.empty() ? 2 : o.ranks.front();
  const uint64_t lo = o.min_bytes ? o.min_bytes : 8;
  const uint64_t hi = o.max_bytes ? o.max_bytes : o.quick ? (uint64_t{64} << 10) : (uint64_t{16} << 20);
  const std::vector<uint64_t> sizes = float32_sizes(lo, hi);
  const uint64_t max_count = sizes.back() / 4;

  WorkerConfig cfg;
  cfg.platform = o.platform;
  cfg.cluster = "mpi";
  for (int c = 0; c < chips; ++c) {
    cfg.device_ids.push_back(c);
    ChipBootstrapConfig b;
    b.comm = ChipCommBootstrapConfig{c, chips, "", static_cast<size_t>(2 * max_count * 4 + 4096)};
    b.buffers = {{"input", DataType::FLOAT32, max_count, max_count * 4},
                 {"output", DataType::FLOAT32, max_count, max_count * 4}};
    cfg.chip_bootstrap_configs.push_back(std::move(b));
  }
  const auto start = Clock::now();
  Worker w(std::move(cfg));
  w.init();
  const bool reporter = w.host_rank() == 0;
  std::FILE* out = reporter ? o.out : nullptr;
  const int hosts = w.num_hosts(), total = static_cast<int>(w.num_global_chips());
  if (out)
    say(out, "chipmesh bench allreduce across %d hosts x %d chips: float32 sum, %s .. %s (x4)\n", hosts, chips,
        size_label(sizes.front()).c_str(), size_label(sizes.back()).c_str());

  // Inputs by global chip; the expected sum over every chip of every host.
  std::vector<float> host(max_count), expected(max_count, 0.0f), back(max_count);
  for (uint64_t i = 0; i < max_count; ++i)
    for (int g = 0; g < total; ++g) expected[i] += input_value(g, i);
  const auto& ctx = w.chip_contexts();
  for (int c = 0; c < chips; ++c) {
    for (uint64_t i = 0; i < max_count; ++i) host[i] = input_value(w.global_chip(c), i);
    w.copy_to(c, ctx[static_cast<size_t>(c)].buffer_ptrs.at("input"), host.data(), max_count * 4);
  }
  auto allreduce = [&](uint64_t bytes) {
    w.run([&](Orchestrator& orch) {
      orch.allreduce(w.world(), "input", "output", bytes / 4, DataType::FLOAT32, ReduceOp::SUM);
    });
  };
  // Every host starts together (one small MPI allreduce); the time of a call
  // is the slowest host's, as the MPI peer takes the slowest rank's.
  int one = 1;
  auto together = [&] { w.host_allreduce(&one, 1, DataType::INT32, ReduceOp::MAX); };
  auto slowest = [&](std::vector<double>& us) { w.host_allreduce(us.data(), us.size(), DataType::FLOAT64, ReduceOp::MAX); };

  struct Row {
    double us = 0, inter_us = 0;
    int64_t wrong = 0;
  };
  std::map<uint64_t, Row> rows;
  int64_t wrong_total = 0;
  std::vector<float> scratch(max_count);
  for (uint64_t s : sizes) {
    const uint64_t count = s / 4;
    for (int k = 0; k < (o.quick ? 1 : 3); ++k) allreduce(s);
    // One checked call, outputs set to NaN first.
    std::fill(host.begin(), host.begin() + static_cast<std::ptrdiff_t>(count), NAN);
    for (int c = 0; c < chips; ++c) w.copy_to(c, ctx[static_cast<size_t>(c)].buffer_ptrs.at("output"), host.data(), s);
    allreduce(s);
    int64_t wrong = 0;
    for (int c = 0; c < chips; ++c) {
      w.copy_from(c, back.data(), ctx[static_cast<size_t>(c)].buffer_ptrs.at("output"), s);
      for (uint64_t i = 0; i < count; ++i) wrong += !(back[i] == expected[i]);
    }
    w.host_allreduce(&wrong, 1, DataType::INT64, ReduceOp::SUM);
    wrong_total += wrong;
    const int iters = iters_for(s, o.quick);
    std::vector<double> us, inter;
    for (int k = 0; k < iters; ++k) {
      together();
      auto t0 = Clock::now();
      allreduce(s);
      us.push_back(us_between(t0, Clock::now()));
    }
    // The inter-host step alone: MPI_Allreduce of the same bytes between the
    // hosts' Worker processes.
    for (int k = 0; k < iters; ++k) {
      together();
      auto t0 = Clock::now();
      w.host_allreduce(scratch.data(), count, DataType::FLOAT32, ReduceOp::SUM);
      inter.push_back(us_between(t0, Clock::now()));
    }
    slowest(us);
    slowest(inter);
    rows[s] = Row{median_of(us), median_of(inter), wrong};
    if (out) say(out, "  %s: %.1f us\n", size_label(s).c_str(), rows[s].us);
  }
  w.close();
  if (!reporter) return wrong_total ? 1 : 0;

  const std::map<uint64_t, PeerPoint> flat = o.mpi_results.empty() ? std::map<uint64_t, PeerPoint>{}
                                                                    : read_peer(o.mpi_results + "/flat.txt");
  const std::map<uint64_t, PeerPoint> hier = o.mpi_results.empty() ? std::map<uint64_t, PeerPoint>{}
                                                                    : read_peer(o.mpi_results + "/hier.txt");
  Table t("allreduce_hosts_" + std::to_string(hosts) + "x" + std::to_string(chips),
          "allreduce across " + std::to_string(hosts) + " hosts x " + std::to_string(chips) +
              " chips, float32 sum, out of place (median of the slowest host; busbw over " + std::to_string(total) +
              " ranks; x MPI = chipmesh busbw / MPI busbw)",
          {{"size_bytes", "size(B)", 0},
           {"count", "count", 0},
           {"time_us", "time(us)", 1},
           {"algbw_gbps", "algbw(GB/s)", 3},
           {"busbw_gbps", "busbw(GB/s)", 3},
           {"wrong", "#wrong", 0},
           {"inter_us", "inter-host(us)", 1},
           {"inter_share", "inter share", 2},
           {"mpi_flat_us", "MPI flat(us)", 1},
           {"mpi_flat_busbw_gbps", "MPI flat busbw", 3},
           {"ratio_flat", "x MPI flat", 2},
           {"mpi_hier_us", "MPI hier(us)", 1},
           {"mpi_hier_busbw_gbps", "MPI hier busbw", 3},
           {"ratio_hier", "x MPI hier", 2}});
  double worst = 1e9;
  bool seen = false;
  for (uint64_t s : sizes) {
    const Row& r = rows[s];
    const double bus = gbps(static_cast<double>(s), r.us) * allreduce_bus_factor(total);
    auto peer = [&](const std::map<uint64_t, PeerPoint>& m, Cell& us, Cell& busbw, Cell& ratio) {
      auto it = m.find(s);
      if (it == m.end() || it->second.us.empty()) return 0.0;
      const double mus = median_of(it->second.us);
      const double mbus = gbps(static_cast<double>(s), mus) * allreduce_bus_factor(total);
      us = mus, busbw = mbus, ratio = mbus > 0 ? Cell{bus / mbus} : Cell{};
      if (it->second.wrong > 0) wrong_total += it->second.wrong;
      return mbus;
    };
    Cell fu, fb, fr, hu, hb, hr;
    const double flat_bus = peer(flat, fu, fb, fr);
    peer(hier, hu, hb, hr);
    if (s >= (uint64_t{1} << 20) && flat_bus > 0) worst = std::min(worst, bus / flat_bus), seen = true;
    t.add_row({static_cast<int64_t>(s), static_cast<int64_t>(s / 4), r.us, gbps(static_cast<double>(s), r.us), bus,
               r.wrong, r.inter_us, r.us > 0 ? Cell{r.inter_us / r.us} : Cell{}, fu, fb, fr, hu, hb, hr});
  }
  t.add_note("time: Worker::run() of Orchestrator::allreduce(world()) after the hosts started together, the "
             "slowest host's, median; inter-host: MPI_Allreduce of the same bytes between the hosts' Worker "
             "processes alone (Worker::host_allreduce); MPI flat: MPI_Allreduce over " + std::to_string(total) +
             " ranks (one per chip); MPI hier: MPI_Reduce in each node, MPI_Allreduce between the node leaders, "
             "MPI_Bcast (bench/mpi/mpi_allreduce.c --hierarchical)");
  if (o.mpi_results.empty())
    t.add_note("MPI peers: not given (run through scripts/multihost/bench_hosts.sh, or pass --mpi-results DIR)");
  t.print(out);
  char line[200];
  if (seen)
    std::snprintf(line, sizeof line, "worst %.2fx MPI flat at >= 1 MiB", worst);
  else
    std::snprintf(line, sizeof line, "MPI flat not measured at >= 1 MiB");
  say(out, "\n# Target (issue 11): [%s] allreduce busbw across %d hosts x %d chips, >= 1 MiB: %s (target >= 1.0x "
           "MPI_Allreduce with one rank per chip)\n",
      !seen ? " n/a  " : worst >= 1.0 ? " met  " : "missed", hosts, chips, line);
  say(out, "# %.1f s; #wrong total %lld\n", std::chrono::duration<double>(Clock::now() - start).count(),
      static_cast<long long>(wrong_total));
  say(out, "# machine: %s\n", machine_description().value("cpu", std::string("?")).c_str());
  bool json_ok = true;
  if (!o.json_path.empty()) {
    BenchResult res;
    res.name = "allreduce_hosts";
    res.tables.push_back(t);
    res.wrong = wrong_total;
    json_ok = write_json(o.json_path, results_json(o, {res}), out);
  }
  return wrong_total || !json_ok ? 1 : 0;
}

}  // namespace chipmesh::bench
