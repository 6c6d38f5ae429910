#include "demo_values.h"

#include <algorithm>
#include <cstring>

#include "chipmesh/errors.h"
#include "chipmesh/half.h"

namespace chipmesh::cli {

DemoPattern::DemoPattern(int nranks, ReduceOp op)
    : nranks_(std::max(1, nranks)), m_(std::max(1, 256 / std::max(1, nranks))) {
  expected_.resize(static_cast<size_t>(2 * m_));
  for (size_t k = 0; k < expected_.size(); ++k) {
    int64_t acc = value(k, 0);
    for (int r = 1; r < nranks_; ++r) {
      const int64_t v = value(k, r);
      switch (op) {
        case ReduceOp::SUM: acc += v; break;
        case ReduceOp::MAX: acc = std::max(acc, v); break;
        case ReduceOp::MIN: acc = std::min(acc, v); break;
        case ReduceOp::PROD: throw ConfigError("chipmesh demo has no prod reduction");
      }
    }
    expected_[k] = acc;
  }
}

size_t DemoPattern::key(size_t i) const {
  // Changes with the element (and, through i / 11, not with a short period),
  // so a value read from a wrong offset shows up as a wrong result.
  return static_cast<size_t>((static_cast<uint64_t>(i) * 7 + static_cast<uint64_t>(i) / 11) %
                             static_cast<uint64_t>(2 * m_));
}

int64_t DemoPattern::value(size_t k, int rank) const {
  // Shifted per rank, so data from a wrong peer shows up too. Values are
  // non-zero, in [-m, -1] u [1, m].
  const int64_t idx = (static_cast<int64_t>(k) + 13 * static_cast<int64_t>(rank)) % (2 * m_);
  return idx < m_ ? idx - m_ : idx - m_ + 1;
}

int64_t DemoPattern::input(int rank, size_t i) const { return value(key(i), rank); }

void store_element(DataType dtype, void* base, size_t i, int64_t v) {
  switch (dtype) {
    case DataType::FLOAT32: static_cast<float*>(base)[i] = static_cast<float>(v); return;
    case DataType::FLOAT16: static_cast<uint16_t*>(base)[i] = half::float_to_half(static_cast<float>(v)); return;
    case DataType::BFLOAT16:
      static_cast<uint16_t*>(base)[i] = half::float_to_bf16(static_cast<float>(v));
      return;
    case DataType::INT32: static_cast<int32_t*>(base)[i] = static_cast<int32_t>(v); return;
    default: throw ConfigError("chipmesh demo: unsupported dtype " + std::string(dtype_name(dtype)));
  }
}

double load_element(DataType dtype, const void* base, size_t i) {
  switch (dtype) {
    case DataType::FLOAT32: return static_cast<const float*>(base)[i];
    case DataType::FLOAT16: return half::half_to_float(static_cast<const uint16_t*>(base)[i]);
    case DataType::BFLOAT16: return half::bf16_to_float(static_cast<const uint16_t*>(base)[i]);
    case DataType::INT32: return static_cast<const int32_t*>(base)[i];
    default: throw ConfigError("chipmesh demo: unsupported dtype " + std::string(dtype_name(dtype)));
  }
}

}  // namespace chipmesh::cli
