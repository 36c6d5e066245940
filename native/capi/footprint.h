// The memory a loaded model and its adapters take, computed from the loaded
// structures (the C API's ternorm_model_info, the README's footprint table
// through examples/footprint.cpp): one home for the arithmetic.
#pragma once
#include <cstdint>

#include "../model/model.h"

namespace ternorm::capi {

struct Footprint {
  // Held by the Model: the fp32 parameter buffer, the packed 2-bit ternary
  // weights with their per-row scales, the RoPE tables and the ones vector.
  int64_t weight_bytes = 0;
  // A generation's key/value cache per token (DecodeState's).
  int64_t kv_bytes_per_token = 0;
  // An adapter's gains as f32.
  int64_t adapter_f32_bytes = 0;
};

Footprint footprint(const model::Model& m);

}  // namespace ternorm::capi
