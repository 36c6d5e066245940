// AVX2 decoders of the ternary fp32 products: 2-bit weight tiles -> fp32 GEMM
// B micro-panels (trit * scale). A 64-byte tile loads as two vectors of 8
// dwords, one per weight row (row i of the panel is bytes 4i..4i+3), so
//   - a column of the tile across its rows is one shift + mask per vector
//     (decode_wt: the panels of W^T), and
//   - a row of the tile across its 16 columns is one broadcast dword shifted
//     by per-lane amounts (decode_w: the panels of W).
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "matmul_f32_kernels.h"

namespace ternorm::ternary::detail {
namespace {

#include "matmul_f32_isa_loops.h"

// All-ones in lanes first .. first+7 that are < count.
inline __m256i lanes_below(int64_t first, int64_t count) {
  const __m256i idx =
      _mm256_add_epi32(_mm256_set1_epi32(int(first)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(count)), idx);
}

// (code - 1) * s for 8 codes in the low 2 bits of each lane.
inline __m256 decode(__m256i codes, __m256 s) {
  return _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(codes), _mm256_set1_ps(1.0f)), s);
}

inline void zero_group(float* panel, int64_t nr, int64_t kc) {
  for (int64_t kk = 0; kk < kc; ++kk) {
    _mm256_storeu_ps(panel + kk * nr, _mm256_setzero_ps());
    _mm256_storeu_ps(panel + kk * nr + 8, _mm256_setzero_ps());
  }
}

void decode_wt_avx2(const void* ctx, int64_t nr, int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                    float* dst) {
  const TernarySource& w = *static_cast<const TernarySource*>(ctx);
  const __m256i three = _mm256_set1_epi32(3);
  for_each_group(
      nr, kc, nc, dst, [&](float* panel) { zero_group(panel, nr, kc); },
      [&](float* panel, int64_t g) {  // one row panel of W
        const int64_t r0 = j0 + g;
        // Only rows < nc have a scale (and weights): the rest get scale 0, hence 0.
        const __m256 s_lo = _mm256_maskload_ps(w.scales + r0, lanes_below(0, nc - g));
        const __m256 s_hi = _mm256_maskload_ps(w.scales + r0 + 8, lanes_below(8, nc - g));
        for_each_tile(w, r0, nr, k0, kc, panel, [&](float* d, const uint8_t* tile, int64_t count) {
          const __m256i v_lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tile));
          const __m256i v_hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tile + 32));
          for (int64_t c = 0; c < count; ++c) {
            const __m128i sh = _mm_cvtsi32_si128(col_shift(c));
            _mm256_storeu_ps(d + c * nr,
                             decode(_mm256_and_si256(_mm256_srl_epi32(v_lo, sh), three), s_lo));
            _mm256_storeu_ps(d + c * nr + 8,
                             decode(_mm256_and_si256(_mm256_srl_epi32(v_hi, sh), three), s_hi));
          }
        });
      });
}

void decode_w_avx2(const void* ctx, int64_t nr, int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                   float* dst) {
  const TernarySource& w = *static_cast<const TernarySource*>(ctx);
  const __m256i three = _mm256_set1_epi32(3);
  const __m256i shifts_lo = _mm256_setr_epi32(0, 8, 16, 24, 2, 10, 18, 26);
  const __m256i shifts_hi = _mm256_setr_epi32(4, 12, 20, 28, 6, 14, 22, 30);
  for_each_group(
      nr, kc, nc, dst, [&](float* panel) { zero_group(panel, nr, kc); },
      [&](float* panel, int64_t g) {  // one column block of W
        // Columns past the end of W hold the code of 0 (ternary.h) and come out 0.
        const int64_t block = (j0 + g) / kColBlock;
        for (int64_t kk = 0; kk < kc; ++kk) {
          const int64_t r = k0 + kk;
          const __m256i v = _mm256_set1_epi32(int(row_bits(w, r, block)));
          const __m256 s = _mm256_set1_ps(w.scales[r]);
          const __m256 lo = decode(_mm256_and_si256(_mm256_srlv_epi32(v, shifts_lo), three), s);
          const __m256 hi = decode(_mm256_and_si256(_mm256_srlv_epi32(v, shifts_hi), three), s);
          _mm256_storeu_ps(panel + kk * nr, lo);
          _mm256_storeu_ps(panel + kk * nr + 8, hi);
        }
      });
}

}  // namespace

constexpr MatmulF32Kernels kMatmulF32KernelsAvx2 = {decode_wt_avx2, decode_w_avx2};

}  // namespace ternorm::ternary::detail
