// AVX-512 decoding kernels: the AVX-512 GEMM microkernel's operations (one
// fused multiply-add chain per element, gemm_avx512.cpp) on operands read in
// place; a key panel or the head's 16 lanes is one zmm.
#include <immintrin.h>

#include <cstdint>

#include "decode_kernels.h"

namespace ternorm::model::detail {
namespace {

#include "../cpu/counted_loops.h"

inline __mmask16 first_lanes(int64_t count) {
  return count <= 0    ? __mmask16(0)
         : count >= 16 ? __mmask16(0xFFFF)
                       : __mmask16((1u << count) - 1u);
}

// NP panels of 16 keys at once: NP independent accumulator chains.
template <int NP>
void score_panels(const float* q, const float* kp, int64_t hd, float scale, float* s) {
  __m512 acc[NP];
#pragma GCC unroll 8
  for (int b = 0; b < NP; ++b) acc[b] = _mm512_setzero_ps();
  for (int64_t p = 0; p < hd; ++p) {
    const __m512 qp = _mm512_set1_ps(q[p]);
#pragma GCC unroll 8
    for (int b = 0; b < NP; ++b)
      acc[b] = _mm512_fmadd_ps(qp, _mm512_loadu_ps(kp + (b * hd + p) * kKeyPanel), acc[b]);
  }
  const __m512 vs = _mm512_set1_ps(scale);
#pragma GCC unroll 8
  for (int b = 0; b < NP; ++b) _mm512_storeu_ps(s + b * kKeyPanel, _mm512_mul_ps(vs, acc[b]));
}

void scores(const float* q, const float* kp, int64_t hd, int64_t n_panels, float scale, float* s) {
  by_steps<8>(0, n_panels, [&](auto np, int64_t b) {
    score_panels<decltype(np)::value>(q, kp + b * hd * kKeyPanel, hd, scale, s + b * kKeyPanel);
  });
}

// Columns c .. c + 16 * NV - 1 (the last vector masked to `width`) of the
// weighted sum.
template <int NV>
void weighted_columns(const float* w, const float* v, int64_t ldv, int64_t n, int64_t width,
                      int64_t kc, float* out) {
  __mmask16 mask[NV];
#pragma GCC unroll 4
  for (int i = 0; i < NV; ++i) mask[i] = first_lanes(width - 16 * i);
  __m512 total[NV];  // set by the first block (zeroed for the compiler)
#pragma GCC unroll 4
  for (int i = 0; i < NV; ++i) total[i] = _mm512_setzero_ps();
  for (int64_t j0 = 0; j0 < n; j0 += kc) {
    const int64_t j1 = j0 + kc < n ? j0 + kc : n;
    __m512 acc[NV];
#pragma GCC unroll 4
    for (int i = 0; i < NV; ++i) acc[i] = _mm512_setzero_ps();
    for (int64_t j = j0; j < j1; ++j) {
      const __m512 wj = _mm512_set1_ps(w[j]);
      const float* vj = v + j * ldv;
#pragma GCC unroll 4
      for (int i = 0; i < NV; ++i)
        acc[i] = _mm512_fmadd_ps(wj, _mm512_maskz_loadu_ps(mask[i], vj + 16 * i), acc[i]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < NV; ++i) total[i] = j0 == 0 ? acc[i] : _mm512_add_ps(acc[i], total[i]);
  }
#pragma GCC unroll 4
  for (int i = 0; i < NV; ++i) _mm512_mask_storeu_ps(out + 16 * i, mask[i], total[i]);
}

void weighted_sum(const float* w, const float* v, int64_t ldv, int64_t n, int64_t hd, int64_t kc,
                  float* out) {
  for (int64_t c = 0; c < hd; c += 64) {
    const int64_t width = hd - c < 64 ? hd - c : 64;
    with_count<4>((width + 15) / 16, [&](auto nv) {
      weighted_columns<decltype(nv)::value>(w, v + c, ldv, n, width, kc, out + c);
    });
  }
}

// NJ rows of b against the 16 lanes of x^T.
template <int NJ>
void head_block(int64_t k, const float* xt, int64_t m, const float* b, int64_t ldb, int64_t kc,
                float* c, int64_t ldc) {
  __m512 total[NJ];  // set by the first block (zeroed for the compiler)
#pragma GCC unroll 8
  for (int j = 0; j < NJ; ++j) total[j] = _mm512_setzero_ps();
  for (int64_t p0 = 0; p0 < k; p0 += kc) {
    const int64_t p1 = p0 + kc < k ? p0 + kc : k;
    __m512 acc[NJ];
#pragma GCC unroll 8
    for (int j = 0; j < NJ; ++j) acc[j] = _mm512_setzero_ps();
    for (int64_t p = p0; p < p1; ++p) {
      const __m512 x = _mm512_loadu_ps(xt + p * kHeadLanes);
#pragma GCC unroll 8
      for (int j = 0; j < NJ; ++j)
        acc[j] = _mm512_fmadd_ps(x, _mm512_set1_ps(b[j * ldb + p]), acc[j]);
    }
#pragma GCC unroll 8
    for (int j = 0; j < NJ; ++j) total[j] = p0 == 0 ? acc[j] : _mm512_add_ps(acc[j], total[j]);
  }
  alignas(64) float t[NJ][kHeadLanes];
#pragma GCC unroll 8
  for (int j = 0; j < NJ; ++j) _mm512_store_ps(t[j], total[j]);
  for (int64_t e = 0; e < m; ++e)
#pragma GCC unroll 8
    for (int j = 0; j < NJ; ++j) c[e * ldc + j] = t[j][e];
}

void head_rows(int64_t k, const float* xt, int64_t m, const float* b, int64_t ldb, int64_t n,
               int64_t kc, float* c, int64_t ldc) {
  by_steps<8>(0, n, [&](auto nj, int64_t j) {
    head_block<decltype(nj)::value>(k, xt, m, b + j * ldb, ldb, kc, c + j, ldc);
  });
}

}  // namespace

constexpr DecodeKernels kDecodeKernelsAvx512 = {scores, weighted_sum, head_rows,
                                                &gemm::kGemmKernelsAvx512};

}  // namespace ternorm::model::detail
