// model::encode_adapter from C++ alone: every codec method, the searching
// ones scored by the model's own evaluation of the calibration tokens.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "codec/codec.h"
#include "cpu/features.h"
#include "harness.h"
#include "model/adapter_encode.h"

using namespace ternorm;
using namespace ternorm::model;

namespace {
// A tiny ternarised model, gains 1 +- 0.1 and 120 calibration tokens scored in
// whole windows, all from the two seeds.
struct Setup {
  ModelConfig c;
  Exec ex{default_isa(), nullptr, 1};
  Model m;
  std::vector<float> gains;
  Calibration cal;
  Setup(uint64_t model_seed, uint64_t data_seed) : c(tiny()), m(c, model_seed) {
    m.quantize(ex);
    test::Rng rng(data_seed);
    gains.resize(size_t(c.n_gains()));
    for (float& g : gains) g = 1.0f + 0.2f * float(rng.uniform() - 0.5);
    for (int i = 0; i < 120; ++i) cal.tokens.push_back(int32_t(rng.next() % uint64_t(c.vocab)));
    cal.n_bytes = 360;
    cal.eval.stride = c.context;
  }
  static ModelConfig tiny() {
    ModelConfig c;
    c.vocab = 13, c.d_model = 16, c.n_layers = 2, c.n_heads = 2, c.d_ff = 24, c.context = 16;
    return c;
  }
};
}  // namespace

TEST(adapter_encode_every_method_from_cpp) {
  Setup su(5, 11);
  auto& [c, ex, m, gains, cal] = su;

  codec::EncodeOptions opts;
  opts.clip_grid = {1.0, 0.8, 0.6};
  // mixed's budget: what int8_per_tensor takes for the same adapter.
  opts.byte_budget = codec::adapter_bytes(
      encode_adapter(m, gains.data(), codec::Method::Int8PerTensor, opts, nullptr, ex).tensors);
  for (codec::Method method : codec::all_methods()) {
    const std::string name = codec::method_name(method);
    const codec::EncodedAdapter a = encode_adapter(m, gains.data(), method, opts, &cal, ex);
    CHECK_MSG(int64_t(a.tensors.size()) == c.n_norms(), name);
    const codec::EncodedAdapter again = encode_adapter(m, gains.data(), method, opts, &cal, ex);
    CHECK_MSG(codec::serialize_adapter(a.tensors) == codec::serialize_adapter(again.tensors),
              name << " is deterministic");
    if (method == codec::Method::RawF32) {
      std::vector<float> out(size_t(c.d_model));
      norm::decode_gain(a.tensors[0].view(), out.data());
      CHECK(std::equal(out.begin(), out.end(), gains.begin()));
    }
    if (codec::method_needs_loss(method)) {
      // The reported loss is the model's mean NLL of the calibration tokens with the chosen
      // encoding.
      const std::vector<norm::GainView> views = a.views();
      const double loss = evaluate(m, views.data(), int64_t(views.size()), cal.tokens.data(),
                                   int64_t(cal.tokens.size()), cal.n_bytes, cal.eval, ex)
                              .mean_nll;
      const double reported = a.calibration ? a.calibration->loss : a.mixed ? a.mixed->loss : NAN;
      CHECK_MSG(reported == loss, name << ": reported " << reported << " vs evaluated " << loss);
      bool threw = false;
      try {
        encode_adapter(m, gains.data(), method, opts, nullptr, ex);
      } catch (const std::invalid_argument& e) {
        threw = std::string(e.what()).find("calibration tokens are required") != std::string::npos;
      }
      CHECK_MSG(threw, name << " without calibration");
    }
  }
}

// CalibrationLosses: mixed and alloc (whose 4-, 8- and 16-bit candidates are mixed's) at two
// budgets give the same encodings and reports with it as without, and take each other's losses;
// other calibration tokens, or a model without a fingerprint (weights that may change between
// calls), measure anew.
TEST(adapter_encode_reuses_calibration_losses) {
  Setup su(7, 17);
  auto& [c, ex, m, gains, cal] = su;
  codec::EncodeOptions opts;
  const uint64_t budget = codec::adapter_bytes(
      encode_adapter(m, gains.data(), codec::Method::Int8PerTensor, opts, nullptr, ex).tensors);

  io::Sha256Digest fp{};
  fp[0] = 1;
  m.set_fingerprint(fp);  // as if loaded from a file
  CalibrationLosses losses;
  const int64_t n = c.n_norms();
  for (const uint64_t b : {budget, budget * 2})
    for (const codec::Method method : {codec::Method::Mixed, codec::Method::Alloc}) {
      opts.byte_budget = b;
      const codec::EncodedAdapter plain = encode_adapter(m, gains.data(), method, opts, &cal, ex);
      const codec::EncodedAdapter kept =
          encode_adapter(m, gains.data(), method, opts, &cal, ex, &losses);
      const std::string name = std::string(codec::method_name(method)) + " at " + std::to_string(b);
      CHECK_MSG(codec::serialize_adapter(plain.tensors) == codec::serialize_adapter(kept.tensors),
                name);
      const codec::MixedReport &p = *plain.mixed, &k = *kept.mixed;
      CHECK_MSG(p.reference_loss == k.reference_loss && p.increase == k.increase &&
                    p.choice == k.choice && p.loss == k.loss && p.loss_evals == k.loss_evals,
                name << " report");
    }
  // First alloc: the reference and 3 candidates per tensor; second budget: every evaluation but
  // perhaps mixed's chosen adapter.
  CHECK_MSG(losses.hits() >= (1 + 3 * n) + (1 + 3 * n) + (1 + 7 * n), losses.hits());
  const int64_t hits = losses.hits();
  const size_t measured = losses.size();
  CHECK(measured >= size_t(1 + 7 * n));

  // Other tokens: measured anew.
  Calibration other = cal;
  other.tokens[5] = (other.tokens[5] + 1) % int32_t(c.vocab);
  encode_adapter(m, gains.data(), codec::Method::Mixed, opts, &other, ex, &losses);
  CHECK(losses.hits() == hits && losses.size() <= size_t(2 + 3 * n));
  // Weights that changed (the fingerprint is dropped): nothing is kept past the call.
  m.quantize(ex);
  CHECK(!m.fingerprint());
  encode_adapter(m, gains.data(), codec::Method::Mixed, opts, &other, ex, &losses);
  CHECK(losses.hits() == hits && losses.size() == 0);
}
