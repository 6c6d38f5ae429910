#include "common.h"

#include "chipmesh/worker.h"

#include <sys/resource.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <fstream>
#include <sstream>
#include <numeric>
#include <thread>

namespace chipmesh::bench {

Task noop_task() {
  Task t;
  t.kernel = "chipmesh_noop";  // library "": the built-in kernels
  return t;
}

Stats stats_of(std::vector<double> s) {
  Stats st;
  st.n = s.size();
  if (s.empty()) return st;
  std::sort(s.begin(), s.end());
  st.min = s.front();
  st.max = s.back();
  const size_t n = s.size();
  st.median = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
  // Nearest rank: the smallest sample with at least 99% of samples <= it.
  size_t rank = static_cast<size_t>(std::ceil(0.99 * static_cast<double>(n)));
  st.p99 = s[std::clamp<size_t>(rank, 1, n) - 1];
  st.mean = std::accumulate(s.begin(), s.end(), 0.0) / static_cast<double>(n);
  return st;
}

double median_of(std::vector<double> s) { return stats_of(std::move(s)).median; }

std::string WorstRatios::text(bool mpi_known) const {
  char buf[200];
  if (mpi_known && mpi != kNone)
    std::snprintf(buf, sizeof buf, "worst %.2fx Open MPI, worst %.0f%% of memcpy", mpi, memcpy * 100);
  else
    std::snprintf(buf, sizeof buf, "Open MPI unavailable; worst %.0f%% of memcpy", memcpy * 100);
  std::string out = buf;
  if (stream_memcpy == kNone) return out;
  if (stream_mpi != kNone)
    std::snprintf(buf, sizeof buf, "; back to back: worst %.2fx Open MPI, worst %.0f%% of memcpy", stream_mpi,
                  stream_memcpy * 100);
  else
    std::snprintf(buf, sizeof buf, "; back to back: worst %.0f%% of memcpy", stream_memcpy * 100);
  return out + buf;
}

std::string size_label(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB"};
  int u = 0;
  while (u < 3 && b >= 1024 && b % 1024 == 0) {
    b /= 1024;
    ++u;
  }
  return std::to_string(b) + " " + units[u];
}

Table::Table(std::string name, std::string title, std::vector<Column> columns)
    : name_(std::move(name)), title_(std::move(title)), columns_(std::move(columns)) {}

void Table::add_row(std::vector<Cell> cells) {
  cells.resize(columns_.size());
  rows_.push_back(std::move(cells));
}

void Table::add_note(std::string line) { notes_.push_back(std::move(line)); }

namespace {

std::string format_cell(const Cell& c, int precision) {
  if (std::holds_alternative<std::monostate>(c)) return "-";
  if (auto* i = std::get_if<int64_t>(&c)) return std::to_string(*i);
  if (auto* s = std::get_if<std::string>(&c)) return *s;
  const double d = std::get<double>(c);
  if (!std::isfinite(d)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", precision, d);
  return buf;
}

nlohmann::json cell_json(const Cell& c) {
  if (std::holds_alternative<std::monostate>(c)) return nullptr;
  if (auto* i = std::get_if<int64_t>(&c)) return *i;
  if (auto* s = std::get_if<std::string>(&c)) return *s;
  const double d = std::get<double>(c);
  if (!std::isfinite(d)) return nullptr;
  return d;
}

}  // namespace

void Table::print(std::FILE* out) const {
  std::vector<size_t> width(columns_.size());
  std::vector<std::vector<std::string>> text;
  for (size_t c = 0; c < columns_.size(); ++c) width[c] = columns_[c].header.size();
  for (const auto& row : rows_) {
    std::vector<std::string> line;
    for (size_t c = 0; c < columns_.size(); ++c) {
      line.push_back(format_cell(row[c], columns_[c].precision));
      width[c] = std::max(width[c], line.back().size());
    }
    text.push_back(std::move(line));
  }
  std::fprintf(out, "\n# %s\n#", title_.c_str());
  for (size_t c = 0; c < columns_.size(); ++c) std::fprintf(out, " %*s", static_cast<int>(width[c]), columns_[c].header.c_str());
  std::fprintf(out, "\n");
  for (const auto& line : text) {
    std::fprintf(out, " ");
    for (size_t c = 0; c < line.size(); ++c) std::fprintf(out, " %*s", static_cast<int>(width[c]), line[c].c_str());
    std::fprintf(out, "\n");
  }
  for (const auto& n : notes_) std::fprintf(out, "# %s\n", n.c_str());
  std::fflush(out);
}

nlohmann::json Table::to_json() const {
  nlohmann::json j;
  j["name"] = name_;
  j["title"] = title_;
  j["columns"] = nlohmann::json::array();
  j["headers"] = nlohmann::json::array();
  for (const auto& c : columns_) {
    j["columns"].push_back(c.key);
    j["headers"].push_back(c.header);
  }
  j["rows"] = nlohmann::json::array();
  for (const auto& row : rows_) {
    nlohmann::json r = nlohmann::json::object();
    for (size_t c = 0; c < columns_.size(); ++c) r[columns_[c].key] = cell_json(row[c]);
    j["rows"].push_back(std::move(r));
  }
  j["notes"] = notes_;
  return j;
}

nlohmann::json BenchResult::to_json() const {
  nlohmann::json j;
  j["name"] = name;
  j["seconds"] = seconds;
  j["load_before"] = load_before;
  j["load_after"] = load_after;
  j["foreign_cpu_share"] = foreign_cpu;
  j["steal_share"] = steal;
  j["wrong"] = wrong;
  j["failed"] = failed;
  j["notes"] = notes;
  j["tables"] = nlohmann::json::array();
  for (const auto& t : tables) j["tables"].push_back(t.to_json());
  j["targets"] = nlohmann::json::array();
  for (const auto& t : targets)
    j["targets"].push_back({{"name", t.name}, {"measured", t.measured}, {"threshold", t.threshold},
                            {"met", t.known ? nlohmann::json(t.met) : nlohmann::json(nullptr)}});
  return j;
}

namespace {

struct MachineTimes {
  double busy = 0;   // user + nice + system, all CPUs (s)
  double steal = 0;  // taken by the hypervisor for other guests (s)
};

MachineTimes machine_times() {
  std::ifstream f("/proc/stat");
  std::string cpu;
  unsigned long long user = 0, nice = 0, sys = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  f >> cpu >> user >> nice >> sys >> idle >> iowait >> irq >> softirq >> steal;
  const double hz = static_cast<double>(sysconf(_SC_CLK_TCK));
  return {static_cast<double>(user + nice + sys) / hz, static_cast<double>(steal) / hz};
}

// CPU time of kernel threads (children of kthreadd): page freeing, workqueues
// and the like, mostly done on our behalf, so not counted as other work.
double kernel_thread_seconds() {
  double ticks = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream f(e.path() / "stat");
    std::string line;
    if (!std::getline(f, line)) continue;
    const size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    std::string state;
    long long ppid = 0;
    rest >> state >> ppid;
    if (ppid != 2 && name != "2") continue;
    std::string skip;
    for (int i = 0; i < 9; ++i) rest >> skip;  // fields 5..13
    unsigned long long ut = 0, st = 0;
    rest >> ut >> st;
    ticks += static_cast<double>(ut + st);
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double own_seconds() {
  double s = 0;
  for (int who : {RUSAGE_SELF, RUSAGE_CHILDREN}) {
    struct rusage ru;
    if (getrusage(who, &ru) != 0) continue;
    s += static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  }
  return s;
}

}  // namespace

ForeignCpu::ForeignCpu()
    : machine0_(machine_times().busy), steal0_(machine_times().steal), kthreads0_(kernel_thread_seconds()),
      own0_(own_seconds()), t0_(Clock::now()) {}

double ForeignCpu::share() const {
  const double wall = std::chrono::duration<double>(Clock::now() - t0_).count();
  const double cores = std::max(1u, std::thread::hardware_concurrency());
  if (wall <= 0) return 0;
  const double other =
      (machine_times().busy - machine0_) - (own_seconds() - own0_) - (kernel_thread_seconds() - kthreads0_);
  return std::clamp(other / (wall * cores), 0.0, 1.0);
}

double ForeignCpu::steal_share() const {
  const double wall = std::chrono::duration<double>(Clock::now() - t0_).count();
  const double cores = std::max(1u, std::thread::hardware_concurrency());
  return wall > 0 ? std::clamp((machine_times().steal - steal0_) / (wall * cores), 0.0, 1.0) : 0.0;
}

double load_average() {
  double l[1];
  return getloadavg(l, 1) == 1 ? l[0] : -1.0;
}

nlohmann::json machine_description() {
  nlohmann::json m;
  std::string model;
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  }
  m["cpu"] = model;
  m["cores"] = std::thread::hardware_concurrency();
  struct sysinfo si;
  if (sysinfo(&si) == 0) m["memory_gib"] = static_cast<double>(si.totalram) * si.mem_unit / (1024.0 * 1024 * 1024);
  struct utsname u;
  if (uname(&u) == 0) m["kernel"] = std::string(u.sysname) + " " + u.release + " " + u.machine;
#if defined(__clang__)
  m["compiler"] = "clang " __clang_version__;
#elif defined(__GNUC__)
  m["compiler"] = "g++ " __VERSION__;
#endif
#ifdef CHIPMESH_BENCH_BUILD_TYPE
  m["build_type"] = CHIPMESH_BENCH_BUILD_TYPE;
#endif
  m["load_average_1m"] = load_average();
  return m;
}

TempDir::TempDir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/chipmesh_bench_XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr)
    throw std::runtime_error("cannot create a temp directory " + tmpl + ": " + std::strerror(errno));
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string TempDir::fresh(const std::string& stem) { return path_ + "/" + stem + "_" + std::to_string(next_++); }

std::string staging_name(const std::string& tag) {
  static int counter = 0;
  return "/chipmesh_bench_" + std::to_string(getpid()) + "_" + tag + "_" + std::to_string(counter++);
}

void say(std::FILE* out, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(out, fmt, ap);
  va_end(ap);
  std::fflush(out);
}

std::vector<uint64_t> float32_sizes(uint64_t lo, uint64_t hi) {
  std::vector<uint64_t> sizes;
  for (uint64_t s = std::max<uint64_t>(lo, 4); s <= hi; s *= 4) sizes.push_back(s / 4 * 4);
  if (sizes.empty() || sizes.back() != hi / 4 * 4) sizes.push_back(std::max<uint64_t>(hi / 4 * 4, 4));
  return sizes;
}

}  // namespace chipmesh::bench
