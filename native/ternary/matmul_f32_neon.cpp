// NEON decoders of the ternary fp32 products: 2-bit weight tiles -> fp32 GEMM
// B micro-panels (trit * scale). A 64-byte tile loads as four vectors of 4
// dwords, one per weight row (row i of the panel is bytes 4i..4i+3), so
//   - a column of the tile across its rows is one shift + mask per vector
//     (decode_wt: the panels of W^T), and
//   - a row of the tile across its 16 columns is one broadcast dword shifted
//     by per-lane amounts (decode_w: the panels of W).
#include <arm_neon.h>

#include <cstdint>
#include <cstring>

#include "matmul_f32_kernels.h"

namespace ternorm::ternary::detail {
namespace {

#include "matmul_f32_isa_loops.h"

// (code - 1) * s for 4 codes in the low 2 bits of each lane.
inline float32x4_t decode(uint32x4_t codes, float32x4_t s) {
  return vmulq_f32(vsubq_f32(vcvtq_f32_u32(codes), vdupq_n_f32(1.0f)), s);
}

inline void zero_group(float* panel, int64_t nr, int64_t kc) {
  const float32x4_t z = vdupq_n_f32(0.0f);
  for (int64_t kk = 0; kk < kc; ++kk)
    for (int q = 0; q < 4; ++q) vst1q_f32(panel + kk * nr + 4 * q, z);
}

void decode_wt_neon(const void* ctx, int64_t nr, int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                    float* dst) {
  const TernarySource& w = *static_cast<const TernarySource*>(ctx);
  const uint32x4_t three = vdupq_n_u32(3);
  for_each_group(
      nr, kc, nc, dst, [&](float* panel) { zero_group(panel, nr, kc); },
      [&](float* panel, int64_t g) {  // one row panel of W
        const int64_t r0 = j0 + g;
        // Only rows < nc have a scale (and weights): the rest get scale 0, hence 0.
        const int64_t valid = nc - g < 16 ? nc - g : 16;
        float scales[16] = {};
        std::memcpy(scales, w.scales + r0, size_t(valid) * sizeof(float));
        float32x4_t s[4];
        for (int q = 0; q < 4; ++q) s[q] = vld1q_f32(scales + 4 * q);
        for_each_tile(w, r0, nr, k0, kc, panel, [&](float* d, const uint8_t* tile, int64_t count) {
          uint32x4_t v[4];
          for (int q = 0; q < 4; ++q) v[q] = vreinterpretq_u32_u8(vld1q_u8(tile + 16 * q));
          for (int64_t c = 0; c < count; ++c) {
            const int32x4_t sh = vdupq_n_s32(-col_shift(c));  // negative: shift right
            for (int q = 0; q < 4; ++q)
              vst1q_f32(d + c * nr + 4 * q, decode(vandq_u32(vshlq_u32(v[q], sh), three), s[q]));
          }
        });
      });
}

void decode_w_neon(const void* ctx, int64_t nr, int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                   float* dst) {
  const TernarySource& w = *static_cast<const TernarySource*>(ctx);
  const uint32x4_t three = vdupq_n_u32(3);
  // Right shifts (as negative left shifts) of columns 4q .. 4q+3.
  static const int32_t kShifts[16] = {0,  -8,  -16, -24, -2, -10, -18, -26,
                                      -4, -12, -20, -28, -6, -14, -22, -30};
  int32x4_t shifts[4];
  for (int q = 0; q < 4; ++q) shifts[q] = vld1q_s32(kShifts + 4 * q);
  for_each_group(
      nr, kc, nc, dst, [&](float* panel) { zero_group(panel, nr, kc); },
      [&](float* panel, int64_t g) {  // one column block of W
        // Columns past the end of W hold the code of 0 (ternary.h) and come out 0.
        const int64_t block = (j0 + g) / kColBlock;
        for (int64_t kk = 0; kk < kc; ++kk) {
          const int64_t r = k0 + kk;
          const uint32x4_t v = vdupq_n_u32(row_bits(w, r, block));
          const float32x4_t s = vdupq_n_f32(w.scales[r]);
          for (int q = 0; q < 4; ++q)
            vst1q_f32(panel + kk * nr + 4 * q,
                      decode(vandq_u32(vshlq_u32(v, shifts[q]), three), s));
        }
      });
}

}  // namespace

constexpr MatmulF32Kernels kMatmulF32KernelsNeon = {decode_wt_neon, decode_w_neon};

}  // namespace ternorm::ternary::detail
