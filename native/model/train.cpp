#include "train.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <stdexcept>
#include <string>

namespace ternorm::model {

const char* train_mode_name(TrainMode m) {
  switch (m) {
    case TrainMode::TernaryBase: return "ternary";
    case TrainMode::Fp32Base: return "fp32";
    case TrainMode::AdapterGains: return "adapter";
  }
  return "?";
}

const char* grad_quant_name(GradQuant g) {
  const int i = int(g);
  return i >= 0 && i < int(std::size(limits::grad_quant::names)) ? limits::grad_quant::names[i]
                                                                 : "?";
}

GradQuant grad_quant_of(const std::string& name) {
  std::string all;
  for (size_t i = 0; i < std::size(limits::grad_quant::names); ++i) {
    if (name == limits::grad_quant::names[i]) return GradQuant(int(i));
    all += std::string(i ? ", " : "") + "'" + limits::grad_quant::names[i] + "'";
  }
  throw std::invalid_argument("gradQuant must be one of " + all + ", got '" + name + "'");
}

GradQuant default_grad_quant(TrainMode m) {
  return GradQuant(m == TrainMode::AdapterGains ? limits::grad_quant::adapter_def
                                                : limits::grad_quant::def);
}

TrainConfig adapter_train_defaults() {
  namespace L = limits::adapter_train;
  TrainConfig c;
  c.mode = TrainMode::AdapterGains;
  c.batch = int64_t(L::batch.def);
  c.seq = int64_t(L::seq.def);
  c.schedule = LrSchedule{float(L::lr.def), float(L::min_lr.def), int64_t(L::warmup.def),
                          int64_t(L::total_steps.def)};
  c.adamw = AdamWConfig{float(L::beta1.def), float(L::beta2.def), float(L::eps.def),
                        float(L::weight_decay.def)};
  c.grad_clip = float(L::grad_clip.def);
  c.grad_quant = default_grad_quant(c.mode);
  return c;
}

namespace {
const TrainConfig& checked(const Model& model, const TrainConfig& c) {
  const ModelConfig& mc = model.config();
  if (c.mode != TrainMode::TernaryBase && c.mode != TrainMode::Fp32Base &&
      c.mode != TrainMode::AdapterGains)
    throw std::invalid_argument("train config: unknown mode " + std::to_string(int(c.mode)));
  if (c.mode == TrainMode::Fp32Base && c.act_quant != ActQuant::Token)
    throw std::invalid_argument(std::string("train config: actQuant '") +
                                act_quant_name(c.act_quant) + "' needs a ternary mode, got fp32");
  if (c.act_quant != ActQuant::Token && c.act_quant != ActQuant::Block256)
    throw std::invalid_argument("train config: unknown actQuant " +
                                std::to_string(int(c.act_quant)));
  if (c.grad_quant != GradQuant::F32 && c.grad_quant != GradQuant::Int8)
    throw std::invalid_argument("train config: unknown gradQuant " +
                                std::to_string(int(c.grad_quant)));
  if (c.grad_quant == GradQuant::Int8 && c.mode != TrainMode::AdapterGains)
    throw std::invalid_argument(std::string("train config: gradQuant 'int8' is for the adapter "
                                            "mode, got ") +
                                train_mode_name(c.mode));
  namespace L = limits::train;
  const char* w = "train config";
  limits::check(L::batch, double(c.batch), w);
  limits::check(L::seq, double(c.seq), double(mc.context), w);
  const LrSchedule& s = c.schedule;
  limits::check(L::lr, double(s.lr), w);
  limits::check(L::min_lr, double(s.min_lr), double(s.lr), w);
  limits::check(L::total_steps, double(s.total), w);
  limits::check(L::warmup, double(s.warmup), double(s.total), w);
  limits::check(L::beta1, double(c.adamw.beta1), w);
  limits::check(L::beta2, double(c.adamw.beta2), w);
  limits::check(L::eps, double(c.adamw.eps), w);
  limits::check(L::weight_decay, double(c.adamw.weight_decay), w);
  limits::check(L::grad_clip, double(c.grad_clip), w);
  if (c.mode == TrainMode::AdapterGains && model.ternary_stale())
    throw std::logic_error(
        "train: adapter training needs current ternary weights "
        "(call Model::quantize first)");
  return c;
}
}  // namespace

Trainer::Trainer(Model& model, const TrainConfig& cfg) : model_(model), cfg_(checked(model, cfg)) {
  // Sizes (and checks) the workspace each step leases (transformer.h: WorkspaceLease).
  const WorkspaceLease sized(model.config(), cfg.batch, cfg.seq, /*for_backward=*/true);
  const int64_t n =
      cfg_.mode == TrainMode::AdapterGains ? model.config().n_gains() : model.n_params();
  grad_ = AlignedBuffer<float>(size_t(n));
  m_ = AlignedBuffer<float>(size_t(n));
  v_ = AlignedBuffer<float>(size_t(n));
  if (cfg_.mode == TrainMode::AdapterGains) {
    gains_ = AlignedBuffer<float>(size_t(n));
    for (int64_t i = 0; i < n; ++i) gains_[size_t(i)] = 1.0f;
    views_ = f32_gain_views(model.config(), gains_.data());
    if (cfg_.grad_quant == GradQuant::Int8)
      grad_i8_ = std::make_unique<GradI8>(model, cfg_.batch * cfg_.seq);
  }
  inputs_.resize(size_t(cfg_.batch * cfg_.seq));
  targets_.resize(size_t(cfg_.batch * cfg_.seq));
}

StepStats Trainer::step(const int32_t* tokens, int64_t batch, int64_t seq, const Exec& ex) {
  if (!tokens) throw std::invalid_argument("train step: null token array");
  if (batch < 1 || batch > cfg_.batch || seq < 1 || seq > cfg_.seq)
    throw std::invalid_argument("train step: batch " + std::to_string(batch) + " x seq " +
                                std::to_string(seq) + " outside the trainer's 1.." +
                                std::to_string(cfg_.batch) + " x 1.." + std::to_string(cfg_.seq));
  const TrainMode mode = cfg_.mode;
  if (mode != TrainMode::Fp32Base && model_.ternary_stale())
    throw std::logic_error(
        "train step: ternary weights are stale (the latent weights changed "
        "outside this trainer; call Model::quantize)");
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < seq; ++t) {
      inputs_[size_t(b * seq + t)] = tokens[b * (seq + 1) + t];
      targets_[size_t(b * seq + t)] = tokens[b * (seq + 1) + t + 1];
    }
  for (int64_t i = 0; i < batch * seq; ++i)  // the last column is only a target: check it too
    if (targets_[size_t(i)] < 0 || targets_[size_t(i)] >= model_.config().vocab)
      throw std::invalid_argument("token id " + std::to_string(targets_[size_t(i)]) +
                                  " is out of range [0, " + std::to_string(model_.config().vocab) +
                                  ")");

  const Precision p = mode == TrainMode::Fp32Base
                          ? Precision::F32
                          : with_act_quant(Precision::Ternary, cfg_.act_quant);
  const norm::GainView* gains = mode == TrainMode::AdapterGains ? views_.data() : nullptr;
  const int64_t count = batch * seq;

  // Forward, loss, backward. The inputs are checked above, so a forward that
  // meets non-finite activations, a non-finite loss or gradient all mean the
  // weights blew up: the run diverged.
  const std::string diverged = "training diverged at step " + std::to_string(step_ + 1) +
                               " (loss is NaN/inf); lower the learning rate";
  WorkspaceLease lease(model_.config(), cfg_.batch, cfg_.seq, /*for_backward=*/true);
  Workspace& ws = lease.get();
  double sum = 0;
  try {
    sum = transformer_forward(model_, p, gains, inputs_.data(), targets_.data(), batch, seq, ws,
                              /*keep_probs=*/true, ex);
  } catch (const std::invalid_argument&) {
    throw std::runtime_error(diverged);
  }
  const double loss = sum / double(count);
  if (!std::isfinite(loss)) throw std::runtime_error(diverged);
  const bool adapter = mode == TrainMode::AdapterGains;
  transformer_backward(model_, p, gains, inputs_.data(), targets_.data(), batch, seq,
                       float(1.0 / double(count)), ws, adapter ? nullptr : grad_.data(),
                       adapter ? grad_.data() : nullptr, ex, grad_i8_.get());

  // Clip.
  const int64_t n = int64_t(grad_.size());
  const double norm = global_norm(grad_.data(), n, ex);
  if (!std::isfinite(norm)) throw std::runtime_error(diverged + " (the gradient is not finite)");
  const float clip =
      (cfg_.grad_clip > 0 && norm > cfg_.grad_clip) ? float(double(cfg_.grad_clip) / norm) : 1.0f;

  // Update.
  ++step_;
  const float lr = lr_at(cfg_.schedule, step_);
  const float wd = cfg_.adamw.weight_decay;
  if (adapter) {
    adamw_update(gains_.data(), grad_.data(), m_.data(), v_.data(), n, step_, lr, clip, wd, 1.0f,
                 cfg_.adamw, ex);
  } else {
    for (const TensorInfo& t : model_.tensors()) {
      const bool is_norm = t.rows == 1;  // RMSNorm weights: no decay
      const size_t o = size_t(t.offset);
      adamw_update(model_.params() + o, grad_.data() + o, m_.data() + o, v_.data() + o,
                   t.rows * t.cols, step_, lr, clip, is_norm ? 0.0f : wd, 0.0f, cfg_.adamw, ex);
    }
    if (mode == TrainMode::TernaryBase)
      model_.quantize(ex);
    else
      model_.mark_latent_changed();
  }
  StepStats st;
  st.step = step_;
  st.loss = loss;
  st.grad_norm = norm;
  st.lr = lr;
  return st;
}

void Trainer::set_gains(const float* gains, int64_t n) {
  if (cfg_.mode != TrainMode::AdapterGains)
    throw std::invalid_argument("trainer: set_gains is for the adapter mode");
  if (!gains || n != int64_t(gains_.size()))
    throw std::invalid_argument("trainer: expected " + std::to_string(gains_.size()) +
                                " gains, got " + std::to_string(n));
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(gains[i]))
      throw std::invalid_argument("trainer: gain " + std::to_string(i) + " is not finite");
  for (int64_t i = 0; i < n; ++i) {
    gains_[size_t(i)] = gains[i];
    m_[size_t(i)] = 0.0f;
    v_[size_t(i)] = 0.0f;
  }
  step_ = 0;
}

void Trainer::restore_state(const float* m, const float* v, int64_t n, int64_t step) {
  if (!m || !v || n != state_size())
    throw std::invalid_argument("trainer: the optimiser state holds " +
                                std::to_string(state_size()) + " values per moment, got " +
                                std::to_string(n));
  if (step < 0)
    throw std::invalid_argument("trainer: step must be >= 0, got " + std::to_string(step));
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(m[i]) || !std::isfinite(v[i]) || v[i] < 0)
      throw std::invalid_argument("trainer: optimiser state value " + std::to_string(i) +
                                  " is not finite (or a negative second moment)");
  std::copy(m, m + n, m_.data());
  std::copy(v, v + n, v_.data());
  step_ = step;
}

std::vector<norm::GainView> Trainer::gain_views() const {
  if (cfg_.mode != TrainMode::AdapterGains)
    throw std::invalid_argument("trainer: gain_views is for the adapter mode");
  return f32_gain_views(model_.config(), gains_.data());
}

}  // namespace ternorm::model
