// Bulk work of the built-in kernels in slices, with the parent's abort flag
// checked between slices: a chip that dies (or fails) while its peers fold or
// copy hundreds of megabytes stops them within one slice, not at the end of
// the loop (issue 12: a cold 256 MiB onephase allreduce took 2.7-6.7 s to
// report a killed chip). A slice is small enough to take well under a
// millisecond even with cold pages, large enough that the check is free.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "chipmesh/kernel.h"
#include "reduce_ops.h"
#include "common/stream_copy.h"

namespace chipmesh::kernels {

inline constexpr size_t kAbortSliceBytes = size_t{1} << 20;

// out[0, n) = fold of src[0..nsrc)[0, n) (reduce_fold), slice by slice;
// `stream`: with streaming stores (stream_copy.h).
template <typename T, typename Op>
int fold_sliced(const chipmesh_kernel_args* args, typename T::S* out, const typename T::S* const* src, size_t nsrc,
                size_t n, bool stream = false) {
  using S = typename T::S;
  const size_t step = std::max<size_t>(1, kAbortSliceBytes / sizeof(S));
  const S* at[CHIPMESH_MAX_RANKS];
  for (size_t b = 0; b < n; b += step) {
    if (int rc = device::check_abort(args)) return rc;
    for (size_t k = 0; k < nsrc; ++k) at[k] = src[k] + b;
    reduce_fold<T, Op>(out + b, at, nsrc, std::min(step, n - b), stream);
  }
  return 0;
}

// memcpy(dst, src, bytes), slice by slice; `stream`: with streaming stores.
inline int copy_sliced(const chipmesh_kernel_args* args, void* dst, const void* src, size_t bytes,
                       bool stream = false) {
  auto* d = static_cast<char*>(dst);
  const auto* s = static_cast<const char*>(src);
  for (size_t b = 0; b < bytes; b += kAbortSliceBytes) {
    if (int rc = device::check_abort(args)) return rc;
    copy_streamed_if(stream, d + b, s + b, std::min(kAbortSliceBytes, bytes - b));
  }
  return 0;
}

}  // namespace chipmesh::kernels
