// RMSNorm with gain (the fused kernel lives in norm/) and the residual add.
#include <algorithm>
#include <atomic>
#include <stdexcept>

#include "../cpu/thread_pool.h"
#include "../norm/rmsnorm.h"
#include "layers.h"

namespace ternorm::model {

namespace {
norm::RmsNormArgs args_of(const NormWeights& w, const float* x, int64_t n, int64_t d) {
  norm::RmsNormArgs a;
  a.x = x, a.n = n, a.d = d, a.w_base = w.w_base, a.gain = w.gain, a.eps = w.eps;
  return a;
}
}  // namespace

void rmsnorm_forward(const NormWeights& w, const float* x, int64_t n, int64_t d, float* y,
                     const Exec& ex) {
  norm::rmsnorm_gain_f32(args_of(w, x, n, d), y, ex);
}

void rmsnorm_forward_i8(const NormWeights& w, const float* x, int64_t n, int64_t d, int8_t* q,
                        float* scales, const Exec& ex) {
  norm::rmsnorm_gain_i8(args_of(w, x, n, d), q, scales, ex);
}

void rmsnorm_forward_as(Precision p, const NormWeights& w, const float* x, int64_t n, int64_t d,
                        float* y, int8_t* q, float* scales, const Exec& ex) {
  if (p == Precision::Ternary) {
    rmsnorm_forward_i8(w, x, n, d, q, scales, ex);
  } else {
    rmsnorm_forward(w, x, n, d, y, ex);
    if (p == Precision::TernaryBlockAct) quantize_input(p, y, n, d, q, scales, ex);
  }
}

void residual_rmsnorm_forward_as(Precision p, const NormWeights& w, float* out, const float* a,
                                 const float* b, int64_t n, int64_t d, float* y, int8_t* q,
                                 float* scales, const Exec& ex) {
  const Exec one{ex.isa, nullptr, 1};
  const int64_t stride = ternary::padded_cols(d);
  const int64_t per_row = p == Precision::TernaryBlockAct ? ternary::act_blocks(d) : 1;
  std::atomic<bool> failed{false};
  // Pieces of whole rows, about 16K floats each (the norm's setup runs once a piece).
  parallel_ranges(ex, n, std::max<int64_t>(1, (int64_t(1) << 14) / d), [&](int64_t t0, int64_t t1) {
    for (int64_t i = t0 * d; i < t1 * d; ++i) out[i] = a[i] + b[i];
    try {
      rmsnorm_forward_as(p, w, out + t0 * d, t1 - t0, d, y ? y + t0 * d : nullptr,
                         q ? q + t0 * stride : nullptr, scales ? scales + t0 * per_row : nullptr,
                         one);
    } catch (const std::invalid_argument&) {
      failed = true;  // named below, by the whole-matrix call's own error
    }
  });
  // Only on bad input: the unfused call throws the error it would have (the first bad row).
  if (failed) rmsnorm_forward_as(p, w, out, n, d, y, q, scales, ex);
}

NormWeights norm_weights(const Model& m, const norm::GainView* gains, int64_t k) {
  NormWeights w;
  w.eps = m.config().norm_eps;
  if (gains) {
    w.w_base = m.params() + m.norm_offset(k);
    w.gain = gains[k];
  } else {
    w.w_base = m.ones();
    w.gain.scheme = norm::GainScheme::F32;
    w.gain.d = m.config().d_model;
    w.gain.data = m.params() + m.norm_offset(k);
    w.gain.data_bytes = size_t(m.config().d_model) * sizeof(float);
  }
  return w;
}

void rmsnorm_backward(const NormWeights& w, const float* x, int64_t n, int64_t d, const float* dy,
                      float* dx, float* dgain, const Exec& ex) {
  norm::rmsnorm_gain_backward(args_of(w, x, n, d), dy, dx, dgain, ex);
}

void residual_forward(float* out, const float* a, const float* b, int64_t count, const Exec& ex) {
  parallel_ranges(ex, count, 4096, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) out[i] = a[i] + b[i];
  });
}

}  // namespace ternorm::model
