// Machine-limit probes of the scalar path, which is plain C++ compiled for the
// baseline ISA: the compiler vectorises it with what that baseline offers, so
// its int8 limit is the baseline's vector multiply-accumulate rate (SSE2
// pmaddwd on x86-64), not a scalar imul. On AArch64 the baseline is NEON and
// the dispatch in kernels.cpp uses the NEON probe; other targets get imul.
#if defined(__x86_64__) || defined(_M_X64)
#include <emmintrin.h>
#endif

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "peak_kernels.h"

namespace ternorm::bench {

#if defined(__x86_64__) || defined(_M_X64)
// Six chains acc_i += pmaddwd(a_i, w): SSE2 has no byte multiply-add, so
// int8 data is widened to int16 and one pmaddwd does 8 multiply-accumulates.
// 6 accumulators + 6 distinct a_i + w fill 13 of the 16 xmm registers. The
// empty asm makes w opaque every iteration so the products cannot be hoisted.
uint64_t peak_i8_ref(int64_t iters, int64_t* sink) {
  const __m128i a0 = _mm_set1_epi16(2), a1 = _mm_set1_epi16(3), a2 = _mm_set1_epi16(4);
  const __m128i a3 = _mm_set1_epi16(5), a4 = _mm_set1_epi16(6), a5 = _mm_set1_epi16(7);
  __m128i w = _mm_set1_epi16(-3);
  __m128i c0 = _mm_setzero_si128(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
  for (int64_t i = 0; i < iters; ++i) {
    __asm__ volatile("" : "+x"(w));
    c0 = _mm_add_epi32(c0, _mm_madd_epi16(a0, w));
    c1 = _mm_add_epi32(c1, _mm_madd_epi16(a1, w));
    c2 = _mm_add_epi32(c2, _mm_madd_epi16(a2, w));
    c3 = _mm_add_epi32(c3, _mm_madd_epi16(a3, w));
    c4 = _mm_add_epi32(c4, _mm_madd_epi16(a4, w));
    c5 = _mm_add_epi32(c5, _mm_madd_epi16(a5, w));
    __asm__ volatile("" : "+x"(c0), "+x"(c1), "+x"(c2), "+x"(c3), "+x"(c4), "+x"(c5));
  }
  const __m128i s = _mm_add_epi32(_mm_add_epi32(_mm_add_epi32(c0, c1), _mm_add_epi32(c2, c3)),
                                  _mm_add_epi32(c4, c5));
  int32_t lanes[4];
  std::memcpy(lanes, &s, sizeof lanes);
  *sink = int64_t(lanes[0]) + lanes[1] + lanes[2] + lanes[3];
  return static_cast<uint64_t>(iters) * 6u * 8u;
}
#else
// Five chains acc_i += x_i * y (imul latency 3, so five chains cover it).
// The first asm hides the x_i (no strength reduction to shifts), the one in
// the loop makes y opaque every iteration (no hoisting, no vectorising).
uint64_t peak_i8_ref(int64_t iters, int64_t* sink) {
  int32_t y = -2;
  int32_t x0 = 3, x1 = 5, x2 = 6, x3 = 7, x4 = 9;
  __asm__ volatile("" : "+r"(x0), "+r"(x1), "+r"(x2), "+r"(x3), "+r"(x4));
  uint32_t c0 = 0, c1 = 0, c2 = 0, c3 = 0, c4 = 0;
  for (int64_t i = 0; i < iters; ++i) {
    __asm__ volatile("" : "+r"(y));
    c0 += static_cast<uint32_t>(x0 * y);
    c1 += static_cast<uint32_t>(x1 * y);
    c2 += static_cast<uint32_t>(x2 * y);
    c3 += static_cast<uint32_t>(x3 * y);
    c4 += static_cast<uint32_t>(x4 * y);
    __asm__ volatile("" : "+r"(c0), "+r"(c1), "+r"(c2), "+r"(c3), "+r"(c4));
  }
  *sink = static_cast<int64_t>(c0 + c1 + c2 + c3 + c4);
  return static_cast<uint64_t>(iters) * 5u;
}
#endif

uint64_t read_sum_ref(const uint8_t* p, size_t bytes) {
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (size_t i = 0; i < bytes; i += 32) {
    uint64_t w0, w1, w2, w3;  // memcpy: the bytes are not uint64_t objects
    std::memcpy(&w0, p + i, 8);
    std::memcpy(&w1, p + i + 8, 8);
    std::memcpy(&w2, p + i + 16, 8);
    std::memcpy(&w3, p + i + 24, 8);
    s0 += w0;
    s1 += w1;
    s2 += w2;
    s3 += w3;
  }
  return s0 + s1 + s2 + s3;
}

}  // namespace ternorm::bench
