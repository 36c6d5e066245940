// Delta from 1.0: symmetric quantisation of g - 1 ("int8_delta", "int4_delta").
// An adapter's gains start at 1.0 and move a little per user; quantising the
// move instead of the gain spends the levels on the signal: for deltas within
// +-0.03 the int8 step is 0.03 / 127 instead of int8_per_tensor's 1.03 / 127.
// A gain that never moved (g = 1) decodes to exactly 1.
//   params:  {scale}
//   payload: int8_delta: d int8, q in [-127, 127] from the encoder;
//            int4_delta: ceil(d / 2) bytes of two's complement nibbles
//            (util.h layout), q in [-7, 7] from the encoder; an odd d's
//            padding nibble must be 0. Decoders take every code (-128, -8 too).
//   decode:  g = 1.0f + float(q) * scale   (a float multiply, then a float add)
// Encoder (codec.h): scale = clip max|g - 1| / qmax rounded up to a float,
// q = clamp(round((g - 1) / scale), -qmax, qmax).
// Sizes: int8 4 + d bytes, int4 4 + ceil(d / 2) bytes (params + payload).
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "codec.h"
#include "decoders.h"
#include "util.h"

namespace ternorm::codec {

bool delta_params_ok(const norm::GainView& g) { return g.n_params == 1; }

size_t delta8_payload_bytes(const norm::GainView& g) { return size_t(g.d); }

void delta8_decode(const norm::GainView& g, float* out) {
  const int8_t* q = static_cast<const int8_t*>(g.data);
  const float scale = g.params[0];
  for (int64_t i = 0; i < g.d; ++i) out[i] = 1.0f + float(q[i]) * scale;
}

size_t delta4_payload_bytes(const norm::GainView& g) { return detail::nibble_bytes(g.d); }

void delta4_decode(const norm::GainView& g, float* out) {
  detail::check_nibble_padding(g);
  const uint8_t* p = static_cast<const uint8_t*>(g.data);
  const float scale = g.params[0];
  for (int64_t i = 0; i < g.d; ++i) {
    const int q = int(detail::get_nibble(p, i) ^ 8u) - 8;  // sign-extend the nibble
    out[i] = 1.0f + float(q) * scale;
  }
}

EncodedGain encode_delta(int bits, const float* g, int64_t d, double clip) {
  const char* what = bits == 4 ? "encode int4_delta" : "encode int8_delta";
  if (bits != 4 && bits != 8)
    throw std::invalid_argument("encode delta: bits = " + std::to_string(bits) +
                                ", expected 4 or 8");
  detail::check_gains(what, g, d, true);
  if (!(clip > 0.0 && clip <= 1.0))
    throw std::invalid_argument(std::string(what) + ": clip = " + std::to_string(clip) +
                                ", expected 0 < clip <= 1");
  const int qmax = bits == 4 ? 7 : 127;
  double m = 0;
  for (int64_t i = 0; i < d; ++i) m = std::max(m, std::fabs(double(g[i]) - 1.0));
  const float scale = detail::scale_covering(clip * m, qmax);
  EncodedGain e;
  e.scheme = bits == 4 ? norm::GainScheme::Int4Delta : norm::GainScheme::Int8Delta;
  e.d = d;
  e.params = {scale};
  e.payload.assign(bits == 4 ? detail::nibble_bytes(d) : size_t(d), 0);
  for (int64_t i = 0; i < d; ++i) {
    const double r = scale > 0 ? detail::round_half_away((double(g[i]) - 1.0) / scale) : 0.0;
    const int q = int(std::min(double(qmax), std::max(double(-qmax), r)));
    if (bits == 4)
      detail::put_nibble(e.payload.data(), i, unsigned(q) & 0xfu);
    else
      e.payload[size_t(i)] = uint8_t(int8_t(q));
  }
  return e;
}

}  // namespace ternorm::codec
