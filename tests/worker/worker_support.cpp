#include "worker/worker_support.h"

#include <gtest/gtest.h>

#include "common/process.h"

namespace chipmesh::testing {

WorkerConfig comm_config(int n, const std::string& rootinfo, size_t window, const std::vector<ChipBufferSpec>& buffers) {
  WorkerConfig cfg;
  for (int i = 0; i < n; ++i) {
    cfg.device_ids.push_back(i);
    ChipBootstrapConfig c;
    c.comm = ChipCommBootstrapConfig{i, n, rootinfo, window};
    c.buffers = buffers;
    cfg.chip_bootstrap_configs.push_back(c);
  }
  return cfg;
}

Task task(const std::string& kernel, std::vector<TensorArg> tensors, std::vector<uint64_t> scalars,
          const std::string& library) {
  Task t;
  t.kernel = kernel;
  t.library = library;
  t.tensors = std::move(tensors);
  t.scalars = std::move(scalars);
  return t;
}

void first_cpu_of(const cpu_set_t& all, cpu_set_t& one) {
  int home = 0;
  while (!CPU_ISSET(home, &all)) ++home;
  CPU_ZERO(&one);
  CPU_SET(home, &one);
}

bool two_cpus_or_more(cpu_set_t& all, cpu_set_t& one) {
  if (sched_getaffinity(0, sizeof all, &all) != 0 || CPU_COUNT(&all) < 2) return false;
  first_cpu_of(all, one);
  return true;
}

int last_cpu(pid_t pid) { return process::info(pid).last_cpu; }

void expect_apart_after_work(const pid_t (&chips)[2], const cpu_set_t& allowed, const cpu_set_t& one, int stacked,
                             int step, int limit, const std::function<void(int)>& work, const char* units) {
  for (pid_t p : chips) EXPECT_EQ(sched_setaffinity(p, sizeof one, &one), 0);
  work(stacked);
  for (pid_t p : chips) EXPECT_EQ(sched_setaffinity(p, sizeof allowed, &allowed), 0);
  int done = 0;
  for (; last_cpu(chips[0]) == last_cpu(chips[1]) && done < limit; done += step) work(step);
  EXPECT_NE(last_cpu(chips[0]), last_cpu(chips[1]))
      << "both chips still on CPU " << last_cpu(chips[0]) << " after " << done << " " << units;
  ::testing::Test::RecordProperty(units, done);
}

}  // namespace chipmesh::testing
