// NEON (AArch64) row kernels of the element-wise math: exp_approx 4 lanes at
// a time with the reference's exact operation sequence (separate vmulq and
// vaddq, never vfmaq/vmlaq; -ffp-contract=off keeps the compiler from fusing
// them either), max and the double sums kept in the reference's 8 lanes (two
// q registers of floats, four of doubles). A row tail shorter than the
// vector goes through a zero-padded copy, so it sees the same operations;
// only its first elements are stored and summed.
#include <arm_neon.h>

#include <cstdint>
#include <cstring>

#include "vec_math_kernels.h"

namespace ternorm::model::detail {
namespace {

#include "vec_math_isa_loops.h"

// exp_approx (vec_math.h) on 4 lanes.
float32x4_t exp4(float32x4_t x) {
  const int32x4_t mag = vdupq_n_s32(0x7FFFFFFF);
  int32x4_t xi = vreinterpretq_s32_f32(x);
  int32x4_t oi = veorq_s32(xi, vandq_s32(vshrq_n_s32(xi, 31), mag));
  oi = vmaxq_s32(oi, vdupq_n_s32(int32_t(0xC2AE0000u) ^ 0x7FFFFFFF));
  oi = vminq_s32(oi, vdupq_n_s32(0x42B00000));
  xi = veorq_s32(oi, vandq_s32(vshrq_n_s32(oi, 31), mag));
  x = vreinterpretq_f32_s32(xi);
  const float32x4_t magic = vdupq_n_f32(12582912.0f);
  const float32x4_t n =
      vsubq_f32(vaddq_f32(vmulq_f32(x, vdupq_n_f32(1.44269504088896341f)), magic), magic);
  const float32x4_t r = vsubq_f32(vsubq_f32(x, vmulq_f32(n, vdupq_n_f32(0.693359375f))),
                                  vmulq_f32(n, vdupq_n_f32(-2.12194440e-4f)));
  float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
  p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(1.3981999507e-3f));
  p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(8.3334519073e-3f));
  p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(4.1665795894e-2f));
  p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(1.6666665459e-1f));
  p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(5.0000001201e-1f));
  p = vaddq_f32(vaddq_f32(vmulq_f32(vmulq_f32(p, r), r), r), vdupq_n_f32(1.0f));
  // n is integral, so the truncating conversion is exact, as int32_t(n) is.
  const int32x4_t bits = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
  return vmulq_f32(p, vreinterpretq_f32_s32(bits));
}

// The reference's "m < x ? x : m" (a NaN in x keeps m; vmaxq would not).
inline float32x4_t max_step(float32x4_t m, float32x4_t x) {
  return vbslq_f32(vcltq_f32(m, x), x, m);
}

float max_neon(const float* x, int64_t n) {
  float32x4_t m0 = vdupq_n_f32(x[0]), m1 = m0;
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    m0 = max_step(m0, vld1q_f32(x + j));
    m1 = max_step(m1, vld1q_f32(x + j + 4));
  }
  float lane[8];
  vst1q_f32(lane, m0);
  vst1q_f32(lane + 4, m1);
  return max_finish(lane, x, j, n);
}

double exp_sum_neon(const float* x, float shift, float* y, int64_t n) {
  const float32x4_t sh = vdupq_n_f32(shift);
  float64x2_t s[4];  // the reference's s[0..1], s[2..3], s[4..5], s[6..7]
  for (int k = 0; k < 4; ++k) s[k] = vdupq_n_f64(0.0);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    // Both loads before either store: y may alias x.
    const float32x4_t e0 = exp4(vsubq_f32(vld1q_f32(x + j), sh));
    const float32x4_t e1 = exp4(vsubq_f32(vld1q_f32(x + j + 4), sh));
    if (y) {
      vst1q_f32(y + j, e0);
      vst1q_f32(y + j + 4, e1);
    }
    s[0] = vaddq_f64(s[0], vcvt_f64_f32(vget_low_f32(e0)));
    s[1] = vaddq_f64(s[1], vcvt_high_f64_f32(e0));
    s[2] = vaddq_f64(s[2], vcvt_f64_f32(vget_low_f32(e1)));
    s[3] = vaddq_f64(s[3], vcvt_high_f64_f32(e1));
  }
  double lanes[8];
  for (int k = 0; k < 4; ++k) vst1q_f64(lanes + 2 * k, s[k]);
  const int64_t left = n - j;
  if (left > 0) {
    float in[8] = {}, e[8];
    std::memcpy(in, x + j, size_t(left) * sizeof(float));
    vst1q_f32(e, exp4(vsubq_f32(vld1q_f32(in), sh)));
    vst1q_f32(e + 4, exp4(vsubq_f32(vld1q_f32(in + 4), sh)));
    if (y) std::memcpy(y + j, e, size_t(left) * sizeof(float));
    for (int64_t t = 0; t < left; ++t) lanes[0] += double(e[t]);
  }
  return sum_lanes(lanes);
}

void scale_neon(float* x, float s, int64_t n) {
  const float32x4_t v = vdupq_n_f32(s);
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) vst1q_f32(x + j, vmulq_f32(vld1q_f32(x + j), v));
  for (; j < n; ++j) x[j] *= s;  // one multiply each, as in the vector body
}

float32x4_t sigmoid4(float32x4_t g) {
  const float32x4_t one = vdupq_n_f32(1.0f);
  return vdivq_f32(one, vaddq_f32(one, exp4(vnegq_f32(g))));
}

inline float32x4_t swiglu4(float32x4_t g, float32x4_t u) {
  return vmulq_f32(vmulq_f32(g, sigmoid4(g)), u);
}

void swiglu_neon(const float* g, const float* u, float* o, int64_t f) {
  int64_t c = 0;
  for (; c + 4 <= f; c += 4) vst1q_f32(o + c, swiglu4(vld1q_f32(g + c), vld1q_f32(u + c)));
  if (c < f) {
    const size_t bytes = size_t(f - c) * sizeof(float);
    float gb[4] = {}, ub[4] = {}, ob[4];
    std::memcpy(gb, g + c, bytes);
    std::memcpy(ub, u + c, bytes);
    vst1q_f32(ob, swiglu4(vld1q_f32(gb), vld1q_f32(ub)));
    std::memcpy(o + c, ob, bytes);
  }
}

// du = (dy * g) * sig, dg = ((dy * u) * sig) * (1 + g * (1 - sig)).
inline void swiglu_backward4(const float* g, const float* u, const float* dy, float* dg,
                             float* du) {
  const float32x4_t one = vdupq_n_f32(1.0f);
  const float32x4_t gv = vld1q_f32(g), uv = vld1q_f32(u), d = vld1q_f32(dy);
  const float32x4_t sig = sigmoid4(gv);
  const float32x4_t slope = vaddq_f32(one, vmulq_f32(gv, vsubq_f32(one, sig)));
  vst1q_f32(du, vmulq_f32(vmulq_f32(d, gv), sig));
  vst1q_f32(dg, vmulq_f32(vmulq_f32(vmulq_f32(d, uv), sig), slope));
}

void swiglu_backward_neon(const float* g, const float* u, const float* dy, float* dg, float* du,
                          int64_t f) {
  int64_t c = 0;
  for (; c + 4 <= f; c += 4) swiglu_backward4(g + c, u + c, dy + c, dg + c, du + c);
  if (c < f) {
    const size_t bytes = size_t(f - c) * sizeof(float);
    float gb[4] = {}, ub[4] = {}, db[4] = {}, dgb[4], dub[4];
    std::memcpy(gb, g + c, bytes);
    std::memcpy(ub, u + c, bytes);
    std::memcpy(db, dy + c, bytes);
    swiglu_backward4(gb, ub, db, dgb, dub);
    std::memcpy(dg + c, dgb, bytes);
    std::memcpy(du + c, dub, bytes);
  }
}

// 4 pairs at a time, de-interleaved by vld2q into a (a0..a3) and b (b0..b3).
void rope_neon(float* x, int64_t width, int64_t hd, const float* c, const float* s, float sign) {
  const int64_t half = hd / 2;
  for (int64_t h0 = 0; h0 < width; h0 += hd) {
    float* xh = x + h0;
    int64_t i = 0;
    for (; i + 4 <= half; i += 4) {
      const float32x4x2_t v = vld2q_f32(xh + 2 * i);
      const float32x4_t cc = vld1q_f32(c + i);
      const float32x4_t si = vmulq_f32(vdupq_n_f32(sign), vld1q_f32(s + i));
      float32x4x2_t r;
      r.val[0] = vsubq_f32(vmulq_f32(v.val[0], cc), vmulq_f32(v.val[1], si));
      r.val[1] = vaddq_f32(vmulq_f32(v.val[0], si), vmulq_f32(v.val[1], cc));
      vst2q_f32(xh + 2 * i, r);
    }
    rope_pairs(xh, c, s, sign, i, half);
  }
}

}  // namespace

constexpr VecKernels kVecKernelsNeon = {max_neon,    exp_sum_neon,         scale_neon,
                                        swiglu_neon, swiglu_backward_neon, rope_neon};

}  // namespace ternorm::model::detail
