// fp32 GEMM with a 16-bit B (F16 / BF16, a GGUF's token table): widening is
// exact, so every path must give, bit for bit, what it gives on the widened
// fp32 B (the same products summed in the same order), on every ISA, layout,
// tail length and thread count; and each ISA's widen kernel must equal the
// scalar conversion on all 65536 bit patterns.
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "cpu/thread_pool.h"
#include "gemm/gemm.h"
#include "gemm/gemm_kernels.h"
#include "harness.h"
#include "io/gguf_quants.h"
#include "norm/gain_codec.h"

using namespace ternorm;
using gemm::ElemType;
using ternorm::test::Rng;

namespace {

constexpr ElemType kHalfTypes[] = {ElemType::F16, ElemType::BF16};

uint16_t to_half(ElemType t, float v) {
  return t == ElemType::F16 ? norm::f32_to_f16(v) : gguf::fp32_to_bf16(v);
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// n finite 16-bit values: mostly normal(0, scale), with the edge values of
// the type mixed in (signed zeros, the smallest and largest subnormals, the
// smallest normal, the largest finite value).
std::vector<uint16_t> half_values(ElemType t, int64_t n, Rng& rng, float scale) {
  const uint16_t edges16[] = {0x0000, 0x8000, 0x0001, 0x8001, 0x03ff, 0x0400, 0x7bff, 0xfbff};
  const uint16_t edgesbf[] = {0x0000, 0x8000, 0x0001, 0x8001, 0x007f, 0x0080, 0x7f7f, 0xff7f};
  std::vector<uint16_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    v[size_t(i)] = rng.below(16) == 0 ? (t == ElemType::F16 ? edges16 : edgesbf)[rng.below(8)]
                                      : to_half(t, rng.normal() * scale);
  return v;
}

std::vector<float> widened(ElemType t, const std::vector<uint16_t>& h) {
  std::vector<float> f(h.size());
  gemm::widen_scalar(t, h.data(), int64_t(h.size()), f.data());
  return f;
}

}  // namespace

TEST(gemm_widen_every_isa_equals_scalar_on_every_bit_pattern) {
  std::vector<uint16_t> all(65536 + 37);
  for (size_t i = 0; i < all.size(); ++i) all[i] = uint16_t(i);
  for (ElemType t : kHalfTypes) {
    const std::vector<float> want = widened(t, all);
    // Exact: a finite value narrows back to the same bits.
    for (size_t i = 0; i < 65536; ++i)
      if (std::isfinite(want[i]))
        CHECK_MSG(to_half(t, want[i]) == all[i], gemm::elem_type_name(t)
                                                     << " " << i << " does not round-trip");
    for (Isa isa : test::every_isa())
      for (int64_t n :
           {int64_t(all.size()), int64_t(1), int64_t(7), int64_t(15), int64_t(17), int64_t(33)}) {
        // Written exactly n values: a sentinel after them stays.
        std::vector<float> got(size_t(n) + 1, 12345.0f);
        const int64_t start = n > 65536 ? 0 : 65536 - n / 2;  // across the 0xffff -> 0 wrap
        gemm::widen(t, all.data() + start, n, got.data(), Exec{isa, nullptr, 1});
        const float* w = want.data() + start;
        bool same = got[size_t(n)] == 12345.0f;
        for (int64_t i = 0; i < n; ++i) same = same && bits(got[size_t(i)]) == bits(w[i]);
        CHECK_MSG(same, isa_name(isa) << " " << gemm::elem_type_name(t) << " n=" << n
                                      << ": widen differs from the scalar conversion");
      }
  }
}

TEST(gemm_f32_half_b_bit_identical_to_widened_b) {
  // op(B) from a 16-bit matrix against the same call on its fp32 widening:
  // the small-m dot path (m <= 8, transposed B) and the packed path (m > 8,
  // or a row-major B: the head backward's dx = dlogits table), k tails of
  // every vector width, padded strides, 1/2/3 threads.
  ThreadPool pool(3);
  Rng rng(1601);
  struct Shape {
    bool tb;
    int64_t m, n, k, pad;
  };
  const Shape shapes[] = {
      {true, 1, 100, 256, 0},   {true, 1, 37, 1000, 3},  {true, 2, 64, 17, 0},
      {true, 3, 45, 33, 1},     {true, 5, 16, 7, 0},     {true, 8, 301, 130, 2},
      {true, 9, 70, 100, 0},    {true, 64, 530, 300, 1}, {false, 1, 256, 40, 0},
      {false, 7, 100, 530, 3},  {false, 40, 33, 77, 0},  {true, 17, 1000, 520, 0},
      {false, 100, 256, 600, 0}};
  for (ElemType t : kHalfTypes)
    for (const Shape& s : shapes) {
      const int64_t b_rows = s.tb ? s.n : s.k, b_cols = s.tb ? s.k : s.n, ldb = b_cols + s.pad;
      const std::vector<uint16_t> b16 = half_values(t, b_rows * ldb, rng, 0.5f);
      const std::vector<float> b32 = widened(t, b16);
      std::vector<float> a(size_t(s.m * s.k));
      for (float& v : a) v = rng.normal();
      for (int layout_beta = 0; layout_beta < 2; ++layout_beta) {
        gemm::GemmArgs g;
        g.trans_b = s.tb;
        g.m = s.m, g.n = s.n, g.k = s.k;
        g.a = a.data(), g.lda = s.k, g.ldb = ldb, g.ldc = s.n;
        g.alpha = layout_beta ? 0.75f : 1.0f;
        g.beta = layout_beta ? -0.5f : 0.0f;
        std::vector<float> c0(size_t(s.m * s.n));
        for (float& v : c0) v = rng.normal();
        // The scalar reference on both, then every path on both.
        gemm::GemmArgs ref = g;
        std::vector<float> want = c0, got = c0;
        ref.b = b32.data();
        ref.c = want.data();
        gemm::gemm_f32_ref(ref);
        ref.b = nullptr, ref.b_type = t, ref.b16 = b16.data(), ref.c = got.data();
        gemm::gemm_f32_ref(ref);
        CHECK_MSG(std::memcmp(want.data(), got.data(), want.size() * 4) == 0,
                  "reference, " << gemm::elem_type_name(t) << " m=" << s.m << " n=" << s.n
                                << " k=" << s.k);
        for (Isa isa : test::every_isa())
          for (int threads : {1, 2, 3}) {
            const Exec ex{isa, &pool, threads};
            std::vector<float> c32 = c0, c16 = c0;
            gemm::GemmArgs g32 = g, g16 = g;
            g32.b = b32.data(), g32.c = c32.data();
            g16.b_type = t, g16.b16 = b16.data(), g16.c = c16.data();
            gemm::gemm_f32(g32, ex);
            gemm::gemm_f32(g16, ex);
            CHECK_MSG(std::memcmp(c32.data(), c16.data(), c32.size() * 4) == 0,
                      isa_name(isa) << " threads " << threads << " " << gemm::elem_type_name(t)
                                    << (s.tb ? " trans_b" : "") << " m=" << s.m << " n=" << s.n
                                    << " k=" << s.k << ": 16-bit B differs from its widening");
          }
      }
    }
}

TEST(gemm_f32_half_b_bad_input) {
  std::vector<float> a(16, 1.0f), c(16), b(16, 1.0f);
  std::vector<uint16_t> h(16, 0x3c00);
  gemm::GemmArgs g;
  g.trans_b = true;
  g.m = 2, g.n = 2, g.k = 4;
  g.a = a.data(), g.lda = 4, g.ldb = 4, g.c = c.data(), g.ldc = 2;
  g.b_type = ElemType::F16;
  CHECK(test::mentions(test::thrown_message([&] { gemm::gemm_f32(g, Exec{}); }), "b16 is null"));
  g.b = b.data();
  g.b16 = h.data();
  CHECK(test::mentions(test::thrown_message([&] { gemm::gemm_f32(g, Exec{}); }), "b must be null"));
  g.b = nullptr;
  gemm::gemm_f32(g, Exec{});
  CHECK(c[0] == 4.0f && c[3] == 4.0f);
  CHECK(test::mentions(test::thrown_message([] { gemm::elem_type_of("q8_0"); }),
                       "expected f32, f16 or bf16"));
  CHECK(gemm::elem_type_of("bf16") == ElemType::BF16);
}
