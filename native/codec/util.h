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

// Bit packing of the low-rate layouts: a stream of fields, LSB first — field
// bit j of a field starting at stream bit p is bit (p + j) % 8 of byte
// (p + j) / 8. For 4- and 8-bit fields this is the nibble layout above. The
// bits after the last field, up to the byte boundary, must be 0.
inline size_t bit_bytes(uint64_t bits) { return size_t((bits + 7) / 8); }
inline void put_bits(uint8_t* p, uint64_t at, int n, uint64_t v) {
  for (int j = 0; j < n; ++j, ++at) p[at / 8] = uint8_t(p[at / 8] | (((v >> j) & 1u) << (at % 8)));
}
inline uint64_t get_bits(const uint8_t* p, uint64_t at, int n) {
  uint64_t v = 0;
  for (int j = 0; j < n; ++j, ++at) v |= uint64_t((p[at / 8] >> (at % 8)) & 1u) << j;
  return v;
}
// Sign-extends an n-bit two's complement field.
inline int64_t sign_extend(uint64_t v, int n) {
  const uint64_t m = uint64_t(1) << (n - 1);
  return int64_t(v ^ m) - int64_t(m);
}
// Throws when a bit after the first `used` bits of g's payload is not 0.
void check_bit_padding(const norm::GainView& g, uint64_t used);
// The bits an index below d needs (at least 1).
inline int index_bits(int64_t d) {
  int b = 1;
  while ((int64_t(1) << b) < d) ++b;
  return b;
}
// True when f is an integer in [lo, hi].
inline bool is_int_in(float f, double lo, double hi) {
  return double(f) >= lo && double(f) <= hi && std::floor(double(f)) == double(f);
}

// loss(views of enc), which must be finite: std::invalid_argument naming
// `candidate` otherwise. Counts the call in *evals.
double eval_loss(const AdapterLoss& loss, const std::vector<const EncodedGain*>& enc,
                 const std::string& candidate, int64_t* evals);

// The exact multiple-choice knapsack of the budgeted methods (mixed, alloc):
// choose one candidate c_t per tensor minimising sum_t increase[t][c_t]
// subject to sum_t bytes[t][c_t] <= cap, by dynamic programming over total
// bytes. Deterministic ties: per byte total the first combination reached
// (tensors in order, candidates in order) is kept; among equal sums the
// smallest total wins. Returns the sum; *choice gets c_t. Some combination
// must fit (the caller checks the smallest).
double choose_under_budget(const std::vector<std::vector<double>>& increase,
                           const std::vector<std::vector<uint64_t>>& bytes, uint64_t cap,
                           std::vector<int>* choice);

// The per-tensor choice of the budgeted methods (mixed, alloc), steps 1-3 of
// their comments: the sensitivities (ref[t] the f32 records, cand[t][c] tensor
// t under candidate c, labels[c] naming it in messages), the exact knapsack
// over the records' bytes in out.format under rep.budget, and the chosen
// adapter measured once more. A budget below the all-smallest adapter is
// refused as "below the smallest <smallest>". Fills rep (candidates and budget
// set by the caller) and out.tensors, then moves rep into out.mixed.
void choose_per_tensor(const std::string& what, const std::vector<EncodedGain>& ref,
                       const std::vector<std::vector<EncodedGain>>& cand,
                       const std::vector<std::string>& labels, const std::string& smallest,
                       const AdapterLoss& loss, MixedReport& rep, EncodedAdapter& out);

// True when a and b are the same encoding, byte for byte.
bool same_encoding(const EncodedGain& a, const EncodedGain& b);

// "gain (<scheme>): " for decoder messages.
std::string decoder_prefix(norm::GainScheme scheme);

}  // namespace ternorm::codec::detail
