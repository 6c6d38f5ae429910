// A program under a limit bring-up needs more of: the address space
// (`ulimit -v`, RLIMIT_AS: maps of windows and staging count whether or not
// they are touched) or open files (`ulimit -n`, RLIMIT_NOFILE: staging,
// pidfds, windows). Wherever bring-up runs out, the error must name the
// limit, the program must go on (an allocation failing on one of the
// Worker's own threads once ended it: std::terminate), and nothing may stay
// behind: in /dev/shm, in the process's address space, in its descriptor
// table. Each limit steps through the range where bring-up goes from
// failing to working.
#include <dirent.h>
#include <sys/resource.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "chipmesh/errors.h"
#include "chipmesh/worker.h"
#include "support/fork_ranks.h"
#include "worker/worker_support.h"

namespace chipmesh::testing {
namespace {

// This process's address space now (VmSize), in bytes.
size_t address_space_now() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmSize:", 0) == 0) return std::stoull(line.substr(7)) * 1024;
  return 0;
}

// This process's shared mappings (/proc/self/maps lines whose permissions
// end in 's': the Worker's region, arenas, windows, staging), one line each.
std::vector<std::string> shared_mappings() {
  std::ifstream maps("/proc/self/maps");
  std::vector<std::string> out;
  for (std::string line; std::getline(maps, line);) {
    const size_t perms = line.find(' ');
    if (perms != std::string::npos && perms + 4 < line.size() && line[perms + 4] == 's') out.push_back(line);
  }
  return out;
}

// This process's open descriptors.
size_t open_descriptors() {
  size_t n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (readdir(d)) ++n;
    closedir(d);
  }
  return n;  // counts ".", ".." and the directory's own descriptor: the same each time
}

// `chips` chips, 8 MiB windows, a staged input and a staged output of 2 MiB each:
// bring-up, an allreduce, the flush, close. "" when all of it worked.
std::string bring_up_and_run(int chips = 4) {
  constexpr size_t kCount = (size_t{2} << 20) / 4;
  try {
    Worker w(comm_config(chips, "", size_t{8} << 20,
                         {{"x", DataType::INT32, kCount, kCount * 4, "window", true, false},
                          {"y", DataType::INT32, kCount, kCount * 4, "window", false, true}}));
    std::vector<int> all;
    for (int c = 0; c < chips; ++c) {
      all.push_back(c);
      w.stage_input(c, "x", kCount * 4);
      w.stage_output(c, "y", kCount * 4);
    }
    w.init();
    w.run([&](Orchestrator& o) {
      o.allreduce(w.world(), "x", "y", kCount, DataType::INT32, ReduceOp::SUM);
      o.flush_outputs(all);
    });
    w.close();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::bad_alloc&) {  // an allocation of the calling thread: the caller's to handle
    return "std::bad_alloc";
  }
  return "";
}

// A sweep's bring-ups: each one that failed must name the limit.
struct Sweep {
  // `names`: what every error says; `bad_alloc_ok`: an allocation of the
  // calling thread may also fail as itself.
  explicit Sweep(std::string names, bool bad_alloc_ok = false) : names(std::move(names)), bad_alloc_ok(bad_alloc_ok) {}
  std::string names;
  bool bad_alloc_ok;
  int failed = 0, worked = 0;
  std::string first_failure;

  void add(const std::string& error, uint64_t limit) {
    if (error.empty()) {
      ++worked;
      return;
    }
    ++failed;
    if (first_failure.empty()) first_failure = error;
    if (!(bad_alloc_ok && error == "std::bad_alloc")) {
      CM_REQUIRE(error.find(names) != std::string::npos) << "limit " << limit << ": " << error;
    }
  }
  // The sweep crossed from failing to working.
  void finish() const {
    CM_REQUIRE(failed > 0) << "bring-up never ran out: the sweep starts too high";
    CM_REQUIRE(worked > 0) << "bring-up never worked: the sweep ends too low; the first failure: " << first_failure;
    rank_note(std::to_string(failed) + " limits failed, " + std::to_string(worked) + " worked; the first: " +
              first_failure);
  }
};

// Runs `body` in a process of its own (it changes the process's limits).
void in_a_process(const std::function<void(int)>& body) {
  auto outcomes = fork_ranks(1, body, std::chrono::seconds(300));
  ASSERT_EQ(outcomes.size(), 1u);
  EXPECT_TRUE(outcomes[0].ok()) << outcomes[0].describe();
  ::testing::Test::RecordProperty("outcome", outcomes[0].message);
}

TEST(WorkerAddressSpaceLimit, BringUpFailsNamingTheLimitWhereverItRunsOut) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "the sanitizers' shadow memory needs an unlimited address space";
#endif
  in_a_process([](int) {
    const size_t base = address_space_now();
    CM_REQUIRE(base > 0) << "no VmSize in /proc/self/status";
    const auto shared_before = shared_mappings();
    Sweep sweep{"RLIMIT_AS, the address-space limit `ulimit -v` sets, is ", true};
    for (size_t extra = size_t{8} << 20; extra <= size_t{256} << 20; extra += size_t{8} << 20) {
      struct rlimit rl{static_cast<rlim_t>(base + extra), RLIM_INFINITY};
      CM_REQUIRE(setrlimit(RLIMIT_AS, &rl) == 0) << std::strerror(errno);
      const std::string error = bring_up_and_run();
      rl.rlim_cur = RLIM_INFINITY;
      CM_REQUIRE(setrlimit(RLIMIT_AS, &rl) == 0) << std::strerror(errno);
      sweep.add(error, base + extra);
    }
    CM_REQUIRE(bring_up_and_run().empty()) << "without the limit";
    // Every failure released what it mapped (a failed fork phase once kept
    // the Worker's shared region: 19 MiB of address space each time).
    const auto shared_after = shared_mappings();
    CM_REQUIRE(shared_after.size() == shared_before.size())
        << shared_after.size() - shared_before.size() << " shared mappings more than before, the last: "
        << shared_after.back();
    sweep.finish();
  });
}

TEST(WorkerOpenFilesLimit, BringUpFailsNamingTheLimitWhereverItRunsOut) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // The runtimes need descriptors of their own: UBSan's vptr check probes
  // memory through a pipe, and without one reports every object's vptr
  // invalid (seen in CI's ASan + UBSan run, the test alone in its process).
  GTEST_SKIP() << "the sanitizers' runtimes need descriptors the sweep takes away";
#endif
  in_a_process([](int) {
    const size_t base = open_descriptors();
    struct rlimit original{};
    CM_REQUIRE(getrlimit(RLIMIT_NOFILE, &original) == 0) << std::strerror(errno);
    Sweep sweep{"RLIMIT_NOFILE (open files) = "};
    // 8 chips: each has a staged input and output, a pidfd and a window.
    for (rlim_t extra = 1; extra <= 48; extra += 1) {
      struct rlimit rl{static_cast<rlim_t>(base) + extra, original.rlim_max};
      CM_REQUIRE(setrlimit(RLIMIT_NOFILE, &rl) == 0) << std::strerror(errno);
      const std::string error = bring_up_and_run(8);
      CM_REQUIRE(setrlimit(RLIMIT_NOFILE, &original) == 0) << std::strerror(errno);
      CM_REQUIRE(open_descriptors() == base)
          << open_descriptors() - base << " descriptors more than before after a limit of " << base + extra
          << (error.empty() ? std::string(" (it worked)") : ": " + error);
      sweep.add(error, base + extra);
    }
    sweep.finish();
  });
}

}  // namespace
}  // namespace chipmesh::testing
