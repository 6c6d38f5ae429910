// The closed-form data of `chipmesh demo`: what every rank stages as input
// and what every rank must hold after the allreduce, in every demo dtype.
//
// Inputs are small non-zero integers in [-m, m] with m = 256 / nranks, so
// every partial sum (in any order, over any subset of ranks) has magnitude at
// most 256 and is exact in float32, float16, bfloat16 (8 significant bits)
// and int32: the expected result is exact whatever algorithm reduces it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "chipmesh/collectives.h"
#include "chipmesh/types.h"

namespace chipmesh::cli {

// The data of one demo run: inputs of every rank and the expected result.
class DemoPattern {
 public:
  DemoPattern(int nranks, ReduceOp op);  // nranks in 1..64; op sum, max or min
  // Element i of rank `rank`'s input.
  int64_t input(int rank, size_t i) const;
  // Element i of every rank's output after allreduce(op).
  int64_t expected(size_t i) const { return expected_[key(i)]; }
  // The largest input magnitude (256 / nranks).
  int64_t magnitude() const { return m_; }

 private:
  // Inputs depend on i only through this key, in [0, 2m).
  size_t key(size_t i) const;
  // The input of `rank` at an element with this key.
  int64_t value(size_t key, int rank) const;
  int nranks_;
  int64_t m_;
  std::vector<int64_t> expected_;  // by key
};

// Stores v (exactly representable) as element i of an array of `dtype`.
// DataType must be FLOAT32, FLOAT16, BFLOAT16 or INT32.
void store_element(DataType dtype, void* base, size_t i, int64_t v);
// Reads element i of an array of `dtype` as a double.
double load_element(DataType dtype, const void* base, size_t i);


}  // namespace chipmesh::cli
