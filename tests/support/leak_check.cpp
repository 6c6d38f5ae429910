#include "support/leak_check.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <random>
#include <set>

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

// Compares /dev/shm before and after each test: an object that appeared
// during the test and is still there is the test's leak. Objects that existed
// before (another job's on a shared machine) are neither reported nor touched.
class LeakListener : public ::testing::EmptyTestEventListener {
  std::set<std::string> before_;
  void OnTestStart(const ::testing::TestInfo&) override {
    auto names = chipmesh_shm_objects();
    before_ = std::set<std::string>(names.begin(), names.end());
  }
  void OnTestEnd(const ::testing::TestInfo&) override {
    std::string list;
    for (const auto& n : chipmesh_shm_objects()) {
      if (before_.count(n)) continue;
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

}  // namespace chipmesh::testing
