#include "logging/log.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>

#include "chipmesh/errors.h"
#include "chipmesh/version.h"
#include "knobs/knobs.h"

namespace chipmesh::log::detail {

// The process-wide logging state, shared like the knobs' (see log.h and
// knobs.cpp): change the layout only with the symbol's version suffix.
struct State {
  std::atomic<uint64_t> gate{kUnread};
  std::atomic<int> chip{-1};
  std::atomic<int> rank{-1};
  std::mutex mu;        // the file and the version line
  int fd = -1;          // CHIPMESH_DEBUG_FILE, opened by fd_pid
  pid_t fd_pid = -1;
  bool version_told = false;
};

}  // namespace chipmesh::log::detail

extern "C" __attribute__((visibility("default"))) void* chipmesh_internal_log_state_v1() {
  static auto* state = new chipmesh::log::detail::State();  // never destroyed: logs until _exit
  return state;
}

namespace chipmesh::log {
namespace detail {
namespace {

State& state() {
  static State* const s = static_cast<State*>(chipmesh_internal_log_state_v1());
  return *s;
}

uint32_t subsys_bit(const std::string& word) {
  static const struct {
    const char* name;
    uint32_t bit;
  } kNames[] = {{"INIT", INIT}, {"COMM", COMM}, {"WORKER", WORKER}, {"CHIP", CHIP},
                {"PLUGIN", PLUGIN}, {"KERNEL", KERNEL}, {"CLI", CLI}, {"ALL", ALL}};
  for (const auto& n : kNames)
    if (word == n.name) return n.bit;
  return 0;
}

uint64_t compute_gate() {
  int level = NONE;
  uint32_t mask = 0;
  try {
    if (knobs::is_set(knobs::Id::Debug)) {
      const std::string l = knobs::text(knobs::Id::Debug);
      level = l == "VERSION" ? VERSION : l == "WARN" ? WARN : l == "INFO" ? INFO : TRACE;
    }
    std::string list = knobs::text(knobs::Id::DebugSubsys);
    const bool negate = !list.empty() && list.front() == '^';
    if (negate) list.erase(0, 1);
    size_t start = 0;
    while (start <= list.size()) {
      size_t end = list.find(',', start);
      if (end == std::string::npos) end = list.size();
      mask |= subsys_bit(list.substr(start, end - start));
      start = end + 1;
    }
    if (negate) mask = ~mask;
  } catch (const std::exception& e) {
    // A bad logging knob must not break the program that logs: say so once.
    std::fprintf(stderr, "chipmesh: %s; logging is off\n", e.what());
    level = NONE;
  }
  return static_cast<uint64_t>(level) | (static_cast<uint64_t>(mask) << 32);
}

// "%h" -> host name, "%p" -> pid.
std::string expand_path(const std::string& tmpl) {
  std::string out;
  for (size_t i = 0; i < tmpl.size(); ++i) {
    if (tmpl[i] == '%' && i + 1 < tmpl.size() && (tmpl[i + 1] == 'h' || tmpl[i + 1] == 'p')) {
      if (tmpl[i + 1] == 'h') {
        char host[256] = "";
        gethostname(host, sizeof host - 1);
        out += host;
      } else {
        out += std::to_string(getpid());
      }
      ++i;
    } else {
      out += tmpl[i];
    }
  }
  return out;
}

// The descriptor lines go to; opened again in a forked child (its %p differs).
int output_fd(State& st) {
  if (!knobs::is_set(knobs::Id::DebugFile)) return STDERR_FILENO;
  if (st.fd >= 0 && st.fd_pid == getpid()) return st.fd;
  // The parent's descriptor is the child's too: leave it open for the parent.
  const std::string path = expand_path(knobs::text(knobs::Id::DebugFile));
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    std::fprintf(stderr, "chipmesh: CHIPMESH_DEBUG_FILE='%s': cannot open: %s; logging to stderr\n", path.c_str(),
                 std::strerror(errno));
    fd = STDERR_FILENO;
  }
  st.fd = fd;
  st.fd_pid = getpid();
  return fd;
}

}  // namespace

std::atomic<uint64_t>& gate() { return state().gate; }

std::mutex& output_mutex() { return state().mu; }

uint64_t read_gate() {
  State& st = state();
  const uint64_t v = compute_gate();
  st.gate.store(v, std::memory_order_relaxed);
  if ((v & 0xff) >= VERSION) {
    bool tell = false;
    {
      std::lock_guard<std::mutex> lock(st.mu);
      tell = !st.version_told;
      st.version_told = true;
    }
    if (tell) write(VERSION, INIT, "chipmesh version %s", CHIPMESH_VERSION_STRING);
  }
  return v;
}

void knobs_changed() {
  State& st = state();
  std::lock_guard<std::mutex> lock(st.mu);
  if (st.fd >= 0 && st.fd != STDERR_FILENO && st.fd_pid == getpid()) close(st.fd);
  st.fd = -1;
  st.fd_pid = -1;
  st.gate.store(kUnread, std::memory_order_relaxed);
}

}  // namespace detail

const char* level_name(Level level) {
  switch (level) {
    case NONE: return "NONE";
    case VERSION: return "VERSION";
    case WARN: return "WARN";
    case INFO: return "INFO";
    case TRACE: return "TRACE";
  }
  return "?";
}

const char* subsys_name(uint32_t subsys) {
  switch (subsys) {
    case INIT: return "INIT";
    case COMM: return "COMM";
    case WORKER: return "WORKER";
    case CHIP: return "CHIP";
    case PLUGIN: return "PLUGIN";
    case KERNEL: return "KERNEL";
    case CLI: return "CLI";
    default: return "ALL";
  }
}

void set_identity(int chip, int rank) {
  detail::State& st = detail::state();
  st.chip.store(chip, std::memory_order_relaxed);
  st.rank.store(rank, std::memory_order_relaxed);
}

void write(Level level, uint32_t subsys, const char* fmt, ...) {
  const int saved_errno = errno;  // a log line must not change what the caller reports
  detail::State& st = detail::state();
  static thread_local char host[64] = "";
  if (host[0] == '\0' && gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "?");
  char line[2048];
  int n = 0;
  const int chip = st.chip.load(std::memory_order_relaxed);
  const int rank = st.rank.load(std::memory_order_relaxed);
  n = std::snprintf(line, sizeof line, "%s:%d:%ld ", host, static_cast<int>(getpid()),
                    static_cast<long>(syscall(SYS_gettid)));
  if (chip >= 0 && rank >= 0)
    n += std::snprintf(line + n, sizeof line - n, "[chip %d rank %d] ", chip, rank);
  else if (chip >= 0)
    n += std::snprintf(line + n, sizeof line - n, "[chip %d] ", chip);
  n += std::snprintf(line + n, sizeof line - n, "%s %s ", level_name(level), subsys_name(subsys));
  va_list ap;
  va_start(ap, fmt);
  int body = std::vsnprintf(line + n, sizeof line - n, fmt, ap);
  va_end(ap);
  if (body < 0) body = 0;
  n = std::min<int>(n + body, static_cast<int>(sizeof line) - 2);
  line[n++] = '\n';
  std::lock_guard<std::mutex> lock(st.mu);
  int fd = STDERR_FILENO;
  try {
    fd = detail::output_fd(st);
  } catch (...) {
  }
  // One write(2) per line: lines of several processes appending to one file
  // do not interleave.
  ssize_t rc = ::write(fd, line, static_cast<size_t>(n));
  (void)rc;
  errno = saved_errno;
}

}  // namespace chipmesh::log
