#include "demo_values.h"

#include <algorithm>
#include <cstring>

#include "chipmesh/errors.h"

namespace chipmesh::cli {

DemoPattern::DemoPattern(int nranks, ReduceOp op)
    : nranks_(std::max(1, nranks)), m_(std::max(1, 256 / std::max(1, nranks))) {
  expected_.resize(static_cast<size_t>(2 * m_));
  for (size_t k = 0; k < expected_.size(); ++k) {
    int64_t acc = value(k, 0);
    for (int r = 1; r < nranks_; ++r) {
      const int64_t v = value(k, r);
      switch (op) {
        case ReduceOp::Sum: acc += v; break;
        case ReduceOp::Max: acc = std::max(acc, v); break;
        case ReduceOp::Min: acc = std::min(acc, v); break;
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

uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t exp = (x >> 23) & 0xffu;
  uint32_t mant = x & 0x7fffffu;
  if (exp == 0xff) return static_cast<uint16_t>(sign | 0x7c00u | (mant ? 0x200u : 0u));  // inf/nan
  int e = static_cast<int>(exp) - 127 + 15;
  if (e >= 0x1f) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow: inf
  if (e <= 0) {
    // Subnormal half (or zero).
    if (e < -10) return static_cast<uint16_t>(sign);
    mant |= 0x800000u;
    const int shift = 14 - e;
    uint32_t h = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1u))) ++h;
    return static_cast<uint16_t>(sign | h);
  }
  uint32_t h = (static_cast<uint32_t>(e) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // may carry into inf: correct
  return static_cast<uint16_t>(sign | h);
}

float half_to_float(uint16_t h) {
  const uint32_t sign = (static_cast<uint32_t>(h) & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t x;
  if (exp == 0) {
    if (mant == 0) {
      x = sign;
    } else {
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400u) == 0);
      x = sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13);
    }
  } else if (exp == 0x1f) {
    x = sign | 0x7f800000u | (mant << 13);
  } else {
    x = sign | ((exp - 15 + 127) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

uint16_t float_to_bfloat16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7f800000u) == 0x7f800000u && (x & 0x7fffffu))
    return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet nan
  x += 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>(x >> 16);
}

float bfloat16_to_float(uint16_t b) {
  const uint32_t x = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

void store_element(DataType dtype, void* base, size_t i, int64_t v) {
  switch (dtype) {
    case DataType::FLOAT32: static_cast<float*>(base)[i] = static_cast<float>(v); return;
    case DataType::FLOAT16: static_cast<uint16_t*>(base)[i] = float_to_half(static_cast<float>(v)); return;
    case DataType::BFLOAT16:
      static_cast<uint16_t*>(base)[i] = float_to_bfloat16(static_cast<float>(v));
      return;
    case DataType::INT32: static_cast<int32_t*>(base)[i] = static_cast<int32_t>(v); return;
    default: throw ConfigError("chipmesh demo: unsupported dtype " + std::string(dtype_name(dtype)));
  }
}

double load_element(DataType dtype, const void* base, size_t i) {
  switch (dtype) {
    case DataType::FLOAT32: return static_cast<const float*>(base)[i];
    case DataType::FLOAT16: return half_to_float(static_cast<const uint16_t*>(base)[i]);
    case DataType::BFLOAT16: return bfloat16_to_float(static_cast<const uint16_t*>(base)[i]);
    case DataType::INT32: return static_cast<const int32_t*>(base)[i];
    default: throw ConfigError("chipmesh demo: unsupported dtype " + std::string(dtype_name(dtype)));
  }
}

}  // namespace chipmesh::cli
