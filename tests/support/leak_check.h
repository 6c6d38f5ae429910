// Leftover checks every test gets: no chipmesh object in /dev/shm after a
// test, and per-test scratch directories (for rootinfo files) left empty.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

namespace chipmesh::testing {

// Names in /dev/shm that start with "chipmesh".
std::vector<std::string> chipmesh_shm_objects();

// The sim's shared-memory objects made by process `pid` (its names carry
// their creator's pid in hex).
size_t shm_objects_of(pid_t pid);

// A fresh directory under $TMPDIR for one test's rootinfo files; the
// destructor removes it. empty() tells whether anything was left in it.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::vector<std::string> entries() const;

 private:
  std::filesystem::path path_;
};

// Installs a gtest listener that fails any test after which /dev/shm holds a
// chipmesh object made by this test process or its forked ranks, and removes
// those objects so later tests start clean.
void install_leak_listener();

}  // namespace chipmesh::testing
