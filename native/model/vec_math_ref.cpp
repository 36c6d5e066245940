// Scalar reference of the element-wise row kernels: the vec_math.h helpers
// and the SwiGLU formulas as plain loops.
#include "vec_math.h"
#include "vec_math_kernels.h"

namespace ternorm::model::detail {
namespace {

#include "vec_math_isa_loops.h"

double exp_sum_ref(const float* x, float shift, float* y, int64_t n) {
  if (y) {
    exp_shifted(x, shift, y, n);
    return sum_f64(y, n);
  }
  double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // sum_f64's lanes, without storing e
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; ++k) s[k] += double(exp_approx(x[j + k] - shift));
  for (; j < n; ++j) s[0] += double(exp_approx(x[j] - shift));
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

void scale_ref(float* x, float s, int64_t n) {
  for (int64_t j = 0; j < n; ++j) x[j] *= s;
}

void swiglu_ref(const float* g, const float* u, float* o, int64_t f) {
  for (int64_t c = 0; c < f; ++c) {
    const float sig = 1.0f / (1.0f + exp_approx(-g[c]));
    o[c] = g[c] * sig * u[c];
  }
}

void swiglu_backward_ref(const float* g, const float* u, const float* dy, float* dg, float* du,
                         int64_t f) {
  for (int64_t c = 0; c < f; ++c) {
    const float sig = 1.0f / (1.0f + exp_approx(-g[c]));
    du[c] = dy[c] * g[c] * sig;
    dg[c] = dy[c] * u[c] * sig * (1.0f + g[c] * (1.0f - sig));
  }
}

void rope_ref(float* x, int64_t width, int64_t hd, const float* c, const float* s, float sign) {
  for (int64_t h0 = 0; h0 < width; h0 += hd) rope_pairs(x + h0, c, s, sign, 0, hd / 2);
}

}  // namespace

constexpr VecKernels kVecKernelsScalar = {max_of,     exp_sum_ref,         scale_ref,
                                          swiglu_ref, swiglu_backward_ref, rope_ref};

}  // namespace ternorm::model::detail
