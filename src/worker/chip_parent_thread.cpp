#include "worker/chip_parent_thread.h"

#include <sys/resource.h>

#include <cstring>
#include <string>
#include <system_error>

#include "chipmesh/errors.h"
#include "common/process.h"

namespace chipmesh::worker {

ChipParentThread::ChipParentThread(const std::function<void()>& fork) {
  try {
    thread_ = std::thread([this, &fork] {
      std::exception_ptr error;
      try {
        fork();
      } catch (...) {
        error = std::current_exception();
      }
      std::unique_lock<std::mutex> lock(mu_);
      error_ = error;
      forked_ = true;
      cv_.notify_all();
      cv_.wait(lock, [this] { return stop_; });
    });
  } catch (const std::system_error& e) {
    const int err = e.code().value();
    throw DeviceError(std::string("Worker::init: cannot start the thread the chips are forked from: ") +
                      std::strerror(err) +
                      process::thread_limit_hint(err) +
                      "; no chip was forked");
  }
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return forked_; });
  if (error_) {
    stop_ = true;
    cv_.notify_all();
    lock.unlock();
    thread_.join();
    std::rethrow_exception(error_);
  }
}

ChipParentThread::~ChipParentThread() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

}  // namespace chipmesh::worker
