#include "eval.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "transformer.h"

namespace ternorm::model {

void append_gain_key(const norm::GainView* gains, int64_t k, std::vector<uint8_t>& key) {
  auto put = [&key](const void* p, size_t n) {
    const uint8_t* b = static_cast<const uint8_t*>(p);
    key.insert(key.end(), b, b + n);
  };
  if (!gains) {
    key.push_back(0xff);
    return;
  }
  const norm::GainView& g = gains[k];
  const int32_t scheme = int32_t(g.scheme);
  const uint64_t sizes[3] = {uint64_t(g.d), uint64_t(g.data_bytes), uint64_t(g.n_params)};
  put(&scheme, sizeof scheme);
  put(sizes, sizeof sizes);
  if (g.data_bytes) put(g.data, g.data_bytes);
  if (g.n_params) put(g.params, g.n_params * sizeof(float));
}

EvalResult evaluate(const Model& model, const norm::GainView* gains, int64_t n_gain_views,
                    const int32_t* tokens, int64_t n_tokens, int64_t n_bytes,
                    const EvalOptions& opts, const Exec& ex, EvalPrefixCache* cache) {
  const ModelConfig& c = model.config();
  if (!tokens || n_tokens < 2)
    throw std::invalid_argument(
        "evaluate: need at least 2 tokens (one to predict from, one to "
        "score), got " +
        std::to_string(tokens ? n_tokens : 0));
  if (n_bytes < 1)
    throw std::invalid_argument(
        "evaluate: n_bytes (UTF-8 bytes of the scored text) must be >= 1, "
        "got " +
        std::to_string(n_bytes));
  limits::check(limits::eval::stride, double(opts.stride), double(c.context), "evaluate");
  limits::check(limits::eval::batch, double(opts.batch), "evaluate");
  if (gains && n_gain_views > 0)
    validate_adapter(c, gains, n_gain_views);
  else
    gains = nullptr;
  for (int64_t i = 0; i < n_tokens; ++i)
    if (tokens[i] < 0 || tokens[i] >= c.vocab)
      throw std::invalid_argument("evaluate: token id " + std::to_string(tokens[i]) +
                                  " at position " + std::to_string(i) + " is out of range [0, " +
                                  std::to_string(c.vocab) + ")");

  const int64_t W = std::min(c.context, n_tokens - 1);
  const int64_t stride = opts.stride > 0 ? opts.stride : std::max<int64_t>(1, c.context / 2);
  std::vector<int64_t> starts;
  for (int64_t s = 0;; s += stride) {
    starts.push_back(std::min(s, n_tokens - 1 - W));
    if (starts.back() + W >= n_tokens - 1) break;
  }

  EvalResult r;
  r.nll.assign(size_t(n_tokens - 1), 0.0);
  r.n_windows = int64_t(starts.size());
  r.window = W;
  r.stride = stride;
  const int64_t B = std::min<int64_t>(opts.batch, r.n_windows);
  WorkspaceLease lease(c, B, W, /*for_backward=*/false);
  Workspace& ws = lease.get();

  // The prefix cache: the deepest layer whose stream an earlier evaluation
  // left for these gains, and where this one saves the later ones.
  const int64_t L = c.n_layers, per_batch = B * W * c.d_model;
  const int64_t n_batches = (r.n_windows + B - 1) / B;
  if (cache && (n_batches * per_batch * L * int64_t(sizeof(float)) > EvalPrefixCache::kMaxBytes))
    cache = nullptr;
  int64_t from = 0;
  std::vector<std::vector<uint8_t>> keys;
  std::vector<float*> save;
  if (cache) {
    EvalPrefixCache& pc = *cache;
    if (!pc.model_) {
      pc.model_ = &model;
      pc.tokens_.assign(tokens, tokens + n_tokens);
      pc.opts_ = opts;
      pc.keys_.assign(size_t(L + 1), {});
      pc.filled_.assign(size_t(L + 1), false);
      pc.states_.clear();
      for (int64_t l = 0; l <= L; ++l)
        pc.states_.emplace_back(size_t(l == 0 ? 0 : n_batches * per_batch));
    } else if (pc.model_ != &model || int64_t(pc.tokens_.size()) != n_tokens ||
               !std::equal(tokens, tokens + n_tokens, pc.tokens_.begin()) ||
               pc.opts_.stride != opts.stride || pc.opts_.batch != opts.batch ||
               pc.opts_.precision != opts.precision) {
      throw std::invalid_argument(
          "evaluate: the prefix cache belongs to another model, token stream or options");
    }
    keys.assign(size_t(L + 1), {});
    std::vector<uint8_t> key;
    for (int64_t l = 1; l <= L; ++l) {
      append_gain_key(gains, 2 * l - 2, key);
      append_gain_key(gains, 2 * l - 1, key);
      keys[size_t(l)] = key;
      if (pc.filled_[size_t(l)] && pc.keys_[size_t(l)] == key) from = l;
    }
    save.assign(size_t(L + 1), nullptr);
    for (int64_t l = from + 1; l <= L; ++l) pc.filled_[size_t(l)] = false;
  }

  std::vector<int32_t> in(size_t(B * W)), tg(size_t(B * W));
  int64_t scored_to = 0;  // targets tokens[1 .. scored_to] are done
  for (int64_t w0 = 0; w0 < r.n_windows; w0 += B) {
    const int64_t nb = std::min(B, r.n_windows - w0);
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t s = starts[size_t(w0 + b)];
      for (int64_t t = 0; t < W; ++t) {
        const int64_t target = s + 1 + t;
        in[size_t(b * W + t)] = tokens[s + t];
        tg[size_t(b * W + t)] = target > scored_to ? tokens[target] : -1;
      }
      scored_to = s + W;
    }
    if (cache) {
      const int64_t k = w0 / B;
      for (int64_t l = from + 1; l <= L; ++l)
        save[size_t(l)] = cache->states_[size_t(l)].data() + k * per_batch;
      const LayerResume resume{
          from, from > 0 ? cache->states_[size_t(from)].data() + k * per_batch : nullptr,
          save.data()};
      transformer_forward(model, opts.precision, gains, in.data(), tg.data(), nb, W, ws,
                          /*keep_probs=*/false, ex, &resume);
    } else {
      transformer_forward(model, opts.precision, gains, in.data(), tg.data(), nb, W, ws,
                          /*keep_probs=*/false, ex);
    }
    for (int64_t b = 0; b < nb; ++b)
      for (int64_t t = 0; t < W; ++t)
        if (tg[size_t(b * W + t)] >= 0)
          r.nll[size_t(starts[size_t(w0 + b)] + t)] = ws.nll()[b * W + t];
  }
  if (cache)
    for (int64_t l = from + 1; l <= L; ++l) {
      cache->keys_[size_t(l)] = std::move(keys[size_t(l)]);
      cache->filled_[size_t(l)] = true;
    }
  for (double v : r.nll) r.total_nll += v;
  r.mean_nll = r.total_nll / double(n_tokens - 1);
  r.perplexity = std::exp(r.mean_nll);
  r.bits_per_byte = r.total_nll / std::log(2.0) / double(n_bytes);
  return r;
}

}  // namespace ternorm::model
