// NEON path of the per-token int8 activation quantiser: 16 floats per step;
// the column tail goes through a zeroed 16-float buffer (zeros quantise to 0,
// the padding value).
#include <arm_neon.h>

#include <cstdint>
#include <cstring>

#include "act_quant_kernels.h"

namespace ternorm::ternary::detail {
namespace {

inline uint32x4_t absmax16(const float* p, uint32x4_t m, uint32x4_t mask) {
  for (int k = 0; k < 4; ++k)
    m = vmaxq_u32(m, vandq_u32(vld1q_u32(reinterpret_cast<const uint32_t*>(p + 4 * k)), mask));
  return m;
}

inline int8x16_t quant16(const float* p, float32x4_t pre, float32x4_t inv) {
  const float32x4_t lo = vdupq_n_f32(-127.0f), hi = vdupq_n_f32(127.0f);
  int32x4_t i[4];
  for (int k = 0; k < 4; ++k) {
    // FRINTI rounds with the FPCR mode (round-half-even by default), like
    // std::nearbyint; the conversion of the integral value is then exact.
    float32x4_t v = vrndiq_f32(vmulq_f32(vmulq_f32(vld1q_f32(p + 4 * k), pre), inv));
    v = vminq_f32(vmaxq_f32(v, lo), hi);
    i[k] = vcvtq_s32_f32(v);
  }
  const int16x8_t a = vcombine_s16(vmovn_s32(i[0]), vmovn_s32(i[1]));
  const int16x8_t b = vcombine_s16(vmovn_s32(i[2]), vmovn_s32(i[3]));
  return vcombine_s8(vmovn_s16(a), vmovn_s16(b));
}

#include "act_quant_isa_loops.h"

int64_t rows_neon(const float* x, int64_t n, int64_t cols, int64_t qstride, int8_t* q,
                  float* scales, bool recip_scale) {
  const uint32x4_t abs_mask = vdupq_n_u32(kAbsMask);
  float tail[16];
  const int64_t body = cols / 16 * 16;
  return quantize_rows(
      x, n, cols, qstride, q, scales, recip_scale,
      [&](const float* xr) {
        std::memset(tail, 0, sizeof tail);
        std::memcpy(tail, xr + body, size_t(cols - body) * 4);
        uint32x4_t m = vdupq_n_u32(0);
        for (int64_t c = 0; c < body; c += 16) m = absmax16(xr + c, m, abs_mask);
        m = absmax16(tail, m, abs_mask);
        return vmaxvq_u32(m);
      },
      [&](const float* xr, int8_t* qr, const ActRowParams& p) {
        const float32x4_t pre = vdupq_n_f32(p.pre), inv = vdupq_n_f32(p.inv);
        for (int64_t c = 0; c < body; c += 16) vst1q_s8(qr + c, quant16(xr + c, pre, inv));
        if (body < qstride) vst1q_s8(qr + body, quant16(tail, pre, inv));  // qstride - body == 16
      });
}

}  // namespace

constexpr ActQuantKernels kActQuantKernelsNeon = {rows_neon};

}  // namespace ternorm::ternary::detail
