// gemm_i8: the scalar reference against a naive double-precision dot product
// of trits and q, and every ISA path (and thread count) bit-identical to it.
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

struct Case {
  int64_t rows, cols, n;
  std::vector<int8_t> trits;  // rows x cols
  std::vector<uint8_t> packed;
  std::vector<float> w_scales;  // rows
  std::vector<int8_t> q;        // n x padded_cols(cols)
  std::vector<float> x_scales;  // n
  PackedTernary w() const { return PackedTernary{packed.data(), w_scales.data(), rows, cols}; }
};

// Random trits (with an all-zero row 0 when rows > 1) and activations from
// quantize_activations (with an all-zero token 0 when n > 1), or, with
// raw_q, uniform q in [-128, 127] (the full int8 range the kernels accept).
Case make_case(Rng& rng, int64_t rows, int64_t cols, int64_t n, bool raw_q = false) {
  Case k{rows, cols, n, {}, {}, {}, {}, {}};
  k.trits.resize(size_t(rows * cols));
  for (auto& t : k.trits) t = int8_t(rng.below(3) - 1);
  if (rows > 1)
    for (int64_t c = 0; c < cols; ++c) k.trits[size_t(c)] = 0;
  k.packed.resize(size_t(packed2_bytes(rows, cols)));
  pack2(k.trits.data(), rows, cols, k.packed.data());
  k.w_scales.resize(size_t(rows));
  for (auto& s : k.w_scales) s = rng.uniform(0.001f, 0.1f);
  k.q.assign(size_t(n * padded_cols(cols)), 0);
  k.x_scales.resize(size_t(n));
  if (raw_q) {
    for (int64_t t = 0; t < n; ++t)
      for (int64_t c = 0; c < cols; ++c)
        k.q[size_t(t * padded_cols(cols) + c)] = int8_t(rng.below(256) - 128);
    for (auto& s : k.x_scales) s = rng.uniform(0.0f, 0.05f);
  } else {
    std::vector<float> x(size_t(n * cols));
    for (auto& v : x) v = rng.normal();
    if (n > 1)
      for (int64_t c = 0; c < cols; ++c) x[size_t(c)] = 0.0f;
    quantize_activations(x.data(), n, cols, k.q.data(), k.x_scales.data(), Exec{});
  }
  return k;
}

std::vector<float> run(const Case& k, const Exec& ex) {
  std::vector<float> y(size_t(k.n * k.rows), std::numeric_limits<float>::quiet_NaN());
  gemm_i8(k.w(), k.q.data(), k.x_scales.data(), k.n, y.data(), ex);
  return y;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

// Naive: the dot product of the original trits and q in double (exact for
// these sizes), then the header's epilogue.
void check_naive(const Case& k, const std::vector<float>& y) {
  const int64_t qs = padded_cols(k.cols);
  bool ok = true;
  for (int64_t t = 0; t < k.n; ++t)
    for (int64_t r = 0; r < k.rows; ++r) {
      double dot = 0;
      for (int64_t c = 0; c < k.cols; ++c)
        dot += double(k.trits[size_t(r * k.cols + c)]) * double(k.q[size_t(t * qs + c)]);
      const float want = (float(dot) * k.x_scales[size_t(t)]) * k.w_scales[size_t(r)];
      ok = ok && std::memcmp(&want, &y[size_t(t * k.rows + r)], 4) == 0;
    }
  CHECK_MSG(ok, "reference vs naive, rows=" << k.rows << " cols=" << k.cols << " n=" << k.n);
}

void check_all_paths(const Case& k, ThreadPool& pool) {
  const std::vector<float> ref = run(k, Exec{Isa::Scalar, nullptr, 1});
  check_naive(k, ref);
  for (Isa isa : test::every_isa())
    for (int threads : {1, 2, 3}) {
      const std::vector<float> y = run(k, Exec{isa, &pool, threads});
      CHECK_MSG(same_bits(y, ref), isa_name(isa) << " threads=" << threads << " rows=" << k.rows
                                                 << " cols=" << k.cols << " n=" << k.n);
    }
}

}  // namespace

TEST(ternary_gemm_i8_odd_shapes_every_isa) {
  Rng rng(31);
  ThreadPool pool(3);
  for (int64_t cols : {1, 3, 15, 16, 17, 63, 65, 255, 257})
    for (int64_t rows : {1, 5, 16, 17, 33})
      for (int64_t n : {1, 2, 7, 8, 9, 130})
        check_all_paths(make_case(rng, rows, cols, n, (rows + cols + n) % 2 == 0), pool);
}

TEST(ternary_gemm_i8_larger_shapes_every_isa) {
  Rng rng(32);
  ThreadPool pool(3);
  // Enough panels that 2 and 3 threads really split the rows (grain 64 rows).
  check_all_paths(make_case(rng, 300, 1000, 1), pool);
  check_all_paths(make_case(rng, 300, 1000, 19), pool);
  check_all_paths(make_case(rng, 520, 2049, 5, true), pool);
  check_all_paths(make_case(rng, 1024, 256, 130), pool);
  // Long rows: q is split into token blocks of ~256 KB (56 to 62 tokens here
  // depending on the path), with tails in the last block.
  check_all_paths(make_case(rng, 40, 4100, 130), pool);
}

TEST(ternary_gemm_i8_extreme_sums) {
  // All trits equal and q at the int8 extremes: the largest sums the int16
  // stages of the AVX2 / NEON paths must hold, over many column blocks.
  ThreadPool pool(2);
  Rng rng(33);
  for (int8_t trit : {int8_t(1), int8_t(-1)})
    for (int8_t qv : {int8_t(127), int8_t(-127), int8_t(-128)})
      for (int64_t cols : {16, 129, 4099}) {
        Case k = make_case(rng, 35, cols, 9);
        for (auto& t : k.trits) t = trit;
        pack2(k.trits.data(), k.rows, k.cols, k.packed.data());
        for (int64_t t = 0; t < k.n; ++t)
          for (int64_t c = 0; c < cols; ++c) k.q[size_t(t * padded_cols(cols) + c)] = qv;
        const std::vector<float> ref = run(k, Exec{Isa::Scalar, nullptr, 1});
        check_naive(k, ref);
        // Spot check the exact integer: y = (cols * trit * qv * xs) * ws.
        const float want = (float(cols * trit * qv) * k.x_scales[0]) * k.w_scales[0];
        CHECK(ref[0] == want);
        for (Isa isa : test::every_isa())
          CHECK_MSG(same_bits(run(k, Exec{isa, &pool, 2}), ref),
                    isa_name(isa) << " trit=" << int(trit) << " q=" << int(qv) << " cols=" << cols);
      }
}

TEST(ternary_gemm_i8_zero_weights_and_tokens) {
  Rng rng(34);
  Case k = make_case(rng, 20, 40, 3);
  std::fill(k.trits.begin(), k.trits.end(), int8_t(0));
  pack2(k.trits.data(), k.rows, k.cols, k.packed.data());
  for (Isa isa : test::every_isa()) {
    const std::vector<float> y = run(k, Exec{isa, nullptr, 1});
    for (float v : y) CHECK(v == 0.0f);
  }
}

TEST(ternary_gemm_i8_rejects_bad_input) {
  Rng rng(35);
  Case k = make_case(rng, 17, 33, 3);
  std::vector<float> y(size_t(k.n * k.rows));
  const PackedTernary w = k.w();
  for (Isa isa : test::every_isa()) {
    const Exec ex{isa, nullptr, 1};
    CHECK_THROWS(gemm_i8(w, nullptr, k.x_scales.data(), k.n, y.data(), ex));
    CHECK_THROWS(gemm_i8(w, k.q.data(), nullptr, k.n, y.data(), ex));
    CHECK_THROWS(gemm_i8(w, k.q.data(), k.x_scales.data(), k.n, nullptr, ex));
    CHECK_THROWS(gemm_i8(w, k.q.data(), k.x_scales.data(), 0, y.data(), ex));
    PackedTernary bad = w;
    bad.data = nullptr;
    CHECK_THROWS(gemm_i8(bad, k.q.data(), k.x_scales.data(), k.n, y.data(), ex));
    bad = w;
    bad.scales = nullptr;
    CHECK_THROWS(gemm_i8(bad, k.q.data(), k.x_scales.data(), k.n, y.data(), ex));
    bad = w;
    bad.rows = 0;
    CHECK_THROWS(gemm_i8(bad, k.q.data(), k.x_scales.data(), k.n, y.data(), ex));
    bad = w;
    bad.cols = -5;
    CHECK_THROWS(gemm_i8(bad, k.q.data(), k.x_scales.data(), k.n, y.data(), ex));
    bad = w;
    bad.cols = (int64_t(1) << 23) + 1;  // rejected before any data is read
    CHECK_THROWS(gemm_i8(bad, k.q.data(), k.x_scales.data(), k.n, y.data(), ex));
    Case c = k;
    c.x_scales[1] = std::numeric_limits<float>::quiet_NaN();
    CHECK_THROWS(gemm_i8(c.w(), c.q.data(), c.x_scales.data(), c.n, y.data(), ex));
    c = k;
    c.w_scales[16] = std::numeric_limits<float>::infinity();
    CHECK_THROWS(gemm_i8(c.w(), c.q.data(), c.x_scales.data(), c.n, y.data(), ex));
    c = k;
    c.q[size_t(2 * padded_cols(33) + 40)] = 1;  // padding past cols
    CHECK_THROWS(gemm_i8(c.w(), c.q.data(), c.x_scales.data(), c.n, y.data(), ex));
  }
  for (Isa isa : {Isa::Avx2, Isa::Avx512, Isa::Neon})
    if (!isa_supported(isa))
      CHECK_THROWS(gemm_i8(w, k.q.data(), k.x_scales.data(), k.n, y.data(), Exec{isa, nullptr, 1}));
}

TEST(ternary_gemm_i8_gemv_long_rows) {
  // GEMV over more than 2^19 columns: without its periodic fold the AVX-512
  // GEMV's 64 * code * q accumulator would pass 2^31 here (all codes 2, q -128).
  Rng rng(36);
  ThreadPool pool(2);
  const int64_t rows = 64, cols = 600003;
  for (bool extreme : {true, false}) {
    Case k = make_case(rng, rows, cols, 1, true);
    if (extreme) {
      for (auto& t : k.trits) t = 1;
      pack2(k.trits.data(), rows, cols, k.packed.data());
      for (int64_t c = 0; c < cols; ++c) k.q[size_t(c)] = -128;
    }
    const std::vector<float> ref = run(k, Exec{Isa::Scalar, nullptr, 1});
    check_naive(k, ref);
    if (extreme) CHECK(ref[5] == (float(-128 * cols) * k.x_scales[0]) * k.w_scales[5]);
    for (Isa isa : test::every_isa())
      CHECK_MSG(same_bits(run(k, Exec{isa, &pool, 2}), ref), isa_name(isa)
                                                                 << " extreme=" << extreme);
  }
}
