// AVX-512 machine-limit probes: VNNI int8 peak and a 512-bit streaming read.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "peak_kernels.h"

namespace ternorm::bench {

// 12 zmm accumulators: vpdpbusd has a latency of 4-5 cycles and up to two
// issue ports, so 12 independent chains keep it at full throughput on every
// current core. The empty asm ties each accumulator to a register and makes
// every iteration opaque to the optimiser.
uint64_t peak_i8_avx512(int64_t iters, int64_t* sink) {
  __m512i a = _mm512_set1_epi8(3);
  __m512i b = _mm512_set1_epi8(-2);
  __m512i c0 = _mm512_setzero_si512(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
  __m512i c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
  for (int64_t i = 0; i < iters; ++i) {
    c0 = _mm512_dpbusd_epi32(c0, a, b);
    c1 = _mm512_dpbusd_epi32(c1, a, b);
    c2 = _mm512_dpbusd_epi32(c2, a, b);
    c3 = _mm512_dpbusd_epi32(c3, a, b);
    c4 = _mm512_dpbusd_epi32(c4, a, b);
    c5 = _mm512_dpbusd_epi32(c5, a, b);
    c6 = _mm512_dpbusd_epi32(c6, a, b);
    c7 = _mm512_dpbusd_epi32(c7, a, b);
    c8 = _mm512_dpbusd_epi32(c8, a, b);
    c9 = _mm512_dpbusd_epi32(c9, a, b);
    c10 = _mm512_dpbusd_epi32(c10, a, b);
    c11 = _mm512_dpbusd_epi32(c11, a, b);
    __asm__ volatile(""
                     : "+v"(c0), "+v"(c1), "+v"(c2), "+v"(c3), "+v"(c4), "+v"(c5), "+v"(c6),
                       "+v"(c7), "+v"(c8), "+v"(c9), "+v"(c10), "+v"(c11), "+v"(a), "+v"(b));
  }
  __m512i s =
      _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(c0, c1), _mm512_add_epi32(c2, c3)),
                       _mm512_add_epi32(_mm512_add_epi32(c4, c5), _mm512_add_epi32(c6, c7)));
  s = _mm512_add_epi32(s, _mm512_add_epi32(_mm512_add_epi32(c8, c9), _mm512_add_epi32(c10, c11)));
  // Store and add the lanes: GCC 12's _mm512_reduce_* trips -Wuninitialized.
  alignas(64) int32_t lanes[16];
  _mm512_store_si512(reinterpret_cast<void*>(lanes), s);
  int64_t total = 0;
  for (int32_t v : lanes) total += v;
  *sink = total;
  return static_cast<uint64_t>(iters) * 12u * 64u;
}

// Four independent 64-bit sums, four 64-byte loads per iteration.
uint64_t read_sum_avx512(const uint8_t* p, size_t bytes) {
  __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
  size_t i = 0;
  for (; i + 256 <= bytes; i += 256) {
    s0 = _mm512_add_epi64(s0, _mm512_load_si512(reinterpret_cast<const void*>(p + i)));
    s1 = _mm512_add_epi64(s1, _mm512_load_si512(reinterpret_cast<const void*>(p + i + 64)));
    s2 = _mm512_add_epi64(s2, _mm512_load_si512(reinterpret_cast<const void*>(p + i + 128)));
    s3 = _mm512_add_epi64(s3, _mm512_load_si512(reinterpret_cast<const void*>(p + i + 192)));
  }
  for (; i < bytes; i += 64)
    s0 = _mm512_add_epi64(s0, _mm512_load_si512(reinterpret_cast<const void*>(p + i)));
  const __m512i s = _mm512_add_epi64(_mm512_add_epi64(s0, s1), _mm512_add_epi64(s2, s3));
  alignas(64) uint64_t lanes[8];
  _mm512_store_si512(reinterpret_cast<void*>(lanes), s);
  uint64_t total = 0;
  for (uint64_t v : lanes) total += v;
  return total;
}

}  // namespace ternorm::bench
