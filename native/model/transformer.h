// The whole network's forward and backward passes over a preallocated
// workspace: embedding -> n_layers x [RMSNorm -> QKV -> RoPE -> causal
// attention -> O, residual; RMSNorm -> gate/up -> SwiGLU -> down, residual]
// -> final RMSNorm -> output head (tied or not) -> cross-entropy. Training (train.h) and
// evaluation (eval.h) are both built on these two calls.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "../cpu/aligned_buffer.h"
#include "../cpu/isa.h"
#include "../norm/gain_codec.h"
#include "model.h"

namespace ternorm::model {

struct LayerResume;
class GradI8;

// Every activation a pass needs, sized once for (max_batch, max_seq) so no
// layer call allocates. With for_backward the activations of every layer are
// kept (backward reads them); without, the layers share one slot.
class Workspace {
 public:
  Workspace(const ModelConfig& cfg, int64_t max_batch, int64_t max_seq, bool for_backward);

  // True when it was sized for exactly this model shape, batch, sequence and kind.
  bool sized_for(const ModelConfig& c, int64_t max_batch, int64_t max_seq, bool for_backward) const;

  int64_t max_batch() const { return max_batch_; }
  int64_t max_seq() const { return max_seq_; }
  bool for_backward() const { return for_backward_; }

  // Per-token NLL of the last forward (B*T, 0 where the target is -1).
  const double* nll() const { return nll_.data(); }
  // After a forward without keep_probs: the logits (vocab each) of the scored
  // rows, row k = the k-th scored position in row-major order.
  const float* logits() const { return f32_.data() + off_logits_; }

 private:
  friend double transformer_forward(const Model&, Precision, const norm::GainView*, const int32_t*,
                                    const int32_t*, int64_t, int64_t, Workspace&, bool, const Exec&,
                                    const LayerResume*);
  friend void transformer_backward(const Model&, Precision, const norm::GainView*, const int32_t*,
                                   const int32_t*, int64_t, int64_t, float, Workspace&, float*,
                                   float*, const Exec&, GradI8*);
  struct Layer {  // what backward reads, per layer
    float *xm, *h1, *qkv, *P, *att, *h2, *gu, *s;
    int8_t *h1q, *attq, *h2q, *sq;
    float *h1s, *atts, *h2s, *ss;
  };
  float* x(int64_t l);  // input of layer l (l = n_layers: the last layer's output)
  Layer layer(int64_t l);

  ModelConfig cfg_;
  int64_t max_batch_, max_seq_;
  bool for_backward_;
  int64_t slots_;
  AlignedBuffer<float> f32_;  // every fp32 activation, carved by offsets
  AlignedBuffer<int8_t> i8_;
  AlignedBuffer<double> nll_;
  bool probs_ready_ = false;         // a forward with keep_probs left the softmax
  AlignedBuffer<int32_t> scored_;    // targets of the scored rows (head on scored rows only)
  std::vector<int64_t> query_from_;  // per sequence: its first scored row (trimmed last layer)
  int64_t off_x_, off_xm_, off_h1_, off_qkv_, off_P_, off_att_, off_h2_, off_gu_, off_s_, off_q8s_;
  int64_t off_tmp_, off_xf_, off_logits_;
  int64_t off_dx_, off_dtmp_, off_dh_, off_datt_, off_dqkv_, off_dgu_, off_ds_, off_dP_, off_deq_,
      off_dxf_;
  int64_t i8_h1_, i8_att_, i8_h2_, i8_s_;
};

// A workspace for one call: an idle one an earlier call of the same model
// shape, size and kind gave back (the most recently used), or a new one; given
// back when the lease ends. The bet evaluates and trains one model dozens of
// times per user, and a new workspace each time paid for its pages again on
// first touch: a tenth of the evaluation's CPU time, and ~0.2 s of each
// adapter trainer of the shipped model, whose Trainer objects the caller does
// not free before the next user's (a trainer leases its workspace per step).
// Shared by every thread, not kept per thread: the addon's asynchronous calls
// run on whichever libuv worker is free. The passes write every value they
// read, so a reused workspace gives the same bits. Kept idle: the last 3
// inference workspaces and the last backward one (its memory stays with the
// process after the trainer is gone).
class WorkspaceLease {
 public:
  WorkspaceLease(const ModelConfig& c, int64_t max_batch, int64_t max_seq, bool for_backward);
  ~WorkspaceLease();
  WorkspaceLease(const WorkspaceLease&) = delete;
  WorkspaceLease& operator=(const WorkspaceLease&) = delete;
  Workspace& get() { return *ws_; }

 private:
  std::unique_ptr<Workspace> ws_;
};

// The residual stream at layer boundaries, for a forward that repeats an
// earlier one's first layers (inference only). Layer l's input depends only
// on the inputs and the gains of norms 0 .. 2l - 1, so a forward whose gains
// differ from an earlier one's only from norm 2l on can start at layer l
// from that forward's stream there: the same operations on the same values,
// so the same bits.
struct LayerResume {
  int64_t from = 0;          // 0 .. n_layers: skip the embedding and layers < from
  const float* x = nullptr;  // from > 0: the stream entering layer `from` (B*T*d)
  // null, or n_layers + 1 pointers: save[l] (l > from; null: not kept) receives the stream
  // entering layer l (l = n_layers: the final norm's input), B*T*d each
  float* const* save = nullptr;
};

// Forward over B sequences of T tokens (inputs and targets are B*T ids, row
// per sequence; a target of -1 is not scored). gains: the adapter (n_norms
// views, validated by the caller) or null for none. Returns the sum of the
// per-token NLL (in ws.nll()). keep_probs leaves the softmax of every row in
// the workspace for transformer_backward; without it, the tied head and the
// loss run on the scored rows only (sliding-window evaluation scores a part
// of each window), and so does the last layer past its keys and values. Throws
// std::invalid_argument on bad sizes or ids, std::logic_error when a ternary precision meets stale
// weights. resume (without keep_probs only): see LayerResume.
double transformer_forward(const Model& m, Precision p, const norm::GainView* gains,
                           const int32_t* inputs, const int32_t* targets, int64_t B, int64_t T,
                           Workspace& ws, bool keep_probs, const Exec& ex,
                           const LayerResume* resume = nullptr);

// Backward of the loss = loss_scale * sum of NLL, right after a forward with
// keep_probs on the same arguments. Overwrites:
//   dparams (n_params, layout of Model::params): every parameter's gradient
//     (latent weights through the STE in the ternary precisions) - only
//     without an adapter (gains == null);
//   dgains (n_gains, adapter layout): the gains' gradient - only with one.
// Either may be null to skip it; the frozen part costs nothing.
// gi8 (adapter gradients only, a ternary precision; layers.h): every ternary
// linear's dx in int8 instead of fp32.
void transformer_backward(const Model& m, Precision p, const norm::GainView* gains,
                          const int32_t* inputs, const int32_t* targets, int64_t B, int64_t T,
                          float loss_scale, Workspace& ws, float* dparams, float* dgains,
                          const Exec& ex, GradI8* gi8 = nullptr);

}  // namespace ternorm::model
