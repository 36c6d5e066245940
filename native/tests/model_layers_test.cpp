// Every layer of the model: finite-difference gradient checks of each
// backward, and each forward against a plain double-precision reference.
//
// Gradient checks. loss = sum(out * R) (R fixed random) is accumulated in
// double; each checked input is moved by +-h and the central difference uses
// the perturbation actually stored in float. err = |analytic - numeric| /
// max(|analytic|, |numeric|, floor), floor = 1e-3 * max |analytic| (so a
// near-zero component is judged against the gradient's scale). The truncation
// error is O(h^2) and the fp32 rounding of the forward O(2^-24 * |loss| / h);
// with h = 1e-2 on O(1) inputs both stay below ~1e-2 here, so a tolerance of
// 2e-2 passes rounding and fails any wrong term, sign or index (those give
// errors of order 1). The tighter check (1e-3, against a double-precision
// reference of the whole network) is in model_test.cpp.
//
// The ternary linear layer's backward is a straight-through estimator; it is
// checked as the exact gradient of its surrogate: the fp32 product with the
// ternarised weights fixed (for dx), and the product of the forward's
// effective input with the weights taken as free fp32 values (for dW).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/features.h"
#include "cpu/thread_pool.h"
#include "gemm/gemm.h"
#include "harness.h"
#include "model/adamw.h"
#include "model/layers.h"
#include "model/vec_math.h"
#include "ternary/ternary.h"

using namespace ternorm;
using namespace ternorm::model;
using ternorm::test::one_thread;
using ternorm::test::Rng;

namespace {

constexpr double kTol = 2e-2;

std::vector<float> randn(int64_t n, Rng& rng, float scale = 1.0f) {
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = scale * rng.normal();
  return v;
}

// An RMSNorm over base weights w with fp32 gains g (both d long).
NormWeights f32_norm(const std::vector<float>& w, const std::vector<float>& g) {
  NormWeights nw;
  nw.w_base = w.data();
  nw.gain.scheme = norm::GainScheme::F32;
  nw.gain.d = int64_t(g.size());
  nw.gain.data = g.data();
  nw.gain.data_bytes = g.size() * sizeof(float);
  return nw;
}

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += double(a[i]) * double(b[i]);
  return s;
}

// Worst relative error of grad against central differences of loss() over
// x[idx] (all of x when it is small, else `samples` random entries).
double fd_check(float* x, int64_t n, const float* grad, const std::function<double()>& loss,
                Rng& rng, float h = 1e-2f, int64_t samples = 200) {
  std::vector<int64_t> idx;
  if (n <= samples) {
    for (int64_t i = 0; i < n; ++i) idx.push_back(i);
  } else {
    for (int64_t s = 0; s < samples; ++s) idx.push_back(rng.below(n));
  }
  double gmax = 0;
  for (int64_t i = 0; i < n; ++i) gmax = std::max(gmax, std::fabs(double(grad[i])));
  const double floor = std::max(1e-3 * gmax, 1e-12);
  double worst = 0;
  for (int64_t i : idx) {
    const float x0 = x[i];
    x[i] = x0 + h;
    const float xp = x[i];
    const double lp = loss();
    x[i] = x0 - h;
    const float xm = x[i];
    const double lm = loss();
    x[i] = x0;
    const double num = (lp - lm) / (double(xp) - double(xm));
    const double a = grad[i];
    const double err = std::fabs(a - num) / std::max({std::fabs(a), std::fabs(num), floor});
    if (!(err <= worst)) worst = err;
  }
  return worst;
}

// Checks and prints one gradient check's worst error.
void report(const std::string& what, double err) {
  CHECK_MSG(err < kTol, what << " err " << err);
  std::printf("  %-28s worst err %.2e (tol %.0e)\n", what.c_str(), err, kTol);
}

// Ternarised weights (per-tensor absmean) in both forms: packed for the
// kernels and dequantised (trit * scale) for the references.
struct TernaryW {
  std::vector<int8_t> trits;
  std::vector<float> scales, deq;
  AlignedBuffer<uint8_t> packed;
  int64_t rows, cols;
  ternary::PackedTernary view() const { return {packed.data(), scales.data(), rows, cols}; }
};
TernaryW make_ternary(const std::vector<float>& w, int64_t rows, int64_t cols) {
  TernaryW t;
  t.rows = rows, t.cols = cols;
  t.trits.resize(size_t(rows * cols));
  t.scales.resize(size_t(rows));
  ternary::absmean_quantize(w.data(), rows, cols, false, t.trits.data(), t.scales.data());
  t.packed = AlignedBuffer<uint8_t>(size_t(ternary::packed2_bytes(rows, cols)));
  ternary::pack2(t.trits.data(), rows, cols, t.packed.data());
  t.deq.resize(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      t.deq[size_t(r * cols + c)] = float(t.trits[size_t(r * cols + c)]) * t.scales[size_t(r)];
  return t;
}

}  // namespace

// ---- embedding --------------------------------------------------------------------------

TEST(model_layers_embedding) {
  Rng rng(1);
  const int64_t V = 7, d = 21, n = 12;
  std::vector<float> table = randn(V * d, rng);
  std::vector<int32_t> tok(static_cast<size_t>(n));
  for (auto& t : tok) t = int32_t(rng.below(4));  // repeats on purpose
  std::vector<float> x(size_t(n * d)), R = randn(n * d, rng);
  embedding_forward(table.data(), d, tok.data(), n, x.data(), one_thread());
  for (int64_t t = 0; t < n; ++t)
    for (int64_t c = 0; c < d; ++c)
      CHECK(x[size_t(t * d + c)] == table[size_t(tok[size_t(t)] * d + c)]);
  std::vector<float> dtable(size_t(V * d), 0.0f);
  embedding_backward(tok.data(), n, d, R.data(), dtable.data(), one_thread());
  const double err = fd_check(
      table.data(), V * d, dtable.data(),
      [&] {
        embedding_forward(table.data(), d, tok.data(), n, x.data(), one_thread());
        return dot(x, R);
      },
      rng);
  report("embedding dtable", err);
  // Threads split channels: identical sums.
  ThreadPool pool(2);
  std::vector<float> d2(size_t(V * d), 0.0f);
  embedding_backward(tok.data(), n, d, R.data(), d2.data(), Exec{default_isa(), &pool, 2});
  CHECK(d2 == dtable);
}

// ---- RMSNorm with gain ----------------------------------------------------------------------

TEST(model_layers_rmsnorm) {
  Rng rng(2);
  const int64_t n = 5, d = 20;
  std::vector<float> x = randn(n * d, rng), w = randn(d, rng), g(static_cast<size_t>(d)),
                     R = randn(n * d, rng);
  for (auto& v : g) v = 1.0f + 0.3f * rng.normal();
  NormWeights nw = f32_norm(w, g);
  nw.eps = 1e-5f;
  std::vector<float> y(size_t(n * d));
  rmsnorm_forward(nw, x.data(), n, d, y.data(), one_thread());
  double worst = 0;
  for (int64_t t = 0; t < n; ++t) {
    double ss = 0;
    for (int64_t c = 0; c < d; ++c) ss += double(x[size_t(t * d + c)]) * x[size_t(t * d + c)];
    const double inv = 1.0 / std::sqrt(ss / double(d) + 1e-5);
    for (int64_t c = 0; c < d; ++c) {
      const double ref = x[size_t(t * d + c)] * inv * w[size_t(c)] * g[size_t(c)];
      worst =
          std::max(worst, std::fabs(ref - y[size_t(t * d + c)]) / std::max(1.0, std::fabs(ref)));
    }
  }
  CHECK_MSG(worst < 1e-5, "rmsnorm forward vs double " << worst);
  std::vector<float> dx(size_t(n * d)), dg(static_cast<size_t>(d));
  rmsnorm_backward(nw, x.data(), n, d, R.data(), dx.data(), dg.data(), one_thread());
  auto loss = [&] {
    rmsnorm_forward(nw, x.data(), n, d, y.data(), one_thread());
    return dot(y, R);
  };
  const double ex = fd_check(x.data(), n * d, dx.data(), loss, rng);
  const double eg = fd_check(g.data(), d, dg.data(), loss, rng);
  report("rmsnorm dx", ex);
  report("rmsnorm dgain", eg);
}

// ---- linear ------------------------------------------------------------------------------

TEST(model_layers_linear_f32) {
  Rng rng(3);
  const int64_t n = 5, rows = 24, cols = 20;
  std::vector<float> x = randn(n * cols, rng), W = randn(rows * cols, rng, 0.3f);
  std::vector<float> R = randn(n * rows, rng), y(size_t(n * rows));
  LinearWeights lw;
  lw.latent = W.data(), lw.rows = rows, lw.cols = cols;
  LinearInput in;
  in.x = x.data();
  linear_forward(Precision::F32, lw, in, n, y.data(), one_thread());
  double worst = 0;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < rows; ++r) {
      double s = 0;
      for (int64_t c = 0; c < cols; ++c)
        s += double(x[size_t(t * cols + c)]) * W[size_t(r * cols + c)];
      worst = std::max(worst, std::fabs(s - y[size_t(t * rows + r)]) / std::max(1.0, std::fabs(s)));
    }
  CHECK_MSG(worst < 1e-5, "linear f32 forward vs double " << worst);
  std::vector<float> dx(size_t(n * cols)), dW(size_t(rows * cols));
  linear_backward(Precision::F32, lw, in, n, R.data(), dx.data(), dW.data(), nullptr, one_thread());
  auto loss = [&] {
    linear_forward(Precision::F32, lw, in, n, y.data(), one_thread());
    return dot(y, R);
  };
  const double ex = fd_check(x.data(), n * cols, dx.data(), loss, rng);
  const double ew = fd_check(W.data(), rows * cols, dW.data(), loss, rng);
  report("linear f32 dx", ex);
  report("linear f32 dW", ew);
}

TEST(model_layers_linear_ternary_ste) {
  Rng rng(4);
  const int64_t n = 5, rows = 24, cols = 20;  // cols not a multiple of 16: padded rows
  std::vector<float> x = randn(n * cols, rng), W = randn(rows * cols, rng, 0.3f);
  std::vector<float> R = randn(n * rows, rng), y(size_t(n * rows));
  const TernaryW tw = make_ternary(W, rows, cols);
  LinearWeights lw;
  lw.latent = W.data(), lw.packed = tw.view(), lw.rows = rows, lw.cols = cols;
  // Per-token int8 input, as forward feeds the Ternary path.
  const int64_t pc = ternary::padded_cols(cols);
  std::vector<int8_t> q(size_t(n * pc));
  std::vector<float> qs(static_cast<size_t>(n));
  ternary::quantize_activations(x.data(), n, cols, q.data(), qs.data(), one_thread());
  std::vector<float> xdeq(size_t(n * cols));
  for (int64_t t = 0; t < n; ++t)
    for (int64_t c = 0; c < cols; ++c)
      xdeq[size_t(t * cols + c)] = float(q[size_t(t * pc + c)]) * qs[size_t(t)];

  // Forwards against double references with the dequantised operands.
  LinearInput in_f;
  in_f.x = x.data();
  LinearInput in_q;
  in_q.q = q.data(), in_q.scales = qs.data();
  std::vector<float> yq(size_t(n * rows));
  linear_forward(Precision::TernaryF32Act, lw, in_f, n, y.data(), one_thread());
  linear_forward(Precision::Ternary, lw, in_q, n, yq.data(), one_thread());
  double e_f = 0, e_q = 0;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < rows; ++r) {
      double sf = 0, sq = 0;
      for (int64_t c = 0; c < cols; ++c) {
        sf += double(x[size_t(t * cols + c)]) * tw.deq[size_t(r * cols + c)];
        sq += double(xdeq[size_t(t * cols + c)]) * tw.deq[size_t(r * cols + c)];
      }
      e_f = std::max(e_f, std::fabs(sf - y[size_t(t * rows + r)]) / std::max(1.0, std::fabs(sf)));
      e_q = std::max(e_q, std::fabs(sq - yq[size_t(t * rows + r)]) / std::max(1.0, std::fabs(sq)));
    }
  CHECK_MSG(e_f < 1e-5, "ternary-f32act forward vs double " << e_f);
  CHECK_MSG(e_q < 1e-5, "ternary int8 forward vs double " << e_q);

  // Surrogates: dx of y = x Wt^T with the ternarised weights fixed (the
  // matmul_f32 kernel), dW of y = x_eff W^T at W = Wt with W free (fp32 GEMM).
  std::vector<float> Wt = tw.deq;
  LinearWeights lw_free;
  lw_free.latent = Wt.data(), lw_free.rows = rows, lw_free.cols = cols;
  for (Precision p : {Precision::TernaryF32Act, Precision::Ternary}) {
    const LinearInput& in = p == Precision::Ternary ? in_q : in_f;
    std::vector<float> x_eff = p == Precision::Ternary ? xdeq : x;
    std::vector<float> dx(size_t(n * cols)), dW(size_t(rows * cols)), scratch(size_t(n * cols));
    linear_backward(p, lw, in, n, R.data(), dx.data(), dW.data(), scratch.data(), one_thread());
    LinearInput in_eff;
    in_eff.x = x_eff.data();
    const double ex = fd_check(
        x_eff.data(), n * cols, dx.data(),
        [&] {
          linear_forward(Precision::TernaryF32Act, lw, in_eff, n, y.data(), one_thread());
          return dot(y, R);
        },
        rng);
    const double ew = fd_check(
        Wt.data(), rows * cols, dW.data(),
        [&] {
          linear_forward(Precision::F32, lw_free, in_eff, n, y.data(), one_thread());
          return dot(y, R);
        },
        rng);
    report(std::string(precision_name(p)) + " STE dx", ex);
    report(std::string(precision_name(p)) + " STE dW", ew);
  }
}

// ---- RoPE ----------------------------------------------------------------------------------

TEST(model_layers_rope) {
  Rng rng(5);
  const int64_t B = 2, T = 7, H = 2, hd = 6, d = H * hd, half = hd / 2;
  std::vector<float> cs(size_t(T * half)), sn(size_t(T * half));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < half; ++i) {
      const double a = double(t) * std::pow(10000.0, -2.0 * double(i) / double(hd));
      cs[size_t(t * half + i)] = float(std::cos(a));
      sn[size_t(t * half + i)] = float(std::sin(a));
    }
  for (int64_t Hkv : {H, int64_t(1)}) {  // multi-head, then grouped-query (k narrower than q)
    const int64_t kvd = Hkv * hd, ld = d + 2 * kvd;
    const std::vector<float> x0 = randn(B * T * ld, rng);
    std::vector<float> x = x0, R = randn(B * T * ld, rng);
    rope_forward(x.data(), B, T, d, kvd, hd, cs.data(), sn.data(), one_thread());
    double worst = 0;
    for (int64_t r = 0; r < B * T; ++r)
      for (int64_t c = 0; c < ld; ++c) {
        const int64_t t = r % T, within = (c < d ? c : c - d) % hd, i = within / 2;
        const float* src = x0.data() + r * ld;
        double ref = src[c];
        if (c < d + kvd) {  // q and k rotate, v does not
          const double a = double(t) * std::pow(10000.0, -2.0 * double(i) / double(hd));
          const int64_t e = c - within + 2 * i;
          ref = within % 2 == 0 ? src[e] * std::cos(a) - src[e + 1] * std::sin(a)
                                : src[e] * std::sin(a) + src[e + 1] * std::cos(a);
        }
        worst = std::max(worst, std::fabs(ref - x[size_t(r * ld + c)]));
      }
    CHECK_MSG(worst < 1e-5, "rope forward vs double, Hkv " << Hkv << ": " << worst);
    std::vector<float> dx = R;
    rope_backward(dx.data(), B, T, d, kvd, hd, cs.data(), sn.data(), one_thread());
    std::vector<float> in = x0;
    const double err = fd_check(
        in.data(), int64_t(in.size()), dx.data(),
        [&] {
          x = in;
          rope_forward(x.data(), B, T, d, kvd, hd, cs.data(), sn.data(), one_thread());
          return dot(x, R);
        },
        rng);
    report("rope grad (Hkv " + std::to_string(Hkv) + ")", err);
  }
}

// ---- attention -------------------------------------------------------------------------------

// Multi-head (H = Hkv) and grouped-query attention (query head h reads
// key/value head h / (H / Hkv)), forward against a double reference, backward
// by finite differences (dk and dv of a shared head sum over its group).
TEST(model_layers_attention) {
  Rng rng(6);
  // T > 64 crosses the causal row blocks; T = 70 leaves a ragged last block.
  const int64_t B = 2, T = 70, hd = 4, N = B * T;
  struct Heads {
    int64_t H, Hkv;
  };
  for (const Heads hs : {Heads{2, 2}, Heads{4, 2}, Heads{3, 1}}) {
    const int64_t H = hs.H, Hkv = hs.Hkv, d = H * hd, kvd = Hkv * hd, ld = d + 2 * kvd;
    const std::string name = "attention H " + std::to_string(H) + " Hkv " + std::to_string(Hkv);
    std::vector<float> qkv = randn(N * ld, rng), R = randn(N * d, rng);
    std::vector<float> P(size_t(B * H * T * T)), out(size_t(N * d));
    attention_forward(qkv.data(), B, T, d, H, Hkv, P.data(), out.data(), nullptr, one_thread());
    // Naive causal attention in double.
    double worst = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < T; ++i) {
          const int64_t kc = d + h / (H / Hkv) * hd;  // the k column of this head's kv head
          std::vector<double> s(size_t(i + 1));
          double mx = -1e300;
          for (int64_t j = 0; j <= i; ++j) {
            double acc = 0;
            for (int64_t e = 0; e < hd; ++e)
              acc += double(qkv[size_t((b * T + i) * ld + h * hd + e)]) *
                     qkv[size_t((b * T + j) * ld + kc + e)];
            s[size_t(j)] = acc / std::sqrt(double(hd));
            mx = std::max(mx, s[size_t(j)]);
          }
          double z = 0;
          for (auto& v : s) z += (v = std::exp(v - mx));
          for (int64_t e = 0; e < hd; ++e) {
            double o = 0;
            for (int64_t j = 0; j <= i; ++j)
              o += s[size_t(j)] / z * qkv[size_t((b * T + j) * ld + kc + kvd + e)];
            worst = std::max(worst, std::fabs(o - out[size_t((b * T + i) * d + h * hd + e)]));
          }
          for (int64_t j = i + 1; j < T; ++j)
            CHECK(P[size_t(((b * H + h) * T + i) * T + j)] == 0.0f);
        }
    CHECK_MSG(worst < 1e-5, name << " forward vs double " << worst);
    std::vector<float> dP(P.size()), dqkv(qkv.size());
    attention_backward(qkv.data(), P.data(), R.data(), B, T, d, H, Hkv, dP.data(), dqkv.data(),
                       one_thread());
    // h = 2e-2: the loss sums B*T*d = 140 d outputs, so the fp32 rounding of
    // the forward (not the O(h^2) truncation) dominates the difference; at
    // 1e-2 it reaches ~2% of the floor on small dk entries of a shared head.
    const double err = fd_check(
        qkv.data(), int64_t(qkv.size()), dqkv.data(),
        [&] {
          attention_forward(qkv.data(), B, T, d, H, Hkv, P.data(), out.data(), nullptr,
                            one_thread());
          return dot(out, R);
        },
        rng, 2e-2f, 400);
    report(name + " grad", err);
    // Units are independent: two threads give the same bits.
    ThreadPool pool(2);
    const Exec two{default_isa(), &pool, 2};
    std::vector<float> P2(P.size()), out2(out.size()), dP2(P.size()), dqkv2(qkv.size());
    attention_forward(qkv.data(), B, T, d, H, Hkv, P.data(), out.data(), nullptr, one_thread());
    attention_forward(qkv.data(), B, T, d, H, Hkv, P2.data(), out2.data(), nullptr, two);
    attention_backward(qkv.data(), P2.data(), R.data(), B, T, d, H, Hkv, dP2.data(), dqkv2.data(),
                       two);
    CHECK(out2 == out);
    CHECK(dqkv2 == dqkv);
    // Skipping unwanted query rows leaves the wanted ones bit for bit.
    for (const std::vector<int64_t>& from :
         {std::vector<int64_t>{0, 70}, {63, 64}, {65, 5}, {69, 200}}) {
      std::vector<float> P3(P.size()), out3(out.size(), 0.0f);
      attention_forward(qkv.data(), B, T, d, H, Hkv, P3.data(), out3.data(), from.data(), two);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t i = std::min(T, from[size_t(b)]); i < T; ++i)
          CHECK(std::memcmp(&out3[size_t((b * T + i) * d)], &out[size_t((b * T + i) * d)],
                            size_t(d) * 4) == 0);
    }
  }
}

// ---- SwiGLU ---------------------------------------------------------------------------------

TEST(model_layers_swiglu) {
  Rng rng(7);
  const int64_t n = 6, f = 19;
  std::vector<float> gu = randn(n * 2 * f, rng, 2.0f), R = randn(n * f, rng), s(size_t(n * f));
  swiglu_forward(gu.data(), n, f, s.data(), one_thread());
  double worst = 0;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t c = 0; c < f; ++c) {
      const double g = gu[size_t(t * 2 * f + c)], u = gu[size_t(t * 2 * f + f + c)];
      const double ref = g / (1.0 + std::exp(-g)) * u;
      worst =
          std::max(worst, std::fabs(ref - s[size_t(t * f + c)]) / std::max(1.0, std::fabs(ref)));
    }
  CHECK_MSG(worst < 1e-5, "swiglu forward vs double " << worst);
  std::vector<float> dgu(gu.size());
  swiglu_backward(gu.data(), R.data(), n, f, dgu.data(), one_thread());
  const double err = fd_check(
      gu.data(), int64_t(gu.size()), dgu.data(),
      [&] {
        swiglu_forward(gu.data(), n, f, s.data(), one_thread());
        return dot(s, R);
      },
      rng);
  report("swiglu grad", err);
}

// ---- the fused forms the scoring forward runs ------------------------------------------------

// residual + norm and SwiGLU + quantisation in one region each: the bits of
// the separate calls at every thread count, precision and ISA path, and the
// same first-bad-row error.
TEST(model_layers_fused_forward_same_bits) {
  Rng rng(91);
  const int64_t n = 45, d = 1100, f = 520;  // several pieces; no multiple of 16 or 256
  const std::vector<float> a = randn(n * d, rng), b = randn(n * d, rng, 0.5f),
                           gu = randn(n * 2 * f, rng), w = randn(d, rng);
  std::vector<float> g(static_cast<size_t>(d));
  for (auto& v : g) v = 1.0f + 0.3f * rng.normal();
  NormWeights nw = f32_norm(w, g);
  const int64_t pd = ternary::padded_cols(d), pf = ternary::padded_cols(f);
  const int64_t sd = n * ternary::act_blocks(d), sf = n * ternary::act_blocks(f);
  ThreadPool pool(3);
  auto same = [](const auto& u, const auto& v) {
    return u.size() == v.size() && std::memcmp(u.data(), v.data(), u.size() * sizeof(u[0])) == 0;
  };
  for (Isa isa : ternorm::test::every_isa())
    for (Precision p : {Precision::Ternary, Precision::TernaryBlockAct, Precision::F32}) {
      const Exec one{isa, nullptr, 1};
      std::vector<float> out0(size_t(n * d)), y0(size_t(n * d)), s0(static_cast<size_t>(sd)),
          sw0(size_t(n * f)), ss0(static_cast<size_t>(sf));
      std::vector<int8_t> q0(size_t(n * pd)), sq0(size_t(n * pf));
      residual_forward(out0.data(), a.data(), b.data(), n * d, one);
      rmsnorm_forward_as(p, nw, out0.data(), n, d, y0.data(), q0.data(), s0.data(), one);
      swiglu_forward(gu.data(), n, f, sw0.data(), one);
      if (int8_act(p)) quantize_input(p, sw0.data(), n, f, sq0.data(), ss0.data(), one);
      for (int threads : {1, 2, 3}) {
        const Exec ex{isa, &pool, threads};
        std::vector<float> out(size_t(n * d)), y(size_t(n * d)), s(static_cast<size_t>(sd)),
            sw(size_t(n * f)), ss(static_cast<size_t>(sf));
        std::vector<int8_t> q(size_t(n * pd)), sq(size_t(n * pf));
        residual_rmsnorm_forward_as(p, nw, out.data(), a.data(), b.data(), n, d, y.data(), q.data(),
                                    s.data(), ex);
        const std::string what = std::string(isa_name(isa)) + " " + precision_name(p) + " " +
                                 std::to_string(threads) + " threads";
        CHECK_MSG(same(out, out0) && same(q, q0) && same(s, s0), what);
        if (p != Precision::Ternary) CHECK_MSG(same(y, y0), what);
        if (!int8_act(p)) continue;
        swiglu_quantize_forward(p, gu.data(), n, f, sw.data(), sq.data(), ss.data(), ex);
        CHECK_MSG(same(sw, sw0) && same(sq, sq0) && same(ss, ss0), what);
      }
    }
  // A non-finite row: the error of the separate calls, naming the first bad row.
  ThreadPool pool2(2);
  const Exec ex{default_isa(), &pool2, 2};
  std::vector<float> bad = a, out(size_t(n * d)), y(size_t(n * d)), s(static_cast<size_t>(n));
  std::vector<int8_t> q(size_t(n * pd));
  bad[size_t(40 * d + 3)] = NAN;
  bad[size_t(20 * d + 7)] = INFINITY;  // another piece than row 40
  std::string sep, fused;
  try {
    rmsnorm_forward_as(Precision::Ternary, nw, bad.data(), n, d, y.data(), q.data(), s.data(), ex);
  } catch (const std::invalid_argument& e) {
    sep = e.what();
  }
  const std::vector<float> zero(size_t(n * d), 0.0f);
  try {
    residual_rmsnorm_forward_as(Precision::Ternary, nw, out.data(), bad.data(), zero.data(), n, d,
                                y.data(), q.data(), s.data(), ex);
  } catch (const std::invalid_argument& e) {
    fused = e.what();
  }
  CHECK_MSG(!sep.empty() && sep == fused, "'" << sep << "' vs '" << fused << "'");
  std::vector<float> gbad = gu, sw(size_t(n * f)), ss(static_cast<size_t>(n));
  std::vector<int8_t> sq(size_t(n * pf));
  gbad[size_t(33 * 2 * f + f + 5)] = NAN;  // an up value of row 33
  std::string sep2, fused2;
  try {
    swiglu_forward(gbad.data(), n, f, sw.data(), ex);
    quantize_input(Precision::Ternary, sw.data(), n, f, sq.data(), ss.data(), ex);
  } catch (const std::invalid_argument& e) {
    sep2 = e.what();
  }
  try {
    swiglu_quantize_forward(Precision::Ternary, gbad.data(), n, f, sw.data(), sq.data(), ss.data(),
                            ex);
  } catch (const std::invalid_argument& e) {
    fused2 = e.what();
  }
  CHECK_MSG(!sep2.empty() && sep2 == fused2 && sep2.find("row 33") != std::string::npos,
            "'" << sep2 << "' vs '" << fused2 << "'");
}

// ---- tied head + cross-entropy ----------------------------------------------------------------

// Scoring's head splits the vocabulary over threads (several k blocks, a
// vocabulary that is no multiple of the tile width): every ISA path gives the
// one-thread, one-call product's bits at every thread count.
TEST(model_layers_head_threads_same_bits) {
  Rng rng(81);
  const int64_t n = 37, d = 1100, V = 1003;
  const std::vector<float> x = randn(n * d, rng), E = randn(V * d, rng, 0.5f);
  ThreadPool pool(3);
  for (Isa isa : ternorm::test::every_isa()) {
    std::vector<float> ref(size_t(n * V));
    gemm::GemmArgs g;
    g.trans_b = true;
    g.m = n, g.n = V, g.k = d;
    g.a = x.data(), g.lda = d, g.b = E.data(), g.ldb = d, g.c = ref.data(), g.ldc = V;
    gemm::gemm_f32(g, Exec{isa, nullptr, 1});
    for (int threads : {1, 2, 3}) {
      std::vector<float> logits(size_t(n * V), -1.0f);
      head_forward(x.data(), E.data(), n, d, V, logits.data(), Exec{isa, &pool, threads});
      CHECK_MSG(std::memcmp(logits.data(), ref.data(), ref.size() * sizeof(float)) == 0,
                isa_name(isa) << " " << threads << " threads");
    }
  }
}

// The head reading the table packed once (HeadPanels) gives the bits of the
// per-call packing, forward and backward, on every ISA path and thread count,
// for an fp32 and a binary16 table; a changed table (another source) is
// packed again; over the bound nothing is kept.
TEST(model_layers_head_panels_same_bits) {
  Rng rng(82);
  const int64_t n = 37, d = 600, V = 1003;
  const std::vector<float> x = randn(n * d, rng), E = randn(V * d, rng, 0.5f),
                           dl = randn(n * V, rng);
  std::vector<uint16_t> E16(E.size());
  for (size_t i = 0; i < E.size(); ++i) E16[i] = norm::f32_to_f16(E[i]);
  ThreadPool pool(3);
  for (Isa isa : ternorm::test::every_isa())
    for (int half = 0; half < 2; ++half) {
      const TokenTable table =
          half ? TokenTable(gemm::ElemType::F16, E16.data()) : TokenTable(E.data());
      HeadPanels panels;
      for (int threads : {1, 2, 3}) {
        const Exec ex{isa, &pool, threads};
        std::vector<float> want(size_t(n * V)), got(want.size(), -1.0f);
        head_forward(x.data(), table, n, d, V, want.data(), ex);
        head_forward(x.data(), table, n, d, V, got.data(), ex, &panels);
        CHECK_MSG(std::memcmp(want.data(), got.data(), want.size() * sizeof(float)) == 0,
                  isa_name(isa) << " f16 " << half << " forward, " << threads << " threads");
        std::vector<float> dx0(size_t(n * d)), dx1(dx0.size(), -1.0f);
        head_backward(dl.data(), x.data(), table, n, d, V, dx0.data(), nullptr, ex);
        head_backward(dl.data(), x.data(), table, n, d, V, dx1.data(), nullptr, ex, &panels);
        CHECK_MSG(std::memcmp(dx0.data(), dx1.data(), dx0.size() * sizeof(float)) == 0,
                  isa_name(isa) << " f16 " << half << " backward, " << threads << " threads");
      }
      // Kept: the same panels come back.
      CHECK(panels.forward(table, V, d, Exec{isa, nullptr, 1}) ==
            panels.forward(table, V, d, Exec{isa, nullptr, 1}));
    }
  // Another table through the same panels: its own bits, not the first table's.
  HeadPanels panels;
  const std::vector<float> F = randn(V * d, rng, 0.5f);
  std::vector<float> a(size_t(n * V)), b(a.size());
  head_forward(x.data(), E.data(), n, d, V, a.data(), one_thread(), &panels);
  head_forward(x.data(), F.data(), n, d, V, a.data(), one_thread(), &panels);
  head_forward(x.data(), F.data(), n, d, V, b.data(), one_thread());
  CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
  // Over the bound: not kept.
  const int64_t big_v = HeadPanels::kMaxValues / 4 + 1;
  std::vector<float> big(size_t(big_v * 4), 0.25f);
  CHECK(panels.forward(big.data(), big_v, 4, one_thread()) == nullptr);
}

// A model drops its head panels whenever its weights change: a forward after
// the table is written sees the new table.
TEST(model_layers_head_panels_follow_the_model) {
  ModelConfig c;
  c.vocab = 13, c.d_model = 16, c.n_layers = 1, c.n_heads = 2, c.d_ff = 24, c.context = 16;
  Model m(c, 5);
  const Exec ex = one_thread();
  const int64_t n = 12, d = c.d_model, V = c.vocab;
  Rng rng(83);
  const std::vector<float> x = randn(n * d, rng);
  std::vector<float> before(size_t(n * V)), after(before.size()), want(before.size());
  head_forward(x.data(), m.head_table(), n, d, V, before.data(), ex, &m.head_panels());
  float* table = m.params() + m.head_offset();
  for (int64_t i = 0; i < V * d; ++i) table[i] *= -2.0f;
  m.mark_latent_changed();
  head_forward(x.data(), m.head_table(), n, d, V, after.data(), ex, &m.head_panels());
  head_forward(x.data(), m.head_table(), n, d, V, want.data(), ex);
  CHECK(std::memcmp(after.data(), want.data(), want.size() * sizeof(float)) == 0);
  CHECK(std::memcmp(after.data(), before.data(), want.size() * sizeof(float)) != 0);
}

TEST(model_layers_head_cross_entropy) {
  Rng rng(8);
  const int64_t n = 6, d = 9, V = 11;
  std::vector<float> x = randn(n * d, rng), E = randn(V * d, rng, 0.5f);
  const std::vector<int32_t> tg = {3, 0, -1, 10, 3, 7};  // one position not scored
  const float scale = 1.0f / 5.0f;
  std::vector<float> logits(size_t(n * V));
  std::vector<double> nll(static_cast<size_t>(n));
  auto loss = [&] {
    head_forward(x.data(), E.data(), n, d, V, logits.data(), one_thread());
    cross_entropy_forward(logits.data(), tg.data(), n, V, nll.data(), one_thread());
    double s = 0;
    for (double v : nll) s += v;
    return s * scale;
  };
  loss();
  double worst = 0;
  for (int64_t t = 0; t < n; ++t) {
    if (tg[size_t(t)] < 0) {
      CHECK(nll[size_t(t)] == 0.0);
      continue;
    }
    std::vector<double> l(static_cast<size_t>(V));
    double mx = -1e300;
    for (int64_t v = 0; v < V; ++v) {
      double s = 0;
      for (int64_t c = 0; c < d; ++c) s += double(x[size_t(t * d + c)]) * E[size_t(v * d + c)];
      l[size_t(v)] = s;
      mx = std::max(mx, s);
    }
    double z = 0;
    for (double v : l) z += std::exp(v - mx);
    const double ref = mx + std::log(z) - l[size_t(tg[size_t(t)])];
    worst = std::max(worst, std::fabs(ref - nll[size_t(t)]));
  }
  CHECK_MSG(worst < 1e-5, "cross-entropy nll vs double " << worst);
  // The evaluation form (no softmax written) gives the same bits, on every path.
  head_forward(x.data(), E.data(), n, d, V, logits.data(), one_thread());
  const std::vector<float> raw = logits;
  for (Isa isa : ternorm::test::every_isa()) {
    std::vector<double> nll2(static_cast<size_t>(n), -1.0);
    cross_entropy_nll(raw.data(), tg.data(), n, V, nll2.data(), Exec{isa, nullptr, 1});
    CHECK_MSG(nll2 == nll, isa_name(isa));
  }

  std::vector<float> dx(size_t(n * d)), dE(size_t(V * d));
  head_forward(x.data(), E.data(), n, d, V, logits.data(), one_thread());
  cross_entropy_forward(logits.data(), tg.data(), n, V, nll.data(), one_thread());
  double row = 0;
  for (int64_t v = 0; v < V; ++v) row += logits[size_t(v)];
  CHECK_MSG(std::fabs(row - 1.0) < 1e-5, "softmax row sum " << row);
  cross_entropy_backward(logits.data(), tg.data(), n, V, scale, logits.data(), one_thread());
  head_backward(logits.data(), x.data(), E.data(), n, d, V, dx.data(), dE.data(), one_thread());
  const double ex = fd_check(x.data(), n * d, dx.data(), loss, rng);
  const double eE = fd_check(E.data(), V * d, dE.data(), loss, rng);
  report("head/CE dx", ex);
  report("head/CE dtable", eE);
}

// ---- AdamW, clipping norm, schedule
// ---------------------------------------------------------------

TEST(model_layers_adamw_schedule) {
  Rng rng(9);
  const int64_t n = 10000;  // more than one reduction block
  std::vector<float> w = randn(n, rng), g = randn(n, rng), m(size_t(n), 0.0f), v(size_t(n), 0.0f);
  std::vector<double> wd(w.begin(), w.end()), md(size_t(n), 0.0), vd(size_t(n), 0.0);
  AdamWConfig cfg;
  const float lr = 0.01f, clip = 0.5f, decay = 0.1f, center = 1.0f;
  for (int64_t step = 1; step <= 3; ++step) {
    adamw_update(w.data(), g.data(), m.data(), v.data(), n, step, lr, clip, decay, center, cfg,
                 one_thread());
    for (int64_t i = 0; i < n; ++i) {
      const double gi = double(clip) * g[size_t(i)];
      md[size_t(i)] = cfg.beta1 * md[size_t(i)] + (1 - double(cfg.beta1)) * gi;
      vd[size_t(i)] = cfg.beta2 * vd[size_t(i)] + (1 - double(cfg.beta2)) * gi * gi;
      const double mh = md[size_t(i)] / (1 - std::pow(double(cfg.beta1), double(step)));
      const double vh = vd[size_t(i)] / (1 - std::pow(double(cfg.beta2), double(step)));
      wd[size_t(i)] -= lr * (mh / (std::sqrt(vh) + cfg.eps) + decay * (wd[size_t(i)] - center));
    }
  }
  double worst = 0;
  for (int64_t i = 0; i < n; ++i) worst = std::max(worst, std::fabs(wd[size_t(i)] - w[size_t(i)]));
  CHECK_MSG(worst < 1e-5, "adamw vs double " << worst);

  double ref = 0;
  for (float x : g) ref += double(x) * x;
  ThreadPool pool(2);
  const double n1 = global_norm(g.data(), n, one_thread());
  const double n2 = global_norm(g.data(), n, Exec{default_isa(), &pool, 2});
  CHECK_MSG(std::fabs(n1 - std::sqrt(ref)) < 1e-9 * std::sqrt(ref), "norm " << n1);
  CHECK(n1 == n2);

  const LrSchedule s{1e-3f, 1e-4f, 10, 110};
  CHECK(std::fabs(lr_at(s, 1) - 1e-4f) < 1e-9f);
  CHECK(std::fabs(lr_at(s, 10) - 1e-3f) < 1e-9f);
  CHECK(std::fabs(lr_at(s, 60) - 5.5e-4f) < 1e-8f);  // half way down the cosine
  CHECK(std::fabs(lr_at(s, 110) - 1e-4f) < 1e-9f);
  CHECK(std::fabs(lr_at(s, 500) - 1e-4f) < 1e-9f);
  for (int64_t k = 11; k < 110; ++k) CHECK(lr_at(s, k + 1) <= lr_at(s, k));
}

// ---- vectorisable math helpers -----------------------------------------------------------------

TEST(model_layers_vec_math) {
  double worst = 0;
  for (double x = -87.0; x <= 88.0; x += 3.7e-4) {
    const float xf = float(x);
    const double ref = std::exp(double(xf));
    worst = std::max(worst, std::fabs(double(exp_approx(xf)) - ref) / ref);
  }
  CHECK_MSG(worst < 1.5 * std::ldexp(1.0, -24) * 2, "exp_approx worst rel err " << worst);
  std::printf("  exp_approx worst rel err %.2e on [-87, 88] (tol 3 ulp)\n", worst);
  CHECK(exp_approx(0.0f) == 1.0f);
  // Clamped outside: tiny but positive and finite, huge but finite.
  CHECK(exp_approx(-1e30f) > 0.0f && exp_approx(-1e30f) < 2e-38f);
  CHECK(exp_approx(-87.5f) == exp_approx(-87.0f));
  CHECK(std::isfinite(exp_approx(1e30f)) && exp_approx(1e30f) > 1e38f);
  // max_of / sum_f64 on ragged lengths, the maximum in the tail and the head.
  Rng rng(10);
  for (int64_t n : {1, 7, 8, 9, 33}) {
    std::vector<float> v = randn(n, rng);
    for (int64_t at : {int64_t(0), n - 1}) {
      v[size_t(at)] = 50.0f;
      CHECK(max_of(v.data(), n) == 50.0f);
      v[size_t(at)] = 0.0f;
    }
    double s = 0;
    for (float x : v) s += x;
    CHECK(std::fabs(sum_f64(v.data(), n) - s) < 1e-12);
  }
}
