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

  std::vector<EncodedGain> ref(T);
  std::vector<std::vector<EncodedGain>> cand(T);
  for (size_t t = 0; t < T; ++t) {
    const float* g = gains + int64_t(t) * d;
    try {
      ref[t] = encode_f32(g, d);
      cand[t] = {encode_delta(4, g, d), encode_delta(8, g, d), encode_f16(g, d)};
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(what + ": tensor " + std::to_string(t) + ": " + e.what());
    }
  }
  MixedReport rep;
  rep.candidates.assign(MixedReport::kCandidates.begin(), MixedReport::kCandidates.end());
  rep.budget = byte_budget;
  std::vector<std::string> labels;
  for (norm::GainScheme s : MixedReport::kCandidates) labels.push_back(scheme_name(s));
  EncodedAdapter out;
  out.method = Method::Mixed;
  detail::choose_per_tensor(what, ref, cand, labels, "mixed adapter (every tensor int4_delta)",
                            loss, rep, out);
  return out;
}

}  // namespace ternorm::codec
