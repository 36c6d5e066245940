// The ISA-free ends of the SIMD element-wise kernels: what happens after the
// vector loop has run the reference's 8 lanes (vec_math.h), and the RoPE
// formula. Included INSIDE each ISA file's (and the reference's) anonymous
// namespace, after <cstdint>. No STL.
#pragma once

// max_of's end: lane[0..8) hold the lanes after x[0, j); the rest of x goes
// into lane 0, then the lanes are combined in order.
inline float max_finish(float* lane, const float* x, int64_t j, int64_t n) {
  for (; j < n; ++j) lane[0] = lane[0] < x[j] ? x[j] : lane[0];
  float r = lane[0];
  for (int k = 1; k < 8; ++k) r = r < lane[k] ? lane[k] : r;
  return r;
}

// sum_f64's end: the 8 double lanes in its fixed tree.
inline double sum_lanes(const double* s) {
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

// RoPE on pairs i0 .. half-1 of one head (x: its 2 * half values): the
// reference, and the tail of the SIMD kernels. The SIMD kernels do the same
// products; the odd lane's sum is b c + a si there (addition commutes, so the
// bits are the same).
inline void rope_pairs(float* x, const float* c, const float* s, float sign, int64_t i0,
                       int64_t half) {
  for (int64_t i = i0; i < half; ++i) {
    const float a = x[2 * i], b = x[2 * i + 1];
    const float si = sign * s[i];
    x[2 * i] = a * c[i] - b * si;
    x[2 * i + 1] = a * si + b * c[i];
  }
}
