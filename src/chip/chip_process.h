// The life of one chip process after fork: bring-up, then serving requests
// from its ring until shutdown. Never returns.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "chipmesh/types.h"
#include "request_ring/chip_shared.h"

namespace chipmesh::worker {

struct ChipProcessArgs {
  int index;
  int num_chips;  // how many chip processes share the cores (spin budget)
  int device_id;
  std::string platform;
  const ChipBootstrapConfig* config;
  ChipShared* shared;
  SharedHeader* header;
  pid_t parent;
  std::string job_token;
  int arena_fd;          // this chip's host arena (-1: none), handed to the platform
  uint64_t arena_bytes;
  int window_file;       // this chip's window file (-1: none), holding inputs staged in place
  uint64_t window_file_offset;  // where its window starts in it
  bool window_file_shared;      // the one file of every chip's window (adopt_window_at)
  // The window files open here (never null; WindowFiles::open_fds), at the
  // parent's numbers: the communicator maps its peers' windows through them
  // (sim's map_held_window); closed once bring-up is done.
  const std::vector<int>* window_files;
};

[[noreturn]] void run_chip_process(const ChipProcessArgs& args);

}  // namespace chipmesh::worker
