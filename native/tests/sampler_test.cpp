// The sampler's rules on hand-made logits: greedy (temperature 0, top-k 1,
// ties to the lower id), top-k, top-p (the smallest prefix reaching p),
// min-p (relative to the top probability), temperature (draw frequencies
// against the tempered softmax), determinism for a seed, and bad options.
#include <algorithm>
#include <cmath>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "harness.h"
#include "model/sampler.h"

using namespace ternorm::model;

namespace {

// The set of tokens n draws can produce, and how often each came out.
std::vector<int64_t> counts(const SamplerOptions& o, const std::vector<float>& logits, int n,
                            uint64_t seed = 1) {
  Sampler s(o, seed);
  std::vector<int64_t> c(logits.size(), 0);
  for (int i = 0; i < n; ++i) ++c[size_t(s.sample(logits.data(), int64_t(logits.size())))];
  return c;
}

std::set<int> support(const std::vector<int64_t>& c) {
  std::set<int> r;
  for (size_t i = 0; i < c.size(); ++i)
    if (c[i] > 0) r.insert(int(i));
  return r;
}

// Logits whose softmax is exactly the given probabilities (up to exp's rounding).
std::vector<float> logits_of(const std::vector<double>& p) {
  std::vector<float> l;
  for (double v : p) l.push_back(float(std::log(v)));
  return l;
}

}  // namespace

TEST(sampler_greedy) {
  const std::vector<float> l = {0.5f, 2.0f, -1.0f, 2.0f, 1.9f};
  CHECK(argmax_token(l.data(), 5) == 1);  // tie between 1 and 3: the lower id
  SamplerOptions o;
  o.temperature = 0.0f;
  Sampler g(o, 42);
  for (int i = 0; i < 10; ++i) CHECK(g.sample(l.data(), 5) == 1);
  SamplerOptions k1;
  k1.top_k = 1;
  CHECK(support(counts(k1, l, 200)) == std::set<int>{1});
  // A very low temperature concentrates on the argmax as well (1 vs 1.9: e^-1000).
  SamplerOptions cold;
  cold.temperature = 1e-4f;
  const std::vector<float> l2 = {0.5f, 2.0f, -1.0f, 1.0f, 1.9f};
  CHECK(support(counts(cold, l2, 200)) == std::set<int>{1});
}

// argmax_token against a plain scan with > (the lowest id on a tie, +0 and -0
// equal), at every length around its 16-lane blocks, the top in a block, in
// the tail, tied across lanes and blocks; a NaN or inf anywhere is refused.
TEST(sampler_argmax_matches_scan) {
  ternorm::test::Rng rng(5);
  for (int64_t V = 1; V <= 70; ++V)
    for (int trial = 0; trial < 30; ++trial) {
      std::vector<float> l(static_cast<size_t>(V));
      for (float& x : l) x = float(int(rng.below(7)) - 3);  // many ties
      if (trial % 3 == 0) l[size_t(rng.below(V))] = 0.0f;
      if (trial % 3 == 1) l[size_t(rng.below(V))] = -0.0f;
      if (trial % 5 == 0) std::fill(l.begin(), l.end(), trial % 2 ? 0.0f : -0.0f);
      int64_t best = 0;
      for (int64_t i = 1; i < V; ++i)
        if (l[size_t(i)] > l[size_t(best)]) best = i;
      CHECK_MSG(argmax_token(l.data(), V) == best, "V " << V << " trial " << trial);
      l[size_t(rng.below(V))] = trial % 2 ? NAN : -INFINITY;
      CHECK_THROWS(argmax_token(l.data(), V));
    }
}

TEST(sampler_top_k) {
  const std::vector<float> l = {0.0f, 3.0f, 1.0f, 2.0f, -1.0f, 2.0f};
  SamplerOptions o;
  o.top_k = 3;  // 1 (3.0), then 3 and 5 (2.0, tie)
  CHECK(support(counts(o, l, 3000)) == (std::set<int>{1, 3, 5}));
  o.top_k = 2;  // the tie at 2.0 goes to the lower id
  CHECK(support(counts(o, l, 3000)) == (std::set<int>{1, 3}));
  o.top_k = 100;  // more than the vocabulary: all
  CHECK(support(counts(o, l, 20000)).size() == 6);
}

TEST(sampler_top_p) {
  // Probabilities 0.5, 0.25, 0.15, 0.1 (ids 2, 0, 3, 1).
  const std::vector<float> l = logits_of({0.25, 0.10, 0.50, 0.15});
  SamplerOptions o;
  o.top_p = 0.49f;  // the top token's 0.5 reaches it
  CHECK(support(counts(o, l, 2000)) == std::set<int>{2});
  o.top_p = 0.7f;  // 0.5 < 0.7 <= 0.75
  CHECK(support(counts(o, l, 4000)) == (std::set<int>{2, 0}));
  o.top_p = 0.8f;  // 0.75 < 0.8 <= 0.9
  CHECK(support(counts(o, l, 4000)) == (std::set<int>{2, 0, 3}));
  o.top_p = 0.95f;
  CHECK(support(counts(o, l, 8000)) == (std::set<int>{0, 1, 2, 3}));
  // After top-k 2, p renormalises over {2, 0} (2/3, 1/3): 0.6 keeps only id 2.
  o.top_k = 2, o.top_p = 0.6f;
  CHECK(support(counts(o, l, 2000)) == std::set<int>{2});
}

TEST(sampler_min_p) {
  const std::vector<float> l = logits_of({0.25, 0.10, 0.50, 0.15});
  SamplerOptions o;
  o.min_p = 0.45f;  // >= 0.225: ids 2 (0.5) and 0 (0.25)
  CHECK(support(counts(o, l, 4000)) == (std::set<int>{2, 0}));
  o.min_p = 0.25f;  // >= 0.125: also id 3 (0.15)
  CHECK(support(counts(o, l, 4000)) == (std::set<int>{2, 0, 3}));
  o.min_p = 1.0f;  // only the top
  CHECK(support(counts(o, l, 1000)) == std::set<int>{2});
}

TEST(sampler_temperature_frequencies) {
  // Draw frequencies follow softmax(l / T): checked within 5 standard errors.
  const std::vector<float> l = {1.0f, 0.0f, 2.0f, -0.5f};
  for (float t : {0.5f, 1.0f, 2.0f}) {
    SamplerOptions o;
    o.temperature = t;
    const int n = 40000;
    const std::vector<int64_t> c = counts(o, l, n, 7);
    double z = 0;
    for (float v : l) z += std::exp(double(v) / t);
    for (size_t i = 0; i < l.size(); ++i) {
      const double p = std::exp(double(l[i]) / t) / z;
      const double se = std::sqrt(p * (1 - p) / n);
      CHECK_MSG(std::fabs(double(c[i]) / n - p) < 5 * se + 1e-9,
                "token " + std::to_string(i) + " at temperature " + std::to_string(t));
    }
  }
}

TEST(sampler_deterministic) {
  std::vector<float> l(500);
  ternorm::test::Rng rng(3);
  for (float& v : l) v = rng.normal() * 3.0f;
  SamplerOptions o;
  o.temperature = 0.8f, o.top_k = 40, o.top_p = 0.9f, o.min_p = 0.02f;
  Sampler a(o, 1234), b(o, 1234), c(o, 1235);
  std::vector<int32_t> ta, tb, tc;
  for (int i = 0; i < 300; ++i) {
    ta.push_back(a.sample(l.data(), 500));
    tb.push_back(b.sample(l.data(), 500));
    tc.push_back(c.sample(l.data(), 500));
  }
  CHECK(ta == tb);
  CHECK(ta != tc);  // another seed, another stream
}

TEST(sampler_bad_input) {
  SamplerOptions o;
  o.temperature = -1.0f;
  CHECK_THROWS(Sampler(o, 1));
  o = SamplerOptions{};
  o.temperature = INFINITY;
  CHECK_THROWS(Sampler(o, 1));
  o = SamplerOptions{};
  o.top_k = -2;
  CHECK_THROWS(Sampler(o, 1));
  o = SamplerOptions{};
  o.top_p = 0.0f;
  CHECK_THROWS(Sampler(o, 1));
  o.top_p = 1.5f;
  CHECK_THROWS(Sampler(o, 1));
  o = SamplerOptions{};
  o.min_p = NAN;
  CHECK_THROWS(Sampler(o, 1));
  // The ranges are limits::generate's, named in the message.
  o = SamplerOptions{};
  o.top_p = 0.0f;
  std::string msg;
  try {
    Sampler(o, 1);
  } catch (const std::invalid_argument& e) {
    msg = e.what();
  }
  CHECK_MSG(msg == "sampler.topP must be a number in (0, 1], got 0", msg);
  Sampler s(SamplerOptions{}, 1);
  const float nan_logits[3] = {0.0f, NAN, 1.0f};
  CHECK_THROWS(s.sample(nan_logits, 3));
  CHECK_THROWS(s.sample(nan_logits, 0));
  CHECK_THROWS(s.sample(nullptr, 3));
  CHECK_THROWS(argmax_token(nan_logits, 3));
}
