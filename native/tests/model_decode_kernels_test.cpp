// The decoding kernels (model/decode_kernels.h) on every ISA path: each
// result bit-identical to what the same path's packed gemm_f32 (a call of
// more than kDirectMaxM rows, the window forward's products) gives that
// element, which is what keeps decoding on the window's bits; and each SIMD
// path within the fp32 rounding bound of the scalar reference (fused against
// separate multiply-adds: |diff| <= 2 gamma(k) sum |a_i b_i|). Sizes cut
// every vector, panel and k-block edge (k past the longest kc of 512).
#include <cmath>
#include <string>
#include <vector>

#include "cpu/features.h"
#include "gemm/gemm.h"
#include "harness.h"
#include "model/decode_kernels.h"

using namespace ternorm;
using namespace ternorm::model;
using ternorm::test::Rng;

namespace {

std::vector<float> normals(Rng& rng, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = rng.normal();
  return v;
}

// C = alpha op(A) op(B) on the packed path: A gets extra rows (copies of its
// first) so the call has more than kDirectMaxM rows; row 0 is returned.
std::vector<float> packed_row0(const float* a_row, int64_t k, const float* b, int64_t ldb,
                               bool trans_b, int64_t n, float alpha, Isa isa) {
  const int64_t m = gemm::kDirectMaxM + 1;
  std::vector<float> a(size_t(m * k)), c(size_t(m * n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t p = 0; p < k; ++p) a[size_t(i * k + p)] = a_row[p];
  gemm::GemmArgs g;
  g.trans_b = trans_b, g.m = m, g.n = n, g.k = k, g.alpha = alpha;
  g.a = a.data(), g.lda = k, g.b = b, g.ldb = ldb, g.c = c.data(), g.ldc = n;
  gemm::gemm_f32(g, Exec{isa, nullptr, 1});
  return std::vector<float>(c.begin(), c.begin() + n);
}

// |got - want| <= 2 gamma(k) sum_i |a_i b_i| for each element (bound[j]).
bool within(const std::vector<float>& got, const std::vector<float>& want,
            const std::vector<double>& bound) {
  for (size_t j = 0; j < got.size(); ++j)
    if (std::fabs(double(got[j]) - double(want[j])) > bound[j]) return false;
  return true;
}

}  // namespace

TEST(decode_kernels_scores) {
  Rng rng(1);
  constexpr int64_t P = detail::kKeyPanel;
  for (int64_t hd : {8, 40, 64, 128})
    for (int64_t keys : {1, 15, 16, 17, 70, 200}) {
      const int64_t panels = (keys + P - 1) / P;
      const std::vector<float> q = normals(rng, hd), K = normals(rng, keys * hd);  // keys x hd
      std::vector<float> kp(size_t(panels * hd * P), 0.0f);
      for (int64_t j = 0; j < keys; ++j)
        for (int64_t p = 0; p < hd; ++p)
          kp[size_t(j / P * hd * P + p * P + j % P)] = K[size_t(j * hd + p)];
      const float scale = 0.125f;
      std::vector<double> bound(static_cast<size_t>(keys));
      for (int64_t j = 0; j < keys; ++j) {
        double s = 0;
        for (int64_t p = 0; p < hd; ++p)
          s += std::fabs(double(q[size_t(p)]) * K[size_t(j * hd + p)]);
        bound[size_t(j)] = 2 * test::gamma_bound(hd) * scale * s;
      }
      std::vector<float> ref;
      for (Isa isa : test::every_isa()) {
        std::vector<float> s(size_t(panels * P));
        detail::decode_kernels(isa).scores(q.data(), kp.data(), hd, panels, scale, s.data());
        s.resize(size_t(keys));
        const std::vector<float> want =
            packed_row0(q.data(), hd, K.data(), hd, true, keys, scale, isa);
        CHECK_MSG(s == want, std::string("scores differ from gemm_f32's (isa ") + isa_name(isa) +
                                 ", hd " + std::to_string(hd) + ", keys " + std::to_string(keys) +
                                 ")");
        if (ref.empty())
          ref = s;
        else
          CHECK_MSG(within(s, ref, bound),
                    std::string("scores beyond the bound (isa ") + isa_name(isa) + ")");
      }
    }
}

TEST(decode_kernels_weighted_sum) {
  Rng rng(2);
  for (int64_t hd : {8, 12, 40, 64, 96, 128})
    for (int64_t n : {1, 9, 255, 256, 257, 513, 1100}) {
      const int64_t ldv = hd + 24;  // the value rows of one head inside wider rows
      const std::vector<float> w = normals(rng, n), v = normals(rng, n * ldv);
      std::vector<double> bound(static_cast<size_t>(hd));
      for (int64_t c = 0; c < hd; ++c) {
        double s = 0;
        for (int64_t j = 0; j < n; ++j)
          s += std::fabs(double(w[size_t(j)]) * v[size_t(j * ldv + c)]);
        bound[size_t(c)] = 2 * test::gamma_bound(n) * s;
      }
      std::vector<float> ref;
      for (Isa isa : test::every_isa()) {
        const detail::DecodeKernels& k = detail::decode_kernels(isa);
        std::vector<float> out(size_t(hd) + 3, -7.0f);  // past hd: untouched
        k.weighted_sum(w.data(), v.data(), ldv, n, hd, k.gemm->kc, out.data());
        CHECK(out[size_t(hd)] == -7.0f && out[size_t(hd) + 2] == -7.0f);
        out.resize(size_t(hd));
        const std::vector<float> want =
            packed_row0(w.data(), n, v.data(), ldv, false, hd, 1.0f, isa);
        CHECK_MSG(out == want, std::string("weighted sum differs from gemm_f32's (isa ") +
                                   isa_name(isa) + ", hd " + std::to_string(hd) + ", n " +
                                   std::to_string(n) + ")");
        if (ref.empty())
          ref = out;
        else
          CHECK_MSG(within(out, ref, bound),
                    std::string("weighted sum beyond the bound (isa ") + isa_name(isa) + ")");
      }
    }
}

TEST(decode_kernels_head_rows) {
  Rng rng(3);
  constexpr int64_t L = detail::kHeadLanes;
  for (int64_t k : {8, 100, 512, 600, 1100})
    for (int64_t m : {1, 9, 16}) {
      const int64_t n = 37, ldb = k + 5;
      const std::vector<float> x = normals(rng, L * k), b = normals(rng, n * ldb);  // x: L rows
      std::vector<float> xt(size_t(k * L));
      for (int64_t e = 0; e < L; ++e)
        for (int64_t p = 0; p < k; ++p) xt[size_t(p * L + e)] = x[size_t(e * k + p)];
      std::vector<float> ref;
      for (Isa isa : test::every_isa()) {
        const detail::DecodeKernels& dk = detail::decode_kernels(isa);
        const int64_t ldc = n + 3;
        std::vector<float> c(size_t(L * ldc), -7.0f);
        dk.head_rows(k, xt.data(), m, b.data(), ldb, n, dk.gemm->kc, c.data(), ldc);
        bool same = true, untouched = true;
        for (int64_t e = 0; e < L; ++e) {
          const std::vector<float> want =
              packed_row0(x.data() + e * k, k, b.data(), ldb, true, n, 1.0f, isa);
          for (int64_t j = 0; j < ldc; ++j) {
            const float got = c[size_t(e * ldc + j)];
            if (e < m && j < n)
              same = same && got == want[size_t(j)];
            else
              untouched = untouched && got == -7.0f;
          }
        }
        CHECK_MSG(same && untouched, std::string("head rows differ from gemm_f32's (isa ") +
                                         isa_name(isa) + ", k " + std::to_string(k) + ", m " +
                                         std::to_string(m) + ")");
        std::vector<float> got(c.begin(), c.begin() + m * ldc);
        if (ref.empty()) {
          ref = got;
          continue;
        }
        bool ok = true;
        for (int64_t e = 0; e < m; ++e)
          for (int64_t j = 0; j < n; ++j) {
            double s = 0;
            for (int64_t p = 0; p < k; ++p)
              s += std::fabs(double(x[size_t(e * k + p)]) * b[size_t(j * ldb + p)]);
            const size_t i = size_t(e * ldc + j);
            ok = ok && std::fabs(double(got[i]) - double(ref[i])) <= 2 * test::gamma_bound(k) * s;
          }
        CHECK_MSG(ok, std::string("head rows beyond the bound (isa ") + isa_name(isa) + ")");
      }
    }
}
