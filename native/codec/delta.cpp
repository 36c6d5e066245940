// Delta from 1.0: symmetric quantisation of g - 1 ("int8_delta", "int4_delta",
// "int3_delta", "int2_delta"), its 1-bit form ("sign1_delta") and 0 bits ("unit").
// An adapter's gains start at 1.0 and move a little per user; quantising the
// move instead of the gain spends the levels on the signal: for deltas within
// +-0.03 the int8 step is 0.03 / 127 instead of int8_per_tensor's 1.03 / 127.
// A gain that never moved (g = 1) decodes to exactly 1.
//   params:  {scale}
//   payload: int8_delta: d int8, q in [-127, 127] from the encoder;
//            int4_delta: ceil(d / 2) bytes of two's complement nibbles
//            (util.h layout), q in [-7, 7] from the encoder; an odd d's
//            padding nibble must be 0;
//            int3_delta / int2_delta: ceil(3d / 8) / ceil(2d / 8) bytes of
//            two's complement bit fields (util.h bit packing), q in [-3, 3] /
//            [-1, 1] from the encoder; the padding bits must be 0.
//            Decoders take every code (-128, -8, -4, -2 too).
//   decode:  g = 1.0f + float(q) * scale   (a float multiply, then a float add)
// sign1_delta: params {scale >= 0}; ceil(d / 8) bytes, bit i = 1 when gain i
//   is below 1 (util.h bit packing, padding bits 0); g = 1.0f + scale or
//   1.0f - scale. Encoder: scale = mean |g - 1| (codec.h says why).
// unit: no params, no payload; g = 1.0f.
// Encoder (codec.h): scale = clip max|g - 1| / qmax rounded up to a float,
// q = clamp(round((g - 1) / scale), -qmax, qmax).
// Sizes (params + payload): int8 4 + d, int4 4 + ceil(d / 2), int3 4 + ceil(3d / 8),
// int2 4 + ceil(d / 4), sign1 4 + ceil(d / 8), unit 0 bytes.
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

namespace {

// The b-bit layouts (b = 3, 2): two's complement fields, LSB first.
void delta_bits_decode(const norm::GainView& g, float* out, int b) {
  detail::check_bit_padding(g, uint64_t(g.d) * uint64_t(b));
  const uint8_t* p = static_cast<const uint8_t*>(g.data);
  const float scale = g.params[0];
  for (int64_t i = 0; i < g.d; ++i) {
    const int64_t q = detail::sign_extend(detail::get_bits(p, uint64_t(i) * b, b), b);
    out[i] = 1.0f + float(q) * scale;
  }
}

}  // namespace

size_t delta3_payload_bytes(const norm::GainView& g) {
  return detail::bit_bytes(3 * uint64_t(g.d));
}
void delta3_decode(const norm::GainView& g, float* out) { delta_bits_decode(g, out, 3); }
size_t delta2_payload_bytes(const norm::GainView& g) {
  return detail::bit_bytes(2 * uint64_t(g.d));
}
void delta2_decode(const norm::GainView& g, float* out) { delta_bits_decode(g, out, 2); }

size_t sign1_payload_bytes(const norm::GainView& g) { return detail::bit_bytes(uint64_t(g.d)); }
bool sign1_params_ok(const norm::GainView& g) { return g.n_params == 1 && g.params[0] >= 0; }
void sign1_decode(const norm::GainView& g, float* out) {
  detail::check_bit_padding(g, uint64_t(g.d));
  const uint8_t* p = static_cast<const uint8_t*>(g.data);
  const float scale = g.params[0];
  for (int64_t i = 0; i < g.d; ++i)
    out[i] = detail::get_bits(p, uint64_t(i), 1) ? 1.0f - scale : 1.0f + scale;
}

size_t unit_payload_bytes(const norm::GainView&) { return 0; }
bool unit_params_ok(const norm::GainView& g) { return g.n_params == 0; }
void unit_decode(const norm::GainView& g, float* out) {
  for (int64_t i = 0; i < g.d; ++i) out[i] = 1.0f;
}

EncodedGain encode_unit(int64_t d) {
  if (d <= 0 || d > kMaxD)
    throw std::invalid_argument("encode unit: d = " + std::to_string(d) +
                                ", expected 0 < d <= " + std::to_string(kMaxD));
  EncodedGain e;
  e.scheme = norm::GainScheme::Unit;
  e.d = d;
  return e;
}

EncodedGain encode_sign1(const float* g, int64_t d) {
  detail::check_gains("encode sign1_delta", g, d, true);
  double sum = 0;
  for (int64_t i = 0; i < d; ++i) sum += std::fabs(double(g[i]) - 1.0);
  EncodedGain e;
  e.scheme = norm::GainScheme::Sign1Delta;
  e.d = d;
  e.params = {float(sum / double(d))};
  e.payload.assign(detail::bit_bytes(uint64_t(d)), 0);
  for (int64_t i = 0; i < d; ++i)
    if (g[i] < 1.0f) detail::put_bits(e.payload.data(), uint64_t(i), 1, 1);
  return e;
}

EncodedGain encode_delta(int bits, const float* g, int64_t d, double clip) {
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
    throw std::invalid_argument("encode delta: bits = " + std::to_string(bits) +
                                ", expected 2, 3, 4 or 8");
  const std::string name = "encode int" + std::to_string(bits) + "_delta";
  const char* what = name.c_str();
  detail::check_gains(what, g, d, true);
  if (!(clip > 0.0 && clip <= 1.0))
    throw std::invalid_argument(std::string(what) + ": clip = " + std::to_string(clip) +
                                ", expected 0 < clip <= 1");
  const int qmax = (1 << (bits - 1)) - 1;
  double m = 0;
  for (int64_t i = 0; i < d; ++i) m = std::max(m, std::fabs(double(g[i]) - 1.0));
  const float scale = detail::scale_covering(clip * m, qmax);
  EncodedGain e;
  e.scheme = bits == 8   ? norm::GainScheme::Int8Delta
             : bits == 4 ? norm::GainScheme::Int4Delta
             : bits == 3 ? norm::GainScheme::Int3Delta
                         : norm::GainScheme::Int2Delta;
  e.d = d;
  e.params = {scale};
  e.payload.assign(bits == 8 ? size_t(d) : detail::bit_bytes(uint64_t(d) * uint64_t(bits)), 0);
  for (int64_t i = 0; i < d; ++i) {
    const double r = scale > 0 ? detail::round_half_away((double(g[i]) - 1.0) / scale) : 0.0;
    const int q = int(std::min(double(qmax), std::max(double(-qmax), r)));
    if (bits == 8)
      e.payload[size_t(i)] = uint8_t(int8_t(q));
    else
      detail::put_bits(e.payload.data(), uint64_t(i) * uint64_t(bits), bits,
                       uint64_t(q) & ((1u << bits) - 1u));
  }
  return e;
}

}  // namespace ternorm::codec
