// Fused RMSNorm with a per-channel gain decoded from its stored encoding:
//   y[t][c] = x[t][c] * inv_rms[t] * w_base[c] * g[c],
//   inv_rms[t] = 1 / sqrt(mean_c(x[t][c]^2) + eps).
// One call reads each row of x once (the row stays in L1) and writes either
// fp32 y or int8 y plus its per-token scale, the input of ternary::gemm_i8.
#pragma once
#include <cstdint>

#include "../cpu/isa.h"
#include "gain_codec.h"

namespace ternorm::norm {

struct RmsNormArgs {
  const float* x = nullptr;       // n x d
  int64_t n = 0, d = 0;
  const float* w_base = nullptr;  // d: the frozen base RMSNorm weight
  GainView gain;                  // d gains in their stored encoding
  float eps = 1e-5f;
};

// fp32 output: y is n x d.
void rmsnorm_gain_f32(const RmsNormArgs& args, float* y, const Exec& ex);

// int8 output in the layout of ternary::quantize_activations: q has row stride
// ternary::padded_cols(d) with zero padding, scales[n] = absmax(y_row) / 127.
// Equal to rmsnorm_gain_f32 followed by quantize_activations, bit for bit.
void rmsnorm_gain_i8(const RmsNormArgs& args, int8_t* q, float* scales, const Exec& ex);

// Backward of the fp32 form for upstream gradient dy (n x d): writes dx (n x d)
// and dgain (d, the gradient w.r.t. the decoded gains g; overwritten, summed
// over tokens). Either output may be null to skip it.
void rmsnorm_gain_backward(const RmsNormArgs& args, const float* dy, float* dx, float* dgain,
                           const Exec& ex);

}  // namespace ternorm::norm
