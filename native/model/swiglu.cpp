// SwiGLU: s = silu(gate) * up, silu(g) = g * sigmoid(g); the row kernels
// (vec_math_kernels.h) hold the formulas.
#include "../cpu/thread_pool.h"
#include "layers.h"
#include "vec_math_kernels.h"

namespace ternorm::model {

void swiglu_forward(const float* gu, int64_t n, int64_t f, float* s, const Exec& ex) {
  const detail::VecKernels k = detail::vec_kernels(ex.isa);
  parallel_ranges(ex, n, 8, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) k.swiglu(gu + t * 2 * f, gu + t * 2 * f + f, s + t * f, f);
  });
}

void swiglu_backward(const float* gu, const float* ds, int64_t n, int64_t f, float* dgu,
                     const Exec& ex) {
  const detail::VecKernels k = detail::vec_kernels(ex.isa);
  parallel_ranges(ex, n, 8, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      k.swiglu_backward(gu + t * 2 * f, gu + t * 2 * f + f, ds + t * f, dgu + t * 2 * f,
                        dgu + t * 2 * f + f, f);
  });
}

}  // namespace ternorm::model
