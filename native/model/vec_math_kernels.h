// Internal: the per-ISA row kernels of the element-wise math (softmax pieces,
// SwiGLU), one set per path, picked by vec_kernels() (vec_math.cpp, the one
// dispatch point). Every path does exactly the float operations of the scalar
// reference (vec_math.h) in the same order, so all paths give the same bits.
// POD-only header (ISA files include it).
#pragma once
#include <cstdint>

#include "../cpu/isa.h"

namespace ternorm::model::detail {

struct VecKernels {
  // max_of (vec_math.h): 8 lanes, each updated in index order, then combined.
  float (*max)(const float* x, int64_t n);
  // e[j] = exp_approx(x[j] - shift); returns sum_f64(e) and stores e in y
  // when y is not null (y may alias x).
  double (*exp_sum)(const float* x, float shift, float* y, int64_t n);
  // x[j] *= s.
  void (*scale)(float* x, float s, int64_t n);
  // o[c] = g[c] * sig * u[c], sig = 1 / (1 + exp_approx(-g[c])) (swiglu.cpp).
  void (*swiglu)(const float* g, const float* u, float* o, int64_t f);
  // du[c] = dy[c] * g[c] * sig, dg[c] = dy[c] * u[c] * sig * (1 + g[c] * (1 - sig)).
  void (*swiglu_backward)(const float* g, const float* u, const float* dy, float* dg, float* du,
                          int64_t f);
  // RoPE on the width / hd heads of x: in each, pair (2i, 2i+1) = (a, b)
  // becomes (a c[i] - b si, a si + b c[i]), si = sign * s[i] (rope_pairs in
  // vec_math_isa_loops.h; separate products, no FMA).
  void (*rope)(float* x, int64_t width, int64_t hd, const float* c, const float* s, float sign);
};

// The kernels of a path, from vec_math.cpp's table (cpu/dispatch.h; throws
// std::invalid_argument on a path this build or CPU cannot run).
const VecKernels& vec_kernels(Isa isa);

// One per path, defined in its ISA file.
extern const VecKernels kVecKernelsScalar, kVecKernelsAvx2, kVecKernelsAvx512, kVecKernelsNeon;

// The AVX2 max, which the AVX-512 path shares: a 16-lane max would not keep
// the reference's 8 lanes.
float max_avx2(const float* x, int64_t n);

}  // namespace ternorm::model::detail
