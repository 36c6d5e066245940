// The gain decoder registry and the exact binary16 conversions. Decoding runs
// once per kernel call over d gains (a few thousand at most), so the decoders
// are plain scalar code: every ISA path sees the same decoded gains.
#include "gain_codec.h"

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "../codec/decoders.h"

namespace ternorm::norm {

// ---- binary16 <-> binary32 ----------------------------------------------------

float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    // inf, or NaN made quiet with its payload kept.
    bits = sign | 0x7f800000u | (man ? 0x00400000u | (man << 13) : 0u);
  } else if (exp != 0) {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;
  } else {
    // Subnormal half: man * 2^-24. Normalise into a float (always normal).
    int e = -14;
    while ((man & 0x400u) == 0) {
      man <<= 1;
      --e;
    }
    bits = sign | (uint32_t(e + 127) << 23) | ((man & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  const uint16_t sign = uint16_t((bits >> 16) & 0x8000u);
  const int exp = int((bits >> 23) & 0xffu);
  const uint32_t man = bits & 0x7fffffu;
  if (exp == 0xff) return man ? uint16_t(sign | 0x7e00u | (man >> 13)) : uint16_t(sign | 0x7c00u);
  const int e = exp - 127 + 15;  // biased half exponent
  if (e >= 31) return uint16_t(sign | 0x7c00u);
  if (e >= 1) {
    // Normal half; a carry out of the mantissa bumps the exponent, and from
    // the largest finite value it lands exactly on the inf code.
    uint32_t r = (uint32_t(e) << 10) | (man >> 13);
    const uint32_t rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
    return uint16_t(sign | r);
  }
  // Subnormal half (or zero): value = m * 2^(exp-150) with the 24-bit
  // significand m; in units of 2^-24 that is m >> (14 - e). Float subnormals
  // (exp == 0) are below 2^-126 and round to zero.
  if (exp == 0) return sign;
  const int shift = 14 - e;     // >= 14
  if (shift > 24) return sign;  // below half of the smallest subnormal
  const uint32_t m = man | 0x800000u;
  uint32_t r = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
  if (rem > half || (rem == half && (r & 1u))) ++r;  // may carry into the first normal
  return uint16_t(sign | r);
}

// ---- the registered decoders ----------------------------------------------------
namespace {

size_t bytes_f32(const GainView& g) { return size_t(g.d) * sizeof(float); }
size_t bytes_f16(const GainView& g) { return size_t(g.d) * sizeof(uint16_t); }
size_t bytes_i8(const GainView& g) { return size_t(g.d); }
bool no_params(const GainView& g) { return g.n_params == 0; }
bool one_param(const GainView& g) { return g.n_params == 1; }

void decode_f32(const GainView& g, float* out) {
  std::memcpy(out, g.data, size_t(g.d) * sizeof(float));
}

void decode_f16(const GainView& g, float* out) {
  const unsigned char* p = static_cast<const unsigned char*>(g.data);
  for (int64_t i = 0; i < g.d; ++i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, sizeof h);
    out[i] = f16_to_f32(h);
  }
}

void decode_i8_per_tensor(const GainView& g, float* out) {
  const int8_t* q = static_cast<const int8_t*>(g.data);
  const float scale = g.params[0];
  for (int64_t i = 0; i < g.d; ++i) out[i] = float(q[i]) * scale;
}

// Far above any model width; keeps every payload size computation exact.
constexpr int64_t kMaxGains = int64_t(1) << 32;

// The registry: one entry per scheme. Adding a scheme = one enum value + one row.
const GainDecoder kDecoders[] = {
    {GainScheme::F32, "raw_fp32", "0", bytes_f32, no_params, decode_f32},
    {GainScheme::F16, "raw_fp16", "0", bytes_f16, no_params, decode_f16},
    {GainScheme::Int8PerTensor, "int8_per_tensor", "1 (the scale)", bytes_i8, one_param,
     decode_i8_per_tensor},
    // The adapter codecs: layouts, checks and decoders in native/codec/<family>.cpp.
    {GainScheme::Int8Group, "int8_group", codec::kInt8GroupParamsExpected,
     codec::int8_group_payload_bytes, codec::int8_group_params_ok, codec::int8_group_decode},
    {GainScheme::Int8Asym, "int8_asym", codec::kInt8AsymParamsExpected,
     codec::int8_asym_payload_bytes, codec::int8_asym_params_ok, codec::int8_asym_decode},
    {GainScheme::Int8Delta, "int8_delta", codec::kDeltaParamsExpected, codec::delta8_payload_bytes,
     codec::delta_params_ok, codec::delta8_decode},
    {GainScheme::Int4Delta, "int4_delta", codec::kDeltaParamsExpected, codec::delta4_payload_bytes,
     codec::delta_params_ok, codec::delta4_decode},
    {GainScheme::KMeans16, "kmeans16", codec::kKMeans16ParamsExpected,
     codec::kmeans16_payload_bytes, codec::kmeans16_params_ok, codec::kmeans16_decode},
    {GainScheme::KMeans256, "kmeans256", codec::kKMeans256ParamsExpected,
     codec::kmeans256_payload_bytes, codec::kmeans256_params_ok, codec::kmeans256_decode},
    {GainScheme::Int3Delta, "int3_delta", codec::kDeltaParamsExpected, codec::delta3_payload_bytes,
     codec::delta_params_ok, codec::delta3_decode},
    {GainScheme::Int2Delta, "int2_delta", codec::kDeltaParamsExpected, codec::delta2_payload_bytes,
     codec::delta_params_ok, codec::delta2_decode},
    {GainScheme::Sign1Delta, "sign1_delta", codec::kSign1ParamsExpected, codec::sign1_payload_bytes,
     codec::sign1_params_ok, codec::sign1_decode},
    {GainScheme::KMeans2, "kmeans2", codec::kKMeans2ParamsExpected, codec::kmeans2_payload_bytes,
     codec::kmeans2_params_ok, codec::kmeans2_decode},
    {GainScheme::KMeans4, "kmeans4", codec::kKMeans4ParamsExpected, codec::kmeans4_payload_bytes,
     codec::kmeans4_params_ok, codec::kmeans4_decode},
    {GainScheme::KMeans8, "kmeans8", codec::kKMeans8ParamsExpected, codec::kmeans8_payload_bytes,
     codec::kmeans8_params_ok, codec::kmeans8_decode},
    {GainScheme::SparseDelta, "sparse_delta", codec::kSparseParamsExpected,
     codec::sparse_payload_bytes, codec::sparse_params_ok, codec::sparse_decode},
    {GainScheme::RiceDelta, "rice_delta", codec::kRiceParamsExpected, codec::rice_payload_bytes,
     codec::rice_params_ok, codec::rice_decode},
    {GainScheme::Unit, "unit", "0", codec::unit_payload_bytes, codec::unit_params_ok,
     codec::unit_decode},
};

std::string known_schemes() {
  std::string s;
  for (const GainDecoder& dec : kDecoders) {
    if (!s.empty()) s += ", ";
    s += dec.name;
    s += " (" + std::to_string(uint32_t(dec.scheme)) + ")";
  }
  return s;
}

}  // namespace

const GainDecoder* find_gain_decoder(GainScheme scheme) {
  for (const GainDecoder& dec : kDecoders)
    if (dec.scheme == scheme) return &dec;
  return nullptr;
}

void validate_gain(const GainView& g) {
  const GainDecoder* dec = find_gain_decoder(g.scheme);
  if (dec == nullptr)
    throw std::invalid_argument("gain: unknown scheme " + std::to_string(uint32_t(g.scheme)) +
                                ", expected one of " + known_schemes());
  const std::string what = std::string("gain (") + dec->name + "): ";
  if (g.d <= 0 || g.d > kMaxGains)
    throw std::invalid_argument(what + "d = " + std::to_string(g.d) +
                                ", expected 0 < d <= " + std::to_string(kMaxGains));
  // Params are checked for null and finiteness first: params_ok and
  // payload_bytes of some schemes read their values (a block size, centroids).
  if (g.n_params > 0 && g.params == nullptr)
    throw std::invalid_argument(what + "params is null, expected " + std::to_string(g.n_params) +
                                " floats");
  for (size_t i = 0; i < g.n_params; ++i)
    if (!std::isfinite(g.params[i]))
      throw std::invalid_argument(what + "params[" + std::to_string(i) +
                                  "] is not finite, expected a finite float");
  if (!dec->params_ok(g))
    throw std::invalid_argument(what + std::to_string(g.n_params) + " params, expected " +
                                dec->params_expected);
  const size_t want = dec->payload_bytes(g);
  // A scheme with an empty payload (unit, a sparse record keeping nothing) needs no data.
  if (g.data == nullptr && want > 0)
    throw std::invalid_argument(what + "data is null, expected the payload");
  if (g.data_bytes != want)
    throw std::invalid_argument(what + "payload is " + std::to_string(g.data_bytes) +
                                " bytes, expected " + std::to_string(want) +
                                " for d = " + std::to_string(g.d));
}

void decode_gain(const GainView& g, float* out) {
  validate_gain(g);
  if (out == nullptr) throw std::invalid_argument("decode_gain: out is null, expected d floats");
  const GainDecoder* dec = find_gain_decoder(g.scheme);
  dec->decode(g, out);
  for (int64_t i = 0; i < g.d; ++i)
    if (!std::isfinite(out[i]))
      throw std::invalid_argument(std::string("gain (") + dec->name + "): gain[" +
                                  std::to_string(i) +
                                  "] decodes to a non-finite value, expected finite gains");
}

}  // namespace ternorm::norm
