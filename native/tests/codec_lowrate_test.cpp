// The low-rate codecs (int3/int2/sign1 deltas, unit, kmeans2/4/8, sparse
// deltas, Golomb-Rice coded deltas, budgeted bit allocation) and the compact
// adapter format 2: stated error bounds with the step read from each
// encoding's params, exact sizes, the bit layouts, the choices the budgeted
// methods make, and decoding through the fused RMSNorm kernel on every ISA
// path (bit-identical: the decode is scalar code shared by every path).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "codec/codec.h"
#include "harness.h"
#include "norm/gain_codec.h"
#include "norm/rmsnorm.h"

using namespace ternorm;
using namespace ternorm::codec;
using norm::GainScheme;
using norm::GainView;
using ternorm::test::mentions;
using ternorm::test::Rng;
using ternorm::test::thrown_message;

namespace {

std::vector<float> decode(const EncodedGain& e) {
  std::vector<float> out(size_t(e.d), NAN);
  norm::decode_gain(e.view(), out.data());
  return out;
}

std::vector<float> trained(int64_t d, uint64_t seed, float spread = 0.02f) {
  Rng rng(seed);
  std::vector<float> g(static_cast<size_t>(d));
  for (float& v : g) v = 1.0f + spread * rng.normal();
  return g;
}

double sse(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
  return s;
}

const int64_t kDims[] = {1, 2, 3, 7, 8, 9, 31, 255, 256, 257, 1000};

}  // namespace

TEST(codec_lowrate_registry_and_sizes) {
  const std::pair<GainScheme, const char*> schemes[] = {{GainScheme::Int3Delta, "int3_delta"},
                                                        {GainScheme::Int2Delta, "int2_delta"},
                                                        {GainScheme::Sign1Delta, "sign1_delta"},
                                                        {GainScheme::KMeans2, "kmeans2"},
                                                        {GainScheme::KMeans4, "kmeans4"},
                                                        {GainScheme::KMeans8, "kmeans8"},
                                                        {GainScheme::SparseDelta, "sparse_delta"},
                                                        {GainScheme::RiceDelta, "rice_delta"},
                                                        {GainScheme::Unit, "unit"}};
  uint32_t id = 9;
  for (const auto& [s, name] : schemes) {
    CHECK(uint32_t(s) == id++);  // ids are part of the record format
    CHECK(std::string(scheme_name(s)) == name);
  }
  CHECK(all_methods().size() == 21);
  for (Method m : all_methods()) {
    CHECK(method_from_name(method_name(m)) == m);
    CHECK(adapter_format(m) == (int(m) >= int(Method::Int3Delta) ? 2u : 1u));
  }
  CHECK(method_needs_loss(Method::Alloc) && method_needs_budget(Method::Alloc));
  CHECK(method_needs_budget(Method::SparseDelta) && !method_needs_loss(Method::SparseDelta));
  // Record sizes for d = 256 (format 1 / format 2 headers: 12 / 3 bytes).
  const std::vector<float> g = trained(256, 1);
  const struct {
    EncodedGain e;
    uint64_t params_payload;
  } rows[] = {
      {encode_delta(3, g.data(), 256), 4 + 96},
      {encode_delta(2, g.data(), 256), 4 + 64},
      {encode_sign1(g.data(), 256), 4 + 32},
      {encode_kmeans(2, g.data(), 256), 8 + 32},
      {encode_kmeans(4, g.data(), 256), 16 + 64},
      {encode_kmeans(8, g.data(), 256), 32 + 96},
      {encode_unit(256), 0},
  };
  for (const auto& r : rows) {
    CHECK_MSG(record_bytes(r.e) == 12 + r.params_payload, scheme_name(r.e.scheme));
    CHECK_MSG(compact_record_bytes(r.e) == 3 + r.params_payload, scheme_name(r.e.scheme));
  }
  // Format 2 adapter: 12 + sum(3 + params + payload); the blob is that long.
  std::vector<EncodedGain> ad(9, encode_sign1(g.data(), 256));
  CHECK(adapter_bytes(ad, 2) == 12 + 9 * 39);
  CHECK(serialize_adapter(ad, 2).size() == 12 + 9 * 39);
  CHECK(adapter_bytes(std::vector<EncodedGain>(9, encode_unit(256)), 2) == 39);
}

// int3/int2 deltas: |g - g'| <= scale / 2 (+ float rounding), codes in range.
TEST(codec_lowrate_delta_bounds) {
  for (int bits : {3, 2}) {
    const int qmax = (1 << (bits - 1)) - 1;
    for (int64_t d : kDims)
      for (uint64_t seed : {1, 2, 3}) {
        std::vector<float> g = trained(d, seed * 7 + uint64_t(d));
        if (seed == 3) std::fill(g.begin(), g.end(), 1.0f);
        const EncodedGain e = encode_delta(bits, g.data(), d);
        CHECK(e.payload.size() == size_t((d * bits + 7) / 8));
        const double s = e.params[0];
        double m = 0;
        for (float v : g) m = std::max(m, std::fabs(double(v) - 1.0));
        CHECK(s * qmax >= m && (s == 0 || double(std::nextafter(float(s), 0.0f)) * qmax < m));
        const std::vector<float> back = decode(e);
        for (int64_t i = 0; i < d; ++i) {
          const double q = (double(back[size_t(i)]) - 1.0) / (s > 0 ? s : 1);
          CHECK(std::fabs(q) <= qmax + 1.2e-7 / (s > 0 ? s : 1));  // float rounding of 1 + q s
          CHECK_MSG(std::fabs(double(back[size_t(i)]) - g[size_t(i)]) <= s / 2 + 2e-7,
                    "bits " << bits << " d " << d << " i " << i);
        }
      }
  }
}

// sign1: s = mean |g - 1| (the squared-error optimum), the stated bound.
TEST(codec_lowrate_sign1_optimal_scale) {
  for (int64_t d : kDims) {
    std::vector<float> g = trained(d, 40 + uint64_t(d), 0.05f);
    const EncodedGain e = encode_sign1(g.data(), d);
    double mean = 0, m = 0;
    for (float v : g)
      mean += std::fabs(double(v) - 1.0), m = std::max(m, std::fabs(double(v) - 1.0));
    mean /= double(d);
    CHECK(e.params[0] == float(mean));
    const std::vector<float> back = decode(e);
    for (int64_t i = 0; i < d; ++i) {
      CHECK((back[size_t(i)] < 1.0f) == (g[size_t(i)] < 1.0f));
      CHECK(std::fabs(double(back[size_t(i)]) - g[size_t(i)]) <= std::max(mean, m - mean) + 2e-7);
    }
    // No other scale (signs kept) gives a smaller squared error.
    const double best = sse(back, g);
    for (double f : {0.5, 0.9, 0.99, 1.01, 1.1, 2.0}) {
      EncodedGain o = e;
      o.params[0] = float(mean * f);
      CHECK_MSG(sse(decode(o), g) >= best * (1 - 1e-6), "d " << d << " factor " << f);
    }
  }
  // A gain of exactly 1 codes as +s; all gains 1 give s = 0, exactly 1.
  std::vector<float> ones(5, 1.0f);
  CHECK(decode(encode_sign1(ones.data(), 5)) == ones);
  CHECK(decode(encode_unit(5)) == ones);
}

TEST(codec_lowrate_kmeans) {
  for (int K : {2, 4, 8}) {
    const int b = K == 2 ? 1 : K == 4 ? 2 : 3;
    for (int64_t d : kDims) {
      const std::vector<float> g = trained(d, 90 + uint64_t(d));
      const EncodedGain e = encode_kmeans(K, g.data(), d);
      CHECK(e.params.size() >= 1 && e.params.size() <= size_t(std::min<int64_t>(K, d)));
      CHECK(e.payload.size() == size_t((d * b + 7) / 8));
      const std::vector<float> back = decode(e);
      for (int64_t i = 0; i < d; ++i) {
        // Each gain decodes to its nearest stored centroid.
        double best = INFINITY;
        for (float c : e.params) best = std::min(best, std::fabs(double(c) - g[size_t(i)]));
        CHECK(std::fabs(double(back[size_t(i)]) - g[size_t(i)]) == best);
      }
    }
  }
  // More centroids never cost squared error on a trained vector.
  const std::vector<float> g = trained(256, 5);
  double prev = INFINITY;
  for (int K : {2, 4, 8, 16}) {
    const double s = sse(decode(encode_kmeans(K, g.data(), 256)), g);
    CHECK_MSG(s < prev, "K " << K);
    prev = s;
  }
}

// Sparse: exactly the k largest |g - 1| kept, the bound on them, 1 elsewhere.
TEST(codec_lowrate_sparse) {
  const int64_t T = 3, d = 256;
  std::vector<float> gains;
  for (int64_t t = 0; t < T; ++t) {
    const std::vector<float> g = trained(d, 300 + uint64_t(t), 0.01f * float(t + 1));
    gains.insert(gains.end(), g.begin(), g.end());
  }
  const uint64_t min_bytes = 12 + 3 * T;
  EncodeOptions o;
  o.byte_budget = min_bytes - 1;
  const std::string low =
      thrown_message([&] { encode_adapter(Method::SparseDelta, gains.data(), T, d, o); });
  CHECK_MSG(mentions(low, "below the smallest sparse adapter") && mentions(low, "21 bytes"), low);
  // The global order: |g - 1| descending, then tensor, then index.
  struct Entry {
    double a;
    int64_t t, i;
  };
  std::vector<Entry> order;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < d; ++i)
      order.push_back({std::fabs(double(gains[size_t(t * d + i)]) - 1.0), t, i});
  std::sort(order.begin(), order.end(), [](const Entry& x, const Entry& y) {
    return x.a != y.a ? x.a > y.a : x.t != y.t ? x.t < y.t : x.i < y.i;
  });
  size_t prev_kept = 0;
  for (uint64_t budget : {21, 32, 64, 96, 128, 256, 512, 1024, 2048}) {
    o.byte_budget = budget;
    const EncodedAdapter a = encode_adapter(Method::SparseDelta, gains.data(), T, d, o);
    CHECK(a.format == 2);
    const uint64_t bytes = adapter_bytes(a.tensors, 2);
    CHECK(bytes <= budget && serialize_adapter(a.tensors, 2).size() == bytes);
    // The kept set, read from the payloads (d = 256: one index byte, one code byte per entry).
    std::vector<std::vector<char>> kept(T, std::vector<char>(size_t(d), 0));
    std::vector<size_t> per(T, 0);
    size_t k = 0;
    for (int64_t t = 0; t < T; ++t) {
      const EncodedGain& e = a.tensors[size_t(t)];
      CHECK(e.scheme == GainScheme::SparseDelta || e.scheme == GainScheme::Unit);
      if (e.scheme != GainScheme::SparseDelta) continue;
      CHECK(e.payload.size() == size_t(2 * e.params[0]));
      for (size_t j = 0; j < size_t(e.params[0]); ++j) kept[size_t(t)][e.payload[2 * j]] = 1;
      per[size_t(t)] = size_t(e.params[0]);
      k += per[size_t(t)];
      const std::vector<float> back = decode(e);
      for (int64_t i = 0; i < d; ++i) {
        const float g = gains[size_t(t * d + i)];
        if (kept[size_t(t)][size_t(i)])
          CHECK(std::fabs(double(back[size_t(i)]) - g) <= e.params[1] / 2 + 2e-7);
        else
          CHECK(back[size_t(i)] == 1.0f);
      }
    }
    // Exactly the k largest are kept.
    for (size_t j = 0; j < order.size(); ++j)
      CHECK_MSG(bool(kept[size_t(order[j].t)][size_t(order[j].i)]) == (j < k), "budget " << budget);
    // One more would not fit (a first entry of a tensor costs 10 bytes, later ones 2).
    if (k < order.size()) CHECK(bytes + (per[size_t(order[k].t)] == 0 ? 10 : 2) > budget);
    CHECK(k >= prev_kept);
    prev_kept = k;
  }
  CHECK(prev_kept > 0);
  // Bad keep lists.
  const std::vector<float> g = trained(8, 1);
  CHECK(mentions(thrown_message([&] { encode_sparse(g.data(), 8, {3, 3}); }), "strictly"));
  CHECK(mentions(thrown_message([&] { encode_sparse(g.data(), 8, {8}); }), "below d"));
}

// Rice: the same decoded gains as the delta quantiser, bit for bit; the byte
// count is the real stream's, with the shortest parameter.
TEST(codec_lowrate_rice) {
  for (int bits : {8, 4, 3, 2})
    for (int64_t d : kDims)
      for (float spread : {0.0f, 0.003f, 0.03f}) {
        const std::vector<float> g = trained(d, 77 + uint64_t(d), spread);
        const EncodedGain plain = encode_delta(bits, g.data(), d);
        const EncodedGain e = encode_rice(bits, g.data(), d);
        const std::vector<float> a = decode(plain), b = decode(e);
        CHECK_MSG(std::memcmp(a.data(), b.data(), a.size() * 4) == 0,
                  "bits " << bits << " d " << d);
        CHECK(e.params[0] == plain.params[0]);
        CHECK(double(e.payload.size()) == e.params[2]);
        // The stream length for every parameter: the stored one is the shortest.
        const std::vector<float> back = decode(plain);
        uint64_t best = UINT64_MAX;
        for (int r = 0; r <= 16; ++r) {
          uint64_t n = 0;
          for (float v : back) {
            const int64_t q = plain.params[0] > 0
                                  ? int64_t(std::llround((double(v) - 1.0) / plain.params[0]))
                                  : 0;
            const uint64_t z = q >= 0 ? uint64_t(2 * q) : uint64_t(-2 * q - 1);
            n += (z >> r) + 1 + uint64_t(r);
          }
          if (r == int(e.params[1])) CHECK(e.payload.size() == (n + 7) / 8);
          best = std::min(best, n);
        }
        CHECK(e.payload.size() == (best + 7) / 8);
      }
  // On a trained vector the coded int4 codes take fewer bytes than the nibbles.
  const std::vector<float> g = trained(256, 9);
  CHECK(encode_rice(4, g.data(), 256).payload.size() < 128);
}

TEST(codec_lowrate_decoder_validation) {
  const uint8_t zero[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  const uint8_t ff[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  float out[8];
  auto msg = [&](GainView v) { return thrown_message([&] { norm::decode_gain(v, out); }); };
  const float s = 0.01f;
  // Padding bits after the last field.
  CHECK(mentions(msg({GainScheme::Int3Delta, 5, ff, 2, &s, 1}), "padding bit 15"));
  CHECK(mentions(msg({GainScheme::Sign1Delta, 3, ff, 1, &s, 1}), "padding bit 3"));
  const float neg = -0.01f;
  CHECK(mentions(msg({GainScheme::Sign1Delta, 3, zero, 1, &neg, 1}), ">= 0"));
  const float c2[2] = {0.9f, 1.1f}, c3[3] = {0.9f, 1.0f, 1.1f};
  CHECK(mentions(msg({GainScheme::KMeans2, 3, zero, 1, c3, 3}), "1..2 centroids"));
  const uint8_t idx3 = 0x3f;  // 2-bit indices 3, 3, 3 with k = 3
  CHECK(mentions(msg({GainScheme::KMeans4, 3, &idx3, 1, c3, 3}), "codebook index 3"));
  CHECK(msg({GainScheme::KMeans2, 3, zero, 1, c2, 2}) == "<no exception>");
  // Sparse: k not an integer / above d, unsorted indices.
  const float sp_bad[2] = {1.5f, 0.1f}, sp_big[2] = {9.0f, 0.1f}, sp2[2] = {2.0f, 0.1f};
  CHECK(mentions(msg({GainScheme::SparseDelta, 8, zero, 2, sp_bad, 2}), "0 <= k <= d"));
  CHECK(mentions(msg({GainScheme::SparseDelta, 8, zero, 9, sp_big, 2}), "0 <= k <= d"));
  // d = 8: 3-bit index + 8-bit code = 11 bits per entry; entries (5, q) and (2, q).
  uint8_t sp[3] = {0, 0, 0};
  sp[0] = 5;                // index 5, code 0
  sp[1] = uint8_t(2 << 3);  // second index (bits 11..13) = 2
  CHECK(mentions(msg({GainScheme::SparseDelta, 8, sp, 3, sp2, 2}), "strictly increasing"));
  const float sp0[2] = {0.0f, 0.0f};
  CHECK(msg({GainScheme::SparseDelta, 8, nullptr, 0, sp0, 2}) ==
        "<no exception>");  // keeps nothing
  // Rice: a stream that ends early, one with a spare byte, bad parameters.
  const float rp[3] = {0.01f, 0.0f, 1.0f};  // r = 0, 1 byte for d = 9: needs 9 bits at least
  CHECK(mentions(msg({GainScheme::RiceDelta, 9, zero, 1, rp, 3}), "3: the scale"));
  const float rp2[3] = {0.01f, 0.0f, 2.0f};
  CHECK(msg({GainScheme::RiceDelta, 9, zero, 2, rp2, 3}) == "<no exception>");  // nine zero codes
  CHECK(mentions(msg({GainScheme::RiceDelta, 9, ff, 2, rp2, 3}), "ends inside gain 0"));
  const float rp3[3] = {0.01f, 0.0f, 3.0f};
  CHECK(mentions(msg({GainScheme::RiceDelta, 9, zero, 3, rp3, 3}), "end in the last byte"));
  const float rp4[3] = {0.01f, 17.0f, 40.0f};
  CHECK(mentions(msg({GainScheme::RiceDelta, 9, zero, 8, rp4, 3}), "0..16"));
  // Unit: no params, no payload.
  CHECK(msg({GainScheme::Unit, 4, nullptr, 0, nullptr, 0}) == "<no exception>");
  CHECK(mentions(msg({GainScheme::Unit, 4, zero, 1, nullptr, 0}), "payload is 1 bytes"));
}

// The budgeted allocation with a synthetic additive loss: every budget from
// the all-unit adapter to past all-f16 stays within budget, matches a brute
// force over the widths, and spends bytes on the tensor the loss weighs most.
TEST(codec_lowrate_alloc) {
  const int64_t T = 3, d = 64;
  std::vector<float> gains;
  std::vector<std::vector<float>> target;
  for (int64_t t = 0; t < T; ++t) {
    const std::vector<float> g = trained(d, 500 + uint64_t(t), 0.03f);
    gains.insert(gains.end(), g.begin(), g.end());
    target.push_back(g);
  }
  const double weight[3] = {1.0, 50.0, 3.0};
  int64_t calls = 0;
  const AdapterLoss loss = [&](const std::vector<GainView>& views) {
    ++calls;
    double s = 0;
    for (size_t t = 0; t < views.size(); ++t) {
      std::vector<float> g(size_t(views[t].d));
      norm::decode_gain(views[t], g.data());
      s += weight[t] * sse(g, target[t]);
    }
    return s;
  };
  EncodeOptions o;
  o.byte_budget = 12 + 3 * T - 1;
  CHECK(
      mentions(thrown_message([&] { encode_adapter(Method::Alloc, gains.data(), T, d, o, loss); }),
               "below the smallest allocation"));
  CHECK(mentions(thrown_message([&] { encode_adapter(Method::Alloc, gains.data(), T, d, o); }),
                 "needs a loss"));
  const uint64_t max_total = 12 + T * (3 + 2 * d);
  double prev = INFINITY;
  for (uint64_t budget = 12 + 3 * T; budget <= max_total + 4; budget += 7) {
    o.byte_budget = budget;
    calls = 0;
    const EncodedAdapter a = encode_adapter(Method::Alloc, gains.data(), T, d, o, loss);
    const MixedReport& r = *a.mixed;
    CHECK(a.format == 2 && r.loss_evals == 1 + 7 * T + 1 && calls == r.loss_evals);
    CHECK(r.bytes == adapter_bytes(a.tensors, 2) && r.bytes <= budget);
    CHECK(serialize_adapter(a.tensors, 2).size() == r.bytes);
    check_method_schemes(Method::Alloc, a.tensors, 2);
    for (int64_t t = 0; t < T; ++t)
      CHECK(a.tensors[size_t(t)].scheme == r.candidates[size_t(r.choice[size_t(t)])]);
    // Brute force over 7^T width choices.
    double best = INFINITY;
    for (int code = 0; code < 343; ++code) {
      uint64_t bytes = 12;
      double inc = 0;
      for (int t = 0, k = code; t < T; ++t, k /= 7) {
        bytes += r.candidate_bytes[size_t(t)][size_t(k % 7)];
        inc += r.increase[size_t(t)][size_t(k % 7)];
      }
      if (bytes <= budget) best = std::min(best, inc);
    }
    CHECK_MSG(std::fabs(r.predicted_increase - best) <= 1e-12 * (best + 1e-300),
              "budget " << budget);
    CHECK(std::fabs(r.loss - (r.reference_loss + r.predicted_increase)) <= 1e-9 * r.loss + 1e-15);
    CHECK(r.loss <= prev * (1 + 1e-12));  // more bytes never cost loss here
    prev = r.loss;
  }
  // The tightest budget that allows one upgrade gives it to the heaviest tensor.
  o.byte_budget = 12 + 3 * T + 4 + uint64_t((d + 7) / 8);  // one sign1 record
  const EncodedAdapter one = encode_adapter(Method::Alloc, gains.data(), T, d, o, loss);
  CHECK(one.mixed->choice == std::vector<int>({0, 1, 0}));
}

// Every low-rate encoding decodes the same through decode_gain and the fused
// RMSNorm kernel on every ISA path, bit for bit.
TEST(codec_lowrate_through_kernel_every_isa) {
  Rng rng(8);
  const int64_t n = 3;
  for (int64_t d : {1, 9, 64, 257}) {
    const std::vector<float> g = trained(d, 11 + uint64_t(d), 0.04f);
    std::vector<float> x(size_t(n * d)), w(static_cast<size_t>(d));
    for (float& v : x) v = rng.normal();
    for (float& v : w) v = rng.uniform(0.5f, 1.5f);
    std::vector<int64_t> keep;
    for (int64_t i = 0; i < d; i += 3) keep.push_back(i);
    const std::vector<EncodedGain> encs = {
        encode_delta(3, g.data(), d),     encode_delta(2, g.data(), d),
        encode_sign1(g.data(), d),        encode_kmeans(2, g.data(), d),
        encode_kmeans(4, g.data(), d),    encode_kmeans(8, g.data(), d),
        encode_sparse(g.data(), d, keep), encode_rice(4, g.data(), d),
        encode_rice(3, g.data(), d),      encode_unit(d)};
    for (const EncodedGain& e : encs) {
      const std::vector<float> via = decode(e);
      for (Isa isa : test::every_isa()) {
        norm::RmsNormArgs a;
        a.x = x.data(), a.n = n, a.d = d, a.w_base = w.data(), a.gain = e.view();
        std::vector<float> y1(size_t(n * d)), y2(size_t(n * d));
        norm::rmsnorm_gain_f32(a, y1.data(), Exec{isa, nullptr, 1});
        a.gain = GainView{GainScheme::F32, d, via.data(), size_t(d) * 4, nullptr, 0};
        norm::rmsnorm_gain_f32(a, y2.data(), Exec{isa, nullptr, 1});
        CHECK_MSG(std::memcmp(y1.data(), y2.data(), y1.size() * 4) == 0,
                  scheme_name(e.scheme) << " d=" << d << " " << isa_name(isa));
      }
    }
  }
}

// Format 2: round trip, exact sizes, and a blob whose format is not its
// method's is refused.
TEST(codec_lowrate_format2) {
  const int64_t T = 4, d = 33;
  std::vector<float> gains;
  for (int64_t t = 0; t < T; ++t) {
    const std::vector<float> g = trained(d, 60 + uint64_t(t));
    gains.insert(gains.end(), g.begin(), g.end());
  }
  for (Method m : all_methods()) {
    if (method_needs_loss(m) || adapter_format(m) != 2) continue;
    EncodeOptions o;
    o.byte_budget = 100;
    const EncodedAdapter a = encode_adapter(m, gains.data(), T, d, o);
    CHECK(a.format == 2);
    const std::vector<uint8_t> blob = serialize_adapter(a.tensors, 2);
    CHECK(blob.size() == adapter_bytes(a.tensors, 2));
    uint32_t format = 0;
    const std::vector<EncodedGain> back = parse_adapter(blob.data(), blob.size(), T, d, &format);
    CHECK(format == 2 && serialize_adapter(back, 2) == blob);
    check_method_schemes(m, back, 2);
    CHECK(mentions(thrown_message([&] { check_method_schemes(m, back, 1); }), "format 1"));
    // A format-1 blob of the same records parses, but is not this method's.
    const std::vector<uint8_t> v1 = serialize_adapter(a.tensors, 1);
    parse_adapter(v1.data(), v1.size(), T, d, &format);
    CHECK(format == 1);
    // Truncations are refused with the adapter prefix.
    for (size_t k = 0; k < blob.size(); ++k)
      CHECK(mentions(thrown_message([&] { parse_adapter(blob.data(), k); }), "encoded adapter"));
    // The header's d must match.
    CHECK(mentions(thrown_message([&] { parse_adapter(blob.data(), blob.size(), T, d + 1); }),
                   "d = 33"));
  }
  // Mixed d cannot go in one format-2 blob.
  const std::vector<float> g = trained(8, 1);
  CHECK(mentions(thrown_message([&] {
                   serialize_adapter({encode_unit(8), encode_unit(9)}, 2);
                 }),
                 "tensor 0's"));
  CHECK(mentions(thrown_message([&] { serialize_adapter({encode_unit(8)}, 3); }), "1 or 2"));
}
