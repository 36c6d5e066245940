// Fused RMSNorm with a per-channel gain decoded from its stored encoding:
//   y[t][c] = x[t][c] * inv_rms[t] * w_base[c] * g[c],
//   inv_rms[t] = 1 / sqrt(mean_c(x[t][c]^2) + eps).
// One call reads each row of x once (the row stays in L1) and writes either
// fp32 y or int8 y plus its per-token scale, the input of ternary::gemm_i8.
//
// Numerics (rmsnorm_kernels.h has the canonical order):
//  * Every ISA path and every thread count gives bit-identical fp32 y, int8
//    q/scales, dx and dgain.
//  * The row's sum of squares is a float sum in a fixed 16-lane order; rows
//    where it overflows (|x| above ~1.8e19 / sqrt(d)) or underflows while
//    eps < 2^-100 are redone in double. So every finite x is in the domain;
//    |y - y_exact| <= (ceil(d/16) + 12) * 2^-24 * |y_exact| (tested), except
//    when rms(x) > 2^126 (~8.5e37), where inv_rms is a float subnormal and y
//    keeps ~2^-21 relative accuracy.
//  * The effective weight w_base[c] * g[c] must be finite with magnitude
//    <= FLT_MAX / (2 sqrt(d)): then no output can overflow.
// Bad input throws std::invalid_argument naming what was expected: null
// pointers, n or d <= 0 (or d > 2^24), gain.d != d, an invalid gain view
// (gain_codec.h), a gain decoding to NaN/inf, non-finite w_base, eps <= 0 or
// not finite, NaN/inf in x or dy (the first offending element, whatever the
// thread count), an ISA path this CPU/build cannot run, overlapping buffers.
#pragma once
#include <cstdint>

#include "../cpu/isa.h"
#include "gain_codec.h"

namespace ternorm::norm {

struct RmsNormArgs {
  const float* x = nullptr;  // n x d
  int64_t n = 0, d = 0;
  const float* w_base = nullptr;  // d: the frozen base RMSNorm weight
  GainView gain;                  // d gains in their stored encoding
  float eps = 1e-5f;
};

// fp32 output: y is n x d. y may be x (in place); no other overlap.
void rmsnorm_gain_f32(const RmsNormArgs& args, float* y, const Exec& ex);

// int8 output in the layout of ternary::quantize_activations: q has row stride
// ternary::padded_cols(d) with zero padding, scales[n] = absmax(y_row) / 127.
// Equal to rmsnorm_gain_f32 followed by quantize_activations, bit for bit (it
// uses quantize_activations' own per-row parameters).
void rmsnorm_gain_i8(const RmsNormArgs& args, int8_t* q, float* scales, const Exec& ex);

// Backward of the fp32 form for upstream gradient dy (n x d): writes dx (n x d)
// and dgain (d, the gradient w.r.t. the decoded gains g; overwritten, summed
// over tokens in token order per channel). Either output may be null to skip
// it; outputs must not overlap the inputs or each other. A true gradient
// beyond the float range comes out as +-inf.
void rmsnorm_gain_backward(const RmsNormArgs& args, const float* dy, float* dx, float* dgain,
                           const Exec& ex);

}  // namespace ternorm::norm
