// Gain encodings the fused RMSNorm kernel can decode on the fly. A decoder
// turns an encoded gain vector into fp32 gains; the kernel multiplies them into
// the base weight once per call. New schemes (the adapter codecs) add a
// GainScheme value and register a GainDecoder in gain_codec.cpp; the kernel does
// not change.
#pragma once
#include <cstddef>
#include <cstdint>

namespace ternorm::norm {

enum class GainScheme : uint32_t {
  F32 = 0,            // data: d floats; no params
  F16 = 1,            // data: d IEEE binary16 (uint16_t); no params
  Int8PerTensor = 2,  // data: d int8 (all of -128..127); g = q * params[0] (the scale); 1 param
  // The adapter codecs (native/codec, one file per family; layouts there):
  Int8Group = 3,  // data: d int8; params: block B, then ceil(d/B) scales; g = q * scale[i / B]
  Int8Asym = 4,   // data: d uint8; params: scale, zero point z; g = (q - z) * scale
  Int8Delta = 5,  // data: d int8; params: scale; g = 1 + q * scale
  Int4Delta = 6,  // data: ceil(d/2) bytes of int4 nibbles; params: scale; g = 1 + q * scale
  KMeans16 = 7,   // data: ceil(d/2) bytes of 4-bit indices; params: k <= 16 centroids; g = c[idx]
  KMeans256 = 8,  // data: d uint8 indices; params: k <= 256 centroids; g = c[idx]
  // The low-rate codecs (bit-packed LSB first, see native/codec/util.h):
  Int3Delta = 9,     // data: ceil(3d/8) bytes of 3-bit codes; params: scale; g = 1 + q * scale
  Int2Delta = 10,    // data: ceil(2d/8) bytes of 2-bit codes; params: scale; g = 1 + q * scale
  Sign1Delta = 11,   // data: ceil(d/8) bytes of sign bits; params: scale; g = 1 -+ scale
  KMeans2 = 12,      // data: ceil(d/8) bytes of 1-bit indices; params: k <= 2 centroids
  KMeans4 = 13,      // data: ceil(2d/8) bytes of 2-bit indices; params: k <= 4 centroids
  KMeans8 = 14,      // data: ceil(3d/8) bytes of 3-bit indices; params: k <= 8 centroids
  SparseDelta = 15,  // data: k (index, int8) entries; params: k, scale; others g = 1
  RiceDelta = 16,    // data: Golomb-Rice coded int deltas; params: scale, rice k, data bytes
  Unit = 17,         // data: none; params: none; every g = 1 (a tensor given 0 bits)
};

// A non-owning view of one encoded gain vector. data needs no alignment.
struct GainView {
  GainScheme scheme = GainScheme::F32;
  int64_t d = 0;                  // number of gains
  const void* data = nullptr;     // payload, layout per scheme (may be null when it is 0 bytes)
  size_t data_bytes = 0;          // payload size, checked against the scheme
  const float* params = nullptr;  // scheme parameters (scales, zero points, ...)
  size_t n_params = 0;
};

// One registered scheme. The entry describes the exact layout so validation is
// generic; decode runs only on a validated view. A scheme whose layout depends
// on its parameters (a codebook of k centroids, a block size) reads g.n_params
// and g.params in params_ok / payload_bytes: validate_gain has checked that
// params is non-null and every param finite before it calls params_ok, and
// calls payload_bytes only when params_ok accepted. decode may still throw
// std::invalid_argument for payload content the layout cannot rule out (a
// codebook index >= k, a non-zero padding nibble).
struct GainDecoder {
  GainScheme scheme;
  const char* name;                            // e.g. "int8_per_tensor", used in messages
  const char* params_expected;                 // what params_ok accepts, for messages
  size_t (*payload_bytes)(const GainView& g);  // exact payload size for g.d gains
  bool (*params_ok)(const GainView& g);        // is g.n_params right for this scheme
  void (*decode)(const GainView& g, float* out);
};

// The registered decoder of a scheme, or nullptr when none is registered.
const GainDecoder* find_gain_decoder(GainScheme scheme);

// Checks the view (known scheme, d > 0, non-null data, exact payload size,
// parameter count, finite parameters) and throws std::invalid_argument naming
// what was expected.
void validate_gain(const GainView& g);

// Decodes all d gains into out[d] (validates first). Throws
// std::invalid_argument when out is null or a decoded gain is not finite
// (NaN/inf payload, or q * scale overflowing float), naming its index.
void decode_gain(const GainView& g, float* out);

// Exact IEEE binary16 <-> binary32 conversions. f32_to_f16 rounds to nearest,
// ties to even; overflows to +-inf; rounds into subnormals and to +-0. NaN
// maps to a quiet NaN keeping the sign and the top payload bits in both
// directions (as x86 F16C does).
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

}  // namespace ternorm::norm
