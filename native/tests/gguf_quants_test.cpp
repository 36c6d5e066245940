// The GGUF block codecs (io/gguf_quants.h): fp16/bf16 rounding, byte patterns
// of TQ1_0 / TQ2_0 / Q8_0 blocks derived by hand from ggml's reference
// layout, and round trips.
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "harness.h"
#include "io/gguf_quants.h"
#include "norm/gain_codec.h"

namespace ternorm::test {
namespace {

using gguf::GgmlType;

uint16_t rd16(const uint8_t* p) { return uint16_t(p[0] | p[1] << 8); }

TEST(gguf_fp16_known_values) {
  CHECK(norm::f32_to_f16(1.0f) == 0x3C00);
  CHECK(norm::f32_to_f16(-2.0f) == 0xC000);
  CHECK(norm::f32_to_f16(0.0f) == 0x0000);
  CHECK(norm::f32_to_f16(-0.0f) == 0x8000);
  CHECK(norm::f32_to_f16(65504.0f) == 0x7BFF);               // largest finite
  CHECK(norm::f32_to_f16(65519.996f) == 0x7BFF);             // below the midpoint to inf
  CHECK(norm::f32_to_f16(65520.0f) == 0x7C00);               // the midpoint: ties to even = inf
  CHECK(norm::f32_to_f16(std::ldexp(1.0f, -14)) == 0x0400);  // smallest normal
  CHECK(norm::f32_to_f16(std::ldexp(1.0f, -24)) == 0x0001);  // smallest subnormal
  CHECK(norm::f32_to_f16(std::ldexp(1.0f, -25)) == 0x0000);  // tie between 0 and 2^-24: even
  CHECK(norm::f32_to_f16(std::ldexp(1.5f, -25)) == 0x0001);
  CHECK(norm::f32_to_f16(std::ldexp(3.0f, -25)) == 0x0002);  // 1.5 units: tie, to even 2
  // 1 + 2^-11 is the midpoint of 1 and 1 + 2^-10: to even (1); 1 + 3*2^-11 to 1 + 2^-9.
  CHECK(norm::f32_to_f16(1.0f + std::ldexp(1.0f, -11)) == 0x3C00);
  CHECK(norm::f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3C02);
  CHECK(norm::f32_to_f16(0.1f) == 0x2E66);
  CHECK(norm::f32_to_f16(std::numeric_limits<float>::infinity()) == 0x7C00);
  const uint16_t nan = norm::f32_to_f16(std::numeric_limits<float>::quiet_NaN());
  CHECK((nan & 0x7C00) == 0x7C00 && (nan & 0x03FF) != 0);
  CHECK(norm::f16_to_f32(0x3555) == 0.333251953125f);
  CHECK(norm::f16_to_f32(0x0001) == std::ldexp(1.0f, -24));
}

TEST(gguf_fp16_every_value_round_trips_and_rounding_is_nearest_even) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = norm::f16_to_f32(uint16_t(h));
    if (std::isnan(f)) continue;
    CHECK_MSG(norm::f32_to_f16(f) == h, "fp16 " << h);
  }
  // Random floats across the fp16 range: the result is a nearest fp16, and
  // on a tie the even one.
  Rng rng(0xF16);
  for (int i = 0; i < 200000; ++i) {
    const float x = std::ldexp(rng.uniform(-1.0f, 1.0f), int(rng.below(42)) - 26);
    const uint16_t h = norm::f32_to_f16(x);
    const double got = norm::f16_to_f32(h);
    const uint16_t mag = h & 0x7FFF;
    const double up = norm::f16_to_f32(uint16_t((h & 0x8000) | (mag + 1)));
    const double down = mag == 0 ? -up : norm::f16_to_f32(uint16_t((h & 0x8000) | (mag - 1)));
    const double e = std::fabs(double(x) - got);
    CHECK_MSG(e <= std::fabs(double(x) - up) && e <= std::fabs(double(x) - down), "x = " << x);
    if (e == std::fabs(double(x) - up) || e == std::fabs(double(x) - down))
      CHECK_MSG((h & 1) == 0, "tie x = " << x);
  }
}

TEST(gguf_bf16_rounding) {
  CHECK(gguf::fp32_to_bf16(1.0f) == 0x3F80);
  float tie_even, tie_odd;
  const uint32_t a = 0x3F808000u, b = 0x3F818000u;  // exactly halfway, low half 0x8000
  std::memcpy(&tie_even, &a, 4);
  std::memcpy(&tie_odd, &b, 4);
  CHECK(gguf::fp32_to_bf16(tie_even) == 0x3F80);
  CHECK(gguf::fp32_to_bf16(tie_odd) == 0x3F82);
  CHECK(gguf::bf16_to_fp32(0xC040) == -3.0f);
  const uint16_t nan = gguf::fp32_to_bf16(std::numeric_limits<float>::quiet_NaN());
  CHECK(std::isnan(gguf::bf16_to_fp32(nan)));
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = gguf::bf16_to_fp32(uint16_t(h));
    if (!std::isnan(f)) CHECK(gguf::fp32_to_bf16(f) == h);
  }
}

// A block of zero trits with a few set, the fp16 scale 1.0.
std::vector<int8_t> sparse_block(std::initializer_list<std::pair<int, int>> set) {
  std::vector<int8_t> t(256, 0);
  for (const auto& [i, v] : set) t[size_t(i)] = int8_t(v);
  return t;
}

TEST(gguf_tq2_0_known_bytes) {
  // Byte 32c + m, bit pair n holds value 128c + 32n + m as trit + 1. Zero
  // trits are code 1 in every pair: 0b01010101 = 0x55.
  //   value 0 = +1:   byte 0, pair 0 -> code 2:        0x55 - 1 + 2 = 0x56
  //   value 32 = -1:  byte 0, pair 1 -> code 0:        0x56 - 0x04  = 0x52
  //   value 128 = +1: byte 32, pair 0:                                0x56
  //   value 255 = -1: c=1, n=3, m=31 -> byte 63, pair 3 -> 0x55 - 0x40 = 0x15
  const std::vector<int8_t> t = sparse_block({{0, 1}, {32, -1}, {128, 1}, {255, -1}});
  const uint16_t d = 0x3C00;
  uint8_t out[gguf::kTq2Bytes];
  gguf::encode_ternary(GgmlType::TQ2_0, t.data(), &d, 256, out);
  for (int i = 0; i < 64; ++i) {
    const uint8_t want = i == 0 ? 0x52 : i == 32 ? 0x56 : i == 63 ? 0x15 : 0x55;
    CHECK_MSG(out[i] == want, "byte " << i << " = " << int(out[i]));
  }
  CHECK(out[64] == 0x00 && out[65] == 0x3C);
  std::vector<int8_t> back(256);
  uint16_t dd = 0;
  CHECK(gguf::decode_ternary(GgmlType::TQ2_0, out, 256, back.data(), &dd, nullptr));
  CHECK(back == t && dd == d);
  // Code 3 is not a trit: refused with its index (value 64 + 5 = byte 5, pair 2).
  out[5] = uint8_t(out[5] | 0x30);
  int64_t bad = -1;
  CHECK(!gguf::decode_ternary(GgmlType::TQ2_0, out, 256, back.data(), &dd, &bad));
  CHECK(bad == 69);
}

TEST(gguf_tq1_0_known_bytes) {
  // qs[m] holds values m + 32k, qs[32+m] values 160 + m + 16k, qh[j] values
  // 240 + j + 4k, as base-3 digits trit + 1, k = 0 most significant, then
  // byte = ceil(v * 256 / 243).
  //   all zero:            v = 81+27+9+3+1 = 121 -> ceil(30976/243) = 128
  //   qh, all zero:        v = 81+27+9+3 (fifth digit 0) = 120 -> ceil(30720/243) = 127
  //   value 0 = +1, value 32 = -1 (qs[0]):  v = 162 + 0 + 9 + 3 + 1 = 175 -> ceil(44800/243) = 185
  //   value 160 = +1 (qs[32], digit 0):     v = 162+27+9+3+1 = 202 -> ceil(51712/243) = 213
  //   value 240 = +1 (qh[0], digit 0):      v = 162+27+9+3 = 201 -> ceil(51456/243) = 212
  //   value 255 = -1 (qh[3], digit 3):      v = 81+27+9+0 = 117 -> ceil(29952/243) = 124
  const std::vector<int8_t> t = sparse_block({{0, 1}, {32, -1}, {160, 1}, {240, 1}, {255, -1}});
  const uint16_t d = 0x2E66;
  uint8_t out[gguf::kTq1Bytes];
  gguf::encode_ternary(GgmlType::TQ1_0, t.data(), &d, 256, out);
  for (int i = 0; i < 52; ++i) {
    const int want = i == 0    ? 185
                     : i == 32 ? 213
                     : i == 48 ? 212
                     : i == 51 ? 124
                     : i >= 48 ? 127
                               : 128;
    CHECK_MSG(out[i] == want, "byte " << i << " = " << int(out[i]) << ", expected " << want);
  }
  CHECK(rd16(out + 52) == d);
  std::vector<int8_t> back(256);
  uint16_t dd = 0;
  CHECK(gguf::decode_ternary(GgmlType::TQ1_0, out, 256, back.data(), &dd, nullptr));
  CHECK(back == t && dd == d);
}

TEST(gguf_tq1_0_every_five_trit_group_round_trips) {
  // All 3^5 digit patterns of byte qs[0] (values 0, 32, 64, 96, 128).
  for (int v = 0; v < 243; ++v) {
    std::vector<int8_t> t(256, 0);
    int x = v;
    for (int k = 4; k >= 0; --k) {
      t[size_t(32 * k)] = int8_t(x % 3 - 1);
      x /= 3;
    }
    const uint16_t d = 0x3C00;
    uint8_t out[gguf::kTq1Bytes];
    gguf::encode_ternary(GgmlType::TQ1_0, t.data(), &d, 256, out);
    CHECK(out[0] == (v * 256 + 242) / 243);
    std::vector<int8_t> back(256);
    uint16_t dd;
    CHECK(gguf::decode_ternary(GgmlType::TQ1_0, out, 256, back.data(), &dd, nullptr));
    CHECK_MSG(back == t, "pattern " << v);
  }
}

TEST(gguf_ternary_random_round_trips_and_float_paths_agree) {
  Rng rng(0x7E77);
  for (GgmlType type : {GgmlType::TQ1_0, GgmlType::TQ2_0}) {
    const int64_t n = 256 * 5;
    std::vector<int8_t> t(static_cast<size_t>(n));
    for (auto& v : t) v = int8_t(rng.below(3) - 1);
    std::vector<uint16_t> d(5);
    for (auto& h : d) h = norm::f32_to_f16(rng.uniform(0.01f, 2.0f));
    std::vector<uint8_t> bytes(size_t(gguf::bytes_for(type, n)));
    gguf::encode_ternary(type, t.data(), d.data(), n, bytes.data());
    std::vector<int8_t> back(static_cast<size_t>(n));
    std::vector<uint16_t> dback(5);
    CHECK(gguf::decode_ternary(type, bytes.data(), n, back.data(), dback.data(), nullptr));
    CHECK(back == t && dback == d);
    // decode_to_float = trit * d, and ggml's float quantiser (block amax as d)
    // maps those floats back to the same bytes when every block has both signs
    // at full scale (random trits over 256 values: certain in practice; checked).
    std::vector<float> f(static_cast<size_t>(n));
    gguf::decode_to_float(type, bytes.data(), n, f.data());
    for (int64_t i = 0; i < n; ++i)
      CHECK(f[size_t(i)] == float(t[size_t(i)]) * norm::f16_to_f32(d[size_t(i / 256)]));
    std::vector<uint8_t> again(bytes.size());
    gguf::encode_from_float(type, f.data(), n, again.data());
    CHECK(again == bytes);
  }
  const int8_t two[256] = {2};
  uint16_t d = 0;
  uint8_t out[gguf::kTq2Bytes];
  CHECK_THROWS(gguf::encode_ternary(GgmlType::TQ2_0, two, &d, 256, out));
  CHECK_THROWS(gguf::encode_ternary(GgmlType::TQ2_0, two, &d, 100, out));  // not a whole block
}

TEST(gguf_q8_0_known_bytes_and_error_bound) {
  // x[j] = j - 16: amax 16, d = 16/127, q = roundf(x * 127/16):
  // j=0 -> -127, j=16 -> 0, j=17 -> roundf(7.9375) = 8, j=31 -> roundf(119.0625) = 119.
  float x[32];
  for (int j = 0; j < 32; ++j) x[j] = float(j - 16);
  uint8_t out[gguf::kQ8Bytes];
  gguf::encode_from_float(GgmlType::Q8_0, x, 32, out);
  CHECK(rd16(out) == norm::f32_to_f16(16.0f / 127.0f));
  CHECK(int8_t(out[2 + 0]) == -127 && int8_t(out[2 + 16]) == 0 && int8_t(out[2 + 17]) == 8 &&
        int8_t(out[2 + 31]) == 119);
  // Round trip on random data: |x - q d'| <= d/2 + 127 |d - d'| (d' the fp16 scale).
  Rng rng(0x08);
  std::vector<float> v(32 * 40), back(v.size());
  for (auto& e : v) e = rng.normal() * 3;
  std::vector<uint8_t> bytes(size_t(gguf::bytes_for(GgmlType::Q8_0, int64_t(v.size()))));
  gguf::encode_from_float(GgmlType::Q8_0, v.data(), int64_t(v.size()), bytes.data());
  gguf::decode_to_float(GgmlType::Q8_0, bytes.data(), int64_t(v.size()), back.data());
  for (size_t b = 0; b < 40; ++b) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(v[b * 32 + j]));
    const double d = amax / 127.0, dq = norm::f16_to_f32(rd16(bytes.data() + b * gguf::kQ8Bytes));
    for (int j = 0; j < 32; ++j)
      CHECK(std::fabs(double(v[b * 32 + j]) - back[b * 32 + j]) <=
            d / 2 + 127 * std::fabs(d - dq) + 1e-6);
  }
  // A block of subnormals (1 / d overflows): still quantised within range.
  float tiny[32];
  for (int j = 0; j < 32; ++j) tiny[j] = std::ldexp(float(j - 16), -140);
  gguf::encode_from_float(GgmlType::Q8_0, tiny, 32, out);
  CHECK(int8_t(out[2]) <= -126 && int8_t(out[2 + 16]) == 0 && int8_t(out[2 + 31]) > 100);
  float tiny256[256];
  for (int j = 0; j < 256; ++j) tiny256[j] = std::ldexp(float(j % 3) - 1.0f, -140);
  uint8_t tq[gguf::kTq2Bytes];
  gguf::encode_from_float(GgmlType::TQ2_0, tiny256, 256, tq);
  int8_t tr[256];
  uint16_t td;
  CHECK(gguf::decode_ternary(GgmlType::TQ2_0, tq, 256, tr, &td, nullptr));
  for (int j = 0; j < 256; ++j) CHECK(tr[j] == j % 3 - 1);
  float bad[32] = {std::numeric_limits<float>::infinity()};
  CHECK_THROWS(gguf::encode_from_float(GgmlType::Q8_0, bad, 32, out));
}

TEST(gguf_float_types_round_trip) {
  Rng rng(0xF1);
  std::vector<float> v(64), back(64);
  for (auto& e : v) e = rng.normal();
  std::vector<uint8_t> b(256);
  gguf::encode_from_float(GgmlType::F32, v.data(), 64, b.data());
  gguf::decode_to_float(GgmlType::F32, b.data(), 64, back.data());
  CHECK(back == v);
  for (GgmlType t : {GgmlType::F16, GgmlType::BF16}) {
    gguf::encode_from_float(t, v.data(), 64, b.data());
    gguf::decode_to_float(t, b.data(), 64, back.data());
    const double rel = t == GgmlType::F16 ? std::ldexp(1.0, -11) : std::ldexp(1.0, -8);
    for (int i = 0; i < 64; ++i)
      CHECK(std::fabs(back[size_t(i)] - v[size_t(i)]) <= rel * std::fabs(v[size_t(i)]));
  }
  CHECK(gguf::type_name(12u) == "q4_K");
  CHECK(gguf::type_name(35u) == "tq2_0");
  CHECK(!gguf::type_supported(12) && gguf::type_supported(34));
  CHECK_THROWS(gguf::bytes_for(GgmlType::Q8_0, 33));
}

TEST(gguf_float_encoders_edge_values_and_idempotence) {
  const float inf = std::numeric_limits<float>::infinity();
  const float edge[8] = {0.0f,
                         -0.0f,
                         inf,
                         -inf,
                         std::ldexp(1.0f, -149),   // smallest fp32 subnormal
                         std::ldexp(1.0f, -24),    // smallest fp16 subnormal
                         -std::ldexp(3.0f, -130),  // a bf16 subnormal
                         std::numeric_limits<float>::max()};
  uint8_t b[32];
  float back[8];
  gguf::encode_from_float(GgmlType::F32, edge, 8, b);
  gguf::decode_to_float(GgmlType::F32, b, 8, back);
  CHECK(std::memcmp(back, edge, sizeof edge) == 0);  // bit for bit, -0 included
  for (GgmlType t : {GgmlType::F16, GgmlType::BF16}) {
    gguf::encode_from_float(t, edge, 8, b);
    gguf::decode_to_float(t, b, 8, back);
    CHECK(std::signbit(back[0]) == false && back[0] == 0 && std::signbit(back[1]) && back[1] == 0);
    CHECK(back[2] == inf && back[3] == -inf);
    CHECK(back[4] == 0);    // below half of either type's smallest subnormal
    CHECK(back[7] == inf);  // FLT_MAX rounds beyond either type's largest finite value
  }
  gguf::encode_from_float(GgmlType::F16, edge, 8, b);
  gguf::decode_to_float(GgmlType::F16, b, 8, back);
  CHECK(back[5] == std::ldexp(1.0f, -24) && back[6] == 0);
  gguf::encode_from_float(GgmlType::BF16, edge, 8, b);
  gguf::decode_to_float(GgmlType::BF16, b, 8, back);
  CHECK(back[5] == std::ldexp(1.0f, -24) && back[6] == -std::ldexp(3.0f, -130));  // kept exactly
  // NaN is refused by every encoder, naming the index; inf by the block types.
  std::vector<float> x(256, 0.25f);
  std::vector<uint8_t> out(256 * 4);
  x[7] = std::numeric_limits<float>::quiet_NaN();
  for (GgmlType t : {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::TQ1_0,
                     GgmlType::TQ2_0})
    CHECK_MSG(
        mentions(thrown_message([&] { gguf::encode_from_float(t, x.data(), 256, out.data()); }),
                 "cannot encode a NaN (index 7) as " + gguf::type_name(t)),
        gguf::type_name(t));
  x[7] = -inf;
  for (GgmlType t : {GgmlType::Q8_0, GgmlType::TQ1_0, GgmlType::TQ2_0})
    CHECK(mentions(thrown_message([&] { gguf::encode_from_float(t, x.data(), 256, out.data()); }),
                   "non-finite value (index 7)"));
  // A block of +-0 (q8_0): d = 0, q = 0, decoded as +0.
  float zeros[32];
  for (int j = 0; j < 32; ++j) zeros[j] = j % 2 ? -0.0f : 0.0f;
  uint8_t q8[gguf::kQ8Bytes];
  gguf::encode_from_float(GgmlType::Q8_0, zeros, 32, q8);
  CHECK(rd16(q8) == 0);
  for (int j = 0; j < 32; ++j) CHECK(q8[2 + j] == 0);
  // encode(decode(encode(x))) == encode(x) on random data of every magnitude: what an
  // export -> import -> export relies on.
  Rng rng(0xED6E);
  std::vector<float> v(32 * 64), dec(v.size());
  for (auto& e : v) e = std::ldexp(rng.normal(), int(rng.below(40)) - 30);
  for (GgmlType t : {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0}) {
    const size_t nb = size_t(gguf::bytes_for(t, int64_t(v.size())));
    std::vector<uint8_t> e1(nb), e2(nb);
    gguf::encode_from_float(t, v.data(), int64_t(v.size()), e1.data());
    gguf::decode_to_float(t, e1.data(), int64_t(v.size()), dec.data());
    gguf::encode_from_float(t, dec.data(), int64_t(v.size()), e2.data());
    CHECK_MSG(e1 == e2, gguf::type_name(t));
  }
}

}  // namespace
}  // namespace ternorm::test
