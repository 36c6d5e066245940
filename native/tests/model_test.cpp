// The whole model: gradient checks of the full backward (fp32, the STE of
// ternary-aware training, the adapter gains through the ternary base),
// training smoke runs, determinism across runs and thread counts, sliding-
// window evaluation, and clear errors on bad configs and ids.
//
// Whole-model gradient checks run on a tiny config whose weights are scaled
// up (std 0.2-0.4, norm weights 1 +- 0.2) so every nonlinearity is exercised.
// The numeric gradients come from an independent double-precision reference
// of the same network (RefModel below: plain loops, no kernel of ours), by
// central differences with h = 1e-5 (truncation ~1e-10, rounding ~1e-10);
// the reference's loss is first checked equal to the fp32 forward's. So the
// comparison measures the fp32 backward itself: err = |analytic - numeric| /
// max(|numeric|, 1e-3 * max |numeric| of the tensor). The errors and
// tolerances are printed.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "cpu/features.h"
#include "cpu/thread_pool.h"
#include "harness.h"
#include "model/eval.h"
#include "model/model.h"
#include "model/train.h"
#include "model/transformer.h"

using namespace ternorm;
using namespace ternorm::model;
using ternorm::test::one_thread;
using ternorm::test::Rng;
using ternorm::test::throws_with;

namespace {

ModelConfig tiny_config() {
  ModelConfig c;
  c.vocab = 13, c.d_model = 16, c.n_layers = 2, c.n_heads = 2, c.d_ff = 24, c.context = 16;
  return c;
}

// The llama-style variant: grouped-query attention (4 query heads sharing 2
// key/value heads) and an untied output head.
ModelConfig tiny_gqa_config() {
  ModelConfig c = tiny_config();
  c.n_heads = 4, c.n_kv_heads = 2, c.tied_head = false;
  return c;
}

// Rescales a fresh model's weights so the checks see real nonlinearity.
void roughen(Model& m, uint64_t seed) {
  Rng rng(seed);
  for (const TensorInfo& t : m.tensors()) {
    float* w = m.params() + t.offset;
    const int64_t n = t.rows * t.cols;
    if (t.rows == 1) {
      for (int64_t i = 0; i < n; ++i) w[i] = 1.0f + 0.2f * rng.normal();
    } else {
      const float s = t.name == "tok_embedding" || t.name == "output" ? 20.0f : 10.0f;
      for (int64_t i = 0; i < n; ++i) w[i] *= s;
    }
  }
  m.quantize(one_thread());
}

struct Batch {
  int64_t B, T;
  std::vector<int32_t> in, tg;
};
Batch random_batch(const ModelConfig& c, int64_t B, int64_t T, uint64_t seed) {
  Rng rng(seed);
  Batch b{B, T, std::vector<int32_t>(size_t(B * T)), std::vector<int32_t>(size_t(B * T))};
  for (auto& v : b.in) v = int32_t(rng.below(c.vocab));
  for (auto& v : b.tg) v = int32_t(rng.below(c.vocab));
  return b;
}

double mean_loss(const Model& m, Precision p, const norm::GainView* g, const Batch& b,
                 Workspace& ws) {
  return transformer_forward(m, p, g, b.in.data(), b.tg.data(), b.B, b.T, ws, false, one_thread()) /
         double(b.B * b.T);
}

// Gradient of the mean loss: params (no adapter) or gains (with one).
std::vector<float> gradient(const Model& m, Precision p, const norm::GainView* g, const Batch& b,
                            Workspace& ws, const Exec& ex) {
  transformer_forward(m, p, g, b.in.data(), b.tg.data(), b.B, b.T, ws, true, ex);
  std::vector<float> grad(size_t(g ? m.config().n_gains() : m.n_params()));
  transformer_backward(m, p, g, b.in.data(), b.tg.data(), b.B, b.T, float(1.0 / double(b.B * b.T)),
                       ws, g ? nullptr : grad.data(), g ? grad.data() : nullptr, ex);
  return grad;
}

double rel(double a, double b, double floor) {
  return std::fabs(a - b) / std::max({std::fabs(a), std::fabs(b), floor});
}

// The network in double, written from the definition (model.h, layers.h):
// params in Model::params() layout (a copy, which the caller may edit, e.g.
// to the ternarised weights), gains per norm (1 without an adapter).
struct RefModel {
  ModelConfig c;
  std::vector<double> p, gains;
  std::vector<int64_t> norm_off;
  std::vector<int64_t> lin_off;  // layer * 4 + Linear
  int64_t head_off;

  RefModel(const Model& m, const float* g) : c(m.config()), head_off(m.head_offset()) {
    p.assign(m.params(), m.params() + m.n_params());
    gains.assign(size_t(c.n_gains()), 1.0);
    if (g) gains.assign(g, g + c.n_gains());
    for (int64_t k = 0; k < c.n_norms(); ++k) norm_off.push_back(m.norm_offset(k));
    for (int64_t l = 0; l < c.n_layers; ++l)
      for (int k = 0; k < kLinearsPerLayer; ++k) lin_off.push_back(m.linear_offset(l, Linear(k)));
  }
  // Ternarised block weights (trit * scale) in place of the latent ones.
  void use_ternary(const Model& m) {
    for (int64_t l = 0; l < c.n_layers; ++l)
      for (int k = 0; k < kMatricesPerLayer; ++k) {
        const Matrix mx = Matrix(k);
        const TensorInfo& t = m.tensor("layers." + std::to_string(l) + "." + matrix_name(mx));
        std::vector<int8_t> tr(size_t(t.rows * t.cols));
        float sc = 0;
        m.get_ternary(l, mx, tr.data(), &sc);
        for (int64_t i = 0; i < t.rows * t.cols; ++i)
          p[size_t(t.offset + i)] = double(tr[size_t(i)]) * sc;
      }
  }

  using Mat = std::vector<double>;
  void norm(const Mat& x, int64_t n, int64_t k, Mat& y) const {
    const int64_t d = c.d_model;
    y.assign(size_t(n * d), 0.0);
    for (int64_t t = 0; t < n; ++t) {
      double ss = 0;
      for (int64_t j = 0; j < d; ++j) ss += x[size_t(t * d + j)] * x[size_t(t * d + j)];
      const double inv = 1.0 / std::sqrt(ss / double(d) + double(c.norm_eps));
      for (int64_t j = 0; j < d; ++j)
        y[size_t(t * d + j)] = x[size_t(t * d + j)] * inv * p[size_t(norm_off[size_t(k)] + j)] *
                               gains[size_t(k * d + j)];
    }
  }
  // y (n x rows) = x (n x cols) W^T, W at offset off.
  void lin(const Mat& x, int64_t n, int64_t off, int64_t rows, int64_t cols, Mat& y) const {
    y.assign(size_t(n * rows), 0.0);
    for (int64_t t = 0; t < n; ++t)
      for (int64_t r = 0; r < rows; ++r) {
        double s = 0;
        for (int64_t j = 0; j < cols; ++j)
          s += x[size_t(t * cols + j)] * p[size_t(off + r * cols + j)];
        y[size_t(t * rows + r)] = s;
      }
  }
  double loss(const std::vector<int32_t>& in, const std::vector<int32_t>& tg, int64_t B,
              int64_t T) const {
    const int64_t d = c.d_model, f = c.d_ff, V = c.vocab, H = c.n_heads, hd = d / H, N = B * T;
    const int64_t Hkv = c.n_kv_heads > 0 ? c.n_kv_heads : H, kvd = Hkv * hd, ld = d + 2 * kvd;
    Mat x(size_t(N * d)), h, qkv, att, o, gu, sw, ff;
    for (int64_t t = 0; t < N; ++t)
      for (int64_t j = 0; j < d; ++j) x[size_t(t * d + j)] = p[size_t(in[size_t(t)] * d + j)];
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const int64_t* lo = &lin_off[size_t(l * kLinearsPerLayer)];
      norm(x, N, 2 * l, h);
      lin(h, N, lo[0], ld, d, qkv);
      for (int64_t t = 0; t < N; ++t)  // RoPE on the H q heads and the Hkv k heads, position t % T
        for (int64_t part = 0; part < 2; ++part)
          for (int64_t hh = 0; hh < (part == 0 ? H : Hkv); ++hh)
            for (int64_t i = 0; i < hd / 2; ++i) {
              const double a =
                  double(t % T) * std::pow(double(c.rope_theta), -2.0 * double(i) / double(hd));
              double* v = &qkv[size_t(t * ld + part * d + hh * hd + 2 * i)];
              const double v0 = v[0], v1 = v[1];
              v[0] = v0 * std::cos(a) - v1 * std::sin(a);
              v[1] = v0 * std::sin(a) + v1 * std::cos(a);
            }
      att.assign(size_t(N * d), 0.0);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t hh = 0; hh < H; ++hh)
          for (int64_t i = 0; i < T; ++i) {
            const int64_t kc = d + hh / (H / Hkv) * hd;  // k columns of the head's kv head
            std::vector<double> sc(size_t(i + 1));
            double mx = -1e300, z = 0;
            for (int64_t j = 0; j <= i; ++j) {
              double s = 0;
              for (int64_t e = 0; e < hd; ++e)
                s += qkv[size_t((b * T + i) * ld + hh * hd + e)] *
                     qkv[size_t((b * T + j) * ld + kc + e)];
              sc[size_t(j)] = s / std::sqrt(double(hd));
              mx = std::max(mx, sc[size_t(j)]);
            }
            for (auto& v : sc) z += (v = std::exp(v - mx));
            for (int64_t j = 0; j <= i; ++j)
              for (int64_t e = 0; e < hd; ++e)
                att[size_t((b * T + i) * d + hh * hd + e)] +=
                    sc[size_t(j)] / z * qkv[size_t((b * T + j) * ld + kc + kvd + e)];
          }
      lin(att, N, lo[1], d, d, o);
      for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];
      norm(x, N, 2 * l + 1, h);
      lin(h, N, lo[2], 2 * f, d, gu);
      sw.assign(size_t(N * f), 0.0);
      for (int64_t t = 0; t < N; ++t)
        for (int64_t j = 0; j < f; ++j) {
          const double g = gu[size_t(t * 2 * f + j)], u = gu[size_t(t * 2 * f + f + j)];
          sw[size_t(t * f + j)] = g / (1.0 + std::exp(-g)) * u;
        }
      lin(sw, N, lo[3], d, f, ff);
      for (size_t i = 0; i < x.size(); ++i) x[i] += ff[i];
    }
    norm(x, N, 2 * c.n_layers, h);
    double total = 0;
    for (int64_t t = 0; t < N; ++t) {
      std::vector<double> lg(static_cast<size_t>(V));
      double mx = -1e300, z = 0;
      for (int64_t v = 0; v < V; ++v) {
        double s = 0;
        for (int64_t j = 0; j < d; ++j) s += h[size_t(t * d + j)] * p[size_t(head_off + v * d + j)];
        lg[size_t(v)] = s;
        mx = std::max(mx, s);
      }
      for (double v : lg) z += std::exp(v - mx);
      total += mx + std::log(z) - lg[size_t(tg[size_t(t)])];
    }
    return total / double(N);
  }
};

// Worst error of grad (fp32 backward) against the reference's central
// differences over the entries idx of vals (the reference's own parameters
// or gains; offset maps them into grad).
double check_against_ref(RefModel& r, std::vector<double>& vals, int64_t off, int64_t n,
                         const float* grad, const Batch& b, Rng& rng, int64_t max_checks = 48) {
  std::vector<int64_t> idx;
  if (n <= max_checks) {
    for (int64_t i = 0; i < n; ++i) idx.push_back(i);
  } else {
    std::vector<int64_t> order(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) order[size_t(i)] = i;
    std::partial_sort(order.begin(), order.begin() + 8, order.end(), [&](int64_t x, int64_t y) {
      return std::fabs(grad[off + x]) > std::fabs(grad[off + y]);
    });
    idx.assign(order.begin(), order.begin() + 8);  // the largest, and random ones
    while (int64_t(idx.size()) < max_checks) idx.push_back(rng.below(n));
  }
  const double h = 1e-5;
  std::vector<double> num(idx.size());
  double nmax = 0;
  for (size_t j = 0; j < idx.size(); ++j) {
    double& v = vals[size_t(off + idx[j])];
    const double v0 = v;
    v = v0 + h;
    const double lp = r.loss(b.in, b.tg, b.B, b.T);
    v = v0 - h;
    const double lm = r.loss(b.in, b.tg, b.B, b.T);
    v = v0;
    num[j] = (lp - lm) / (2 * h);
    nmax = std::max(nmax, std::fabs(num[j]));
  }
  double worst = 0;
  for (size_t j = 0; j < idx.size(); ++j)
    worst = std::max(worst, rel(grad[off + idx[j]], num[j], 1e-3 * nmax + 1e-30));
  return worst;
}

double cosine(const float* a, const float* b, int64_t n) {
  double ab = 0, aa = 0, bb = 0;
  for (int64_t i = 0; i < n; ++i) {
    ab += double(a[i]) * b[i];
    aa += double(a[i]) * a[i];
    bb += double(b[i]) * b[i];
  }
  return ab / std::sqrt(aa * bb + 1e-300);
}

// A repetitive toy stream: a 7-token motif.
std::vector<int32_t> motif_rows(int64_t B, int64_t T, const std::vector<int32_t>& motif) {
  std::vector<int32_t> rows(size_t(B * (T + 1)));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t <= T; ++t)
      rows[size_t(b * (T + 1) + t)] = motif[size_t((b * 3 + t) % int64_t(motif.size()))];
  return rows;
}

}  // namespace

// ---- parameters --------------------------------------------------------------------------------

TEST(model_params_layout_and_init) {
  const ModelConfig def;
  CHECK(def.n_norms() == 9);
  CHECK(def.n_gains() == 2304);
  Model m(def, 42);
  CHECK(int64_t(m.tensors().size()) == 1 + 9 * def.n_layers + 1);
  int64_t total = 0;
  for (const TensorInfo& t : m.tensors()) total += t.rows * t.cols;
  CHECK(total == m.n_params());
  CHECK(m.tensor("layers.3.w2").rows == def.d_model && m.tensor("layers.3.w2").cols == def.d_ff);
  CHECK(m.linear_offset(1, Linear::Qkv) == m.tensor("layers.1.wq").offset);
  CHECK(m.linear_offset(1, Linear::GateUp) == m.tensor("layers.1.w1").offset);
  CHECK(m.norm_offset(3) == m.tensor("layers.1.ffn_norm").offset);
  CHECK(m.norm_offset(8) == m.tensor("final_norm").offset);
  CHECK(!m.ternary_stale());
  // Same seed, same weights; another seed, other weights.
  Model same(def, 42), other(def, 43);
  CHECK(std::memcmp(m.params(), same.params(), size_t(m.n_params()) * 4) == 0);
  CHECK(std::memcmp(m.params(), other.params(), size_t(m.n_params()) * 4) != 0);
  const TensorInfo& e = m.tensor("tok_embedding");
  double s2 = 0;
  for (int64_t i = 0; i < e.rows * e.cols; ++i) s2 += double(m.params()[i]) * m.params()[i];
  CHECK_MSG(std::fabs(std::sqrt(s2 / double(e.rows * e.cols)) - 0.02) < 1e-3, "embedding std");
  CHECK(m.params()[m.norm_offset(0)] == 1.0f);
  CHECK(throws_with<std::invalid_argument>([&] { m.tensor("nope"); }, "nope"));
}

TEST(model_ternary_weights) {
  const ModelConfig c = tiny_config();
  Model m(c, 5);
  roughen(m, 6);
  const int64_t d = c.d_model;
  // One absmean scale per matrix, not per fused group.
  for (Matrix mx : {Matrix::Wq, Matrix::Wk, Matrix::Wv, Matrix::W3, Matrix::W2}) {
    const TensorInfo& t = m.tensor(std::string("layers.1.") + matrix_name(mx));
    double s = 0;
    for (int64_t i = 0; i < t.rows * t.cols; ++i) s += std::fabs(m.params()[t.offset + i]);
    std::vector<int8_t> tr(size_t(t.rows * t.cols));
    float scale = 0;
    m.get_ternary(1, mx, tr.data(), &scale);
    CHECK_MSG(std::fabs(scale - s / double(t.rows * t.cols)) < 1e-5 * scale, matrix_name(mx));
    for (int64_t i = 0; i < t.rows * t.cols; ++i) {
      const double r = m.params()[t.offset + i] / scale;
      CHECK(tr[size_t(i)] == int8_t(std::max(-1.0, std::min(1.0, std::nearbyint(r)))));
    }
  }
  // set_ternary round trip, and a bad trit is refused.
  std::vector<int8_t> tr(size_t(d * d));
  for (size_t i = 0; i < tr.size(); ++i) tr[i] = int8_t(int(i % 3) - 1);
  m.set_ternary(0, Matrix::Wk, tr.data(), 0.5f);
  std::vector<int8_t> back(tr.size());
  float sc = 0;
  m.get_ternary(0, Matrix::Wk, back.data(), &sc);
  CHECK(back == tr && sc == 0.5f);
  float sq = 0;
  m.get_ternary(0, Matrix::Wq, back.data(), &sq);  // neighbours untouched
  CHECK(sq != 0.5f);
  tr[7] = 2;
  CHECK(throws_with<std::invalid_argument>([&] { m.set_ternary(0, Matrix::Wk, tr.data(), 1.0f); },
                                           "must be -1, 0 or 1"));
  CHECK(throws_with<std::invalid_argument>([&] { m.get_ternary(2, Matrix::Wk, back.data(), &sc); },
                                           "layer 2 out of range"));
}

// ---- gradient checks
// ------------------------------------------------------------------------------

constexpr double kRefTol = 1e-3;

// Both shapes: multi-head with the tied head, and grouped-query attention
// with an untied head (every tensor checked, the output table included).
TEST(model_grad_fp32_whole_model) {
  for (const ModelConfig& c : {tiny_config(), tiny_gqa_config()}) {
    Model m(c, 11);
    roughen(m, 12);
    const Batch b = random_batch(c, 2, 9, 13);
    Workspace ws(c, 2, 9, true);
    const std::vector<float> g = gradient(m, Precision::F32, nullptr, b, ws, one_thread());
    RefModel r(m, nullptr);
    const double lf = mean_loss(m, Precision::F32, nullptr, b, ws),
                 lr = r.loss(b.in, b.tg, b.B, b.T);
    CHECK_MSG(std::fabs(lf - lr) < 1e-5, "fp32 forward " << lf << " vs double reference " << lr);
    Rng rng(14);
    double worst = 0;
    std::string worst_name;
    for (const TensorInfo& t : m.tensors()) {
      const double e = check_against_ref(r, r.p, t.offset, t.rows * t.cols, g.data(), b, rng);
      CHECK_MSG(e < kRefTol, t.name << " err " << e);
      if (e >= worst) worst = e, worst_name = t.name;
    }
    std::printf(
        "  fp32 whole model (%lld/%lld heads, %s head) vs double reference: worst err "
        "%.2e (%s), tol %.0e\n",
        (long long)c.n_heads, (long long)c.kv_heads(), c.tied_head ? "tied" : "untied", worst,
        worst_name.c_str(), kRefTol);
  }
}

// Ternary-aware training's gradient (STE) is the exact gradient of the
// surrogate: the network whose block weights are the ternarised ones, with
// the activation quantiser taken as the identity (TernaryF32Act), the latent
// weights' gradient being that of the ternarised weights. With int8
// activations (Ternary) it differs by the activation quantisation only.
TEST(model_grad_ternary_ste_whole_model) {
  for (const ModelConfig& c : {tiny_config(), tiny_gqa_config()}) {
    Model m(c, 21);
    roughen(m, 22);
    const Batch b = random_batch(c, 2, 9, 23);
    Workspace ws(c, 2, 9, true);
    const std::vector<float> gs =
        gradient(m, Precision::TernaryF32Act, nullptr, b, ws, one_thread());
    const std::vector<float> gq = gradient(m, Precision::Ternary, nullptr, b, ws, one_thread());
    RefModel r(m, nullptr);
    r.use_ternary(m);
    const double ls = mean_loss(m, Precision::TernaryF32Act, nullptr, b, ws),
                 lr = r.loss(b.in, b.tg, b.B, b.T);
    CHECK_MSG(std::fabs(ls - lr) < 1e-5, "ternary-f32act forward " << ls << " vs reference " << lr);
    Rng rng(24);
    double worst = 0, worst_cos = 1;
    for (const TensorInfo& t : m.tensors()) {
      const double e = check_against_ref(r, r.p, t.offset, t.rows * t.cols, gs.data(), b, rng);
      CHECK_MSG(e < kRefTol, t.name << " STE err " << e);
      worst = std::max(worst, e);
      const double cs = cosine(gq.data() + t.offset, gs.data() + t.offset, t.rows * t.cols);
      CHECK_MSG(cs > 0.99, t.name << " int8-activation gradient cosine " << cs);
      worst_cos = std::min(worst_cos, cs);
    }
    std::printf(
        "  ternary STE (fp32 act, %lld/%lld heads) vs double surrogate: worst err %.2e, tol "
        "%.0e; int8-act vs fp32-act gradient cosine >= %.4f (tol 0.99)\n",
        (long long)c.n_heads, (long long)c.kv_heads(), worst, kRefTol, worst_cos);
  }
}

// The adapter: only the gains get a gradient, by backprop through the frozen
// base. Through the ternary base with the activation quantiser taken as the
// identity (STE) the gain gradient is exact; checked on every gain, and over
// the fp32 base too.
TEST(model_grad_adapter_gains) {
  const ModelConfig c = tiny_config();
  Model m(c, 31);
  roughen(m, 32);
  Rng rng(33);
  std::vector<float> gains(static_cast<size_t>(c.n_gains()));
  for (auto& v : gains) v = 1.0f + 0.2f * rng.normal();
  const std::vector<norm::GainView> views = f32_gain_views(c, gains.data());
  const Batch b = random_batch(c, 2, 9, 34);
  Workspace ws(c, 2, 9, true);
  double worst = 0;
  for (Precision p : {Precision::TernaryF32Act, Precision::F32}) {
    const std::vector<float> g = gradient(m, p, views.data(), b, ws, one_thread());
    RefModel r(m, gains.data());
    if (p != Precision::F32) r.use_ternary(m);
    const double lf = mean_loss(m, p, views.data(), b, ws), lr = r.loss(b.in, b.tg, b.B, b.T);
    CHECK_MSG(std::fabs(lf - lr) < 1e-5, precision_name(p) << " forward " << lf << " vs " << lr);
    const double e = check_against_ref(r, r.gains, 0, c.n_gains(), g.data(), b, rng, c.n_gains());
    CHECK_MSG(e < kRefTol, precision_name(p) << " adapter gain grad err " << e);
    worst = std::max(worst, e);
  }
  const std::vector<float> gs =
      gradient(m, Precision::TernaryF32Act, views.data(), b, ws, one_thread());
  const std::vector<float> gq = gradient(m, Precision::Ternary, views.data(), b, ws, one_thread());
  const double cs = cosine(gq.data(), gs.data(), c.n_gains());
  CHECK_MSG(cs > 0.98, "int8-activation gain gradient cosine " << cs);
  std::printf(
      "  adapter gains (all %lld) vs double reference: worst err %.2e, tol %.0e; int8-act "
      "vs STE surrogate cosine %.4f (tol 0.98)\n",
      (long long)c.n_gains(), worst, kRefTol, cs);
  // Without an adapter the norm weights' gradient comes out of the same
  // kernel call; at gains = 1, d/dg (w g) = w d/dw: the two must agree.
  std::vector<float> ones(static_cast<size_t>(c.n_gains()), 1.0f);
  const std::vector<norm::GainView> unit = f32_gain_views(c, ones.data());
  const std::vector<float> gu = gradient(m, Precision::Ternary, unit.data(), b, ws, one_thread());
  const std::vector<float> gp = gradient(m, Precision::Ternary, nullptr, b, ws, one_thread());
  double e = 0;
  for (int64_t k = 0; k < c.n_norms(); ++k)
    for (int64_t j = 0; j < c.d_model; ++j) {
      const double w = m.params()[m.norm_offset(k) + j];
      e = std::max(e,
                   std::fabs(gu[size_t(k * c.d_model + j)] - w * gp[size_t(m.norm_offset(k) + j)]));
    }
  CHECK_MSG(e < 1e-5, "gain vs norm-weight gradient " << e);
}

// ---- grouped-query attention and the untied head ---------------------------------------------

namespace {

// Per-token NLLs of one forward (scoring every position).
std::vector<double> nlls(const Model& m, Precision p, const Batch& b, Workspace& ws) {
  transformer_forward(m, p, nullptr, b.in.data(), b.tg.data(), b.B, b.T, ws, false, one_thread());
  return std::vector<double>(ws.nll(), ws.nll() + b.B * b.T);
}

// Copies the tensors the two models share by name (same shapes).
void copy_shared(const Model& from, Model& to) {
  for (const TensorInfo& t : to.tensors())
    for (const TensorInfo& f : from.tensors())
      if (f.name == t.name && f.rows == t.rows && f.cols == t.cols)
        std::copy(from.params() + f.offset, from.params() + f.offset + f.rows * f.cols,
                  to.params() + t.offset);
}

}  // namespace

// n_kv_heads == n_heads is multi-head attention: the same layout, init,
// losses and gradients, bit for bit.
TEST(model_gqa_equal_heads_is_mha) {
  ModelConfig mha = tiny_config(), explicit_kv = tiny_config();
  explicit_kv.n_kv_heads = explicit_kv.n_heads;
  Model a(mha, 71), b(explicit_kv, 71);
  CHECK(a.n_params() == b.n_params());
  CHECK(std::memcmp(a.params(), b.params(), size_t(a.n_params()) * 4) == 0);
  const Batch bt = random_batch(mha, 2, 9, 72);
  Workspace wa(mha, 2, 9, true), wb(explicit_kv, 2, 9, true);
  for (Precision p : {Precision::F32, Precision::Ternary}) {
    CHECK(nlls(a, p, bt, wa) == nlls(b, p, bt, wb));
    const std::vector<float> ga = gradient(a, p, nullptr, bt, wa, one_thread());
    const std::vector<float> gb = gradient(b, p, nullptr, bt, wb, one_thread());
    CHECK_MSG(std::memcmp(ga.data(), gb.data(), ga.size() * 4) == 0, precision_name(p));
  }
}

// A grouped-query model is the multi-head model whose k and v heads repeat
// each shared head for its query heads: the same outputs (bit for bit with
// the ternary weights copied, to fp32 rounding with the latent ones), and the
// shared head's gradient is the sum of its copies' gradients.
TEST(model_gqa_matches_duplicated_mha) {
  ModelConfig gc = tiny_config();
  gc.n_heads = 4, gc.n_kv_heads = 2;
  ModelConfig mc = gc;
  mc.n_kv_heads = 0;
  const int64_t hd = gc.head_dim(), group = gc.n_heads / gc.kv_heads(), d = gc.d_model;
  Model g(gc, 81);
  roughen(g, 82);
  Model m(mc, 1);
  copy_shared(g, m);
  for (int64_t l = 0; l < gc.n_layers; ++l)
    for (const char* w : {"wk", "wv"}) {
      const std::string name = "layers." + std::to_string(l) + "." + w;
      const TensorInfo& src = g.tensor(name);
      const TensorInfo& dst = m.tensor(name);
      for (int64_t h = 0; h < mc.n_heads; ++h)  // head h's rows = kv head h / group's rows
        std::copy(g.params() + src.offset + h / group * hd * d,
                  g.params() + src.offset + (h / group + 1) * hd * d,
                  m.params() + dst.offset + h * hd * d);
    }
  m.quantize(one_thread());
  // The ternary weights exactly (absmean over repeated rows may round its
  // scale differently).
  for (int64_t l = 0; l < gc.n_layers; ++l)
    for (int k = 0; k < kMatricesPerLayer; ++k) {
      const Matrix mx = Matrix(k);
      const LinearShape gs = g.matrix_shape(mx), ms = m.matrix_shape(mx);
      std::vector<int8_t> tg(size_t(gs.rows * gs.cols)), tm(size_t(ms.rows * ms.cols));
      float scale = 0;
      g.get_ternary(l, mx, tg.data(), &scale);
      for (int64_t r = 0; r < ms.rows; ++r) {
        const int64_t from = gs.rows == ms.rows ? r : r / hd / group * hd + r % hd;
        std::copy(tg.begin() + from * gs.cols, tg.begin() + (from + 1) * gs.cols,
                  tm.begin() + r * ms.cols);
      }
      m.set_ternary(l, mx, tm.data(), scale);
    }
  const Batch b = random_batch(gc, 2, 11, 83);
  Workspace wg(gc, 2, 11, true), wm(mc, 2, 11, true);
  CHECK(nlls(g, Precision::Ternary, b, wg) == nlls(m, Precision::Ternary, b, wm));
  CHECK(nlls(g, Precision::TernaryF32Act, b, wg) == nlls(m, Precision::TernaryF32Act, b, wm));
  const std::vector<double> nf_g = nlls(g, Precision::F32, b, wg),
                            nf_m = nlls(m, Precision::F32, b, wm);
  double worst = 0;
  for (size_t i = 0; i < nf_g.size(); ++i) worst = std::max(worst, std::fabs(nf_g[i] - nf_m[i]));
  CHECK_MSG(worst < 1e-5, "fp32 GQA vs duplicated MHA NLL " << worst);
  // Gradients (fp32): shared tensors equal, each shared k/v head the sum of its copies.
  const std::vector<float> gg = gradient(g, Precision::F32, nullptr, b, wg, one_thread());
  const std::vector<float> gm = gradient(m, Precision::F32, nullptr, b, wm, one_thread());
  double gmax = 0;
  for (float v : gm) gmax = std::max(gmax, double(std::fabs(v)));
  double gerr = 0;
  for (const TensorInfo& t : g.tensors()) {
    const TensorInfo& u = m.tensor(t.name);
    const bool kv = t.rows != u.rows;
    for (int64_t r = 0; r < t.rows; ++r)
      for (int64_t c = 0; c < t.cols; ++c) {
        double want = 0;
        if (kv) {
          const int64_t kvh = r / hd;
          for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h)
            want += gm[size_t(u.offset + (h * hd + r % hd) * t.cols + c)];
        } else {
          want = gm[size_t(u.offset + r * t.cols + c)];
        }
        gerr = std::max(gerr, std::fabs(want - gg[size_t(t.offset + r * t.cols + c)]) / gmax);
      }
  }
  CHECK_MSG(gerr < 1e-5, "GQA gradient vs summed MHA copies, relative to max |grad|: " << gerr);
  std::printf(
      "  GQA vs duplicated MHA: ternary NLLs bit-identical, fp32 max |dNLL| %.1e, "
      "gradient max rel err %.1e\n",
      worst, gerr);
}

// The untied head: its own table, initialised like the embedding; with the
// table equal to the embedding it computes what the tied model does, and its
// gradient plus the untied embedding's is the tied embedding's gradient.
TEST(model_untied_head) {
  ModelConfig tc = tiny_config(), uc = tiny_config();
  uc.tied_head = false;
  Model t(tc, 91), u(uc, 91);
  CHECK(u.n_params() == t.n_params() + uc.vocab * uc.d_model);
  CHECK(t.head() == t.embedding() && t.head_offset() == 0);
  const TensorInfo& out = u.tensor("output");
  CHECK(out.rows == uc.vocab && out.cols == uc.d_model && u.head_offset() == out.offset);
  CHECK(out.offset ==
        u.tensor("final_norm").offset + uc.d_model);  // last: other tensors keep their place
  CHECK(std::memcmp(t.params(), u.params(), size_t(t.n_params()) * 4) == 0);  // and their init
  double s2 = 0;
  for (int64_t i = 0; i < out.rows * out.cols; ++i) s2 += double(u.head()[i]) * u.head()[i];
  CHECK_MSG(std::fabs(std::sqrt(s2 / double(out.rows * out.cols)) - 0.02) < 2e-3, "output std");
  CHECK(std::memcmp(u.head(), u.embedding(), size_t(out.rows * out.cols) * 4) != 0);
  CHECK(throws_with<std::invalid_argument>([&] { t.tensor("output"); }, "output"));

  roughen(t, 92);
  copy_shared(t, u);
  std::copy(t.embedding(), t.embedding() + out.rows * out.cols, u.params() + out.offset);
  u.quantize(one_thread());
  const Batch b = random_batch(tc, 2, 9, 93);
  Workspace wt(tc, 2, 9, true), wu(uc, 2, 9, true);
  for (Precision p : {Precision::F32, Precision::Ternary})
    CHECK(nlls(t, p, b, wt) == nlls(u, p, b, wu));
  const std::vector<float> gt = gradient(t, Precision::F32, nullptr, b, wt, one_thread());
  const std::vector<float> gu = gradient(u, Precision::F32, nullptr, b, wu, one_thread());
  double gmax = 0, err = 0;
  for (float v : gt) gmax = std::max(gmax, double(std::fabs(v)));
  for (int64_t i = 0; i < out.rows * out.cols; ++i)
    err = std::max(
        err, std::fabs(double(gu[size_t(i)]) + gu[size_t(out.offset + i)] - gt[size_t(i)]) / gmax);
  CHECK_MSG(err < 1e-6, "untied embedding + head gradient vs tied " << err);
  for (int64_t i = out.rows * out.cols; i < t.n_params(); ++i)  // the blocks and norms: the same
    err = std::max(err, std::fabs(double(gu[size_t(i)]) - gt[size_t(i)]) / gmax);
  CHECK_MSG(err < 1e-6, "untied vs tied block gradients " << err);
}

// Training a grouped-query model with an untied head: the base trains (the
// output table with it), an adapter on top moves only its gains.
TEST(model_train_gqa_untied) {
  ModelConfig c;
  c.vocab = 32, c.d_model = 32, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 1, c.d_ff = 64,
  c.context = 32, c.tied_head = false;
  const int64_t B = 4, T = 32, steps = 40;
  const std::vector<int32_t> rows_a = motif_rows(B, T, {3, 1, 4, 1, 5, 9, 2});
  const std::vector<int32_t> rows_b = motif_rows(B, T, {7, 20, 7, 11, 30, 6, 0});
  ThreadPool pool(2);
  const Exec ex{default_isa(), &pool, 2};
  Model m(c, 7);
  const TensorInfo& out = m.tensor("output");
  const std::vector<float> head0(m.head(), m.head() + out.rows * out.cols);
  TrainConfig tc;
  tc.batch = B, tc.seq = T;
  tc.schedule = {1e-2f, 1e-3f, 5, steps};
  Trainer tr(m, tc);
  double first = 0, last = 0;
  for (int64_t s = 0; s < steps; ++s) {
    const StepStats st = tr.step(rows_a.data(), B, T, ex);
    if (s == 0) first = st.loss;
    last = st.loss;
  }
  CHECK_MSG(last < 0.3 * first, "GQA untied ternary base loss " << first << " -> " << last);
  CHECK(std::memcmp(head0.data(), m.head(), head0.size() * 4) != 0);
  std::vector<float> before(m.params(), m.params() + m.n_params());
  TrainConfig ac = tc;
  ac.mode = TrainMode::AdapterGains;
  ac.schedule = {1e-1f, 1e-2f, 2, 10};
  Trainer at(m, ac);
  for (int s = 0; s < 10; ++s) at.step(rows_b.data(), B, T, ex);
  CHECK(std::memcmp(before.data(), m.params(), before.size() * 4) == 0);
  std::printf("  GQA (4 query heads, 1 kv head) untied base: loss %.3f -> %.3f in %lld steps\n",
              first, last, (long long)steps);
}

// ---- training -----------------------------------------------------------------------------------

TEST(model_train_lowers_loss) {
  ModelConfig c;
  c.vocab = 32, c.d_model = 32, c.n_layers = 2, c.n_heads = 2, c.d_ff = 64, c.context = 32;
  const int64_t B = 4, T = 32, steps = 40;
  const std::vector<int32_t> motif_a = {3, 1, 4, 1, 5, 9, 2}, motif_b = {7, 20, 7, 11, 30, 6, 0};
  const std::vector<int32_t> rows_a = motif_rows(B, T, motif_a), rows_b = motif_rows(B, T, motif_b);
  ThreadPool pool(2);
  const Exec ex{default_isa(), &pool, 2};
  for (TrainMode mode : {TrainMode::TernaryBase, TrainMode::Fp32Base}) {
    Model m(c, 7);
    TrainConfig tc;
    tc.mode = mode, tc.batch = B, tc.seq = T;
    tc.schedule = {1e-2f, 1e-3f, 5, steps};
    Trainer tr(m, tc);
    double first = 0, last = 0;
    for (int64_t s = 0; s < steps; ++s) {
      const StepStats st = tr.step(rows_a.data(), B, T, ex);
      CHECK(st.step == s + 1);
      if (s == 0) first = st.loss;
      last = st.loss;
    }
    CHECK_MSG(last < 0.3 * first, train_mode_name(mode) << " loss " << first << " -> " << last);
    std::printf("  %s base: loss %.3f -> %.3f in %lld steps\n", train_mode_name(mode), first, last,
                (long long)steps);
    if (mode == TrainMode::Fp32Base) {
      // fp32 training leaves the ternary weights stale until the PTQ.
      CHECK(m.ternary_stale());
      std::vector<int32_t> text(rows_a.begin(), rows_a.begin() + T + 1);
      CHECK(throws_with<std::logic_error>(
          [&] { evaluate(m, nullptr, 0, text.data(), T + 1, 100, EvalOptions{}, ex); },
          "quantize"));
      m.quantize(ex);
      const EvalResult f =
          evaluate(m, nullptr, 0, text.data(), T + 1, 100, EvalOptions{Precision::F32, 0, 4}, ex);
      const EvalResult q = evaluate(m, nullptr, 0, text.data(), T + 1, 100, EvalOptions{}, ex);
      std::printf("  fp32 base after PTQ: mean NLL fp32 %.3f, ternary %.3f\n", f.mean_nll,
                  q.mean_nll);
      CHECK(std::isfinite(q.mean_nll));
    } else {
      // The adapter on top of this base, on another motif: only gains move.
      std::vector<float> before(m.params(), m.params() + m.n_params());
      TrainConfig ac;
      ac.mode = TrainMode::AdapterGains, ac.batch = B, ac.seq = T;
      ac.schedule = {1e-1f, 1e-2f, 2, steps};
      ac.adamw.weight_decay = 0.0f;
      Trainer at(m, ac);
      double a0 = 0, a1 = 0;
      for (int64_t s = 0; s < steps; ++s) {
        const StepStats st = at.step(rows_b.data(), B, T, ex);
        if (s == 0) a0 = st.loss;
        a1 = st.loss;
      }
      CHECK(std::memcmp(before.data(), m.params(), before.size() * 4) == 0);
      CHECK_MSG(a1 < 0.85 * a0, "adapter loss " << a0 << " -> " << a1);
      std::printf("  adapter gains on a new motif: loss %.3f -> %.3f in %lld steps\n", a0, a1,
                  (long long)steps);
      // The trained gains, evaluated as an adapter, beat no adapter on motif b.
      std::vector<int32_t> text(rows_b.begin(), rows_b.begin() + T + 1);
      const std::vector<norm::GainView> v = at.gain_views();
      const EvalResult with =
          evaluate(m, v.data(), int64_t(v.size()), text.data(), T + 1, 100, EvalOptions{}, ex);
      const EvalResult none = evaluate(m, nullptr, 0, text.data(), T + 1, 100, EvalOptions{}, ex);
      CHECK_MSG(with.mean_nll < none.mean_nll, with.mean_nll << " vs " << none.mean_nll);
    }
  }
}

// Same seed and data: the same weights and losses bit for bit, with 1 or 2 threads.
TEST(model_train_deterministic_across_threads) {
  const ModelConfig c = tiny_config();
  const int64_t B = 3, T = 16;
  Rng rng(41);
  std::vector<int32_t> rows(size_t(B * (T + 1)));
  for (auto& v : rows) v = int32_t(rng.below(c.vocab));
  ThreadPool pool(2);
  for (TrainMode mode : {TrainMode::TernaryBase, TrainMode::Fp32Base, TrainMode::AdapterGains}) {
    std::vector<std::vector<float>> weights;
    std::vector<std::vector<double>> losses;
    for (int threads : {1, 2, 1}) {
      Model m(c, 42);
      TrainConfig tc;
      tc.mode = mode, tc.batch = B, tc.seq = T;
      tc.schedule = {1e-2f, 1e-3f, 1, 4};
      Trainer tr(m, tc);
      const Exec ex{default_isa(), threads > 1 ? &pool : nullptr, threads};
      std::vector<double> ls;
      for (int s = 0; s < 4; ++s) ls.push_back(tr.step(rows.data(), B, T, ex).loss);
      losses.push_back(ls);
      weights.emplace_back(mode == TrainMode::AdapterGains
                               ? std::vector<float>(tr.gains(), tr.gains() + c.n_gains())
                               : std::vector<float>(m.params(), m.params() + m.n_params()));
    }
    CHECK_MSG(losses[0] == losses[1] && losses[0] == losses[2], train_mode_name(mode));
    CHECK_MSG(std::memcmp(weights[0].data(), weights[1].data(), weights[0].size() * 4) == 0,
              train_mode_name(mode) << " weights differ between 1 and 2 threads");
    CHECK_MSG(std::memcmp(weights[0].data(), weights[2].data(), weights[0].size() * 4) == 0,
              train_mode_name(mode) << " weights differ run to run");
    CHECK(losses[0][3] != losses[0][0]);  // the steps did something
  }
}

// Trainers lease their workspace per step (WorkspaceLease): a new trainer takes the one an earlier
// trainer gave back, dirty with that run's activations and gradients, and gets the same bits as
// on a workspace of its own, in every mode, with full and partial batches.
TEST(model_train_reused_workspace_same_bits) {
  ModelConfig c = tiny_config();
  c.d_ff = 44;  // a shape no other test leases
  const int64_t B = 3, T = 16;
  Rng rng(91);
  std::vector<int32_t> dirty(size_t(B * (T + 1))), rows(dirty.size());
  for (auto& v : dirty) v = int32_t(rng.below(c.vocab));
  for (auto& v : rows) v = int32_t(rng.below(c.vocab));
  for (TrainMode mode : {TrainMode::TernaryBase, TrainMode::Fp32Base, TrainMode::AdapterGains}) {
    TrainConfig tc;
    tc.mode = mode, tc.batch = B, tc.seq = T;
    tc.schedule = {1e-2f, 1e-3f, 1, 4};
    // The losses of 4 steps (3, 2, 3, 2 rows) and the trained weights, as bytes.
    auto run = [&](const std::vector<int32_t>& r) {
      Model m(c, 92);
      Trainer tr(m, tc);
      std::vector<double> ls;
      for (int s = 0; s < 4; ++s)
        ls.push_back(tr.step(r.data(), s % 2 ? B - 1 : B, T, one_thread()).loss);
      const float* w = mode == TrainMode::AdapterGains ? tr.gains() : m.params();
      const int64_t n = mode == TrainMode::AdapterGains ? c.n_gains() : m.n_params();
      return std::make_pair(ls, std::vector<uint8_t>(reinterpret_cast<const uint8_t*>(w),
                                                     reinterpret_cast<const uint8_t*>(w + n)));
    };
    run(dirty);
    std::pair<std::vector<double>, std::vector<uint8_t>> own;
    {
      // The dirty idle workspace held here: the trainer makes its own.
      WorkspaceLease held(c, B, T, /*for_backward=*/true);
      own = run(rows);
    }
    // The held one is now the idle one (the most recently given back): the trainer takes it.
    const auto reused = run(rows);
    CHECK_MSG(reused.first == own.first, train_mode_name(mode) << " losses");
    CHECK_MSG(reused.second == own.second, train_mode_name(mode) << " weights");
    CHECK(own.first[3] != own.first[0]);  // the steps did something
  }
}

TEST(model_train_bad_input) {
  const ModelConfig c = tiny_config();
  Model m(c, 1);
  TrainConfig tc;
  tc.batch = 2, tc.seq = 8;
  Trainer tr(m, tc);
  std::vector<int32_t> rows(2 * 9, 1);
  rows[5] = 13;
  CHECK(throws_with<std::invalid_argument>([&] { tr.step(rows.data(), 2, 8, one_thread()); },
                                           "token id 13"));
  rows[5] = 1;
  rows[17] = -2;  // last column: a target only
  CHECK(throws_with<std::invalid_argument>([&] { tr.step(rows.data(), 2, 8, one_thread()); },
                                           "token id -2"));
  rows[17] = 1;
  CHECK(throws_with<std::invalid_argument>([&] { tr.step(rows.data(), 3, 8, one_thread()); },
                                           "batch 3"));
  CHECK(tr.steps_done() == 0);
  TrainConfig bad = tc;
  bad.seq = c.context + 1;
  CHECK(throws_with<std::invalid_argument>([&] { Trainer t(m, bad); }, "seq"));
  bad = tc;
  bad.schedule.min_lr = 1.0f;
  CHECK(throws_with<std::invalid_argument>([&] { Trainer t(m, bad); }, "minLr"));
  m.mark_latent_changed();
  bad = tc;
  bad.mode = TrainMode::AdapterGains;
  CHECK(throws_with<std::logic_error>([&] { Trainer t(m, bad); }, "quantize"));
}

// ---- evaluation
// ------------------------------------------------------------------------------------

TEST(model_eval_sliding_windows) {
  const ModelConfig c = tiny_config();  // context 16
  Model m(c, 51);
  roughen(m, 52);
  Rng rng(53);
  const int64_t n = 50;
  std::vector<int32_t> tok(static_cast<size_t>(n));
  for (auto& v : tok) v = int32_t(rng.below(c.vocab));
  ThreadPool pool(2);
  const Exec two{default_isa(), &pool, 2};
  EvalOptions o;  // ternary, stride context/2 = 8
  const EvalResult r1 = evaluate(m, nullptr, 0, tok.data(), n, 123, o, one_thread());
  const EvalResult r2 = evaluate(m, nullptr, 0, tok.data(), n, 123, o, two);
  CHECK(r1.nll == r2.nll);  // independent of the thread count, bit for bit
  CHECK(r1.window == 16 && r1.stride == 8);
  CHECK(r1.n_windows == 6);  // starts 0, 8, 16, 24, 32, then 33 (moved back to the end)
  CHECK(int64_t(r1.nll.size()) == n - 1);
  double sum = 0;
  for (double v : r1.nll) {
    CHECK(v > 0);
    sum += v;
  }
  CHECK(std::fabs(r1.total_nll - sum) < 1e-9);
  CHECK(std::fabs(r1.perplexity - std::exp(sum / double(n - 1))) < 1e-9 * r1.perplexity);
  CHECK(std::fabs(r1.bits_per_byte - sum / std::log(2.0) / 123.0) < 1e-12);

  // Each target scored once, by the first window that covers it: recompute
  // every window directly.
  const std::vector<int64_t> starts = {0, 8, 16, 24, 32, 33};
  Workspace ws(c, 1, 16, false);
  std::vector<double> expect(size_t(n - 1), -1.0);
  for (int64_t s : starts) {
    std::vector<int32_t> in(tok.begin() + s, tok.begin() + s + 16),
        tg(tok.begin() + s + 1, tok.begin() + s + 17);
    transformer_forward(m, Precision::Ternary, nullptr, in.data(), tg.data(), 1, 16, ws, false,
                        one_thread());
    for (int64_t t = 0; t < 16; ++t)
      if (expect[size_t(s + t)] < 0) expect[size_t(s + t)] = ws.nll()[t];
  }
  double worst = 0;
  for (int64_t i = 0; i < n - 1; ++i)
    worst = std::max(worst, std::fabs(expect[size_t(i)] - r1.nll[size_t(i)]));
  CHECK_MSG(worst < 1e-5, "sliding windows vs direct " << worst);
  // The batch of windows per pass is only a speed knob.
  EvalOptions o1 = o;
  o1.batch = 1;
  const EvalResult r3 = evaluate(m, nullptr, 0, tok.data(), n, 123, o1, two);
  worst = 0;
  for (int64_t i = 0; i < n - 1; ++i)
    worst = std::max(worst, std::fabs(r3.nll[size_t(i)] - r1.nll[size_t(i)]));
  CHECK_MSG(worst < 1e-5, "batch 1 vs 4 " << worst);
  // A text shorter than the context: one window over all of it.
  const EvalResult s = evaluate(m, nullptr, 0, tok.data(), 5, 10, o, one_thread());
  CHECK(s.n_windows == 1 && s.window == 4 && s.nll.size() == 4);
  // stride 1: each token with the most context possible.
  EvalOptions o2 = o;
  o2.stride = 1;
  CHECK(evaluate(m, nullptr, 0, tok.data(), n, 123, o2, one_thread()).n_windows == n - 16);
}

// evaluate() keeps its workspaces (shared by every thread) for the next calls of the same shape:
// a reused, dirty workspace gives the same bits as a fresh one (the first calls, on other threads,
// get fresh ones: no other test has this model shape).
TEST(model_eval_reused_workspace_same_bits) {
  ModelConfig c = tiny_config();  // context 16
  c.d_ff = 40;
  Model m(c, 71);
  roughen(m, 72);
  Rng rng(73);
  std::vector<int32_t> a(60), b(60);
  for (auto& v : a) v = int32_t(rng.below(c.vocab));
  for (auto& v : b) v = int32_t(rng.below(c.vocab));
  std::vector<float> gains(size_t(c.n_gains()));
  for (auto& g : gains) g = 0.5f + float(rng.below(1000)) / 1000.0f;
  const std::vector<norm::GainView> gv = f32_gain_views(c, gains.data());
  EvalOptions o;
  o.batch = 2;
  auto run = [&](const std::vector<int32_t>& t, bool adapter, Precision p) {
    EvalOptions q = o;
    q.precision = p;
    return evaluate(m, adapter ? gv.data() : nullptr, adapter ? int64_t(gv.size()) : 0, t.data(),
                    int64_t(t.size()), 100, q, one_thread());
  };
  std::vector<double> fresh_a, fresh_b;
  std::thread([&] { fresh_a = run(a, true, Precision::Ternary).nll; }).join();
  std::thread([&] { fresh_b = run(b, false, Precision::Ternary).nll; }).join();
  // This thread: other texts, adapters, precisions and shapes first, then the same calls.
  run(b, true, Precision::F32);
  run(a, false, Precision::Ternary);
  EvalOptions wide = o;
  wide.batch = 3;
  evaluate(m, nullptr, 0, b.data(), 40, 100, wide, one_thread());
  CHECK(run(a, true, Precision::Ternary).nll == fresh_a);
  CHECK(run(b, false, Precision::Ternary).nll == fresh_b);
  CHECK(run(a, true, Precision::Ternary).nll == fresh_a);
}

// The prefix cache (EvalPrefixCache): evaluations whose gains change one norm at a time, as the
// codec's searches make them, start at the changed norm's layer and give the same bits as a
// full evaluation, for trimmed and untrimmed last layers, both precisions, one and two threads.
TEST(model_eval_prefix_cache_same_bits) {
  const ModelConfig c = tiny_config();  // context 16, 2 layers: norms 0 .. 4
  Model m(c, 81);
  roughen(m, 82);
  Rng rng(83);
  std::vector<int32_t> tok(61);
  for (auto& v : tok) v = int32_t(rng.below(c.vocab));
  std::vector<float> base(size_t(c.n_gains()));
  for (auto& g : base) g = 0.5f + float(rng.below(1000)) / 1000.0f;
  ThreadPool pool(2);
  const Exec two{default_isa(), &pool, 2};
  // (stride, batch): later windows score 8 of 16 rows, trimmed with 2 windows a pass, not with
  // one; stride 16 scores every row.
  const int64_t shapes[][2] = {{8, 2}, {8, 1}, {16, 3}, {5, 4}};
  for (const Precision p : {Precision::Ternary, Precision::F32})
    for (const auto& sb : shapes)
      for (const Exec& ex : {one_thread(), two}) {
        EvalOptions o;
        o.precision = p, o.stride = sb[0], o.batch = sb[1];
        EvalPrefixCache cache;
        std::vector<float> g = base;
        auto both = [&](bool adapter) {
          const std::vector<norm::GainView> gv = f32_gain_views(c, g.data());
          const norm::GainView* v = adapter ? gv.data() : nullptr;
          const int64_t nv = adapter ? int64_t(gv.size()) : 0;
          const EvalResult plain = evaluate(m, v, nv, tok.data(), 61, 100, o, ex);
          const EvalResult cached = evaluate(m, v, nv, tok.data(), 61, 100, o, ex, &cache);
          CHECK(cached.nll == plain.nll);
          CHECK(cached.total_nll == plain.total_nll);
        };
        both(true);
        // A coordinate descent: each norm in turn takes other values, the last one kept.
        for (int64_t k = 0; k < c.n_norms(); ++k)
          for (int rep = 0; rep < 2; ++rep) {
            for (int64_t i = 0; i < c.d_model; ++i)
              g[size_t(k * c.d_model + i)] = 0.5f + float(rng.below(1000)) / 1000.0f;
            both(true);
          }
        // Back to an earlier norm, no adapter, and the last gains again.
        g[0] += 0.25f;
        both(true);
        both(false);
        both(true);
        both(true);
      }
  // The cache is bound to its first stream and options.
  EvalPrefixCache cache;
  evaluate(m, nullptr, 0, tok.data(), 61, 100, EvalOptions{}, one_thread(), &cache);
  CHECK(throws_with<std::invalid_argument>(
      [&] { evaluate(m, nullptr, 0, tok.data(), 60, 100, EvalOptions{}, one_thread(), &cache); },
      "prefix cache belongs to another"));
  EvalOptions other;
  other.stride = 4;
  CHECK(throws_with<std::invalid_argument>(
      [&] { evaluate(m, nullptr, 0, tok.data(), 61, 100, other, one_thread(), &cache); },
      "prefix cache belongs to another"));
}

// Adapters in any encoding plug into evaluation through the norm kernel.
TEST(model_eval_adapter_encodings) {
  const ModelConfig c = tiny_config();
  Model m(c, 61);
  roughen(m, 62);
  Rng rng(63);
  const int64_t n = 40;
  std::vector<int32_t> tok(static_cast<size_t>(n));
  for (auto& v : tok) v = int32_t(rng.below(c.vocab));
  // int8 per-tensor gains and their exact fp32 decoding.
  std::vector<int8_t> q(size_t(c.n_gains()));
  for (auto& v : q) v = int8_t(100 + rng.below(27));
  std::vector<float> scales(size_t(c.n_norms()), 0.01f), dec(size_t(c.n_gains()));
  std::vector<norm::GainView> iv(size_t(c.n_norms()));
  for (int64_t k = 0; k < c.n_norms(); ++k) {
    iv[size_t(k)].scheme = norm::GainScheme::Int8PerTensor;
    iv[size_t(k)].d = c.d_model;
    iv[size_t(k)].data = q.data() + k * c.d_model;
    iv[size_t(k)].data_bytes = size_t(c.d_model);
    iv[size_t(k)].params = &scales[size_t(k)];
    iv[size_t(k)].n_params = 1;
    norm::decode_gain(iv[size_t(k)], dec.data() + k * c.d_model);
  }
  const std::vector<norm::GainView> fv = f32_gain_views(c, dec.data());
  const EvalResult a =
      evaluate(m, iv.data(), int64_t(iv.size()), tok.data(), n, 80, EvalOptions{}, one_thread());
  const EvalResult b =
      evaluate(m, fv.data(), int64_t(fv.size()), tok.data(), n, 80, EvalOptions{}, one_thread());
  const EvalResult none = evaluate(m, nullptr, 0, tok.data(), n, 80, EvalOptions{}, one_thread());
  CHECK(a.nll == b.nll);
  CHECK(a.total_nll != none.total_nll);
  // All-ones gains are no adapter, bit for bit.
  std::vector<float> ones(size_t(c.n_gains()), 1.0f);
  const std::vector<norm::GainView> ov = f32_gain_views(c, ones.data());
  CHECK(evaluate(m, ov.data(), int64_t(ov.size()), tok.data(), n, 80, EvalOptions{}, one_thread())
            .nll == none.nll);
}

TEST(model_bad_input) {
  auto bad = [](std::function<void(ModelConfig&)> edit, const char* needle) {
    ModelConfig c = tiny_config();
    edit(c);
    return throws_with<std::invalid_argument>([&] { Model m(c, 1); }, needle);
  };
  CHECK(bad([](ModelConfig& c) { c.n_heads = 3; }, "divisible by n_heads"));
  CHECK(bad([](ModelConfig& c) { c.d_model = 18, c.n_heads = 6; }, "must be even"));
  CHECK(bad([](ModelConfig& c) { c.vocab = 1; }, "vocab"));
  CHECK(bad([](ModelConfig& c) { c.n_layers = 0; }, "nLayers"));
  CHECK(bad([](ModelConfig& c) { c.d_ff = -4; }, "dFf"));
  CHECK(bad([](ModelConfig& c) { c.context = 0; }, "context"));
  CHECK(bad([](ModelConfig& c) { c.norm_eps = std::nanf(""); }, "normEps"));
  CHECK(bad([](ModelConfig& c) { c.rope_theta = 0.5f; }, "ropeTheta"));
  CHECK(bad([](ModelConfig& c) { c.n_kv_heads = 3; }, "nKvHeads"));  // > n_heads = 2
  CHECK(bad([](ModelConfig& c) { c.n_kv_heads = -1; }, "nKvHeads"));
  CHECK(bad([](ModelConfig& c) { c.d_model = 24, c.n_heads = 6, c.n_kv_heads = 4; },
            "divisible by n_kv_heads"));

  const ModelConfig c = tiny_config();
  Model m(c, 2);
  std::vector<int32_t> tok = {1, 2, 3, 4, 5, 6};
  const Exec ex = one_thread();
  CHECK(throws_with<std::invalid_argument>(
      [&] { evaluate(m, nullptr, 0, tok.data(), 1, 10, EvalOptions{}, ex); }, "at least 2 tokens"));
  CHECK(throws_with<std::invalid_argument>(
      [&] { evaluate(m, nullptr, 0, tok.data(), 6, 0, EvalOptions{}, ex); }, "n_bytes"));
  tok[4] = 13;
  CHECK(throws_with<std::invalid_argument>(
      [&] { evaluate(m, nullptr, 0, tok.data(), 6, 10, EvalOptions{}, ex); },
      "token id 13 at position 4"));
  tok[4] = -1;
  CHECK(throws_with<std::invalid_argument>(
      [&] { evaluate(m, nullptr, 0, tok.data(), 6, 10, EvalOptions{}, ex); }, "token id -1"));
  tok[4] = 5;
  EvalOptions o;
  o.stride = c.context + 1;
  CHECK(throws_with<std::invalid_argument>(
      [&] { evaluate(m, nullptr, 0, tok.data(), 6, 10, o, ex); }, "stride"));
  std::vector<float> gains(size_t(c.n_gains()), 1.0f);
  std::vector<norm::GainView> v = f32_gain_views(c, gains.data());
  CHECK(throws_with<std::invalid_argument>(
      [&] { evaluate(m, v.data(), 3, tok.data(), 6, 10, EvalOptions{}, ex); },
      "expected 5 gain vectors"));
  gains[20] = std::nanf("");
  CHECK(throws_with<std::invalid_argument>(
      [&] { evaluate(m, v.data(), int64_t(v.size()), tok.data(), 6, 10, EvalOptions{}, ex); },
      "gain vector 1"));
  Workspace ws(c, 1, 6, false);
  CHECK(throws_with<std::invalid_argument>(
      [&] {
        transformer_backward(m, Precision::F32, nullptr, tok.data(), tok.data(), 1, 6, 1.0f, ws,
                             nullptr, nullptr, ex);
      },
      "for_backward"));
  CHECK(throws_with<std::invalid_argument>([&] { Workspace w(c, 1, c.context + 1, false); },
                                           "context"));
}
