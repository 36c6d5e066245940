// The training step: forward, loss, backward, gradient clipping, AdamW, in
// one call per batch. Three modes:
//  - TernaryBase: BitNet b1.58 ternary-aware training of the base. The fp32
//    latent weights are the optimiser's; forward runs the ternarised weights
//    and int8 activations; backward passes through both quantisers (STE);
//    the ternary weights are re-derived after every update.
//  - Fp32Base: plain fp32 training; ternarise afterwards with
//    Model::quantize (post-training quantisation).
//  - AdapterGains: the base stays frozen; only the norm-only adapter's gains
//    (one per RMSNorm weight, initialised at 1.0) train, by backprop through
//    the ternary base (int8 activations, STE). Early stopping on a
//    validation split lives with the caller (evaluate() + gains()).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../cpu/aligned_buffer.h"
#include "../cpu/isa.h"
#include "adamw.h"
#include "layers.h"
#include "limits.h"
#include "model.h"
#include "transformer.h"

namespace ternorm::model {

enum class TrainMode : int { TernaryBase = 0, Fp32Base = 1, AdapterGains = 2 };
const char* train_mode_name(TrainMode m);

// The precision of the gradient through the ternary linears (dx = dy W_eff),
// named by limits::grad_quant::names (the index is the value). Int8 is for
// AdapterGains only (layers.h, LinearGradI8): base training stays in fp32.
enum class GradQuant : int { F32 = 0, Int8 = 1 };
const char* grad_quant_name(GradQuant g);
// The GradQuant named `name`; throws std::invalid_argument naming the choices.
GradQuant grad_quant_of(const std::string& name);
// A mode's default (limits::grad_quant): int8 for AdapterGains, else f32.
GradQuant default_grad_quant(TrainMode m);

// Defaults and ranges: limits::train (base training) and limits::adapter_train
// (adapter_train_defaults()), in limits.h.
struct TrainConfig {
  TrainMode mode = TrainMode::TernaryBase;
  int64_t batch = int64_t(limits::train::batch.def);  // sequences per step (at most)
  int64_t seq = int64_t(limits::train::seq.def);      // tokens per sequence (at most; <= context)
  LrSchedule schedule{float(limits::train::lr.def), float(limits::train::min_lr.def),
                      int64_t(limits::train::warmup.def), int64_t(limits::train::total_steps.def)};
  AdamWConfig adamw;  // weight decay applies to the embedding and the block
                      // matrices (toward 0) and to adapter gains (toward 1),
                      // never to the base RMSNorm weights
  float grad_clip =
      float(limits::train::grad_clip.def);  // max global L2 norm of the gradient (0: no clipping)
  // The activation quantisation of the ternary modes (Block256: not with Fp32Base).
  ActQuant act_quant = ActQuant(limits::act_quant::def);
  // The gradient through the ternary linears (Int8: AdapterGains only, its
  // default there: see default_grad_quant and adapter_train_defaults()).
  GradQuant grad_quant = GradQuant(limits::grad_quant::def);
};

// The adapter mode's defaults (limits::adapter_train).
TrainConfig adapter_train_defaults();

struct StepStats {
  int64_t step = 0;      // 1-based count of updates done, this one included
  double loss = 0;       // mean NLL of the batch before the update (nats/token)
  double grad_norm = 0;  // global norm before clipping
  float lr = 0;          // learning rate used
};

class Trainer {
 public:
  // Validates the config (std::invalid_argument) and sizes the workspace and
  // the optimiser state. The model must outlive the trainer; base modes
  // update it in place. AdapterGains needs current ternary weights.
  Trainer(Model& model, const TrainConfig& cfg);

  // One update from `batch` sequences of seq + 1 tokens each (row-major,
  // row stride seq + 1): inputs are tokens [0, seq), targets [1, seq]. Each
  // row is one independent sequence (positions restart at 0). Throws
  // std::invalid_argument on bad sizes or ids, std::runtime_error (without
  // updating anything) when the loss or the gradient is not finite.
  StepStats step(const int32_t* tokens, int64_t batch, int64_t seq, const Exec& ex);

  int64_t steps_done() const { return step_; }
  const TrainConfig& config() const { return cfg_; }

  // AdapterGains: the gains (n_norms x d_model, norm order of Model) and their
  // f32 views for evaluate() (valid while the trainer lives). set_gains also
  // resets the optimiser state and the step count (the schedule starts over).
  const float* gains() const { return gains_.data(); }
  void set_gains(const float* gains, int64_t n);
  std::vector<norm::GainView> gain_views() const;

  // The optimiser state (AdamW first and second moments, one per trained
  // value: n_params in the base modes, n_gains in the adapter mode, and the
  // step count), so a checkpoint can resume the run bit for bit.
  int64_t state_size() const { return int64_t(m_.size()); }
  const float* adam_m() const { return m_.data(); }
  const float* adam_v() const { return v_.data(); }
  // Replaces the state. Throws std::invalid_argument (changing nothing) on a
  // count other than state_size(), a negative step, or a non-finite moment
  // or a negative second moment.
  void restore_state(const float* m, const float* v, int64_t n, int64_t step);

 private:
  Model& model_;
  TrainConfig cfg_;
  int64_t step_ = 0;
  AlignedBuffer<float> grad_, m_, v_, gains_;
  std::vector<int32_t> inputs_, targets_;
  std::vector<norm::GainView> views_;
  std::unique_ptr<GradI8> grad_i8_;  // GradQuant::Int8: the transposed trits and their scratch
};

}  // namespace ternorm::model
