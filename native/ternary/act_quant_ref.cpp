// Scalar reference of the per-token int8 activation quantiser.
#include <cmath>
#include <cstring>

#include "act_quant_kernels.h"

namespace ternorm::ternary::detail {
namespace {

int64_t rows_ref(const float* x, int64_t n, int64_t cols, int64_t qstride, int8_t* q, float* scales,
                 bool recip_scale) {
  for (int64_t t = 0; t < n; ++t) {
    const float* xr = x + t * cols;
    int8_t* qr = q + t * qstride;
    uint32_t max_bits = 0;
    for (int64_t c = 0; c < cols; ++c) {
      uint32_t bits;
      std::memcpy(&bits, &xr[c], 4);
      bits &= kAbsMask;
      if (bits > max_bits) max_bits = bits;
    }
    if (max_bits >= kNonFiniteBits) return t;
    std::memset(qr, 0, size_t(qstride));
    if (max_bits == 0) {
      scales[t] = 0.0f;
      continue;
    }
    float absmax;
    std::memcpy(&absmax, &max_bits, 4);
    const ActRowParams p = act_row_params(absmax);
    scales[t] = recip_scale ? act_recip_scale(p) : p.scale;
    for (int64_t c = 0; c < cols; ++c) {
      float v = std::nearbyint((xr[c] * p.pre) * p.inv);
      v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
      qr[c] = int8_t(v);
    }
  }
  return -1;
}

}  // namespace

constexpr ActQuantKernels kActQuantKernelsScalar = {rows_ref};

}  // namespace ternorm::ternary::detail
