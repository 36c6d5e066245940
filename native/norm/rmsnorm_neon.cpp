// NEON (AArch64) RMSNorm row kernels. The 16 canonical lanes are four q
// registers (lanes 0-3, 4-7, 8-11, 12-15). A tail shorter than 16 is copied
// into a zeroed 16-float block and run through the same body: its zero lanes
// add +0 and leave each partial sum unchanged. Separate vmulq/vaddq (never
// vfmaq/vmlaq): see rmsnorm_kernels.h.
#include <arm_neon.h>

#include <cstdint>
#include <cstring>

#include "rmsnorm_kernels.h"

namespace ternorm::norm {
namespace {

struct Acc {
  float32x4_t a0, a1, a2, a3;
};

inline Acc zero_acc() {
  const float32x4_t z = vdupq_n_f32(0.0f);
  return {z, z, z, z};
}

// The canonical tree: s = 8 (q0+q2, q1+q3), 4, 2, 1.
inline float fold(const Acc& a) {
  const float32x4_t s4 = vaddq_f32(vaddq_f32(a.a0, a.a2), vaddq_f32(a.a1, a.a3));
  const float32x2_t s2 = vadd_f32(vget_low_f32(s4), vget_high_f32(s4));
  return vget_lane_f32(s2, 0) + vget_lane_f32(s2, 1);
}

// Copies the r < 16 remaining floats of src into a zeroed block.
inline void load_tail(const float* src, int64_t r, float* block) {
  std::memset(block, 0, 16 * sizeof(float));
  std::memcpy(block, src, size_t(r) * sizeof(float));
}

inline void sumsq_block(const float* x, Acc& a) {
  const float32x4_t v0 = vld1q_f32(x), v1 = vld1q_f32(x + 4), v2 = vld1q_f32(x + 8),
                    v3 = vld1q_f32(x + 12);
  a.a0 = vaddq_f32(a.a0, vmulq_f32(v0, v0));
  a.a1 = vaddq_f32(a.a1, vmulq_f32(v1, v1));
  a.a2 = vaddq_f32(a.a2, vmulq_f32(v2, v2));
  a.a3 = vaddq_f32(a.a3, vmulq_f32(v3, v3));
}

float sumsq_neon(const float* x, int64_t d) {
  Acc a = zero_acc();
  int64_t c = 0;
  for (; c + 16 <= d; c += 16) sumsq_block(x + c, a);
  if (c < d) {
    float xb[16];
    load_tail(x + c, d - c, xb);
    sumsq_block(xb, a);
  }
  return fold(a);
}

void scale_neon(const float* x, int64_t d, float inv, const float* wg, float* y) {
  const float32x4_t vi = vdupq_n_f32(inv);
  int64_t c = 0;
  for (; c + 4 <= d; c += 4)
    vst1q_f32(y + c, vmulq_f32(vmulq_f32(vld1q_f32(x + c), vi), vld1q_f32(wg + c)));
  for (; c < d; ++c) y[c] = (x[c] * inv) * wg[c];
}

inline float32x4_t absy(const float* x, float32x4_t vi, const float* wg) {
  return vabsq_f32(vmulq_f32(vmulq_f32(vld1q_f32(x), vi), vld1q_f32(wg)));
}

float absmax_neon(const float* x, int64_t d, float inv, const float* wg) {
  const float32x4_t vi = vdupq_n_f32(inv);
  float32x4_t m = vdupq_n_f32(0.0f);
  int64_t c = 0;
  for (; c + 4 <= d; c += 4) m = vmaxq_f32(m, absy(x + c, vi, wg + c));
  if (c < d) {
    float xb[16], wb[16];
    load_tail(x + c, d - c, xb);
    load_tail(wg + c, d - c, wb);
    m = vmaxq_f32(m, absy(xb, vi, wb));
  }
  return vmaxvq_f32(m);
}

// 4 values -> rounded (ties to even), clamped to [-127, 127], as int32.
inline int32x4_t quant4(const float* x, float32x4_t vi, const float* wg, float32x4_t vp,
                        float32x4_t vs) {
  const float32x4_t v =
      vmulq_f32(vmulq_f32(vmulq_f32(vmulq_f32(vld1q_f32(x), vi), vld1q_f32(wg)), vp), vs);
  const int32x4_t r = vcvtnq_s32_f32(v);
  return vminq_s32(vmaxq_s32(r, vdupq_n_s32(-127)), vdupq_n_s32(127));
}

inline void quant16(const float* x, float32x4_t vi, const float* wg, float32x4_t vp, float32x4_t vs,
                    int8_t* q) {
  const int16x8_t lo = vcombine_s16(vqmovn_s32(quant4(x, vi, wg, vp, vs)),
                                    vqmovn_s32(quant4(x + 4, vi, wg + 4, vp, vs)));
  const int16x8_t hi = vcombine_s16(vqmovn_s32(quant4(x + 8, vi, wg + 8, vp, vs)),
                                    vqmovn_s32(quant4(x + 12, vi, wg + 12, vp, vs)));
  vst1q_s8(q, vcombine_s8(vqmovn_s16(lo), vqmovn_s16(hi)));
}

void quantize_neon(const float* x, int64_t d, int64_t padded, float inv, const float* wg, float pre,
                   float iscale, int8_t* q) {
  const float32x4_t vi = vdupq_n_f32(inv), vp = vdupq_n_f32(pre), vs = vdupq_n_f32(iscale);
  int64_t c = 0;
  for (; c + 16 <= d; c += 16) quant16(x + c, vi, wg + c, vp, vs, q + c);
  if (c < d) {
    // Zero lanes give q = 0: exactly the padding the rest of this 16-column
    // block (inside `padded`) must hold.
    float xb[16], wb[16];
    load_tail(x + c, d - c, xb);
    load_tail(wg + c, d - c, wb);
    quant16(xb, vi, wb, vp, vs, q + c);
    c += 16;
  }
  if (c < padded) std::memset(q + c, 0, size_t(padded - c));
}

inline void dot_block(const float* dy, const float* wg, const float* x, Acc& a) {
  float32x4_t* acc[4] = {&a.a0, &a.a1, &a.a2, &a.a3};
  for (int j = 0; j < 4; ++j)
    *acc[j] = vaddq_f32(*acc[j], vmulq_f32(vmulq_f32(vld1q_f32(dy + 4 * j), vld1q_f32(wg + 4 * j)),
                                           vld1q_f32(x + 4 * j)));
}

float dot_neon(const float* dy, const float* wg, const float* x, int64_t d) {
  Acc a = zero_acc();
  int64_t c = 0;
  for (; c + 16 <= d; c += 16) dot_block(dy + c, wg + c, x + c, a);
  if (c < d) {
    float db[16], wb[16], xb[16];
    load_tail(dy + c, d - c, db);
    load_tail(wg + c, d - c, wb);
    load_tail(x + c, d - c, xb);
    dot_block(db, wb, xb, a);
  }
  return fold(a);
}

void dx_neon(const float* dy, const float* wg, const float* x, int64_t d, float k, float inv,
             float* dx) {
  const float32x4_t vk = vdupq_n_f32(k), vi = vdupq_n_f32(inv);
  int64_t c = 0;
  for (; c + 4 <= d; c += 4) {
    const float32x4_t a = vmulq_f32(vld1q_f32(dy + c), vld1q_f32(wg + c));
    const float32x4_t b = vmulq_f32(vld1q_f32(x + c), vk);
    vst1q_f32(dx + c, vmulq_f32(vsubq_f32(a, b), vi));
  }
  for (; c < d; ++c) dx[c] = ((dy[c] * wg[c]) - (x[c] * k)) * inv;
}

void dgain_neon(const float* x, const float* dy, const float* inv, int64_t n, int64_t d,
                const float* w, int64_t c0, int64_t c1, float* dgain) {
  int64_t c = c0;
  // 16 channels at a time: four independent per-channel accumulations over t.
  for (; c + 16 <= c1; c += 16) {
    float32x4_t a[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
    for (int64_t t = 0; t < n; ++t) {
      const float32x4_t vi = vdupq_n_f32(inv[t]);
      const float* xr = x + t * d + c;
      const float* dr = dy + t * d + c;
      for (int j = 0; j < 4; ++j)
        a[j] =
            vaddq_f32(a[j], vmulq_f32(vld1q_f32(dr + 4 * j), vmulq_f32(vld1q_f32(xr + 4 * j), vi)));
    }
    for (int j = 0; j < 4; ++j)
      vst1q_f32(dgain + c + 4 * j, vmulq_f32(a[j], vld1q_f32(w + c + 4 * j)));
  }
  // Remaining channels one by one: the same per-channel sequence.
  for (; c < c1; ++c) {
    float a = 0.0f;
    for (int64_t t = 0; t < n; ++t) a += dy[t * d + c] * (x[t * d + c] * inv[t]);
    dgain[c] = a * w[c];
  }
}

}  // namespace

constexpr RmsKernels kRmsKernelsNeon = {sumsq_neon, scale_neon, absmax_neon, quantize_neon,
                                        dot_neon,   dx_neon,    dgain_neon};

}  // namespace ternorm::norm
