// int8 symmetric with one scale per block of channels ("int8_group").
//   params:  {B, s_0, ..., s_{nb-1}}, B an integer in [1, d] stored as a float
//            (exact: d <= 2^24), nb = ceil(d / B); the last block holds
//            d - (nb - 1) B channels.
//   payload: d int8, q_i in [-127, 127] from the encoder (the decoder takes
//            all of -128..127).
//   decode:  g_i = float(q_i) * s_{i / B}   (one float multiply)
// Per block the int8_per_tensor rule: s = max|g in block| / 127 rounded up to
// a float, q = round(g / s). Error per gain <= s_block / 2.
// Size: 4 (1 + nb) bytes of params + d bytes of payload.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "codec.h"
#include "decoders.h"
#include "util.h"

namespace ternorm::codec {

namespace {
int64_t n_blocks(int64_t d, int64_t block) { return (d + block - 1) / block; }
}  // namespace

size_t int8_group_payload_bytes(const norm::GainView& g) { return size_t(g.d); }

bool int8_group_params_ok(const norm::GainView& g) {
  if (g.n_params < 2) return false;
  const float b = g.params[0];
  if (!(b >= 1.0f) || !(double(b) <= double(g.d)) || b != std::floor(b)) return false;
  return g.n_params == size_t(1 + n_blocks(g.d, int64_t(b)));
}

void int8_group_decode(const norm::GainView& g, float* out) {
  const int8_t* q = static_cast<const int8_t*>(g.data);
  const int64_t block = int64_t(g.params[0]);
  for (int64_t i = 0; i < g.d; ++i) out[i] = float(q[i]) * g.params[1 + i / block];
}

EncodedGain encode_int8_group(const float* g, int64_t d, int64_t block) {
  detail::check_gains("encode int8_group", g, d, true);
  if (block < 1 || block > kMaxD)
    throw std::invalid_argument("encode int8_group: block size " + std::to_string(block) +
                                ", expected 1 <= B <= " + std::to_string(kMaxD));
  block = std::min(block, d);  // one block of d: the canonical form, valid for the decoder
  const int64_t nb = n_blocks(d, block);
  EncodedGain e;
  e.scheme = norm::GainScheme::Int8Group;
  e.d = d;
  e.params.resize(size_t(1 + nb));
  e.params[0] = float(block);
  e.payload.resize(size_t(d));
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t i0 = b * block, i1 = std::min(d, i0 + block);
    double m = 0;
    for (int64_t i = i0; i < i1; ++i) m = std::max(m, std::fabs(double(g[i])));
    const float s = detail::scale_covering(m, 127);
    e.params[size_t(1 + b)] = s;
    for (int64_t i = i0; i < i1; ++i) {
      const double q = s > 0 ? detail::round_half_away(double(g[i]) / s) : 0.0;
      e.payload[size_t(i)] = uint8_t(int8_t(std::min(127.0, std::max(-127.0, q))));
    }
  }
  return e;
}

}  // namespace ternorm::codec
