// The bet's reference points: raw f32 and f16, and int8 per-tensor symmetric.
// Their layouts and decoders are the kernel's own (norm/gain_codec.{h,cpp});
// this file holds the encoders.
//   f32:             payload d floats;  no params
//   f16:             payload d binary16; no params
//   int8_per_tensor: payload d int8;    params {scale}; g = q * scale
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "codec.h"
#include "util.h"

namespace ternorm::codec {

EncodedGain encode_f32(const float* g, int64_t d) {
  detail::check_gains("encode f32", g, d, false);
  EncodedGain e;
  e.scheme = norm::GainScheme::F32;
  e.d = d;
  e.payload.resize(size_t(d) * sizeof(float));
  std::memcpy(e.payload.data(), g, e.payload.size());
  return e;
}

EncodedGain encode_f16(const float* g, int64_t d) {
  detail::check_gains("encode f16", g, d, false);
  EncodedGain e;
  e.scheme = norm::GainScheme::F16;
  e.d = d;
  e.payload.resize(size_t(d) * sizeof(uint16_t));
  for (int64_t i = 0; i < d; ++i) {
    const uint16_t h = norm::f32_to_f16(g[i]);
    if ((h & 0x7c00u) == 0x7c00u)
      throw std::invalid_argument("encode f16: gain[" + std::to_string(i) +
                                  "] = " + std::to_string(g[i]) +
                                  " overflows binary16, expected |g| < 65520");
    std::memcpy(e.payload.data() + 2 * i, &h, sizeof h);
  }
  return e;
}

EncodedGain encode_int8_per_tensor(const float* g, int64_t d) {
  detail::check_gains("encode int8_per_tensor", g, d, true);
  double m = 0;
  for (int64_t i = 0; i < d; ++i) m = std::max(m, std::fabs(double(g[i])));
  const float scale = detail::scale_covering(m, 127);
  EncodedGain e;
  e.scheme = norm::GainScheme::Int8PerTensor;
  e.d = d;
  e.params = {scale};
  e.payload.resize(size_t(d));
  for (int64_t i = 0; i < d; ++i) {
    // |g| <= 127 scale, so the clamp only guards the rounding of the quotient.
    const double q = scale > 0 ? detail::round_half_away(double(g[i]) / scale) : 0.0;
    e.payload[size_t(i)] = uint8_t(int8_t(std::min(127.0, std::max(-127.0, q))));
  }
  return e;
}

}  // namespace ternorm::codec
