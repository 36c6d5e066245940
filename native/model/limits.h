// The one home of the ranges and defaults of every number a caller hands the
// core: the model's shape, the training step, evaluation and the adapter
// codec. The structs that carry these numbers (ModelConfig, TrainConfig,
// EvalOptions, codec::EncodeOptions) take their defaults from here, the core's
// validators check against these ranges, and the addon exports the tables
// (limits()) so TypeScript and the CLI range-check from the same numbers
// before any work starts.
//
// Names are spelled as the JS API spells them (camelCase); a plain POD header.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

namespace ternorm::limits {

struct Limit {
  const char* name;
  double min, max;
  bool min_open, max_open;  // (min, ...) / (..., max) instead of [min, max]
  bool integer;
  double def;  // the default; NaN when there is none
  const char* what;

  constexpr Limit with_default(double d) const {
    return Limit{name, min, max, min_open, max_open, integer, d, what};
  }
  bool contains(double v) const {
    if (!std::isfinite(v) || (integer && v != std::floor(v))) return false;
    return (min_open ? v > min : v >= min) && (max_open ? v < max : v <= max);
  }
  // "an integer in 1..1024", "a number in (0, 1)", "a number in [0, 3.4e38]".
  std::string range() const;
};

// Throws std::invalid_argument "<where>.<name> must be <range>, got <v>".
void check(const Limit& l, double v, const char* where);
// Same with an upper bound tighter than l.max that depends on other values
// (n_heads <= d_model, seq <= context).
void check(const Limit& l, double v, double max, const char* where);

constexpr double kNone = std::numeric_limits<double>::quiet_NaN();
constexpr double kFloatMax = 3.4028234663852886e38;
constexpr double kPow2_40 = 1099511627776.0;

// ---- the model's shape (ModelConfig) -------------------------------------------------
namespace model {
inline constexpr Limit vocab{"vocab", 2,    1 << 24, false,
                             false,   true, 4096,    "tokens in the vocabulary"};
inline constexpr Limit d_model{"dModel", 2,    65536, false,
                               false,    true, 256,   "width of the residual stream"};
inline constexpr Limit n_layers{"nLayers", 1, 1024, false, false, true, 4, "transformer blocks"};
inline constexpr Limit n_heads{
    "nHeads", 1, 65536, false, false, true, 4, "attention heads (at most dModel, dividing it)"};
inline constexpr Limit d_ff{"dFf", 1,    65536, false,
                            false, true, 768,   "hidden width of the SwiGLU feed-forward"};
inline constexpr Limit context{"context", 1,    65536, false,
                               false,     true, 256,   "longest sequence (RoPE table length)"};
inline constexpr Limit norm_eps{"normEps", 0,     kFloatMax, true,
                                false,     false, 1e-5,      "RMSNorm epsilon"};
inline constexpr Limit rope_theta{"ropeTheta", 1,     kFloatMax, true,
                                  false,       false, 10000,     "RoPE base"};
inline constexpr Limit n_kv_heads{
    "nKvHeads", 0,    65536, false,
    false,      true, 0,     "key/value heads (0: nHeads; at most nHeads, dividing it)"};
inline constexpr const Limit* all[] = {&vocab,   &d_model,  &n_layers,   &n_heads,   &d_ff,
                                       &context, &norm_eps, &rope_theta, &n_kv_heads};
}  // namespace model

// ---- one training step (TrainConfig): base training defaults -------------------------
namespace train {
inline constexpr Limit batch{"batch", 1, 4096, false, false, true, 8, "sequences per step"};
inline constexpr Limit seq{"seq", 1,    65536, false,
                           false, true, 256,   "tokens per sequence (at most the context)"};
inline constexpr Limit lr{"lr", 0, kFloatMax, true, false, false, 1.5e-3, "peak learning rate"};
inline constexpr Limit min_lr{
    "minLr", 0,     kFloatMax, false,
    false,   false, 1.5e-4,    "learning rate at the end of the cosine (at most lr)"};
inline constexpr Limit warmup{"warmup", 0,    kPow2_40, false,
                              false,    true, 100,      "linear warm-up steps"};
inline constexpr Limit total_steps{"totalSteps", 1,    kPow2_40, false,
                                   false,        true, 2000,     "steps of the cosine schedule"};
inline constexpr Limit beta1{"beta1", 0, 1, false, true, false, 0.9, "AdamW first-moment decay"};
inline constexpr Limit beta2{"beta2", 0, 1, false, true, false, 0.95, "AdamW second-moment decay"};
inline constexpr Limit eps{"eps", 0, kFloatMax, true, false, false, 1e-8, "AdamW epsilon"};
inline constexpr Limit weight_decay{
    "weightDecay", 0, kFloatMax, false, false, false, 0.1, "AdamW decoupled weight decay"};
inline constexpr Limit grad_clip{
    "gradClip", 0, kFloatMax, false, false, false, 1.0, "max global gradient L2 norm (0: none)"};
inline constexpr const Limit* all[] = {&batch, &seq,   &lr,  &min_lr,       &warmup,   &total_steps,
                                       &beta1, &beta2, &eps, &weight_decay, &grad_clip};
}  // namespace train

// ---- adapter training: the same ranges, the adapter's defaults ------------------------
// Sized for one user's adapter in < 30 s on 2 cores at the default config: 100
// steps of 8 x 128 tokens at a high learning rate, no weight decay.
namespace adapter_train {
inline constexpr Limit batch = train::batch.with_default(8);
inline constexpr Limit seq = train::seq.with_default(128);
inline constexpr Limit lr = train::lr.with_default(3e-2);
inline constexpr Limit min_lr = train::min_lr.with_default(3e-3);
inline constexpr Limit warmup = train::warmup.with_default(10);
inline constexpr Limit total_steps = train::total_steps.with_default(100);
inline constexpr Limit beta1 = train::beta1;
inline constexpr Limit beta2 = train::beta2;
inline constexpr Limit eps = train::eps;
inline constexpr Limit weight_decay = train::weight_decay.with_default(0);
inline constexpr Limit grad_clip = train::grad_clip;
inline constexpr const Limit* all[] = {&batch, &seq,   &lr,  &min_lr,       &warmup,   &total_steps,
                                       &beta1, &beta2, &eps, &weight_decay, &grad_clip};
}  // namespace adapter_train

// ---- evaluation (EvalOptions) ----------------------------------------------------------
namespace eval {
inline constexpr Limit stride{
    "stride", 0,    65536, false,
    false,    true, 0,     "window step in tokens (0: context / 2; at most the context)"};
inline constexpr Limit batch{
    "batch", 1, 1024, false, false, true, 4, "windows per forward pass (speed and memory only)"};
inline constexpr const Limit* all[] = {&stride, &batch};
}  // namespace eval

// ---- the activation quantisation of Precision::Ternary (a named choice, not a range) ----
// "token": one int8 scale per token (ternorm's own, the default); "block256":
// one per 256 values of a token, llama.cpp's q8_K, which its TQ1_0/TQ2_0
// matmuls use, so ternorm and llama.cpp can be compared to float rounding.
// Index i of names is model::ActQuant(i).
namespace act_quant {
inline constexpr const char* names[] = {"token", "block256"};
inline constexpr int def = 0;
}  // namespace act_quant

// ---- the gradient precision of adapter training through the ternary linears ------------
// "f32": dx = dy W_eff in fp32; "int8": dy (times the weights' row scales)
// quantised per token to int8, dx by the integer kernels on a transposed copy
// of the trits (a ~20 % cheaper step; bit-identical on every ISA path). Base
// training is f32 only. Adapter training defaults to int8: on the default
// users its adapters keep every verdict and policy choice of f32's, closer to
// them than another f32 training seed is (README, "A cheaper user").
// Index i of names is model::GradQuant(i).
namespace grad_quant {
inline constexpr const char* names[] = {"f32", "int8"};
inline constexpr int def = 0;          // the base modes (TrainConfig's default)
inline constexpr int adapter_def = 1;  // the adapter mode (adapter_train_defaults())
}  // namespace grad_quant

// ---- the adapter codec (codec::EncodeOptions) and its calibration ------------------------
namespace codec {
inline constexpr Limit group_size{"groupSize", 1,  1 << 24 /* codec::kMaxD */,      false, false,
                                  true,        32, "int8_group: channels per scale"};
inline constexpr Limit kmeans_max_iters{
    "kmeansMaxIters", 1, 1 << 20, false, false, true, 100, "kmeans16/256: most Lloyd iterations"};
inline constexpr Limit calibration_passes{"calibrationPasses",
                                          0,
                                          64,
                                          false,
                                          false,
                                          true,
                                          1,
                                          "int4_calibrated: per-tensor refinement passes"};
inline constexpr Limit clip{"clip", 0,     1,     true,
                            false,  false, kNone, "int4_calibrated: one clip factor of the grid"};
inline constexpr Limit byte_budget{
    "byteBudget", 0,    kPow2_40, false,
    false,        true, 0,        "mixed, sparse_delta, alloc: most serialised adapter bytes"};
// Calibration tokens score every candidate of the searching methods; each
// candidate is a full evaluation of them, so the count bounds the run time.
inline constexpr Limit calibration_tokens{
    "calibrationTokens",
    2,
    1 << 20,
    false,
    false,
    true,
    512,
    "tokens of the user's training text the searching methods score on"};
inline constexpr const Limit* all[] = {&group_size, &kmeans_max_iters, &calibration_passes,
                                       &clip,       &byte_budget,      &calibration_tokens};
}  // namespace codec

// ---- generation: sampling (SamplerOptions) and decoding (DecodeState) ----------------------
namespace generate {
inline constexpr Limit temperature{
    "temperature", 0, kFloatMax, false, false, false, 1, "softmax temperature (0: greedy)"};
inline constexpr Limit top_k{"topK", 0,    1 << 24, false,
                             false,  true, 0,       "keep the k most likely tokens (0: off)"};
inline constexpr Limit top_p{"topP", 0,     1, true,
                             false,  false, 1, "keep the most likely tokens reaching p (1: off)"};
inline constexpr Limit min_p{
    "minP", 0, 1, false, false, false, 0, "keep tokens of at least minP x the top one's (0: off)"};
inline constexpr Limit max_tokens{"maxTokens", 1,    65536, false,
                                  false,       true, 128,   "tokens generated at most"};
// One decode state holds this many sequences (the K users of one batched step).
inline constexpr Limit sequences{"sequences", 1,    65536, false,
                                 false,       true, 1,     "sequences decoded together"};
// New tokens in one decode call (a prompt is processed in chunks of at most this).
inline constexpr Limit rows{"rows", 1,    65536, false,
                            false,  true, 64,    "new tokens per decode call (prompt chunk)"};
inline constexpr const Limit* all[] = {&temperature, &top_k,     &top_p, &min_p,
                                       &max_tokens,  &sequences, &rows};
}  // namespace generate

// ---- a norm-only adapter's gains -------------------------------------------------------
// Trained gains sit near 1.0; a gain beyond the f16 range (what raw_fp16 ships)
// overflows the activations downstream, so every adapter is refused beyond it.
namespace adapter {
inline constexpr Limit gain{"gain", -65504, 65504, false,
                            false,  false,  1,     "a norm-only adapter gain (the f16 range)"};
inline constexpr const Limit* all[] = {&gain};
}  // namespace adapter

struct Group {
  const char* name;
  const Limit* const* rows;
  size_t n;
};
template <size_t N>
constexpr Group group(const char* name, const Limit* const (&rows)[N]) {
  return Group{name, rows, N};
}
inline constexpr Group groups[] = {group("model", model::all),
                                   group("train", train::all),
                                   group("adapterTrain", adapter_train::all),
                                   group("eval", eval::all),
                                   group("codec", codec::all),
                                   group("adapter", adapter::all),
                                   group("generate", generate::all)};

}  // namespace ternorm::limits
