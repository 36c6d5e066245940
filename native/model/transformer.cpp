#include "transformer.h"

#include <algorithm>
#include <mutex>
#include <stdexcept>
#include <string>

#include "../gemm/gemm.h"
#include "layers.h"

namespace ternorm::model {

// ---- workspace -----------------------------------------------------------------------------

Workspace::Workspace(const ModelConfig& cfg, int64_t max_batch, int64_t max_seq, bool for_backward)
    : cfg_(cfg), max_batch_(max_batch), max_seq_(max_seq), for_backward_(for_backward) {
  validate(cfg_);
  if (max_batch < 1 || max_seq < 1 || max_seq > cfg.context)
    throw std::invalid_argument("workspace: need batch >= 1 and 1 <= seq <= context (" +
                                std::to_string(cfg.context) + "), got batch " +
                                std::to_string(max_batch) + ", seq " + std::to_string(max_seq));
  const int64_t d = cfg.d_model, f = cfg.d_ff, V = cfg.vocab, L = cfg.n_layers;
  const int64_t N = max_batch * max_seq, PT = max_batch * cfg.n_heads * max_seq * max_seq;
  const int64_t qkv = d + 2 * cfg.kv_dim();  // width of a fused q|k|v row
  slots_ = for_backward ? L : 1;
  int64_t off = 0;
  auto take = [&](int64_t count) {
    const int64_t o = off;
    off += (count + 15) / 16 * 16;  // 64-byte aligned pieces
    return o;
  };
  off_x_ = take((for_backward ? L + 1 : 1) * N * d);
  off_xm_ = for_backward ? take(L * N * d) : off_x_;  // inference updates x in place
  off_h1_ = take(slots_ * N * d);
  off_qkv_ = take(slots_ * N * qkv);
  off_P_ = take(slots_ * PT);
  off_att_ = take(slots_ * N * d);
  off_h2_ = take(slots_ * N * d);
  off_gu_ = take(slots_ * N * 2 * f);
  off_s_ = take(slots_ * N * f);
  // int8 scales: one per token, or per 256-value block (Precision::TernaryBlockAct).
  const int64_t nbd = ternary::act_blocks(d), nbf = ternary::act_blocks(f);
  off_q8s_ = take(slots_ * N * (3 * nbd + nbf));
  off_tmp_ = take(N * d);
  off_xf_ = take(N * d);
  off_logits_ = take(N * V);
  off_dx_ = off_dtmp_ = off_dh_ = off_datt_ = off_dqkv_ = off_dgu_ = off_ds_ = off_dP_ = off_deq_ =
      off_dxf_ = -1;
  if (for_backward) {
    off_dx_ = take(N * d);
    off_dtmp_ = take(N * d);
    off_dh_ = take(N * d);
    off_datt_ = take(N * d);
    off_dqkv_ = take(N * qkv);
    off_dgu_ = take(N * 2 * f);
    off_ds_ = take(N * f);
    off_dP_ = take(PT);
    off_deq_ = take(N * std::max(d, f));
    off_dxf_ = take(N * d);
  }
  f32_ = AlignedBuffer<float>(size_t(off));
  const int64_t pd = ternary::padded_cols(d), pf = ternary::padded_cols(f);
  const int64_t per_slot = N * (3 * pd + pf);
  i8_h1_ = 0;
  i8_att_ = N * pd;
  i8_h2_ = 2 * N * pd;
  i8_s_ = 3 * N * pd;
  i8_ = AlignedBuffer<int8_t>(size_t(slots_ * per_slot));
  nll_ = AlignedBuffer<double>(size_t(N));
  scored_ = AlignedBuffer<int32_t>(size_t(N));
  query_from_.resize(size_t(max_batch));
}

bool Workspace::sized_for(const ModelConfig& c, int64_t max_batch, int64_t max_seq,
                          bool for_backward) const {
  return max_batch_ == max_batch && max_seq_ == max_seq && for_backward_ == for_backward &&
         cfg_.vocab == c.vocab && cfg_.d_model == c.d_model && cfg_.n_layers == c.n_layers &&
         cfg_.n_heads == c.n_heads && cfg_.kv_heads() == c.kv_heads() && cfg_.d_ff == c.d_ff &&
         cfg_.context == c.context;
}

namespace {
// The idle workspaces, the most recently given back last.
std::mutex g_idle_mutex;
std::vector<std::unique_ptr<Workspace>> g_idle;
constexpr size_t kIdleInference = 3, kIdleBackward = 1;
}  // namespace

WorkspaceLease::WorkspaceLease(const ModelConfig& c, int64_t max_batch, int64_t max_seq,
                               bool for_backward) {
  {
    std::lock_guard<std::mutex> lock(g_idle_mutex);
    for (size_t i = g_idle.size(); i-- > 0;)
      if (g_idle[i]->sized_for(c, max_batch, max_seq, for_backward)) {
        ws_ = std::move(g_idle[i]);
        g_idle.erase(g_idle.begin() + std::ptrdiff_t(i));
        return;
      }
  }
  ws_ = std::make_unique<Workspace>(c, max_batch, max_seq, for_backward);
}

WorkspaceLease::~WorkspaceLease() {
  std::lock_guard<std::mutex> lock(g_idle_mutex);
  const bool backward = ws_->for_backward();
  g_idle.push_back(std::move(ws_));
  // Past the kind's limit, its least recently used one goes.
  size_t kept = 0;
  for (size_t i = g_idle.size(); i-- > 0;)
    if (g_idle[i]->for_backward() == backward &&
        ++kept > (backward ? kIdleBackward : kIdleInference)) {
      g_idle.erase(g_idle.begin() + std::ptrdiff_t(i));
      break;
    }
}

float* Workspace::x(int64_t l) {
  return f32_.data() + off_x_ + (for_backward_ ? l : 0) * max_batch_ * max_seq_ * cfg_.d_model;
}

Workspace::Layer Workspace::layer(int64_t l) {
  const int64_t s = for_backward_ ? l : 0;
  const int64_t d = cfg_.d_model, f = cfg_.d_ff, N = max_batch_ * max_seq_;
  const int64_t PT = max_batch_ * cfg_.n_heads * max_seq_ * max_seq_;
  const int64_t pd = ternary::padded_cols(d), pf = ternary::padded_cols(f);
  float* b = f32_.data();
  int8_t* q = i8_.data() + s * N * (3 * pd + pf);
  const int64_t nbd = ternary::act_blocks(d), nbf = ternary::act_blocks(f);
  float* qs = b + off_q8s_ + s * N * (3 * nbd + nbf);
  Layer r;
  r.xm = b + off_xm_ + s * N * d;
  r.h1 = b + off_h1_ + s * N * d;
  r.qkv = b + off_qkv_ + s * N * (d + 2 * cfg_.kv_dim());
  r.P = b + off_P_ + s * PT;
  r.att = b + off_att_ + s * N * d;
  r.h2 = b + off_h2_ + s * N * d;
  r.gu = b + off_gu_ + s * N * 2 * f;
  r.s = b + off_s_ + s * N * f;
  r.h1q = q + i8_h1_, r.attq = q + i8_att_, r.h2q = q + i8_h2_, r.sq = q + i8_s_;
  r.h1s = qs, r.atts = qs + N * nbd, r.h2s = qs + 2 * N * nbd, r.ss = qs + 3 * N * nbd;
  return r;
}

// ---- helpers --------------------------------------------------------------------------------

namespace {

void check_call(const Model& m, Precision p, const int32_t* inputs, const int32_t* targets,
                int64_t B, int64_t T, const Workspace& ws) {
  const ModelConfig& c = m.config();
  if (B < 1 || B > ws.max_batch())
    throw std::invalid_argument("forward: batch " + std::to_string(B) + " outside [1, " +
                                std::to_string(ws.max_batch()) + "] (workspace size)");
  if (T < 1 || T > ws.max_seq() || T > c.context)
    throw std::invalid_argument("forward: sequence length " + std::to_string(T) + " outside [1, " +
                                std::to_string(ws.max_seq()) +
                                "] (workspace size, at most the context " +
                                std::to_string(c.context) + ")");
  if (p != Precision::F32 && p != Precision::Ternary && p != Precision::TernaryF32Act &&
      p != Precision::TernaryBlockAct)
    throw std::invalid_argument("forward: unknown precision " + std::to_string(int(p)));
  if (p != Precision::F32 && m.ternary_stale())
    throw std::logic_error(std::string("forward: precision ") + precision_name(p) +
                           " needs the ternary weights, but the latent weights changed since "
                           "the last quantize() (call Model::quantize, e.g. after fp32 training)");
  if (!inputs || !targets) throw std::invalid_argument("forward: null token array");
  for (int64_t i = 0; i < B * T; ++i) {
    if (inputs[i] < 0 || inputs[i] >= c.vocab)
      throw std::invalid_argument("token id " + std::to_string(inputs[i]) + " at position " +
                                  std::to_string(i) + " is out of range [0, " +
                                  std::to_string(c.vocab) + ")");
    if (targets[i] < -1 || targets[i] >= c.vocab)
      throw std::invalid_argument("target id " + std::to_string(targets[i]) + " at position " +
                                  std::to_string(i) + " is out of range [0, " +
                                  std::to_string(c.vocab) + ") (or -1 for not scored)");
  }
}

// Moves the rows i with targets[i] >= 0 (d floats each) to the front, in order.
void pack_scored(const int32_t* targets, int64_t n, int64_t d, float* rows) {
  int64_t k = 0;
  for (int64_t i = 0; i < n; ++i)
    if (targets[i] >= 0) {
      if (k != i) std::copy(rows + i * d, rows + i * d + d, rows + k * d);
      ++k;
    }
}

}  // namespace

// ---- forward --------------------------------------------------------------------------------

double transformer_forward(const Model& m, Precision p, const norm::GainView* gains,
                           const int32_t* inputs, const int32_t* targets, int64_t B, int64_t T,
                           Workspace& ws, bool keep_probs, const Exec& ex,
                           const LayerResume* resume) {
  const ModelConfig& c = m.config();
  if (ws.cfg_.d_model != c.d_model || ws.cfg_.n_layers != c.n_layers || ws.cfg_.vocab != c.vocab ||
      ws.cfg_.d_ff != c.d_ff || ws.cfg_.n_heads != c.n_heads || ws.cfg_.kv_heads() != c.kv_heads())
    throw std::invalid_argument("forward: workspace was sized for another model config");
  check_call(m, p, inputs, targets, B, T, ws);
  const int64_t d = c.d_model, f = c.d_ff, H = c.n_heads, Hkv = c.kv_heads(), V = c.vocab;
  const int64_t L = c.n_layers, kvd = c.kv_dim();
  const int64_t N = B * T;
  const int64_t from = resume ? resume->from : 0;
  if (resume &&
      (keep_probs || ws.for_backward_ || from < 0 || from > L || (from > 0 && !resume->x)))
    throw std::invalid_argument(
        "forward: resuming at a layer is for inference, from 0 .. n_layers with the stream there");
  float* tmp = ws.f32_.data() + ws.off_tmp_;
  // Without keep_probs only the scored rows need the head and the loss. Past
  // the last layer's keys and values nothing else of an unscored row is used
  // either, so from there on the network runs on the scored rows, packed in
  // place ("trim"), unless that would move the fp32 GEMMs across
  // gemm::kDirectMaxM, where they sum in another order.
  int32_t* tg = ws.scored_.data();
  int64_t rows = N;  // rows the head and the loss run on
  if (!keep_probs) {
    rows = 0;
    for (int64_t i = 0; i < N; ++i)
      if (targets[i] >= 0) tg[rows++] = targets[i];
  }
  const bool trim = rows > 0 && rows < N && (rows > gemm::kDirectMaxM || N <= gemm::kDirectMaxM);
  if (trim)
    for (int64_t b = 0; b < B; ++b) {
      int64_t t = 0;
      while (t < T && targets[b * T + t] < 0) ++t;
      ws.query_from_[size_t(b)] = t;
    }

  // Rows in flight: after a trimmed last layer only the scored ones, packed
  // (so the stream entering the final norm is kept and resumed as those).
  int64_t n = from == L && trim ? rows : N;
  if (from == 0)
    embedding_forward(m.embedding_table(), d, inputs, N, ws.x(0), ex);
  else
    std::copy(resume->x, resume->x + n * d, ws.x(from));
  auto save = [&](int64_t l) {
    if (resume && resume->save && l > from && resume->save[l])
      std::copy(ws.x(l), ws.x(l) + n * d, resume->save[l]);
  };
  // Each residual add runs in one parallel region with the norm after it
  // (residual_rmsnorm_forward_as), and SwiGLU with the quantisation of its
  // output: fewer regions, and each norm reads rows still in its thread's cache.
  for (int64_t l = from; l < L; ++l) {
    save(l);
    const Workspace::Layer a = ws.layer(l);
    float* x = ws.x(l);
    const bool last_trim = trim && l == L - 1;
    // Attention branch (the previous layer's last residual ran this norm).
    if (l == from)
      rmsnorm_forward_as(p, norm_weights(m, gains, 2 * l), x, N, d, a.h1, a.h1q, a.h1s, ex);
    linear_forward(p, linear_weights(m, l, Linear::Qkv), linear_input(p, a.h1, a.h1q, a.h1s), N,
                   a.qkv, ex);
    rope_forward(a.qkv, B, T, d, kvd, c.head_dim(), m.rope_cos(), m.rope_sin(), ex);
    attention_forward(a.qkv, B, T, d, H, Hkv, a.P, a.att,
                      last_trim ? ws.query_from_.data() : nullptr, ex);
    if (last_trim) {
      pack_scored(targets, N, d, a.att);
      pack_scored(targets, N, d, x);
      n = rows;
    }
    if (int8_act(p)) quantize_input(p, a.att, n, d, a.attq, a.atts, ex);
    linear_forward(p, linear_weights(m, l, Linear::O), linear_input(p, a.att, a.attq, a.atts), n,
                   tmp, ex);
    // Feed-forward branch.
    residual_rmsnorm_forward_as(p, norm_weights(m, gains, 2 * l + 1), a.xm, x, tmp, n, d, a.h2,
                                a.h2q, a.h2s, ex);
    linear_forward(p, linear_weights(m, l, Linear::GateUp), linear_input(p, a.h2, a.h2q, a.h2s), n,
                   a.gu, ex);
    if (int8_act(p))
      swiglu_quantize_forward(p, a.gu, n, f, a.s, a.sq, a.ss, ex);
    else
      swiglu_forward(a.gu, n, f, a.s, ex);
    linear_forward(p, linear_weights(m, l, Linear::Down), linear_input(p, a.s, a.sq, a.ss), n, tmp,
                   ex);
    if (l + 1 < L) {  // with the next layer's first norm
      const Workspace::Layer next = ws.layer(l + 1);
      residual_rmsnorm_forward_as(p, norm_weights(m, gains, 2 * (l + 1)), ws.x(l + 1), a.xm, tmp, n,
                                  d, next.h1, next.h1q, next.h1s, ex);
    } else {
      residual_forward(ws.x(l + 1), a.xm, tmp, n * d, ex);
    }
  }
  save(L);
  float* xf = ws.f32_.data() + ws.off_xf_;
  float* logits = ws.f32_.data() + ws.off_logits_;
  double* nll = ws.nll_.data();
  rmsnorm_forward(norm_weights(m, gains, 2 * L), ws.x(L), n, d, xf, ex);
  if (!keep_probs && !trim && rows < N) {  // pack the scored rows of xf (into tmp)
    int64_t k = 0;
    for (int64_t i = 0; i < N; ++i)
      if (targets[i] >= 0) std::copy(xf + i * d, xf + i * d + d, tmp + (k++) * d);
    xf = tmp;
  }
  const int32_t* row_targets = keep_probs ? targets : tg;
  if (rows > 0) {
    head_forward(xf, m.head_table(), rows, d, V, logits, ex, &m.head_panels());
    if (keep_probs)
      cross_entropy_forward(logits, row_targets, rows, V, nll, ex);
    else
      cross_entropy_nll(logits, row_targets, rows, V, nll, ex);
  }
  ws.probs_ready_ = keep_probs;
  if (rows < N) {  // unpack: row k of the packed rows is the k-th scored position
    int64_t k = rows;
    for (int64_t i = N - 1; i >= 0; --i) nll[i] = targets[i] >= 0 ? nll[--k] : 0.0;
  }
  double sum = 0;  // fixed order: independent of threads
  for (int64_t i = 0; i < N; ++i) sum += nll[i];
  return sum;
}

// ---- backward -------------------------------------------------------------------------------

void transformer_backward(const Model& m, Precision p, const norm::GainView* gains,
                          const int32_t* inputs, const int32_t* targets, int64_t B, int64_t T,
                          float loss_scale, Workspace& ws, float* dparams, float* dgains,
                          const Exec& ex, GradI8* gi8) {
  if (!ws.for_backward_)
    throw std::invalid_argument("backward: the workspace was made without for_backward");
  if (!ws.probs_ready_)
    throw std::logic_error("backward: needs a forward with keep_probs on the same batch first");
  if (dparams && gains)
    throw std::invalid_argument(
        "backward: parameter gradients are for training the base "
        "(no adapter); with an adapter only the gains train");
  if (dgains && !gains) throw std::invalid_argument("backward: gain gradients need an adapter");
  if (gi8 && (dparams || p == Precision::F32))
    throw std::invalid_argument(
        "backward: int8 gradients are for adapter training on a ternary base");
  const ModelConfig& c = m.config();
  check_call(m, p, inputs, targets, B, T, ws);
  const int64_t d = c.d_model, f = c.d_ff, H = c.n_heads, Hkv = c.kv_heads(), V = c.vocab;
  const int64_t L = c.n_layers, kvd = c.kv_dim();
  const int64_t N = B * T;
  float* base = ws.f32_.data();
  float* dx = base + ws.off_dx_;
  float* dtmp = base + ws.off_dtmp_;
  float* dh = base + ws.off_dh_;
  float* datt = base + ws.off_datt_;
  float* dqkv = base + ws.off_dqkv_;
  float* dgu = base + ws.off_dgu_;
  float* ds = base + ws.off_ds_;
  float* dP = base + ws.off_dP_;
  float* deq = base + ws.off_deq_;
  float* dxf = base + ws.off_dxf_;
  float* xf = base + ws.off_xf_;
  float* probs = base + ws.off_logits_;  // the forward left the softmax here

  // Where each gradient goes (null: not wanted).
  auto dnorm = [&](int64_t k) -> float* {
    if (gains) return dgains ? dgains + k * d : nullptr;
    return dparams ? dparams + m.norm_offset(k) : nullptr;
  };
  auto dweight = [&](int64_t l, Linear lin) -> float* {
    return dparams ? dparams + m.linear_offset(l, lin) : nullptr;
  };
  LinearGradI8 lgi8;
  auto int8_grad = [&](int64_t l, Linear lin) -> const LinearGradI8* {
    if (!gi8) return nullptr;
    lgi8 = gi8->linear(l, lin);
    return &lgi8;
  };

  // Head and loss. dlogits overwrite the softmax in place. The embedding's
  // gradient starts with the head's part when tied, else at zero (the
  // lookup's part is added last).
  cross_entropy_backward(probs, targets, N, V, loss_scale, probs, ex);
  head_backward(probs, xf, m.head_table(), N, d, V, dxf,
                dparams ? dparams + m.head_offset() : nullptr, ex, &m.head_panels());
  if (dparams && !c.tied_head) std::fill(dparams, dparams + V * d, 0.0f);
  rmsnorm_backward(norm_weights(m, gains, 2 * L), ws.x(L), N, d, dxf, dx, dnorm(2 * L), ex);

  for (int64_t l = L - 1; l >= 0; --l) {
    const Workspace::Layer a = ws.layer(l);
    // dx holds dL/d(output of layer l). Feed-forward branch first.
    linear_backward(p, linear_weights(m, l, Linear::Down), linear_input(p, a.s, a.sq, a.ss), N, dx,
                    ds, dweight(l, Linear::Down), deq, ex, int8_grad(l, Linear::Down));
    swiglu_backward(a.gu, ds, N, f, dgu, ex);
    linear_backward(p, linear_weights(m, l, Linear::GateUp), linear_input(p, a.h2, a.h2q, a.h2s), N,
                    dgu, dh, dweight(l, Linear::GateUp), deq, ex, int8_grad(l, Linear::GateUp));
    rmsnorm_backward(norm_weights(m, gains, 2 * l + 1), a.xm, N, d, dh, dtmp, dnorm(2 * l + 1), ex);
    residual_forward(dx, dx, dtmp, N * d, ex);  // dx = dL/dxm
    // Attention branch.
    linear_backward(p, linear_weights(m, l, Linear::O), linear_input(p, a.att, a.attq, a.atts), N,
                    dx, datt, dweight(l, Linear::O), deq, ex, int8_grad(l, Linear::O));
    attention_backward(a.qkv, a.P, datt, B, T, d, H, Hkv, dP, dqkv, ex);
    rope_backward(dqkv, B, T, d, kvd, c.head_dim(), m.rope_cos(), m.rope_sin(), ex);
    linear_backward(p, linear_weights(m, l, Linear::Qkv), linear_input(p, a.h1, a.h1q, a.h1s), N,
                    dqkv, dh, dweight(l, Linear::Qkv), deq, ex, int8_grad(l, Linear::Qkv));
    const bool need_dx = l > 0 || dparams;  // layer 0's input only feeds the embedding
    rmsnorm_backward(norm_weights(m, gains, 2 * l), ws.x(l), N, d, dh, need_dx ? dtmp : nullptr,
                     dnorm(2 * l), ex);
    if (need_dx) residual_forward(dx, dx, dtmp, N * d, ex);  // dx = dL/d(input of layer l)
  }
  if (dparams) embedding_backward(inputs, N, d, dx, dparams, ex);
  ws.probs_ready_ = false;  // dlogits overwrote the softmax
}

}  // namespace ternorm::model
