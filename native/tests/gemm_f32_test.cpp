// fp32 GEMM: every ISA path against the plain reference, the reference against
// a double-precision product, every layout, alpha/beta, padded strides, edge
// and block-boundary sizes, thread-count independence and bad input.
//
// Tolerance. Two fp32 evaluations of alpha * sum_k a*b + beta*c that differ
// only in rounding (summation order, FMA or not) each lie within
// gamma(k+2) * mag of the exact value, where mag = |alpha| sum_k |a||b| +
// |beta c| and gamma(n) = n u / (1 - n u), u = 2^-24 (the standard bound for a
// dot product). So a path may differ from the reference by at most
// 2 gamma(k+2) mag per element, and the reference from the exact (double)
// product by gamma(k+2) mag. A dropped, duplicated or misplaced term breaks
// this by orders of magnitude; rounding never does.
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

using namespace ternorm;
using ternorm::gemm::GemmArgs;
using ternorm::test::gamma_bound;
using ternorm::test::mentions;
using ternorm::test::Rng;
using ternorm::test::thrown_message;

namespace {

struct Problem {
  bool ta = false, tb = false;
  int64_t m = 1, n = 1, k = 1;
  float alpha = 1.0f, beta = 0.0f;
  int64_t pad = 0;  // extra columns in every leading dimension
  float scale = 1.0f;
  bool zero_a = false;
};

// Stored matrices with padded rows; the padding holds NaN (A, B) or a
// sentinel (C) so a read or write past the width shows up.
struct Operands {
  int64_t lda, ldb, ldc;
  std::vector<float> a, b, c0;
  static constexpr float kSentinel = 12345.0f;
};

Operands make_operands(const Problem& p, Rng& rng) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Operands o;
  const int64_t a_rows = p.ta ? p.k : p.m, a_cols = p.ta ? p.m : p.k;
  const int64_t b_rows = p.tb ? p.n : p.k, b_cols = p.tb ? p.k : p.n;
  o.lda = a_cols + p.pad;
  o.ldb = b_cols + p.pad;
  o.ldc = p.n + p.pad;
  o.a.assign(size_t(a_rows * o.lda), nan);
  o.b.assign(size_t(b_rows * o.ldb), nan);
  o.c0.assign(size_t(p.m * o.ldc), Operands::kSentinel);
  for (int64_t r = 0; r < a_rows; ++r)
    for (int64_t j = 0; j < a_cols; ++j)
      o.a[size_t(r * o.lda + j)] = p.zero_a ? 0.0f : rng.normal() * p.scale;
  for (int64_t r = 0; r < b_rows; ++r)
    for (int64_t j = 0; j < b_cols; ++j) o.b[size_t(r * o.ldb + j)] = rng.normal() * p.scale;
  // beta == 0 must ignore C entirely: give it NaN.
  for (int64_t i = 0; i < p.m; ++i)
    for (int64_t j = 0; j < p.n; ++j)
      o.c0[size_t(i * o.ldc + j)] = p.beta == 0.0f ? nan : rng.normal() * p.scale;
  return o;
}

GemmArgs args_for(const Problem& p, const Operands& o, float* c) {
  GemmArgs g;
  g.trans_a = p.ta;
  g.trans_b = p.tb;
  g.m = p.m;
  g.n = p.n;
  g.k = p.k;
  g.alpha = p.alpha;
  g.beta = p.beta;
  g.a = o.a.data();
  g.lda = o.lda;
  g.b = o.b.data();
  g.ldb = o.ldb;
  g.c = c;
  g.ldc = o.ldc;
  return g;
}

std::string describe(const Problem& p) {
  std::ostringstream os;
  os << "m=" << p.m << " n=" << p.n << " k=" << p.k << " ta=" << p.ta << " tb=" << p.tb
     << " alpha=" << p.alpha << " beta=" << p.beta << " pad=" << p.pad << " scale=" << p.scale;
  return os.str();
}

// Runs one problem on the reference and on every ISA path (threads 1) and
// checks the bounds above; returns the reference result.
void check_problem(const Problem& p, Rng& rng) {
  const Operands o = make_operands(p, rng);
  std::vector<float> ref = o.c0;
  gemm::gemm_f32_ref(args_for(p, o, ref.data()));

  // Exact product and the magnitude the rounding bound scales with.
  const double bound = gamma_bound(p.k + 2);
  std::vector<double> mag(size_t(p.m * p.n));
  for (int64_t i = 0; i < p.m; ++i) {
    for (int64_t j = 0; j < p.n; ++j) {
      double sum = 0, abs_sum = 0;
      for (int64_t q = 0; q < p.k; ++q) {
        const double av = p.ta ? o.a[size_t(q * o.lda + i)] : o.a[size_t(i * o.lda + q)];
        const double bv = p.tb ? o.b[size_t(j * o.ldb + q)] : o.b[size_t(q * o.ldb + j)];
        sum += av * bv;
        abs_sum += std::fabs(av * bv);
      }
      double exact = double(p.alpha) * sum;
      double m_ij = std::fabs(double(p.alpha)) * abs_sum;
      if (p.beta != 0.0f) {
        const double cv = o.c0[size_t(i * o.ldc + j)];
        exact += double(p.beta) * cv;
        m_ij += std::fabs(double(p.beta) * cv);
      }
      mag[size_t(i * p.n + j)] = m_ij;
      const double got = ref[size_t(i * o.ldc + j)];
      CHECK_MSG(std::fabs(got - exact) <= bound * m_ij, "reference vs double "
                                                            << describe(p) << " at " << i << ","
                                                            << j << ": " << got << " vs " << exact);
    }
  }

  for (Isa isa : test::every_isa()) {
    std::vector<float> c = o.c0;
    gemm::gemm_f32(args_for(p, o, c.data()), Exec{isa, nullptr, 1});
    int bad = 0;
    for (int64_t i = 0; i < p.m && bad < 3; ++i) {
      for (int64_t j = 0; j < o.ldc && bad < 3; ++j) {
        const float got = c[size_t(i * o.ldc + j)];
        if (j >= p.n) {  // padding of C is never written
          if (got != Operands::kSentinel) {
            ++bad;
            CHECK_MSG(false, isa_name(isa)
                                 << " wrote C padding " << describe(p) << " at " << i << "," << j);
          }
          continue;
        }
        const float want = ref[size_t(i * o.ldc + j)];
        const double tol = 2.0 * bound * mag[size_t(i * p.n + j)];
        if (!(std::fabs(double(got) - double(want)) <= tol)) {
          ++bad;
          CHECK_MSG(false, isa_name(isa)
                               << " vs reference " << describe(p) << " at " << i << "," << j << ": "
                               << got << " vs " << want << " (tolerance " << tol << ")");
        }
      }
    }
  }
}

const int64_t kOddSizes[] = {1, 3, 7, 15, 17, 31, 33, 65, 127, 129};

}  // namespace

TEST(gemm_f32_odd_sizes_every_layout) {
  Rng rng(101);
  // Square odd sizes in all four layouts, with and without stride padding.
  for (int64_t s : kOddSizes)
    for (int layout = 0; layout < 4; ++layout) {
      Problem p;
      p.ta = layout & 1;
      p.tb = layout & 2;
      p.m = p.n = p.k = s;
      p.pad = s % 2 ? 0 : 5;
      check_problem(p, rng);
    }
  // Mixed rectangular shapes, layouts and alpha/beta cycling through the grid.
  int idx = 0;
  for (int64_t m : kOddSizes)
    for (int64_t n : kOddSizes) {
      Problem p;
      p.ta = idx & 1;
      p.tb = (idx >> 1) & 1;
      p.m = m;
      p.n = n;
      p.k = kOddSizes[(idx * 7) % 10];
      p.alpha = (idx % 3 == 0) ? 1.0f : -0.75f;
      p.beta = (idx % 5 == 0) ? 0.0f : (idx % 5 == 1 ? 1.0f : 0.5f);
      p.pad = idx % 3;
      check_problem(p, rng);
      ++idx;
    }
}

TEST(gemm_f32_large_and_block_boundaries) {
  Rng rng(202);
  for (int layout = 0; layout < 4; ++layout) {
    Problem p;
    p.ta = layout & 1;
    p.tb = layout & 2;
    p.m = 300;
    p.n = 257;
    p.k = 190;
    p.alpha = 1.5f;
    p.beta = 0.5f;
    p.pad = 3;
    check_problem(p, rng);
  }
  // Several k-blocks (kc = 256), several m-blocks per thread (mc <= 336) and
  // several n-blocks (nc <= 4096), so later blocks accumulate onto C.
  const Problem deep{false, true, 37, 45, 777, 1.0f, 0.0f, 1, 1.0f, false};
  check_problem(deep, rng);
  const Problem tall{true, false, 701, 40, 300, -1.0f, 2.0f, 0, 1.0f, false};
  check_problem(tall, rng);
  const Problem wide{false, false, 5, 4200, 20, 0.25f, 0.0f, 2, 1.0f, false};
  check_problem(wide, rng);
}

TEST(gemm_f32_alpha_beta_zeros_extremes) {
  Rng rng(303);
  for (float alpha : {1.0f, -2.0f, 0.0f})
    for (float beta : {0.0f, 1.0f, -0.5f}) {
      Problem p;
      p.m = 33;
      p.n = 35;
      p.k = 29;
      p.alpha = alpha;
      p.beta = beta;
      p.ta = beta < 0;
      p.tb = alpha < 0;
      check_problem(p, rng);
    }
  // Zero A: C = beta * C exactly (and 0 for beta == 0, NaN in C ignored).
  for (float beta : {0.0f, 0.5f}) {
    Problem p;
    p.m = 19;
    p.n = 50;
    p.k = 23;
    p.beta = beta;
    p.zero_a = true;
    check_problem(p, rng);
    const Operands o = make_operands(p, rng);
    for (Isa isa : test::every_isa()) {
      std::vector<float> c = o.c0;
      gemm::gemm_f32(args_for(p, o, c.data()), Exec{isa, nullptr, 1});
      for (int64_t i = 0; i < p.m; ++i)
        for (int64_t j = 0; j < p.n; ++j)
          CHECK_MSG(c[size_t(i * o.ldc + j)] == beta * o.c0[size_t(i * o.ldc + j)] ||
                        (beta == 0.0f && c[size_t(i * o.ldc + j)] == 0.0f),
                    isa_name(isa) << " zero A, beta " << beta << " at " << i << "," << j);
    }
  }
  // Large magnitudes (products near 1e32) and tiny ones stay within the bound.
  for (float scale : {1e15f, 1e-8f}) {
    Problem p;
    p.m = 31;
    p.n = 65;
    p.k = 130;
    p.beta = 1.0f;
    p.ta = true;
    p.scale = scale;
    check_problem(p, rng);
  }
}

TEST(gemm_f32_small_m_direct_path) {
  // m <= 8 with a transposed B runs the dot kernels (k tails of every vector
  // width, A rows in pairs and alone, B rows in fours and the rest); m <= 8
  // with a row-major B and m = 9 stay on the packed path.
  Rng rng(505);
  const int64_t ns[] = {1, 5, 16, 32, 37, 64, 100};
  const int64_t ks[] = {1, 3, 4, 7, 8, 15, 16, 17, 33, 100, 1000};
  int idx = 0;
  for (int64_t m = 1; m <= 9; ++m)
    for (int64_t n : ns)
      for (int layout = 0; layout < 4; ++layout) {
        Problem p;
        p.ta = layout & 1;
        p.tb = layout & 2;
        p.m = m;
        p.n = n;
        p.k = ks[idx % 11];
        p.alpha = idx % 3 == 0 ? 1.0f : 0.5f;
        p.beta = idx % 4 == 0 ? 0.0f : (idx % 4 == 1 ? 1.0f : -2.0f);
        p.pad = idx % 2 ? 3 : 0;
        check_problem(p, rng);
        ++idx;
      }
}

TEST(gemm_f32_threads_bit_identical) {
  ThreadPool pool(3);
  Rng rng(404);
  const Problem shapes[] = {
      {false, true, 97, 83, 300, 1.0f, 0.0f, 0, 1.0f, false},
      {true, false, 700, 33, 40, 0.5f, 1.0f, 2, 1.0f, false},
      {false, false, 5, 70, 17, 1.0f, 0.25f, 0, 1.0f, false},
      {false, true, 3, 301, 77, 1.0f, 0.0f, 1, 1.0f, false},
      {true, true, 8, 45, 130, 2.0f, 1.0f, 0, 1.0f, false},
      {true, false, 1, 1000, 33, 1.0f, 0.0f, 0, 1.0f, false},
  };
  for (const Problem& p : shapes) {
    const Operands o = make_operands(p, rng);
    for (Isa isa : test::every_isa()) {
      std::vector<float> c1 = o.c0;
      gemm::gemm_f32(args_for(p, o, c1.data()), Exec{isa, &pool, 1});
      for (int t : {2, 3}) {
        std::vector<float> ct = o.c0;
        gemm::gemm_f32(args_for(p, o, ct.data()), Exec{isa, &pool, t});
        CHECK_MSG(std::memcmp(c1.data(), ct.data(), c1.size() * sizeof(float)) == 0,
                  isa_name(isa) << " threads " << t << " differ from 1 thread, " << describe(p));
      }
    }
  }
}

// The packing scratch is kept per calling thread and reused: a call made after larger calls of
// other shapes (scratch holding their panels, NaN among them) gets the bits of its first run.
TEST(gemm_f32_scratch_reuse_same_bits) {
  ThreadPool pool(2);
  Rng rng(606);
  const Problem small{false, true, 37, 29, 45, 1.0f, 0.0f, 0, 1.0f, false};
  const Problem large[] = {
      {true, false, 20, 2100, 520, 1.0f, 0.0f, 0, 1.0f, false},
      {false, false, 400, 40, 600, 1.0f, 0.0f, 3, 1.0f, true},
  };
  const Operands so = make_operands(small, rng);
  for (Isa isa : test::every_isa())
    for (int t : {1, 2}) {
      const Exec ex{isa, &pool, t};
      std::vector<float> first = so.c0;
      gemm::gemm_f32(args_for(small, so, first.data()), ex);
      for (const Problem& p : large) {
        Operands o = make_operands(p, rng);
        o.a[0] = std::numeric_limits<float>::quiet_NaN();  // stale NaN left in the A scratch
        std::vector<float> c = o.c0;
        gemm::gemm_f32(args_for(p, o, c.data()), ex);
        std::vector<float> again = so.c0;
        gemm::gemm_f32(args_for(small, so, again.data()), ex);
        CHECK_MSG(std::memcmp(first.data(), again.data(), first.size() * sizeof(float)) == 0,
                  isa_name(isa) << " threads " << t << ": a call after " << describe(p)
                                << " differs from its first run");
      }
    }
}

TEST(gemm_f32_bad_input) {
  std::vector<float> a(64, 1.0f), b(64, 1.0f), c(64, 0.0f);
  auto good = [&] {
    GemmArgs g;
    g.m = 4;
    g.n = 5;
    g.k = 6;
    g.a = a.data();
    g.lda = 6;
    g.b = b.data();
    g.ldb = 5;
    g.c = c.data();
    g.ldc = 5;
    return g;
  };
  const Exec ex{Isa::Scalar, nullptr, 1};
  gemm::gemm_f32(good(), ex);  // the baseline call is valid
  CHECK(c[0] == 6.0f);
  auto expect = [&](GemmArgs g, const char* needle) {
    CHECK_THROWS(gemm::gemm_f32(g, ex));
    const std::string msg = thrown_message<std::invalid_argument>([&] { gemm::gemm_f32(g, ex); });
    CHECK_MSG(msg.find(needle) != std::string::npos,
              "message '" << msg << "' should mention '" << needle << "'");
  };
  GemmArgs g = good();
  g.m = 0;
  expect(g, "must be positive");
  g = good();
  g.k = -3;
  expect(g, "must be positive");
  g = good();
  g.n = 0;
  expect(g, "must be positive");
  g = good();
  g.a = nullptr;
  expect(g, "a is null");
  g = good();
  g.b = nullptr;
  expect(g, "b is null");
  g = good();
  g.c = nullptr;
  expect(g, "c is null");
  g = good();
  g.lda = 5;
  expect(g, "lda = 5 is smaller");
  g = good();
  g.trans_a = true;  // A stored k x m: lda must be >= m = 4
  g.lda = 3;
  expect(g, "lda = 3");
  g = good();
  g.ldb = 4;
  expect(g, "ldb = 4");
  g = good();
  g.trans_b = true;  // B stored n x k: ldb must be >= k = 6
  g.ldb = 5;
  expect(g, "ldb = 5");
  g = good();
  g.ldc = 4;
  expect(g, "ldc = 4");
  g = good();
  g.lda = int64_t(1) << 62;
  expect(g, "too large");
  // A path this CPU or build cannot run.
  for (Isa isa : {Isa::Avx2, Isa::Avx512, Isa::Neon}) {
    if (isa_supported(isa)) continue;
    const std::string msg = thrown_message<std::invalid_argument>([&] {
      gemm::gemm_f32(good(), Exec{isa, nullptr, 1});
    });
    CHECK_MSG(msg.find("not supported") != std::string::npos, isa_name(isa) << ": " << msg);
  }
}
