// The floor of dispatch: a raw shared-memory ping-pong between this process
// and one forked child, through two 32-bit words in an anonymous shared page.
// Spin: both sides busy-wait. Futex: both sides sleep in FUTEX_WAIT at once
// (no spinning) and the writer FUTEX_WAKEs.
#pragma once

#include <vector>

namespace chipmesh::bench {

enum class PingPongKind { Spin, Futex };

// A child process parked on the shared page, answering pings.
class PingPong {
 public:
  explicit PingPong(PingPongKind kind);  // forks; std::runtime_error on failure
  ~PingPong();                           // stops and reaps the child
  PingPong(const PingPong&) = delete;
  PingPong& operator=(const PingPong&) = delete;
  // `rounds` round trips; appends each one's time in microseconds.
  void measure(int rounds, std::vector<double>& us);

 private:
  struct Page;
  PingPongKind kind_;
  Page* page_ = nullptr;
  int child_ = -1;
  unsigned seq_ = 0;
};

}  // namespace chipmesh::bench
