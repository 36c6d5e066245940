// Gain encodings the fused RMSNorm kernel can decode on the fly. A decoder
// turns an encoded gain vector into fp32 gains; the kernel multiplies them into
// the base weight once per call. New schemes (the adapter codecs) add a
// GainScheme value and register a decoder in gain_codec.cpp; the kernel does
// not change.
#pragma once
#include <cstddef>
#include <cstdint>

namespace ternorm::norm {

enum class GainScheme : uint32_t {
  F32 = 0,            // data: d floats
  F16 = 1,            // data: d IEEE binary16 (uint16_t)
  Int8PerTensor = 2,  // data: d int8; g = q * params[0] (params[0] = scale)
};

// A non-owning view of one encoded gain vector.
struct GainView {
  GainScheme scheme = GainScheme::F32;
  int64_t d = 0;                  // number of gains
  const void* data = nullptr;     // payload, layout per scheme
  size_t data_bytes = 0;          // payload size, checked against the scheme
  const float* params = nullptr;  // scheme parameters (scales, zero points, ...)
  size_t n_params = 0;
};

// Checks the view (payload size, parameter count, finite parameters) and
// throws std::invalid_argument naming what was expected.
void validate_gain(const GainView& g);

// Decodes all d gains into out[d] (validates first).
void decode_gain(const GainView& g, float* out);

// Exact IEEE binary16 <-> binary32 conversions (round to nearest even).
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

}  // namespace ternorm::norm
