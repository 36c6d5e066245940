// The element-wise row kernels (model/vec_math_kernels.h): every ISA path
// bit-identical to the scalar reference, on random rows of ragged lengths and
// on edge values (zeros, NaN, Inf, denormals, values past exp's clamp).
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "harness.h"
#include "model/vec_math_kernels.h"

using namespace ternorm;
using namespace ternorm::model::detail;
using ternorm::test::Rng;

namespace {

// Bit for bit, except that a NaN matches any NaN: which NaN an operation
// passes on (sign, payload) depends on the operand order the compiler picks
// for a commutative operation, which IEEE 754 leaves open.
template <typename F>
bool same(const F* a, const F* b, size_t count) {
  for (size_t i = 0; i < count; ++i)
    if (std::memcmp(a + i, b + i, sizeof(F)) != 0 && !(std::isnan(a[i]) && std::isnan(b[i])))
      return false;
  return true;
}

// Random row: mostly N(0, scale), with edge values sprinkled in when `edges`.
std::vector<float> row(int64_t n, float scale, bool edges, Rng& rng) {
  static const float kEdges[] = {0.0f,
                                 -0.0f,
                                 1e-40f,
                                 -1e-40f,
                                 88.5f,
                                 -87.5f,
                                 200.0f,
                                 -200.0f,
                                 1e30f,
                                 -1e30f,
                                 std::numeric_limits<float>::infinity(),
                                 -std::numeric_limits<float>::infinity(),
                                 std::numeric_limits<float>::quiet_NaN(),
                                 3.4e38f};
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = scale * rng.normal();
  if (edges)
    for (int64_t i = 0; i < n; i += 3)
      v[size_t(i)] = kEdges[rng.below(sizeof(kEdges) / sizeof(float))];
  return v;
}

}  // namespace

TEST(vec_math_paths_match_reference) {
  const VecKernels& ref = kVecKernelsScalar;
  Rng rng(77);
  for (Isa isa : ternorm::test::every_isa()) {
    const VecKernels& k = vec_kernels(isa);
    for (int64_t n : {1, 2, 7, 8, 9, 15, 16, 17, 23, 24, 31, 33, 64, 255, 4096}) {
      for (int edges = 0; edges < 2; ++edges) {
        for (float scale : {1.0f, 30.0f}) {
          const std::vector<float> x = row(n, scale, edges != 0, rng);
          const size_t count = size_t(n);
          const float m0 = ref.max(x.data(), n), m1 = k.max(x.data(), n);
          CHECK_MSG(same(&m0, &m1, 1), isa_name(isa) << " max n=" << n);
          // exp_sum: stored, in place, and sum only.
          std::vector<float> y0(x.size()), y1(x.size(), 7.0f), z(x);
          const double s0 = ref.exp_sum(x.data(), m0, y0.data(), n);
          const double s1 = k.exp_sum(x.data(), m0, y1.data(), n);
          const double s2 = k.exp_sum(z.data(), m0, z.data(), n);
          const double s3 = k.exp_sum(x.data(), m0, nullptr, n);
          const double s4 = ref.exp_sum(x.data(), m0, nullptr, n);
          CHECK_MSG(
              same(&s0, &s1, 1) && same(&s0, &s2, 1) && same(&s0, &s3, 1) && same(&s0, &s4, 1),
              isa_name(isa) << " exp_sum n=" << n);
          CHECK_MSG(same(y0.data(), y1.data(), count) && same(y0.data(), z.data(), count),
                    isa_name(isa) << " exp_sum stored n=" << n);
          // scale must not write past n.
          std::vector<float> a(x), b(x);
          a.push_back(5.0f), b.push_back(5.0f);
          ref.scale(a.data(), 0.37f, n);
          k.scale(b.data(), 0.37f, n);
          CHECK_MSG(same(a.data(), b.data(), count + 1), isa_name(isa) << " scale n=" << n);
          // SwiGLU forward and backward, with a guard element past the row.
          const std::vector<float> u = row(n, scale, edges != 0, rng),
                                   dy = row(n, 1.0f, false, rng);
          std::vector<float> o0(size_t(n + 1), 9.0f), o1(o0), dg0(o0), dg1(o0), du0(o0), du1(o0);
          ref.swiglu(x.data(), u.data(), o0.data(), n);
          k.swiglu(x.data(), u.data(), o1.data(), n);
          CHECK_MSG(same(o0.data(), o1.data(), count + 1), isa_name(isa) << " swiglu n=" << n);
          ref.swiglu_backward(x.data(), u.data(), dy.data(), dg0.data(), du0.data(), n);
          k.swiglu_backward(x.data(), u.data(), dy.data(), dg1.data(), du1.data(), n);
          CHECK_MSG(
              same(dg0.data(), dg1.data(), count + 1) && same(du0.data(), du1.data(), count + 1),
              isa_name(isa) << " swiglu_backward n=" << n);
        }
      }
    }
  }
}

// max where the maximum is a zero: +0 and -0 compare equal, and which one a
// lane keeps depends on which came first; negative values and NaN around them.
TEST(vec_math_max_zero_maximum) {
  const VecKernels& ref = kVecKernelsScalar;
  Rng rng(80);
  const float kPick[] = {0.0f, -0.0f, -1.0f, -3.5f, std::numeric_limits<float>::quiet_NaN()};
  for (Isa isa : ternorm::test::every_isa())
    for (int64_t n : {1, 9, 31, 32, 40, 64, 100, 4096})
      for (int rep = 0; rep < 20; ++rep) {
        std::vector<float> x(static_cast<size_t>(n));
        for (auto& v : x) v = kPick[rng.below(rep % 2 ? 5 : 4)];
        const float m0 = ref.max(x.data(), n), m1 = vec_kernels(isa).max(x.data(), n);
        CHECK_MSG(same(&m0, &m1, 1), isa_name(isa) << " max of zeros n=" << n << " rep " << rep);
      }
}

// RoPE: head sizes with pair counts below, at and past each vector width
// (tails), several heads per row, both signs, edge values; nothing past the row written.
TEST(vec_math_rope_paths_match_reference) {
  const VecKernels& ref = kVecKernelsScalar;
  Rng rng(79);
  for (Isa isa : ternorm::test::every_isa()) {
    const VecKernels& k = vec_kernels(isa);
    for (int64_t hd : {2, 6, 8, 14, 16, 18, 32, 34, 64, 128})
      for (int64_t heads : {1, 3})
        for (int edges = 0; edges < 2; ++edges)
          for (float sign : {1.0f, -1.0f}) {
            const int64_t width = hd * heads;
            const std::vector<float> c = row(hd / 2, 1.0f, edges != 0, rng),
                                     s = row(hd / 2, 1.0f, edges != 0, rng);
            std::vector<float> x0 = row(width, 3.0f, edges != 0, rng);
            x0.push_back(5.0f);  // guard
            std::vector<float> x1 = x0;
            ref.rope(x0.data(), width, hd, c.data(), s.data(), sign);
            k.rope(x1.data(), width, hd, c.data(), s.data(), sign);
            CHECK_MSG(same(x0.data(), x1.data(), x0.size()),
                      isa_name(isa) << " rope hd=" << hd << " heads=" << heads << " sign=" << sign);
          }
  }
}

// The reference itself against the plain formulas it stands for.
TEST(vec_math_reference_formulas) {
  const VecKernels& ref = kVecKernelsScalar;
  Rng rng(78);
  for (int64_t n : {1, 9, 100}) {
    const std::vector<float> x = row(n, 3.0f, false, rng);
    if (n % 2 == 0 || n == 1) {  // RoPE of one head of 2n values: a rotation by (c, s)
      std::vector<float> r(static_cast<size_t>(2 * n)), c(static_cast<size_t>(n)),
          s(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) {
        r[size_t(2 * i)] = x[size_t(i)], r[size_t(2 * i + 1)] = 1.0f;
        c[size_t(i)] = float(std::cos(0.1 * double(i))),
        s[size_t(i)] = float(std::sin(0.1 * double(i)));
      }
      ref.rope(r.data(), 2 * n, 2 * n, c.data(), s.data(), 1.0f);
      for (int64_t i = 0; i < n; ++i) {
        const double a = x[size_t(i)], ca = c[size_t(i)], sa = s[size_t(i)];
        CHECK_MSG(std::fabs(r[size_t(2 * i)] - (a * ca - sa)) <= 1e-5 * (std::fabs(a) + 1) &&
                      std::fabs(r[size_t(2 * i + 1)] - (a * sa + ca)) <= 1e-5 * (std::fabs(a) + 1),
                  "rope pair " << i);
      }
    }
    float mx = x[0];
    for (float v : x) mx = std::fmax(mx, v);
    CHECK(ref.max(x.data(), n) == mx);
    double want = 0;
    for (float v : x) want += std::exp(double(v) - double(mx));
    const double got = ref.exp_sum(x.data(), mx, nullptr, n);
    CHECK_MSG(std::fabs(got - want) <= 1e-6 * want, "exp_sum " << got << " vs " << want);
    std::vector<float> o(static_cast<size_t>(n));
    ref.swiglu(x.data(), x.data(), o.data(), n);
    for (int64_t c = 0; c < n; ++c) {
      const double g = x[size_t(c)], e = g * g / (1.0 + std::exp(-g));
      CHECK_MSG(std::fabs(o[size_t(c)] - e) <= 1e-6 * std::fmax(1.0, std::fabs(e)), "swiglu " << c);
    }
  }
}

// No silent fallback: every SIMD path this CPU runs has kernels of its own
// (the AVX-512 set shares only the AVX2 max, which keeps the reference's 8 lanes).
TEST(vec_math_every_simd_path_has_its_own_kernels) {
  for (Isa isa : ternorm::test::every_isa()) {
    if (isa == Isa::Scalar) continue;
    const VecKernels& k = vec_kernels(isa);
    CHECK_MSG(&k != &kVecKernelsScalar && k.exp_sum != kVecKernelsScalar.exp_sum &&
                  k.swiglu != kVecKernelsScalar.swiglu &&
                  k.swiglu_backward != kVecKernelsScalar.swiglu_backward &&
                  k.max != kVecKernelsScalar.max && k.scale != kVecKernelsScalar.scale &&
                  k.rope != kVecKernelsScalar.rope,
              isa_name(isa));
  }
}
