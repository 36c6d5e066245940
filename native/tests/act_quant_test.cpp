// Per-token int8 activation quantisation: every ISA path bit-identical to the
// scalar reference, the reference checked against the formula of ternary.h.
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "cpu/thread_pool.h"
#include "harness.h"
#include "ternary/ternary.h"

using namespace ternorm;
using namespace ternorm::ternary;
using ternorm::test::Rng;

namespace {

struct Quantised {
  std::vector<int8_t> q;
  std::vector<float> scales;
};

Quantised run(const std::vector<float>& x, int64_t n, int64_t cols, const Exec& ex) {
  Quantised out;
  out.q.assign(size_t(n * padded_cols(cols)), int8_t(0x5A));  // garbage: padding must be written
  out.scales.assign(size_t(n), -1.0f);
  quantize_activations(x.data(), n, cols, out.q.data(), out.scales.data(), ex);
  return out;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

// The header's formula, written out directly (absmax by fabs, no bit tricks).
void check_formula(const std::vector<float>& x, int64_t n, int64_t cols, const Quantised& got) {
  const int64_t qs = padded_cols(cols);
  for (int64_t t = 0; t < n; ++t) {
    float absmax = 0;
    for (int64_t c = 0; c < cols; ++c)
      absmax = std::fmax(absmax, std::fabs(x[size_t(t * cols + c)]));
    CHECK_MSG(got.scales[size_t(t)] == absmax / 127.0f, "scale of row " << t);
    bool ok = true;
    for (int64_t c = 0; c < qs; ++c) {
      int want = 0;
      if (c < cols && absmax > 0) {
        float v = std::nearbyint(x[size_t(t * cols + c)] * (127.0f / absmax));
        want = int(std::fmin(127.0f, std::fmax(-127.0f, v)));
      }
      ok = ok && got.q[size_t(t * qs + c)] == want;
    }
    CHECK_MSG(ok, "q of row " << t << ", cols=" << cols);
  }
}

}  // namespace

TEST(act_quant_every_isa_matches_reference) {
  Rng rng(21);
  ThreadPool pool(3);
  const int64_t cols_list[] = {1, 3, 15, 16, 17, 31, 33, 63, 64, 65, 255, 256, 257, 1000, 4096};
  const int64_t n_list[] = {1, 2, 7, 9, 40};
  for (int64_t cols : cols_list) {
    for (int64_t n : n_list) {
      std::vector<float> x(size_t(n * cols));
      for (auto& v : x) v = rng.normal() * 3.0f;
      for (int64_t c = 0; c < cols; ++c) x[size_t(c)] = 0.0f;  // an all-zero row
      if (n > 2)                                               // one outlier dominating its row
        x[size_t(2 * cols + rng.below(cols))] = 1e4f;
      const Quantised ref = run(x, n, cols, Exec{Isa::Scalar, nullptr, 1});
      check_formula(x, n, cols, ref);
      CHECK(ref.scales[0] == 0.0f);
      for (Isa isa : test::every_isa()) {
        for (int threads : {1, 2, 3}) {
          const Quantised got = run(x, n, cols, Exec{isa, &pool, threads});
          CHECK_MSG(got.q == ref.q,
                    isa_name(isa) << " q, n=" << n << " cols=" << cols << " threads=" << threads);
          CHECK_MSG(same_bits(got.scales, ref.scales),
                    isa_name(isa) << " scales, n=" << n << " cols=" << cols);
        }
      }
    }
  }
}

TEST(act_quant_ties_saturation_and_extremes) {
  const float big = std::numeric_limits<float>::max();
  const float tiny = std::numeric_limits<float>::denorm_min();
  const int64_t cols = 21;
  std::vector<float> x;
  // Row 0: absmax 127 -> factor exactly 1, so these are exact .5 ties.
  const float r0[cols] = {127,    0.5f,    1.5f, 2.5f, -0.5f, -1.5f, -2.5f,
                          126.5f, -126.5f, 3.5f, -127, 64.5f, 0,     0,
                          0,      0,       0,    0,    0,     0,     1e-30f};
  const int8_t w0[cols] = {127, 0, 2, 2, 0, -2, -2, 126, -126, 4, -127,
                           64,  0, 0, 0, 0, 0,  0,  0,   0,    0};
  // Row 1: huge magnitudes; +-FLT_MAX lands on +-127.
  const float r1[cols] = {big,   -big,   big, -big, 1e38f, -1e38f, 0, 1, -1, big * 0.25f, -big, big,
                          3e38f, -3e38f, big, 0,    0,     0,      0, 0, 0};
  // Row 2: subnormal absmax (127 / absmax overflows float): 700 and 350 ulps
  // of denorm_min give the tie 63.5 -> 64, and -100 / 700 * 127 = -18.14 -> -18.
  const float r2[cols] = {700 * tiny, 350 * tiny, -100 * tiny, -700 * tiny, tiny, 0, 0, 0, 0, 0, 0,
                          0,          0,          0,           0,           0,    0, 0, 0, 0, 0};
  const int8_t w2[cols] = {127, 64, -18, -127, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  // Row 3: absmax just around 2^-64, where the scaled form switches on.
  float r3[cols];
  for (int c = 0; c < cols; ++c) r3[c] = std::ldexp(float(c - 10) / 10.0f, -64);
  // Row 4: all zero.
  float r4[cols] = {};
  for (const float* r : {r0, r1, r2, static_cast<const float*>(r3), static_cast<const float*>(r4)})
    x.insert(x.end(), r, r + cols);
  const int64_t n = 5, qs = padded_cols(cols);
  const Quantised ref = run(x, n, cols, Exec{Isa::Scalar, nullptr, 1});
  CHECK(std::memcmp(ref.q.data(), w0, cols) == 0);
  CHECK(ref.scales[0] == 1.0f);
  for (int64_t c = 0; c < cols; ++c) {
    const float v = r1[c];
    const int want = int(std::nearbyint(double(v) / double(big) * 127.0));  // no ties here
    CHECK_MSG(ref.q[size_t(qs + c)] == want, "row 1 col " << c);
  }
  CHECK(ref.scales[1] == big / 127.0f);
  CHECK(std::memcmp(ref.q.data() + 2 * qs, w2, cols) == 0);
  CHECK(ref.scales[2] == (700 * tiny) / 127.0f);
  // Row 3 against a double-precision computation (no ties there).
  for (int64_t c = 0; c < cols; ++c) {
    const double want = std::nearbyint(double(r3[c]) / double(r3[0]) * -127.0);
    CHECK_MSG(ref.q[size_t(3 * qs + c)] == int(want), "row 3 col " << c);
  }
  for (int64_t c = 0; c < qs; ++c) CHECK(ref.q[size_t(4 * qs + c)] == 0);
  CHECK(ref.scales[4] == 0.0f);
  for (Isa isa : test::every_isa()) {
    const Quantised got = run(x, n, cols, Exec{isa, nullptr, 1});
    CHECK_MSG(got.q == ref.q, isa_name(isa));
    CHECK_MSG(same_bits(got.scales, ref.scales), isa_name(isa));
  }
}

TEST(act_quant_rejects_bad_input) {
  ThreadPool pool(2);
  const int64_t n = 6, cols = 37;
  std::vector<float> x(size_t(n * cols), 0.25f);
  std::vector<int8_t> q(size_t(n * padded_cols(cols)));
  std::vector<float> s(static_cast<size_t>(n));
  for (Isa isa : test::every_isa()) {
    for (int threads : {1, 2}) {
      const Exec ex{isa, &pool, threads};
      for (float bad :
           {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
            -std::numeric_limits<float>::infinity()}) {
        for (int64_t at : {int64_t(0), int64_t(4 * cols + 36), int64_t(n * cols - 1)}) {
          x[size_t(at)] = bad;
          CHECK_THROWS(quantize_activations(x.data(), n, cols, q.data(), s.data(), ex));
          x[size_t(at)] = 0.25f;
        }
      }
      CHECK_THROWS(quantize_activations(nullptr, n, cols, q.data(), s.data(), ex));
      CHECK_THROWS(quantize_activations(x.data(), n, cols, nullptr, s.data(), ex));
      CHECK_THROWS(quantize_activations(x.data(), n, cols, q.data(), nullptr, ex));
      CHECK_THROWS(quantize_activations(x.data(), 0, cols, q.data(), s.data(), ex));
      CHECK_THROWS(quantize_activations(x.data(), n, 0, q.data(), s.data(), ex));
      CHECK_THROWS(quantize_activations(x.data(), -1, cols, q.data(), s.data(), ex));
      quantize_activations(x.data(), n, cols, q.data(), s.data(), ex);  // still fine
      CHECK(s[0] == 0.25f / 127.0f && q[0] == 127);
    }
  }
  for (Isa isa : {Isa::Avx2, Isa::Avx512, Isa::Neon})
    if (!isa_supported(isa))
      CHECK_THROWS(
          quantize_activations(x.data(), n, cols, q.data(), s.data(), Exec{isa, nullptr, 1}));
}
