// NEON fp32 GEMM microkernel: up to 6 x 16 of C in 24 q accumulators; per k
// step 4 B vectors and the 6 A values in two registers feed 24 by-lane FMAs
// (30 of the 32 vector registers). The row count is a template parameter, so
// a short edge tile does only the FMAs its rows need; a column edge goes
// through a scratch row. Also the dot kernels of the small-m path (4 lanes
// along k, the tail in scalar order), which widen a 16-bit B in registers
// (vcvt_f32_f16 for binary16, a widening shift for bfloat16).
#include <arm_neon.h>

#include <cstdint>
#include <cstring>

#include "gemm_kernels.h"

namespace ternorm::gemm {
namespace {

constexpr int MR = kMrNeon, NR = kNrNeon;

template <int ROWS>
void tile(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int64_t n, float alpha,
          float beta) {
  float32x4_t acc[ROWS][4];
#pragma GCC unroll 8
  for (int i = 0; i < ROWS; ++i)
    for (int q = 0; q < 4; ++q) acc[i][q] = vdupq_n_f32(0.0f);
  for (int64_t p = 0; p < kc; ++p) {
    const float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4), b2 = vld1q_f32(b + 8),
                      b3 = vld1q_f32(b + 12);
    const float32x4_t a03 = vld1q_f32(a);
    const float32x2_t a45 = vld1_f32(a + 4);
#pragma GCC unroll 8
    for (int i = 0; i < ROWS; ++i) {
      // Lane i of the A values (a constant after unrolling).
      const float32x4_t ai = i < 4 ? vdupq_laneq_f32(a03, i & 3) : vdupq_lane_f32(a45, i & 1);
      acc[i][0] = vfmaq_f32(acc[i][0], b0, ai);
      acc[i][1] = vfmaq_f32(acc[i][1], b1, ai);
      acc[i][2] = vfmaq_f32(acc[i][2], b2, ai);
      acc[i][3] = vfmaq_f32(acc[i][3], b3, ai);
    }
    a += MR;
    b += NR;
  }
  // C = alpha * acc + beta * C (beta == 0: C not read); a column edge works on
  // a scratch copy of the row so its elements see the same operations.
  const bool beta0 = beta == 0.0f;
#pragma GCC unroll 8
  for (int i = 0; i < ROWS; ++i) {
    float scratch[NR] = {};
    float* cr = c + i * ldc;
    float* dst = n == NR ? cr : scratch;
    if (n != NR && !beta0) std::memcpy(scratch, cr, size_t(n) * sizeof(float));
    for (int q = 0; q < 4; ++q) {
      const float32x4_t scaled = vmulq_n_f32(acc[i][q], alpha);
      vst1q_f32(dst + 4 * q,
                beta0 ? scaled : vaddq_f32(scaled, vmulq_n_f32(vld1q_f32(dst + 4 * q), beta)));
    }
    if (n != NR) std::memcpy(cr, scratch, size_t(n) * sizeof(float));
  }
}

// 4 values of B of type T, widened to fp32 (exactly).
template <ElemType T>
inline float32x4_t load4(const Elem<T>* p) {
  if constexpr (T == ElemType::F32) {
    return vld1q_f32(p);
  } else if constexpr (T == ElemType::F16) {
    uint16x4_t h = vld1_u16(p);
    return vcvt_f32_f16(vreinterpret_f16_u16(h));
  } else {
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
  }
}

// The first n (0 < n < 4) of them widened into out[0 .. n).
template <ElemType T>
inline void widen_first(const Elem<T>* p, int64_t n, float* out) {
  Elem<T> part[4] = {};
  std::memcpy(part, p, size_t(n) * sizeof(Elem<T>));
  float all[4];
  vst1q_f32(all, load4<T>(part));
  std::memcpy(out, all, size_t(n) * sizeof(float));
}

template <ElemType T>
void widen_of(const uint16_t* src, int64_t n, float* dst) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(dst + i, load4<T>(src + i));
  if (i < n) widen_first<T>(src + i, n - i, dst + i);
}

// C[i][j] for MA rows of A and NB rows of B: one accumulator per element,
// 4 lanes over k, a fixed lane reduction, then the k % 4 tail in order.
template <int MA, int NB, ElemType T>
void dot_block(int64_t k, const float* a, int64_t lda, const Elem<T>* b, int64_t ldb, float* c,
               int64_t ldc, float alpha, float beta) {
  float32x4_t acc[MA][NB];
#pragma GCC unroll 4
  for (int i = 0; i < MA; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) acc[i][j] = vdupq_n_f32(0.0f);
  int64_t p = 0;
  for (; p + 4 <= k; p += 4) {
    float32x4_t bv[NB];
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) bv[j] = load4<T>(b + j * ldb + p);
#pragma GCC unroll 4
    for (int i = 0; i < MA; ++i) {
      const float32x4_t av = vld1q_f32(a + i * lda + p);
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j) acc[i][j] = vfmaq_f32(acc[i][j], av, bv[j]);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < MA; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) {
      const float32x2_t h2 = vadd_f32(vget_low_f32(acc[i][j]), vget_high_f32(acc[i][j]));
      float sum = vget_lane_f32(vpadd_f32(h2, h2), 0);
      if constexpr (T == ElemType::F32) {
        for (int64_t q = p; q < k; ++q) sum += a[i * lda + q] * b[j * ldb + q];
      } else if (p < k) {
        float tail[4];
        widen_first<T>(b + j * ldb + p, k - p, tail);
        for (int64_t q = p; q < k; ++q) sum += a[i * lda + q] * tail[q - p];
      }
      float& cv = c[i * ldc + j];
      cv = beta == 0.0f ? alpha * sum : alpha * sum + beta * cv;
    }
}

#include "../cpu/counted_loops.h"
#include "gemm_isa_loops.h"

}  // namespace

constexpr GemmKernels kGemmKernelsNeon = {
    ukernel, dot, dot_f16, dot_bf16, widen_of<ElemType::F16>, widen_of<ElemType::BF16>, MR,
    NR,      120, 256,     2048};
static_assert(blocking_fits(kGemmKernelsNeon), "blocking of the Neon GEMM");

}  // namespace ternorm::gemm
