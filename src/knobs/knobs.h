// Every CHIPMESH_* environment variable, declared once (knobs.def), parsed
// strictly, read once per process and cached. Nothing else in chipmesh calls
// getenv/setenv for a CHIPMESH_* name: it asks this registry.
//
// One registry per process: libchipmesh, the platform plugins and the tools
// each link a copy of this code (chipmesh_common), and every copy resolves to
// the same state through one exported, versioned symbol (see knobs.cpp), so a
// value set or reloaded in one is seen by all.
#pragma once

#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace chipmesh::knobs {

enum class Type { Integer, String, Enum, List };

enum class Id : int {
#define CHIPMESH_KNOB(id, ...) id,
#include "knobs/knobs.def"
#undef CHIPMESH_KNOB
};

// One row of the table in knobs.def.
struct Spec {
  Id id;
  const char* name;           // "CHIPMESH_..."
  Type type;
  const char* default_value;  // as text; "" = empty
  long long min, max;         // Integer: the accepted range
  const char* choices;        // Enum, List: '|'-separated accepted words
  bool test_only;             // a test hook, not for users
  const char* doc;            // one line
};

// The whole table, in declaration order.
const std::vector<Spec>& table();
const Spec& spec(Id id);
const char* type_name(Type t);

// Where a value came from.
enum class Source { Default, Environment, Process };
const char* source_name(Source s);  // "default", "environment", "set by this process"

// Typed reads of the cached value. A value that is set but invalid throws
// ConfigError naming the variable and the value (on every read).
long long integer(Id id);
std::string text(Id id);  // String; Enum (upper-cased); List (upper-cased, as given)
bool is_set(Id id);       // set (environment or process) and not empty

// What `chipmesh env` prints: every knob as this process sees it.
struct Entry {
  const Spec* spec;
  std::string value;  // effective value (the default when unset)
  Source source;
  std::string error;  // non-empty when the value set is invalid
};
std::vector<Entry> snapshot();

// A CHIPMESH_* variable of the environment that names no knob: a typo (a
// knob misspelt is silently not set), or a variable of a script
// (CHIPMESH_BUILD_DIR of scripts/test.sh). `nearest`: the knob whose name
// is at most 3 edits away, the closest, or empty. In environment order.
struct Unknown {
  std::string name, value, nearest;
};
std::vector<Unknown> unknown_in_environment();

// Throws the ConfigError of the first invalid knob, if any.
void check_all();

// Gives a knob a value for this process (and the processes it forks from
// now on) without touching the environment, e.g. the job token a launcher
// picked. Validated like an environment value (ConfigError when invalid).
void set_for_process(Id id, std::string value);

// Re-reads the environment. For tests that change it between cases, and for
// a forked child that sets its environment before using chipmesh. Values set
// with set_for_process() are dropped. Not for concurrent use with other
// threads that are reading knobs.
void reload();

// The one job-token generator: CHIPMESH_JOB_TOKEN when set (environment or
// set_for_process), otherwise a new random "<prefix>-<pid>-<hex>".
std::string new_job_token(std::string_view prefix);
// "<prefix>-<pid>-<16 random hex digits>", whatever CHIPMESH_JOB_TOKEN says.
std::string unique_job_token(std::string_view prefix);
// A token no other job has: unique_job_token(), after CHIPMESH_JOB_TOKEN's
// value (cut so that the whole fits sim's 63 bytes) when that is set.
std::string job_token_of_one_job(std::string_view prefix);
// new_job_token(), and make it this process's CHIPMESH_JOB_TOKEN (seen by the
// processes it forks from now on). Returns the token.
std::string ensure_job_token(std::string_view prefix);

// Test hook (CHIPMESH_TEST_PAUSE_AT): when the knob names `phase`, prints
// "chipmesh: test pause at <phase> (pid N)" to stderr and blocks in pause()
// until a signal ends the process. A no-op otherwise (one cached compare).
void test_pause_point(const char* phase);

// The process-wide lock of the registry (held while a snapshot is made); a
// fork holds it (worker/fork_locks.h) so that no child starts with it held.
std::mutex& registry_mutex();

}  // namespace chipmesh::knobs
