// NEON machine-limit probes: the baseline-AArch64 int8 multiply-accumulate
// sequence (smull, smlal2 into int16, sadalp into int32; no dot-product
// extension is assumed) and a 128-bit streaming read.
#include <arm_neon.h>

#include <cstddef>
#include <cstdint>

#include "peak_kernels.h"

namespace ternorm::bench {

// Eight chains; only the sadalp is loop-carried. The empty asm makes w opaque
// every iteration so the products cannot be hoisted, and the distinct a_i keep
// the compiler from sharing one product between chains.
uint64_t peak_i8_neon(int64_t iters, int64_t* sink) {
  const int8x16_t a0 = vdupq_n_s8(2), a1 = vdupq_n_s8(3), a2 = vdupq_n_s8(4), a3 = vdupq_n_s8(5);
  const int8x16_t a4 = vdupq_n_s8(6), a5 = vdupq_n_s8(7), a6 = vdupq_n_s8(9), a7 = vdupq_n_s8(10);
  int8x16_t w = vdupq_n_s8(-3);
  int32x4_t c0 = vdupq_n_s32(0), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
  for (int64_t i = 0; i < iters; ++i) {
    __asm__ volatile("" : "+w"(w));
    const int8x8_t wl = vget_low_s8(w);
    c0 = vpadalq_s16(c0, vmlal_high_s8(vmull_s8(vget_low_s8(a0), wl), a0, w));
    c1 = vpadalq_s16(c1, vmlal_high_s8(vmull_s8(vget_low_s8(a1), wl), a1, w));
    c2 = vpadalq_s16(c2, vmlal_high_s8(vmull_s8(vget_low_s8(a2), wl), a2, w));
    c3 = vpadalq_s16(c3, vmlal_high_s8(vmull_s8(vget_low_s8(a3), wl), a3, w));
    c4 = vpadalq_s16(c4, vmlal_high_s8(vmull_s8(vget_low_s8(a4), wl), a4, w));
    c5 = vpadalq_s16(c5, vmlal_high_s8(vmull_s8(vget_low_s8(a5), wl), a5, w));
    c6 = vpadalq_s16(c6, vmlal_high_s8(vmull_s8(vget_low_s8(a6), wl), a6, w));
    c7 = vpadalq_s16(c7, vmlal_high_s8(vmull_s8(vget_low_s8(a7), wl), a7, w));
    __asm__ volatile(""
                     : "+w"(c0), "+w"(c1), "+w"(c2), "+w"(c3), "+w"(c4), "+w"(c5), "+w"(c6),
                       "+w"(c7));
  }
  const int32x4_t s = vaddq_s32(vaddq_s32(vaddq_s32(c0, c1), vaddq_s32(c2, c3)),
                                vaddq_s32(vaddq_s32(c4, c5), vaddq_s32(c6, c7)));
  *sink = vaddvq_s32(s);
  return static_cast<uint64_t>(iters) * 8u * 16u;
}

uint64_t read_sum_neon(const uint8_t* p, size_t bytes) {
  uint64x2_t s0 = vdupq_n_u64(0), s1 = s0, s2 = s0, s3 = s0;
  for (size_t i = 0; i < bytes; i += 64) {
    const uint64_t* q = reinterpret_cast<const uint64_t*>(p + i);
    s0 = vaddq_u64(s0, vld1q_u64(q));
    s1 = vaddq_u64(s1, vld1q_u64(q + 2));
    s2 = vaddq_u64(s2, vld1q_u64(q + 4));
    s3 = vaddq_u64(s3, vld1q_u64(q + 6));
  }
  return vaddvq_u64(vaddq_u64(vaddq_u64(s0, s1), vaddq_u64(s2, s3)));
}

}  // namespace ternorm::bench
