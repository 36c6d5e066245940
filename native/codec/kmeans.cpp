// k-means codebook, per tensor ("kmeans2", "kmeans4", "kmeans8", "kmeans16",
// "kmeans256").
//   params:  the k centroids c_0 < c_1 < ... < c_{k-1} (floats, strictly
//            increasing), 1 <= k <= K = 2, 4, 8, 16 or 256; k is the param count.
//   payload: kmeans16: ceil(d / 2) bytes of 4-bit indices, nibble-packed as in
//            util.h (an odd d's padding nibble must be 0); kmeans256: d uint8
//            indices; kmeans2/4/8: ceil(b d / 8) bytes of b = 1/2/3-bit
//            indices (util.h bit packing, padding bits 0). Every index must be < k.
//   decode:  g_i = c[idx_i]  (exact: a copy of a float)
// Sizes: 4k bytes of params + ceil(b d / 8) bytes, b = log2 K.
//
// Why per tensor and why k = min(K, distinct values): one codebook per norm
// tensor keeps each record self-contained (the kernel decodes one view at a
// time). With K >= the number of distinct gains the codebook is the set of
// gains itself and the coding is exact; the encoder then stores no more
// centroids than distinct values.
//
// The clustering runs on the distinct values with their counts as weights (a
// repeated gain pulls its centroid as hard as its copies do). In 1-D, nearest-
// centroid clusters are runs of the sorted values, so assignment is one sweep.
// Non-empty clusters' means stay inside their cells and an empty cluster keeps
// its centroid inside its own cell, so the centroids stay strictly increasing.
// Each Lloyd step (assign, then move to the means) cannot raise the weighted
// sum of squared errors (up to rounding); the trace records it.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "codec.h"
#include "decoders.h"
#include "util.h"

namespace ternorm::codec {

namespace {

bool centroids_ok(const norm::GainView& g, size_t K) {
  if (g.n_params < 1 || g.n_params > K) return false;
  for (size_t j = 1; j < g.n_params; ++j)
    if (!(g.params[j - 1] < g.params[j])) return false;
  return true;
}

[[noreturn]] void bad_index(const norm::GainView& g, int64_t i, unsigned idx) {
  throw std::invalid_argument(detail::decoder_prefix(g.scheme) + "gain[" + std::to_string(i) +
                              "] has codebook index " + std::to_string(idx) +
                              ", expected < k = " + std::to_string(g.n_params));
}

// Weighted distinct values, ascending.
struct Points {
  std::vector<double> u;
  std::vector<double> w;
};

// a[i] = the cluster of u[i]: nearest centroid, a tie to the lower one.
void assign(const Points& p, const std::vector<double>& c, std::vector<int>& a) {
  size_t j = 0;
  for (size_t i = 0; i < p.u.size(); ++i) {
    while (j + 1 < c.size() && p.u[i] - c[j] > c[j + 1] - p.u[i]) ++j;
    a[i] = int(j);
  }
}

double distortion(const Points& p, const std::vector<double>& c, const std::vector<int>& a) {
  double s = 0;
  for (size_t i = 0; i < p.u.size(); ++i) {
    const double e = p.u[i] - c[size_t(a[i])];
    s += p.w[i] * e * e;
  }
  return s;
}

// Moves each centroid to the weighted mean of its cluster (runs of a).
void update(const Points& p, const std::vector<int>& a, std::vector<double>& c) {
  std::vector<double> sw(c.size(), 0.0), swu(c.size(), 0.0);
  for (size_t i = 0; i < p.u.size(); ++i) {
    sw[size_t(a[i])] += p.w[i];
    swu[size_t(a[i])] += p.w[i] * p.u[i];
  }
  for (size_t j = 0; j < c.size(); ++j)
    if (sw[j] > 0) c[j] = swu[j] / sw[j];
}

}  // namespace

size_t kmeans16_payload_bytes(const norm::GainView& g) { return detail::nibble_bytes(g.d); }
bool kmeans16_params_ok(const norm::GainView& g) { return centroids_ok(g, 16); }
void kmeans16_decode(const norm::GainView& g, float* out) {
  detail::check_nibble_padding(g);
  const uint8_t* p = static_cast<const uint8_t*>(g.data);
  for (int64_t i = 0; i < g.d; ++i) {
    const unsigned idx = detail::get_nibble(p, i);
    if (idx >= g.n_params) bad_index(g, i, idx);
    out[i] = g.params[idx];
  }
}

size_t kmeans256_payload_bytes(const norm::GainView& g) { return size_t(g.d); }
bool kmeans256_params_ok(const norm::GainView& g) { return centroids_ok(g, 256); }
void kmeans256_decode(const norm::GainView& g, float* out) {
  const uint8_t* p = static_cast<const uint8_t*>(g.data);
  for (int64_t i = 0; i < g.d; ++i) {
    if (p[i] >= g.n_params) bad_index(g, i, p[i]);
    out[i] = g.params[p[i]];
  }
}

namespace {

// kmeans2/4/8: b-bit indices.
void kmeans_bits_decode(const norm::GainView& g, float* out, int b) {
  detail::check_bit_padding(g, uint64_t(g.d) * uint64_t(b));
  const uint8_t* p = static_cast<const uint8_t*>(g.data);
  for (int64_t i = 0; i < g.d; ++i) {
    const unsigned idx = unsigned(detail::get_bits(p, uint64_t(i) * b, b));
    if (idx >= g.n_params) bad_index(g, i, idx);
    out[i] = g.params[idx];
  }
}

int index_width(int K) { return K == 2 ? 1 : K == 4 ? 2 : K == 8 ? 3 : K == 16 ? 4 : 8; }

norm::GainScheme kmeans_scheme(int K) {
  switch (K) {
    case 2: return norm::GainScheme::KMeans2;
    case 4: return norm::GainScheme::KMeans4;
    case 8: return norm::GainScheme::KMeans8;
    case 16: return norm::GainScheme::KMeans16;
    default: return norm::GainScheme::KMeans256;
  }
}

}  // namespace

size_t kmeans2_payload_bytes(const norm::GainView& g) { return detail::bit_bytes(uint64_t(g.d)); }
bool kmeans2_params_ok(const norm::GainView& g) { return centroids_ok(g, 2); }
void kmeans2_decode(const norm::GainView& g, float* out) { kmeans_bits_decode(g, out, 1); }
size_t kmeans4_payload_bytes(const norm::GainView& g) {
  return detail::bit_bytes(2 * uint64_t(g.d));
}
bool kmeans4_params_ok(const norm::GainView& g) { return centroids_ok(g, 4); }
void kmeans4_decode(const norm::GainView& g, float* out) { kmeans_bits_decode(g, out, 2); }
size_t kmeans8_payload_bytes(const norm::GainView& g) {
  return detail::bit_bytes(3 * uint64_t(g.d));
}
bool kmeans8_params_ok(const norm::GainView& g) { return centroids_ok(g, 8); }
void kmeans8_decode(const norm::GainView& g, float* out) { kmeans_bits_decode(g, out, 3); }

EncodedGain encode_kmeans(int K, const float* g, int64_t d, int max_iters, KMeansTrace* trace) {
  if (K != 2 && K != 4 && K != 8 && K != 16 && K != 256)
    throw std::invalid_argument("encode kmeans: K = " + std::to_string(K) +
                                ", expected 2, 4, 8, 16 or 256");
  const std::string name = "encode kmeans" + std::to_string(K);
  const char* what = name.c_str();
  detail::check_gains(what, g, d, true);
  if (max_iters < 1)
    throw std::invalid_argument(std::string(what) + ": max_iters = " + std::to_string(max_iters) +
                                ", expected >= 1");

  // Distinct values and their counts (the sort makes everything below
  // independent of the input order).
  std::vector<float> sorted(g, g + d);
  std::sort(sorted.begin(), sorted.end());
  Points p;
  for (float v : sorted) {
    if (!p.u.empty() && p.u.back() == double(v)) {
      p.w.back() += 1;
    } else {
      p.u.push_back(v);
      p.w.push_back(1);
    }
  }
  const size_t m = p.u.size(), k = std::min(size_t(K), m);

  std::vector<double> c(k);
  for (size_t j = 0; j < k; ++j) c[j] = p.u[(2 * j + 1) * m / (2 * k)];
  std::vector<int> a(m), next(m);
  assign(p, c, a);
  KMeansTrace tr;
  tr.distortion.push_back(distortion(p, c, a));
  for (int it = 1; it <= max_iters; ++it) {
    update(p, a, c);
    tr.distortion.push_back(distortion(p, c, a));
    tr.iterations = it;
    assign(p, c, next);
    if (next == a) {
      tr.converged = true;
      break;
    }
    a.swap(next);
  }
  if (!tr.converged) assign(p, c, a);  // the assignment to the final centroids

  // Stored centroids: the used ones, rounded to float, duplicates merged.
  std::vector<char> used(k, 0);
  for (int j : a) used[size_t(j)] = 1;
  std::vector<float> cf;
  for (size_t j = 0; j < k; ++j) {
    if (!used[j]) continue;
    const float f = float(c[j]);
    if (cf.empty() || cf.back() < f) cf.push_back(f);
  }

  EncodedGain e;
  const int b = index_width(K);
  e.scheme = kmeans_scheme(K);
  e.d = d;
  e.params = cf;
  e.payload.assign(detail::bit_bytes(uint64_t(d) * uint64_t(b)), 0);
  for (int64_t i = 0; i < d; ++i) {
    // Nearest stored centroid, a tie to the lower one.
    const double v = g[i];
    size_t j = size_t(std::lower_bound(cf.begin(), cf.end(), g[i]) - cf.begin());
    if (j == cf.size() || (j > 0 && v - double(cf[j - 1]) <= double(cf[j]) - v)) --j;
    detail::put_bits(e.payload.data(), uint64_t(i) * uint64_t(b), b, j);
  }
  if (trace != nullptr) *trace = std::move(tr);
  return e;
}

}  // namespace ternorm::codec
