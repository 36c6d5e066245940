// The scalar reference of the RMSNorm row kernels: the canonical order of
// rmsnorm_kernels.h written out plainly. Every ISA path is tested bit for bit
// against these.
#include <cmath>

#include "rmsnorm_kernels.h"

namespace ternorm::norm {
namespace {

// lane[i] = lane[i] + lane[i + s] for s = 8, 4, 2, 1.
float fold_lanes(float* lane) {
  for (int s = kLanes / 2; s >= 1; s /= 2)
    for (int i = 0; i < s; ++i) lane[i] = lane[i] + lane[i + s];
  return lane[0];
}

float sumsq_scalar(const float* x, int64_t d) {
  float lane[kLanes] = {};
  for (int64_t c = 0; c < d; ++c) lane[c % kLanes] += x[c] * x[c];
  return fold_lanes(lane);
}

void scale_scalar(const float* x, int64_t d, float inv, const float* wg, float* y) {
  for (int64_t c = 0; c < d; ++c) y[c] = (x[c] * inv) * wg[c];
}

float absmax_scalar(const float* x, int64_t d, float inv, const float* wg) {
  float m = 0.0f;
  for (int64_t c = 0; c < d; ++c) {
    const float a = std::fabs((x[c] * inv) * wg[c]);
    if (a > m) m = a;
  }
  return m;
}

void quantize_scalar(const float* x, int64_t d, int64_t padded, float inv, const float* wg,
                     float pre, float iscale, int8_t* q) {
  for (int64_t c = 0; c < d; ++c) {
    float r = std::nearbyint((((x[c] * inv) * wg[c]) * pre) * iscale);
    r = r < -127.0f ? -127.0f : (r > 127.0f ? 127.0f : r);
    q[c] = int8_t(r);
  }
  for (int64_t c = d; c < padded; ++c) q[c] = 0;
}

float dot_scalar(const float* dy, const float* wg, const float* x, int64_t d) {
  float lane[kLanes] = {};
  for (int64_t c = 0; c < d; ++c) lane[c % kLanes] += (dy[c] * wg[c]) * x[c];
  return fold_lanes(lane);
}

void dx_scalar(const float* dy, const float* wg, const float* x, int64_t d, float k, float inv,
               float* dx) {
  for (int64_t c = 0; c < d; ++c) dx[c] = ((dy[c] * wg[c]) - (x[c] * k)) * inv;
}

void dgain_scalar(const float* x, const float* dy, const float* inv, int64_t n, int64_t d,
                  const float* w, int64_t c0, int64_t c1, float* dgain) {
  for (int64_t c = c0; c < c1; ++c) dgain[c] = 0.0f;
  for (int64_t t = 0; t < n; ++t) {
    const float* xr = x + t * d;
    const float* dyr = dy + t * d;
    for (int64_t c = c0; c < c1; ++c) dgain[c] += dyr[c] * (xr[c] * inv[t]);
  }
  for (int64_t c = c0; c < c1; ++c) dgain[c] = dgain[c] * w[c];
}

}  // namespace

constexpr RmsKernels kRmsKernelsScalar = {sumsq_scalar,    scale_scalar, absmax_scalar,
                                          quantize_scalar, dot_scalar,   dx_scalar,
                                          dgain_scalar};

}  // namespace ternorm::norm
