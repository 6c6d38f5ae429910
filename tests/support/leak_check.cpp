#include "support/leak_check.h"

#include <sys/mman.h>
#include <unistd.h>

#include <chrono>

#include <cstdlib>
#include <random>
#include <cstdio>
#include <set>

#include "support/fork_ranks.h"

#include <gtest/gtest.h>

namespace chipmesh::testing {

std::vector<std::string> chipmesh_shm_objects() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/dev/shm", ec)) {
    std::string name = entry.path().filename().string();
    if (name.rfind("chipmesh", 0) == 0) names.push_back(name);
  }
  return names;
}

ScratchDir::ScratchDir() {
  const char* tmp = std::getenv("TMPDIR");
  std::filesystem::path base = (tmp && *tmp) ? tmp : "/tmp";
  std::random_device rd;
  for (;;) {
    path_ = base / ("chipmesh-test-" + std::to_string(getpid()) + "-" + std::to_string(rd()));
    if (std::filesystem::create_directory(path_)) break;
  }
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::vector<std::string> ScratchDir::entries() const {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(path_, ec))
    names.push_back(entry.path().filename().string());
  return names;
}

namespace {

// True for objects this test process made: communicator objects carry their
// creator's pid ("/chipmesh_<pid hex>_..."), which must be this process or a
// rank it forked; test staging names carry this process's pid in decimal.
// Objects of other jobs on a shared machine are neither reported nor touched.
bool made_by_this_test(const std::string& name) {
  unsigned pid = 0;
  char tail = 0;
  if (std::sscanf(name.c_str(), "chipmesh_%8x_%*8x_%c", &pid, &tail) == 2 && name.size() > 18 && name[17] == '_') {
    return static_cast<pid_t>(pid) == getpid() || forked_pids().count(static_cast<pid_t>(pid)) > 0;
  }
  const std::string me = std::to_string(getpid());
  return name.find("_" + me + "_") != std::string::npos ||
         (name.size() > me.size() && name.compare(name.size() - me.size() - 1, std::string::npos, "_" + me) == 0);
}

class LeakListener : public ::testing::EmptyTestEventListener {
  void OnTestEnd(const ::testing::TestInfo&) override {
    std::string list;
    for (const auto& n : chipmesh_shm_objects()) {
      if (!made_by_this_test(n)) continue;
      list += " /" + n;
      shm_unlink(("/" + n).c_str());  // so later tests start clean
    }
    if (!list.empty()) ADD_FAILURE() << "chipmesh shared-memory objects left in /dev/shm:" << list;
  }
};

}  // namespace

void install_leak_listener() {
  ::testing::UnitTest::GetInstance()->listeners().Append(new LeakListener);
}


size_t shm_objects_of(pid_t pid) {
  char prefix[32];
  std::snprintf(prefix, sizeof prefix, "chipmesh_%08x_", static_cast<unsigned>(pid));
  size_t n = 0;
  for (const auto& name : chipmesh_shm_objects())
    if (name.rfind(prefix, 0) == 0 || name.rfind(std::string("/") + prefix, 0) == 0) ++n;
  return n;
}

}  // namespace chipmesh::testing
