#include "sampler.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "vec_math.h"

namespace ternorm::model {

namespace {
void check_logits(const float* logits, int64_t vocab) {
  if (!logits || vocab < 1)
    throw std::invalid_argument("sampler: need logits of vocab >= 1 tokens, got " +
                                std::to_string(logits ? vocab : 0));
  for (int64_t i = 0; i < vocab; ++i)
    if (!std::isfinite(logits[i]))
      throw std::invalid_argument("sampler: logit " + std::to_string(i) +
                                  " is not finite; expected finite logits");
}
}  // namespace

void validate(const SamplerOptions& o) {
  namespace L = limits::generate;
  limits::check(L::temperature, double(o.temperature), "sampler");
  limits::check(L::top_k, double(o.top_k), "sampler");
  limits::check(L::top_p, double(o.top_p), "sampler");
  limits::check(L::min_p, double(o.min_p), "sampler");
}

int32_t argmax_token(const float* logits, int64_t vocab) {
  if (!logits || vocab < 1) check_logits(logits, vocab);
  // The top logit as kLanes independent running maxima (a scan with the
  // index waited on one compare and branch per logit; this ran 1.8x as fast),
  // the finiteness check folded in (x - x is 0 for a finite x, NaN for inf or
  // NaN; check_logits names the bad logit only then), and then the first id
  // holding it: the lowest id on a tie, as a scan with > gives.
  constexpr int64_t kLanes = 16;
  const int64_t blocked = vocab / kLanes * kLanes;
  float top[kLanes], bad[kLanes] = {};
  for (int64_t j = 0; j < kLanes; ++j) top[j] = logits[0];
  for (int64_t i = 0; i < blocked; i += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) {
      const float x = logits[i + j];
      bad[j] += x - x;
      top[j] = x > top[j] ? x : top[j];
    }
  float best = logits[0], any_bad = 0.0f;
  for (int64_t j = 0; j < kLanes; ++j) {
    any_bad += bad[j];
    best = top[j] > best ? top[j] : best;
  }
  for (int64_t i = blocked; i < vocab; ++i) {
    any_bad += logits[i] - logits[i];
    best = logits[i] > best ? logits[i] : best;
  }
  if (any_bad != 0.0f) check_logits(logits, vocab);
  int64_t at = 0;
  while (logits[at] != best) ++at;  // best is one of the (finite) logits
  return int32_t(at);
}

Sampler::Sampler(const SamplerOptions& opts, uint64_t seed) : opts_(opts) {
  validate(opts_);
  rng_.s = seed;
}

int32_t Sampler::sample(const float* logits, int64_t vocab) {
  // argmax_token checks the logits (as check_logits does).
  const int32_t best = argmax_token(logits, vocab);
  if (opts_.temperature == 0.0f || opts_.top_k == 1) return best;
  const float top = logits[best];
  const float t = opts_.temperature;
  // Probabilities relative to the top token's (exp of <= 0, the top one 1):
  // min-p needs no normalisation, so it drops tokens before the ranking.
  order_.clear();
  prob_.assign(size_t(vocab), 0.0);
  for (int64_t i = 0; i < vocab; ++i) {
    const double p = double(exp_approx((logits[i] - top) / t));
    if (p >= double(opts_.min_p)) {
      order_.push_back(int32_t(i));
      prob_[size_t(i)] = p;
    }
  }
  // Rank: higher logit first, the lower id on a tie (a total order, so any
  // sort gives the same ranking).
  const auto better = [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  size_t kept = order_.size();
  if (opts_.top_k > 0 && size_t(opts_.top_k) < kept) {
    kept = size_t(opts_.top_k);
    std::partial_sort(order_.begin(), order_.begin() + std::ptrdiff_t(kept), order_.end(), better);
  } else if (opts_.top_p < 1.0f) {
    std::sort(order_.begin(), order_.end(), better);
  }  // else no rule needs the ranking: the draw walks the kept tokens by id
  // top-p after top-k and min-p: all three keep a prefix of the ranking, and
  // min-p's prefix does not depend on the normalisation, so the order of the
  // last two does not matter.
  if (opts_.top_p < 1.0f) {
    double total = 0;
    for (size_t j = 0; j < kept; ++j) total += prob_[size_t(order_[j])];
    const double need = double(opts_.top_p) * total;
    double cum = 0;
    size_t j = 0;
    while (j < kept) {
      cum += prob_[size_t(order_[j++])];
      if (cum >= need) break;
    }
    kept = j;
  }
  double mass = 0;
  for (size_t j = 0; j < kept; ++j) mass += prob_[size_t(order_[j])];
  const double target = rng_.uniform() * mass;
  double cum = 0;
  for (size_t j = 0; j < kept; ++j) {
    cum += prob_[size_t(order_[j])];
    if (target < cum) return order_[j];
  }
  return order_[kept - 1];  // target within rounding of the total
}

}  // namespace ternorm::model
