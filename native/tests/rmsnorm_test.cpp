// Fused RMSNorm with gain: every ISA path bit for bit against the scalar
// reference (fp32 out, int8 out, dx, dgain), thread-count invariance, accuracy
// against a double-precision re-implementation, int8 == quantize_activations of
// the fp32 output, finite-difference gradient checks, extreme magnitudes, gain
// schemes, and the errors on bad input.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/thread_pool.h"
#include "harness.h"
#include "norm/gain_codec.h"
#include "norm/rmsnorm.h"
#include "ternary/ternary.h"

using namespace ternorm;
using namespace ternorm::norm;
using ternorm::test::mentions;
using ternorm::test::Rng;
using ternorm::test::thrown_message;

namespace {

const int64_t kDims[] = {1, 3, 15, 17, 33, 255, 257, 768};
const int64_t kRows[] = {1, 7, 64};
const GainScheme kSchemes[] = {GainScheme::F32, GainScheme::F16, GainScheme::Int8PerTensor};

struct Problem {
  int64_t n = 0, d = 0;
  float eps = 1e-5f;
  std::vector<float> x, w, dy;
  GainScheme scheme = GainScheme::F32;
  std::vector<unsigned char> payload;
  std::vector<float> params;
  std::vector<float> g;  // the gains as the scheme decodes them (test side)

  RmsNormArgs args() const {
    RmsNormArgs a;
    a.x = x.data();
    a.n = n;
    a.d = d;
    a.w_base = w.data();
    a.gain = GainView{
        scheme,       d, payload.data(), payload.size(), params.empty() ? nullptr : params.data(),
        params.size()};
    a.eps = eps;
    return a;
  }
};

// Encodes gains gf with p.scheme: payload, params and the decoded p.g.
void encode_gains(Problem& p, const std::vector<float>& gf) {
  const size_t d = gf.size();
  p.params.clear();
  p.g.assign(d, 0.0f);
  switch (p.scheme) {
    case GainScheme::F32:
      p.payload.resize(d * 4);
      std::memcpy(p.payload.data(), gf.data(), d * 4);
      p.g = gf;
      break;
    case GainScheme::F16:
      p.payload.resize(d * 2);
      for (size_t i = 0; i < d; ++i) {
        const uint16_t h = f32_to_f16(gf[i]);
        std::memcpy(p.payload.data() + 2 * i, &h, 2);
        p.g[i] = f16_to_f32(h);
      }
      break;
    case GainScheme::Int8PerTensor: {
      float amax = 0.0f;
      for (float v : gf) amax = std::max(amax, std::fabs(v));
      const float scale = amax / 127.0f;
      p.params = {scale};
      p.payload.resize(d);
      for (size_t i = 0; i < d; ++i) {
        const float r = scale == 0.0f ? 0.0f : std::nearbyint(gf[i] / scale);
        const int8_t q = int8_t(std::max(-127.0f, std::min(127.0f, r)));
        p.payload[i] = static_cast<unsigned char>(q);
        p.g[i] = float(q) * scale;
      }
      break;
    }
    default:  // the codec schemes have their own tests (codec_test.cpp)
      throw std::logic_error("encode_gains: this test covers only f32, f16 and int8_per_tensor");
  }
}

// Rows of very different scales; every row t with t % 5 == 3 is all zero.
Problem make_problem(int64_t n, int64_t d, GainScheme scheme, uint64_t seed) {
  Rng rng(seed * 1000003u + uint64_t(n) * 7919u + uint64_t(d) * 104729u + uint64_t(scheme));
  Problem p;
  p.n = n;
  p.d = d;
  p.scheme = scheme;
  p.x.resize(size_t(n * d));
  p.dy.resize(size_t(n * d));
  for (int64_t t = 0; t < n; ++t) {
    const float row_scale = std::exp(rng.uniform(-3.0f, 3.0f));
    for (int64_t c = 0; c < d; ++c)
      p.x[size_t(t * d + c)] = t % 5 == 3 ? 0.0f : rng.normal() * row_scale;
  }
  for (float& v : p.dy) v = rng.normal();
  p.w.resize(size_t(d));
  for (float& v : p.w) v = rng.uniform(0.5f, 1.5f);
  std::vector<float> gf(static_cast<size_t>(d));
  for (float& v : gf) v = 1.0f + 0.2f * rng.normal();
  encode_gains(p, gf);
  return p;
}

struct Outputs {
  std::vector<float> y, scales, dx, dgain;
  std::vector<int8_t> q;
};

// All four outputs; buffers start as sentinels so unwritten values show.
Outputs run(const Problem& p, const Exec& ex) {
  Outputs o;
  const int64_t padded = ternary::padded_cols(p.d);
  o.y.assign(size_t(p.n * p.d), NAN);
  o.q.assign(size_t(p.n * padded), int8_t(0x55));
  o.scales.assign(size_t(p.n), NAN);
  o.dx.assign(size_t(p.n * p.d), NAN);
  o.dgain.assign(size_t(p.d), NAN);
  const RmsNormArgs a = p.args();
  rmsnorm_gain_f32(a, o.y.data(), ex);
  rmsnorm_gain_i8(a, o.q.data(), o.scales.data(), ex);
  rmsnorm_gain_backward(a, p.dy.data(), o.dx.data(), o.dgain.data(), ex);
  return o;
}

template <typename T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// Compares every output bit for bit; `what` names the comparison.
void check_same(const Outputs& a, const Outputs& b, const std::string& what) {
  CHECK_MSG(same_bits(a.y, b.y), what << ": y differs");
  CHECK_MSG(same_bits(a.q, b.q), what << ": q differs");
  CHECK_MSG(same_bits(a.scales, b.scales), what << ": scales differ");
  CHECK_MSG(same_bits(a.dx, b.dx), what << ": dx differs");
  CHECK_MSG(same_bits(a.dgain, b.dgain), what << ": dgain differs");
}

std::string label(const Problem& p) {
  return "n=" + std::to_string(p.n) + " d=" + std::to_string(p.d) +
         " scheme=" + find_gain_decoder(p.scheme)->name;
}

// ---- the double-precision re-implementation -------------------------------------
double ref_inv_rms(const double* x, int64_t d, double eps) {
  double s = 0.0;
  for (int64_t c = 0; c < d; ++c) s += x[c] * x[c];
  return 1.0 / std::sqrt(s / double(d) + eps);
}

std::vector<double> ref_forward(const Problem& p) {
  std::vector<double> y(static_cast<size_t>(p.n * p.d)), xr(static_cast<size_t>(p.d));
  for (int64_t t = 0; t < p.n; ++t) {
    for (int64_t c = 0; c < p.d; ++c) xr[size_t(c)] = p.x[size_t(t * p.d + c)];
    const double inv = ref_inv_rms(xr.data(), p.d, p.eps);
    for (int64_t c = 0; c < p.d; ++c)
      y[size_t(t * p.d + c)] =
          xr[size_t(c)] * inv * double(p.w[size_t(c)]) * double(p.g[size_t(c)]);
  }
  return y;
}

// sum_c dy[t][c] * y[t][c] for one row, from double x row and double gains.
double ref_row_loss(const Problem& p, int64_t t, const double* x, const double* g) {
  const double inv = ref_inv_rms(x, p.d, p.eps);
  double l = 0.0;
  for (int64_t c = 0; c < p.d; ++c)
    l += double(p.dy[size_t(t * p.d + c)]) * x[c] * inv * double(p.w[size_t(c)]) * g[c];
  return l;
}

// Bound on |y - y_exact| / |y_exact| for the float path: the 16-lane sum of
// ceil(d/16) squares per lane plus the tree (relative error <= (ceil(d/16)+4) u),
// halved by the square root, plus a handful of single roundings (mean, + eps,
// sqrt, 1/., x*inv, *wg, w*g), with a 2x margin. u = 2^-24.
double forward_tolerance(int64_t d) { return (double((d + 15) / 16) + 12.0) * 0x1p-24; }

// max |got - want| / |want| (|want| > 0), or |got| when want == 0.
double max_rel(const std::vector<float>& got, const std::vector<double>& want) {
  double worst = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double e = want[i] == 0.0 ? std::fabs(double(got[i]))
                                    : std::fabs(double(got[i]) - want[i]) / std::fabs(want[i]);
    if (!(e <= worst)) worst = e;
  }
  return worst;
}

}  // namespace

TEST(rmsnorm_isa_paths_bit_identical) {
  int compared = 0;
  for (int64_t d : kDims)
    for (int64_t n : kRows)
      for (GainScheme s : kSchemes) {
        const Problem p = make_problem(n, d, s, 1);
        const Outputs ref = run(p, Exec{Isa::Scalar, nullptr, 1});
        for (Isa isa : test::every_isa()) {
          if (isa == Isa::Scalar) continue;
          check_same(run(p, Exec{isa, nullptr, 1}), ref, label(p) + " isa=" + isa_name(isa));
          ++compared;
        }
      }
  // On a machine with SIMD paths this compared something.
  CHECK(compared == int(sizeof kDims / sizeof kDims[0] * 3 * 3 * (test::every_isa().size() - 1)));
}

TEST(rmsnorm_forward_matches_double_reference) {
  for (int64_t d : kDims)
    for (int64_t n : kRows)
      for (GainScheme s : kSchemes) {
        const Problem p = make_problem(n, d, s, 2);
        std::vector<float> y(size_t(n * d), NAN);
        rmsnorm_gain_f32(p.args(), y.data(), Exec{Isa::Scalar, nullptr, 1});
        const double err = max_rel(y, ref_forward(p));
        CHECK_MSG(err <= forward_tolerance(d),
                  label(p) << " rel err " << err << " > " << forward_tolerance(d));
      }
}

TEST(rmsnorm_i8_equals_quantize_activations_of_f32) {
  std::vector<Problem> problems;
  for (int64_t d : kDims)
    for (GainScheme s : kSchemes) problems.push_back(make_problem(7, d, s, 3));
  // Rows whose absmax falls below 2^-64 (quantize_activations pre-scales them)
  // and rows of subnormal outputs.
  for (float tiny : {1e-30f, 1e-41f}) {
    Problem p = make_problem(9, 257, GainScheme::F32, 4);
    for (float& v : p.x) v *= tiny;
    problems.push_back(p);
  }
  for (const Problem& p : problems) {
    const int64_t padded = ternary::padded_cols(p.d);
    std::vector<float> y(static_cast<size_t>(p.n * p.d));
    rmsnorm_gain_f32(p.args(), y.data(), Exec{Isa::Scalar, nullptr, 1});
    std::vector<int8_t> q_want(size_t(p.n * padded), 9);
    std::vector<float> s_want(size_t(p.n), NAN);
    ternary::quantize_activations(y.data(), p.n, p.d, q_want.data(), s_want.data(),
                                  Exec{Isa::Scalar, nullptr, 1});
    for (Isa isa : test::every_isa()) {
      std::vector<int8_t> q(size_t(p.n * padded), int8_t(0x55));
      std::vector<float> s(size_t(p.n), NAN);
      rmsnorm_gain_i8(p.args(), q.data(), s.data(), Exec{isa, nullptr, 1});
      CHECK_MSG(same_bits(q, q_want), label(p) << " isa=" << isa_name(isa) << ": q");
      CHECK_MSG(same_bits(s, s_want), label(p) << " isa=" << isa_name(isa) << ": scales");
    }
  }
}

TEST(rmsnorm_i8_rounds_ties_to_even) {
  // A row built so every step is exact: x in multiples of 2^-8, eps = 1 - mean(x^2)
  // (exact), so inv_rms = 1, wg = 1, absmax = 127/128, 127/absmax = 128, and
  // q = round_half_even(x * 128) hits exact .5 ties.
  const int64_t d = 64;
  Problem p;
  p.n = 1;
  p.d = d;
  p.scheme = GainScheme::F32;
  p.x.assign(d, 0.0f);
  for (int64_t c = 0; c < 40; ++c) p.x[size_t(c)] = (c % 2 ? -127.0f : 127.0f) / 128.0f;
  const float ties[] = {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 3.5f, 100.5f, -126.5f, 0.0f};
  const int8_t want_ties[] = {0, 2, 2, 0, -2, -2, 4, 100, -126, 0};
  for (int i = 0; i < 10; ++i) p.x[size_t(40 + i)] = ties[i] / 128.0f;
  p.w.assign(d, 1.0f);
  p.dy.assign(d, 0.0f);
  encode_gains(p, std::vector<float>(d, 1.0f));
  double ss = 0.0;
  for (float v : p.x) ss += double(v) * double(v);
  const float mean = float(ss) / float(d);
  CHECK(double(mean) * d == ss && mean >= 0.5f && mean < 1.0f);
  p.eps = 1.0f - mean;
  CHECK(double(p.eps) + double(mean) == 1.0);
  for (Isa isa : test::every_isa()) {
    std::vector<int8_t> q(size_t(ternary::padded_cols(d)), int8_t(0x55));
    float scale = NAN;
    rmsnorm_gain_i8(p.args(), q.data(), &scale, Exec{isa, nullptr, 1});
    CHECK(scale == (127.0f / 128.0f) / 127.0f);
    for (int64_t c = 0; c < 40; ++c) CHECK(q[size_t(c)] == (c % 2 ? -127 : 127));
    for (int i = 0; i < 10; ++i)
      CHECK_MSG(q[size_t(40 + i)] == want_ties[i],
                isa_name(isa) << " tie " << ties[i] << " -> " << int(q[size_t(40 + i)]));
    for (int64_t c = 50; c < d; ++c) CHECK(q[size_t(c)] == 0);
  }
}

TEST(rmsnorm_zero_rows_use_inv_sqrt_eps) {
  Problem p = make_problem(5, 33, GainScheme::F16, 5);
  for (int64_t t : {0, 3, 4})
    for (int64_t c = 0; c < p.d; ++c) p.x[size_t(t * p.d + c)] = (c % 2) ? -0.0f : 0.0f;
  const float inv = 1.0f / std::sqrt(p.eps);
  for (Isa isa : test::every_isa()) {
    const Outputs o = run(p, Exec{isa, nullptr, 1});
    const int64_t padded = ternary::padded_cols(p.d);
    for (int64_t t : {0, 3, 4}) {
      CHECK(o.scales[size_t(t)] == 0.0f);
      for (int64_t c = 0; c < padded; ++c) CHECK(o.q[size_t(t * padded + c)] == 0);
      for (int64_t c = 0; c < p.d; ++c) {
        const size_t i = size_t(t * p.d + c);
        CHECK(o.y[i] == 0.0f);
        // dx = (dy * wg - 0 * k) * inv with inv = 1 / sqrt(eps) exactly.
        const float wg = p.w[size_t(c)] * p.g[size_t(c)];
        CHECK_MSG(o.dx[i] == (p.dy[i] * wg) * inv, isa_name(isa) << " t=" << t << " c=" << c);
      }
    }
  }
}

TEST(rmsnorm_thread_count_invariant) {
  // Shapes with several row chunks (about 4096 elements each) and several
  // 64-channel dgain chunks, ragged ends included.
  ThreadPool pool(3);
  for (Isa isa : test::every_isa())
    for (auto nd : {std::pair<int64_t, int64_t>{64, 768}, {64, 257}, {300, 33}, {3, 1}}) {
      const Problem p = make_problem(nd.first, nd.second, GainScheme::Int8PerTensor, 6);
      const Outputs one = run(p, Exec{isa, &pool, 1});
      for (int threads : {2, 3})
        check_same(run(p, Exec{isa, &pool, threads}), one,
                   label(p) + " isa=" + isa_name(isa) + " threads=" + std::to_string(threads));
    }
}

TEST(rmsnorm_extreme_magnitudes) {
  Rng rng(7);
  // Rows whose float sum of squares overflows (|x| in [1e18, 2e18], d = 768:
  // sum >= 7.7e38), a row mixing 1e18 with O(1) values, a row of +-1e37, and
  // rows whose squares underflow with a tiny eps: all take the double path.
  Problem big;
  big.n = 4;
  big.d = 768;
  big.scheme = GainScheme::F32;
  big.x.resize(size_t(big.n * big.d));
  for (int64_t c = 0; c < big.d; ++c) {
    const float sgn = (c % 3) ? 1.0f : -1.0f;
    big.x[size_t(c)] = sgn * 1e18f * rng.uniform(1.0f, 2.0f);
    big.x[size_t(big.d + c)] = (c % 7 == 0) ? sgn * 1e18f : rng.normal();
    big.x[size_t(2 * big.d + c)] = sgn * 1e37f * rng.uniform(0.5f, 1.0f);
    big.x[size_t(3 * big.d + c)] = rng.normal();
  }
  float sumsq = 0.0f;
  for (int64_t c = 0; c < big.d; ++c) sumsq += big.x[size_t(c)] * big.x[size_t(c)];
  CHECK(std::isinf(sumsq));  // the case the double path exists for
  big.w.assign(size_t(big.d), 1.0f);
  big.dy.resize(size_t(big.n * big.d));
  for (float& v : big.dy) v = rng.normal();
  std::vector<float> gf(static_cast<size_t>(big.d));
  for (float& v : gf) v = rng.uniform(0.5f, 2.0f);
  encode_gains(big, gf);

  Problem tiny = make_problem(4, 255, GainScheme::F16, 8);
  for (float& v : tiny.x) v *= 1e-25f;  // squares ~1e-50 underflow to 0 in float
  tiny.eps = 1e-35f;                    // and eps does not hide that

  Problem small = make_problem(4, 255, GainScheme::F32, 9);
  for (float& v : small.x) v *= 1e-30f;  // squares underflow, eps = 1e-5 dominates

  for (const Problem* p : {&big, &tiny, &small}) {
    const Outputs ref = run(*p, Exec{Isa::Scalar, nullptr, 1});
    const double err = max_rel(ref.y, ref_forward(*p));
    CHECK_MSG(err <= forward_tolerance(p->d), label(*p) << " eps=" << p->eps << " rel err " << err);
    for (float v : ref.y) CHECK(std::isfinite(v));
    for (float v : ref.dx) CHECK(std::isfinite(v));
    for (float v : ref.dgain) CHECK(std::isfinite(v));
    for (Isa isa : test::every_isa())
      check_same(run(*p, Exec{isa, nullptr, 1}), ref, label(*p) + " extreme isa=" + isa_name(isa));
  }

  // rms above 2^126: inv_rms is a float subnormal (documented precision loss,
  // still no overflow and within 1e-5).
  Problem top = big;
  for (int64_t c = 0; c < top.d; ++c) top.x[size_t(c)] = ((c % 2) ? -0.9f : 0.9f) * FLT_MAX;
  const Outputs o = run(top, Exec{Isa::Scalar, nullptr, 1});
  const std::vector<double> want = ref_forward(top);
  std::vector<float> row0(o.y.begin(), o.y.begin() + top.d);
  CHECK_MSG(max_rel(row0, std::vector<double>(want.begin(), want.begin() + top.d)) <= 1e-5,
            "FLT_MAX row");
  for (Isa isa : test::every_isa()) check_same(run(top, Exec{isa, nullptr, 1}), o, "FLT_MAX row");
}

TEST(rmsnorm_gain_scheme_edges) {
  // f16 gains at subnormal and largest magnitudes, and an all-zero int8 gain.
  Problem p = make_problem(7, 33, GainScheme::F16, 10);
  const uint16_t hs[] = {0x0001, 0x8001, 0x03ff, 0x0400, 0x7bff, 0xfbff, 0x0000, 0x3c00};
  p.payload.resize(size_t(p.d) * 2);
  for (int64_t c = 0; c < p.d; ++c) {
    const uint16_t h = hs[c % 8];
    std::memcpy(p.payload.data() + 2 * c, &h, 2);
    p.g[size_t(c)] = f16_to_f32(h);
  }
  const Outputs ref = run(p, Exec{Isa::Scalar, nullptr, 1});
  CHECK(max_rel(ref.y, ref_forward(p)) <= forward_tolerance(p.d));
  for (Isa isa : test::every_isa()) check_same(run(p, Exec{isa, nullptr, 1}), ref, "f16 edges");

  Problem z = make_problem(7, 257, GainScheme::Int8PerTensor, 11);
  encode_gains(z, std::vector<float>(size_t(z.d), 0.0f));
  CHECK(z.params[0] == 0.0f);
  const Outputs oz = run(z, Exec{Isa::Scalar, nullptr, 1});
  for (float v : oz.y) CHECK(v == 0.0f);
  for (float v : oz.scales) CHECK(v == 0.0f);
  for (int8_t v : oz.q) CHECK(v == 0);
  for (float v : oz.dx) CHECK(v == 0.0f);
  // dgain does not depend on g: it matches the run with unit gains.
  Problem u = z;
  encode_gains(u, std::vector<float>(size_t(u.d), 1.0f));
  CHECK(same_bits(oz.dgain, run(u, Exec{Isa::Scalar, nullptr, 1}).dgain));
  bool nonzero = false;
  for (float v : oz.dgain) nonzero = nonzero || v != 0.0f;
  CHECK(nonzero);
  for (Isa isa : test::every_isa()) check_same(run(z, Exec{isa, nullptr, 1}), oz, "zero gains");
}

TEST(rmsnorm_backward_matches_finite_differences) {
  struct Shape {
    int64_t n, d;
    GainScheme s;
    float x_scale;
  };
  const Shape shapes[] = {{1, 1, GainScheme::F32, 1.0f},
                          {3, 17, GainScheme::F32, 1.0f},
                          {4, 33, GainScheme::Int8PerTensor, 1.0f},
                          {2, 257, GainScheme::F16, 1.0f},
                          {6, 16, GainScheme::F32, 1.0f},
                          {2, 768, GainScheme::F32, 1e18f},
                          {3, 48, GainScheme::F16, 1e-3f}};
  // Kernel gradients are float; the bound is relative to the largest
  // gradient of the row (dx) or of the tensor (dgain). Measured errors are
  // ~1e-7; 2e-6 leaves room for d = 768 sums.
  const double tol = 2e-6;
  for (const Shape& sh : shapes) {
    Problem p = make_problem(sh.n, sh.d, sh.s, 12);
    for (float& v : p.x) v *= sh.x_scale;
    const int64_t n = p.n, d = p.d;
    std::vector<double> X(p.x.begin(), p.x.end()), G(p.g.begin(), p.g.end());

    // Central differences on the double loss.
    std::vector<double> fd_dx(size_t(n * d)), fd_dg(size_t(d), 0.0);
    for (int64_t t = 0; t < n; ++t) {
      double* xr = X.data() + t * d;
      double ss = 0.0;
      for (int64_t c = 0; c < d; ++c) ss += xr[c] * xr[c];
      // A step small against the row's rms (or sqrt(eps) for a zero row).
      const double h = 1e-5 * std::max(std::sqrt(ss / double(d)), std::sqrt(double(p.eps)));
      for (int64_t c = 0; c < d; ++c) {
        const double keep = xr[c];
        xr[c] = keep + h;
        const double lp = ref_row_loss(p, t, xr, G.data());
        xr[c] = keep - h;
        const double lm = ref_row_loss(p, t, xr, G.data());
        xr[c] = keep;
        fd_dx[size_t(t * d + c)] = (lp - lm) / (2 * h);
      }
    }
    for (int64_t c = 0; c < d; ++c) {
      const double keep = G[size_t(c)], h = 1e-3;
      double lp = 0.0, lm = 0.0;
      G[size_t(c)] = keep + h;
      for (int64_t t = 0; t < n; ++t) lp += ref_row_loss(p, t, X.data() + t * d, G.data());
      G[size_t(c)] = keep - h;
      for (int64_t t = 0; t < n; ++t) lm += ref_row_loss(p, t, X.data() + t * d, G.data());
      G[size_t(c)] = keep;
      fd_dg[size_t(c)] = (lp - lm) / (2 * h);
    }

    for (Isa isa : test::every_isa()) {
      const Outputs o = run(p, Exec{isa, nullptr, 1});
      double worst_dx = 0.0;
      for (int64_t t = 0; t < n; ++t) {
        // dx = inv * (dy * wg - x * k) may cancel (fully for d = 1 when eps is
        // small): the error scale of a row is its largest gradient or its
        // largest uncancelled term inv * |dy * wg|, whichever is bigger.
        const double inv = ref_inv_rms(X.data() + t * d, d, p.eps);
        double row_max = 0.0, row_err = 0.0;
        for (int64_t c = 0; c < d; ++c) {
          const size_t i = size_t(t * d + c);
          const double term = inv * std::fabs(double(p.dy[i]) * p.w[size_t(c)] * p.g[size_t(c)]);
          row_max = std::max(row_max, std::max(std::fabs(fd_dx[i]), term));
          row_err = std::max(row_err, std::fabs(double(o.dx[i]) - fd_dx[i]));
        }
        worst_dx = std::max(worst_dx, row_max > 0 ? row_err / row_max : row_err);
      }
      double g_max = 0.0, g_err = 0.0;
      for (int64_t c = 0; c < d; ++c) {
        g_max = std::max(g_max, std::fabs(fd_dg[size_t(c)]));
        g_err = std::max(g_err, std::fabs(double(o.dgain[size_t(c)]) - fd_dg[size_t(c)]));
      }
      const double worst_dg = g_max > 0 ? g_err / g_max : g_err;
      if (std::getenv("TERNORM_TEST_VERBOSE"))
        std::printf("  %s x_scale=%g isa=%s: dx err %.3g, dgain err %.3g\n", label(p).c_str(),
                    double(sh.x_scale), isa_name(isa), worst_dx, worst_dg);
      CHECK_MSG(worst_dx <= tol, label(p) << " x_scale=" << sh.x_scale << " isa=" << isa_name(isa)
                                          << " dx err " << worst_dx);
      CHECK_MSG(worst_dg <= tol, label(p) << " x_scale=" << sh.x_scale << " isa=" << isa_name(isa)
                                          << " dgain err " << worst_dg);
    }
  }
}

TEST(rmsnorm_backward_partial_outputs) {
  // dx only, dgain only: the same values as the full call.
  const Problem p = make_problem(7, 257, GainScheme::F32, 13);
  for (Isa isa : test::every_isa()) {
    const Exec ex{isa, nullptr, 1};
    const Outputs full = run(p, ex);
    std::vector<float> dx(size_t(p.n * p.d), NAN), dg(size_t(p.d), NAN);
    rmsnorm_gain_backward(p.args(), p.dy.data(), dx.data(), nullptr, ex);
    rmsnorm_gain_backward(p.args(), p.dy.data(), nullptr, dg.data(), ex);
    CHECK(same_bits(dx, full.dx));
    CHECK(same_bits(dg, full.dgain));
  }
}

TEST(rmsnorm_in_place_forward) {
  const Problem p = make_problem(7, 33, GainScheme::F32, 14);
  for (Isa isa : test::every_isa()) {
    std::vector<float> y(p.x.size());
    rmsnorm_gain_f32(p.args(), y.data(), Exec{isa, nullptr, 1});
    Problem q = p;
    RmsNormArgs a = q.args();
    rmsnorm_gain_f32(a, q.x.data(), Exec{isa, nullptr, 1});
    CHECK(same_bits(q.x, y));
  }
}

TEST(rmsnorm_bad_input) {
  const Problem p = make_problem(4, 20, GainScheme::Int8PerTensor, 15);
  const Exec ex{Isa::Scalar, nullptr, 1};
  std::vector<float> y(80), dx(80), dg(20), s(4);
  std::vector<int8_t> q(4 * 32);
  auto f32 = [&](const RmsNormArgs& a) { rmsnorm_gain_f32(a, y.data(), ex); };
  auto i8 = [&](const RmsNormArgs& a) { rmsnorm_gain_i8(a, q.data(), s.data(), ex); };
  auto bwd = [&](const RmsNormArgs& a) {
    rmsnorm_gain_backward(a, p.dy.data(), dx.data(), dg.data(), ex);
  };
  // Each mutation must make all three calls throw std::invalid_argument whose
  // message contains `expect`.
  auto expect_all = [&](const RmsNormArgs& a, const std::string& expect) {
    CHECK_THROWS(f32(a));
    CHECK_THROWS(i8(a));
    CHECK_THROWS(bwd(a));
    for (const std::string& m : {thrown_message<std::invalid_argument>([&] { f32(a); }),
                                 thrown_message<std::invalid_argument>([&] { i8(a); }),
                                 thrown_message<std::invalid_argument>([&] { bwd(a); })})
      CHECK_MSG(mentions(m, expect), "message '" << m << "' lacks '" << expect << "'");
  };
  RmsNormArgs a = p.args();
  // The unmutated calls work.
  f32(a);
  i8(a);
  bwd(a);

  a = p.args();
  a.x = nullptr;
  expect_all(a, "x is null");
  a = p.args();
  a.w_base = nullptr;
  expect_all(a, "w_base is null");
  a = p.args();
  a.n = 0;
  expect_all(a, "expected 0 < n");
  a = p.args();
  a.n = -2;
  expect_all(a, "expected 0 < n");
  a = p.args();
  a.d = 0;
  expect_all(a, "expected 0 < d");
  a = p.args();
  a.d = -1;
  expect_all(a, "expected 0 < d");
  a = p.args();
  a.d = a.gain.d = (int64_t(1) << 24) + 1;
  expect_all(a, "expected 0 < d <= 16777216");
  a = p.args();
  a.n = int64_t(1) << 62;
  expect_all(a, "expected 0 < n <=");
  a = p.args();
  a.gain.d = 19;
  expect_all(a, "expected d = 20");
  a = p.args();
  a.gain.data_bytes = 21;
  expect_all(a, "expected 20");
  a = p.args();
  a.gain.data = nullptr;
  expect_all(a, "data is null");
  a = p.args();
  a.gain.n_params = 0;
  expect_all(a, "expected 1 (the scale)");
  a = p.args();
  a.gain.scheme = static_cast<GainScheme>(40);
  expect_all(a, "unknown scheme 40");
  const float nan_scale = NAN, inf_scale = -INFINITY;
  a = p.args();
  a.gain.params = &nan_scale;
  expect_all(a, "not finite");
  a = p.args();
  a.gain.params = &inf_scale;
  expect_all(a, "not finite");
  for (float eps : {0.0f, -1e-5f, NAN, INFINITY}) {
    a = p.args();
    a.eps = eps;
    expect_all(a, "expected a finite eps > 0");
  }

  // Non-finite inputs name the first offending element.
  for (float bad : {NAN, INFINITY, -INFINITY}) {
    Problem b = p;
    b.x[2 * 20 + 5] = bad;
    b.x[3 * 20 + 1] = bad;
    expect_all(b.args(), "x[2][5]");
  }
  {
    Problem b = p;
    b.w[7] = NAN;
    expect_all(b.args(), "w_base[7]");
    b = p;
    b.w[3] = 1e38f;  // w * g beyond FLT_MAX / (2 sqrt(d))
    expect_all(b.args(), "w_base[3] * gain[3]");
  }
  {
    Problem b = p;
    b.scheme = GainScheme::F16;
    encode_gains(b, std::vector<float>(20, 1.0f));
    const uint16_t inf_h = 0x7c00;
    std::memcpy(b.payload.data() + 2 * 6, &inf_h, 2);
    expect_all(b.args(), "gain[6]");
  }
  // dy: checked with dx requested, and with dgain only.
  for (float bad : {NAN, INFINITY}) {
    std::vector<float> dyb = p.dy;
    dyb[1 * 20 + 4] = bad;
    dyb[3 * 20 + 0] = bad;
    for (bool want_dx : {true, false}) {
      const std::string m = thrown_message<std::invalid_argument>([&] {
        rmsnorm_gain_backward(p.args(), dyb.data(), want_dx ? dx.data() : nullptr, dg.data(), ex);
      });
      CHECK_MSG(mentions(m, "dy[1][4]"), "dx=" << want_dx << ": " << m);
    }
  }
  // Null outputs and inputs of the calls themselves.
  CHECK_THROWS(rmsnorm_gain_f32(p.args(), nullptr, ex));
  CHECK_THROWS(rmsnorm_gain_i8(p.args(), nullptr, s.data(), ex));
  CHECK_THROWS(rmsnorm_gain_i8(p.args(), q.data(), nullptr, ex));
  CHECK_THROWS(rmsnorm_gain_backward(p.args(), nullptr, dx.data(), dg.data(), ex));
  CHECK(mentions(thrown_message<std::invalid_argument>(
                     [&] { rmsnorm_gain_backward(p.args(), nullptr, dx.data(), dg.data(), ex); }),
                 "dy is null"));
  // Overlapping buffers.
  {
    Problem b = p;
    CHECK_THROWS(rmsnorm_gain_f32(b.args(), b.x.data() + 1, ex));  // partial overlap
    std::vector<float> dyb = p.dy;
    CHECK_THROWS(rmsnorm_gain_backward(b.args(), dyb.data(), dyb.data(), dg.data(), ex));
    CHECK_THROWS(rmsnorm_gain_backward(b.args(), dyb.data(), dx.data(), dyb.data() + 3, ex));
    CHECK_THROWS(rmsnorm_gain_i8(b.args(), reinterpret_cast<int8_t*>(b.x.data()), s.data(), ex));
  }
  // A path this build or CPU cannot run.
  for (Isa isa : {Isa::Avx2, Isa::Avx512, Isa::Neon})
    if (!isa_supported(isa)) {
      CHECK_THROWS(rmsnorm_gain_f32(p.args(), y.data(), Exec{isa, nullptr, 1}));
      CHECK(mentions(thrown_message<std::invalid_argument>([&] {
                       rmsnorm_gain_f32(p.args(), y.data(), Exec{isa, nullptr, 1});
                     }),
                     "not supported"));
    }
}

TEST(rmsnorm_bad_row_reported_deterministically) {
  // With several bad rows spread over threads, the error always names the first.
  ThreadPool pool(3);
  Problem p = make_problem(400, 48, GainScheme::F32, 16);  // 5 row chunks
  p.x[size_t(9 * 48 + 2)] = NAN;
  p.x[size_t(200 * 48 + 0)] = NAN;
  p.x[size_t(390 * 48 + 7)] = INFINITY;
  std::vector<float> y(p.x.size());
  for (Isa isa : test::every_isa())
    for (int threads : {1, 2, 3}) {
      const std::string m = thrown_message<std::invalid_argument>([&] {
        rmsnorm_gain_f32(p.args(), y.data(), Exec{isa, &pool, threads});
      });
      CHECK_MSG(mentions(m, "x[9][2]"), isa_name(isa) << " threads=" << threads << ": " << m);
    }
}
