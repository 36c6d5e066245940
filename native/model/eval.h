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

// gains: the adapter (n_gain_views = n_norms views, any encoding the norm
// kernel decodes; validated) or null / 0 for none. n_bytes: the UTF-8 bytes
// of the text the scored tokens (tokens[1..]) decode to. Throws
// std::invalid_argument on fewer than 2 tokens, ids out of range, n_bytes < 1,
// a bad stride/batch or a bad adapter. Results do not depend on ex.threads.
EvalResult evaluate(const Model& model, const norm::GainView* gains, int64_t n_gain_views,
                    const int32_t* tokens, int64_t n_tokens, int64_t n_bytes,
                    const EvalOptions& opts, const Exec& ex);

}  // namespace ternorm::model
