#include "adapter_encode.h"

#include <stdexcept>
#include <string>

namespace ternorm::model {

codec::EncodedAdapter encode_adapter(const Model& model, const float* gains, codec::Method method,
                                     const codec::EncodeOptions& opts,
                                     const Calibration* calibration, const Exec& ex) {
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
    loss = [&model, calibration, &ex, &cache](const std::vector<norm::GainView>& views) {
      const Calibration& cal = *calibration;
      return evaluate(model, views.data(), int64_t(views.size()), cal.tokens.data(),
                      int64_t(cal.tokens.size()), cal.n_bytes, cal.eval, ex, &cache)
          .mean_nll;
    };
  }
  return codec::encode_adapter(method, gains, c.n_norms(), c.d_model, opts, loss);
}

}  // namespace ternorm::model
