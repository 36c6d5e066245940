// The core's ranges and defaults (model/limits.h): the validators refuse what
// the tables refuse, with the field and the range in the message, and the
// structs' defaults are the tables' defaults.
#include <cmath>
#include <string>

#include "codec/codec.h"
#include "harness.h"
#include "model/config.h"
#include "model/eval.h"
#include "model/limits.h"
#include "model/train.h"

using namespace ternorm;

namespace {
template <class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(limits_model_config_refused_at_the_table_bounds) {
  model::ModelConfig c;
  c.n_layers = 1025;
  CHECK(message_of([&] { model::validate(c); }) ==
        "model config.nLayers must be an integer in 1..1024, got 1025");
  c = model::ModelConfig();
  c.n_layers = 1024;
  c.d_model = 8;
  c.n_heads = 2;
  model::validate(c);  // the bound itself is allowed
  c = model::ModelConfig();
  c.rope_theta = 1.0f;
  CHECK(message_of([&] { model::validate(c); }) ==
        "model config.ropeTheta must be a number in (1, 3.4e38], got 1");
  c = model::ModelConfig();
  c.n_heads = 512;  // more heads than d_model = 256: the bound depends on d_model
  CHECK(message_of([&] { model::validate(c); }) ==
        "model config.nHeads must be an integer in 1..256, got 512");
}

TEST(limits_defaults_are_the_structs_defaults) {
  const model::ModelConfig c;
  CHECK(c.vocab == 4096 && c.d_model == 256 && c.n_layers == 4 && c.n_heads == 4 && c.d_ff == 768 &&
        c.context == 256);
  CHECK(c.norm_eps == 1e-5f && c.rope_theta == 10000.0f);
  const model::TrainConfig t;
  CHECK(t.batch == 8 && t.seq == 256 && t.schedule.lr == 1.5e-3f && t.schedule.min_lr == 1.5e-4f);
  CHECK(t.schedule.warmup == 100 && t.schedule.total == 2000 && t.grad_clip == 1.0f);
  CHECK(t.adamw.beta1 == 0.9f && t.adamw.beta2 == 0.95f && t.adamw.eps == 1e-8f &&
        t.adamw.weight_decay == 0.1f);
  const model::TrainConfig a = model::adapter_train_defaults();
  CHECK(a.mode == model::TrainMode::AdapterGains && a.batch == 8 && a.seq == 128 &&
        a.schedule.lr == 3e-2f);
  CHECK(a.schedule.min_lr == 3e-3f && a.schedule.warmup == 10 && a.schedule.total == 100 &&
        a.adamw.weight_decay == 0.0f);
  // int8 gradients are the adapter mode's default, f32 the base modes' (their only choice).
  CHECK(a.grad_quant == model::GradQuant::Int8 && t.grad_quant == model::GradQuant::F32);
  CHECK(model::default_grad_quant(model::TrainMode::AdapterGains) == model::GradQuant::Int8);
  CHECK(model::default_grad_quant(model::TrainMode::TernaryBase) == model::GradQuant::F32 &&
        model::default_grad_quant(model::TrainMode::Fp32Base) == model::GradQuant::F32);
  const codec::EncodeOptions e;
  CHECK(e.group_size == 32 && e.kmeans_max_iters == 100 && e.calibration_passes == 1 &&
        e.byte_budget == 0);
  const model::EvalOptions ev;
  CHECK(ev.stride == 0 && ev.batch == 4);
  // Every group's rows have a name, an ordered range and a default inside it (or none).
  for (const limits::Group& g : limits::groups) {
    for (size_t i = 0; i < g.n; ++i) {
      const limits::Limit& l = *g.rows[i];
      CHECK_MSG(l.min <= l.max, g.name << "." << l.name);
      CHECK_MSG(std::isnan(l.def) || l.contains(l.def),
                g.name << "." << l.name << " default " << l.def);
    }
  }
}

TEST(limits_encode_options_checked_by_the_codec) {
  const float gains[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  codec::EncodeOptions o;
  o.group_size = 0;
  CHECK(message_of([&] { codec::encode_adapter(codec::Method::Int8Group, gains, 1, 8, o, {}); }) ==
        "encode options.groupSize must be an integer in 1..16777216, got 0");
  o = codec::EncodeOptions();
  o.clip_grid = {1.0, 1.5};
  CHECK(message_of([&] {
          codec::encode_adapter(codec::Method::Int8PerTensor, gains, 1, 8, o, {});
        }) == "encode options.clipGrid.clip must be a number in (0, 1], got 1.5");
}
