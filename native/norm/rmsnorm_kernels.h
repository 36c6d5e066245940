// Internals of the fused RMSNorm-with-gain family: the row kernels each ISA
// path implements, and the canonical arithmetic they all reproduce bit for bit.
// Included by the ISA files: plain declarations only.
//
// Canonical order (every path, every operation below):
//  * A row reduction sum_c v[c] keeps kLanes = 16 partial sums, lane i adding
//    v[i], v[i+16], v[i+32], ... in that order, starting from +0. Then a fixed
//    pairwise tree: for s = 8, 4, 2, 1: lane[i] = lane[i] + lane[i + s] (i < s);
//    the sum is lane[0]. AVX2 keeps the lanes in 2 ymm, AVX-512 in 1 zmm, NEON
//    in 4 q registers; the tree is the natural high-half + low-half folding.
//  * Element-wise products are evaluated left to right exactly as written,
//    never fused (no FMA: the kernels avoid fma intrinsics and the build uses
//    -ffp-contract=off). Square roots and divisions happen once per row in the
//    generic driver (rmsnorm.cpp), correctly rounded.
//  * Rounding to integers is to nearest, ties to even (the default FP
//    environment is assumed, as everywhere in the core).
// So the fp32 and int8 outputs and the backward gradients are identical on
// every path. The dgain reduction runs over tokens per channel, t = 0, 1, ...
// in order, so it is also independent of how threads split the channels.
#pragma once
#include <cstdint>

namespace ternorm::norm {

constexpr int kLanes = 16;

struct RmsKernels {
  // Sum of x[c]^2 over c < d, canonical order.
  float (*sumsq)(const float* x, int64_t d);
  // y[c] = (x[c] * inv) * wg[c].
  void (*scale)(const float* x, int64_t d, float inv, const float* wg, float* y);
  // max over c < d of |(x[c] * inv) * wg[c]| (order-free: a max is exact).
  float (*absmax)(const float* x, int64_t d, float inv, const float* wg);
  // q[c] = clamp(round_half_even((((x[c] * inv) * wg[c]) * pre) * iscale), -127, 127)
  // for c < d, q[c] = 0 for d <= c < padded (a multiple of 16). pre and iscale
  // are the row parameters of ternary::quantize_activations (pre = 1, or 2^64
  // for rows with absmax < 2^-64 so that iscale stays finite).
  void (*quantize)(const float* x, int64_t d, int64_t padded, float inv, const float* wg, float pre,
                   float iscale, int8_t* q);
  // Sum of (dy[c] * wg[c]) * x[c] over c < d, canonical order.
  float (*dot)(const float* dy, const float* wg, const float* x, int64_t d);
  // dx[c] = ((dy[c] * wg[c]) - (x[c] * k)) * inv.
  void (*dx)(const float* dy, const float* wg, const float* x, int64_t d, float k, float inv,
             float* dx);
  // For c0 <= c < c1: dgain[c] = acc[c] * w[c], acc[c] = sum over t < n (in
  // order, from +0) of dy[t*d + c] * (x[t*d + c] * inv[t]).
  void (*dgain)(const float* x, const float* dy, const float* inv, int64_t n, int64_t d,
                const float* w, int64_t c0, int64_t c1, float* dgain);
};

// One per path, defined in its ISA file; rmsnorm.cpp's table picks it
// (cpu/dispatch.h).
extern const RmsKernels kRmsKernelsScalar, kRmsKernelsAvx2, kRmsKernelsAvx512, kRmsKernelsNeon;

}  // namespace ternorm::norm
