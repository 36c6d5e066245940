// The ternary linear layer (BitNet b1.58) and its fp32 counterpart.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "../cpu/aligned_buffer.h"
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

namespace {
// dx = dy W_eff in int8 (LinearGradI8). Each thread folds the row scales into
// a few tokens of dy at a time, in a scratch of its own that stays in cache,
// and quantises them there (per token: the same bits as one call over all).
constexpr int64_t kFoldTokens = 16;
void linear_dx_i8(const LinearWeights& w, int64_t n, const float* dy, float* dx,
                  const LinearGradI8& g, const Exec& ex) {
  need(w.packed.data && w.packed.scales && g.trits_t.data && g.q && g.q_scales,
       "int8 backward needs the packed weights, their transposed copy and its scratch");
  need(g.trits_t.rows == w.cols && g.trits_t.cols == w.rows,
       "int8 backward: the transposed copy does not match the weights");
  const float* s = w.packed.scales;
  const int64_t qstride = ternary::padded_cols(w.rows);
  const Exec one{ex.isa, nullptr, 1};
  parallel_ranges(ex, n, kFoldTokens, [&](int64_t t0, int64_t t1) {
    thread_local AlignedBuffer<float> folded;
    if (folded.size() < size_t(kFoldTokens * w.rows))
      folded = AlignedBuffer<float>(size_t(kFoldTokens * w.rows));
    for (int64_t b = t0; b < t1; b += kFoldTokens) {
      const int64_t nt = std::min(kFoldTokens, t1 - b);
      for (int64_t t = 0; t < nt; ++t)
        for (int64_t r = 0; r < w.rows; ++r)
          folded[size_t(t * w.rows + r)] = dy[(b + t) * w.rows + r] * s[r];
      ternary::quantize_activations(folded.data(), nt, w.rows, g.q + b * qstride, g.q_scales + b,
                                    one);
    }
  });
  ternary::gemm_i8(g.trits_t, g.q, g.q_scales, n, dx, ex);
}
}  // namespace

void linear_backward(Precision p, const LinearWeights& w, const LinearInput& in, int64_t n,
                     const float* dy, float* dx, float* dw, float* scratch, const Exec& ex,
                     const LinearGradI8* gi8) {
  need(!gi8 || p != Precision::F32, "the int8 gradient path needs a ternary precision");
  if (dx) {
    if (gi8) {
      linear_dx_i8(w, n, dy, dx, *gi8, ex);
    } else if (p == Precision::F32) {
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

GradI8::GradI8(const Model& m, int64_t max_tokens) : n_layers_(m.config().n_layers) {
  if (m.ternary_stale())
    throw std::logic_error("int8 gradients need current ternary weights (call Model::quantize)");
  if (max_tokens < 1) throw std::invalid_argument("int8 gradients: max_tokens must be >= 1");
  int64_t bytes = 0, widest_rows = 0, widest_cols = 0;
  for (int k = 0; k < kLinearsPerLayer; ++k) {
    const LinearShape s = m.linear_shape(Linear(k));
    bytes += ternary::packed2_bytes(s.cols, s.rows);
    widest_rows = std::max(widest_rows, s.rows);
    widest_cols = std::max(widest_cols, s.cols);
  }
  packed_ = AlignedBuffer<uint8_t>(size_t(n_layers_ * bytes));
  ones_ = AlignedBuffer<float>(size_t(widest_cols));
  std::fill(ones_.data(), ones_.data() + widest_cols, 1.0f);
  q_ = AlignedBuffer<int8_t>(size_t(max_tokens * ternary::padded_cols(widest_rows)));
  q_scales_ = AlignedBuffer<float>(size_t(max_tokens));
  std::vector<int8_t> trits, trits_t;
  uint8_t* at = packed_.data();
  // In linear()'s index order: layer-major, then Linear's values.
  for (int64_t l = 0; l < n_layers_; ++l)
    for (int k = 0; k < kLinearsPerLayer; ++k) {
      const ternary::PackedTernary w = m.packed(l, Linear(k));
      trits.resize(size_t(w.rows * w.cols));
      trits_t.resize(trits.size());
      ternary::unpack2(w.data, w.rows, w.cols, trits.data());
      for (int64_t r = 0; r < w.rows; ++r)
        for (int64_t c = 0; c < w.cols; ++c)
          trits_t[size_t(c * w.rows + r)] = trits[size_t(r * w.cols + c)];
      ternary::pack2(trits_t.data(), w.cols, w.rows, at);
      ternary::PackedTernary t;
      t.data = at, t.scales = ones_.data(), t.rows = w.cols, t.cols = w.rows;
      trits_t_.push_back(t);
      at += ternary::packed2_bytes(w.cols, w.rows);
    }
}

LinearGradI8 GradI8::linear(int64_t layer, Linear lin) {
  if (layer < 0 || layer >= n_layers_) throw std::out_of_range("int8 gradients: no such layer");
  LinearGradI8 g;
  g.trits_t = trits_t_[size_t(layer * kLinearsPerLayer + int(lin))];
  g.q = q_.data();
  g.q_scales = q_scales_.data();
  return g;
}

int64_t GradI8::bytes() const {
  return int64_t(packed_.size() + ones_.size() * 4 + q_.size() + q_scales_.size() * 4);
}

}  // namespace ternorm::model
