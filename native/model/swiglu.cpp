// SwiGLU: s = silu(gate) * up, silu(g) = g * sigmoid(g); the row kernels
// (vec_math_kernels.h) hold the formulas.
#include <algorithm>
#include <atomic>
#include <stdexcept>

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

void swiglu_quantize_forward(Precision p, const float* gu, int64_t n, int64_t f, float* s,
                             int8_t* q, float* scales, const Exec& ex) {
  const detail::VecKernels k = detail::vec_kernels(ex.isa);
  const Exec one{ex.isa, nullptr, 1};
  const int64_t stride = ternary::padded_cols(f);
  const int64_t per_row = p == Precision::TernaryBlockAct ? ternary::act_blocks(f) : 1;
  std::atomic<bool> failed{false};
  // Rows quantised kRows at a time, while they are in L1, the call's setup shared.
  constexpr int64_t kRows = 4;
  parallel_ranges(ex, n, 8, [&](int64_t t0, int64_t t1) {
    for (int64_t r0 = t0; r0 < t1; r0 += kRows) {
      const int64_t r1 = std::min(t1, r0 + kRows);
      for (int64_t t = r0; t < r1; ++t) k.swiglu(gu + t * 2 * f, gu + t * 2 * f + f, s + t * f, f);
      try {
        quantize_input(p, s + r0 * f, r1 - r0, f, q + r0 * stride, scales + r0 * per_row, one);
      } catch (const std::invalid_argument&) {
        failed = true;  // named below, by the whole-matrix call's own error
      }
    }
  });
  // Only on bad input: the unfused call throws the error it would have (the first bad row).
  if (failed) quantize_input(p, s, n, f, q, scales, ex);
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
