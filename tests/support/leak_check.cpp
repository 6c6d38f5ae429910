#include "support/leak_check.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <random>

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

class LeakListener : public ::testing::EmptyTestEventListener {
  void OnTestEnd(const ::testing::TestInfo&) override {
    auto left = chipmesh_shm_objects();
    if (left.empty()) return;
    std::string list;
    for (const auto& n : left) {
      list += " /" + n;
      shm_unlink(("/" + n).c_str());
    }
    ADD_FAILURE() << "chipmesh shared-memory objects left in /dev/shm:" << list;
  }
};

}  // namespace

void install_leak_listener() {
  ::testing::UnitTest::GetInstance()->listeners().Append(new LeakListener);
}

}  // namespace chipmesh::testing
