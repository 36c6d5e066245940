// The state behind a JS model handle, shared by the model bindings
// (model_binding.cpp) and the adapter/codec bindings (adapter_binding.cpp).
//
// A model is used by one call at a time: while an async step, evaluation or
// encoding runs on it, any other call on it throws an Error rather than
// racing with the worker.
#pragma once
#include <napi.h>

#include <atomic>
#include <memory>
#include <optional>
#include <vector>

#include "codec/codec.h"
#include "io/container.h"
#include "model/adapter_encode.h"
#include "model/gguf_model.h"
#include "model/model.h"

namespace ternorm::addon {

struct ModelState {
  std::unique_ptr<model::Model> model;
  bool has_latent = true;  // false: loaded from a model file (ternary weights only)
  // The latent block weights are real ones, so a latent GGUF export may write them: has_latent,
  // or a GGUF whose block matrices were all stored as floats (their decoded values).
  bool latent_stored = true;
  std::optional<model::GgufTokenizer>
      gguf_tokenizer;  // a GGUF model's tokenizer.ggml.* metadata, re-exported
  std::atomic<bool> busy{false};
  // The calibration losses of the model's encodings, for the next ones (model/adapter_encode.h):
  // used under the busy lease, so by one call at a time.
  model::CalibrationLosses calibration_losses;
};

// Marks a model busy for one call. The lease lives in the call's `run`, so it
// ends when the call is destroyed: at the end of a synchronous call, or on the
// JS thread right after an async call's promise settles, which makes "busy
// from the call until the promise settles" hold whatever the timing.
class BusyLease {
 public:
  explicit BusyLease(std::shared_ptr<ModelState> s) : s_(std::move(s)) {}
  BusyLease(const BusyLease&) = delete;
  BusyLease& operator=(const BusyLease&) = delete;
  ~BusyLease() { s_->busy.store(false); }

 private:
  std::shared_ptr<ModelState> s_;
};

// Throws an Error when the model is busy.
std::shared_ptr<BusyLease> acquire(Napi::Env env, const std::shared_ptr<ModelState>& s);

// The state of the model handle at info[index] (TypeError for anything else).
std::shared_ptr<ModelState> model_arg(const Napi::CallbackInfo& info, size_t index);

// 'ternary' | 'fp32' | 'ternary-fp32act' (RangeError otherwise).
model::Precision precision_of(Napi::Env env, const std::string& p);

// A file given as a path or as its bytes (Uint8Array), parsed with opts.
io::Container container_arg(const Napi::CallbackInfo& info, size_t index,
                            const io::ParseOptions& opts);

// An adapter argument for the model's config: null/undefined (none), a
// Float32Array of n_norms * d_model raw gains, or a Uint8Array holding an
// encoded adapter blob (codec::serialize_adapter) of n_norms records of
// d_model gains. Owns what the views point into (moving it keeps them valid),
// so it can move into an async call.
struct AdapterArg {
  std::vector<float> gains;
  std::vector<codec::EncodedGain> encoded;
  std::vector<norm::GainView> views;  // empty: no adapter
};
AdapterArg adapter_arg(const Napi::CallbackInfo& info, size_t index, const model::ModelConfig& cfg);

}  // namespace ternorm::addon
