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

// Weight of column c of a block sits at bits 8 * (c % 4) + 2 * (c / 4) of its row's dword.
inline int col_shift(int64_t c) { return int(8 * (c % 4) + 2 * (c / 4)); }

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

}  // namespace

void decode_wt_avx512(const void* ctx, int64_t nr, int64_t k0, int64_t kc, int64_t j0,
                      int64_t nc, float* dst) {
  const TernarySource& w = *static_cast<const TernarySource*>(ctx);
  const int64_t width = (nc + nr - 1) / nr * nr;
  const __m512i three = _mm512_set1_epi32(3);
  for (int64_t g = 0; g < width; g += 16) {  // 16 GEMM columns = one row panel of W
    float* panel = dst + (g / nr) * kc * nr + g % nr;
    if (g >= nc) {
      zero_group(panel, nr, kc);
      continue;
    }
    const int64_t r0 = j0 + g;
    // Only rows < nc have a scale (and weights): the rest get scale 0, hence 0.
    const __m512 s = _mm512_maskz_loadu_ps(first_lanes(nc - g), w.scales + r0);
    const uint8_t* tiles = w.data + (r0 / kRowPanel) * w.col_blocks * kTileBytes;
    for (int64_t kb = k0; kb < k0 + kc; kb += kColBlock) {
      const __m512i v = _mm512_loadu_si512(tiles + (kb / kColBlock) * kTileBytes);
      const int64_t count = k0 + kc - kb < kColBlock ? k0 + kc - kb : kColBlock;
      float* d = panel + (kb - k0) * nr;
      for (int64_t c = 0; c < count; ++c) {
        const __m512i codes =
            _mm512_and_si512(_mm512_maskz_srl_epi32(kAll, v, _mm_cvtsi32_si128(col_shift(c))), three);
        _mm512_storeu_ps(d + c * nr, decode(codes, s));
      }
    }
  }
}

void decode_w_avx512(const void* ctx, int64_t nr, int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                     float* dst) {
  const TernarySource& w = *static_cast<const TernarySource*>(ctx);
  const int64_t width = (nc + nr - 1) / nr * nr;
  const __m512i three = _mm512_set1_epi32(3);
  const __m512i shifts =
      _mm512_setr_epi32(0, 8, 16, 24, 2, 10, 18, 26, 4, 12, 20, 28, 6, 14, 22, 30);
  for (int64_t g = 0; g < width; g += 16) {  // 16 GEMM columns = one column block of W
    float* panel = dst + (g / nr) * kc * nr + g % nr;
    if (g >= nc) {
      zero_group(panel, nr, kc);
      continue;
    }
    // Columns past the end of W hold the code of 0 (ternary.h) and come out 0.
    const int64_t block = (j0 + g) / kColBlock;
    for (int64_t kk = 0; kk < kc; ++kk) {
      const int64_t r = k0 + kk;
      uint32_t bits;
      std::memcpy(&bits, w.data + ((r / kRowPanel) * w.col_blocks + block) * kTileBytes +
                             (r % kRowPanel) * 4,
                  4);
      const __m512i codes =
          _mm512_and_si512(_mm512_maskz_srlv_epi32(kAll, _mm512_set1_epi32(int(bits)), shifts), three);
      _mm512_storeu_ps(panel + kk * nr, decode(codes, _mm512_set1_ps(w.scales[r])));
    }
  }
}

}  // namespace ternorm::ternary::detail
