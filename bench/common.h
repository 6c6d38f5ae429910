// Shared helpers of the benchmarks: clocks, sample statistics, result tables
// (printed as text and written as JSON), targets and the machine description.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace chipmesh {
struct Task;
}

namespace chipmesh::bench {

using Clock = std::chrono::steady_clock;

// A task of the built-in chipmesh_noop kernel (returns at once): what
// dispatch alone costs.
Task noop_task();

inline double us_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::micro>(b - a).count();
}
inline double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// Order statistics of a sample set (nearest-rank percentiles).
struct Stats {
  size_t n = 0;
  double min = 0, median = 0, p99 = 0, max = 0, mean = 0;
};
Stats stats_of(std::vector<double> samples);
double median_of(std::vector<double> samples);

// GB/s (1e9 bytes per second) of moving `bytes` in `us` microseconds.
inline double gbps(double bytes, double us) { return us > 0 ? bytes / (us * 1e3) : 0.0; }

// "4 KiB", "256 MiB", "8 B".
std::string size_label(uint64_t bytes);

// Element i of rank r's input in the collective benchmarks, as the MPI peers
// compute it (bench/mpi/*.c): small integers, so float32 sums are exact.
inline float input_value(int rank, uint64_t i) {
  return static_cast<float>(static_cast<int>((i * 7 + static_cast<uint64_t>(rank) * 13) % 31) - 15);
}

// nccl-tests' allreduce bus bandwidth factor, 2(n-1)/n.
inline double allreduce_bus_factor(int n) { return n > 1 ? 2.0 * (n - 1) / n : 0.0; }

// The worst ratios of a bandwidth target over its sizes: busbw against
// Open MPI's and against memcpy, for one operation and back to back (as
// nccl-tests times); kNone where nothing was measured. Lower one with
// lower(field, ratio).
struct WorstRatios {
  static constexpr double kNone = 1e300;
  double mpi = kNone, memcpy = kNone, stream_mpi = kNone, stream_memcpy = kNone;
  static void lower(double& worst, double ratio) { worst = std::min(worst, ratio); }
  // "worst 2.39x Open MPI, worst 15% of memcpy; back to back: worst 3.05x
  // Open MPI, worst 19% of memcpy"; "Open MPI unavailable; ..." unless
  // `mpi_known`.
  std::string text(bool mpi_known) const;
};

// The float32 sizes of an allreduce sweep: lo, 4 lo, 16 lo, ... up to hi,
// then hi itself, each a whole number of elements.
std::vector<uint64_t> float32_sizes(uint64_t lo, uint64_t hi);

// One cell: empty (printed "-", JSON null: a peer that is unavailable),
// an integer, a number or a string.
using Cell = std::variant<std::monostate, int64_t, double, std::string>;

struct Column {
  std::string key;     // JSON key
  std::string header;  // printed header
  int precision = 2;   // digits after the point for doubles
};

class Table {
 public:
  Table(std::string name, std::string title, std::vector<Column> columns);
  void add_row(std::vector<Cell> cells);  // one cell per column
  void add_note(std::string line);        // printed under the table ("Avg bus bandwidth ...")

  const std::string& name() const { return name_; }
  const std::vector<Column>& columns() const { return columns_; }
  const std::vector<std::vector<Cell>>& rows() const { return rows_; }
  void print(std::FILE* out) const;
  // {"name", "title", "columns": [keys], "headers": [...], "rows": [{key: value}], "notes": [...]}
  nlohmann::json to_json() const;

 private:
  std::string name_, title_;
  std::vector<Column> columns_;
  std::vector<std::vector<Cell>> rows_;
  std::vector<std::string> notes_;
};

// A goal of issue 4 and where the measurement stands.
struct Target {
  std::string name;        // "bring-up, 8 chips, 1 MiB windows"
  std::string measured;    // "6.1 ms, 2.4x the fork floor"
  std::string threshold;   // "<= 10 ms and <= 3x fork floor"
  bool met = false;
  bool known = true;       // false: not measurable here (peer unavailable, ...)
};

struct BenchResult {
  std::string name;  // bringup | dispatch | copy | allreduce
  std::vector<Table> tables;
  std::vector<Target> targets;
  std::vector<std::string> notes;  // peer availability, caveats
  int64_t wrong = 0;               // wrong result elements (allreduce)
  bool failed = false;             // a chipmesh error (the run goes on)
  double seconds = 0;              // wall time of the benchmark
  double load_before = -1, load_after = -1;  // 1-minute load average around it
  double foreign_cpu = -1;                   // ForeignCpu::share() over the benchmark
  double steal = -1;                         // ForeignCpu::steal_share()
  nlohmann::json to_json() const;
};

// How busy the machine was with *other* work while a benchmark ran: user and
// system time of the whole machine (/proc/stat) minus this process and its
// reaped descendants (getrusage) and minus kernel threads, as a share of all
// cores over the wall time; and the hypervisor's steal time likewise.
class ForeignCpu {
 public:
  ForeignCpu();  // starts measuring
  double share() const;        // 0 = nobody else ran, 1 = others used every core throughout
  double steal_share() const;  // time the hypervisor gave to other guests

 private:
  double machine0_, steal0_, kthreads0_, own0_;
  Clock::time_point t0_;
};

// CPU model, cores, memory, kernel, compiler, build type, load average.
nlohmann::json machine_description();
// 1-minute load average (-1 if unknown).
double load_average();

// A private directory under $TMPDIR (rootinfo files); removed on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  // A fresh file name in it ("<path>/<stem>_<n>").
  std::string fresh(const std::string& stem);

 private:
  std::string path_;
  int next_ = 0;
};

// A fresh POSIX shared-memory name for host staging, "/chipmesh_bench_<pid>_<tag>_<n>"
// (the pid lets `chipmesh clean` and the test leak check tell whose it is).
std::string staging_name(const std::string& tag);

// printf to the benchmark's output and flush (progress lines).
void say(std::FILE* out, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace chipmesh::bench
