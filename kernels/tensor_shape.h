// Tensor shape helpers shared by the built-in kernels.
#pragma once

#include <cstdint>

#include "chipmesh/kernel.h"

namespace chipmesh::kernels {

// Element count of a tensor with overflow checking; false when the shape
// is malformed (too many dimensions) or the product overflows.
inline bool checked_count(const chipmesh_tensor& t, uint64_t* out) {
  if (t.ndim > CHIPMESH_KERNEL_MAX_DIMS) return false;
  uint64_t n = 1;
  for (uint32_t i = 0; i < t.ndim; ++i)
    if (__builtin_mul_overflow(n, t.shape[i], &n)) return false;
  *out = n;
  return true;
}

}  // namespace chipmesh::kernels
