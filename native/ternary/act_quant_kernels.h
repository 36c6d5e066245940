// Internal: the per-ISA kernels of quantize_activations (ternary.h), called
// only from act_quant.cpp. POD-only header (ISA files include it).
#pragma once
#include <cstdint>

namespace ternorm::ternary::detail {

// The per-row numbers every path derives from a row's absmax (finite, > 0):
//   scale = absmax / 127,  q = clamp(round_half_even((x * pre) * inv), -127, 127).
// Normally pre = 1 and inv = 127 / absmax, exactly the formula of ternary.h.
// When absmax < 2^-64, 127 / absmax can overflow to Inf, so the row is first
// scaled by pre = 2^64 (exact for every float) and inv = 127 / (absmax * 2^64);
// in the normal float range both forms give the same product bit for bit.
struct ActRowParams {
  float pre, inv, scale;
};
static inline ActRowParams act_row_params(float absmax) {
  const float two64 = 18446744073709551616.0f;  // 2^64
  ActRowParams p;
  p.scale = absmax / 127.0f;
  if (absmax < 1.0f / two64) {
    p.pre = two64;
    p.inv = 127.0f / (absmax * two64);
  } else {
    p.pre = 1.0f;
    p.inv = 127.0f / absmax;
  }
  return p;
}
// The scale of a row under recip_scale (see ActQuantKernels::rows): pre is a
// power of two, so the division by it is exact.
static inline float act_recip_scale(const ActRowParams& p) { return (1.0f / p.inv) / p.pre; }

// |x| as bits: for non-negative floats the IEEE bit patterns order like the
// values, and every pattern >= kNonFiniteBits is Inf or NaN. So an integer max
// of (bits & 0x7fffffff) finds absmax and detects NaN/Inf in one pass, the same
// way on every path.
constexpr uint32_t kAbsMask = 0x7fffffffu;
constexpr uint32_t kNonFiniteBits = 0x7f800000u;

// The kernels of a path: each ISA file defines one, act_quant.cpp's table
// picks it (cpu/dispatch.h).
struct ActQuantKernels {
  // Quantises rows [0, n) of x (row stride cols) into q (row stride qstride =
  // padded_cols(cols), padding zeroed) and scales. Returns -1, or the index
  // of the first row holding NaN/Inf (rows from it on are not written).
  // recip_scale: a row's scale is (1 / inv) / pre (q8_K's convention, the
  // per-block mode) instead of ActRowParams::scale = absmax / 127; q is the same.
  int64_t (*rows)(const float* x, int64_t n, int64_t cols, int64_t qstride, int8_t* q,
                  float* scales, bool recip_scale);
};
extern const ActQuantKernels kActQuantKernelsScalar, kActQuantKernelsAvx2, kActQuantKernelsAvx512,
    kActQuantKernelsNeon;

}  // namespace ternorm::ternary::detail
