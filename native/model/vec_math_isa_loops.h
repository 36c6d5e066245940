// The ISA-free ends of the SIMD element-wise kernels: what happens after the
// vector loop has run the reference's 8 lanes (vec_math.h). Included INSIDE
// each ISA file's anonymous namespace, after <cstdint>. No STL.
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
