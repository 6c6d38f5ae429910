#include "worker/janitor.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <system_error>

namespace chipmesh::worker {
namespace {

bool stale(const chipmesh_transport_v1_t* t, int kind, const std::string& name) {
  int verdict = CHIPMESH_LEFTOVER_NOT_OURS;
  char reason[256] = "";
  return t->inspect_leftover(kind, name.c_str(), &verdict, reason, sizeof(reason)) == CHIPMESH_SUCCESS &&
         verdict == CHIPMESH_LEFTOVER_STALE;
}

bool mine(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid();
}

}  // namespace

std::vector<std::string> remove_stale_leftovers(const chipmesh_transport_v1_t* t,
                                                const std::vector<std::string>& rootinfo_paths) {
  std::vector<std::string> removed;
  if (!t || !t->inspect_leftover) return removed;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/dev/shm", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("chipmesh", 0) != 0 || !mine(entry.path().string())) continue;
    if (stale(t, CHIPMESH_LEFTOVER_SHM, name) && shm_unlink(("/" + name).c_str()) == 0) removed.push_back(name);
  }
  for (const std::string& path : rootinfo_paths)
    if (mine(path) && stale(t, CHIPMESH_LEFTOVER_FILE, path) && ::unlink(path.c_str()) == 0) removed.push_back(path);
  return removed;
}

}  // namespace chipmesh::worker
