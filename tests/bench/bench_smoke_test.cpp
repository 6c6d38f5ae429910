// Every benchmark in quick mode (tiny sizes, few iterations), run in process
// through the chipmesh_bench library with --json: the file parses, every
// table has its columns in every row, times and bandwidths are positive,
// #wrong is 0, and the Open MPI peer is either measured or marked
// unavailable. No timing assertion.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "bench.h"
#include "support/leak_check.h"

namespace {

using chipmesh::bench::BenchOptions;
using chipmesh::bench::run_bench;
using nlohmann::json;

struct BenchRun {
  int rc = -1;
  json doc;
};

BenchRun run_quick(const std::string& what, bool no_mpi, chipmesh::testing::ScratchDir& dir, int iters = 0,
                   uint64_t parent_memory = 0, bool exclude_parent_memory = false,
                   const std::string& inputs = "shm") {
  BenchOptions o;
  o.inputs = inputs;
  o.what = what;
  o.quick = true;
  o.no_mpi = no_mpi;
  o.iters = iters;
  o.parent_memory = parent_memory;
  o.exclude_parent_memory = exclude_parent_memory;
  o.json_path = dir.file(what + ".json");
  BenchRun r;
  r.rc = run_bench(o);
  std::ifstream in(o.json_path);
  EXPECT_TRUE(in.good()) << "no JSON written to " << o.json_path;
  if (in.good()) r.doc = json::parse(in);  // throws (fails the test) when malformed
  return r;
}

const json& benchmark(const json& doc, const std::string& name) {
  for (const auto& b : doc.at("benchmarks"))
    if (b.at("name") == name) return b;
  ADD_FAILURE() << "no benchmark " << name << " in the JSON";
  static const json empty = json::object();
  return empty;
}

const json* table(const json& bench, const std::string& name) {
  for (const auto& t : bench.at("tables"))
    if (t.at("name") == name) return &t;
  ADD_FAILURE() << "no table " << name;
  return nullptr;
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

bool is_peer_column(const std::string& key) { return key.rfind("mpi", 0) == 0 || key.rfind("ratio", 0) == 0; }

// The table has the expected columns, every row has every column, and every
// time / bandwidth is a positive number (peer columns may be null when the
// peer is unavailable; `zero_ok` columns may be 0).
void check_table(const json& t, const std::vector<std::string>& expected, size_t min_rows,
                 const std::set<std::string>& zero_ok = {}) {
  SCOPED_TRACE("table " + t.at("name").get<std::string>());
  std::set<std::string> cols;
  for (const auto& c : t.at("columns")) cols.insert(c.get<std::string>());
  for (const auto& e : expected) EXPECT_TRUE(cols.count(e)) << "missing column " << e;
  EXPECT_EQ(t.at("headers").size(), t.at("columns").size());
  ASSERT_GE(t.at("rows").size(), min_rows);
  for (const auto& row : t.at("rows")) {
    for (const auto& c : cols) {
      ASSERT_TRUE(row.contains(c)) << "row without column " << c << ": " << row.dump();
      const json& v = row.at(c);
      const bool timed = ends_with(c, "_ms") || ends_with(c, "_us") || ends_with(c, "_gbps") ||
                         ends_with(c, "_per_s") || c == "seconds";
      if (!timed && !(c.rfind("ratio", 0) == 0)) continue;
      if (v.is_null()) {
        EXPECT_TRUE(is_peer_column(c)) << c << " is null: " << row.dump();
        continue;
      }
      ASSERT_TRUE(v.is_number()) << c << ": " << row.dump();
      if (zero_ok.count(c)) {
        EXPECT_GE(v.get<double>(), 0) << c << ": " << row.dump();
      } else {
        EXPECT_GT(v.get<double>(), 0) << c << ": " << row.dump();
      }
    }
  }
}

// The MPI columns are all filled (the peer ran), or the peer is marked
// unavailable (none filled) or failed (a broken installation is the peer's
// problem, not a test failure: reported, columns filled up to the failure).
void check_peer(const json& bench, const json& t, const std::string& mpi_key, bool expect_unavailable) {
  bool any = false, all = true;
  for (const auto& row : t.at("rows")) {
    const bool has = !row.at(mpi_key).is_null();
    any = any || has;
    all = all && has;
  }
  std::string notes = bench.at("notes").dump() + t.at("notes").dump();
  const bool unavailable = notes.find("peer unavailable") != std::string::npos;
  const bool failed = notes.find("peer failed") != std::string::npos;
  if (expect_unavailable) {
    EXPECT_TRUE(unavailable) << notes;
  }
  if (unavailable) {
    EXPECT_FALSE(any) << "peer marked unavailable but " << mpi_key << " has values";
  } else if (failed) {
    std::printf("note: the Open MPI peer failed on this machine: %s\n", notes.c_str());
  } else {
    EXPECT_TRUE(all) << "peer available but " << mpi_key << " is missing somewhere: " << notes;
  }
}

void check_common(const BenchRun& r, const std::string& name) {
  EXPECT_EQ(r.rc, 0);
  EXPECT_EQ(r.doc.at("format"), "chipmesh-bench-1");
  EXPECT_TRUE(r.doc.at("machine").contains("cpu"));
  const json& b = benchmark(r.doc, name);
  EXPECT_EQ(b.at("wrong"), 0);
  EXPECT_EQ(b.at("failed"), false) << b.at("notes").dump();
  EXPECT_FALSE(b.at("targets").empty());
  for (const auto& t : b.at("targets")) {
    EXPECT_TRUE(t.contains("name") && t.contains("measured") && t.contains("threshold") && t.contains("met"));
  }
}

TEST(BenchSmoke, Bringup) {
  chipmesh::testing::ScratchDir dir;
  BenchRun r = run_quick("bringup", false, dir);
  check_common(r, "bringup");
  const json& b = benchmark(r.doc, "bringup");
  const json* peers = table(b, "bringup");
  ASSERT_NE(peers, nullptr);
  check_table(*peers,
              {"chips", "window_bytes", "init_ms", "init_p99_ms", "init_close_ms", "fork_floor_ms", "ratio_floor",
               "mpi_init_to_ready_ms", "ratio_mpi", "mpirun_wall_ms", "ratio_mpirun"},
              2);
  check_peer(b, *peers, "mpi_init_to_ready_ms", false);
  const json* phases = table(b, "bringup_phases");
  ASSERT_NE(phases, nullptr);
  check_table(*phases,
              {"chips", "window_bytes", "setup_ms", "fork_ms", "comm_init_ms", "windows_ms", "staging_ms",
               "handshake_ms", "total_ms"},
              2, {"fork_ms", "comm_init_ms", "windows_ms", "staging_ms", "handshake_ms"});
}

// --parent-memory (left out of the chips or not): its own table, a row per
// point, and the bring-up targets left unjudged (the fork floor then forks
// that memory too).
void check_bringup_with_parent_memory(bool exclude) {
  SCOPED_TRACE(exclude ? "excluded" : "inherited");
  chipmesh::testing::ScratchDir dir;
  BenchRun r = run_quick("bringup", true, dir, 0, uint64_t{1} << 20, exclude);
  check_common(r, "bringup");
  const json& b = benchmark(r.doc, "bringup");
  const json* pm = table(b, "bringup_parent_memory");
  ASSERT_NE(pm, nullptr);
  check_table(*pm,
              {"chips", "window_bytes", "parent_bytes", "init_ms", "fork_floor_ms", "parent_write_ms",
               "parent_rewrite_ms", "write_ratio"},
              2);
  for (const auto& row : pm->at("rows")) EXPECT_EQ(row.at("parent_bytes").get<int64_t>(), int64_t{1} << 20);
  for (const auto& t : b.at("targets")) {
    const std::string name = t.at("name").get<std::string>();
    if (name.rfind("bring-up", 0) != 0) continue;
    EXPECT_TRUE(t.at("met").is_null()) << name;  // not judged
    EXPECT_NE(t.at("measured").get<std::string>().find("--parent-memory"), std::string::npos) << name;
  }
  EXPECT_EQ(pm->at("title").get<std::string>().find("exclude_from_chips") != std::string::npos, exclude);
}

TEST(BenchSmoke, BringupWithParentMemory) {
  check_bringup_with_parent_memory(false);
  check_bringup_with_parent_memory(true);
}

// --inputs staged: each chip's input through Worker::stage_input; the
// bring-up tables as with objects of their own, and the note says which.
TEST(BenchSmoke, BringupWithStagedInputs) {
  chipmesh::testing::ScratchDir dir;
  BenchRun r = run_quick("bringup", true, dir, 0, 0, false, "staged");
  check_common(r, "bringup");
  const json& b = benchmark(r.doc, "bringup");
  const json* peers = table(b, "bringup");
  ASSERT_NE(peers, nullptr);
  check_table(*peers, {"chips", "window_bytes", "init_ms", "fork_floor_ms", "ratio_floor"}, 2);
  const json* phases = table(b, "bringup_phases");
  ASSERT_NE(phases, nullptr);
  EXPECT_NE(phases->dump().find("through Worker::stage_input"), std::string::npos) << phases->dump();
}

TEST(BenchSmoke, Dispatch) {
  chipmesh::testing::ScratchDir dir;
  BenchRun r = run_quick("dispatch", false, dir);
  check_common(r, "dispatch");
  const json& b = benchmark(r.doc, "dispatch");
  const json* lat = table(b, "dispatch");
  ASSERT_NE(lat, nullptr);
  check_table(*lat, {"what", "chips", "samples", "median_us", "p99_us", "max_us", "ratio_spin", "ratio_futex"}, 6);
  std::set<std::string> what;
  for (const auto& row : lat->at("rows")) {
    what.insert(row.at("what").get<std::string>());
    EXPECT_GE(row.at("p99_us").get<double>(), row.at("median_us").get<double>());
    EXPECT_GE(row.at("samples").get<int64_t>(), 200);
  }
  EXPECT_TRUE(what.count("shm ping-pong, spin"));
  EXPECT_TRUE(what.count("shm ping-pong, futex"));
  const json* stream = table(b, "dispatch_stream");
  ASSERT_NE(stream, nullptr);
  check_table(*stream, {"what", "chips", "tasks", "seconds", "tasks_per_s", "us_per_task"}, 4);
}

TEST(BenchSmoke, Copy) {
  chipmesh::testing::ScratchDir dir;
  BenchRun r = run_quick("copy", false, dir);
  check_common(r, "copy");
  const json* t = table(benchmark(r.doc, "copy"), "copy");
  ASSERT_NE(t, nullptr);
  check_table(*t,
              {"size_bytes", "memcpy_gbps", "copy_to_gbps", "copy_to_ratio", "copy_from_gbps", "copy_from_ratio",
               "staging_gbps", "staging_ratio", "memcpy_us", "copy_to_us", "copy_from_us", "staging_us"},
              2);
}

void check_allreduce(const BenchRun& r, bool expect_unavailable, int ops = 20) {
  check_common(r, "allreduce");
  const json& b = benchmark(r.doc, "allreduce");
  // The back-to-back figures: --iters operations per run(), said in the notes.
  EXPECT_NE(b.at("notes").dump().find("one Worker::run() of " + std::to_string(ops) + " Orchestrator::allreduce calls"),
            std::string::npos)
      << b.at("notes").dump();
  // The small-message targets of issue 10 (2 ranks in quick mode).
  std::set<std::string> names;
  for (const auto& t : b.at("targets")) names.insert(t.at("name").get<std::string>());
  EXPECT_TRUE(names.count("allreduce back to back, 2 ranks, <= 64 KiB, onephase (AUTO)")) << b.at("targets").dump();
  EXPECT_TRUE(names.count("allreduce single round trip, 2 ranks, <= 64 KiB, onephase (AUTO)"))
      << b.at("targets").dump();
  int tables = 0;
  for (const char* mode : {"onephase", "twophase", "ring"}) {
    const json* t = table(b, std::string("allreduce_n2_") + mode);
    if (!t) continue;
    ++tables;
    check_table(*t,
                {"size_bytes", "count", "type", "redop", "time_us", "ratio_empty", "stream_us", "algbw_gbps",
                 "busbw_gbps", "wrong", "mpi_time_us", "mpi_stream_us", "ratio_stream_mpi", "mpi_busbw_gbps",
                 "mpi_wrong", "ratio_mpi", "memcpy_gbps", "ratio_memcpy"},
                3);
    check_peer(b, *t, "mpi_time_us", expect_unavailable);
    check_peer(b, *t, "mpi_stream_us", expect_unavailable);
    for (const auto& row : t->at("rows")) {
      EXPECT_EQ(row.at("wrong"), 0) << row.dump();
      if (!row.at("mpi_wrong").is_null()) {
        EXPECT_EQ(row.at("mpi_wrong"), 0) << row.dump();
      }
      EXPECT_EQ(row.at("type"), "float");
      EXPECT_EQ(row.at("redop"), "sum");
      EXPECT_EQ(row.at("count").get<int64_t>() * 4, row.at("size_bytes").get<int64_t>());
    }
    EXPECT_NE(t->at("notes").dump().find("Avg bus bandwidth"), std::string::npos);
  }
  EXPECT_EQ(tables, 3);
}

TEST(BenchSmoke, Allreduce) {
  chipmesh::testing::ScratchDir dir;
  check_allreduce(run_quick("allreduce", false, dir), false);
}

// --iters K: K operations per back-to-back run, on both sides.
TEST(BenchSmoke, AllreduceIters) {
  chipmesh::testing::ScratchDir dir;
  check_allreduce(run_quick("allreduce", false, dir, 3), false, 3);
}

// Without the Open MPI peer (as on a machine without Open MPI): the run
// still succeeds, the peer columns are empty and marked unavailable.
TEST(BenchSmoke, AllreduceWithoutPeer) {
  chipmesh::testing::ScratchDir dir;
  check_allreduce(run_quick("allreduce", true, dir), true);
}

// The other collectives: nccl-tests columns, in place and out of place,
// every result right, on both sides; the Open MPI columns filled (or the
// peer marked unavailable) and memcpy's.
void check_other_collectives(bool no_mpi) {
  chipmesh::testing::ScratchDir dir;
  for (const char* what : {"allgather", "reduce_scatter", "broadcast", "reduce", "alltoall"}) {
    BenchRun r = run_quick(what, no_mpi, dir);
    check_common(r, what);
    const json& b = benchmark(r.doc, what);
    const json* t = table(b, std::string(what) + "_n2");
    ASSERT_NE(t, nullptr) << what;
    check_table(*t,
                {"size_bytes", "count", "type", "redop", "root", "time_us", "stream_us", "algbw_gbps", "busbw_gbps",
                 "wrong", "ip_time_us", "ip_algbw_gbps", "ip_busbw_gbps", "ip_wrong", "mpi_time_us", "mpi_stream_us",
                 "mpi_busbw_gbps", "mpi_wrong", "ratio_mpi", "memcpy_gbps", "ratio_memcpy"},
                3);
    check_peer(b, *t, "mpi_time_us", no_mpi);
    check_peer(b, *t, "mpi_busbw_gbps", no_mpi);
    for (const auto& row : t->at("rows")) {
      EXPECT_EQ(row.at("wrong"), 0) << what << ": " << row.dump();
      EXPECT_EQ(row.at("ip_wrong"), 0) << what << ": " << row.dump();
      if (!row.at("mpi_wrong").is_null()) {
        EXPECT_EQ(row.at("mpi_wrong"), 0) << what << ": " << row.dump();
      }
      EXPECT_GT(row.at("memcpy_gbps").get<double>(), 0) << what << ": " << row.dump();
      EXPECT_EQ(row.at("count").get<int64_t>() * 4, row.at("size_bytes").get<int64_t>());
    }
  }
}

TEST(BenchSmoke, OtherCollectives) { check_other_collectives(false); }

// --memory malloc: the same collectives on Worker::malloc memory, staged
// through a 4 KiB window (the quick sizes take several chunks); every result
// checked.
TEST(BenchSmoke, OtherCollectivesOnMallocMemory) {
  chipmesh::testing::ScratchDir dir;
  for (const char* what : {"allgather", "reduce_scatter", "broadcast", "reduce", "alltoall"}) {
    BenchOptions o;
    o.what = what;
    o.quick = true;
    o.no_mpi = true;
    o.memory = "malloc";
    o.stage_bytes = 4096;
    o.json_path = dir.file(std::string(what) + ".json");
    ASSERT_EQ(run_bench(o), 0) << what;
    std::ifstream in(o.json_path);
    ASSERT_TRUE(in.good()) << what;
    const json doc = json::parse(in);
    const json* t = table(benchmark(doc, what), std::string(what) + "_n2_malloc");
    ASSERT_NE(t, nullptr) << what;
    ASSERT_GE(t->at("rows").size(), 3u) << what;
    for (const auto& row : t->at("rows")) {
      EXPECT_EQ(row.at("wrong"), 0) << what << ": " << row.dump();
      EXPECT_EQ(row.at("ip_wrong"), 0) << what << ": " << row.dump();
      EXPECT_GT(row.at("time_us").get<double>(), 0) << what << ": " << row.dump();
    }
  }
}
TEST(BenchSmoke, OtherCollectivesWithoutPeer) { check_other_collectives(true); }

// allocate_domain + release_domain: one row per chip count, positive times,
// next to MPI_Comm_split + MPI_Win_allocate_shared + frees.
TEST(BenchSmoke, Domains) {
  chipmesh::testing::ScratchDir dir;
  BenchRun r = run_quick("domains", false, dir);
  check_common(r, "domains");
  const json& b = benchmark(r.doc, "domains");
  const json* t = table(b, "domains");
  ASSERT_NE(t, nullptr);
  check_table(*t,
              {"chips", "window", "samples", "allocate_median_ms", "release_median_ms", "total_median_ms",
               "mpi_allocate_median_ms", "mpi_release_median_ms", "mpi_total_median_ms", "ratio_mpi"},
              2);
  check_peer(b, *t, "mpi_total_median_ms", false);
}

// bench/report turns the JSON into markdown tables and, where matplotlib
// is installed (scripts/bench.sh installs it; the test suite does not), the
// three plots.
TEST(BenchSmoke, ReportWritesTheTablesAndPlotsOfEveryBenchmark) {
  chipmesh::testing::ScratchDir dir;
  std::string files;
  for (const char* what : {"bringup", "allreduce", "allgather", "alltoall"}) {
    BenchRun r = run_quick(what, true, dir);
    ASSERT_EQ(r.rc, 0) << what;
    files += " '" + dir.file(std::string(what) + ".json") + "'";
  }
  const std::string md = dir.file("report.md"), img = dir.file("img"), log = dir.file("report.log");
  const std::string cmd = "python3 '" CHIPMESH_SOURCE_DIR "/bench/report' --md '" + md + "' --img-dir '" + img + "'" +
                          files + " > '" + log + "' 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream in(md);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const char* heading : {"### bringup", "### allreduce", "### allgather", "### alltoall", "### Targets"})
    EXPECT_NE(text.find(heading), std::string::npos) << heading << " missing in\n" << text;
  std::ifstream logged(log);
  const std::string said((std::istreambuf_iterator<char>(logged)), std::istreambuf_iterator<char>());
  if (said.find("matplotlib not found") == std::string::npos) {
    for (const char* png : {"bringup_vs_chips.png", "busbw_vs_size.png", "collectives_busbw.png"}) {
      const std::string path = img + "/" + png;
      EXPECT_TRUE(std::filesystem::exists(path) && std::filesystem::file_size(path) > 0)
          << png << " not written; the report said:\n" << said;
    }
  }
  std::filesystem::remove_all(img);
}

TEST(BenchSmoke, UnknownBenchmarkIsAnError) {
  BenchOptions o;
  o.what = "nonsense";
  o.out = std::fopen("/dev/null", "w");
  ASSERT_NE(o.out, nullptr);
  EXPECT_EQ(run_bench(o), 2);
  std::fclose(o.out);
}

}  // namespace
