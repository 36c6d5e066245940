// Helpers shared by the codec families (internal to native/codec): input
// checks, the one rounding rule, float scales rounded up, nibble packing.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "codec.h"

namespace ternorm::codec::detail {

// Throws std::invalid_argument unless g is non-null, 0 < d <= kMaxD and every
// gain is finite (and, when bounded, |g| <= kMaxGainMagnitude). what names the
// encoder in the message.
void check_gains(const char* what, const float* g, int64_t d, bool bounded);

// The codec's rounding: half away from zero, in double.
inline double round_half_away(double x) { return std::round(x); }

// The smallest float s with s * n >= a (a >= 0 finite, n > 0 a small
// integer): a / n rounded up to a float, so n levels of s cover a.
inline float scale_covering(double a, double n) {
  float s = float(a / n);
  while (double(s) * n < a) s = std::nextafter(s, INFINITY);
  return s;
}

// Nibble packing shared by the 4-bit layouts: value i sits in byte i / 2, the
// low nibble for even i, the high nibble for odd i; an odd d leaves the high
// nibble of the last byte zero.
inline size_t nibble_bytes(int64_t d) { return size_t((d + 1) / 2); }
inline void put_nibble(uint8_t* p, int64_t i, unsigned v) {
  p[i / 2] = uint8_t(p[i / 2] | ((v & 0xfu) << ((i & 1) * 4)));
}
inline unsigned get_nibble(const uint8_t* p, int64_t i) {
  return (p[i / 2] >> ((i & 1) * 4)) & 0xfu;
}
// Throws when an odd d's padding nibble is not zero (a corrupt payload).
void check_nibble_padding(const norm::GainView& g);

// loss(views of enc), which must be finite: std::invalid_argument naming
// `candidate` otherwise. Counts the call in *evals.
double eval_loss(const AdapterLoss& loss, const std::vector<const EncodedGain*>& enc,
                 const std::string& candidate, int64_t* evals);

// True when a and b are the same encoding, byte for byte.
bool same_encoding(const EncodedGain& a, const EncodedGain& b);

// "gain (<scheme>): " for decoder messages.
std::string decoder_prefix(norm::GainScheme scheme);

}  // namespace ternorm::codec::detail
