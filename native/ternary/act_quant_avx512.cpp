// AVX-512 path of the per-token int8 activation quantiser: 16 floats per
// step, masked loads for the column tail (masked-off lanes read 0 -> q 0,
// which is exactly the zero padding).
// GCC 12's AVX-512 headers trip a false -W(maybe-)uninitialized on their
// _mm512_undefined_* placeholders (GCC bug 105593, fixed in GCC 13).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "act_quant_kernels.h"

namespace ternorm::ternary::detail {
namespace {

#include "act_quant_isa_loops.h"

int64_t rows_avx512(const float* x, int64_t n, int64_t cols, int64_t qstride, int8_t* q,
                    float* scales, bool recip_scale) {
  const __m512i abs_mask = _mm512_set1_epi32(int(kAbsMask));
  const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
  return quantize_rows(
      x, n, cols, qstride, q, scales, recip_scale,
      [&](const float* xr) {
        __m512i m0 = _mm512_setzero_si512(), m1 = _mm512_setzero_si512();
        int64_t c = 0;
        for (; c + 32 <= cols; c += 32) {
          m0 = _mm512_max_epu32(m0, _mm512_and_si512(_mm512_loadu_si512(xr + c), abs_mask));
          m1 = _mm512_max_epu32(m1, _mm512_and_si512(_mm512_loadu_si512(xr + c + 16), abs_mask));
        }
        for (; c < cols; c += 16) {
          const int64_t left = cols - c;
          const __mmask16 k = left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1);
          m0 =
              _mm512_max_epu32(m0, _mm512_and_si512(_mm512_maskz_loadu_epi32(k, xr + c), abs_mask));
        }
        return uint32_t(_mm512_reduce_max_epu32(_mm512_max_epu32(m0, m1)));
      },
      [&](const float* xr, int8_t* qr, const ActRowParams& p) {
        const __m512 pre = _mm512_set1_ps(p.pre), inv = _mm512_set1_ps(p.inv);
        // cvtps rounds with MXCSR (round-half-even by default), like std::nearbyint.
        for (int64_t c = 0; c < qstride; c += 16) {
          const int64_t left = cols - c;
          const __mmask16 k = left >= 16  ? __mmask16(0xffff)
                              : left <= 0 ? __mmask16(0)
                                          : __mmask16((1u << left) - 1);
          const __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, xr + c), pre), inv);
          __m512i i = _mm512_cvtps_epi32(v);
          i = _mm512_min_epi32(_mm512_max_epi32(i, lo), hi);
          _mm_storeu_si128(reinterpret_cast<__m128i*>(qr + c), _mm512_cvtepi32_epi8(i));
        }
      });
}

}  // namespace

constexpr ActQuantKernels kActQuantKernelsAvx512 = {rows_avx512};

}  // namespace ternorm::ternary::detail
