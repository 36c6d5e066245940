#include "decode.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "../cpu/thread_pool.h"
#include "../gemm/gemm.h"
#include "decode_kernels.h"
#include "layers.h"
#include "limits.h"

namespace ternorm::model {

// ---- state -----------------------------------------------------------------------------------

DecodeState::DecodeState(const ModelConfig& cfg, int64_t slots, int64_t max_rows)
    : cfg_(cfg), slots_(slots), max_rows_(max_rows) {
  validate(cfg_);
  limits::check(limits::generate::sequences, double(slots), "decode state");
  limits::check(limits::generate::rows, double(max_rows), "decode state");
  rows_ = ternary::round_up(cfg.context, detail::kKeyPanel);
  const int64_t d = cfg.d_model, f = cfg.d_ff, kvd = cfg.kv_dim(), N = max_rows;
  const int64_t pd = ternary::padded_cols(d), pf = ternary::padded_cols(f);
  pos_.assign(size_t(slots), 0);
  // The cache comes with the first call (reserve_cache).
  x_ = AlignedBuffer<float>(size_t(N * d));
  h1_ = AlignedBuffer<float>(size_t(N * d));
  qkv_ = AlignedBuffer<float>(size_t(N * (d + 2 * kvd)));
  att_ = AlignedBuffer<float>(size_t(N * d));
  h2_ = AlignedBuffer<float>(size_t(N * d));
  gu_ = AlignedBuffer<float>(size_t(N * 2 * f));
  s_ = AlignedBuffer<float>(size_t(N * f));
  tmp_ = AlignedBuffer<float>(size_t(N * d));
  xf_ = AlignedBuffer<float>(size_t(N * d));
  q8s_ = AlignedBuffer<float>(size_t(4 * N));
  h1q_ = AlignedBuffer<int8_t>(size_t(N * pd));
  attq_ = AlignedBuffer<int8_t>(size_t(N * pd));
  h2q_ = AlignedBuffer<int8_t>(size_t(N * pd));
  sq_ = AlignedBuffer<int8_t>(size_t(N * pf));
  row_pos_.resize(size_t(N));
  row_entry_.resize(size_t(N));
  tokens_.resize(size_t(N));
  entry_first_.resize(size_t(slots + 1));
  entry_ident_.resize(size_t(slots));
  slot_seen_.resize(size_t(slots));
  checked_.resize(size_t(slots));
  head_xt_ = AlignedBuffer<float>(
      size_t((slots + detail::kHeadLanes - 1) / detail::kHeadLanes * detail::kHeadLanes * d));
  scores_ = AlignedBuffer<float>(size_t(rows_));
}

void DecodeState::check_slot(int64_t slot) const {
  if (slot < 0 || slot >= slots_)
    throw std::invalid_argument("decode: slot " + std::to_string(slot) + " outside [0, " +
                                std::to_string(slots_) + ")");
}

int64_t DecodeState::position(int64_t slot) const {
  check_slot(slot);
  return pos_[size_t(slot)];
}

void DecodeState::reset(int64_t slot) {
  check_slot(slot);
  pos_[size_t(slot)] = 0;  // rows past the position are never read as keys
}

void DecodeState::reset_all() { std::fill(pos_.begin(), pos_.end(), 0); }

int64_t DecodeState::cache_bytes_per_token() const {
  return cfg_.n_layers * 2 * cfg_.kv_dim() * int64_t(sizeof(float));
}

float* DecodeState::keys(int64_t layer, int64_t slot, int64_t g) {
  return cache_.data() + ((layer * slots_ + slot) * 2) * cap_ * cfg_.kv_dim() +
         g * cap_ * cfg_.head_dim();
}

float* DecodeState::values(int64_t layer, int64_t slot, int64_t g) {
  return keys(layer, slot, 0) + cap_ * cfg_.kv_dim() + g * cap_ * cfg_.head_dim();
}

// Growing by doubling copies each cached float about once over a sequence's
// life (and zeroes the new area). Huge pages at every size: in 4 KB pages
// the shipped model's steps at K = 16 took ~1.2x as long. A 20-token answer
// of the 107 M config at K = 16 holds 32 MB of cache instead of the 256 MB
// that a whole context zeroed on the first step (25-50 ms of page clearing,
// and once the machine's free memory was fragmented, 0.9 s of compaction).
void DecodeState::reserve_cache(int64_t rows) {
  if (rows <= cap_) return;
  constexpr int64_t kMinRows = 32;
  int64_t cap = std::max({rows, 2 * cap_, kMinRows});
  cap = std::min(rows_, ternary::round_up(cap, detail::kKeyPanel));
  const int64_t kvd = cfg_.kv_dim(), hd = cfg_.head_dim(), heads = cfg_.kv_heads();
  AlignedBuffer<float> grown(size_t(cfg_.n_layers * slots_ * 2 * cap * kvd), Mapping::Huge);
  // Each head's keys (whole panels) and values keep their offsets within the head's area.
  for (int64_t ls = 0; ls < cfg_.n_layers * slots_ && cap_ > 0; ++ls)
    for (int64_t half = 0; half < 2; ++half)
      for (int64_t g = 0; g < heads; ++g)
        std::memcpy(grown.data() + (ls * 2 + half) * cap * kvd + g * cap * hd,
                    cache_.data() + (ls * 2 + half) * cap_ * kvd + g * cap_ * hd,
                    size_t(cap_ * hd) * sizeof(float));
  cache_ = std::move(grown);
  cap_ = cap;
}

// ---- forward ---------------------------------------------------------------------------------

namespace {

// Whether `checked` (as check_adapter writes it) holds the n views' content.
bool same_adapter(const norm::GainView* views, int64_t n,
                  const std::vector<unsigned char>& checked) {
  const unsigned char* at = checked.data();
  const unsigned char* end = at + checked.size();
  const auto same = [&](const void* p, size_t bytes) {
    if (bytes == 0) return true;
    if (p == nullptr || size_t(end - at) < bytes || std::memcmp(at, p, bytes) != 0) return false;
    at += bytes;
    return true;
  };
  for (int64_t i = 0; i < n; ++i) {
    const norm::GainView& g = views[i];
    if (!same(&g.scheme, sizeof g.scheme) || !same(&g.d, sizeof g.d) ||
        !same(&g.n_params, sizeof g.n_params) || !same(&g.data_bytes, sizeof g.data_bytes) ||
        !same(g.params, g.n_params * sizeof(float)) || !same(g.data, g.data_bytes))
      return false;
  }
  return at == end;
}

// validate_adapter, skipped when the content equals `checked`, the slot's
// last adapter that passed; `checked` becomes this one's content when it passes.
void check_adapter(const ModelConfig& c, const norm::GainView* views,
                   std::vector<unsigned char>& checked) {
  const int64_t n = c.n_norms();
  if (!checked.empty() && same_adapter(views, n, checked)) return;
  checked.clear();  // a throw leaves no record
  validate_adapter(c, views, n);
  const auto put = [&](const void* p, size_t bytes) {
    if (bytes)
      checked.insert(checked.end(), static_cast<const unsigned char*>(p),
                     static_cast<const unsigned char*>(p) + bytes);
  };
  for (int64_t i = 0; i < n; ++i) {
    const norm::GainView& g = views[i];
    put(&g.scheme, sizeof g.scheme), put(&g.d, sizeof g.d), put(&g.n_params, sizeof g.n_params);
    put(&g.data_bytes, sizeof g.data_bytes);
    put(g.params, g.n_params * sizeof(float)), put(g.data, g.data_bytes);
  }
}

// seen: st.slots() zeros, left zero. checked: the slots' check_adapter records.
void check_call(const Model& m, Precision p, const DecodeState& st, const DecodeEntry* entries,
                int64_t n_entries, const float* logits, std::vector<char>& seen,
                std::vector<std::vector<unsigned char>>& checked) {
  const ModelConfig& c = m.config();
  const ModelConfig& s = st.config();
  if (s.d_model != c.d_model || s.n_layers != c.n_layers || s.vocab != c.vocab ||
      s.d_ff != c.d_ff || s.n_heads != c.n_heads || s.kv_heads() != c.kv_heads() ||
      s.context != c.context)
    throw std::invalid_argument("decode: the state was made for another model config");
  if (p != Precision::F32 && p != Precision::Ternary && p != Precision::TernaryF32Act)
    throw std::invalid_argument("decode: unknown precision " + std::to_string(int(p)));
  if (p != Precision::F32 && m.ternary_stale())
    throw std::logic_error(std::string("decode: precision ") + precision_name(p) +
                           " needs the ternary weights, but the latent weights changed since "
                           "the last quantize() (call Model::quantize)");
  if (!entries || n_entries < 1)
    throw std::invalid_argument("decode: need at least one entry (slot and tokens)");
  if (!logits) throw std::invalid_argument("decode: null logits output");
  // The marks are cleared on every way out (the message built only then).
  struct Unmark {
    std::vector<char>& seen;
    const DecodeEntry* entries;
    int64_t n = 0;
    ~Unmark() {
      for (int64_t e = 0; e < n; ++e) seen[size_t(entries[e].slot)] = 0;
    }
  } unmark{seen, entries};
  int64_t rows = 0;
  for (int64_t e = 0; e < n_entries; ++e) {
    const DecodeEntry& en = entries[e];
    const auto at = [e] { return "decode: entry " + std::to_string(e) + ": "; };
    if (en.slot < 0 || en.slot >= st.slots())
      throw std::invalid_argument(at() + "slot " + std::to_string(en.slot) + " outside [0, " +
                                  std::to_string(st.slots()) + ")");
    if (seen[size_t(en.slot)])
      throw std::invalid_argument(at() + "slot " + std::to_string(en.slot) +
                                  " appears twice in one call");
    seen[size_t(en.slot)] = 1;
    unmark.n = e + 1;
    if (!en.tokens || en.n < 1)
      throw std::invalid_argument(at() + "need at least one token (and a non-null array), got " +
                                  std::to_string(en.tokens ? en.n : 0));
    const int64_t pos = st.position(en.slot);
    if (en.n > c.context - pos)
      throw std::invalid_argument(at() + "slot " + std::to_string(en.slot) + " holds " +
                                  std::to_string(pos) + " tokens; " + std::to_string(en.n) +
                                  " more would pass the context of " + std::to_string(c.context) +
                                  " (end the sequence or reset the slot)");
    for (int64_t i = 0; i < en.n; ++i)
      if (en.tokens[i] < 0 || en.tokens[i] >= c.vocab)
        throw std::invalid_argument(at() + "token id " + std::to_string(en.tokens[i]) +
                                    " at index " + std::to_string(i) + " is out of range [0, " +
                                    std::to_string(c.vocab) + ")");
    if (en.gains) {
      try {
        check_adapter(c, en.gains, checked[size_t(en.slot)]);
      } catch (const std::invalid_argument& err) {
        throw std::invalid_argument(at() + err.what());
      }
    }
    rows += en.n;
  }
  if (rows > st.max_rows())
    throw std::invalid_argument("decode: " + std::to_string(rows) +
                                " new tokens in one call, "
                                "the state holds at most max_rows = " +
                                std::to_string(st.max_rows()));
}

// Norm k over rows [0, n) of x, row r with the gains of entry row_entry[r]:
// each run of one entry's rows is one fused-kernel call (threads split rows;
// a row's bits do not depend on which rows share its call).
void norm_rows(const Model& m, Precision p, const DecodeEntry* entries, const int64_t* row_entry,
               int64_t k, const float* x, int64_t n, float* y, int8_t* q, float* scales,
               const Exec& ex) {
  const int64_t d = m.config().d_model, pd = ternary::padded_cols(d);
  const Exec one{ex.isa, nullptr, 1};
  parallel_ranges(ex, n, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1;) {
      const int64_t e = row_entry[r];
      int64_t r_end = r + 1;
      while (r_end < r1 && row_entry[r_end] == e) ++r_end;
      rmsnorm_forward_as(p, norm_weights(m, entries[e].gains, k), x + r * d, r_end - r, d,
                         y + r * d, q + r * pd, scales + r, one);
      r = r_end;
    }
  });
}

}  // namespace

// A unit's keys and values are short runs (at position 32, head_dim 64:
// 8 KB and 9 KB) in another slot's area, each starting on a page the hardware
// prefetcher has not seen: at K = 16 sequences the attention waited on them
// (the 107M config's attention ~1/6 of a step). Fetching the first lines of
// the next unit's two runs while one computes cut that by ~1/5; fetching the
// whole runs at once was slower (the fetches themselves stalled).
void DecodeState::prefetch_cache(int64_t layer, const DecodeEntry& en, int64_t g) {
  constexpr int64_t kLine = 64 / int64_t(sizeof(float)), kStart = 16 * kLine;
  const int64_t hd = cfg_.head_dim(), n_keys = pos_[size_t(en.slot)] + en.n;
  const int64_t key_floats = ternary::round_up(n_keys, detail::kKeyPanel) * hd;
  const float* kp = keys(layer, en.slot, g);
  const float* vp = values(layer, en.slot, g);
  for (int64_t i = 0; i < std::min(key_floats, kStart); i += kLine)
    __builtin_prefetch(kp + i, 0, 2);
  for (int64_t i = 0; i < std::min(n_keys * hd, kStart); i += kLine)
    __builtin_prefetch(vp + i, 0, 2);
}

void decode_forward(const Model& m, Precision p, DecodeState& st, const DecodeEntry* entries,
                    int64_t n_entries, float* logits, const Exec& ex) {
  check_call(m, p, st, entries, n_entries, logits, st.slot_seen_, st.checked_);
  int64_t need = 0;
  for (int64_t e = 0; e < n_entries; ++e)
    need = std::max(need, st.pos_[size_t(entries[e].slot)] + entries[e].n);
  st.reserve_cache(need);  // before anything changes: a bad_alloc leaves the state as it was
  const ModelConfig& c = m.config();
  const int64_t d = c.d_model, f = c.d_ff, H = c.n_heads, V = c.vocab, L = c.n_layers;
  const int64_t kvd = c.kv_dim(), hd = c.head_dim(), group = H / c.kv_heads();
  const int64_t ld = d + 2 * kvd, E = n_entries;

  // Rows: the entries' tokens in order. first[e] = the entry's first row.
  std::vector<int64_t>& first = st.entry_first_;
  first[0] = 0;
  for (int64_t e = 0; e < E; ++e) {
    const DecodeEntry& en = entries[e];
    const int64_t r0 = first[size_t(e)], pos = st.pos_[size_t(en.slot)];
    for (int64_t i = 0; i < en.n; ++i) {
      st.tokens_[size_t(r0 + i)] = en.tokens[i];
      st.row_pos_[size_t(r0 + i)] = pos + i;
      st.row_entry_[size_t(r0 + i)] = e;
    }
    first[size_t(e + 1)] = r0 + en.n;
  }
  const int64_t N = first[size_t(E)];
  const int64_t* row_entry = st.row_entry_.data();
  float *x = st.x_.data(), *h1 = st.h1_.data(), *qkv = st.qkv_.data(), *att = st.att_.data();
  float *h2 = st.h2_.data(), *gu = st.gu_.data(), *s = st.s_.data(), *tmp = st.tmp_.data();
  int8_t *h1q = st.h1q_.data(), *attq = st.attq_.data(), *h2q = st.h2q_.data(), *sq = st.sq_.data();
  float* qs = st.q8s_.data();
  float *h1s = qs, *atts = qs + N, *h2s = qs + 2 * N, *ss = qs + 3 * N;
  const Exec one{ex.isa, nullptr, 1};
  // Attention scratch: rows_ scores per thread.
  const int64_t threads = ex.pool ? std::max(1, std::min(ex.threads, ex.pool->size())) : 1;
  if (int64_t(st.scores_.size()) < threads * st.rows_)
    st.scores_ = AlignedBuffer<float>(size_t(threads * st.rows_));

  embedding_forward(m.embedding_table(), d, st.tokens_.data(), N, x, ex);
  for (int64_t l = 0; l < L; ++l) {
    // Attention branch: the new rows' keys and values join the cache, then
    // each (entry, query head) attends over its slot's cache.
    norm_rows(m, p, entries, row_entry, 2 * l, x, N, h1, h1q, h1s, ex);
    linear_forward(p, linear_weights(m, l, Linear::Qkv), linear_input(p, h1, h1q, h1s), N, qkv, ex);
    rope_forward_at(qkv, N, st.row_pos_.data(), d, kvd, hd, m.rope_cos(), m.rope_sin(), ex);
    parallel_ranges(ex, N, 16, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t slot = entries[row_entry[r]].slot, pos = st.row_pos_[size_t(r)];
        const float* row = qkv + r * ld;
        // Key j of head g goes to lane j % kKeyPanel of its panel, one lane per k-step.
        const int64_t panel = pos / detail::kKeyPanel * hd * detail::kKeyPanel,
                      lane = pos % detail::kKeyPanel;
        for (int64_t g = 0; g < c.kv_heads(); ++g) {
          float* kp = st.keys(l, slot, g) + panel + lane;
          for (int64_t i = 0; i < hd; ++i) kp[i * detail::kKeyPanel] = row[d + g * hd + i];
          const float* v = row + d + kvd + g * hd;
          std::copy(v, v + hd, st.values(l, slot, g) + pos * hd);
        }
      }
    });
    parallel_split(ex, E * H, 1, [&](int t, int64_t u0, int64_t u1) {
      float* scores = st.scores_.data() + t * st.rows_;
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t e = u / H, h = u % H, g = h / group, r0 = first[size_t(e)];
        const DecodeEntry& en = entries[e];
        if (u + 1 < u1) st.prefetch_cache(l, entries[(u + 1) / H], (u + 1) % H / group);
        attention_cached_forward(qkv + r0 * ld + h * hd, ld, en.n, st.row_pos_[size_t(r0)],
                                 st.keys(l, en.slot, g), st.values(l, en.slot, g), hd, hd,
                                 att + r0 * d + h * hd, d, scores, one);
      }
    });
    if (p == Precision::Ternary) ternary::quantize_activations(att, N, d, attq, atts, ex);
    linear_forward(p, linear_weights(m, l, Linear::O), linear_input(p, att, attq, atts), N, tmp,
                   ex);
    residual_forward(x, x, tmp, N * d, ex);
    // Feed-forward branch.
    norm_rows(m, p, entries, row_entry, 2 * l + 1, x, N, h2, h2q, h2s, ex);
    linear_forward(p, linear_weights(m, l, Linear::GateUp), linear_input(p, h2, h2q, h2s), N, gu,
                   ex);
    swiglu_forward(gu, N, f, s, ex);
    if (p == Precision::Ternary) ternary::quantize_activations(s, N, f, sq, ss, ex);
    linear_forward(p, linear_weights(m, l, Linear::Down), linear_input(p, s, sq, ss), N, tmp, ex);
    residual_forward(x, x, tmp, N * d, ex);
  }
  // Final norm and head on each entry's last row (row e of tmp).
  std::vector<int64_t>& ident = st.entry_ident_;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t r = first[size_t(e + 1)] - 1;
    std::copy(x + r * d, x + r * d + d, tmp + e * d);
    ident[size_t(e)] = e;
  }
  float* xf = st.xf_.data();
  norm_rows(m, Precision::F32, entries, ident.data(), 2 * L, tmp, E, xf, h1q, h1s, ex);
  const TokenTable head = m.head_table();
  if (E <= gemm::kDirectMaxM) {
    head_forward(xf, head, E, d, V, logits, ex);  // the GEMV path, reading the table in place
  } else {
    // The head kernel: the table read in place once for every kHeadLanes
    // entries (x^T a column of lanes), with the window's packed-path operations.
    // A 16-bit table is widened (exactly) kWideRows rows at a time into a
    // per-thread scratch that stays in L2, and the kernel reads that.
    const detail::DecodeKernels& dk = detail::decode_kernels(ex.isa);
    constexpr int64_t lanes = detail::kHeadLanes;
    float* xt = st.head_xt_.data();
    const int64_t groups = (E + lanes - 1) / lanes;
    for (int64_t gi = 0; gi < groups; ++gi)
      for (int64_t i = 0; i < d; ++i)
        for (int64_t e = 0; e < lanes; ++e) {
          const int64_t row = gi * lanes + e;
          xt[(gi * d + i) * lanes + e] = row < E ? xf[row * d + i] : 0.0f;
        }
    constexpr int64_t kWideRows = 64;
    parallel_ranges(ex, V, 64, [&](int64_t j0, int64_t j1) {
      thread_local std::vector<float> wide;
      const int64_t step = head.type == gemm::ElemType::F32 ? j1 - j0 : kWideRows;
      for (int64_t r0 = j0; r0 < j1; r0 += step) {
        const int64_t r1 = std::min(j1, r0 + step);
        const float* rows = wide.data();
        if (head.type == gemm::ElemType::F32) {
          rows = head.f32 + r0 * d;
        } else {
          wide.resize(size_t(kWideRows * d));
          rows = wide.data();
          gemm::widen(head.type, head.h16 + r0 * d, (r1 - r0) * d, wide.data(), one);
        }
        for (int64_t gi = 0; gi < groups; ++gi)
          dk.head_rows(d, xt + gi * d * lanes, std::min(lanes, E - gi * lanes), rows, d, r1 - r0,
                       dk.gemm->kc, logits + gi * lanes * V + r0, V);
      }
    });
  }
  for (int64_t e = 0; e < E; ++e) st.pos_[size_t(entries[e].slot)] += entries[e].n;
}

}  // namespace ternorm::model
