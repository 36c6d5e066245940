// int4 calibrated on the user's own training text ("int4_calibrated").
// The format is int4_delta (delta.cpp): g = 1 + q * scale, q in [-7, 7]. What
// changes is how the scale is chosen: not to minimise the weight error (clip
// 1: the largest delta lands exactly on +-7) but the loss the caller measures
// on the user's training text. A clip factor c < 1 gives scale =
// c max|g - 1| / 7: a finer step for the bulk of the gains at the price of
// clipping the largest deltas to +-7 scale.
//
// Search, deterministic (the callback is the only source of numbers):
//  1. Global: every tensor with the same factor c, for each c of the grid in
//     order; keep the lowest loss (a tie keeps the earlier c).
//  2. Per tensor, `passes` rounds of coordinate descent: for tensor t = 0..n-1,
//     try every other factor of the grid with the other tensors held; move t
//     to the best one if its loss is strictly lower than the current best. A
//     candidate whose encoding is byte-identical to the current one (a tensor
//     of all-1 gains, where every c gives scale 0) is not evaluated. A round
//     that moves nothing ends the search.
// Loss evaluations: G + passes * n * (G - 1) at most, G = grid size (the
// default grid of 15 and one pass on 9 tensors: 141). The report records the
// stage-1 losses, the factor chosen per tensor and the count.
#include <cmath>
#include <stdexcept>
#include <string>

#include "codec.h"
#include "util.h"

namespace ternorm::codec {

std::vector<double> default_clip_grid() {
  std::vector<double> grid;
  for (int p = 100; p >= 30; p -= 5) grid.push_back(p / 100.0);
  return grid;
}

EncodedAdapter encode_int4_calibrated(const float* gains, int64_t n_tensors, int64_t d,
                                      const AdapterLoss& loss, const std::vector<double>& grid,
                                      int passes) {
  const std::string what = "int4_calibrated";
  if (!loss) throw std::invalid_argument(what + ": needs a loss callback, got none");
  if (gains == nullptr) throw std::invalid_argument(what + ": gains pointer is null");
  if (n_tensors <= 0 || n_tensors > 65536)
    throw std::invalid_argument(what + ": n_tensors = " + std::to_string(n_tensors) +
                                ", expected 1..65536");
  if (grid.empty() || grid.size() > 1000)
    throw std::invalid_argument(what + ": clip grid has " + std::to_string(grid.size()) +
                                " factors, expected 1..1000");
  for (size_t i = 0; i < grid.size(); ++i) {
    if (!(grid[i] > 0.0 && grid[i] <= 1.0))
      throw std::invalid_argument(what + ": clip grid[" + std::to_string(i) +
                                  "] = " + std::to_string(grid[i]) + ", expected 0 < c <= 1");
    for (size_t j = 0; j < i; ++j)
      if (grid[j] == grid[i])
        throw std::invalid_argument(what + ": clip grid[" + std::to_string(i) + "] repeats grid[" +
                                    std::to_string(j) + "], expected distinct factors");
  }
  if (passes < 0 || passes > 1000)
    throw std::invalid_argument(what + ": passes = " + std::to_string(passes) +
                                ", expected 0..1000");

  const size_t T = size_t(n_tensors), G = grid.size();
  // cand[t][i]: tensor t with factor grid[i] (encode_delta checks d and the gains).
  std::vector<std::vector<EncodedGain>> cand(T);
  for (size_t t = 0; t < T; ++t) {
    cand[t].reserve(G);
    for (size_t i = 0; i < G; ++i) {
      try {
        cand[t].push_back(encode_delta(4, gains + int64_t(t) * d, d, grid[i]));
      } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(what + ": tensor " + std::to_string(t) + ": " + e.what());
      }
    }
  }

  CalibrationReport rep;
  rep.grid = grid;
  std::vector<size_t> cur(T, 0);
  std::vector<const EncodedGain*> enc(T);
  auto current = [&] {
    for (size_t t = 0; t < T; ++t) enc[t] = &cand[t][cur[t]];
  };

  // 1. One factor for every tensor.
  double best = 0;
  size_t best_i = 0;
  for (size_t i = 0; i < G; ++i) {
    for (size_t t = 0; t < T; ++t) enc[t] = &cand[t][i];
    const double v = detail::eval_loss(
        loss, enc, what + " candidate clip " + std::to_string(grid[i]) + " on every tensor",
        &rep.loss_evals);
    rep.global_loss.push_back(v);
    if (i == 0 || v < best) best = v, best_i = i;
  }
  cur.assign(T, best_i);

  // 2. Coordinate descent, one tensor at a time.
  for (int pass = 0; pass < passes; ++pass) {
    bool moved = false;
    for (size_t t = 0; t < T; ++t) {
      current();
      size_t arg = cur[t];
      double arg_loss = best;
      for (size_t i = 0; i < G; ++i) {
        if (i == cur[t] || detail::same_encoding(cand[t][i], cand[t][cur[t]])) continue;
        enc[t] = &cand[t][i];
        const double v = detail::eval_loss(
            loss, enc,
            what + " candidate clip " + std::to_string(grid[i]) + " on tensor " + std::to_string(t),
            &rep.loss_evals);
        if (v < arg_loss) arg_loss = v, arg = i;
      }
      if (arg != cur[t]) {
        cur[t] = arg;
        best = arg_loss;
        moved = true;
      }
    }
    if (!moved) break;
  }

  EncodedAdapter out;
  out.method = Method::Int4Calibrated;
  for (size_t t = 0; t < T; ++t) {
    out.tensors.push_back(cand[t][cur[t]]);
    rep.clip.push_back(grid[cur[t]]);
  }
  rep.loss = best;
  out.calibration = std::move(rep);
  return out;
}

}  // namespace ternorm::codec
