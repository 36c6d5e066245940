// Mixed precision per norm tensor under a byte budget ("mixed").
// Each tensor is stored as int4_delta, int8_delta (delta.cpp) or f16
// (baseline.cpp), chosen by how much the caller's training-text loss cares.
//
//  1. Sensitivity: L_ref = loss with every tensor f32 (the unquantised
//     adapter); for each tensor t and candidate c, increase[t][c] = loss with
//     only tensor t encoded by c (the others f32) - L_ref. 1 + 3n evaluations.
//  2. Choice: minimise sum_t increase[t][c_t] subject to
//     8 + sum_t record_bytes(t, c_t) <= budget (the serialised adapter,
//     record.cpp), the exact knapsack of util.h (O(3 n B) time, n B bytes of
//     memory, B = the largest reachable total within the budget; candidates
//     in the order int4, int8, f16). Measured increases are used as they are,
//     including negative ones (a cheaper candidate that measured better is
//     taken).
//  3. The chosen adapter's loss is measured once more (1 evaluation) and
//     reported with the prediction: the additive model is an approximation.
// The budget below the all-int4 size is refused, naming that size.
#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

#include "codec.h"
#include "util.h"

namespace ternorm::codec {

EncodedAdapter encode_mixed(const float* gains, int64_t n_tensors, int64_t d,
                            const AdapterLoss& loss, uint64_t byte_budget) {
  const std::string what = "mixed";
  if (!loss) throw std::invalid_argument(what + ": needs a loss callback, got none");
  if (gains == nullptr) throw std::invalid_argument(what + ": gains pointer is null");
  if (n_tensors <= 0 || n_tensors > 65536)
    throw std::invalid_argument(what + ": n_tensors = " + std::to_string(n_tensors) +
                                ", expected 1..65536");
  const size_t T = size_t(n_tensors);
  constexpr size_t C = MixedReport::kCandidates.size();

  std::vector<EncodedGain> ref(T);
  std::vector<std::array<EncodedGain, C>> cand(T);
  MixedReport rep;
  rep.candidates.assign(MixedReport::kCandidates.begin(), MixedReport::kCandidates.end());
  rep.budget = byte_budget;
  rep.candidate_bytes.assign(T, std::vector<uint64_t>(C));
  for (size_t t = 0; t < T; ++t) {
    const float* g = gains + int64_t(t) * d;
    try {
      ref[t] = encode_f32(g, d);
      cand[t][0] = encode_delta(4, g, d);
      cand[t][1] = encode_delta(8, g, d);
      cand[t][2] = encode_f16(g, d);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(what + ": tensor " + std::to_string(t) + ": " + e.what());
    }
    for (size_t c = 0; c < C; ++c) rep.candidate_bytes[t][c] = record_bytes(cand[t][c]);
  }

  uint64_t min_total = kAdapterHeaderBytes, max_total = kAdapterHeaderBytes;
  for (size_t t = 0; t < T; ++t) {
    min_total += *std::min_element(rep.candidate_bytes[t].begin(), rep.candidate_bytes[t].end());
    max_total += *std::max_element(rep.candidate_bytes[t].begin(), rep.candidate_bytes[t].end());
  }
  if (byte_budget < min_total)
    throw std::invalid_argument(what + ": byte budget " + std::to_string(byte_budget) +
                                " is below the smallest mixed adapter (every tensor int4_delta), " +
                                std::to_string(min_total) + " bytes");

  // 1. Sensitivities.
  std::vector<const EncodedGain*> enc(T);
  for (size_t t = 0; t < T; ++t) enc[t] = &ref[t];
  rep.reference_loss =
      detail::eval_loss(loss, enc, what + " reference (every tensor f32)", &rep.loss_evals);
  rep.increase.assign(T, std::vector<double>(C));
  for (size_t t = 0; t < T; ++t) {
    for (size_t c = 0; c < C; ++c) {
      enc[t] = &cand[t][c];
      rep.increase[t][c] = detail::eval_loss(loss, enc,
                                             what + " sensitivity of tensor " + std::to_string(t) +
                                                 " to " + scheme_name(MixedReport::kCandidates[c]),
                                             &rep.loss_evals) -
                           rep.reference_loss;
    }
    enc[t] = &ref[t];
  }

  // 2. Exact knapsack over the record bytes (the adapter header is fixed).
  rep.predicted_increase = detail::choose_under_budget(
      rep.increase, rep.candidate_bytes, std::min(byte_budget, max_total) - kAdapterHeaderBytes,
      &rep.choice);

  // 3. The chosen adapter, measured.
  EncodedAdapter out;
  out.method = Method::Mixed;
  for (size_t t = 0; t < T; ++t) out.tensors.push_back(cand[t][size_t(rep.choice[t])]);
  for (size_t t = 0; t < T; ++t) enc[t] = &out.tensors[t];
  rep.loss = detail::eval_loss(loss, enc, what + " chosen adapter", &rep.loss_evals);
  rep.bytes = adapter_bytes(out.tensors);
  out.mixed = std::move(rep);
  return out;
}

}  // namespace ternorm::codec
