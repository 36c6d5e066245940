// Adapter codecs, scheme by scheme: round-trip error bounds with the step read
// from the encoding's own params, the scale definitions, exact nibble layout,
// k-means quality / monotone Lloyd / determinism, edge cases (d = 1, zero
// range, gains exactly 1, huge and small gains, d not a multiple of the block),
// bad input, decoder validation of hand-made views, and decoding through
// norm::decode_gain, the fused RMSNorm kernel and model::evaluate.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "codec/codec.h"
#include "harness.h"
#include "model/eval.h"
#include "model/model.h"
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

uint32_t bits_of(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

// The uniform schemes and their per-gain step, read from the params.
struct Uniform {
  const char* name;
  std::function<EncodedGain(const std::vector<float>&)> encode;
};
std::vector<Uniform> uniform_schemes() {
  std::vector<Uniform> u;
  u.push_back({"int8_per_tensor", [](const std::vector<float>& g) {
                 return encode_int8_per_tensor(g.data(), int64_t(g.size()));
               }});
  for (int64_t b : {1, 7, 32, 100000})
    u.push_back({"int8_group", [b](const std::vector<float>& g) {
                   return encode_int8_group(g.data(), int64_t(g.size()), b);
                 }});
  u.push_back({"int8_asym", [](const std::vector<float>& g) {
                 return encode_int8_asym(g.data(), int64_t(g.size()));
               }});
  u.push_back({"int8_delta", [](const std::vector<float>& g) {
                 return encode_delta(8, g.data(), int64_t(g.size()));
               }});
  u.push_back({"int4_delta", [](const std::vector<float>& g) {
                 return encode_delta(4, g.data(), int64_t(g.size()));
               }});
  return u;
}
double step_of(const EncodedGain& e, int64_t i) {
  if (e.scheme == GainScheme::Int8Group) return e.params[size_t(1 + i / int64_t(e.params[0]))];
  return e.params[0];
}

// Gain vectors that exercise the edges.
std::vector<std::vector<float>> test_vectors(int64_t d, uint64_t seed) {
  Rng rng(seed);
  std::vector<std::vector<float>> v;
  auto gen = [&](auto f) {
    std::vector<float> g(static_cast<size_t>(d));
    for (int64_t i = 0; i < d; ++i) g[size_t(i)] = f(i);
    v.push_back(g);
  };
  gen([&](int64_t) { return 1.0f + 0.02f * rng.normal(); });  // a trained adapter
  gen([&](int64_t i) { return i % 17 == 3 ? 1.4f : 1.0f + 0.01f * rng.normal(); });  // outliers
  gen([&](int64_t) { return rng.normal(); });                                        // mixed signs
  gen([&](int64_t) { return 1.0f; });                                                // untouched
  gen([&](int64_t) { return 0.75f; });                                               // zero range
  gen([&](int64_t) { return -3.0f; });
  gen([&](int64_t) { return 0.0f; });
  gen([&](int64_t) { return 1e18f * (1.0f + rng.normal()); });                 // huge
  gen([&](int64_t) { return 1e-18f * (1.0f + rng.normal()); });                // small
  gen([&](int64_t i) { return i % 2 ? 1.0f : 1.0f + 1e-7f * float(i % 5); });  // tiny range near 1
  return v;
}

const int64_t kDims[] = {1, 2, 3, 7, 31, 32, 33, 255, 256, 257, 1000};

}  // namespace

TEST(codec_registry_and_names) {
  const GainScheme all[] = {GainScheme::F32,       GainScheme::F16,      GainScheme::Int8PerTensor,
                            GainScheme::Int8Group, GainScheme::Int8Asym, GainScheme::Int8Delta,
                            GainScheme::Int4Delta, GainScheme::KMeans16, GainScheme::KMeans256};
  const char* names[] = {"raw_fp32",   "raw_fp16",   "int8_per_tensor", "int8_group", "int8_asym",
                         "int8_delta", "int4_delta", "kmeans16",        "kmeans256"};
  for (size_t i = 0; i < 9; ++i) {
    CHECK(uint32_t(all[i]) == i);  // ids are part of the record format
    const norm::GainDecoder* dec = norm::find_gain_decoder(all[i]);
    CHECK(dec != nullptr && dec->scheme == all[i] && std::string(dec->name) == names[i]);
    CHECK(std::string(scheme_name(all[i])) == names[i]);
  }
  CHECK(norm::find_gain_decoder(static_cast<GainScheme>(18)) == nullptr);
  CHECK_THROWS(scheme_name(static_cast<GainScheme>(18)));
  // The unknown-scheme message lists the new schemes too.
  const float one = 1;
  const std::string msg = thrown_message([&] {
    norm::validate_gain(GainView{static_cast<GainScheme>(42), 1, &one, 4, nullptr, 0});
  });
  CHECK_MSG(mentions(msg, "kmeans256 (8)"), msg);

  CHECK(all_methods().size() == 21);  // the low-rate ones: codec_lowrate_test.cpp
  for (Method m : all_methods()) CHECK(method_from_name(method_name(m)) == m);
  CHECK(std::string(method_name(Method::Int8PerTensor)) == "int8_per_tensor");
  CHECK(std::string(method_name(Method::RawF16)) == "raw_fp16");
  const std::string bad = thrown_message([] { method_from_name("int3"); });
  CHECK_MSG(mentions(bad, "'int3'") && mentions(bad, "int4_calibrated"), bad);
  CHECK(method_needs_loss(Method::Mixed) && method_needs_loss(Method::Int4Calibrated));
  CHECK(!method_needs_loss(Method::KMeans16));
}

// Every uniform scheme: |g - g'| <= step/2 with the step taken from the
// encoding, codes inside the encoder's range, and the scale definition.
TEST(codec_uniform_round_trip_bounds) {
  int checked = 0;
  for (const Uniform& u : uniform_schemes()) {
    for (int64_t d : kDims) {
      for (const std::vector<float>& g : test_vectors(d, 7 + uint64_t(d))) {
        const EncodedGain e = u.encode(g);
        CHECK(std::string(scheme_name(e.scheme)) == u.name);
        const std::vector<float> back = decode(e);
        double worst = 0;
        for (int64_t i = 0; i < d; ++i) {
          const double gi = g[size_t(i)], err = std::fabs(gi - double(back[size_t(i)]));
          const double step = step_of(e, i);
          // step/2, plus the float roundings of the decode (q * scale, and
          // the + 1 of the delta schemes).
          const double tol = step / 2 * (1 + 0x1p-20) + 0x1p-23 * (std::fabs(gi) + 1.0) + 1e-44;
          if (!(err <= tol)) {
            CHECK_MSG(err <= tol, u.name << " d=" << d << " i=" << i << " g=" << gi
                                         << " back=" << back[size_t(i)] << " step=" << step);
            break;
          }
          worst = std::max(worst, err);
          ++checked;
        }
        // Gains exactly 1 stay exactly 1 under the delta schemes.
        if (e.scheme == GainScheme::Int8Delta || e.scheme == GainScheme::Int4Delta)
          for (int64_t i = 0; i < d; ++i)
            if (g[size_t(i)] == 1.0f) CHECK(back[size_t(i)] == 1.0f);
        // Zero range: the asymmetric scheme is exact.
        if (e.scheme == GainScheme::Int8Asym &&
            std::all_of(g.begin(), g.end(), [&](float x) { return x == g[0]; }))
          for (int64_t i = 0; i < d; ++i) CHECK(back[size_t(i)] == g[size_t(i)]);
      }
    }
  }
  CHECK(checked > 100000);
}

// The scale each scheme stores is its definition: the smallest float whose
// levels cover the range (so the bound above is not slack).
TEST(codec_scale_definitions) {
  Rng rng(3);
  for (int64_t d : {1, 5, 256, 257}) {
    std::vector<float> g(static_cast<size_t>(d));
    for (float& x : g) x = 1.0f + 0.03f * rng.normal();
    double mabs = 0, mdelta = 0, lo = g[0], hi = g[0];
    for (float x : g) {
      mabs = std::max(mabs, std::fabs(double(x)));
      mdelta = std::max(mdelta, std::fabs(double(x) - 1.0));
      lo = std::min(lo, double(x));
      hi = std::max(hi, double(x));
    }
    auto smallest_cover = [](float s, double n, double a) {
      return double(s) * n >= a && double(std::nextafter(s, 0.0f)) * n < a;
    };
    const EncodedGain pt = encode_int8_per_tensor(g.data(), d);
    CHECK(pt.params.size() == 1 && smallest_cover(pt.params[0], 127, mabs));
    const EncodedGain d8 = encode_delta(8, g.data(), d);
    if (d > 1) CHECK(smallest_cover(d8.params[0], 127, mdelta));
    const EncodedGain d4 = encode_delta(4, g.data(), d);
    if (d > 1) CHECK(smallest_cover(d4.params[0], 7, mdelta));
    const EncodedGain d4c = encode_delta(4, g.data(), d, 0.5);
    if (d > 1) CHECK(smallest_cover(d4c.params[0], 7, 0.5 * mdelta));
    const EncodedGain as = encode_int8_asym(g.data(), d);
    if (d > 1) {
      CHECK(smallest_cover(as.params[0], 255, hi - lo));
      CHECK(as.params[1] == float(std::round(-lo / as.params[0])));
    }
    // The asymmetric and delta steps are far finer than the bet's on gains near 1.
    if (d >= 256) {
      CHECK(as.params[0] < pt.params[0] / 4);
      CHECK(d8.params[0] < pt.params[0] / 4);
    }
    // Codes stay in the encoders' ranges.
    for (uint8_t b : pt.payload) CHECK(int8_t(b) >= -127);
    for (uint8_t b : d8.payload) CHECK(int8_t(b) >= -127);
    for (int64_t i = 0; i < d; ++i) {
      const unsigned nib = (d4.payload[size_t(i / 2)] >> ((i & 1) * 4)) & 0xf;
      CHECK(nib != 8);  // -8 is never produced
    }
  }
  // Group blocks: one scale per block, each the per-tensor rule on its block;
  // a block size above d is stored as d.
  std::vector<float> g(70);
  for (size_t i = 0; i < g.size(); ++i) g[i] = 1.0f + 0.001f * float(i);
  const EncodedGain e = encode_int8_group(g.data(), 70, 32);
  CHECK(e.params.size() == 1 + 3 && e.params[0] == 32.0f);
  for (int b = 0; b < 3; ++b) {
    const int64_t i0 = b * 32, i1 = std::min<int64_t>(70, i0 + 32);
    const EncodedGain one = encode_int8_per_tensor(g.data() + i0, i1 - i0);
    CHECK(e.params[size_t(1 + b)] == one.params[0]);
    CHECK(std::equal(one.payload.begin(), one.payload.end(), e.payload.begin() + i0));
  }
  const EncodedGain whole = encode_int8_group(g.data(), 70, 1000);
  CHECK(whole.params.size() == 2 && whole.params[0] == 70.0f);
}

// The 4-bit layout, byte for byte.
TEST(codec_int4_nibble_layout) {
  const float g[3] = {1.0f, 1.7f, 0.3f};
  const EncodedGain e = encode_delta(4, g, 3);
  // m = 0.7 (in double from the floats), scale = m / 7 rounded up: q = 0, 7, -7.
  CHECK(e.payload.size() == 2);
  CHECK(e.payload[0] == 0x70);  // gain 0 low nibble 0, gain 1 high nibble 7
  CHECK(e.payload[1] == 0x09);  // gain 2 low nibble -7 = 0x9, padding 0
  const std::vector<float> back = decode(e);
  CHECK(back[0] == 1.0f);
  CHECK(back[1] == 1.0f + 7.0f * e.params[0] && back[2] == 1.0f + -7.0f * e.params[0]);
  // Every nibble decodes as two's complement, -8 included.
  const float scale = 0.125f;
  for (unsigned n = 0; n < 16; ++n) {
    const uint8_t p[1] = {uint8_t(n)};
    float out;
    norm::decode_gain(GainView{GainScheme::Int4Delta, 1, p, 1, &scale, 1}, &out);
    const int q = n < 8 ? int(n) : int(n) - 16;
    CHECK_MSG(out == 1.0f + float(q) * scale, "nibble " << n);
  }
  // Decoding is the stated formula, bit for bit, for int8 delta too.
  const int8_t q8[4] = {-128, -1, 0, 127};
  float out8[4];
  const float s8 = 0.0013f;
  norm::decode_gain(GainView{GainScheme::Int8Delta, 4, q8, 4, &s8, 1}, out8);
  for (int i = 0; i < 4; ++i) CHECK(bits_of(out8[i]) == bits_of(1.0f + float(q8[i]) * s8));
  // Asymmetric: (q - z) * scale.
  const uint8_t qa[3] = {0, 17, 255};
  const float pa[2] = {0.01f, -90.0f};
  float outa[3];
  norm::decode_gain(GainView{GainScheme::Int8Asym, 3, qa, 3, pa, 2}, outa);
  for (int i = 0; i < 3; ++i) CHECK(bits_of(outa[i]) == bits_of((float(qa[i]) + 90.0f) * 0.01f));
}

TEST(codec_baselines) {
  Rng rng(5);
  std::vector<float> g(33);
  for (float& x : g) x = 1.0f + 0.05f * rng.normal();
  g[4] = -0.0f;
  const EncodedGain f = encode_f32(g.data(), 33);
  const std::vector<float> bf = decode(f);
  for (size_t i = 0; i < g.size(); ++i) CHECK(bits_of(bf[i]) == bits_of(g[i]));
  const EncodedGain h = encode_f16(g.data(), 33);
  const std::vector<float> bh = decode(h);
  for (size_t i = 0; i < g.size(); ++i) CHECK(bh[i] == norm::f16_to_f32(norm::f32_to_f16(g[i])));
  g[7] = 70000.0f;  // beyond binary16
  const std::string msg = thrown_message([&] { encode_f16(g.data(), 33); });
  CHECK_MSG(mentions(msg, "gain[7]") && mentions(msg, "65520"), msg);
  encode_f32(g.data(), 33);  // f32 takes any finite gain
  g[7] = 1e30f;
  encode_f32(g.data(), 33);
}

TEST(codec_bad_input_rejected) {
  std::vector<std::function<EncodedGain(const float*, int64_t)>> encoders = {
      [](const float* g, int64_t d) { return encode_f32(g, d); },
      [](const float* g, int64_t d) { return encode_f16(g, d); },
      [](const float* g, int64_t d) { return encode_int8_per_tensor(g, d); },
      [](const float* g, int64_t d) { return encode_int8_group(g, d, 4); },
      [](const float* g, int64_t d) { return encode_int8_asym(g, d); },
      [](const float* g, int64_t d) { return encode_delta(8, g, d); },
      [](const float* g, int64_t d) { return encode_delta(4, g, d); },
      [](const float* g, int64_t d) { return encode_kmeans(16, g, d); },
      [](const float* g, int64_t d) { return encode_kmeans(256, g, d); },
  };
  for (size_t k = 0; k < encoders.size(); ++k) {
    for (float bad : {NAN, INFINITY, -INFINITY}) {
      for (int64_t at : {0, 5, 9}) {
        std::vector<float> g(10, 1.0f);
        g[size_t(at)] = bad;
        const std::string msg = thrown_message([&] { encoders[k](g.data(), 10); });
        CHECK_MSG(mentions(msg, "gain[" + std::to_string(at) + "]") && mentions(msg, "finite"),
                  "encoder " << k << ": " << msg);
      }
    }
    std::vector<float> g(4, 1.0f);
    CHECK(mentions(thrown_message([&] { encoders[k](nullptr, 4); }), "null"));
    CHECK(mentions(thrown_message([&] { encoders[k](g.data(), 0); }), "expected 0 < d"));
    CHECK(mentions(thrown_message([&] { encoders[k](g.data(), -1); }), "expected 0 < d"));
    CHECK(mentions(thrown_message([&] { encoders[k](g.data(), kMaxD + 1); }), "expected 0 < d"));
    if (k >= 2) {  // the quantisers bound |g|
      g[2] = 3e19f;
      const std::string msg = thrown_message([&] { encoders[k](g.data(), 4); });
      CHECK_MSG(mentions(msg, "gain[2]") && mentions(msg, "2^64"), msg);
      g[2] = -1.8e19f;  // just below 2^64 is fine
      encoders[k](g.data(), 4);
    }
  }
  std::vector<float> g(8, 1.1f);
  CHECK(mentions(thrown_message([&] { encode_int8_group(g.data(), 8, 0); }), "block size 0"));
  CHECK(mentions(thrown_message([&] { encode_int8_group(g.data(), 8, kMaxD + 1); }), "block size"));
  for (double clip : {0.0, -0.5, 1.5, double(NAN)})
    CHECK(mentions(thrown_message([&] { encode_delta(4, g.data(), 8, clip); }), "0 < clip <= 1"));
  CHECK(mentions(thrown_message([&] { encode_delta(5, g.data(), 8); }), "expected 2, 3, 4 or 8"));
  CHECK(mentions(thrown_message([&] { encode_kmeans(5, g.data(), 8); }),
                 "expected 2, 4, 8, 16 or 256"));
  CHECK(mentions(thrown_message([&] { encode_kmeans(16, g.data(), 8, 0); }), "max_iters"));
  // Adapter level: shapes, and the searches need a loss.
  CHECK(mentions(thrown_message([&] { encode_adapter(Method::Int8Delta, g.data(), 0, 8); }),
                 "n_tensors"));
  CHECK(
      mentions(thrown_message([&] { encode_adapter(Method::Int8Delta, nullptr, 1, 8); }), "null"));
  CHECK(mentions(thrown_message([&] { encode_adapter(Method::Mixed, g.data(), 1, 8); }),
                 "loss callback"));
  CHECK(mentions(thrown_message([&] { encode_adapter(Method::Int4Calibrated, g.data(), 1, 8); }),
                 "loss callback"));
  g[6] = NAN;
  const std::string msg =
      thrown_message([&] { encode_adapter(Method::Int4Delta, g.data(), 2, 4); });
  CHECK_MSG(mentions(msg, "tensor 1") && mentions(msg, "gain[2]"), msg);
}

// Hand-made views: the decoders' layout checks and messages.
TEST(codec_decoder_validation) {
  const int8_t q[5] = {1, 2, 3, 4, 5};
  auto msg = [](const GainView& v) {
    return thrown_message([&] {
      float out[64];
      norm::decode_gain(v, out);
    });
  };
  // int8_group: block size must be an integer in [1, d] and the count must match.
  {
    const float ok[] = {2, 0.1f, 0.1f, 0.1f};
    CHECK(msg(GainView{GainScheme::Int8Group, 5, q, 5, ok, 4}) == "<no exception>");
    const float frac[] = {2.5f, 0.1f, 0.1f};
    const float zero[] = {0, 0.1f};
    const float big[] = {6, 0.1f};
    const float neg[] = {-1, 0.1f};
    for (const float* p : {frac, zero, big, neg}) {
      const std::string m = msg(GainView{GainScheme::Int8Group, 5, q, 5, p, p == frac ? 3u : 2u});
      CHECK_MSG(mentions(m, "block size B"), m);
    }
    CHECK(mentions(msg(GainView{GainScheme::Int8Group, 5, q, 5, ok, 3}), "1 + ceil(d / B)"));
    CHECK(mentions(msg(GainView{GainScheme::Int8Group, 5, q, 4, ok, 4}), "expected 5"));
    const float inf_scale[] = {2, 0.1f, INFINITY, 0.1f};
    CHECK(mentions(msg(GainView{GainScheme::Int8Group, 5, q, 5, inf_scale, 4}),
                   "params[2] is not finite"));
  }
  // int8_asym: an integer zero point within 2^23.
  {
    const float ok[] = {0.01f, -100};
    CHECK(msg(GainView{GainScheme::Int8Asym, 5, q, 5, ok, 2}) == "<no exception>");
    const float frac[] = {0.01f, 0.5f};
    const float far[] = {0.01f, 16777216.0f};
    CHECK(mentions(msg(GainView{GainScheme::Int8Asym, 5, q, 5, frac, 2}), "zero point"));
    CHECK(mentions(msg(GainView{GainScheme::Int8Asym, 5, q, 5, far, 2}), "|z| <= 2^23"));
    CHECK(mentions(msg(GainView{GainScheme::Int8Asym, 5, q, 5, ok, 1}), "expected 2"));
  }
  // Delta: one param; int4 payload ceil(d/2); padding nibble zero.
  {
    const float s = 0.01f;
    CHECK(mentions(msg(GainView{GainScheme::Int8Delta, 5, q, 5, &s, 0}), "expected 1"));
    const uint8_t p4[3] = {0x21, 0x43, 0x05};
    CHECK(msg(GainView{GainScheme::Int4Delta, 5, p4, 3, &s, 1}) == "<no exception>");
    CHECK(mentions(msg(GainView{GainScheme::Int4Delta, 5, p4, 2, &s, 1}), "expected 3"));
    const uint8_t pad[3] = {0x21, 0x43, 0x15};
    const std::string m = msg(GainView{GainScheme::Int4Delta, 5, pad, 3, &s, 1});
    CHECK_MSG(mentions(m, "padding nibble") && mentions(m, "int4_delta"), m);
  }
  // k-means: 1..K strictly increasing centroids, every index < k.
  {
    const float c3[] = {0.9f, 1.0f, 1.1f};
    const uint8_t idx[3] = {0x21, 0x10, 0x02};  // indices 1 2 0 1 2
    CHECK(msg(GainView{GainScheme::KMeans16, 5, idx, 3, c3, 3}) == "<no exception>");
    const uint8_t bad_idx[3] = {0x21, 0x13, 0x02};  // gain[2] has index 3
    const std::string m = msg(GainView{GainScheme::KMeans16, 5, bad_idx, 3, c3, 3});
    CHECK_MSG(mentions(m, "gain[2]") && mentions(m, "codebook index 3") && mentions(m, "k = 3"), m);
    const uint8_t pad[3] = {0x21, 0x10, 0x12};
    CHECK(mentions(msg(GainView{GainScheme::KMeans16, 5, pad, 3, c3, 3}), "padding nibble"));
    const float unsorted[] = {0.9f, 1.1f, 1.0f};
    const float dup[] = {0.9f, 0.9f, 1.0f};
    CHECK(mentions(msg(GainView{GainScheme::KMeans16, 5, idx, 3, unsorted, 3}),
                   "strictly increasing"));
    CHECK(mentions(msg(GainView{GainScheme::KMeans16, 5, idx, 3, dup, 3}), "strictly increasing"));
    CHECK(mentions(msg(GainView{GainScheme::KMeans16, 5, idx, 3, c3, 0}), "1..16"));
    std::vector<float> c17(17);
    for (size_t i = 0; i < 17; ++i) c17[i] = float(i);
    CHECK(mentions(msg(GainView{GainScheme::KMeans16, 5, idx, 3, c17.data(), 17}), "1..16"));
    const uint8_t i8[5] = {0, 1, 2, 2, 3};
    const std::string m8 = msg(GainView{GainScheme::KMeans256, 5, i8, 5, c3, 3});
    CHECK_MSG(mentions(m8, "gain[4]") && mentions(m8, "kmeans256"), m8);
    CHECK(mentions(msg(GainView{GainScheme::KMeans256, 5, i8, 3, c3, 3}), "expected 5"));
  }
}

// k-means: nearest-centroid coding, quality against the uniform schemes with
// as many levels on clustered data, monotone Lloyd, determinism.
TEST(codec_kmeans) {
  Rng rng(17);
  // Clustered gains: 6 tight clusters at irregular places.
  const float centres[6] = {0.82f, 0.97f, 1.0f, 1.013f, 1.05f, 1.31f};
  for (int64_t d : {64, 256, 2304}) {
    std::vector<float> g(static_cast<size_t>(d));
    for (float& x : g) x = centres[rng.below(6)] + 0.0005f * rng.normal();
    auto mse = [&](const EncodedGain& e) {
      const std::vector<float> b = decode(e);
      double s = 0;
      for (int64_t i = 0; i < d; ++i)
        s += (double(g[size_t(i)]) - b[size_t(i)]) * (double(g[size_t(i)]) - b[size_t(i)]);
      return s / double(d);
    };
    const EncodedGain k16 = encode_kmeans(16, g.data(), d), k256 = encode_kmeans(256, g.data(), d);
    // 16 levels vs int4 (15 used levels) and 256 vs int8 (255 used levels).
    const double e16 = mse(k16), e4 = mse(encode_delta(4, g.data(), d)),
                 e4a = mse(encode_delta(4, g.data(), d, 0.5));
    const double e256 = mse(k256), e8 = mse(encode_delta(8, g.data(), d)),
                 e8a = mse(encode_int8_asym(g.data(), d));
    CHECK_MSG(e16 <= e4 && e16 <= e4a,
              "d=" << d << " kmeans16 " << e16 << " int4 " << e4 << " / " << e4a);
    CHECK_MSG(e256 <= e8 && e256 <= e8a,
              "d=" << d << " kmeans256 " << e256 << " int8 " << e8 << " / " << e8a);
    CHECK(e16 < e4 / 10);  // clustered data is where a codebook pays
    // Each gain is coded to its nearest stored centroid.
    for (const EncodedGain* e : {&k16, &k256}) {
      CHECK(e->params.size() <= (e == &k16 ? 16u : 256u));
      const std::vector<float> b = decode(*e);
      for (int64_t i = 0; i < d; ++i) {
        double best = INFINITY;
        for (float c : e->params) best = std::min(best, std::fabs(double(g[size_t(i)]) - c));
        CHECK(std::fabs(double(g[size_t(i)]) - b[size_t(i)]) == best);
      }
    }
  }
  // Few distinct values: the codebook is the set of values, exact, k = distinct.
  {
    std::vector<float> g = {1.0f, 0.9f, 1.0f, 1.2f, 0.9f, 1.0f, 1.0f};
    for (int K : {16, 256}) {
      const EncodedGain e = encode_kmeans(K, g.data(), int64_t(g.size()));
      CHECK(e.params == std::vector<float>({0.9f, 1.0f, 1.2f}));
      CHECK(decode(e) == g);
    }
    const float one = 1.0f;
    const EncodedGain e1 = encode_kmeans(16, &one, 1);
    CHECK(e1.params.size() == 1 && e1.params[0] == 1.0f && e1.payload.size() == 1 &&
          e1.payload[0] == 0);
  }
  // Lloyd: the distortion never rises, it falls overall, and the run is
  // deterministic and independent of the input order.
  for (int K : {16, 256}) {
    std::vector<float> g(2304);
    for (float& x : g) x = 1.0f + 0.02f * rng.normal() + (rng.uniform() < 0.1 ? 0.1f : 0.0f);
    KMeansTrace tr;
    const EncodedGain e = encode_kmeans(K, g.data(), 2304, 1000, &tr);
    CHECK(tr.iterations >= 2 && tr.distortion.size() == size_t(tr.iterations) + 1);
    for (size_t i = 1; i < tr.distortion.size(); ++i)
      CHECK_MSG(tr.distortion[i] <= tr.distortion[i - 1] * (1 + 1e-12),
                "K=" << K << " iteration " << i << ": " << tr.distortion[i - 1] << " -> "
                     << tr.distortion[i]);
    CHECK(tr.distortion.back() < tr.distortion.front());
    CHECK(tr.converged);
    KMeansTrace tr2;
    const EncodedGain again = encode_kmeans(K, g.data(), 2304, 1000, &tr2);
    CHECK(again.params == e.params && again.payload == e.payload &&
          tr2.distortion == tr.distortion);
    std::vector<float> rev(g.rbegin(), g.rend());
    CHECK(encode_kmeans(K, rev.data(), 2304, 1000).params == e.params);
    // The iteration cap is honoured.
    KMeansTrace t1;
    encode_kmeans(K, g.data(), 2304, 1, &t1);
    CHECK(t1.iterations == 1 && t1.distortion.size() == 2);
  }
}

// Every scheme decodes the same through decode_gain, the registry's decoder
// and the fused RMSNorm kernel (bit for bit, every ISA), and through
// model::evaluate as an adapter.
TEST(codec_decode_through_kernel_and_evaluate) {
  Rng rng(23);
  const int64_t n = 5;
  for (int64_t d : {1, 17, 64, 257}) {
    std::vector<float> g(static_cast<size_t>(d)), x(size_t(n * d)), w(static_cast<size_t>(d));
    for (float& v : g) v = 1.0f + 0.03f * rng.normal();
    for (float& v : x) v = rng.normal();
    for (float& v : w) v = rng.uniform(0.5f, 1.5f);
    std::vector<EncodedGain> encs;
    EncodeOptions budget;
    budget.byte_budget = 64;  // sparse_delta
    for (Method m : all_methods())
      if (!method_needs_loss(m))
        encs.push_back(encode_adapter(m, g.data(), 1, d, budget).tensors[0]);
    for (const EncodedGain& e : encs) {
      const std::vector<float> via = decode(e);
      std::vector<float> direct(static_cast<size_t>(d));
      norm::find_gain_decoder(e.scheme)->decode(e.view(), direct.data());
      CHECK(std::memcmp(via.data(), direct.data(), size_t(d) * 4) == 0);
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
  // A whole adapter through evaluate: the encoded views give the NLLs of
  // their decoded f32 gains, and different encodings differ.
  model::ModelConfig c;
  c.vocab = 13, c.d_model = 16, c.n_layers = 2, c.n_heads = 2, c.d_ff = 24, c.context = 16;
  model::Model m(c, 5);
  m.quantize(Exec{default_isa(), nullptr, 1});
  std::vector<float> gains(size_t(c.n_gains()));
  for (float& v : gains) v = 1.0f + 0.3f * rng.normal();
  std::vector<int32_t> tok(40);
  for (int32_t& t : tok) t = int32_t(rng.below(c.vocab));
  const Exec ex{default_isa(), nullptr, 1};
  std::vector<double> seen;
  for (Method meth : all_methods()) {
    if (method_needs_loss(meth)) continue;
    EncodeOptions budget;
    budget.byte_budget = 256;  // sparse_delta
    const EncodedAdapter ad = encode_adapter(meth, gains.data(), c.n_norms(), c.d_model, budget);
    const std::vector<GainView> views = ad.views();
    std::vector<float> dec(gains.size());
    for (size_t t = 0; t < views.size(); ++t)
      norm::decode_gain(views[t], dec.data() + t * size_t(c.d_model));
    const std::vector<GainView> fv = model::f32_gain_views(c, dec.data());
    const model::EvalResult a =
        model::evaluate(m, views.data(), int64_t(views.size()), tok.data(), 40, 80, {}, ex);
    const model::EvalResult b =
        model::evaluate(m, fv.data(), int64_t(fv.size()), tok.data(), 40, 80, {}, ex);
    CHECK_MSG(a.nll == b.nll, method_name(meth));
    seen.push_back(a.total_nll);
  }
  std::sort(seen.begin(), seen.end());
  CHECK(std::unique(seen.begin(), seen.end()) - seen.begin() >= 5);
}

TEST(codec_named_params_follow_the_record_layout) {
  EncodedGain e;
  e.d = 4;
  e.scheme = GainScheme::Int8Group;
  e.params = {2.0f, 0.5f, 0.25f};
  auto n = named_params(e);
  CHECK(n.size() == 2 && n[0].first == "blockSize" && n[0].second == std::vector<float>{2.0f});
  CHECK(n[1].first == "scale" && (n[1].second == std::vector<float>{0.5f, 0.25f}));
  e.scheme = GainScheme::Int8Asym;
  e.params = {0.1f, 3.0f};
  n = named_params(e);
  CHECK(n.size() == 2 && n[0].first == "scale" && n[1].first == "zeroPoint" &&
        n[1].second[0] == 3.0f);
  e.scheme = GainScheme::KMeans16;
  e.params = {0.9f, 1.1f};
  n = named_params(e);
  CHECK(n.size() == 1 && n[0].first == "centroids" && n[0].second.size() == 2);
  e.scheme = GainScheme::F16;
  e.params = {};
  CHECK(named_params(e).empty());
}
