// The layers of the model, each forward next to its backward (llm.c style).
// Shapes are row-major; n = batch * seq tokens; d = d_model, f = d_ff,
// V = vocab, H = query heads, Hkv = key/value heads (H for multi-head
// attention, a divisor of H for grouped-query attention), kvd = Hkv * head_dim.
// Every call takes an Exec and threads over independent
// rows, heads or channels only, so results never depend on the thread count.
// Backward functions overwrite their outputs unless they say "+=".
#pragma once
#include <cstdint>
#include <vector>

#include "../cpu/aligned_buffer.h"
#include "../cpu/isa.h"
#include "../norm/gain_codec.h"
#include "../ternary/ternary.h"
#include "model.h"

namespace ternorm::model {

// ---- token embedding ---------------------------------------------------------------
// x[t] = table[tokens[t]] (ids already validated), a 16-bit table widened.
void embedding_forward(const TokenTable& table, int64_t d, const int32_t* tokens, int64_t n,
                       float* x, const Exec& ex);
// dtable[tokens[t]] += dx[t], tokens taken in order (threads split channels).
void embedding_backward(const int32_t* tokens, int64_t n, int64_t d, const float* dx, float* dtable,
                        const Exec& ex);

// ---- residual ----------------------------------------------------------------------
// out = a + b (out may alias a). Backward is the identity into both branches.
void residual_forward(float* out, const float* a, const float* b, int64_t count, const Exec& ex);

// ---- RMSNorm with gain (wraps norm/rmsnorm.h) -------------------------------------------
// y = x / rms(x) * w_base * g.
struct NormWeights {
  const float* w_base = nullptr;  // d
  norm::GainView gain;            // d gains, any encoding
  float eps = 1e-5f;
};
void rmsnorm_forward(const NormWeights& w, const float* x, int64_t n, int64_t d, float* y,
                     const Exec& ex);
// The same, quantised per token to int8 for a ternary linear (see
// ternary::quantize_activations for the layout).
void rmsnorm_forward_i8(const NormWeights& w, const float* x, int64_t n, int64_t d, int8_t* q,
                        float* scales, const Exec& ex);
// Precision p's form: rmsnorm_forward_i8 into (q, scales) in Ternary,
// rmsnorm_forward into y then quantize_input in TernaryBlockAct (the fused
// kernel quantises per token only), else rmsnorm_forward into y.
void rmsnorm_forward_as(Precision p, const NormWeights& w, const float* x, int64_t n, int64_t d,
                        float* y, int8_t* q, float* scales, const Exec& ex);
// residual_forward(out, a, b, n * d) then rmsnorm_forward_as on out, in one
// parallel region (each thread norms the rows it just added, from its cache):
// the same bits and errors as the two calls.
void residual_rmsnorm_forward_as(Precision p, const NormWeights& w, float* out, const float* a,
                                 const float* b, int64_t n, int64_t d, float* y, int8_t* q,
                                 float* scales, const Exec& ex);
// dx (n x d) and dgain (d, w.r.t. the decoded gains g); either may be null.
void rmsnorm_backward(const NormWeights& w, const float* x, int64_t n, int64_t d, const float* dy,
                      float* dx, float* dgain, const Exec& ex);

// ---- linear: y = x W^T (W is rows x cols) -------------------------------------------------
struct LinearWeights {
  const float* latent = nullptr;  // rows x cols fp32 (used in Precision::F32)
  ternary::PackedTernary packed;  // ternarised weights (the ternary precisions)
  int64_t rows = 0, cols = 0;
};
// The input as forward consumed it: fp32 rows (F32, TernaryF32Act) or int8
// rows (row stride ternary::padded_cols(cols)) and scales: one per token
// (Ternary) or per 256-value block of a token (TernaryBlockAct,
// ternary::act_blocks(cols) per token).
struct LinearInput {
  const float* x = nullptr;
  const int8_t* q = nullptr;
  const float* scales = nullptr;
};
// The input of a linear layer in the form precision p consumes: (q, scales)
// in the int8 precisions, x otherwise.
LinearInput linear_input(Precision p, const float* x, const int8_t* q, const float* scales);
// The int8 input of precision p (int8_act(p)): ternary::quantize_activations
// (Ternary) or quantize_activations_block (TernaryBlockAct).
void quantize_input(Precision p, const float* x, int64_t n, int64_t cols, int8_t* q, float* scales,
                    const Exec& ex);
// F32: y = x W^T (gemm_f32). Ternary: y = gemm_i8(trits, q) with the two
// scales; TernaryBlockAct the same by gemm_i8_block. TernaryF32Act:
// y = x (trit * scale)^T (matmul_f32).
void linear_forward(Precision p, const LinearWeights& w, const LinearInput& in, int64_t n, float* y,
                    const Exec& ex);
// Backward; in the ternary precisions a straight-through estimator (BitNet
// b1.58): both quantisers pass gradients unchanged, so with W_eff = the
// weights forward used (latent in F32, trit * scale otherwise) and x_eff = the
// input forward used (x, or q * scale dequantised):
//   dx = dy W_eff          (gemm_f32 in F32, matmul_f32_t otherwise)   [null: skip]
//   dw = dy^T x_eff        (gemm_f32; the gradient of the latent weights) [null: skip]
// scratch (n x cols floats) holds x_eff in Precision::Ternary when dw is wanted.
// gi8 (a ternary precision only; null: the fp32 dx above) computes dx in int8
// instead, see LinearGradI8.
struct LinearGradI8;
void linear_backward(Precision p, const LinearWeights& w, const LinearInput& in, int64_t n,
                     const float* dy, float* dx, float* dw, float* scratch, const Exec& ex,
                     const LinearGradI8* gi8 = nullptr);

// The int8 gradient of a ternary linear's input (TrainConfig::grad_quant
// "int8"), with s[r] the weights' row scales:
//   dy'[t][r] = dy[t][r] * s[r], quantised per token (ternary::quantize_activations),
//   dx[t][c]  = float(sum_r trit[r][c] * q[t][r]) * dy'_scale[t]
// by gemm_i8 on the transposed trits (unit scales). The sums are exact
// integers, so dx has the same bits on every ISA path and thread count; it
// differs from the fp32 dx by dy's int8 rounding (the trits are exact).
// Folding s into dy before quantising serves fused matrices (Qkv, GateUp:
// one scale per part) and per-row scales alike.
struct LinearGradI8 {
  ternary::PackedTernary trits_t;  // the trits transposed (cols x rows), scales all 1
  int8_t* q = nullptr;             // scratch: n x padded_cols(rows)
  float* q_scales = nullptr;       // scratch: n
};

// Every ternary linear's LinearGradI8 for a frozen base: the transposed trits
// are copied once, in the 2-bit compute layout (packed2_bytes(cols, rows)
// bytes per linear: 0.85 MB for the shipped model), plus the int8 dy of a
// call of up to max_tokens tokens (a byte per token per row of the widest
// linear, and a scale per token: 1.6 MB for 8 x 128 tokens). The copy is
// taken now: a base whose ternary weights change afterwards needs a new one.
class GradI8 {
 public:
  GradI8(const Model& m, int64_t max_tokens);
  LinearGradI8 linear(int64_t layer, Linear lin);  // shares the one scratch
  int64_t bytes() const;                           // the transposed copies and the scratch

 private:
  int64_t n_layers_ = 0;
  std::vector<ternary::PackedTernary> trits_t_;  // layer-major, kLinearsPerLayer per layer
  AlignedBuffer<uint8_t> packed_;
  AlignedBuffer<float> ones_, q_scales_;
  AlignedBuffer<int8_t> q_;
};

// ---- a model's weights as the layers take them ---------------------------------------------
// Linear lin of block `layer` (latent and packed weights).
LinearWeights linear_weights(const Model& m, int64_t layer, Linear lin);
// Norm k (norm_offset order) as the fused kernel sees it: with an adapter
// (gains: n_norms views), the base weight times the adapter's gains; without
// (gains null), a unit base times the weight itself taken as the gain (same
// product, and then the kernel's dgain is the weight's gradient).
NormWeights norm_weights(const Model& m, const norm::GainView* gains, int64_t k);

// ---- RoPE ----------------------------------------------------------------------------
// qkv holds B*T rows of [q (d) | k (kvd) | v (kvd)]. Rotates, in q and k of every
// head, the channel pair (2i, 2i+1) by angle(t, i) (tables from Model, stride
// head_dim/2 per position t < T). Backward rotates the gradient back
// (angle -> -angle); v is untouched either way.
void rope_forward(float* qkv, int64_t B, int64_t T, int64_t d, int64_t kvd, int64_t head_dim,
                  const float* cos, const float* sin, const Exec& ex);
// The same for n rows at their own positions (decoding: each row of a batch
// is the next token of its sequence): row r is rotated by angle(positions[r], i).
void rope_forward_at(float* qkv, int64_t n, const int64_t* positions, int64_t d, int64_t kvd,
                     int64_t head_dim, const float* cos, const float* sin, const Exec& ex);
void rope_backward(float* dqkv, int64_t B, int64_t T, int64_t d, int64_t kvd, int64_t head_dim,
                   const float* cos, const float* sin, const Exec& ex);

// ---- causal multi-head / grouped-query attention ------------------------------------------------
// qkv as for RoPE. Per sequence b and query head h (channels h*hd .. h*hd+hd-1
// of q), reading key/value head g = h / (H / Hkv) (channels g*hd .. of k and v):
//   P = softmax(q k^T / sqrt(hd)) over keys j <= i, out = P v
// (exp by exp_approx, row sums in double); out is B*T rows of d.
// P (B x H x T x T) is saved for backward, zero above the diagonal.
// query_from (B entries, or null for all rows): only the output rows
// i >= query_from[b] of sequence b are wanted; earlier ones may be left
// unwritten in out and P (evaluation skips rows it does not score). The
// wanted rows get the same bits either way.
void attention_forward(const float* qkv, int64_t B, int64_t T, int64_t d, int64_t H, int64_t Hkv,
                       float* P, float* out, const int64_t* query_from, const Exec& ex);
// One query head of one sequence over its key/value cache (decoding): the n
// new rows at positions p0 .. p0+n-1 (row r of q at q + r*ldq, this head's
// hd channels), each against keys and values 0 .. its position. The keys are
// in key panels (decode_kernels.h: kKeyPanel positions per hd x kKeyPanel
// panel, panel b at kp + b * hd * kKeyPanel), the values in rows (position j
// at vc + j*ldv, this head's kv channels); the new ones already written.
// scores: scratch of at least p0 + n rounded up to kKeyPanel floats. Writes n
// rows of hd at out (stride ldo). Runs on the calling thread (one: a
// single-thread Exec), reading the cache in place (decode_kernels.h), no
// allocation. Every row gets the bits attention_forward gives it in a row
// block of more than gemm::kDirectMaxM rows (the packed gemm_f32 path's
// operations, the same softmax); in a smaller block (the last block of a
// window of T with T % 64 in 1..8) the window sums the scores in another order.
void attention_cached_forward(const float* q, int64_t ldq, int64_t n, int64_t p0, const float* kp,
                              const float* vc, int64_t ldv, int64_t hd, float* out, int64_t ldo,
                              float* scores, const Exec& one);
// dqkv gets dq, dk, dv (all d + 2 kvd columns overwritten; a shared k/v head
// sums its query heads' parts in head order); dP is scratch of P's size.
void attention_backward(const float* qkv, const float* P, const float* dout, int64_t B, int64_t T,
                        int64_t d, int64_t H, int64_t Hkv, float* dP, float* dqkv, const Exec& ex);

// ---- SwiGLU ----------------------------------------------------------------------------
// gu holds n rows of [gate (f) | up (f)]; s = silu(gate) * up (n x f), the
// sigmoid by exp_approx.
void swiglu_forward(const float* gu, int64_t n, int64_t f, float* s, const Exec& ex);
// swiglu_forward then quantize_input(p, s, ...) (p an int8 precision), in one
// parallel region, each row quantised right after it is written: the same
// bits and errors as the two calls.
void swiglu_quantize_forward(Precision p, const float* gu, int64_t n, int64_t f, float* s,
                             int8_t* q, float* scales, const Exec& ex);
void swiglu_backward(const float* gu, const float* ds, int64_t n, int64_t f, float* dgu,
                     const Exec& ex);

// ---- output head and cross-entropy ------------------------------------------------------------
// logits = x table^T (n x V), table = Model::head() (V x d): the token
// embedding when tied, the output table otherwise. A 16-bit table gives the
// bits of its fp32 expansion (gemm_f32 widens it exactly).
// panels (Model::head_panels of the model whose table this is) are asked for the
// table packed once; null packs it per call: the same bits either way.
void head_forward(const float* x, const TokenTable& table, int64_t n, int64_t d, int64_t V,
                  float* logits, const Exec& ex, HeadPanels* panels = nullptr);
// dx = dlogits table, dtable = dlogits^T x (overwritten); either may be null.
// dtable (training the table) needs an fp32 table: std::invalid_argument.
void head_backward(const float* dlogits, const float* x, const TokenTable& table, int64_t n,
                   int64_t d, int64_t V, float* dx, float* dtable, const Exec& ex,
                   HeadPanels* panels = nullptr);
// nll[t] = logsumexp(logits[t]) - logits[t][targets[t]] (exp by exp_approx,
// sums in double), 0 where targets[t] < 0 (a position that is not scored).
// logits is overwritten with softmax(logits), which backward reads.
void cross_entropy_forward(float* logits, const int32_t* targets, int64_t n, int64_t V, double* nll,
                           const Exec& ex);
// The same nll without the softmax: logits are left as they are (evaluation,
// which has no backward).
void cross_entropy_nll(const float* logits, const int32_t* targets, int64_t n, int64_t V,
                       double* nll, const Exec& ex);
// dlogits[t] = scale * (probs[t] - onehot(targets[t])), rows with targets[t] < 0
// zero; dlogits may alias probs.
void cross_entropy_backward(const float* probs, const int32_t* targets, int64_t n, int64_t V,
                            float scale, float* dlogits, const Exec& ex);

}  // namespace ternorm::model
