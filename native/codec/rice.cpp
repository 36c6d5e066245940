// Entropy-coded deltas ("rice_delta"): the integer codes of a delta quantiser
// (delta.cpp) written as a Golomb-Rice stream, so the bytes are those of a
// real, decodable coded stream rather than an entropy estimate. Trained deltas
// are roughly Laplacian around 0, which is what a Rice code fits.
//   params:  {scale, r, n}: scale >= 0; the Rice parameter r (an integer,
//            0..16); the payload bytes n (an integer, ceil(d (r + 1) / 8) ..
//            2^24). The model of the code is r; n makes the record's size
//            known before its payload is read, as every scheme's is.
//   payload: for each gain in order, z = zigzag(q) (0, -1, 1, -2, ... ->
//            0, 1, 2, 3, ...) as z >> r one-bits, a zero bit, then the low r
//            bits of z (LSB first, util.h bit packing). The stream must end in
//            the last byte, with its padding bits 0.
//   decode:  g = 1.0f + float(q) * scale (delta.cpp's rule, so a stream of
//            int4_delta's codes decodes to int4_delta's gains, bit for bit).
// Encoder: q and scale of encode_delta(bits) (bits 8, 4, 3 or 2), r in 0..16
// minimising the stream length (the smallest r on a tie). Error bound: that
// of the delta quantiser, scale / 2.
#include <cmath>
#include <stdexcept>
#include <string>

#include "codec.h"
#include "decoders.h"
#include "util.h"

namespace ternorm::codec {

namespace {

constexpr int kMaxRice = 16;
constexpr double kMaxStreamBytes = double(1 << 24);

uint64_t zigzag(int64_t q) { return q >= 0 ? uint64_t(q) * 2 : uint64_t(-q) * 2 - 1; }
int64_t unzigzag(uint64_t z) { return (z & 1) ? -int64_t(z >> 1) - 1 : int64_t(z >> 1); }

}  // namespace

bool rice_params_ok(const norm::GainView& g) {
  if (g.n_params != 3 || !(g.params[0] >= 0) || !detail::is_int_in(g.params[1], 0, kMaxRice))
    return false;
  const double min_bytes = double(detail::bit_bytes(uint64_t(g.d) * (uint64_t(g.params[1]) + 1)));
  return detail::is_int_in(g.params[2], min_bytes, kMaxStreamBytes);
}

size_t rice_payload_bytes(const norm::GainView& g) { return size_t(g.params[2]); }

void rice_decode(const norm::GainView& g, float* out) {
  const uint8_t* p = static_cast<const uint8_t*>(g.data);
  const int r = int(g.params[1]);
  const uint64_t total = uint64_t(g.data_bytes) * 8;
  const float scale = g.params[0];
  uint64_t at = 0;
  for (int64_t i = 0; i < g.d; ++i) {
    uint64_t quot = 0;
    while (at < total && detail::get_bits(p, at, 1) == 1) ++quot, ++at;
    if (at + 1 + uint64_t(r) > total)
      throw std::invalid_argument(detail::decoder_prefix(g.scheme) +
                                  "the stream ends inside gain " + std::to_string(i) +
                                  ", expected codes for d = " + std::to_string(g.d) + " gains");
    ++at;  // the terminating zero
    const uint64_t z = (quot << r) | detail::get_bits(p, at, r);
    at += uint64_t(r);
    out[i] = 1.0f + float(unzigzag(z)) * scale;
  }
  if (detail::bit_bytes(at) != g.data_bytes)
    throw std::invalid_argument(detail::decoder_prefix(g.scheme) + "the stream ends at bit " +
                                std::to_string(at) + " but the payload holds " +
                                std::to_string(g.data_bytes) +
                                " bytes, expected it to end in the last byte");
  detail::check_bit_padding(g, at);
}

EncodedGain encode_rice(int bits, const float* g, int64_t d) {
  const EncodedGain base = encode_delta(bits, g, d);  // checks bits and the gains
  std::vector<uint64_t> z(static_cast<size_t>(d));
  const uint8_t* p = base.payload.data();
  for (int64_t i = 0; i < d; ++i)
    z[size_t(i)] = zigzag(
        bits == 8 ? int64_t(int8_t(p[i]))
                  : detail::sign_extend(detail::get_bits(p, uint64_t(i) * bits, bits), bits));
  int best_r = 0;
  uint64_t best = UINT64_MAX;
  for (int r = 0; r <= kMaxRice; ++r) {
    uint64_t n = 0;
    for (uint64_t v : z) n += (v >> r) + 1 + uint64_t(r);
    if (n < best) best = n, best_r = r;
  }
  if (double(detail::bit_bytes(best)) > kMaxStreamBytes)
    throw std::invalid_argument("encode rice_delta: the stream takes " +
                                std::to_string(detail::bit_bytes(best)) +
                                " bytes, expected at most 2^24");
  EncodedGain e;
  e.scheme = norm::GainScheme::RiceDelta;
  e.d = d;
  e.params = {base.params[0], float(best_r), float(detail::bit_bytes(best))};
  e.payload.assign(detail::bit_bytes(best), 0);
  uint64_t at = 0;
  for (uint64_t v : z) {
    for (uint64_t j = 0; j < (v >> best_r); ++j) detail::put_bits(e.payload.data(), at++, 1, 1);
    ++at;  // the zero bit
    detail::put_bits(e.payload.data(), at, best_r, v);
    at += uint64_t(best_r);
  }
  return e;
}

}  // namespace ternorm::codec
