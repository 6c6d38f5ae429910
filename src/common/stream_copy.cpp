// Streaming-store copies and the cache-size rule (stream_copy.h).
#include "common/stream_copy.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CHIPMESH_STREAM_X86 1
#endif

namespace chipmesh {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kDefaultThreshold = 32 * kMiB;
constexpr uint64_t kMinThreshold = 8 * kMiB;
constexpr uint64_t kMaxThreshold = 64 * kMiB;
constexpr size_t kLine = 64;

// The first line of `path`, without the newline; "" when unreadable.
std::string first_line(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "re");
  if (!f) return {};
  char buf[64] = {};
  const bool ok = std::fgets(buf, sizeof(buf), f) != nullptr;
  std::fclose(f);
  if (!ok) return {};
  std::string s(buf);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// "32768K", "1M", "512" (bytes) -> bytes; 0 when malformed.
uint64_t parse_size(const std::string& s) {
  if (s.empty()) return 0;
  size_t used = 0;
  unsigned long long v = 0;
  try {
    v = std::stoull(s, &used);
  } catch (...) {
    return 0;
  }
  const std::string unit = s.substr(used);
  if (unit.empty()) return v;
  if (unit == "K") return v << 10;
  if (unit == "M") return v << 20;
  if (unit == "G") return v << 30;
  return 0;
}

// Splits [dst, dst + bytes) into a plain head up to a line boundary of dst,
// whole lines streamed by `body`, and a plain tail.
template <typename Body>
void split_and_stream(void* dst, const void* src, size_t bytes, Body body) {
  auto* d = static_cast<char*>(dst);
  const auto* s = static_cast<const char*>(src);
  const size_t head = std::min(bytes, (kLine - reinterpret_cast<uintptr_t>(d) % kLine) % kLine);
  if (head) std::memcpy(d, s, head);
  const size_t lines = (bytes - head) / kLine;
  if (lines) body(d + head, s + head, lines);
  const size_t done = head + lines * kLine;
  if (done < bytes) std::memcpy(d + done, s + done, bytes - done);
}

#ifdef CHIPMESH_STREAM_X86
// `lines` 64-byte lines; d is line-aligned, s anything.
void lines_sse2(char* d, const char* s, size_t lines) {
  for (size_t i = 0; i < lines; ++i, d += kLine, s += kLine) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 16));
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 32));
    const __m128i e = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 48));
    _mm_stream_si128(reinterpret_cast<__m128i*>(d), a);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + 16), b);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + 32), c);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + 48), e);
  }
}

__attribute__((target("avx2"))) void lines_avx2(char* d, const char* s, size_t lines) {
  for (size_t i = 0; i < lines; ++i, d += kLine, s += kLine) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + 32));
    _mm256_stream_si256(reinterpret_cast<__m256i*>(d), a);
    _mm256_stream_si256(reinterpret_cast<__m256i*>(d + 32), b);
  }
}
#else
// No streaming stores on this architecture: the lines are copied plainly.
void lines_plain(char* d, const char* s, size_t lines) { std::memcpy(d, s, lines * kLine); }
constexpr auto lines_sse2 = lines_plain;
constexpr auto lines_avx2 = lines_plain;
#endif

}  // namespace

uint64_t last_level_cache_bytes(const char* cpu_dir) {
  int best_level = 0;
  uint64_t best = 0;
  for (int i = 0; i < 16; ++i) {
    const std::string dir = std::string(cpu_dir) + "/cache/index" + std::to_string(i) + "/";
    const std::string level = first_line(dir + "level");
    if (level.empty()) break;  // the indices are numbered without gaps
    if (first_line(dir + "type") == "Instruction") continue;
    const int lv = std::atoi(level.c_str());
    const uint64_t size = parse_size(first_line(dir + "size"));
    if (size && lv > best_level) best_level = lv, best = size;
  }
  return best;
}

uint64_t stream_threshold_bytes() {
  static const uint64_t threshold = [] {
    const uint64_t llc = last_level_cache_bytes("/sys/devices/system/cpu/cpu0");
    return llc ? std::clamp(llc, kMinThreshold, kMaxThreshold) : kDefaultThreshold;
  }();
  return threshold;
}

bool stream_stores_pay(uint64_t footprint_bytes) {
  // Below the smallest threshold there is nothing to read: a process whose
  // calls are all small never opens sysfs (a dozen files on the first call).
  return footprint_bytes >= kMinThreshold && footprint_bytes >= stream_threshold_bytes();
}

bool cpu_has_avx2() {
#ifdef CHIPMESH_STREAM_X86
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0;
  }();
  return has;
#else
  return false;
#endif
}

void stream_fence() {
#ifdef CHIPMESH_STREAM_X86
  _mm_sfence();
#endif
}

void stream_copy_sse2(void* dst, const void* src, size_t bytes) {
  split_and_stream(dst, src, bytes, lines_sse2);
  stream_fence();
}

void stream_copy_avx2(void* dst, const void* src, size_t bytes) {
  split_and_stream(dst, src, bytes, lines_avx2);
  stream_fence();
}

void stream_copy_unfenced(void* dst, const void* src, size_t bytes) {
  split_and_stream(dst, src, bytes, cpu_has_avx2() ? lines_avx2 : lines_sse2);
}

void stream_copy(void* dst, const void* src, size_t bytes) {
  stream_copy_unfenced(dst, src, bytes);
  stream_fence();
}

void copy_streamed_if(bool stream, void* dst, const void* src, size_t bytes) {
  if (stream) stream_copy(dst, src, bytes);
  else std::memcpy(dst, src, bytes);
}

void copy_bulk(void* dst, const void* src, size_t bytes) {
  copy_streamed_if(stream_stores_pay(2 * uint64_t{bytes}), dst, src, bytes);
}

}  // namespace chipmesh
