// NEON (AArch64) decoding kernels: the NEON GEMM microkernel's operations
// (one vfmaq chain per element, gemm_neon.cpp) on operands read in place; a
// key panel or the head's 16 lanes is four q registers. Head-dim columns past
// a multiple of 4 are loaded lane by lane, zeros above.
#include <arm_neon.h>

#include <cstdint>
#include <cstring>

#include "decode_kernels.h"

namespace ternorm::model::detail {
namespace {

#include "../cpu/counted_loops.h"

// NP panels of 16 keys at once: 4 * NP independent accumulator chains.
template <int NP>
void score_panels(const float* q, const float* kp, int64_t hd, float scale, float* s) {
  float32x4_t acc[NP][4];
#pragma GCC unroll 4
  for (int b = 0; b < NP; ++b)
    for (int i = 0; i < 4; ++i) acc[b][i] = vdupq_n_f32(0.0f);
  for (int64_t p = 0; p < hd; ++p) {
    const float32x4_t qp = vdupq_n_f32(q[p]);
#pragma GCC unroll 4
    for (int b = 0; b < NP; ++b) {
      const float* k = kp + (b * hd + p) * kKeyPanel;
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) acc[b][i] = vfmaq_f32(acc[b][i], vld1q_f32(k + 4 * i), qp);
    }
  }
#pragma GCC unroll 4
  for (int b = 0; b < NP; ++b)
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) vst1q_f32(s + b * kKeyPanel + 4 * i, vmulq_n_f32(acc[b][i], scale));
}

void scores(const float* q, const float* kp, int64_t hd, int64_t n_panels, float scale, float* s) {
  by_steps<2>(0, n_panels, [&](auto np, int64_t b) {
    score_panels<decltype(np)::value>(q, kp + b * hd * kKeyPanel, hd, scale, s + b * kKeyPanel);
  });
}

inline float32x4_t load_upto(const float* p, int64_t count) {
  if (count >= 4) return vld1q_f32(p);
  // 1 .. 3 elements, zeros above (lane by lane: nothing read past them).
  float32x4_t r = vsetq_lane_f32(p[0], vdupq_n_f32(0.0f), 0);
  if (count > 1) r = vsetq_lane_f32(p[1], r, 1);
  if (count > 2) r = vsetq_lane_f32(p[2], r, 2);
  return r;
}

// Columns c .. c + 4 * NV - 1 (the last vector cut to `width`) of the weighted sum.
template <int NV>
void weighted_columns(const float* w, const float* v, int64_t ldv, int64_t n, int64_t width,
                      int64_t kc, float* out) {
  float32x4_t total[NV];  // set by the first block (zeroed for the compiler)
#pragma GCC unroll 8
  for (int i = 0; i < NV; ++i) total[i] = vdupq_n_f32(0.0f);
  for (int64_t j0 = 0; j0 < n; j0 += kc) {
    const int64_t j1 = j0 + kc < n ? j0 + kc : n;
    float32x4_t acc[NV];
#pragma GCC unroll 8
    for (int i = 0; i < NV; ++i) acc[i] = vdupq_n_f32(0.0f);
    for (int64_t j = j0; j < j1; ++j) {
      const float32x4_t wj = vdupq_n_f32(w[j]);
      const float* vj = v + j * ldv;
#pragma GCC unroll 8
      for (int i = 0; i < NV; ++i)
        acc[i] = vfmaq_f32(acc[i], load_upto(vj + 4 * i, width - 4 * i), wj);
    }
#pragma GCC unroll 8
    for (int i = 0; i < NV; ++i) total[i] = j0 == 0 ? acc[i] : vaddq_f32(acc[i], total[i]);
  }
#pragma GCC unroll 8
  for (int i = 0; i < NV; ++i) {
    float t[4];
    vst1q_f32(t, total[i]);
    const int64_t count = width - 4 * i < 4 ? width - 4 * i : 4;
    std::memcpy(out + 4 * i, t, size_t(count) * sizeof(float));
  }
}

void weighted_sum(const float* w, const float* v, int64_t ldv, int64_t n, int64_t hd, int64_t kc,
                  float* out) {
  for (int64_t c = 0; c < hd; c += 32) {
    const int64_t width = hd - c < 32 ? hd - c : 32;
    with_count<8>((width + 3) / 4, [&](auto nv) {
      weighted_columns<decltype(nv)::value>(w, v + c, ldv, n, width, kc, out + c);
    });
  }
}

// NJ rows of b against the 16 lanes of x^T.
template <int NJ>
void head_block(int64_t k, const float* xt, int64_t m, const float* b, int64_t ldb, int64_t kc,
                float* c, int64_t ldc) {
  float32x4_t total[NJ][4];  // set by the first block (zeroed for the compiler)
#pragma GCC unroll 4
  for (int j = 0; j < NJ; ++j)
    for (int i = 0; i < 4; ++i) total[j][i] = vdupq_n_f32(0.0f);
  for (int64_t p0 = 0; p0 < k; p0 += kc) {
    const int64_t p1 = p0 + kc < k ? p0 + kc : k;
    float32x4_t acc[NJ][4];
#pragma GCC unroll 4
    for (int j = 0; j < NJ; ++j)
      for (int i = 0; i < 4; ++i) acc[j][i] = vdupq_n_f32(0.0f);
    for (int64_t p = p0; p < p1; ++p) {
      float32x4_t x[4];
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) x[i] = vld1q_f32(xt + p * kHeadLanes + 4 * i);
#pragma GCC unroll 4
      for (int j = 0; j < NJ; ++j) {
        const float32x4_t bj = vdupq_n_f32(b[j * ldb + p]);
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) acc[j][i] = vfmaq_f32(acc[j][i], x[i], bj);
      }
    }
#pragma GCC unroll 4
    for (int j = 0; j < NJ; ++j)
      for (int i = 0; i < 4; ++i)
        total[j][i] = p0 == 0 ? acc[j][i] : vaddq_f32(acc[j][i], total[j][i]);
  }
  float t[NJ][kHeadLanes];
#pragma GCC unroll 4
  for (int j = 0; j < NJ; ++j)
    for (int i = 0; i < 4; ++i) vst1q_f32(t[j] + 4 * i, total[j][i]);
  for (int64_t e = 0; e < m; ++e)
#pragma GCC unroll 4
    for (int j = 0; j < NJ; ++j) c[e * ldc + j] = t[j][e];
}

void head_rows(int64_t k, const float* xt, int64_t m, const float* b, int64_t ldb, int64_t n,
               int64_t kc, float* c, int64_t ldc) {
  by_steps<4>(0, n, [&](auto nj, int64_t j) {
    head_block<decltype(nj)::value>(k, xt, m, b + j * ldb, ldb, kc, c + j, ldc);
  });
}

}  // namespace

constexpr DecodeKernels kDecodeKernelsNeon = {scores, weighted_sum, head_rows,
                                              &gemm::kGemmKernelsNeon};

}  // namespace ternorm::model::detail
