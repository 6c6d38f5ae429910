// Helpers for the sim communicator tests (C API, linked directly).
#pragma once

#include <string>

#include "chipmesh/comm.h"
#include "support/fork_ranks.h"

namespace chipmesh::testing {

// comm_init that throws with comm_last_error() on failure.
inline CommHandle must_init(int rank, int nranks, const std::string& path) {
  CommHandle h = comm_init(rank, nranks, nullptr, path.c_str());
  CM_REQUIRE(h != nullptr) << "rank " << rank << ": " << comm_last_error();
  return h;
}

inline const CommContext* must_alloc(CommHandle h, size_t size) {
  uint64_t ctx = 0;
  int rc = comm_alloc_windows(h, size, &ctx);
  CM_REQUIRE(rc == 0) << comm_last_error();
  CM_REQUIRE(ctx != 0);
  return reinterpret_cast<const CommContext*>(ctx);
}

inline void must_barrier(CommHandle h) {
  int rc = comm_barrier(h);
  CM_REQUIRE(rc == 0) << comm_last_error();
}

inline void must_destroy(CommHandle h) {
  int rc = comm_destroy(h);
  CM_REQUIRE(rc == 0) << comm_last_error();
}

}  // namespace chipmesh::testing
