// The transport's leftover hook (inspect_leftover) for `chipmesh clean`: the
// sim recognises its shared-memory names (comm_layout.h), its rootinfo files
// and the rendezvous store's temp files, and judges them by their owner.
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

#include "chipmesh/errors.h"
#include "chipmesh/transport_abi.h"
#include "common/process.h"
#include "common/status_map.h"
#include "rendezvous/file_store.h"
#include "rootinfo.h"

namespace chipmesh::sim {
LastError& last_error();  // comm.cpp

namespace {

struct Verdict {
  int verdict = CHIPMESH_LEFTOVER_NOT_OURS;
  std::string reason;
};

bool hex_run(const std::string& s, size_t pos, size_t n) {
  if (pos + n > s.size()) return false;
  for (size_t i = pos; i < pos + n; ++i)
    if (!std::isxdigit(static_cast<unsigned char>(s[i]))) return false;
  return true;
}

// Decided by whether `pid` (who made it) still runs.
Verdict by_owner(pid_t pid) {
  process::Info info = process::info(pid);
  return {info.state == process::State::Alive ? CHIPMESH_LEFTOVER_LIVE : CHIPMESH_LEFTOVER_STALE,
          process::describe("owner", pid, info.state)};
}

Verdict inspect_shm(const std::string& name) {
  // ctrl_shm_name / window_shm_name: chipmesh_<8 hex creator pid>_<8 hex token>_<suffix>
  const std::string prefix = "chipmesh_";
  const size_t p = prefix.size();
  if (name.rfind(prefix, 0) != 0 || !hex_run(name, p, 8) || name.size() <= p + 8 || name[p + 8] != '_' ||
      !hex_run(name, p + 9, 8) || name.size() <= p + 18 || name[p + 17] != '_')
    return {CHIPMESH_LEFTOVER_NOT_OURS, "not a sim communicator name"};
  unsigned long long pid = std::strtoull(name.substr(p, 8).c_str(), nullptr, 16);
  if (pid == 0 || pid > 0x7fffffffULL) return {CHIPMESH_LEFTOVER_NOT_OURS, "not a sim communicator name (pid 0)"};
  return by_owner(static_cast<pid_t>(pid));
}

Verdict inspect_file(const std::string& path) {
  const std::string file_name = path.substr(path.rfind('/') == std::string::npos ? 0 : path.rfind('/') + 1);
  if (std::optional<pid_t> pid = rendezvous::FileStore::temp_owner(file_name)) {
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid())
      return {CHIPMESH_LEFTOVER_NOT_OURS, "not a regular file of this user"};
    return by_owner(*pid);
  }
  rendezvous::Opened opened = rendezvous::make_store(path);
  std::string why;
  std::optional<rendezvous::Bytes> value = opened.store->check(opened.key, &why);
  RootInfo ri;
  if (!value || !decode_rootinfo(*value, &ri, &why)) return {CHIPMESH_LEFTOVER_NOT_OURS, why};
  const pid_t root = static_cast<pid_t>(ri.root_pid);
  process::Info info = process::info(root);
  const std::string rank0 = "rank 0 pid " + std::to_string(root);
  if (info.state != process::State::Alive)
    return {CHIPMESH_LEFTOVER_STALE, process::describe("rank 0", root, info.state)};
  if (info.start_time == 0 || ri.root_start == 0)
    return {CHIPMESH_LEFTOVER_LIVE, rank0 + " runs and its start time cannot be compared"};
  if (info.start_time == ri.root_start) return {CHIPMESH_LEFTOVER_LIVE, rank0 + " is alive"};
  return {CHIPMESH_LEFTOVER_STALE, rank0 + " now names another process (start time differs)"};
}

}  // namespace

int inspect_leftover(int kind, const char* name, int* verdict, char* reason, size_t reason_size) {
  return last_error().guard([&] {
    if (!name || !verdict) throw ConfigError("inspect_leftover: null name or verdict pointer");
    Verdict v;
    if (kind == CHIPMESH_LEFTOVER_SHM) v = inspect_shm(name);
    else if (kind == CHIPMESH_LEFTOVER_FILE) v = inspect_file(name);
    else throw ConfigError("inspect_leftover: unknown kind " + std::to_string(kind));
    *verdict = v.verdict;
    if (reason && reason_size > 0) std::snprintf(reason, reason_size, "%s", v.reason.c_str());
  });
}

}  // namespace chipmesh::sim
