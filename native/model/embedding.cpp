// Token embedding, the output head tied to it, and the cross-entropy loss.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "../cpu/thread_pool.h"
#include "../gemm/gemm.h"
#include "../gemm/packed_b.h"
#include "head_panels.h"
#include "model.h"
#include "layers.h"
#include "vec_math_kernels.h"

namespace ternorm::model {

// ---- embedding ---------------------------------------------------------------------------

void embedding_forward(const TokenTable& table, int64_t d, const int32_t* tokens, int64_t n,
                       float* x, const Exec& ex) {
  parallel_ranges(ex, n, 16, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t row = int64_t(tokens[t]) * d;
      if (table.type == gemm::ElemType::F32)
        std::copy(table.f32 + row, table.f32 + row + d, x + t * d);
      else
        gemm::widen(table.type, table.h16 + row, d, x + t * d, ex);
    }
  });
}

void embedding_backward(const int32_t* tokens, int64_t n, int64_t d, const float* dx, float* dtable,
                        const Exec& ex) {
  // A token may repeat: splitting channels (not tokens) keeps each sum in
  // token order whatever the thread count.
  parallel_ranges(ex, d, 16, [&](int64_t c0, int64_t c1) {
    for (int64_t t = 0; t < n; ++t) {
      float* row = dtable + int64_t(tokens[t]) * d;
      const float* g = dx + t * d;
      for (int64_t c = c0; c < c1; ++c) row[c] += g[c];
    }
  });
}

// ---- tied head ---------------------------------------------------------------------------

std::shared_ptr<const gemm::PackedB> HeadPanels::forward(const TokenTable& table, int64_t V,
                                                         int64_t d, const Exec& ex) {
  return get(true, table, V, d, ex);
}

std::shared_ptr<const gemm::PackedB> HeadPanels::backward(const TokenTable& table, int64_t V,
                                                          int64_t d, const Exec& ex) {
  return get(false, table, V, d, ex);
}

void HeadPanels::clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  panels_[0].reset();
  panels_[1].reset();
  source_ = nullptr;
}

namespace {

// The rows j0.. of a table as gemm_f32's B (ldb = d).
void set_b(gemm::GemmArgs& g, const TokenTable& table, int64_t j0, int64_t d) {
  g.b_type = table.type;
  if (table.type == gemm::ElemType::F32)
    g.b = table.f32 + j0 * d;
  else
    g.b16 = table.h16 + j0 * d;
  g.ldb = d;
}

}  // namespace

std::shared_ptr<const gemm::PackedB> HeadPanels::get(bool transposed, const TokenTable& table,
                                                     int64_t V, int64_t d, const Exec& ex) {
  if (V * d > kMaxValues) return nullptr;
  const void* source = table.type == gemm::ElemType::F32 ? static_cast<const void*>(table.f32)
                                                         : static_cast<const void*>(table.h16);
  std::lock_guard<std::mutex> lock(mutex_);
  if (source != source_ || ex.isa != isa_) {
    panels_[0].reset();
    panels_[1].reset();
    source_ = source;
    isa_ = ex.isa;
  }
  std::shared_ptr<const gemm::PackedB>& p = panels_[transposed ? 1 : 0];
  if (!p) {
    auto packed = std::make_shared<gemm::PackedB>();
    gemm::GemmArgs g;
    g.trans_b = transposed;
    g.k = transposed ? d : V;
    g.n = transposed ? V : d;
    set_b(g, table, 0, d);
    packed->pack(g, ex);
    p = std::move(packed);
  }
  return p;
}

// Many rows (scoring a window): the threads split the vocabulary, each
// running the blocked GEMM on its own columns (one parallel region instead of
// a row split per block of the table, and no row tile left over), reading
// the table's panels packed once (HeadPanels), or packing its own columns.
// Every logit gets the same operations whatever the split: the blocked GEMM
// sums each element over the same k blocks in any column range, from packed
// panels or not. A few rows (decoding) take gemm_f32's own GEMV path, which
// splits the columns already.
void head_forward(const float* x, const TokenTable& table, int64_t n, int64_t d, int64_t V,
                  float* logits, const Exec& ex, HeadPanels* panels) {
  const std::shared_ptr<const gemm::PackedB> pb =
      panels && n > gemm::kDirectMaxM ? panels->forward(table, V, d, ex) : nullptr;
  auto columns = [&](int64_t j0, int64_t j1, const Exec& e) {
    gemm::GemmArgs g;
    g.trans_b = true;
    g.m = n, g.n = j1 - j0, g.k = d;
    g.a = x, g.lda = d, g.c = logits + j0, g.ldc = V;
    if (pb) return gemm::gemm_f32_packed(g, *pb, 0, j0, e);
    set_b(g, table, j0, d);
    gemm::gemm_f32(g, e);
  };
  if (n <= gemm::kDirectMaxM) return columns(0, V, ex);
  // Two pieces per thread: a late thread takes fewer, and each piece packs
  // the rows of x once more, so not many.
  const int64_t threads = ex.pool ? std::max(1, std::min(ex.threads, ex.pool->size())) : 1;
  const int64_t grain = std::max<int64_t>(64, (V / (2 * threads) + 63) / 64 * 64);
  static_assert(64 % gemm::kPackedColumnStep == 0, "pieces start where packed columns may");
  const Exec one{ex.isa, nullptr, 1};
  parallel_ranges(ex, V, grain, [&](int64_t j0, int64_t j1) { columns(j0, j1, one); });
}

void head_backward(const float* dlogits, const float* x, const TokenTable& table, int64_t n,
                   int64_t d, int64_t V, float* dx, float* dtable, const Exec& ex,
                   HeadPanels* panels) {
  if (dtable && table.type != gemm::ElemType::F32)
    throw std::invalid_argument(std::string("head backward: training the token table needs it in "
                                            "fp32, this model keeps it ") +
                                gemm::elem_type_name(table.type));
  if (dx) {
    gemm::GemmArgs g;
    g.m = n, g.n = d, g.k = V;
    g.a = dlogits, g.lda = V, g.c = dx, g.ldc = d;
    // The panels only when the table stays: training it (dtable) changes it every step.
    const std::shared_ptr<const gemm::PackedB> pb =
        panels && !dtable ? panels->backward(table, V, d, ex) : nullptr;
    if (pb) {
      gemm::gemm_f32_packed(g, *pb, 0, 0, ex);
    } else {
      set_b(g, table, 0, d);
      gemm::gemm_f32(g, ex);
    }
  }
  if (dtable) {
    gemm::GemmArgs g;
    g.trans_a = true;
    g.m = V, g.n = d, g.k = n;
    g.a = dlogits, g.lda = V, g.b = x, g.ldb = d, g.c = dtable, g.ldc = d;
    gemm::gemm_f32(g, ex);
  }
}

// ---- cross-entropy --------------------------------------------------------------------------

void cross_entropy_forward(float* logits, const int32_t* targets, int64_t n, int64_t V, double* nll,
                           const Exec& ex) {
  const detail::VecKernels k = detail::vec_kernels(ex.isa);
  parallel_ranges(ex, n, 4, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      float* l = logits + t * V;
      const double lt = targets[t] >= 0 ? double(l[targets[t]]) : 0.0;  // before the overwrite
      const float mx = k.max(l, V);
      const double sum = k.exp_sum(l, mx, l, V);
      nll[t] = targets[t] >= 0 ? double(mx) + std::log(sum) - lt : 0.0;
      k.scale(l, float(1.0 / sum), V);
    }
  });
}

void cross_entropy_nll(const float* logits, const int32_t* targets, int64_t n, int64_t V,
                       double* nll, const Exec& ex) {
  const detail::VecKernels k = detail::vec_kernels(ex.isa);
  parallel_ranges(ex, n, 4, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* l = logits + t * V;
      if (targets[t] < 0) {
        nll[t] = 0.0;
        continue;
      }
      const float mx = k.max(l, V);
      nll[t] = double(mx) + std::log(k.exp_sum(l, mx, nullptr, V)) - double(l[targets[t]]);
    }
  });
}

void cross_entropy_backward(const float* probs, const int32_t* targets, int64_t n, int64_t V,
                            float scale, float* dlogits, const Exec& ex) {
  parallel_ranges(ex, n, 4, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* p = probs + t * V;
      float* g = dlogits + t * V;
      if (targets[t] < 0) {
        std::fill(g, g + V, 0.0f);
        continue;
      }
      const float pt = p[targets[t]];  // before g (which may alias p) overwrites it
      for (int64_t j = 0; j < V; ++j) g[j] = scale * p[j];
      g[targets[t]] = scale * (pt - 1.0f);
    }
  });
}

}  // namespace ternorm::model
