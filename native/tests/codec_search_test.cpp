// The loss-driven codecs: int4_calibrated must find the known optimum of
// synthetic losses (global and per tensor, which is not the weight-error
// optimum), mixed precision must respect the byte budget exactly, match a
// brute-force search and spend bytes on the sensitive tensor; both with a real
// model's training loss plugged in as the callback.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "codec/codec.h"
#include "harness.h"
#include "model/eval.h"
#include "model/model.h"

using namespace ternorm;
using namespace ternorm::codec;
using norm::GainScheme;
using norm::GainView;
using ternorm::test::mentions;
using ternorm::test::Rng;
using ternorm::test::thrown_message;

namespace {

std::vector<float> decode_view(const GainView& v) {
  std::vector<float> out(size_t(v.d));
  norm::decode_gain(v, out.data());
  return out;
}

// Gains near 1 with a few outliers per tensor (so clipping matters).
std::vector<float> outlier_gains(int64_t T, int64_t d, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> g(size_t(T * d));
  for (float& v : g) v = 1.0f + 0.01f * rng.normal();
  for (int64_t t = 0; t < T; ++t)
    for (int k = 0; k < 3; ++k) g[size_t(t * d + rng.below(d))] = 1.0f + (k % 2 ? -0.08f : 0.1f);
  return g;
}

// Sum over tensors of the squared distance of the decoded gains to targets.
AdapterLoss distance_to(const std::vector<std::vector<float>>& target) {
  return [target](const std::vector<GainView>& views) {
    double s = 0;
    for (size_t t = 0; t < views.size(); ++t) {
      const std::vector<float> g = decode_view(views[t]);
      for (size_t i = 0; i < g.size(); ++i)
        s += (double(g[i]) - target[t][i]) * (double(g[i]) - target[t][i]);
    }
    return s;
  };
}

}  // namespace

TEST(codec_calibrated_finds_known_optimum) {
  const int64_t T = 3, d = 64;
  const std::vector<float> g = outlier_gains(T, d, 31);
  const std::vector<double> grid = default_clip_grid();
  CHECK(grid.size() == 15 && grid.front() == 1.0 && grid.back() == 0.30);
  const size_t G = grid.size();
  auto targets_for = [&](const std::vector<double>& clip) {
    std::vector<std::vector<float>> tg;
    for (int64_t t = 0; t < T; ++t)
      tg.push_back(decode_view(encode_delta(4, g.data() + t * d, d, clip[size_t(t)]).view()));
    return tg;
  };

  // One factor for all tensors: stage 1 finds it, stage 2 moves nothing.
  {
    const AdapterLoss loss = distance_to(targets_for({0.6, 0.6, 0.6}));
    const EncodedAdapter a = encode_adapter(Method::Int4Calibrated, g.data(), T, d, {}, loss);
    const CalibrationReport& r = *a.calibration;
    CHECK(r.clip == std::vector<double>({0.6, 0.6, 0.6}));
    CHECK(r.loss == 0.0);
    CHECK(r.loss_evals == int64_t(G + T * (G - 1)));
    CHECK(r.global_loss.size() == G);
    for (size_t i = 0; i < G; ++i) CHECK((r.global_loss[i] == 0.0) == (grid[i] == 0.6));
    for (const EncodedGain& e : a.tensors) CHECK(e.scheme == GainScheme::Int4Delta);
  }
  // A different factor per tensor, deliberately not the weight-error optimum:
  // the per-tensor pass finds each one exactly.
  {
    const std::vector<double> want = {0.35, 0.8, 1.0};
    const AdapterLoss loss = distance_to(targets_for(want));
    EncodeOptions o;
    o.calibration_passes = 3;
    const EncodedAdapter a = encode_adapter(Method::Int4Calibrated, g.data(), T, d, o, loss);
    const CalibrationReport& r = *a.calibration;
    CHECK(r.clip == want);
    CHECK(r.loss == 0.0);
    // The first pass reaches the optimum; the second moves nothing and stops.
    CHECK(r.loss_evals == int64_t(G + 2 * T * (G - 1)));
    CHECK(r.loss == loss(a.views()));
    // The weight-error choice for tensor 0 is another factor.
    double best_mse = INFINITY, best_c = 0;
    for (double c : grid) {
      const std::vector<float> b = decode_view(encode_delta(4, g.data(), d, c).view());
      double s = 0;
      for (int64_t i = 0; i < d; ++i)
        s += (double(g[size_t(i)]) - b[size_t(i)]) * (double(g[size_t(i)]) - b[size_t(i)]);
      if (s < best_mse) best_mse = s, best_c = c;
    }
    CHECK_MSG(best_c != want[0], "weight-error optimum " << best_c);
    // Without refinement passes every tensor keeps the stage-1 factor, the
    // lowest of the stage-1 losses.
    o.calibration_passes = 0;
    const EncodedAdapter b = encode_adapter(Method::Int4Calibrated, g.data(), T, d, o, loss);
    const size_t arg = size_t(
        std::min_element(b.calibration->global_loss.begin(), b.calibration->global_loss.end()) -
        b.calibration->global_loss.begin());
    CHECK(b.calibration->clip == std::vector<double>(3, grid[arg]));
    CHECK(b.calibration->loss_evals == int64_t(G));
    CHECK(b.calibration->loss > 0);
  }
  // A tensor of untouched gains has one encoding for every factor: not evaluated.
  {
    std::vector<float> g2 = g;
    std::fill(g2.begin() + d, g2.begin() + 2 * d, 1.0f);
    int64_t calls = 0;
    const AdapterLoss inner = distance_to(targets_for({0.5, 1.0, 0.7}));
    const AdapterLoss loss = [&](const std::vector<GainView>& v) {
      ++calls;
      return inner(v);
    };
    const EncodedAdapter a = encode_adapter(Method::Int4Calibrated, g2.data(), T, d, {}, loss);
    CHECK(calls == a.calibration->loss_evals);
    CHECK(calls == int64_t(G + 2 * (G - 1)));
    const std::vector<float> ones = decode_view(a.tensors[1].view());
    CHECK(std::all_of(ones.begin(), ones.end(), [](float x) { return x == 1.0f; }));
  }
  // Bad input: grid, passes, a non-finite loss, an exception in the loss.
  {
    const AdapterLoss loss = distance_to(targets_for({1, 1, 1}));
    EncodeOptions o;
    o.clip_grid = {1.0, 0.0};
    CHECK(mentions(
        thrown_message([&] { encode_adapter(Method::Int4Calibrated, g.data(), T, d, o, loss); }),
        "clipGrid.clip must be a number in (0, 1]"));
    o.clip_grid = {0.5, 0.9, 0.5};
    CHECK(mentions(
        thrown_message([&] { encode_adapter(Method::Int4Calibrated, g.data(), T, d, o, loss); }),
        "repeats"));
    o.clip_grid = {};
    o.calibration_passes = -1;
    CHECK(mentions(
        thrown_message([&] { encode_adapter(Method::Int4Calibrated, g.data(), T, d, o, loss); }),
        "calibrationPasses"));
    const AdapterLoss nan_loss = [](const std::vector<GainView>&) { return double(NAN); };
    const std::string m = thrown_message(
        [&] { encode_adapter(Method::Int4Calibrated, g.data(), T, d, {}, nan_loss); });
    CHECK_MSG(mentions(m, "loss callback returned nan") && mentions(m, "clip 1.0"), m);
    const AdapterLoss throwing = [](const std::vector<GainView>&) -> double {
      throw std::runtime_error("eval failed");
    };
    CHECK(mentions(thrown_message([&] {
                     encode_adapter(Method::Int4Calibrated, g.data(), T, d, {}, throwing);
                   }),
                   "eval failed"));
  }
}

TEST(codec_mixed_budget_and_sensitivity) {
  const int64_t T = 5, d = 32;
  Rng rng(41);
  std::vector<float> g(size_t(T * d));
  for (float& v : g) v = 1.0f + 0.02f * rng.normal();
  const double weight[T] = {1, 1, 1000, 1, 1};  // tensor 2 is the sensitive one
  std::vector<std::vector<float>> ref;
  for (int64_t t = 0; t < T; ++t) ref.emplace_back(g.begin() + t * d, g.begin() + (t + 1) * d);
  const AdapterLoss loss = [&](const std::vector<GainView>& views) {
    double s = 0;
    for (size_t t = 0; t < views.size(); ++t) {
      const std::vector<float> x = decode_view(views[t]);
      double e = 0;
      for (size_t i = 0; i < x.size(); ++i)
        e += (double(x[i]) - ref[t][i]) * (double(x[i]) - ref[t][i]);
      s += weight[t] * e;
    }
    return s;
  };
  const uint64_t b4 = 12 + 4 + 16, b8 = 12 + 4 + 32, b16 = 12 + 64;
  const uint64_t min_total = 8 + T * b4, max_total = 8 + T * b16;

  const std::string low = thrown_message([&] {
    EncodeOptions o;
    o.byte_budget = min_total - 1;
    encode_adapter(Method::Mixed, g.data(), T, d, o, loss);
  });
  CHECK_MSG(
      mentions(low, "below the smallest mixed adapter") && mentions(low, std::to_string(min_total)),
      low);

  // Every budget from the minimum to past the maximum.
  for (uint64_t budget = min_total; budget <= max_total + 5; ++budget) {
    EncodeOptions o;
    o.byte_budget = budget;
    const EncodedAdapter a = encode_adapter(Method::Mixed, g.data(), T, d, o, loss);
    const MixedReport& r = *a.mixed;
    CHECK(r.loss_evals == 1 + 3 * T + 1);
    CHECK(r.reference_loss == 0.0);  // f32 is exact
    CHECK(adapter_bytes(a.tensors) == r.bytes && r.bytes <= budget);
    CHECK(serialize_adapter(a.tensors).size() == r.bytes);
    for (int64_t t = 0; t < T; ++t) {
      CHECK(a.tensors[size_t(t)].scheme == MixedReport::kCandidates[size_t(r.choice[size_t(t)])]);
      CHECK(r.candidate_bytes[size_t(t)][0] == b4 && r.candidate_bytes[size_t(t)][1] == b8 &&
            r.candidate_bytes[size_t(t)][2] == b16);
      for (int c = 0; c < 3; ++c) CHECK(r.increase[size_t(t)][size_t(c)] >= 0);
    }
    // Brute force over all 3^T choices: the same optimum.
    double best = INFINITY;
    for (int code = 0; code < 243; ++code) {
      uint64_t bytes = 8;
      double inc = 0;
      for (int t = 0, k = code; t < T; ++t, k /= 3) {
        bytes += r.candidate_bytes[size_t(t)][size_t(k % 3)];
        inc += r.increase[size_t(t)][size_t(k % 3)];
      }
      if (bytes <= budget) best = std::min(best, inc);
    }
    CHECK_MSG(std::fabs(r.predicted_increase - best) <= 1e-12 * best, "budget " << budget);
    // The loss is additive here, so the measurement matches the prediction.
    CHECK(std::fabs(r.loss - (r.reference_loss + r.predicted_increase)) <= 1e-9 * r.loss + 1e-300);
  }
  EncodeOptions o;
  o.byte_budget = min_total;
  CHECK(encode_adapter(Method::Mixed, g.data(), T, d, o, loss).mixed->choice ==
        std::vector<int>(T, 0));
  // Room for exactly one int4 -> int8 upgrade: the sensitive tensor gets it.
  o.byte_budget = min_total + (b8 - b4);
  const EncodedAdapter one = encode_adapter(Method::Mixed, g.data(), T, d, o, loss);
  CHECK(one.mixed->choice == std::vector<int>({0, 0, 1, 0, 0}));
  // With every byte available, each tensor takes its most accurate candidate.
  o.byte_budget = max_total;
  const EncodedAdapter all = encode_adapter(Method::Mixed, g.data(), T, d, o, loss);
  for (int64_t t = 0; t < T; ++t) {
    const auto& inc = all.mixed->increase[size_t(t)];
    CHECK(inc[size_t(all.mixed->choice[size_t(t)])] == *std::min_element(inc.begin(), inc.end()));
  }
  // Deterministic.
  const EncodedAdapter again = encode_adapter(Method::Mixed, g.data(), T, d, o, loss);
  CHECK(again.mixed->choice == all.mixed->choice && again.mixed->loss == all.mixed->loss);
  const AdapterLoss inf_loss = [](const std::vector<GainView>&) { return double(INFINITY); };
  CHECK(
      mentions(thrown_message([&] { encode_adapter(Method::Mixed, g.data(), T, d, o, inf_loss); }),
               "reference"));
}

// A real model's loss as the callback: the searches run end to end, and the
// loss they report is what model::evaluate gives for the returned encoding.
TEST(codec_searches_with_model_loss) {
  model::ModelConfig c;
  c.vocab = 13, c.d_model = 16, c.n_layers = 2, c.n_heads = 2, c.d_ff = 24, c.context = 16;
  model::Model m(c, 77);
  for (const model::TensorInfo& t : m.tensors())
    if (t.rows > 1)
      for (int64_t i = 0; i < t.rows * t.cols; ++i) m.params()[t.offset + i] *= 10.0f;
  const Exec ex{default_isa(), nullptr, 1};
  m.quantize(ex);
  Rng rng(78);
  std::vector<int32_t> train(48);
  for (int32_t& t : train) t = int32_t(rng.below(c.vocab));
  std::vector<float> gains(size_t(c.n_gains()));
  for (float& v : gains) v = 1.0f + 0.15f * rng.normal();
  const AdapterLoss loss = [&](const std::vector<GainView>& v) {
    return model::evaluate(m, v.data(), int64_t(v.size()), train.data(), int64_t(train.size()), 100,
                           {}, ex)
        .mean_nll;
  };
  const EncodedAdapter plain =
      encode_adapter(Method::Int4Delta, gains.data(), c.n_norms(), c.d_model);
  const EncodedAdapter cal =
      encode_adapter(Method::Int4Calibrated, gains.data(), c.n_norms(), c.d_model, {}, loss);
  CHECK(cal.calibration->loss == loss(cal.views()));
  CHECK(cal.calibration->loss <= loss(plain.views()));  // clip 1 is on the grid
  CHECK(cal.calibration->global_loss[0] == loss(plain.views()));

  EncodeOptions o;
  o.byte_budget = 8 + uint64_t(c.n_norms()) * (12 + 4 + 8) + 50;
  const EncodedAdapter mix =
      encode_adapter(Method::Mixed, gains.data(), c.n_norms(), c.d_model, o, loss);
  CHECK(mix.mixed->bytes <= o.byte_budget);
  CHECK(mix.mixed->loss == loss(mix.views()));
  const std::vector<GainView> fv = model::f32_gain_views(c, gains.data());
  CHECK(mix.mixed->reference_loss == loss(fv));
}
