#include "knobs/knobs.h"

#include <signal.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <vector>

#include "chipmesh/errors.h"
#include "logging/log.h"

namespace chipmesh::knobs {
namespace detail {

struct Value {
  std::string text;  // canonical text (the default when unset)
  long long integer = 0;
  Source source = Source::Default;
  bool set = false;  // set and not empty
  std::string error;
};

struct Snapshot {
  std::vector<Value> values;  // by Id
};

// The process-wide state. Its layout is shared by every copy of this code in
// one process (see chipmesh_internal_knobs_state_v1): change it only together
// with the symbol's version suffix.
struct State {
  std::mutex mu;
  std::atomic<const Snapshot*> current{nullptr};
  std::vector<std::unique_ptr<Snapshot>> history;  // readers may still hold an older one
  std::vector<std::optional<std::string>> process_values;  // set_for_process(), by Id
};

}  // namespace detail
}  // namespace chipmesh::knobs

// libchipmesh, each platform plugin and each tool link their own copy of
// chipmesh_common, with hidden symbols. This one function is exported
// (default visibility, C linkage) so that the dynamic linker binds every
// copy's call to the first definition in the process: one registry per
// process, whichever module comes first (libchipmesh, which binds its other
// calls to itself, lists it in src/knobs/interposable.list). The version
// suffix changes whenever detail::State changes.
extern "C" __attribute__((visibility("default"))) void* chipmesh_internal_knobs_state_v1() {
  static auto* state = new chipmesh::knobs::detail::State();  // never destroyed: read until _exit
  return state;
}

namespace chipmesh::knobs {
namespace {

using detail::Snapshot;
using detail::State;
using detail::Value;

State& state() {
  static State* const s = static_cast<State*>(chipmesh_internal_knobs_state_v1());
  return *s;
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(sep, start);
    if (end == std::string_view::npos) end = s.size();
    out.emplace_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// The canonical spelling of `word` among `choices`, or nothing.
std::optional<std::string> choose(const char* choices, std::string_view word) {
  for (const auto& c : split(choices, '|'))
    if (upper(c) == upper(word)) return c;
  return std::nullopt;
}

std::string describe_choices(const char* choices) {
  std::string out;
  for (const auto& c : split(choices, '|')) out += (out.empty() ? "" : ", ") + c;
  return out;
}

// Parses `raw` for `s` into `v` (text, integer) or sets v.error.
void parse(const Spec& s, const std::string& raw, Value& v) {
  const std::string head = std::string(s.name) + "='" + raw + "' ";
  switch (s.type) {
    case Type::Integer: {
      errno = 0;
      char* end = nullptr;
      long long value = std::strtoll(raw.c_str(), &end, 10);
      if (errno != 0 || end == raw.c_str() || *end != '\0' || value < s.min || value > s.max) {
        v.error = head + "is not an integer in [" + std::to_string(s.min) + ", " + std::to_string(s.max) + "]";
        return;
      }
      v.integer = value;
      v.text = std::to_string(value);
      return;
    }
    case Type::String:
      v.text = raw;
      return;
    case Type::Enum: {
      auto word = choose(s.choices, raw);
      if (!word) {
        v.error = head + "is not one of " + describe_choices(s.choices);
        return;
      }
      v.text = *word;
      return;
    }
    case Type::List: {
      std::string_view body = raw;
      std::string out;
      if (!body.empty() && body.front() == '^') {
        out = "^";
        body.remove_prefix(1);
      }
      bool first = true;
      for (const auto& w : split(body, ',')) {
        auto word = choose(s.choices, w);
        if (!word) {
          v.error = head + "has '" + w + "', not one of " + describe_choices(s.choices);
          return;
        }
        out += (first ? "" : ",") + *word;
        first = false;
      }
      v.text = out;
      return;
    }
  }
}

Value evaluate(const Spec& s, const std::optional<std::string>& process_value) {
  Value v;
  std::optional<std::string> raw;
  if (process_value) {
    raw = *process_value;
    v.source = Source::Process;
  } else if (const char* env = std::getenv(s.name); env != nullptr) {  // the only getenv of a knob
    raw = env;
    v.source = Source::Environment;
  }
  if (!raw || raw->empty()) {  // unset or empty: the default
    if (*s.default_value != '\0') parse(s, s.default_value, v);
    if (!raw) v.source = Source::Default;
    return v;
  }
  v.set = true;
  parse(s, *raw, v);
  if (!v.error.empty()) v.text = *raw;  // shown as given by `chipmesh env`
  return v;
}

// Builds and publishes a new snapshot. Caller holds st.mu.
const Snapshot* publish_locked(State& st) {
  const auto& t = table();
  st.process_values.resize(t.size());
  auto snap = std::make_unique<Snapshot>();
  snap->values.reserve(t.size());
  for (const Spec& s : t) snap->values.push_back(evaluate(s, st.process_values[static_cast<size_t>(s.id)]));
  const Snapshot* raw = snap.get();
  st.history.push_back(std::move(snap));
  st.current.store(raw, std::memory_order_release);
  return raw;
}

const Snapshot& current() {
  State& st = state();
  if (const Snapshot* s = st.current.load(std::memory_order_acquire)) return *s;
  std::lock_guard<std::mutex> lock(st.mu);
  if (const Snapshot* s = st.current.load(std::memory_order_acquire)) return *s;
  return *publish_locked(st);
}

const Value& value(Id id) {
  const Value& v = current().values[static_cast<size_t>(id)];
  if (!v.error.empty()) throw ConfigError(v.error);
  return v;
}

}  // namespace

const std::vector<Spec>& table() {
  static const std::vector<Spec> t = {
#define CHIPMESH_KNOB(id, name, type, def, lo, hi, choices, test_only, doc) \
  Spec{Id::id, name, Type::type, def, lo, hi, choices, test_only, doc},
#include "knobs/knobs.def"
#undef CHIPMESH_KNOB
  };
  return t;
}

const Spec& spec(Id id) { return table()[static_cast<size_t>(id)]; }

const char* type_name(Type t) {
  switch (t) {
    case Type::Integer: return "integer";
    case Type::String: return "string";
    case Type::Enum: return "enum";
    case Type::List: return "list";
  }
  return "?";
}

const char* source_name(Source s) {
  switch (s) {
    case Source::Default: return "default";
    case Source::Environment: return "environment";
    case Source::Process: return "set by this process";
  }
  return "?";
}

long long integer(Id id) { return value(id).integer; }

std::string text(Id id) { return value(id).text; }

bool is_set(Id id) { return value(id).set; }

std::vector<Entry> snapshot() {
  const Snapshot& s = current();
  std::vector<Entry> out;
  for (const Spec& sp : table()) {
    const Value& v = s.values[static_cast<size_t>(sp.id)];
    out.push_back(Entry{&sp, v.text, v.source, v.error});
  }
  return out;
}

namespace {

// Edits (insert, delete, substitute) from a to b.
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

}  // namespace

std::vector<Unknown> unknown_in_environment() {
  constexpr std::string_view kPrefix = "CHIPMESH_";
  std::vector<Unknown> out;
  for (char** e = environ; e && *e; ++e) {
    const std::string_view entry(*e);
    const size_t eq = entry.find('=');
    if (eq == std::string_view::npos || entry.substr(0, kPrefix.size()) != kPrefix) continue;
    const std::string_view name = entry.substr(0, eq);
    const auto& t = table();
    if (std::any_of(t.begin(), t.end(), [&](const Spec& sp) { return name == sp.name; })) continue;
    Unknown u{std::string(name), std::string(entry.substr(eq + 1)), ""};
    size_t best = 4;
    for (const Spec& sp : t)
      if (const size_t d = edit_distance(name, sp.name); d < best) {
        best = d;
        u.nearest = sp.name;
      }
    out.push_back(std::move(u));
  }
  return out;
}

void check_all() {
  for (const Value& v : current().values)
    if (!v.error.empty()) throw ConfigError(v.error);
}

std::mutex& registry_mutex() { return state().mu; }

void set_for_process(Id id, std::string value) {
  Value probe;
  parse(spec(id), value, probe);
  if (!probe.error.empty()) throw ConfigError(probe.error);
  State& st = state();
  {
    std::lock_guard<std::mutex> lock(st.mu);
    st.process_values.resize(table().size());
    st.process_values[static_cast<size_t>(id)] = std::move(value);
    publish_locked(st);
  }
  log::detail::knobs_changed();
}

void reload() {
  State& st = state();
  {
    std::lock_guard<std::mutex> lock(st.mu);
    st.process_values.assign(table().size(), std::nullopt);
    publish_locked(st);
  }
  log::detail::knobs_changed();
}

std::string new_job_token(std::string_view prefix) {
  if (is_set(Id::JobToken)) return text(Id::JobToken);
  return unique_job_token(prefix);
}

std::string unique_job_token(std::string_view prefix) {
  uint64_t v = 0;
  if (getrandom(&v, sizeof(v), 0) != static_cast<ssize_t>(sizeof(v)))
    v = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) * 0x9e3779b97f4a7c15ULL;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*s-%d-%016llx", static_cast<int>(std::min<size_t>(prefix.size(), 24)),
                prefix.data(), static_cast<int>(getpid()), static_cast<unsigned long long>(v));
  return buf;
}

std::string job_token_of_one_job(std::string_view prefix) {
  std::string token = unique_job_token(prefix);
  if (is_set(Id::JobToken) && !text(Id::JobToken).empty() && token.size() < 62)
    token = text(Id::JobToken).substr(0, 63 - 1 - token.size()) + "-" + token;
  return token;
}

std::string ensure_job_token(std::string_view prefix) {
  if (is_set(Id::JobToken)) return text(Id::JobToken);
  std::string token = new_job_token(prefix);
  set_for_process(Id::JobToken, token);
  return token;
}

void test_pause_point(const char* phase) {
  const Value& v = value(Id::TestPauseAt);
  if (!v.set || v.text != phase) return;
  char line[128];
  int n = std::snprintf(line, sizeof line, "chipmesh: test pause at %s (pid %d)\n", phase, static_cast<int>(getpid()));
  if (n > 0 && write(STDERR_FILENO, line, static_cast<size_t>(std::min<int>(n, sizeof line - 1))) < 0) {
    // Nobody to tell: pause anyway, the test's deadline ends it.
  }
  for (;;) pause();  // until a signal ends this process
}

}  // namespace chipmesh::knobs
