// Encoding a trained adapter for a model: the codec (native/codec) with, for
// the searching methods (int4_calibrated, mixed, alloc), the loss they choose by —
// the mean NLL of calibration tokens (the user's training text) evaluated with
// the candidate adapter decoded inside the norm kernel. Lives in the core so
// a C++ program linking it encodes with every method, as the addon does.
#pragma once
#include <cstdint>
#include <vector>

#include "../codec/codec.h"
#include "../cpu/isa.h"
#include "eval.h"
#include "model.h"

namespace ternorm::model {

struct Calibration {
  std::vector<int32_t> tokens;  // at least 2; ids in [0, vocab)
  int64_t n_bytes = 0;          // UTF-8 bytes the scored tokens stand for (>= 1)
  EvalOptions eval;             // stride and batch of the calibration evaluation
};

// Encodes gains[n_norms * d_model] (norm order) with `method`. A method that
// needs a loss requires `calibration` (std::invalid_argument otherwise); the
// others ignore it. Deterministic.
codec::EncodedAdapter encode_adapter(const Model& model, const float* gains, codec::Method method,
                                     const codec::EncodeOptions& opts,
                                     const Calibration* calibration, const Exec& ex);

}  // namespace ternorm::model
