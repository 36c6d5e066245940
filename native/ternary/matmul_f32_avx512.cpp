// AVX-512 decoders of the ternary fp32 products: 2-bit weight tiles -> fp32
// GEMM B micro-panels (trit * scale). A 64-byte tile loads as 16 dwords, one
// per weight row (row i of the panel is bytes 4i..4i+3), so
//   - a column of the tile across its 16 rows is one shift + mask of that
//     vector (decode_wt: the panels of W^T), and
//   - a row of the tile across its 16 columns is one broadcast dword shifted
//     by a per-lane amount (decode_w: the panels of W).
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "matmul_f32_kernels.h"

namespace ternorm::ternary::detail {
namespace {

#include "matmul_f32_isa_loops.h"

inline __mmask16 first_lanes(int64_t count) {
  return count >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << count) - 1u);
}

// The zero-masking forms with a full mask are the plain instructions; unlike
// the unmasked intrinsics they do not trip GCC 12's -Wmaybe-uninitialized.
constexpr __mmask16 kAll = 0xFFFF;

// (code - 1) * s for 16 codes in the low 2 bits of each lane.
inline __m512 decode(__m512i codes, __m512 s) {
  return _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_cvtepi32_ps(kAll, codes), _mm512_set1_ps(1.0f)),
                       s);
}

inline void zero_group(float* panel, int64_t nr, int64_t kc) {
  for (int64_t kk = 0; kk < kc; ++kk) _mm512_storeu_ps(panel + kk * nr, _mm512_setzero_ps());
}

void decode_wt_avx512(const void* ctx, int64_t nr, int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                      float* dst) {
  const TernarySource& w = *static_cast<const TernarySource*>(ctx);
  const __m512i three = _mm512_set1_epi32(3);
  for_each_group(
      nr, kc, nc, dst, [&](float* panel) { zero_group(panel, nr, kc); },
      [&](float* panel, int64_t g) {  // one row panel of W
        const int64_t r0 = j0 + g;
        // Only rows < nc have a scale (and weights): the rest get scale 0, hence 0.
        const __m512 s = _mm512_maskz_loadu_ps(first_lanes(nc - g), w.scales + r0);
        for_each_tile(w, r0, nr, k0, kc, panel, [&](float* d, const uint8_t* tile, int64_t count) {
          const __m512i v = _mm512_loadu_si512(tile);
          for (int64_t c = 0; c < count; ++c) {
            const __m512i codes = _mm512_and_si512(
                _mm512_maskz_srl_epi32(kAll, v, _mm_cvtsi32_si128(col_shift(c))), three);
            _mm512_storeu_ps(d + c * nr, decode(codes, s));
          }
        });
      });
}

void decode_w_avx512(const void* ctx, int64_t nr, int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                     float* dst) {
  const TernarySource& w = *static_cast<const TernarySource*>(ctx);
  const __m512i three = _mm512_set1_epi32(3);
  const __m512i shifts =
      _mm512_setr_epi32(0, 8, 16, 24, 2, 10, 18, 26, 4, 12, 20, 28, 6, 14, 22, 30);
  for_each_group(
      nr, kc, nc, dst, [&](float* panel) { zero_group(panel, nr, kc); },
      [&](float* panel, int64_t g) {  // one column block of W
        // Columns past the end of W hold the code of 0 (ternary.h) and come out 0.
        const int64_t block = (j0 + g) / kColBlock;
        for (int64_t kk = 0; kk < kc; ++kk) {
          const int64_t r = k0 + kk;
          const __m512i codes = _mm512_and_si512(
              _mm512_maskz_srlv_epi32(kAll, _mm512_set1_epi32(int(row_bits(w, r, block))), shifts),
              three);
          _mm512_storeu_ps(panel + kk * nr, decode(codes, _mm512_set1_ps(w.scales[r])));
        }
      });
}

}  // namespace

constexpr MatmulF32Kernels kMatmulF32KernelsAvx512 = {decode_wt_avx512, decode_w_avx512};

}  // namespace ternorm::ternary::detail
