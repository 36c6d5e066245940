// Decoding over the key/value cache: the logits of every prompt chunk and
// step equal the full-window forward's logits at that position (the key
// test), for every precision, multi-head and grouped-query attention, tied
// and untied heads, a batch of sequences with different adapters (none, raw
// f32, int8-encoded) and lengths; on every ISA path and at 1 and 2 threads.
// Where decode_forward promises the bits (calls of more than
// gemm::kDirectMaxM entries) they are compared bit for bit; in smaller calls
// the output head (and in F32 the linear layers) sums in the small-m order,
// and the bounds are checked instead: in the ternary precisions, where only
// the head differs, the head's rounding bound; in F32 1e-5 of the largest
// logit (measured: ~1e-6). Also: the context limit refuses and
// changes nothing, reset, and clear errors.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/features.h"
#include "cpu/thread_pool.h"
#include "gemm/gemm.h"
#include "harness.h"
#include "model/decode.h"
#include "model/decode_kernels.h"
#include "model/layers.h"
#include "model/model.h"
#include "model/transformer.h"

using namespace ternorm;
using namespace ternorm::model;
using ternorm::test::Rng;

namespace {

ModelConfig decode_config(bool gqa) {
  ModelConfig c;
  c.vocab = 37, c.d_model = 32, c.n_layers = 2, c.n_heads = 4, c.d_ff = 48, c.context = 48;
  if (gqa) c.n_kv_heads = 2, c.tied_head = false;
  return c;
}

// A model whose weights are large enough (std ~0.25, norm weights 1 +- 0.2)
// that attention and the logits are far from uniform.
Model rough_model(const ModelConfig& c, uint64_t seed) {
  Model m(c, seed);
  Rng rng(seed + 1);
  for (const TensorInfo& t : m.tensors()) {
    float* w = m.params() + t.offset;
    for (int64_t i = 0; i < t.rows * t.cols; ++i)
      w[i] = t.rows == 1 ? 1.0f + rng.uniform(-0.2f, 0.2f) : w[i] * 12.0f;
  }
  m.quantize(Exec{default_isa(), nullptr, 1});
  return m;
}

// One sequence's adapter: none, raw f32 gains, or int8 per tensor.
struct Adapter {
  std::vector<float> f32;
  std::vector<int8_t> q;
  std::vector<float> scale;
  std::vector<norm::GainView> views;
  const norm::GainView* ptr() const { return views.empty() ? nullptr : views.data(); }
};

Adapter make_adapter(const ModelConfig& c, int kind, uint64_t seed) {
  Adapter a;
  if (kind == 0) return a;
  Rng rng(seed);
  const int64_t d = c.d_model;
  if (kind == 1) {
    a.f32.resize(size_t(c.n_gains()));
    for (float& g : a.f32) g = 1.0f + rng.uniform(-0.3f, 0.3f);
    a.views = f32_gain_views(c, a.f32.data());
    return a;
  }
  a.q.resize(size_t(c.n_gains()));
  for (int8_t& v : a.q) v = int8_t(100 + rng.below(56));  // gains 100..155 * scale
  a.scale.assign(size_t(c.n_norms()), 1.0f / 127.0f);
  for (int64_t k = 0; k < c.n_norms(); ++k) {
    norm::GainView v;
    v.scheme = norm::GainScheme::Int8PerTensor;
    v.d = d;
    v.data = a.q.data() + k * d;
    v.data_bytes = size_t(d);
    v.params = &a.scale[size_t(k)];
    v.n_params = 1;
    a.views.push_back(v);
  }
  return a;
}

struct Sequence {
  std::vector<int32_t> tokens;
  int64_t prompt = 0;
  Adapter adapter;
  std::vector<float> ref;  // full-window logits, tokens.size() x vocab
};

// The full-window forward's logits at every position of seq.
void reference_logits(const Model& m, Precision p, Sequence& s, const Exec& ex) {
  const int64_t T = int64_t(s.tokens.size()), V = m.config().vocab;
  Workspace ws(m.config(), 1, T, false);
  std::vector<int32_t> targets(size_t(T), 0);  // every row scored: the head runs on all T rows
  transformer_forward(m, p, s.adapter.ptr(), s.tokens.data(), targets.data(), 1, T, ws, false, ex);
  s.ref.assign(ws.logits(), ws.logits() + T * V);
}

// The output head's rounding bound for logit v of any row: both orders of a
// d-term dot product are within gamma(d) sum |xf_c w_vc| of the exact value,
// and sum |xf_c w_vc| <= |xf|_2 |w_v|_2 with |xf|_2 <= sqrt(d) max_c |w_c g_c|
// (x / rms(x) has norm sqrt(d)).
std::vector<double> head_bounds(const Model& m, const Adapter& a) {
  const ModelConfig& c = m.config();
  const int64_t d = c.d_model, L = c.n_layers;
  std::vector<float> g(size_t(d), 1.0f);
  if (a.ptr()) norm::decode_gain(a.views[size_t(2 * L)], g.data());
  double wmax = 0;
  for (int64_t i = 0; i < d; ++i)
    wmax = std::max(wmax, std::fabs(double(m.params()[m.norm_offset(2 * L) + i]) * g[size_t(i)]));
  std::vector<double> b(size_t(c.vocab));
  for (int64_t v = 0; v < c.vocab; ++v) {
    double n2 = 0;
    for (int64_t i = 0; i < d; ++i) n2 += double(m.head()[v * d + i]) * m.head()[v * d + i];
    b[size_t(v)] = 2.0 * test::gamma_bound(d) * std::sqrt(double(d)) * wmax * std::sqrt(n2);
  }
  return b;
}

struct Stats {
  int64_t exact_rows = 0, bound_rows = 0;
  double worst_f32_rel = 0;  // F32, small calls: max |diff| / max |logit|
};

// Decodes every sequence teacher-forced (prompt in two chunks, then one token
// per step for all unfinished sequences) and checks each logits row against
// the reference. Returns every logits row produced, in order.
std::vector<float> run_and_check(const Model& m, Precision p, std::vector<Sequence>& seqs,
                                 const Exec& ex, Stats& st) {
  const ModelConfig& c = m.config();
  const int64_t V = c.vocab, S = int64_t(seqs.size());
  DecodeState state(c, S + 1, 4 * c.context);
  std::vector<float> all, logits(size_t(S * V));
  std::vector<std::vector<double>> bounds;
  for (const Sequence& s : seqs) bounds.push_back(head_bounds(m, s.adapter));
  auto check = [&](const std::vector<DecodeEntry>& es, const std::vector<int64_t>& which) {
    for (size_t e = 0; e < es.size(); ++e) {
      const Sequence& s = seqs[size_t(which[e])];
      const int64_t pos = state.position(es[e].slot) - 1;
      const float* got = logits.data() + e * V;
      const float* want = s.ref.data() + pos * V;
      all.insert(all.end(), got, got + V);
      if (int64_t(es.size()) > gemm::kDirectMaxM) {  // the head on > kDirectMaxM rows
        ++st.exact_rows;
        bool same = true;
        for (int64_t v = 0; v < V; ++v) same = same && got[v] == want[v];
        CHECK_MSG(same, std::string("logits differ at position ") + std::to_string(pos) +
                            " of sequence " + std::to_string(which[e]) + " (" + precision_name(p) +
                            ", isa " + isa_name(ex.isa) + ")");
      } else {
        ++st.bound_rows;
        double worst = 0, top = 0;
        bool within = true;
        for (int64_t v = 0; v < V; ++v) {
          const double diff = std::fabs(double(got[v]) - double(want[v]));
          top = std::max(top, std::fabs(double(want[v])));
          worst = std::max(worst, diff);
          if (p != Precision::F32) within = within && diff <= bounds[size_t(which[e])][size_t(v)];
        }
        if (p == Precision::F32) {
          st.worst_f32_rel = std::max(st.worst_f32_rel, worst / top);
          within = worst <= 1e-5 * top;
        }
        CHECK_MSG(within, std::string("logits beyond the bound at position ") +
                              std::to_string(pos) + " (" + precision_name(p) + ", max diff " +
                              std::to_string(worst) + ")");
      }
    }
  };
  // Prompts: a first chunk of 1..5 tokens, then the rest, every sequence in
  // one call each time (slot i + 1: slot 0 stays unused).
  for (int chunk = 0; chunk < 2; ++chunk) {
    std::vector<DecodeEntry> es;
    std::vector<int64_t> which;
    for (int64_t i = 0; i < S; ++i) {
      const Sequence& s = seqs[size_t(i)];
      const int64_t first = 1 + i % 5;
      DecodeEntry e;
      e.slot = i + 1;
      e.tokens = s.tokens.data() + (chunk == 0 ? 0 : first);
      e.n = chunk == 0 ? first : s.prompt - first;
      e.gains = s.adapter.ptr();
      es.push_back(e);
      which.push_back(i);
    }
    decode_forward(m, p, state, es.data(), int64_t(es.size()), logits.data(), ex);
    check(es, which);
  }
  // Steps: one token for each unfinished sequence.
  for (;;) {
    std::vector<DecodeEntry> es;
    std::vector<int64_t> which;
    for (int64_t i = 0; i < S; ++i) {
      const Sequence& s = seqs[size_t(i)];
      const int64_t pos = state.position(i + 1);
      if (pos >= int64_t(s.tokens.size())) continue;
      DecodeEntry e;
      e.slot = i + 1, e.tokens = s.tokens.data() + pos, e.n = 1, e.gains = s.adapter.ptr();
      es.push_back(e);
      which.push_back(i);
    }
    if (es.empty()) break;
    decode_forward(m, p, state, es.data(), int64_t(es.size()), logits.data(), ex);
    check(es, which);
  }
  return all;
}

std::string rel_note(double rel) {
  char buf[64];
  std::snprintf(buf, sizeof buf, " (max diff %.2e of the largest logit)", rel);
  return buf;
}

std::vector<Sequence> make_sequences(const Model& m, int64_t S, uint64_t seed) {
  const ModelConfig& c = m.config();
  Rng rng(seed);
  std::vector<Sequence> seqs(static_cast<size_t>(S));
  for (int64_t i = 0; i < S; ++i) {
    Sequence& s = seqs[size_t(i)];
    // Lengths 24..40 (the window's only attention block has > 8 rows) and
    // prompts of 6..17 tokens.
    const int64_t T = 24 + (i * 7) % 17;
    s.prompt = 6 + i;
    for (int64_t t = 0; t < T; ++t) s.tokens.push_back(int32_t(rng.below(c.vocab)));
    s.adapter = make_adapter(c, int(i % 3), seed * 100 + uint64_t(i));
  }
  return seqs;
}

}  // namespace

TEST(model_decode_matches_full_window) {
  ThreadPool pool(2);
  for (bool gqa : {false, true}) {
    const Model m = rough_model(decode_config(gqa), gqa ? 11 : 7);
    for (Precision p : {Precision::Ternary, Precision::F32, Precision::TernaryF32Act}) {
      for (Isa isa : test::every_isa()) {
        std::vector<float> first;
        for (int threads : {1, 2}) {
          const Exec ex{isa, &pool, threads};
          std::vector<Sequence> seqs = make_sequences(m, 12, 3);
          for (Sequence& s : seqs) reference_logits(m, p, s, ex);
          Stats st;
          const std::vector<float> all = run_and_check(m, p, seqs, ex, st);
          CHECK(st.exact_rows > 100 && st.bound_rows > 10);  // both regimes were exercised
          if (threads == 1)
            first = all;
          else
            CHECK_MSG(all == first, "decode logits depend on the thread count");
          if (threads == 1 && isa == test::every_isa().back())
            std::printf("  decode %s %s: %lld rows bit-identical, %lld within bound%s\n",
                        gqa ? "gqa/untied" : "mha/tied", precision_name(p),
                        (long long)st.exact_rows, (long long)st.bound_rows,
                        p == Precision::F32 ? rel_note(st.worst_f32_rel).c_str() : "");
        }
      }
    }
  }
}

TEST(model_decode_context_limit_and_reset) {
  const ModelConfig c = decode_config(false);
  const Model m = rough_model(c, 5);
  const Exec ex{default_isa(), nullptr, 1};
  const int64_t V = c.vocab;
  Rng rng(9);
  std::vector<int32_t> toks(size_t(c.context));
  for (int32_t& t : toks) t = int32_t(rng.below(V));
  DecodeState st(c, 2, c.context);
  std::vector<float> a(static_cast<size_t>(V)), b(a), again(a);
  DecodeEntry e;
  e.slot = 1, e.tokens = toks.data(), e.n = c.context - 1;
  decode_forward(m, Precision::Ternary, st, &e, 1, a.data(), ex);
  CHECK(st.position(1) == c.context - 1 && st.position(0) == 0);
  // Two more tokens would pass the context: refused, nothing changed.
  e.tokens = toks.data() + c.context - 1, e.n = 2;
  CHECK_THROWS(decode_forward(m, Precision::Ternary, st, &e, 1, b.data(), ex));
  CHECK(st.position(1) == c.context - 1);
  e.n = 1;
  decode_forward(m, Precision::Ternary, st, &e, 1, b.data(), ex);
  CHECK(st.position(1) == c.context);
  CHECK_THROWS(decode_forward(m, Precision::Ternary, st, &e, 1, b.data(), ex));  // full
  // A reset slot starts over and gives the same logits as the first time.
  st.reset(1);
  CHECK(st.position(1) == 0);
  e.tokens = toks.data(), e.n = c.context - 1;
  decode_forward(m, Precision::Ternary, st, &e, 1, again.data(), ex);
  CHECK(again == a);
  CHECK(st.cache_bytes_per_token() == c.n_layers * 2 * c.kv_dim() * 4);
}

// The cache grows with the longest sequence (32 rows, then doubled up to the
// context): a slot decoded token by token, with a second slot at other
// positions, gives the same bits in a state whose cache grows through every
// size (32, 64, 128, 160) as in one that held the whole context from its
// first call (the second slot filled at once), on every ISA path.
TEST(model_decode_cache_growth_keeps_bits) {
  ModelConfig c = decode_config(true);
  c.context = 160;
  const Model m = rough_model(c, 13);
  Rng rng(21);
  std::vector<int32_t> toks(size_t(c.context));
  for (int32_t& t : toks) t = int32_t(rng.below(c.vocab));
  for (Isa isa : test::every_isa()) {
    const Exec ex{isa, nullptr, 1};
    std::vector<std::vector<float>> logits[2];
    for (int whole = 0; whole < 2; ++whole) {
      DecodeState st(c, 2, c.context);
      std::vector<float> out(size_t(2 * c.vocab));
      DecodeEntry es[2];
      es[1].slot = 1, es[1].tokens = toks.data() + 3, es[1].n = whole ? c.context - 3 : 5;
      es[0].slot = 0, es[0].tokens = toks.data(), es[0].n = 1;
      decode_forward(m, Precision::Ternary, st, es, 2, out.data(), ex);
      logits[whole].emplace_back(out.begin(), out.begin() + c.vocab);
      for (int64_t t = 1; t < c.context; ++t) {
        es[0].tokens = toks.data() + t;
        const bool both = !whole && t % 3 == 0 && st.position(1) < c.context - 3;
        es[1].tokens = toks.data() + 3 + st.position(1), es[1].n = 1;
        decode_forward(m, Precision::Ternary, st, es, both ? 2 : 1, out.data(), ex);
        logits[whole].emplace_back(out.begin(), out.begin() + c.vocab);
      }
    }
    CHECK_MSG(logits[0] == logits[1], "cache growth changed the logits (" << isa_name(isa) << ")");
  }
}

TEST(model_decode_bad_input) {
  const ModelConfig c = decode_config(true);
  const Model m = rough_model(c, 5);
  const Exec ex{default_isa(), nullptr, 1};
  DecodeState st(c, 3, 8);
  std::vector<float> out(size_t(2 * c.vocab));
  const int32_t toks[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  const int32_t bad[1] = {int32_t(c.vocab)};
  DecodeEntry two[2];
  two[0].slot = 0, two[0].tokens = toks, two[0].n = 1;
  two[1] = two[0];
  CHECK_THROWS(decode_forward(m, Precision::Ternary, st, two, 2, out.data(), ex));  // slot twice
  two[1].slot = 3;
  CHECK_THROWS(decode_forward(m, Precision::Ternary, st, two, 2, out.data(), ex));  // bad slot
  two[1].slot = 1, two[1].tokens = bad;
  CHECK_THROWS(decode_forward(m, Precision::Ternary, st, two, 2, out.data(), ex));  // bad id
  two[1].tokens = toks, two[1].n = 0;
  CHECK_THROWS(decode_forward(m, Precision::Ternary, st, two, 2, out.data(), ex));  // n = 0
  two[1].n = 8;
  CHECK_THROWS(decode_forward(m, Precision::Ternary, st, two, 2, out.data(), ex));  // 9 > max_rows
  two[1].n = 1;
  CHECK_THROWS(decode_forward(m, Precision::Ternary, st, two, 2, nullptr, ex));
  CHECK_THROWS(decode_forward(m, Precision::Ternary, st, two, 0, out.data(), ex));
  CHECK_THROWS(decode_forward(m, Precision(7), st, two, 2, out.data(), ex));
  std::vector<float> g(size_t(c.n_gains()), 1.0f);
  g[5] = NAN;
  const std::vector<norm::GainView> nan_views = f32_gain_views(c, g.data());
  two[1].gains = nan_views.data();
  CHECK_THROWS(decode_forward(m, Precision::Ternary, st, two, 2, out.data(), ex));
  CHECK(st.position(0) == 0 && st.position(1) == 0);  // nothing changed by any of these
  DecodeState other(decode_config(false), 1, 4);
  CHECK_THROWS(decode_forward(m, Precision::Ternary, other, two, 1, out.data(), ex));
  CHECK_THROWS(DecodeState(c, 0, 4));
  CHECK_THROWS(DecodeState(c, 1, 0));
  CHECK_THROWS(st.position(3));
  CHECK_THROWS(st.reset(-1));
}

// A slot's adapter is validated again only when its content changes (the
// state keeps the content that last passed): gains changed in place between
// calls, in the payload or in a param, are refused with validate_adapter's
// message (nothing changed); changed back, the slot decodes the bits it gave
// before. A slot whose adapter failed keeps no record of it.
TEST(model_decode_adapter_changed_between_calls) {
  const ModelConfig c = decode_config(false);
  const Model m = rough_model(c, 5);
  const Exec ex{default_isa(), nullptr, 1};
  const int64_t V = c.vocab;
  const int32_t toks[2] = {3, 7};
  Adapter raw = make_adapter(c, 1, 11), enc = make_adapter(c, 2, 12);
  DecodeState st(c, 2, 4);
  std::vector<float> first(size_t(2 * V)), out(first);
  DecodeEntry es[2];
  es[0].slot = 0, es[0].tokens = toks, es[0].n = 1, es[0].gains = raw.ptr();
  es[1].slot = 1, es[1].tokens = toks, es[1].n = 1, es[1].gains = enc.ptr();
  decode_forward(m, Precision::Ternary, st, es, 2, first.data(), ex);
  const auto step = [&] {
    return test::thrown_message(
        [&] { decode_forward(m, Precision::Ternary, st, es, 2, out.data(), ex); });
  };
  const auto again = [&] {  // the next position, from the same cache
    st.reset(0), st.reset(1);
    const std::string msg = step();
    CHECK_MSG(msg == "<no exception>", msg);
    CHECK(out == first);
  };
  const size_t at = size_t(c.n_gains() - 1);  // the final norm's last gain
  const float keep = raw.f32[at];
  for (float bad : {NAN, 1e30f}) {
    raw.f32[at] = bad;
    const std::string msg = step();
    CHECK_MSG(test::mentions(msg, "decode: entry 0: adapter: gain vector " +
                                      std::to_string(c.n_norms() - 1) + " (final_norm)"),
              msg);
    CHECK(st.position(0) == 1 && st.position(1) == 1);
  }
  raw.f32[at] = keep;
  again();
  enc.scale[2] = INFINITY;  // a param of norm 2
  CHECK_MSG(test::mentions(step(), "decode: entry 1: adapter: gain vector 2"), step());
  enc.scale[2] = 1.0f / 127.0f;
  enc.q[5] = int8_t(-128);  // still a valid int8 gain: the new content passes and is used
  const std::string msg = step();
  CHECK_MSG(msg == "<no exception>", msg);
  enc.q[5] = make_adapter(c, 2, 12).q[5];
  again();
  // Same content at another address: no new check needed, same bits.
  Adapter copy = make_adapter(c, 1, 11);
  es[0].gains = copy.ptr();
  again();
}

// The layer itself: attention_cached_forward over a cache (keys in key
// panels), fed in chunks of 1 .. 13 rows, gives every row the bits
// attention_forward gives it in a window of T = 100 (two row blocks, 64 and
// 36 rows), on every ISA path; head dims 8 and 40 (a vector tail).
TEST(model_decode_attention_cached_rows) {
  Rng rng(21);
  constexpr int64_t P = detail::kKeyPanel;
  for (int64_t hd : {8, 40})
    for (int64_t Hkv : {4, 2, 1}) {
      const int64_t T = 100, H = 4, d = H * hd, kvd = Hkv * hd, ld = d + 2 * kvd;
      const int64_t rows = (T + P - 1) / P * P;
      std::vector<float> qkv(size_t(T * ld));
      for (float& v : qkv) v = rng.normal();
      // Keys of head g: rows x hd in panels; the unused lanes of the last panel hold junk.
      std::vector<float> kp(size_t(Hkv * rows * hd), 1e30f), vc(size_t(T * kvd));
      for (int64_t t = 0; t < T; ++t)
        for (int64_t c = 0; c < kvd; ++c) {
          const int64_t g = c / hd, i = c % hd;
          kp[size_t(g * rows * hd + t / P * hd * P + i * P + t % P)] = qkv[size_t(t * ld + d + c)];
          vc[size_t(t * kvd + c)] = qkv[size_t(t * ld + d + kvd + c)];
        }
      std::vector<float> scores(static_cast<size_t>(rows));
      for (Isa isa : test::every_isa()) {
        const Exec one{isa, nullptr, 1};
        std::vector<float> Pm(size_t(H * T * T)), want(size_t(T * d)), got(size_t(T * d));
        attention_forward(qkv.data(), 1, T, d, H, Hkv, Pm.data(), want.data(), nullptr, one);
        for (int64_t p0 = 0, n = 1; p0 < T; p0 += n, n = n % 13 + 1) {
          n = std::min(n, T - p0);
          for (int64_t h = 0; h < H; ++h) {
            const int64_t g = h / (H / Hkv);
            attention_cached_forward(qkv.data() + p0 * ld + h * hd, ld, n, p0,
                                     kp.data() + g * rows * hd, vc.data() + g * hd, kvd, hd,
                                     got.data() + p0 * d + h * hd, d, scores.data(), one);
          }
        }
        CHECK_MSG(got == want, std::string("cached attention differs from the window's (isa ") +
                                   isa_name(isa) + ", kv heads " + std::to_string(Hkv) +
                                   ", head dim " + std::to_string(hd) + ")");
      }
    }
}
