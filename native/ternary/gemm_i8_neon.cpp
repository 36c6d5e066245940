// NEON path of gemm_i8 (baseline Armv8-A, no dot-product extension). A
// quarter tile (16 bytes) of bit pair j is 4 rows x 4 columns of weight codes;
// signed widening multiplies (vmlal_s8 / vmlal_high_s8) against the 4
// broadcast activation bytes accumulate per (row, column) int16 lanes over
// kChunk column blocks, then vpadalq_s16 folds them into int32 pairs and the
// epilogue's vpaddq_s32 finishes each row's sum.
//
// No int16 overflow: codes are in {0, 1, 2} and q in [-128, 127], so a
// product is at most 256 in magnitude; a lane takes 4 per column block (bit
// pairs 0..3), so over kChunk = 16 blocks |sum| <= 16 * 4 * 256 = 16384 < 32767
// (24576 with the invalid code 3 of corrupt data).
#include <arm_neon.h>

#include <cstdint>
#include <cstring>

#include "gemm_i8_kernels.h"

namespace ternorm::ternary::detail {
namespace {

constexpr int64_t kChunk = 16;

template <int J>
inline int8x16_t unpack(uint8x16_t t) {
  if constexpr (J == 0)
    return vreinterpretq_s8_u8(vandq_u8(t, vdupq_n_u8(3)));
  else
    return vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(t, 2 * J), vdupq_n_u8(3)));
}

inline int8x16_t bcast4(const int8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return vreinterpretq_s8_u32(vdupq_n_u32(v));
}

// acc[t][2k] holds rows 4k, 4k+1 and acc[t][2k+1] rows 4k+2, 4k+3, 4 columns each.
template <int J, int T>
inline void step(const uint8x16_t (&tile)[4], const int8_t* qb, int64_t qstride,
                 int16x8_t (&acc)[T][8]) {
  int8x16_t u[4];
  for (int k = 0; k < 4; ++k) u[k] = unpack<J>(tile[k]);
  for (int t = 0; t < T; ++t) {
    const int8x16_t b = bcast4(qb + t * qstride + 4 * J);
    const int8x8_t bl = vget_low_s8(b);
    for (int k = 0; k < 4; ++k) {
      acc[t][2 * k] = vmlal_s8(acc[t][2 * k], vget_low_s8(u[k]), bl);
      acc[t][2 * k + 1] = vmlal_high_s8(acc[t][2 * k + 1], u[k], b);
    }
  }
}

// y for one row panel and tokens [t0, t0 + T).
template <int T>
void micro(const GemmI8Args& a, int64_t pan, int64_t t0) {
  const int64_t qstride = a.col_blocks * kColBlock;
  const uint8_t* w = a.w + pan * a.col_blocks * kTileBytes;
  const int8_t* q = a.q + t0 * qstride;
  int32_t acc32[T][8][4] = {};
  for (int64_t b0 = a.b_begin; b0 < a.b_end; b0 += kChunk) {
    const int64_t b1 = b0 + kChunk < a.b_end ? b0 + kChunk : a.b_end;
    int16x8_t acc[T][8];
    for (int t = 0; t < T; ++t)
      for (int i = 0; i < 8; ++i) acc[t][i] = vdupq_n_s16(0);
    for (int64_t b = b0; b < b1; ++b) {
      uint8x16_t tile[4];
      for (int k = 0; k < 4; ++k) tile[k] = vld1q_u8(w + b * kTileBytes + 16 * k);
      const int8_t* qb = q + b * kColBlock;
      step<0>(tile, qb, qstride, acc);
      step<1>(tile, qb, qstride, acc);
      step<2>(tile, qb, qstride, acc);
      step<3>(tile, qb, qstride, acc);
    }
    for (int t = 0; t < T; ++t)
      for (int i = 0; i < 8; ++i)
        vst1q_s32(acc32[t][i], vpadalq_s16(vld1q_s32(acc32[t][i]), acc[t][i]));
  }
  // Epilogue over 4 rows: (float(dot) * x_scale) * w_scale.
  for (int k = 0; k < 4; ++k) {
    const int64_t row0 = pan * kRowPanel + 4 * k;
    const int64_t left = a.rows - row0;
    if (left <= 0) break;
    float ws_tail[4] = {0, 0, 0, 0};
    std::memcpy(ws_tail, a.w_scales + row0, size_t(left < 4 ? left : 4) * 4);
    const float32x4_t ws = vld1q_f32(ws_tail);
    for (int t = 0; t < T; ++t) {
      const int32x4_t sum = vpaddq_s32(vld1q_s32(acc32[t][2 * k]), vld1q_s32(acc32[t][2 * k + 1]));
      const int32x4_t dot = vsubq_s32(sum, vdupq_n_s32(a.q_sums[t0 + t]));
      const float32x4_t v =
          vmulq_f32(vmulq_f32(vcvtq_f32_s32(dot), vdupq_n_f32(a.x_scales[t0 + t])), ws);
      float* dst = a.y + (t0 + t) * a.rows + row0;
      if (left >= 4) {
        vst1q_f32(dst, v);
      } else {
        float out[4];
        vst1q_f32(out, v);
        std::memcpy(dst, out, size_t(left) * 4);
      }
    }
  }
}

#include "../cpu/counted_loops.h"
#include "gemm_i8_isa_loops.h"

}  // namespace

constexpr GemmI8Kernels kGemmI8KernelsNeon = {panels_by_token_blocks<2>};

}  // namespace ternorm::ternary::detail
