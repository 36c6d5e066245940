// Evaluation: per-token NLL over a token stream, perplexity, bits per byte.
//
// Texts longer than the context are scored with sliding windows: every window
// holds W = min(context, n_tokens - 1) input tokens; window k starts at
// k * stride (the last one is moved back to end at the text's end); the first
// window scores all its W targets, each later window only the targets no
// earlier window scored. So every token after the first is scored exactly
// once, and outside the first window with at least W - stride tokens of
// context. The default stride is context / 2.
#pragma once
#include <cstdint>
#include <vector>

#include "../cpu/aligned_buffer.h"
#include "../cpu/isa.h"
#include "../norm/gain_codec.h"
#include "limits.h"
#include "model.h"

namespace ternorm::model {

struct EvalOptions {
  Precision precision = Precision::Ternary;
  // Defaults and ranges: limits::eval (limits.h).
  int64_t stride =
      int64_t(limits::eval::stride.def);  // window step in tokens, 1..context; 0 = context / 2
  int64_t batch =
      int64_t(limits::eval::batch
                  .def);  // windows per forward pass (memory/speed only; results do not change)
};

struct EvalResult {
  std::vector<double> nll;   // n_tokens - 1: nll[i] = -ln p(tokens[i + 1] | preceding window)
  double total_nll = 0;      // sum of nll (nats)
  double mean_nll = 0;       // nats per token
  double perplexity = 0;     // exp(mean_nll)
  double bits_per_byte = 0;  // total_nll / ln 2 / n_bytes
  int64_t n_windows = 0;
  int64_t window = 0;  // W
  int64_t stride = 0;  // the stride used
};

// The residual stream at every layer boundary of the last evaluations of one
// token stream, each with the gains that produced it, so an evaluation whose
// gains equal an earlier one's up to some norm starts at that layer
// (transformer.h, LayerResume): the codec's searches score candidates that
// change one tensor at a time. Bound to a model, token array and options by
// its first use (another one throws std::invalid_argument); the NLLs are the
// same bits as without it. A stream whose states would take more than
// kMaxBytes is evaluated without it.
class EvalPrefixCache {
 public:
  static constexpr int64_t kMaxBytes = int64_t(256) << 20;

 private:
  friend EvalResult evaluate(const Model&, const norm::GainView*, int64_t, const int32_t*, int64_t,
                             int64_t, const EvalOptions&, const Exec&, EvalPrefixCache*);
  const Model* model_ = nullptr;
  std::vector<int32_t> tokens_;
  EvalOptions opts_;
  std::vector<std::vector<uint8_t>> keys_;  // per layer l (1..n_layers): gains of norms < 2l
  std::vector<bool> filled_;
  std::vector<AlignedBuffer<float>> states_;  // per layer: every forward batch's stream
};

// Appends what decides norm k's weights to key: its gain view's scheme, sizes,
// payload and parameters, or a mark for none (gains null). Equal keys, equal weights.
void append_gain_key(const norm::GainView* gains, int64_t k, std::vector<uint8_t>& key);

// gains: the adapter (n_gain_views = n_norms views, any encoding the norm
// kernel decodes; validated) or null / 0 for none. n_bytes: the UTF-8 bytes
// of the text the scored tokens (tokens[1..]) decode to. Throws
// std::invalid_argument on fewer than 2 tokens, ids out of range, n_bytes < 1,
// a bad stride/batch or a bad adapter. Results do not depend on ex.threads.
// cache: see EvalPrefixCache (null: none).
EvalResult evaluate(const Model& model, const norm::GainView* gains, int64_t n_gain_views,
                    const int32_t* tokens, int64_t n_tokens, int64_t n_bytes,
                    const EvalOptions& opts, const Exec& ex, EvalPrefixCache* cache = nullptr);

}  // namespace ternorm::model
