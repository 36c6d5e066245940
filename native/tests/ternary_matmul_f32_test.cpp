// Ternary fp32 products (matmul_f32, matmul_f32_t): every ISA path against
// the plain reference, the reference against a double-precision product and
// against a dense fp32 GEMM on the unpack2-ed weights, matmul_f32_t as the
// exact adjoint of matmul_f32, thread-count independence and bad input.
//
// Tolerance. Each output is a length-K dot product (K = cols for matmul_f32,
// rows for matmul_f32_t) whose terms trit * scale * v differ between paths
// only in rounding (the paths multiply v by trit*scale, exact in fp32, and sum
// in blocks with FMAs; the reference sums trit*v and scales at the end). Each
// evaluation is within gamma(K+2) * mag of the exact value, mag = sum |trit
// scale v| and gamma(n) = n u / (1 - n u), u = 2^-24, so two paths differ by
// at most 2 gamma(K+2) mag. The adjoint identity <y, dy> = <x, dx> then holds
// within (gamma(cols+2) + gamma(rows+2)) * sum |dy scale trit x|.
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/thread_pool.h"
#include "gemm/gemm.h"
#include "gemm/gemm_kernels.h"
#include "harness.h"
#include "ternary/matmul_f32_kernels.h"
#include "ternary/ternary.h"

using namespace ternorm;
using ternorm::test::gamma_bound;
using ternorm::test::mentions;
using ternorm::test::Rng;
using ternorm::test::thrown_message;

namespace {

struct Weights {
  int64_t rows = 0, cols = 0;
  std::vector<int8_t> trits;  // rows x cols
  std::vector<uint8_t> packed;
  std::vector<float> scales;
  ternary::PackedTernary view() const {
    ternary::PackedTernary w;
    w.data = packed.data();
    w.scales = scales.data();
    w.rows = rows;
    w.cols = cols;
    return w;
  }
};

// Random trits (about a third zero), per-row scales with some zero rows, or
// one per-tensor scale.
Weights make_weights(int64_t rows, int64_t cols, Rng& rng, bool per_tensor = false,
                     float scale_mag = 1.0f) {
  Weights w;
  w.rows = rows;
  w.cols = cols;
  w.trits.resize(size_t(rows * cols));
  for (auto& t : w.trits) t = int8_t(rng.below(3) - 1);
  w.packed.resize(size_t(ternary::packed2_bytes(rows, cols)));
  ternary::pack2(w.trits.data(), rows, cols, w.packed.data());
  w.scales.resize(size_t(rows));
  const float tensor_scale = rng.uniform(0.01f, 0.1f) * scale_mag;
  for (int64_t r = 0; r < rows; ++r)
    w.scales[size_t(r)] = per_tensor     ? tensor_scale
                          : (r % 7 == 3) ? 0.0f
                                         : rng.uniform(0.01f, 0.1f) * scale_mag;
  return w;
}

std::vector<float> random_vec(int64_t count, Rng& rng, float mag = 1.0f) {
  std::vector<float> v(static_cast<size_t>(count));
  for (auto& x : v) x = rng.normal() * mag;
  return v;
}

// y (n x rows) = x (n x cols) W^T in double, and the magnitudes sum |s t x|.
void exact_forward(const Weights& w, const std::vector<float>& x, int64_t n,
                   std::vector<double>& exact, std::vector<double>& mag) {
  exact.assign(size_t(n * w.rows), 0.0);
  mag.assign(size_t(n * w.rows), 0.0);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < w.rows; ++r) {
      double s = 0, a = 0;
      for (int64_t c = 0; c < w.cols; ++c) {
        const double term = double(w.scales[size_t(r)]) * w.trits[size_t(r * w.cols + c)] *
                            x[size_t(t * w.cols + c)];
        s += term;
        a += std::fabs(term);
      }
      exact[size_t(t * w.rows + r)] = s;
      mag[size_t(t * w.rows + r)] = a;
    }
}

// dx (n x cols) = dy (n x rows) W in double, and the magnitudes.
void exact_backward(const Weights& w, const std::vector<float>& dy, int64_t n,
                    std::vector<double>& exact, std::vector<double>& mag) {
  exact.assign(size_t(n * w.cols), 0.0);
  mag.assign(size_t(n * w.cols), 0.0);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < w.rows; ++r) {
      const double g = double(w.scales[size_t(r)]) * dy[size_t(t * w.rows + r)];
      for (int64_t c = 0; c < w.cols; ++c) {
        const double term = g * w.trits[size_t(r * w.cols + c)];
        exact[size_t(t * w.cols + c)] += term;
        mag[size_t(t * w.cols + c)] += std::fabs(term);
      }
    }
}

std::string shape(const Weights& w, int64_t n) {
  std::ostringstream os;
  os << "rows=" << w.rows << " cols=" << w.cols << " n=" << n;
  return os.str();
}

// Checks |got - want| <= factor * gamma(K+2) * mag elementwise; reports the first few misses.
void check_close(const char* what, const std::string& where, const float* got, const double* want,
                 const std::vector<double>& mag, int64_t K, double factor) {
  const double bound = factor * gamma_bound(K + 2);
  int bad = 0;
  for (size_t i = 0; i < mag.size() && bad < 3; ++i) {
    const double tol = bound * mag[i];
    if (!(std::fabs(double(got[i]) - want[i]) <= tol)) {
      ++bad;
      CHECK_MSG(false, what << " " << where << " at " << i << ": " << got[i] << " vs " << want[i]
                            << " (tolerance " << tol << ")");
    }
  }
}

// The whole comparison for one shape: reference vs double, every path vs
// reference, both products.
void check_shape(const Weights& w, int64_t n, Rng& rng, float act_mag = 1.0f) {
  const ternary::PackedTernary pw = w.view();
  const std::string where = shape(w, n);
  const std::vector<float> x = random_vec(n * w.cols, rng, act_mag);
  const std::vector<float> dy = random_vec(n * w.rows, rng, act_mag);
  std::vector<double> exact, mag;

  // Forward.
  exact_forward(w, x, n, exact, mag);
  std::vector<float> y_ref(size_t(n * w.rows));
  ternary::detail::matmul_f32_ref(pw, x.data(), n, y_ref.data());
  check_close("matmul_f32_ref vs double", where, y_ref.data(), exact.data(), mag, w.cols, 1.0);
  std::vector<double> y_ref_d(y_ref.begin(), y_ref.end());
  for (Isa isa : test::every_isa()) {
    std::vector<float> y(size_t(n * w.rows), std::numeric_limits<float>::quiet_NaN());
    ternary::matmul_f32(pw, x.data(), n, y.data(), Exec{isa, nullptr, 1});
    check_close((std::string("matmul_f32 ") + isa_name(isa) + " vs reference").c_str(), where,
                y.data(), y_ref_d.data(), mag, w.cols, 2.0);
  }

  // Backward (transpose product).
  exact_backward(w, dy, n, exact, mag);
  std::vector<float> dx_ref(size_t(n * w.cols));
  ternary::detail::matmul_f32_t_ref(pw, dy.data(), n, dx_ref.data());
  check_close("matmul_f32_t_ref vs double", where, dx_ref.data(), exact.data(), mag, w.rows, 1.0);
  std::vector<double> dx_ref_d(dx_ref.begin(), dx_ref.end());
  for (Isa isa : test::every_isa()) {
    std::vector<float> dx(size_t(n * w.cols), std::numeric_limits<float>::quiet_NaN());
    ternary::matmul_f32_t(pw, dy.data(), n, dx.data(), Exec{isa, nullptr, 1});
    check_close((std::string("matmul_f32_t ") + isa_name(isa) + " vs reference").c_str(), where,
                dx.data(), dx_ref_d.data(), mag, w.rows, 2.0);
  }
}

const int64_t kDims[] = {1, 3, 15, 16, 17, 31, 33, 47, 65, 129};

}  // namespace

TEST(ternary_matmul_f32_odd_shapes) {
  Rng rng(11);
  int idx = 0;
  for (int64_t rows : kDims)
    for (int64_t cols : kDims) {
      const int64_t n = kDims[(idx * 3) % 10] % 40;  // 1 .. 33 tokens
      const Weights w = make_weights(rows, cols, rng, idx % 4 == 0);
      check_shape(w, n, rng);
      ++idx;
    }
}

TEST(ternary_matmul_f32_large_and_block_boundaries) {
  Rng rng(12);
  check_shape(make_weights(257, 300, rng), 190, rng);
  // cols spanning several k-blocks (kc 256/512), not a multiple of 16.
  check_shape(make_weights(40, 1100, rng), 9, rng);
  // rows spanning several n-blocks (nc 2048) for matmul_f32, and several
  // k-blocks for matmul_f32_t.
  check_shape(make_weights(2100, 20, rng), 3, rng);
  // cols spanning several n-blocks for matmul_f32_t.
  check_shape(make_weights(18, 2090, rng), 5, rng);
  // GEMV.
  check_shape(make_weights(300, 257, rng), 1, rng);
}

TEST(ternary_matmul_f32_zeros_and_extremes) {
  Rng rng(13);
  // All-zero trits: outputs exactly 0 on every path.
  Weights z = make_weights(33, 47, rng);
  std::fill(z.trits.begin(), z.trits.end(), int8_t(0));
  ternary::pack2(z.trits.data(), z.rows, z.cols, z.packed.data());
  const std::vector<float> x = random_vec(5 * z.cols, rng), dy = random_vec(5 * z.rows, rng);
  for (Isa isa : test::every_isa()) {
    std::vector<float> y(size_t(5 * z.rows), 1.0f), dx(size_t(5 * z.cols), 1.0f);
    ternary::matmul_f32(z.view(), x.data(), 5, y.data(), Exec{isa, nullptr, 1});
    ternary::matmul_f32_t(z.view(), dy.data(), 5, dx.data(), Exec{isa, nullptr, 1});
    for (float v : y) CHECK_MSG(v == 0.0f, isa_name(isa) << " zero weights gave y " << v);
    for (float v : dx) CHECK_MSG(v == 0.0f, isa_name(isa) << " zero weights gave dx " << v);
  }
  // Zero activations.
  check_shape(make_weights(31, 33, rng), 4, rng, 0.0f);
  // Large and tiny magnitudes stay within the bound.
  check_shape(make_weights(45, 70, rng, false, 1e10f), 6, rng, 1e12f);
  check_shape(make_weights(45, 70, rng, true, 1e-6f), 6, rng, 1e-10f);
}

TEST(ternary_matmul_f32_matches_dense_gemm) {
  // The same products through the dense fp32 GEMM reference on the weights
  // unpack2 gives back, W[r][c] = trit * scale.
  Rng rng(14);
  for (int64_t n : {1, 13}) {
    const Weights w = make_weights(67, 83, rng);
    std::vector<int8_t> trits(size_t(w.rows * w.cols));
    ternary::unpack2(w.packed.data(), w.rows, w.cols, trits.data());
    std::vector<float> dense(size_t(w.rows * w.cols));
    for (int64_t r = 0; r < w.rows; ++r)
      for (int64_t c = 0; c < w.cols; ++c)
        dense[size_t(r * w.cols + c)] = float(trits[size_t(r * w.cols + c)]) * w.scales[size_t(r)];
    const std::vector<float> x = random_vec(n * w.cols, rng), dy = random_vec(n * w.rows, rng);
    std::vector<double> exact, mag;

    std::vector<float> y_dense(size_t(n * w.rows));
    gemm::GemmArgs g;
    g.trans_b = true;  // y = x W^T
    g.m = n;
    g.n = w.rows;
    g.k = w.cols;
    g.a = x.data();
    g.lda = w.cols;
    g.b = dense.data();
    g.ldb = w.cols;
    g.c = y_dense.data();
    g.ldc = w.rows;
    gemm::gemm_f32_ref(g);
    exact_forward(w, x, n, exact, mag);
    std::vector<double> want(y_dense.begin(), y_dense.end());

    std::vector<float> dx_dense(size_t(n * w.cols));
    gemm::GemmArgs gt;  // dx = dy W
    gt.m = n;
    gt.n = w.cols;
    gt.k = w.rows;
    gt.a = dy.data();
    gt.lda = w.rows;
    gt.b = dense.data();
    gt.ldb = w.cols;
    gt.c = dx_dense.data();
    gt.ldc = w.cols;
    gemm::gemm_f32_ref(gt);
    std::vector<double> exact_t, mag_t;
    exact_backward(w, dy, n, exact_t, mag_t);
    std::vector<double> want_t(dx_dense.begin(), dx_dense.end());

    for (Isa isa : test::every_isa()) {
      std::vector<float> y(size_t(n * w.rows)), dx(size_t(n * w.cols));
      ternary::matmul_f32(w.view(), x.data(), n, y.data(), Exec{isa, nullptr, 1});
      ternary::matmul_f32_t(w.view(), dy.data(), n, dx.data(), Exec{isa, nullptr, 1});
      check_close((std::string("matmul_f32 ") + isa_name(isa) + " vs dense").c_str(), shape(w, n),
                  y.data(), want.data(), mag, w.cols, 2.0);
      check_close((std::string("matmul_f32_t ") + isa_name(isa) + " vs dense").c_str(), shape(w, n),
                  dx.data(), want_t.data(), mag_t, w.rows, 2.0);
    }
  }
}

TEST(ternary_matmul_f32_t_is_the_adjoint) {
  // <matmul_f32(x), dy> == <x, matmul_f32_t(dy)> for every path.
  Rng rng(15);
  const struct {
    int64_t rows, cols, n;
  } shapes[] = {{1, 1, 1}, {17, 33, 5}, {130, 75, 12}, {64, 600, 3}};
  for (const auto& s : shapes) {
    const Weights w = make_weights(s.rows, s.cols, rng);
    const std::vector<float> x = random_vec(s.n * s.cols, rng), dy = random_vec(s.n * s.rows, rng);
    double total = 0;  // sum |dy scale trit x|
    for (int64_t t = 0; t < s.n; ++t)
      for (int64_t r = 0; r < s.rows; ++r)
        for (int64_t c = 0; c < s.cols; ++c)
          total += std::fabs(double(dy[size_t(t * s.rows + r)]) * w.scales[size_t(r)] *
                             w.trits[size_t(r * s.cols + c)] * x[size_t(t * s.cols + c)]);
    const double tol = (gamma_bound(s.cols + 2) + gamma_bound(s.rows + 2)) * total;
    for (Isa isa : test::every_isa()) {
      std::vector<float> y(size_t(s.n * s.rows)), dx(size_t(s.n * s.cols));
      ternary::matmul_f32(w.view(), x.data(), s.n, y.data(), Exec{isa, nullptr, 1});
      ternary::matmul_f32_t(w.view(), dy.data(), s.n, dx.data(), Exec{isa, nullptr, 1});
      double lhs = 0, rhs = 0;
      for (size_t i = 0; i < y.size(); ++i) lhs += double(y[i]) * dy[i];
      for (size_t i = 0; i < dx.size(); ++i) rhs += double(x[i]) * dx[i];
      CHECK_MSG(std::fabs(lhs - rhs) <= tol,
                isa_name(isa) << " rows=" << s.rows << " cols=" << s.cols << " n=" << s.n
                              << ": <y,dy>=" << lhs << " <x,dx>=" << rhs << " tolerance " << tol);
    }
  }
}

TEST(ternary_matmul_f32_threads_bit_identical) {
  ThreadPool pool(3);
  Rng rng(16);
  const struct { int64_t rows, cols, n; } shapes[] = {{100, 90, 41}, {33, 700, 20}, {2100, 20, 3}};
  for (const auto& s : shapes) {
    const Weights w = make_weights(s.rows, s.cols, rng);
    const std::vector<float> x = random_vec(s.n * s.cols, rng), dy = random_vec(s.n * s.rows, rng);
    for (Isa isa : test::every_isa()) {
      std::vector<float> y1(size_t(s.n * s.rows)), dx1(size_t(s.n * s.cols));
      ternary::matmul_f32(w.view(), x.data(), s.n, y1.data(), Exec{isa, &pool, 1});
      ternary::matmul_f32_t(w.view(), dy.data(), s.n, dx1.data(), Exec{isa, &pool, 1});
      for (int t : {2, 3}) {
        std::vector<float> y(y1.size()), dx(dx1.size());
        ternary::matmul_f32(w.view(), x.data(), s.n, y.data(), Exec{isa, &pool, t});
        ternary::matmul_f32_t(w.view(), dy.data(), s.n, dx.data(), Exec{isa, &pool, t});
        CHECK_MSG(std::memcmp(y.data(), y1.data(), y.size() * sizeof(float)) == 0,
                  isa_name(isa) << " matmul_f32 threads " << t << " differ, rows=" << s.rows);
        CHECK_MSG(std::memcmp(dx.data(), dx1.data(), dx.size() * sizeof(float)) == 0,
                  isa_name(isa) << " matmul_f32_t threads " << t << " differ, rows=" << s.rows);
      }
    }
  }
}

TEST(ternary_matmul_f32_bad_input) {
  Rng rng(17);
  const Weights w = make_weights(20, 24, rng);
  std::vector<float> x(size_t(3 * 24), 1.0f), y(size_t(3 * 20)), dx(size_t(3 * 24));
  const Exec ex{Isa::Scalar, nullptr, 1};
  ternary::matmul_f32(w.view(), x.data(), 3, y.data(), ex);  // the baseline call is valid
  auto expect = [&](const ternary::PackedTernary& pw, const float* in, int64_t n, float* out,
                    const char* needle) {
    CHECK_THROWS(ternary::matmul_f32(pw, in, n, out, ex));
    CHECK_THROWS(ternary::matmul_f32_t(pw, in, n, out, ex));
    for (int which = 0; which < 2; ++which) {
      const std::string msg = thrown_message<std::invalid_argument>([&] {
        if (which == 0)
          ternary::matmul_f32(pw, in, n, out, ex);
        else
          ternary::matmul_f32_t(pw, in, n, out, ex);
      });
      CHECK_MSG(msg.find(needle) != std::string::npos,
                "message '" << msg << "' should mention '" << needle << "'");
    }
  };
  ternary::PackedTernary pw = w.view();
  pw.data = nullptr;
  expect(pw, x.data(), 3, dx.data(), "null pointer");
  pw = w.view();
  pw.scales = nullptr;
  expect(pw, x.data(), 3, dx.data(), "null pointer");
  expect(w.view(), nullptr, 3, dx.data(), "null pointer");
  expect(w.view(), x.data(), 3, nullptr, "null pointer");
  expect(w.view(), x.data(), 0, dx.data(), "n > 0");
  expect(w.view(), x.data(), -1, dx.data(), "n > 0");
  pw = w.view();
  pw.rows = 0;
  expect(pw, x.data(), 3, dx.data(), "rows, cols and n > 0");
  pw = w.view();
  pw.cols = -4;
  expect(pw, x.data(), 3, dx.data(), "rows, cols and n > 0");
  pw = w.view();
  pw.rows = (int64_t(1) << 31) + 1;
  expect(pw, x.data(), 3, dx.data(), "<= 2^31");
  std::vector<float> bad_scales = w.scales;
  bad_scales[5] = std::numeric_limits<float>::infinity();
  pw = w.view();
  pw.scales = bad_scales.data();
  expect(pw, x.data(), 3, dx.data(), "w.scales[5] is not finite");
  bad_scales[5] = std::numeric_limits<float>::quiet_NaN();
  expect(pw, x.data(), 3, dx.data(), "w.scales[5] is not finite");
  for (Isa isa : {Isa::Avx2, Isa::Avx512, Isa::Neon}) {
    if (isa_supported(isa)) continue;
    const std::string msg = thrown_message<std::invalid_argument>([&] {
      ternary::matmul_f32(w.view(), x.data(), 3, y.data(), Exec{isa, nullptr, 1});
    });
    CHECK_MSG(msg.find("not supported") != std::string::npos, isa_name(isa) << ": " << msg);
  }
}
