// AVX2 path of the per-token int8 activation quantiser: 32 floats per step;
// the column tail goes through a zeroed 32-float buffer (zeros quantise to 0,
// the padding value).
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "act_quant_kernels.h"

namespace ternorm::ternary::detail {
namespace {

inline __m256i absmax32(const float* p, __m256i m, __m256i mask) {
  for (int k = 0; k < 4; ++k)
    m = _mm256_max_epu32(
        m, _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 8 * k)), mask));
  return m;
}

// 32 floats -> 32 int8 in order.
inline __m256i quant32(const float* p, __m256 pre, __m256 inv, __m256i lo, __m256i hi) {
  __m256i i[4];
  for (int k = 0; k < 4; ++k) {
    const __m256 v = _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(p + 8 * k), pre), inv);
    // cvtps rounds with MXCSR (round-half-even by default), like std::nearbyint.
    i[k] = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvtps_epi32(v), lo), hi);
  }
  // packs works within 128-bit lanes; the permute restores column order.
  const __m256i ab = _mm256_packs_epi32(i[0], i[1]), cd = _mm256_packs_epi32(i[2], i[3]);
  const __m256i bytes = _mm256_packs_epi16(ab, cd);
  return _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

#include "act_quant_isa_loops.h"

int64_t rows_avx2(const float* x, int64_t n, int64_t cols, int64_t qstride, int8_t* q,
                  float* scales, bool recip_scale) {
  const __m256i abs_mask = _mm256_set1_epi32(int(kAbsMask));
  const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
  alignas(32) float tail[32];
  const int64_t body = cols / 32 * 32;
  return quantize_rows(
      x, n, cols, qstride, q, scales, recip_scale,
      [&](const float* xr) {
        std::memset(tail, 0, sizeof tail);
        std::memcpy(tail, xr + body, size_t(cols - body) * 4);
        __m256i m = _mm256_setzero_si256();
        for (int64_t c = 0; c < body; c += 32) m = absmax32(xr + c, m, abs_mask);
        m = absmax32(tail, m, abs_mask);
        m = _mm256_max_epu32(m, _mm256_permute2x128_si256(m, m, 1));
        m = _mm256_max_epu32(m, _mm256_shuffle_epi32(m, 0x4e));
        m = _mm256_max_epu32(m, _mm256_shuffle_epi32(m, 0xb1));
        return uint32_t(_mm256_cvtsi256_si32(m));
      },
      [&](const float* xr, int8_t* qr, const ActRowParams& p) {
        const __m256 pre = _mm256_set1_ps(p.pre), inv = _mm256_set1_ps(p.inv);
        for (int64_t c = 0; c < body; c += 32)
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(qr + c),
                              quant32(xr + c, pre, inv, lo, hi));
        if (body < qstride) {  // the tail: 16 or 32 bytes of q, zero past cols
          alignas(32) int8_t out[32];
          _mm256_store_si256(reinterpret_cast<__m256i*>(out), quant32(tail, pre, inv, lo, hi));
          std::memcpy(qr + body, out, size_t(qstride - body));
        }
      });
}

}  // namespace

constexpr ActQuantKernels kActQuantKernelsAvx2 = {rows_avx2};

}  // namespace ternorm::ternary::detail
