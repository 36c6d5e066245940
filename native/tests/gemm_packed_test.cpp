// gemm_f32_packed on a PackedB gives the bits of gemm_f32 on the same block of
// the source, on every ISA path and thread count: the blocks attention and the
// head take (prefixes and suffixes of k, column offsets, all of B), edge and
// k-block-crossing sizes, both stored layouts of B and of A, a 16-bit B, both
// sides of kDirectMaxM, alpha/beta; a buffer reused for a smaller B; bad input.
#include <cstring>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/thread_pool.h"
#include "gemm/gemm.h"
#include "gemm/packed_b.h"
#include "harness.h"
#include "norm/gain_codec.h"

using namespace ternorm;
using ternorm::gemm::GemmArgs;
using ternorm::test::Rng;
using ternorm::test::thrown_message;

namespace {

// A stored B (K x N as op(B), padded rows) in fp32 and binary16.
struct StoredB {
  bool trans;
  int64_t K, N, ldb;
  std::vector<float> f32;
  std::vector<uint16_t> h16;
};

StoredB make_b(bool trans, int64_t K, int64_t N, Rng& rng) {
  StoredB s{trans, K, N, (trans ? K : N) + 3, {}, {}};
  const int64_t rows = trans ? N : K;
  s.f32.assign(size_t(rows * s.ldb), std::numeric_limits<float>::quiet_NaN());
  s.h16.assign(s.f32.size(), 0x7E00);  // NaN in the padding
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < (trans ? K : N); ++c) {
      const uint16_t h = norm::f32_to_f16(rng.normal());
      s.h16[size_t(r * s.ldb + c)] = h;
      s.f32[size_t(r * s.ldb + c)] = rng.normal();
    }
  return s;
}

// The source view of rows k0.., columns j0.. of op(B).
GemmArgs b_args(const StoredB& s, bool half, int64_t k0, int64_t j0, int64_t k, int64_t n) {
  GemmArgs g;
  g.trans_b = s.trans, g.k = k, g.n = n, g.ldb = s.ldb;
  const int64_t at = s.trans ? j0 * s.ldb + k0 : k0 * s.ldb + j0;
  if (half) {
    g.b_type = gemm::ElemType::F16;
    g.b16 = s.h16.data() + at;
  } else {
    g.b = s.f32.data() + at;
  }
  return g;
}

struct Block {
  int64_t m, k0, k, j0, n;
  bool ta;
  float alpha, beta;
};

// One product both ways; true when the bits agree (C's padding included).
bool same_bits(const StoredB& s, bool half, const gemm::PackedB& pb, const Block& bl, Rng& rng,
               const Exec& ex) {
  const int64_t lda = (bl.ta ? bl.m : bl.k) + 1, ldc = bl.n + 2;
  std::vector<float> a(size_t((bl.ta ? bl.k : bl.m) * lda));
  for (float& v : a) v = rng.normal();
  std::vector<float> c0(size_t(bl.m * ldc));
  for (float& v : c0) v = bl.beta == 0.0f ? std::numeric_limits<float>::quiet_NaN() : rng.normal();
  GemmArgs g = b_args(s, half, bl.k0, bl.j0, bl.k, bl.n);
  g.trans_a = bl.ta, g.m = bl.m, g.alpha = bl.alpha, g.beta = bl.beta;
  g.a = a.data(), g.lda = lda;
  std::vector<float> want = c0, got = c0;
  g.c = want.data(), g.ldc = ldc;
  gemm::gemm_f32(g, ex);
  GemmArgs h = g;
  h.b = nullptr, h.b16 = nullptr, h.ldb = 0;  // ignored: the panels are read
  h.c = got.data();
  gemm::gemm_f32_packed(h, pb, bl.k0, bl.j0, ex);
  return std::memcmp(want.data(), got.data(), want.size() * sizeof(float)) == 0;
}

}  // namespace

TEST(gemm_packed_same_bits_as_gemm_f32) {
  ThreadPool pool(3);
  Rng rng(707);
  // (K, N): attention's T x head_dim and head_dim x T, odd sizes, k past every
  // path's kc (1100 > 512), N past one tile and not a multiple of it.
  const int64_t shapes[][2] = {{256, 64}, {64, 256}, {1100, 45}, {37, 200}, {5, 3}};
  for (Isa isa : test::every_isa())
    for (const auto& sh : shapes)
      for (int layout = 0; layout < 2; ++layout)
        for (int half = 0; half < 2; ++half) {
          const int64_t K = sh[0], N = sh[1];
          const StoredB s = make_b(layout == 1, K, N, rng);
          const GemmArgs src = b_args(s, half, 0, 0, K, N);
          gemm::PackedB pb;
          pb.pack(src, Exec{isa, &pool, 2});
          CHECK(pb.k() == K && pb.n() == N);
          std::vector<Block> blocks = {
              {9, 0, K, 0, N, false, 1.0f, 0.0f},              // all of B
              {64, 0, K / 2 + 1, 0, N, false, 0.5f, 0.0f},     // k prefix
              {15, K / 3, K - K / 3, 0, N, true, 1.0f, 1.0f},  // k suffix, A transposed
              {8, 0, K, 0, N, false, 1.0f, 0.0f},              // small m
              {1, K / 4, K / 2 + 1, 0, N, true, 2.0f, -0.5f},  // small m, middle of k
              {337, 0, K, 0, N, false, 1.0f, 0.0f},            // past one mc block
          };
          if (N > 64) {
            blocks.push_back({30, 0, K, 64, N - 64, false, 1.0f, 0.0f});  // column offset
            blocks.push_back({3, 1, K - 1, 64, 7, false, 1.0f, 1.0f});
          }
          for (const Block& bl : blocks)
            for (int t : {1, 2, 3}) {
              const bool ok = same_bits(s, half, pb, bl, rng, Exec{isa, &pool, t});
              CHECK_MSG(ok, isa_name(isa) << " K=" << K << " N=" << N << " trans_b=" << layout
                                          << " f16=" << half << " block m=" << bl.m
                                          << " k0=" << bl.k0 << " k=" << bl.k << " j0=" << bl.j0
                                          << " n=" << bl.n << " ta=" << bl.ta << " threads " << t);
            }
        }
}

// A PackedB repacked with a smaller B keeps its larger buffer and reads only the new panels.
TEST(gemm_packed_repack_smaller) {
  Rng rng(708);
  for (Isa isa : test::every_isa()) {
    const Exec ex{isa, nullptr, 1};
    gemm::PackedB pb;
    const StoredB big = make_b(true, 300, 130, rng);
    pb.pack(b_args(big, false, 0, 0, 300, 130), ex);
    const size_t bytes = pb.bytes();
    const StoredB small = make_b(false, 70, 33, rng);
    pb.pack(b_args(small, false, 0, 0, 70, 33), ex);
    CHECK(pb.bytes() == bytes && pb.k() == 70 && pb.n() == 33);
    CHECK_MSG(same_bits(small, false, pb, {20, 0, 70, 0, 33, false, 1.0f, 0.0f}, rng, ex),
              isa_name(isa) << " after repacking");
  }
}

TEST(gemm_packed_bad_input) {
  Rng rng(709);
  const StoredB s = make_b(false, 32, 128, rng);
  const Exec ex{Isa::Scalar, nullptr, 1};
  std::vector<float> a(64 * 128, 1.0f), c(64 * 128, 0.0f);
  GemmArgs g;
  g.m = 16, g.n = 64, g.k = 32, g.a = a.data(), g.lda = 32, g.c = c.data(), g.ldc = 64;
  gemm::PackedB pb;
  auto expect = [&](const std::function<void()>& fn, const char* needle) {
    const std::string msg = thrown_message<std::invalid_argument>(fn);
    CHECK_MSG(msg.find(needle) != std::string::npos,
              "message '" << msg << "' should mention '" << needle << "'");
  };
  expect([&] { gemm::gemm_f32_packed(g, pb, 0, 0, ex); }, "never packed");
  GemmArgs bad = b_args(s, false, 0, 0, 32, 128);
  bad.ldb = 100;
  expect([&] { pb.pack(bad, ex); }, "ldb = 100");
  pb.pack(b_args(s, false, 0, 0, 32, 128), ex);
  gemm::gemm_f32_packed(g, pb, 0, 64, ex);  // the last 64 columns: valid
  expect([&] { gemm::gemm_f32_packed(g, pb, 0, 32, ex); }, "not a block");
  expect([&] { gemm::gemm_f32_packed(g, pb, 1, 0, ex); }, "not a block");
  GemmArgs wide = g;
  wide.n = 65;
  wide.ldc = 65;
  expect([&] { gemm::gemm_f32_packed(wide, pb, 0, 64, ex); }, "not a block");
  GemmArgs empty = g;
  empty.m = 0;
  expect([&] { gemm::gemm_f32_packed(empty, pb, 0, 0, ex); }, "must be positive");
  GemmArgs no_a = g;
  no_a.a = nullptr;
  expect([&] { gemm::gemm_f32_packed(no_a, pb, 0, 0, ex); }, "a is null");
  for (Isa other : test::every_isa())
    if (other != Isa::Scalar)
      expect([&] { gemm::gemm_f32_packed(g, pb, 0, 0, Exec{other, nullptr, 1}); }, "packed for");
}
