// IEEE binary16 (float16) and bfloat16 <-> float32 conversions, header-only,
// shared by the built-in kernels, the tools and the tests (one implementation).
// float16 and bfloat16 values are stored as uint16_t bit patterns.
#pragma once

#include <bit>
#include <cstdint>

namespace chipmesh::half {

// Branch-free IEEE conversions (the well-known scheme of the FP16 library by
// Marat Dukhan): exact for every half value, round-to-nearest-even into half,
// NaN stays NaN (quiet), overflow goes to infinity. They rely on the default
// floating-point environment (round to nearest, no flush-to-zero).

inline float half_to_float(uint16_t h) {
  const uint32_t w = static_cast<uint32_t>(h) << 16;
  const uint32_t sign = w & 0x80000000u;
  const uint32_t two_w = w + w;
  const float normalized = std::bit_cast<float>((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
  const float denormalized = std::bit_cast<float>((two_w >> 17) | (126u << 23)) - 0.5f;
  // Selects with masks rather than ?: so that the vectoriser sees no branch.
  const uint32_t denormal_mask = 0u - static_cast<uint32_t>(two_w < (1u << 27));
  const uint32_t bits = (std::bit_cast<uint32_t>(denormalized) & denormal_mask) |
                        (std::bit_cast<uint32_t>(normalized) & ~denormal_mask);
  return std::bit_cast<float>(sign | bits);
}

inline uint16_t float_to_half(float f) {
  const uint32_t w = std::bit_cast<uint32_t>(f);
  const uint32_t shl1_w = w + w;
  const uint32_t sign = w & 0x80000000u;
  // |f| scaled up then down: rounds the mantissa at the half's precision and
  // turns too-large values into infinity.
  const float absf = std::bit_cast<float>(w & 0x7FFFFFFFu);
  float base = (absf * 0x1.0p+112f) * 0x1.0p-110f;
  uint32_t bias = shl1_w & 0xFF000000u;
  const uint32_t small_mask = 0u - static_cast<uint32_t>(bias < 0x71000000u);
  bias = (0x71000000u & small_mask) | (bias & ~small_mask);
  base = std::bit_cast<float>((bias >> 1) + 0x07800000u) + base;
  const uint32_t bits = std::bit_cast<uint32_t>(base);
  const uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
  const uint32_t mantissa_bits = bits & 0x00000FFFu;
  const uint32_t nonsign = exp_bits + mantissa_bits;
  const uint32_t nan_mask = 0u - static_cast<uint32_t>(shl1_w > 0xFF000000u);
  return static_cast<uint16_t>((sign >> 16) | (0x7E00u & nan_mask) | (nonsign & ~nan_mask));
}

inline float bf16_to_float(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

inline uint16_t float_to_bf16(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  const uint32_t quiet_nan = (u >> 16) | 0x0040u;
  const bool is_nan = (u & 0x7FFFFFFFu) > 0x7F800000u;
  return static_cast<uint16_t>(is_nan ? quiet_nan : rounded);
}

}  // namespace chipmesh::half
