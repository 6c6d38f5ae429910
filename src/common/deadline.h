// A point in time on the monotonic clock that every wait is bounded by.
#pragma once

#include <algorithm>
#include <chrono>

namespace chipmesh {

class Deadline {
 public:
  using clock = std::chrono::steady_clock;
  explicit Deadline(std::chrono::nanoseconds budget) : budget_(budget), end_(clock::now() + budget) {}
  bool expired() const { return clock::now() >= end_; }
  // Remaining time, capped at `slice` so waiters wake to re-check liveness.
  std::chrono::nanoseconds next_slice(std::chrono::nanoseconds slice) const {
    auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(end_ - clock::now());
    return std::max(std::chrono::nanoseconds(0), std::min(left, slice));
  }
  std::chrono::nanoseconds budget() const { return budget_; }
  long long budget_ms() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(budget_).count();
  }

 private:
  std::chrono::nanoseconds budget_;
  clock::time_point end_;
};

}  // namespace chipmesh
