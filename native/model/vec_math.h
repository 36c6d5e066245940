// Element-wise helpers for the softmaxes (attention, cross-entropy) and
// SwiGLU: the scalar reference of the row kernels in vec_math_kernels.h,
// whose SIMD paths repeat these operations exactly. Written so the compiler
// can also vectorise them in generic code: no libm
// calls, no floating-point compares in the loops (those would stop GCC's
// if-conversion under the default -ftrapping-math), fixed summation order.
// Pure float arithmetic without FMA contraction: the same bits on every run,
// thread count and ISA path.
#pragma once
#include <cstdint>
#include <cstring>

namespace ternorm::model {

// exp(x) within 1.5 ulp on [-87, 88] (Cephes expf: x = n ln2 + r, degree-6
// polynomial for e^r, 2^n built in the exponent bits). Inputs are clamped to
// that range first (below: ~1.6e-38 instead of a denormal or 0; above:
// ~1.65e38 instead of inf), which no softmax or sigmoid here can tell apart.
inline float exp_approx(float x) {
  // Clamp through an order-preserving int view of the float (int min/max,
  // which vectorise without float compares).
  int32_t xi;
  std::memcpy(&xi, &x, 4);
  int32_t oi = xi ^ ((xi >> 31) & 0x7FFFFFFF);
  constexpr int32_t kLo = int32_t(0xC2AE0000u) ^ 0x7FFFFFFF;  // -87.0f, ordered
  constexpr int32_t kHi = 0x42B00000;                         // 88.0f
  oi = oi < kLo ? kLo : oi;
  oi = oi > kHi ? kHi : oi;
  xi = oi ^ ((oi >> 31) & 0x7FFFFFFF);
  std::memcpy(&x, &xi, 4);
  // n = round(x / ln2) by the 1.5 * 2^23 trick, r = x - n ln2 in two parts.
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (int32_t(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

// max of x[0, n), n >= 1 (8 independent lanes, then combined in order).
inline float max_of(const float* x, int64_t n) {
  float m[8];
  for (int k = 0; k < 8; ++k) m[k] = x[0];
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; ++k) m[k] = m[k] < x[j + k] ? x[j + k] : m[k];
  for (; j < n; ++j) m[0] = m[0] < x[j] ? x[j] : m[0];
  float r = m[0];
  for (int k = 1; k < 8; ++k) r = r < m[k] ? m[k] : r;
  return r;
}

// y[j] = exp(x[j] - shift) (y may alias x).
inline void exp_shifted(const float* x, float shift, float* y, int64_t n) {
  for (int64_t j = 0; j < n; ++j) y[j] = exp_approx(x[j] - shift);
}

// sum of x[0, n) in double (8 lanes in a fixed order).
inline double sum_f64(const float* x, int64_t n) {
  double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; ++k) s[k] += double(x[j + k]);
  for (; j < n; ++j) s[0] += double(x[j]);
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

}  // namespace ternorm::model
