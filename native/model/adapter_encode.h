// Encoding a trained adapter for a model: the codec (native/codec) with, for
// the searching methods (int4_calibrated, mixed, alloc), the loss they choose by —
// the mean NLL of calibration tokens (the user's training text) evaluated with
// the candidate adapter decoded inside the norm kernel. Lives in the core so
// a C++ program linking it encodes with every method, as the addon does.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "../codec/codec.h"
#include "../cpu/isa.h"
#include "../io/sha256.h"
#include "eval.h"
#include "model.h"

namespace ternorm::model {

struct Calibration {
  std::vector<int32_t> tokens;  // at least 2; ids in [0, vocab)
  int64_t n_bytes = 0;          // UTF-8 bytes the scored tokens stand for (>= 1)
  EvalOptions eval;             // stride and batch of the calibration evaluation
};

// The calibration losses measured by earlier encode_adapter calls, by the
// whole adapter scored (every norm's scheme, payload and parameters). The
// searches of one user's encodings score many of the same adapters on the
// same tokens: mixed's candidates (int4_delta, int8_delta, f16 per tensor)
// are alloc's 4-, 8- and 16-bit ones, both start from the all-f32 adapter,
// and each budget of the frontier repeats its method's sensitivities. A later
// call takes the loss an earlier one measured: the same evaluation of the
// same tokens, options and ISA on the same weights, so the same bits.
// The weights are known to be the same only through the model's fingerprint
// (dropped whenever they change, model.h); without one, the losses are kept
// for one call only. Not thread-safe: one call at a time.
class CalibrationLosses {
 public:
  // Losses kept at most (past it, all are dropped and measured anew).
  static constexpr size_t kMaxEntries = 4096;

  size_t size() const { return losses_.size(); }
  int64_t hits() const { return hits_; }  // losses taken from an earlier measurement

 private:
  friend codec::EncodedAdapter encode_adapter(const Model&, const float*, codec::Method,
                                              const codec::EncodeOptions&, const Calibration*,
                                              const Exec&, CalibrationLosses*);
  // Keeps the losses if they were measured for this model, calibration and ISA; else forgets them
  // and binds to these.
  void bind(const Model& model, const Calibration& cal, Isa isa);

  const Model* model_ = nullptr;
  std::optional<io::Sha256Digest> fingerprint_;
  std::vector<int32_t> tokens_;
  EvalOptions opts_;
  Isa isa_{};
  std::map<std::vector<uint8_t>, double> losses_;
  int64_t hits_ = 0;
};

// Encodes gains[n_norms * d_model] (norm order) with `method`. A method that
// needs a loss requires `calibration` (std::invalid_argument otherwise); the
// others ignore it. losses: earlier calls' measurements to reuse and extend
// (see CalibrationLosses; null: none). Deterministic, with or without it.
codec::EncodedAdapter encode_adapter(const Model& model, const float* gains, codec::Method method,
                                     const codec::EncodeOptions& opts,
                                     const Calibration* calibration, const Exec& ex,
                                     CalibrationLosses* losses = nullptr);

}  // namespace ternorm::model
