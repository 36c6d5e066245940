// AVX2 machine-limit probes: the int8 multiply-accumulate sequence an AVX2
// kernel without VNNI uses (vpmaddubsw, vpmaddwd by ones, vpaddd) and a
// 256-bit streaming read.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "peak_kernels.h"

namespace ternorm::bench {

// Six chains: 6 accumulators + 6 distinct unsigned operands + the signed
// operand + ones fill 14 of the 16 ymm registers, leaving two for the
// products. Only the vpaddd is loop-carried; the asm makes `w` opaque every
// iteration so the products cannot be hoisted out of the loop, and the
// distinct a_i keep the compiler from sharing one product between chains.
uint64_t peak_i8_avx2(int64_t iters, int64_t* sink) {
  const __m256i a0 = _mm256_set1_epi8(2), a1 = _mm256_set1_epi8(3), a2 = _mm256_set1_epi8(4);
  const __m256i a3 = _mm256_set1_epi8(5), a4 = _mm256_set1_epi8(6), a5 = _mm256_set1_epi8(7);
  __m256i w = _mm256_set1_epi8(-3);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i c0 = _mm256_setzero_si256(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
  for (int64_t i = 0; i < iters; ++i) {
    __asm__ volatile("" : "+x"(w));
    c0 = _mm256_add_epi32(c0, _mm256_madd_epi16(_mm256_maddubs_epi16(a0, w), ones));
    c1 = _mm256_add_epi32(c1, _mm256_madd_epi16(_mm256_maddubs_epi16(a1, w), ones));
    c2 = _mm256_add_epi32(c2, _mm256_madd_epi16(_mm256_maddubs_epi16(a2, w), ones));
    c3 = _mm256_add_epi32(c3, _mm256_madd_epi16(_mm256_maddubs_epi16(a3, w), ones));
    c4 = _mm256_add_epi32(c4, _mm256_madd_epi16(_mm256_maddubs_epi16(a4, w), ones));
    c5 = _mm256_add_epi32(c5, _mm256_madd_epi16(_mm256_maddubs_epi16(a5, w), ones));
    __asm__ volatile("" : "+x"(c0), "+x"(c1), "+x"(c2), "+x"(c3), "+x"(c4), "+x"(c5));
  }
  __m256i s = _mm256_add_epi32(_mm256_add_epi32(c0, c1), _mm256_add_epi32(c2, c3));
  s = _mm256_add_epi32(s, _mm256_add_epi32(c4, c5));
  const __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  const __m128i q = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
  *sink = _mm_cvtsi128_si32(_mm_add_epi32(q, _mm_shuffle_epi32(q, 0xb1)));
  return static_cast<uint64_t>(iters) * 6u * 32u;
}

// Four independent 64-bit sums, eight 32-byte loads per iteration (two per
// sum, so the adds never limit a two-loads-per-cycle core).
uint64_t read_sum_avx2(const uint8_t* p, size_t bytes) {
  __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
  size_t i = 0;
  for (; i + 256 <= bytes; i += 256) {
    const __m256i* v = reinterpret_cast<const __m256i*>(p + i);
    s0 = _mm256_add_epi64(s0, _mm256_add_epi64(_mm256_load_si256(v + 0), _mm256_load_si256(v + 1)));
    s1 = _mm256_add_epi64(s1, _mm256_add_epi64(_mm256_load_si256(v + 2), _mm256_load_si256(v + 3)));
    s2 = _mm256_add_epi64(s2, _mm256_add_epi64(_mm256_load_si256(v + 4), _mm256_load_si256(v + 5)));
    s3 = _mm256_add_epi64(s3, _mm256_add_epi64(_mm256_load_si256(v + 6), _mm256_load_si256(v + 7)));
  }
  for (; i < bytes; i += 64) {
    const __m256i* v = reinterpret_cast<const __m256i*>(p + i);
    s0 = _mm256_add_epi64(s0, _mm256_add_epi64(_mm256_load_si256(v + 0), _mm256_load_si256(v + 1)));
  }
  const __m256i s = _mm256_add_epi64(_mm256_add_epi64(s0, s1), _mm256_add_epi64(s2, s3));
  const __m128i h = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  return static_cast<uint64_t>(_mm_cvtsi128_si64(h)) +
         static_cast<uint64_t>(_mm_extract_epi64(h, 1));
}

}  // namespace ternorm::bench
