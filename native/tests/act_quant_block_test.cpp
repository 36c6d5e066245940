// Per-block int8 activations (llama.cpp's q8_K) and gemm_i8_block: the
// quantiser against q8_K's convention written out from its definition (signed
// largest-magnitude value, iscale = -127 / max, round to nearest even via the
// 1.5 * 2^23 trick, d = 1 / iscale), the product against a naive per-block
// dot product folded in the header's order, and every ISA path and thread
// count bit-identical to the scalar reference.
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

Quantised quantise(const std::vector<float>& x, int64_t n, int64_t cols, const Exec& ex) {
  Quantised out;
  out.q.assign(size_t(n * padded_cols(cols)), int8_t(0x5A));  // garbage: padding must be written
  out.scales.assign(size_t(n * act_blocks(cols)), -1.0f);
  quantize_activations_block(x.data(), n, cols, out.q.data(), out.scales.data(), ex);
  return out;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

// Round to nearest (even on ties) the way q8_K does: add 1.5 * 2^23 and read
// the low mantissa bits.
int nearest_int(float v) {
  const float s = v + 12582912.0f;
  int32_t i;
  std::memcpy(&i, &s, 4);
  return (i & 0x007fffff) - 0x00400000;
}

// q8_K's block, as its definition reads: q_k = min(127, nearest(iscale * x)),
// d_k = 1 / iscale with iscale = -127 / max. ternorm keeps the sign positive:
// q = -q_k and scale = -d_k when max > 0, else q = q_k and scale = d_k.
void check_q8k(const std::vector<float>& x, int64_t n, int64_t cols, const Quantised& got) {
  const int64_t qs = padded_cols(cols), nb = act_blocks(cols);
  bool ok = true;
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t c0 = b * kActBlock, c1 = std::min(cols, c0 + kActBlock);
      float max = 0, amax = 0;
      for (int64_t c = c0; c < c1; ++c) {
        const float v = x[size_t(t * cols + c)];
        if (std::fabs(v) > amax) amax = std::fabs(v), max = v;
      }
      const float sign = max > 0 ? -1.0f : 1.0f;
      if (amax == 0) {
        ok = ok && got.scales[size_t(t * nb + b)] == 0.0f;
        for (int64_t c = c0; c < c1; ++c) ok = ok && got.q[size_t(t * qs + c)] == 0;
        continue;
      }
      const float iscale = -127.0f / max;
      const float d = 1 / iscale;
      CHECK_MSG(got.scales[size_t(t * nb + b)] == sign * d,
                "scale of token " << t << " block " << b << ": " << got.scales[size_t(t * nb + b)]
                                  << " vs " << sign * d);
      for (int64_t c = c0; c < c1; ++c) {
        const int qk = std::min(127, nearest_int(iscale * x[size_t(t * cols + c)]));
        ok = ok && got.q[size_t(t * qs + c)] == int(sign) * qk;
      }
    }
    for (int64_t c = cols; c < qs; ++c) ok = ok && got.q[size_t(t * qs + c)] == 0;
  }
  CHECK_MSG(ok, "q, n=" << n << " cols=" << cols);
}

struct Case {
  int64_t rows, cols, n;
  std::vector<int8_t> trits;
  std::vector<uint8_t> packed;
  std::vector<float> w_scales;
  Quantised a;
  PackedTernary w() const { return PackedTernary{packed.data(), w_scales.data(), rows, cols}; }
};

Case make_case(Rng& rng, int64_t rows, int64_t cols, int64_t n) {
  Case k{rows, cols, n, {}, {}, {}, {}};
  k.trits.resize(size_t(rows * cols));
  for (auto& t : k.trits) t = int8_t(rng.below(3) - 1);
  k.packed.resize(size_t(packed2_bytes(rows, cols)));
  pack2(k.trits.data(), rows, cols, k.packed.data());
  k.w_scales.resize(size_t(rows));
  for (auto& s : k.w_scales) s = rng.uniform(0.001f, 0.1f);
  std::vector<float> x(size_t(n * cols));
  for (auto& v : x) v = rng.normal() * 2.0f;
  if (n > 1)  // one outlier: its block's scale differs from the rest of the token's
    x[size_t(cols + rng.below(cols))] = 300.0f;
  k.a = quantise(x, n, cols, Exec{});
  return k;
}

std::vector<float> product(const Case& k, const Exec& ex) {
  std::vector<float> y(size_t(k.n * k.rows), std::numeric_limits<float>::quiet_NaN());
  gemm_i8_block(k.w(), k.a.q.data(), k.a.scales.data(), k.n, y.data(), ex);
  return y;
}

// The header's fold: acc = 0; acc += float(dot_b) * (x_scale * w_scale), in
// block order, dot_b in double (exact here).
void check_naive(const Case& k, const std::vector<float>& y) {
  const int64_t qs = padded_cols(k.cols), nb = act_blocks(k.cols);
  bool ok = true;
  for (int64_t t = 0; t < k.n; ++t)
    for (int64_t r = 0; r < k.rows; ++r) {
      float acc = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        double dot = 0;
        for (int64_t c = b * kActBlock; c < std::min(k.cols, (b + 1) * kActBlock); ++c)
          dot += double(k.trits[size_t(r * k.cols + c)]) * double(k.a.q[size_t(t * qs + c)]);
        acc = acc + float(dot) * (k.a.scales[size_t(t * nb + b)] * k.w_scales[size_t(r)]);
      }
      ok = ok && std::memcmp(&acc, &y[size_t(t * k.rows + r)], 4) == 0;
    }
  CHECK_MSG(ok, "naive, rows=" << k.rows << " cols=" << k.cols << " n=" << k.n);
}

}  // namespace

TEST(act_quant_block_matches_q8k_on_every_isa) {
  Rng rng(91);
  ThreadPool pool(3);
  for (int64_t cols : {1, 17, 255, 256, 257, 512, 768, 1000, 1040}) {
    for (int64_t n : {1, 2, 5, 33}) {
      std::vector<float> x(size_t(n * cols));
      for (auto& v : x) v = rng.normal() * 3.0f;
      for (int64_t c = 0; c < std::min<int64_t>(cols, kActBlock); ++c)
        x[size_t(c)] = 0.0f;                                 // an all-zero first block
      if (n > 1) x[size_t(cols + rng.below(cols))] = -5e3f;  // a negative outlier
      if (n > 2) x[size_t(2 * cols + rng.below(cols))] = 5e3f;
      const Quantised ref = quantise(x, n, cols, Exec{Isa::Scalar, nullptr, 1});
      check_q8k(x, n, cols, ref);
      for (Isa isa : test::every_isa())
        for (int threads : {1, 2, 3}) {
          const Quantised got = quantise(x, n, cols, Exec{isa, &pool, threads});
          CHECK_MSG(got.q == ref.q && same_bits(got.scales, ref.scales),
                    isa_name(isa) << " n=" << n << " cols=" << cols << " threads=" << threads);
        }
    }
  }
}

TEST(act_quant_block_of_one_block_is_the_token_q) {
  // Within one block the q values are the per-token quantiser's, only the
  // scale is taken as 1 / (127 / absmax) instead of absmax / 127.
  Rng rng(5);
  for (int64_t cols : {7, 100, 256}) {
    std::vector<float> x(size_t(4 * cols));
    for (auto& v : x) v = rng.normal();
    const Quantised b = quantise(x, 4, cols, Exec{});
    std::vector<int8_t> q(size_t(4 * padded_cols(cols)));
    std::vector<float> s(4);
    quantize_activations(x.data(), 4, cols, q.data(), s.data(), Exec{});
    CHECK(q == b.q);
    for (int t = 0; t < 4; ++t)
      CHECK(std::fabs(b.scales[size_t(t)] - s[size_t(t)]) <= 2.4e-7f * s[size_t(t)]);
  }
}

TEST(gemm_i8_block_every_isa_matches_reference) {
  Rng rng(92);
  ThreadPool pool(3);
  const int64_t shapes[][2] = {{1, 1},    {5, 17},    {16, 256},  {17, 257},  {64, 512},
                               {70, 768}, {33, 1000}, {130, 300}, {256, 1024}};
  for (const auto& s : shapes)
    for (int64_t n : {1, 2, 7, 9, 65, 130}) {
      const Case k = make_case(rng, s[0], s[1], n);
      const std::vector<float> ref = product(k, Exec{Isa::Scalar, nullptr, 1});
      check_naive(k, ref);
      for (Isa isa : test::every_isa())
        for (int threads : {1, 2, 3})
          CHECK_MSG(same_bits(product(k, Exec{isa, &pool, threads}), ref),
                    isa_name(isa) << " rows=" << k.rows << " cols=" << k.cols << " n=" << n
                                  << " threads=" << threads);
    }
}

TEST(act_quant_block_and_gemm_i8_block_reject_bad_input) {
  Rng rng(93);
  for (Isa isa : test::every_isa()) {
    const Exec ex{isa, nullptr, 1};
    const int64_t n = 3, cols = 300;
    std::vector<float> x(size_t(n * cols), 1.0f);
    std::vector<int8_t> q(size_t(n * padded_cols(cols)));
    std::vector<float> s(size_t(n * act_blocks(cols)));
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), INFINITY}) {
      for (int64_t at : {int64_t(0), int64_t(299), int64_t(2 * cols + 260)}) {
        std::vector<float> xb = x;
        xb[size_t(at)] = bad;
        CHECK_THROWS(quantize_activations_block(xb.data(), n, cols, q.data(), s.data(), ex));
      }
    }
    CHECK_THROWS(quantize_activations_block(nullptr, n, cols, q.data(), s.data(), ex));
    CHECK_THROWS(quantize_activations_block(x.data(), 0, cols, q.data(), s.data(), ex));
    CHECK_THROWS(quantize_activations_block(x.data(), n, 0, q.data(), s.data(), ex));

    Case k = make_case(rng, 20, cols, n);
    std::vector<float> y(size_t(n * 20));
    gemm_i8_block(k.w(), k.a.q.data(), k.a.scales.data(), n, y.data(), ex);  // fine
    k.a.q[size_t(padded_cols(cols) + cols)] = 1;  // nonzero padding of token 1
    CHECK_THROWS(gemm_i8_block(k.w(), k.a.q.data(), k.a.scales.data(), n, y.data(), ex));
    k.a.q[size_t(padded_cols(cols) + cols)] = 0;
    k.a.scales[size_t(act_blocks(cols) * n - 1)] = INFINITY;  // the last block's scale
    CHECK_THROWS(gemm_i8_block(k.w(), k.a.q.data(), k.a.scales.data(), n, y.data(), ex));
    CHECK_THROWS(gemm_i8_block(k.w(), nullptr, k.a.scales.data(), n, y.data(), ex));
  }
}
