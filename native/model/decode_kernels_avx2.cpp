// AVX2 decoding kernels: the AVX2 GEMM microkernel's operations (one fused
// multiply-add chain per element, gemm_avx2.cpp) on operands read in place.
#include <immintrin.h>

#include <cstdint>

#include "decode_kernels.h"

namespace ternorm::model::detail {
namespace {

#include "../cpu/counted_loops.h"

// All-ones in the lanes first .. first+7 that are < count.
inline __m256i lanes_below(int64_t first, int64_t count) {
  const __m256i idx =
      _mm256_add_epi32(_mm256_set1_epi32(int(first)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(count)), idx);
}

// NP panels of 16 keys at once: 2 * NP independent accumulator chains.
template <int NP>
void score_panels(const float* q, const float* kp, int64_t hd, float scale, float* s) {
  __m256 acc[NP][2];
#pragma GCC unroll 4
  for (int b = 0; b < NP; ++b) acc[b][0] = acc[b][1] = _mm256_setzero_ps();
  for (int64_t p = 0; p < hd; ++p) {
    const __m256 qp = _mm256_broadcast_ss(q + p);
#pragma GCC unroll 4
    for (int b = 0; b < NP; ++b) {
      const float* k = kp + (b * hd + p) * kKeyPanel;
      acc[b][0] = _mm256_fmadd_ps(qp, _mm256_loadu_ps(k), acc[b][0]);
      acc[b][1] = _mm256_fmadd_ps(qp, _mm256_loadu_ps(k + 8), acc[b][1]);
    }
  }
  const __m256 vs = _mm256_set1_ps(scale);
#pragma GCC unroll 4
  for (int b = 0; b < NP; ++b) {
    _mm256_storeu_ps(s + b * kKeyPanel, _mm256_mul_ps(vs, acc[b][0]));
    _mm256_storeu_ps(s + b * kKeyPanel + 8, _mm256_mul_ps(vs, acc[b][1]));
  }
}

void scores(const float* q, const float* kp, int64_t hd, int64_t n_panels, float scale, float* s) {
  by_steps<4>(0, n_panels, [&](auto np, int64_t b) {
    score_panels<decltype(np)::value>(q, kp + b * hd * kKeyPanel, hd, scale, s + b * kKeyPanel);
  });
}

// Columns c .. c + 8 * NV - 1 (the last vector masked to `width`) of the
// weighted sum.
template <int NV>
void weighted_columns(const float* w, const float* v, int64_t ldv, int64_t n, int64_t width,
                      int64_t kc, float* out) {
  __m256i mask[NV];
#pragma GCC unroll 4
  for (int i = 0; i < NV; ++i) mask[i] = lanes_below(8 * i, width);
  __m256 total[NV];  // set by the first block (zeroed for the compiler)
#pragma GCC unroll 4
  for (int i = 0; i < NV; ++i) total[i] = _mm256_setzero_ps();
  for (int64_t j0 = 0; j0 < n; j0 += kc) {
    const int64_t j1 = j0 + kc < n ? j0 + kc : n;
    __m256 acc[NV];
#pragma GCC unroll 4
    for (int i = 0; i < NV; ++i) acc[i] = _mm256_setzero_ps();
    for (int64_t j = j0; j < j1; ++j) {
      const __m256 wj = _mm256_broadcast_ss(w + j);
      const float* vj = v + j * ldv;
#pragma GCC unroll 4
      for (int i = 0; i < NV; ++i)
        acc[i] = _mm256_fmadd_ps(wj, _mm256_maskload_ps(vj + 8 * i, mask[i]), acc[i]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < NV; ++i) total[i] = j0 == 0 ? acc[i] : _mm256_add_ps(acc[i], total[i]);
  }
#pragma GCC unroll 4
  for (int i = 0; i < NV; ++i) _mm256_maskstore_ps(out + 8 * i, mask[i], total[i]);
}

void weighted_sum(const float* w, const float* v, int64_t ldv, int64_t n, int64_t hd, int64_t kc,
                  float* out) {
  for (int64_t c = 0; c < hd; c += 32) {
    const int64_t width = hd - c < 32 ? hd - c : 32;
    with_count<4>((width + 7) / 8, [&](auto nv) {
      weighted_columns<decltype(nv)::value>(w, v + c, ldv, n, width, kc, out + c);
    });
  }
}

// NJ rows of b against the 16 lanes of x^T.
template <int NJ>
void head_block(int64_t k, const float* xt, int64_t m, const float* b, int64_t ldb, int64_t kc,
                float* c, int64_t ldc) {
  alignas(32) float total[NJ][kHeadLanes];
  for (int64_t p0 = 0; p0 < k; p0 += kc) {
    const int64_t p1 = p0 + kc < k ? p0 + kc : k;
    __m256 acc[NJ][2];
#pragma GCC unroll 4
    for (int j = 0; j < NJ; ++j) acc[j][0] = acc[j][1] = _mm256_setzero_ps();
    for (int64_t p = p0; p < p1; ++p) {
      const __m256 x0 = _mm256_loadu_ps(xt + p * kHeadLanes);
      const __m256 x1 = _mm256_loadu_ps(xt + p * kHeadLanes + 8);
#pragma GCC unroll 4
      for (int j = 0; j < NJ; ++j) {
        const __m256 bj = _mm256_broadcast_ss(b + j * ldb + p);
        acc[j][0] = _mm256_fmadd_ps(x0, bj, acc[j][0]);
        acc[j][1] = _mm256_fmadd_ps(x1, bj, acc[j][1]);
      }
    }
#pragma GCC unroll 4
    for (int j = 0; j < NJ; ++j)
      for (int h = 0; h < 2; ++h) {
        float* t = total[j] + 8 * h;
        _mm256_store_ps(t, p0 == 0 ? acc[j][h] : _mm256_add_ps(acc[j][h], _mm256_load_ps(t)));
      }
  }
  for (int64_t e = 0; e < m; ++e)
#pragma GCC unroll 4
    for (int j = 0; j < NJ; ++j) c[e * ldc + j] = total[j][e];
}

void head_rows(int64_t k, const float* xt, int64_t m, const float* b, int64_t ldb, int64_t n,
               int64_t kc, float* c, int64_t ldc) {
  by_steps<4>(0, n, [&](auto nj, int64_t j) {
    head_block<decltype(nj)::value>(k, xt, m, b + j * ldb, ldb, kc, c + j, ldc);
  });
}

}  // namespace

constexpr DecodeKernels kDecodeKernelsAvx2 = {scores, weighted_sum, head_rows,
                                              &gemm::kGemmKernelsAvx2};

}  // namespace ternorm::model::detail
