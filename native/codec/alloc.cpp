// Budgeted bit allocation per norm tensor ("alloc"): each tensor gets 0, 1,
// 2, 3, 4, 8 or 16 bits per gain — unit, sign1_delta, int2/int3/int4/int8_delta
// (delta.cpp) or f16 (baseline.cpp) — chosen by how much the caller's
// training-text loss cares, for any byte budget from the all-unit adapter
// (12 + 3 n bytes; 39 B for 9 tensors) up. The scheme id of each record is
// the record of which tensor got which width.
//
//  1. Sensitivity: L_ref = loss with every tensor f32; for each tensor t and
//     width w, increase[t][w] = loss with only tensor t at width w (others
//     f32) - L_ref. 1 + 7n evaluations (width 0 is measured too: dropping a
//     tensor's adaptation is what a small budget does).
//  2. Choice: the exact knapsack of util.h over format-2 record bytes (the
//     12-byte adapter header fixed), widths in increasing order.
//  3. The chosen adapter's loss is measured once more (1 evaluation) and
//     reported with the prediction (the additive model is an approximation).
// The sensitivities come from the loss the caller supplies; the bet and the
// frontier pass the training text's calibration tokens, never validation or
// test tokens.
#include <stdexcept>
#include <string>

#include "codec.h"
#include "util.h"

namespace ternorm::codec {

EncodedAdapter encode_alloc(const float* gains, int64_t n_tensors, int64_t d,
                            const AdapterLoss& loss, uint64_t byte_budget) {
  const std::string what = "alloc";
  if (!loss) throw std::invalid_argument(what + ": needs a loss callback, got none");
  if (gains == nullptr) throw std::invalid_argument(what + ": gains pointer is null");
  if (n_tensors <= 0 || n_tensors > 65536)
    throw std::invalid_argument(what + ": n_tensors = " + std::to_string(n_tensors) +
                                ", expected 1..65536");
  static const int kWidths[] = {0, 1, 2, 3, 4, 8, 16};
  const size_t T = size_t(n_tensors);

  std::vector<EncodedGain> ref(T);
  std::vector<std::vector<EncodedGain>> cand(T);
  for (size_t t = 0; t < T; ++t) {
    const float* g = gains + int64_t(t) * d;
    try {
      ref[t] = encode_f32(g, d);
      for (int w : kWidths)
        cand[t].push_back(w == 0    ? encode_unit(d)
                          : w == 1  ? encode_sign1(g, d)
                          : w == 16 ? encode_f16(g, d)
                                    : encode_delta(w, g, d));
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(what + ": tensor " + std::to_string(t) + ": " + e.what());
    }
  }
  MixedReport rep;
  for (const EncodedGain& e : cand[0]) rep.candidates.push_back(e.scheme);
  rep.budget = byte_budget;
  std::vector<std::string> labels;
  for (int w : kWidths) labels.push_back(std::to_string(w) + " bits");
  EncodedAdapter out;
  out.method = Method::Alloc;
  out.format = kCompactAdapterFormatVersion;
  detail::choose_per_tensor(what, ref, cand, labels, "allocation (every tensor 0 bits)", loss, rep,
                            out);
  return out;
}

}  // namespace ternorm::codec
