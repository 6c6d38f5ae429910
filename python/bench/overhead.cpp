// The C++ reference for python/bench/overhead.py: the time of Worker::init()
// for N sim chips (default 4) and of one empty run(), without Python.
// Prints one JSON object: {"chips": N, "init_ms": [...], "empty_run_us": [...]}.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "chipmesh/worker.h"

int main(int argc, char** argv) {
  const int chips = argc > 1 ? std::atoi(argv[1]) : 4;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 5;
  const int runs = argc > 3 ? std::atoi(argv[3]) : 200;
  using Clock = std::chrono::steady_clock;
  std::vector<double> init_ms, run_us;
  try {
    for (int r = 0; r < reps; ++r) {
      chipmesh::WorkerConfig cfg;
      for (int i = 0; i < chips; ++i) cfg.device_ids.push_back(i);
      chipmesh::Worker w(cfg);
      auto t0 = Clock::now();
      w.init();
      init_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      if (r == 0) {
        w.run([](chipmesh::Orchestrator&) {});  // warm-up
        for (int k = 0; k < runs; ++k) {
          auto t1 = Clock::now();
          w.run([](chipmesh::Orchestrator&) {});
          run_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t1).count());
        }
      }
      w.close();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "chipmesh_overhead_cpp: %s\n", e.what());
    return 1;
  }
  auto list = [](const std::vector<double>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s.append(i ? ", " : "").append(std::to_string(v[i]));
    return s + "]";
  };
  std::printf("{\"chips\": %d, \"init_ms\": %s, \"empty_run_us\": %s}\n", chips, list(init_ms).c_str(),
              list(run_us).c_str());
  return 0;
}
