// SwiGLU: s = silu(gate) * up, silu(g) = g * sigmoid(g).
#include "../cpu/thread_pool.h"
#include "layers.h"
#include "vec_math.h"

namespace ternorm::model {

void swiglu_forward(const float* gu, int64_t n, int64_t f, float* s, const Exec& ex) {
  parallel_ranges(ex, n, 8, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* g = gu + t * 2 * f;
      const float* u = g + f;
      float* o = s + t * f;
      for (int64_t c = 0; c < f; ++c) {
        const float sig = 1.0f / (1.0f + exp_approx(-g[c]));
        o[c] = g[c] * sig * u[c];
      }
    }
  });
}

// d silu(g)/dg = sig * (1 + g * (1 - sig)).
void swiglu_backward(const float* gu, const float* ds, int64_t n, int64_t f, float* dgu,
                     const Exec& ex) {
  parallel_ranges(ex, n, 8, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* g = gu + t * 2 * f;
      const float* u = g + f;
      const float* dy = ds + t * f;
      float* dg = dgu + t * 2 * f;
      float* du = dg + f;
      for (int64_t c = 0; c < f; ++c) {
        const float sig = 1.0f / (1.0f + exp_approx(-g[c]));
        du[c] = dy[c] * g[c] * sig;
        dg[c] = dy[c] * u[c] * sig * (1.0f + g[c] * (1.0f - sig));
      }
    }
  });
}

}  // namespace ternorm::model
