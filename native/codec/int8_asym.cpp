// int8 asymmetric, per tensor ("int8_asym").
//   params:  {scale, z}: z an integer with |z| <= 2^23, stored as a float.
//   payload: d uint8 codes q in [0, 255].
//   decode:  g = float(q - z) * scale   (q - z is an exact integer in float,
//            |q - z| < 2^24; then one float multiply)
// The 256 levels span [min g, max g] instead of [-max|g|, max|g|]: for gains
// near 1 (say 0.97..1.03) the step is (max - min) / 255, ~30x finer than
// int8_per_tensor's max|g| / 127.
//
// Why the zero point is not limited to 0..255: the usual convention keeps z
// inside the code range so that 0.0 is exactly representable (exact zero
// padding for activations). Gains never need an exact 0 and never contain it;
// forcing 0 into the range would stretch it to [0, 1.03] and waste nearly all
// levels. z is instead bounded by 2^23 so q - z stays exact; the encoder's
// floor on the scale (max|g| * 2^-22) guarantees that.
//
// Encoder: lo = min g, hi = max g, scale = max((hi - lo) / 255, max|g| 2^-22)
// rounded up to a float with 255 scale >= hi - lo; z = round(-lo / scale);
// q = clamp(round(g / scale) + z, 0, 255). Then (-z) scale is within scale/2
// of lo and (255 - z) scale >= hi - scale/2, so every |g - g'| <= scale / 2.
// Zero range: all gains c != 0 gives scale = |c| 2^-22, z = -c / scale = -+2^22
// and g' = c exactly; all gains 0 gives scale = z = q = 0.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "codec.h"
#include "decoders.h"
#include "util.h"

namespace ternorm::codec {

namespace {
constexpr double kMaxZero = 8388608.0;  // 2^23
}  // namespace

size_t int8_asym_payload_bytes(const norm::GainView& g) { return size_t(g.d); }

bool int8_asym_params_ok(const norm::GainView& g) {
  if (g.n_params != 2) return false;
  const float z = g.params[1];
  return z == std::floor(z) && std::fabs(double(z)) <= kMaxZero;
}

void int8_asym_decode(const norm::GainView& g, float* out) {
  const uint8_t* q = static_cast<const uint8_t*>(g.data);
  const float scale = g.params[0], z = g.params[1];
  for (int64_t i = 0; i < g.d; ++i) out[i] = (float(q[i]) - z) * scale;
}

EncodedGain encode_int8_asym(const float* g, int64_t d) {
  detail::check_gains("encode int8_asym", g, d, true);
  double lo = g[0], hi = g[0], m = 0;
  for (int64_t i = 0; i < d; ++i) {
    lo = std::min(lo, double(g[i]));
    hi = std::max(hi, double(g[i]));
    m = std::max(m, std::fabs(double(g[i])));
  }
  const double range = hi - lo;  // exact enough: both are floats <= 2^64 in magnitude
  float scale = detail::scale_covering(std::max(range / 255.0, std::ldexp(m, -22)), 1);
  while (double(scale) * 255 < range) scale = std::nextafter(scale, INFINITY);
  EncodedGain e;
  e.scheme = norm::GainScheme::Int8Asym;
  e.d = d;
  e.payload.resize(size_t(d));
  if (scale == 0) {  // every gain is 0
    e.params = {0.0f, 0.0f};
    return e;
  }
  const double z = detail::round_half_away(-lo / scale);  // |z| <= 2^22 + 1 by the floor
  e.params = {scale, float(z)};
  for (int64_t i = 0; i < d; ++i) {
    const double q = detail::round_half_away(double(g[i]) / scale) + z;
    e.payload[size_t(i)] = uint8_t(std::min(255.0, std::max(0.0, q)));
  }
  return e;
}

}  // namespace ternorm::codec
