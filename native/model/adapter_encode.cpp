#include "adapter_encode.h"

#include <stdexcept>
#include <string>

namespace ternorm::model {

void CalibrationLosses::bind(const Model& model, const Calibration& cal, Isa isa) {
  const bool same = model_ == &model && fingerprint_ && model.fingerprint() == fingerprint_ &&
                    isa_ == isa && tokens_ == cal.tokens && opts_.stride == cal.eval.stride &&
                    opts_.batch == cal.eval.batch && opts_.precision == cal.eval.precision;
  if (same) return;
  model_ = &model;
  fingerprint_ = model.fingerprint();
  tokens_ = cal.tokens;
  opts_ = cal.eval;
  isa_ = isa;
  losses_.clear();
}

codec::EncodedAdapter encode_adapter(const Model& model, const float* gains, codec::Method method,
                                     const codec::EncodeOptions& opts,
                                     const Calibration* calibration, const Exec& ex,
                                     CalibrationLosses* losses) {
  const ModelConfig& c = model.config();
  if (codec::method_needs_loss(method) && calibration == nullptr)
    throw std::invalid_argument(
        std::string("method ") + codec::method_name(method) +
        " chooses its encoding by the training-text loss: calibration tokens are required");
  codec::AdapterLoss loss;
  // The searches score candidates that change one tensor at a time: each
  // evaluation starts at the first layer whose gains changed.
  EvalPrefixCache cache;
  if (calibration != nullptr && codec::method_needs_loss(method)) {
    if (losses) losses->bind(model, *calibration, ex.isa);
    loss = [&model, calibration, &ex, &cache, losses](const std::vector<norm::GainView>& views) {
      const Calibration& cal = *calibration;
      const auto measure = [&] {
        return evaluate(model, views.data(), int64_t(views.size()), cal.tokens.data(),
                        int64_t(cal.tokens.size()), cal.n_bytes, cal.eval, ex, &cache)
            .mean_nll;
      };
      if (!losses) return measure();
      std::vector<uint8_t> key;
      for (size_t k = 0; k < views.size(); ++k) append_gain_key(views.data(), int64_t(k), key);
      const auto it = losses->losses_.find(key);
      if (it != losses->losses_.end()) {
        ++losses->hits_;
        return it->second;
      }
      const double v = measure();
      if (losses->losses_.size() >= CalibrationLosses::kMaxEntries) losses->losses_.clear();
      losses->losses_.emplace(std::move(key), v);
      return v;
    };
  }
  codec::EncodedAdapter encoded =
      codec::encode_adapter(method, gains, c.n_norms(), c.d_model, opts, loss);
  // Without a fingerprint the weights may change before the next call: nothing is kept.
  if (losses && !model.fingerprint()) losses->losses_.clear();
  return encoded;
}

}  // namespace ternorm::model
