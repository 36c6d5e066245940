// Picking the next token from a row of logits: greedy, or a seeded draw from
// the tempered softmax restricted by top-k, top-p and min-p.
//
// Rules, applied in this order to softmax(logits / temperature), the tokens
// ranked by logit (ties: the lower id first):
//   top_k  (0 = off): keep the k highest;
//   top_p  (1 = off): of those, keep the shortest prefix whose probability
//                     (normalised over the kept set) reaches top_p;
//   min_p  (0 = off): keep tokens whose probability is >= min_p times the top one's;
// then draw from what is left, renormalised (walking the kept tokens by
// rank, or by id when neither top-k nor top-p is on: the ranking, a sort of
// the vocabulary, is then skipped). temperature 0 (or top_k 1) is
// greedy: the highest logit, the lowest id on a tie; it draws no random number.
//
// Deterministic: plain scalar float/double arithmetic (exp by exp_approx, no
// libm, no SIMD dispatch) and a splitmix64 stream, so a seed gives the same
// tokens on every machine, ISA path and thread count. Stopping (EOS, stop
// sequences, max tokens) is the caller's.
#pragma once
#include <cstdint>
#include <vector>

#include "limits.h"
#include "rng.h"

namespace ternorm::model {

// Ranges and defaults: limits::generate.
struct SamplerOptions {
  float temperature = float(limits::generate::temperature.def);  // >= 0, finite; 0 = greedy
  int64_t top_k = int64_t(limits::generate::top_k.def);          // >= 0; 0 = off
  float top_p = float(limits::generate::top_p.def);              // in (0, 1]; 1 = off
  float min_p = float(limits::generate::min_p.def);              // in [0, 1]; 0 = off
};

// Throws std::invalid_argument naming the bad option and its range.
void validate(const SamplerOptions& opts);

class Sampler {
 public:
  // Throws std::invalid_argument on bad options.
  Sampler(const SamplerOptions& opts, uint64_t seed);

  // The next token of logits[0, vocab). A draw takes one number from the
  // stream. Throws std::invalid_argument on vocab < 1, null logits or a
  // NaN/inf logit (nothing drawn).
  int32_t sample(const float* logits, int64_t vocab);

  const SamplerOptions& options() const { return opts_; }

 private:
  SamplerOptions opts_;
  SplitMix64 rng_;
  std::vector<int32_t> order_;  // scratch: candidate ids, best first
  std::vector<double> prob_;    // scratch: their unnormalised probabilities
};

// The greedy choice: argmax, the lowest id on a tie (same checks as sample).
int32_t argmax_token(const float* logits, int64_t vocab);

}  // namespace ternorm::model
