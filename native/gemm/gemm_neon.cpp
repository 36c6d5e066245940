// NEON fp32 GEMM microkernel: up to 6 x 16 of C in 24 q accumulators; per k
// step 4 B vectors and the 6 A values in two registers feed 24 by-lane FMAs
// (30 of the 32 vector registers). The row count is a template parameter, so
// a short edge tile (or a GEMV) does only the FMAs its rows need; a column
// edge goes through a scratch row.
#include <arm_neon.h>

#include <cstdint>
#include <cstring>

#include "gemm_kernels.h"

namespace ternorm::gemm {
namespace {

constexpr int MR = kMrNeon, NR = kNrNeon;

template <int ROWS>
void tile(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int64_t n,
          float alpha, float beta) {
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

}  // namespace

void ukernel_neon(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int64_t m,
                  int64_t n, float alpha, float beta) {
  static_assert(MR == 6, "one case per tile height");
  switch (m) {
    case 6: return tile<6>(kc, a, b, c, ldc, n, alpha, beta);
    case 5: return tile<5>(kc, a, b, c, ldc, n, alpha, beta);
    case 4: return tile<4>(kc, a, b, c, ldc, n, alpha, beta);
    case 3: return tile<3>(kc, a, b, c, ldc, n, alpha, beta);
    case 2: return tile<2>(kc, a, b, c, ldc, n, alpha, beta);
    case 1: return tile<1>(kc, a, b, c, ldc, n, alpha, beta);
    default: return;  // the driver never passes m outside 1 .. MR
  }
}

}  // namespace ternorm::gemm
