// The ternary linear layer (BitNet b1.58) and its fp32 counterpart.
#include <stdexcept>
#include <string>

#include "../cpu/thread_pool.h"
#include "../gemm/gemm.h"
#include "layers.h"

namespace ternorm::model {

namespace {
void need(bool ok, const char* what) {
  if (!ok) throw std::invalid_argument(std::string("linear layer: ") + what);
}
}  // namespace

LinearWeights linear_weights(const Model& m, int64_t layer, Linear lin) {
  const LinearShape s = m.linear_shape(lin);
  LinearWeights w;
  w.latent = m.params() + m.linear_offset(layer, lin);
  w.packed = m.packed(layer, lin);
  w.rows = s.rows, w.cols = s.cols;
  return w;
}

// In the int8 precisions the activations are quantised by the caller (or,
// after a norm, by the norm layer).
LinearInput linear_input(Precision p, const float* x, const int8_t* q, const float* scales) {
  LinearInput in;
  if (int8_act(p)) {
    in.q = q, in.scales = scales;
  } else {
    in.x = x;
  }
  return in;
}

void quantize_input(Precision p, const float* x, int64_t n, int64_t cols, int8_t* q, float* scales,
                    const Exec& ex) {
  if (p == Precision::Ternary)
    ternary::quantize_activations(x, n, cols, q, scales, ex);
  else if (p == Precision::TernaryBlockAct)
    ternary::quantize_activations_block(x, n, cols, q, scales, ex);
  else
    throw std::invalid_argument(std::string("linear layer: precision ") + precision_name(p) +
                                " has no int8 input");
}

void linear_forward(Precision p, const LinearWeights& w, const LinearInput& in, int64_t n, float* y,
                    const Exec& ex) {
  switch (p) {
    case Precision::F32: {
      need(in.x && w.latent, "F32 needs the fp32 input and the latent weights");
      gemm::GemmArgs g;
      g.trans_b = true;
      g.m = n, g.n = w.rows, g.k = w.cols;
      g.a = in.x, g.lda = w.cols, g.b = w.latent, g.ldb = w.cols, g.c = y, g.ldc = w.rows;
      gemm::gemm_f32(g, ex);
      return;
    }
    case Precision::Ternary:
      need(in.q && in.scales && w.packed.data, "Ternary needs the int8 input and packed weights");
      ternary::gemm_i8(w.packed, in.q, in.scales, n, y, ex);
      return;
    case Precision::TernaryBlockAct:
      need(in.q && in.scales && w.packed.data,
           "TernaryBlockAct needs the int8 input and packed weights");
      ternary::gemm_i8_block(w.packed, in.q, in.scales, n, y, ex);
      return;
    case Precision::TernaryF32Act:
      need(in.x && w.packed.data, "TernaryF32Act needs the fp32 input and packed weights");
      ternary::matmul_f32(w.packed, in.x, n, y, ex);
      return;
  }
  throw std::invalid_argument("linear layer: unknown precision");
}

void linear_backward(Precision p, const LinearWeights& w, const LinearInput& in, int64_t n,
                     const float* dy, float* dx, float* dw, float* scratch, const Exec& ex) {
  if (dx) {
    if (p == Precision::F32) {
      need(w.latent != nullptr, "F32 backward needs the latent weights");
      gemm::GemmArgs g;
      g.m = n, g.n = w.cols, g.k = w.rows;
      g.a = dy, g.lda = w.rows, g.b = w.latent, g.ldb = w.cols, g.c = dx, g.ldc = w.cols;
      gemm::gemm_f32(g, ex);
    } else {
      need(w.packed.data != nullptr, "ternary backward needs the packed weights");
      ternary::matmul_f32_t(w.packed, dy, n, dx,
                            ex);  // STE: d(quantised W, x) -> the same product's transpose
    }
  }
  if (dw) {
    const float* x_eff = in.x;
    if (p == Precision::Ternary) {
      // The input forward multiplied was q * scale: dequantise it (STE).
      need(in.q && in.scales && scratch, "Ternary dW needs the int8 input and a scratch buffer");
      const int64_t stride = ternary::padded_cols(w.cols);
      parallel_ranges(ex, n, 16, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t)
          for (int64_t c = 0; c < w.cols; ++c)
            scratch[t * w.cols + c] = float(in.q[t * stride + c]) * in.scales[t];
      });
      x_eff = scratch;
    } else if (p == Precision::TernaryBlockAct) {  // the same with each block's scale
      need(in.q && in.scales && scratch,
           "TernaryBlockAct dW needs the int8 input and a scratch buffer");
      const int64_t stride = ternary::padded_cols(w.cols), nb = ternary::act_blocks(w.cols);
      parallel_ranges(ex, n, 16, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t)
          for (int64_t c = 0; c < w.cols; ++c)
            scratch[t * w.cols + c] =
                float(in.q[t * stride + c]) * in.scales[t * nb + c / ternary::kActBlock];
      });
      x_eff = scratch;
    }
    need(x_eff != nullptr, "dW needs the layer input");
    gemm::GemmArgs g;
    g.trans_a = true;
    g.m = w.rows, g.n = w.cols, g.k = n;
    g.a = dy, g.lda = w.rows, g.b = x_eff, g.ldb = w.cols, g.c = dw, g.ldc = w.cols;
    gemm::gemm_f32(g, ex);
  }
}

}  // namespace ternorm::model
