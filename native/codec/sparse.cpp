// Sparse deltas ("sparse_delta"): only the gains that moved most from 1.0 are
// stored; every other gain decodes to exactly 1.
//   params:  {k, scale}: k kept gains (an integer, 0 <= k <= d), scale >= 0
//   payload: k entries, each an index (b = index_bits(d) bits, the smallest
//            b >= 1 with 2^b >= d) then an int8 two's complement code, LSB
//            first (util.h bit packing): ceil(k (b + 8) / 8) bytes, padding
//            bits 0. Indices strictly increasing and < d (one coding per
//            set of kept gains).
//   decode:  g = 1.0f everywhere, then g[index] = 1.0f + float(q) * scale.
// Encoder: scale = max kept |g - 1| / 127 rounded up to a float, q =
// round((g - 1) / scale) (|error| <= scale / 2 on kept gains, |g - 1| on the
// others). The method keeps the k largest |g - 1| of the whole adapter with
// k as large as the byte budget allows (codec.h); a tensor keeping none is a
// unit record (3 bytes instead of 11 in format 2).
// Sizes: 8 bytes of params + ceil(k (b + 8) / 8); for d = 256, 2 bytes per kept gain.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <tuple>

#include "codec.h"
#include "decoders.h"
#include "util.h"

namespace ternorm::codec {

namespace {
uint64_t entry_bits(int64_t d) { return uint64_t(detail::index_bits(d)) + 8; }
}  // namespace

bool sparse_params_ok(const norm::GainView& g) {
  return g.n_params == 2 && detail::is_int_in(g.params[0], 0, double(g.d)) && g.params[1] >= 0;
}

size_t sparse_payload_bytes(const norm::GainView& g) {
  return detail::bit_bytes(uint64_t(g.params[0]) * entry_bits(g.d));
}

void sparse_decode(const norm::GainView& g, float* out) {
  const uint64_t k = uint64_t(g.params[0]), eb = entry_bits(g.d);
  const int ib = detail::index_bits(g.d);
  detail::check_bit_padding(g, k * eb);
  const uint8_t* p = static_cast<const uint8_t*>(g.data);
  const float scale = g.params[1];
  for (int64_t i = 0; i < g.d; ++i) out[i] = 1.0f;
  int64_t prev = -1;
  for (uint64_t j = 0; j < k; ++j) {
    const int64_t idx = int64_t(detail::get_bits(p, j * eb, ib));
    if (idx >= g.d || idx <= prev)
      throw std::invalid_argument(
          detail::decoder_prefix(g.scheme) + "entry " + std::to_string(j) + " has index " +
          std::to_string(idx) + ", expected " + std::to_string(prev + 1) +
          " <= index < d = " + std::to_string(g.d) + " (strictly increasing)");
    const int64_t q = detail::sign_extend(detail::get_bits(p, j * eb + uint64_t(ib), 8), 8);
    out[idx] = 1.0f + float(q) * scale;
    prev = idx;
  }
}

EncodedGain encode_sparse(const float* g, int64_t d, const std::vector<int64_t>& keep) {
  detail::check_gains("encode sparse_delta", g, d, true);
  double m = 0;
  for (size_t j = 0; j < keep.size(); ++j) {
    if (keep[j] < 0 || keep[j] >= d || (j > 0 && keep[j] <= keep[j - 1]))
      throw std::invalid_argument(
          "encode sparse_delta: keep[" + std::to_string(j) + "] = " + std::to_string(keep[j]) +
          ", expected strictly increasing indices below d = " + std::to_string(d));
    m = std::max(m, std::fabs(double(g[keep[j]]) - 1.0));
  }
  const float scale = detail::scale_covering(m, 127);
  const uint64_t eb = entry_bits(d);
  const int ib = detail::index_bits(d);
  EncodedGain e;
  e.scheme = norm::GainScheme::SparseDelta;
  e.d = d;
  e.params = {float(keep.size()), scale};
  e.payload.assign(detail::bit_bytes(uint64_t(keep.size()) * eb), 0);
  for (size_t j = 0; j < keep.size(); ++j) {
    const double r = scale > 0 ? detail::round_half_away((double(g[keep[j]]) - 1.0) / scale) : 0.0;
    const int q = int(std::min(127.0, std::max(-127.0, r)));
    detail::put_bits(e.payload.data(), j * eb, ib, uint64_t(keep[j]));
    detail::put_bits(e.payload.data(), j * eb + uint64_t(ib), 8, uint64_t(uint8_t(int8_t(q))));
  }
  return e;
}

EncodedAdapter encode_sparse_adapter(const float* gains, int64_t n_tensors, int64_t d,
                                     uint64_t byte_budget) {
  const std::string what = "sparse_delta";
  const size_t T = size_t(n_tensors);
  // Every |g - 1| > 0, largest first; ties: lower tensor, then lower index.
  std::vector<std::tuple<double, int64_t, int64_t>> order;
  for (size_t t = 0; t < T; ++t) {
    const float* g = gains + int64_t(t) * d;
    try {
      detail::check_gains("encode sparse_delta", g, d, true);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(what + ": tensor " + std::to_string(t) + ": " + e.what());
    }
    for (int64_t i = 0; i < d; ++i) {
      const double a = std::fabs(double(g[i]) - 1.0);
      if (a > 0) order.emplace_back(-a, int64_t(t), i);
    }
  }
  std::sort(order.begin(), order.end());
  // Format-2 record bytes of a tensor keeping k gains (k = 0: a unit record).
  const uint64_t eb = entry_bits(d);
  auto rec = [&](uint64_t k) {
    return k == 0 ? kCompactRecordHeaderBytes
                  : kCompactRecordHeaderBytes + 8 + detail::bit_bytes(k * eb);
  };
  uint64_t total = kCompactAdapterHeaderBytes + T * rec(0);
  if (byte_budget < total)
    throw std::invalid_argument(what + ": byte budget " + std::to_string(byte_budget) +
                                " is below the smallest sparse adapter (every tensor unit), " +
                                std::to_string(total) + " bytes");
  std::vector<uint64_t> k(T, 0);
  size_t kept = 0;
  for (; kept < order.size(); ++kept) {
    const size_t t = size_t(std::get<1>(order[kept]));
    const uint64_t next = total - rec(k[t]) + rec(k[t] + 1);
    if (next > byte_budget) break;  // the k largest, not the largest that still fit
    total = next;
    ++k[t];
  }
  std::vector<std::vector<int64_t>> keep(T);
  for (size_t j = 0; j < kept; ++j)
    keep[size_t(std::get<1>(order[j]))].push_back(std::get<2>(order[j]));
  EncodedAdapter out;
  out.method = Method::SparseDelta;
  out.format = kCompactAdapterFormatVersion;
  for (size_t t = 0; t < T; ++t) {
    std::sort(keep[t].begin(), keep[t].end());
    out.tensors.push_back(keep[t].empty() ? encode_unit(d)
                                          : encode_sparse(gains + int64_t(t) * d, d, keep[t]));
  }
  return out;
}

}  // namespace ternorm::codec
