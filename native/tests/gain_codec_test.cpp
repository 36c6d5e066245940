// Gain codec: exact binary16 conversions (exhaustive over all halves, an
// independent nearest-value search for binary32 -> binary16, x86 F16C where
// present), the decoder registry, validation errors and decoding of every scheme.
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "harness.h"
#include "norm/gain_codec.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

using namespace ternorm;
using namespace ternorm::norm;
using ternorm::test::Rng;

namespace {

uint32_t bits_of(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}
float float_of(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

// The value of a finite half from its fields, in double (exact).
double half_value(uint16_t h) {
  const int exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  const double mag =
      exp == 0 ? std::ldexp(double(man), -24) : std::ldexp(double(1024 + man), exp - 25);
  return (h & 0x8000) ? -mag : mag;
}

// Independent binary32 -> binary16: search the nearest finite half by value
// (ties to the even code); |f| >= 65520 (the midpoint above 65504) is inf.
uint16_t ref_f32_to_f16(float f) {
  const uint16_t sign = (bits_of(f) >> 31) ? 0x8000 : 0;
  const double a = std::fabs(double(f));
  if (a >= 65520.0) return sign | 0x7c00;
  int lo = 0, hi = 0x7bff;  // largest code with value <= a
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (half_value(uint16_t(mid)) <= a)
      lo = mid;
    else
      hi = mid - 1;
  }
  if (lo == 0x7bff) return sign | 0x7bff;
  // Compare 2a with v(lo) + v(lo+1): exact in double for every float a.
  const double twice = 2.0 * a, mids = half_value(uint16_t(lo)) + half_value(uint16_t(lo + 1));
  int code = lo;
  if (twice > mids || (twice == mids && (lo & 1))) code = lo + 1;
  return uint16_t(sign | code);
}

#if defined(__x86_64__)
__attribute__((target("f16c"))) uint16_t hw_f32_to_f16(float f) {
  return uint16_t(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
}
__attribute__((target("f16c"))) float hw_f16_to_f32(uint16_t h) { return _cvtsh_ss(h); }
bool have_f16c() { return cpu_features().f16c; }
#endif

// The message validate_gain throws for g.
std::string validation_error(const GainView& g) {
  try {
    validate_gain(g);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "<no exception>";
}

}  // namespace

TEST(f16_to_f32_exhaustive) {
  int nan_count = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = f16_to_f32(uint16_t(h));
    const bool is_nan = ((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff) != 0;
    const bool is_inf = ((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff) == 0;
    if (is_nan) {
      ++nan_count;
      CHECK_MSG(std::isnan(f), "h=" << h);
      // Quiet NaN, same sign, the 10 payload bits on top of the mantissa.
      CHECK_MSG(bits_of(f) == (((h & 0x8000u) << 16) | 0x7fc00000u | ((h & 0x3ffu) << 13)),
                "h=" << h << " bits=" << bits_of(f));
    } else if (is_inf) {
      CHECK_MSG(std::isinf(f) && std::signbit(f) == bool(h & 0x8000), "h=" << h);
    } else {
      CHECK_MSG(double(f) == half_value(uint16_t(h)), "h=" << h << " f=" << f);
      CHECK_MSG(std::signbit(f) == bool(h & 0x8000), "h=" << h);  // -0 stays -0
    }
#if defined(__x86_64__)
    if (have_f16c()) CHECK_MSG(bits_of(f) == bits_of(hw_f16_to_f32(uint16_t(h))), "h=" << h);
#endif
  }
  CHECK(nan_count == 2 * 1023);
  // Ordered: the positive finite codes increase strictly in value.
  for (uint16_t h = 0; h < 0x7c00; ++h)
    CHECK_MSG(f16_to_f32(h) < f16_to_f32(uint16_t(h + 1)), "h=" << h);
}

TEST(f16_round_trip_exhaustive) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint16_t back = f32_to_f16(f16_to_f32(uint16_t(h)));
    const bool is_nan = ((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff) != 0;
    // Every half comes back exactly; a signalling NaN comes back quiet.
    const uint16_t want = is_nan ? uint16_t(h | 0x0200) : uint16_t(h);
    CHECK_MSG(back == want, "h=" << h << " back=" << back);
  }
}

TEST(f32_to_f16_named_cases) {
  struct Case {
    float f;
    uint16_t h;
  };
  const Case cases[] = {
      {0.0f, 0x0000},
      {-0.0f, 0x8000},
      {1.0f, 0x3c00},
      {-2.0f, 0xc000},
      {65504.0f, 0x7bff},         // largest finite
      {65519.99609375f, 0x7bff},  // just below the midpoint to inf
      {65520.0f, 0x7c00},         // midpoint, ties to even = inf
      {1e10f, 0x7c00},            // overflow
      {-1e10f, 0xfc00},
      {INFINITY, 0x7c00},
      {-INFINITY, 0xfc00},
      {1.0f + 0x1p-11f, 0x3c00},             // tie, stays even
      {1.0f + 3 * 0x1p-11f, 0x3c02},         // tie, rounds up to even
      {1.0f + 0x1p-11f + 0x1p-23f, 0x3c01},  // above the tie
      {0x1p-14f, 0x0400},                    // smallest normal
      {0x1p-24f, 0x0001},                    // smallest subnormal
      {0x1p-25f, 0x0000},                    // tie between 0 and 2^-24: even = 0
      {0x1p-25f + 0x1p-40f, 0x0001},         // just above the tie
      {3 * 0x1p-25f, 0x0002},                // tie between 1 and 2 ulp: even = 2
      {5 * 0x1p-25f, 0x0002},                // tie between 2 and 3 ulp: even = 2
      {0x1p-14f - 0x1p-25f, 0x0400},  // tie at the top subnormal carries into the first normal
      {0x1p-26f, 0x0000},             // below half the smallest subnormal
      {FLT_MIN, 0x0000},
      {float_of(1), 0x0000},  // smallest float subnormal
      {-float_of(1), 0x8000},
  };
  for (const Case& c : cases) {
    CHECK_MSG(f32_to_f16(c.f) == c.h, "f=" << c.f << " got " << f32_to_f16(c.f) << " want " << c.h);
    CHECK_MSG(ref_f32_to_f16(c.f) == c.h, "reference disagrees on f=" << c.f);
  }
  // NaN: quiet, sign kept, top payload bits kept.
  CHECK(f32_to_f16(float_of(0x7fc00000u)) == 0x7e00);
  CHECK(f32_to_f16(float_of(0xffc00000u)) == 0xfe00);
  CHECK(f32_to_f16(float_of(0x7f800001u)) ==
        0x7e00);  // signalling, low payload: quiet NaN, not inf
  CHECK(f32_to_f16(float_of(0x7fa02000u)) == (0x7e00 | (0x202000u >> 13)));
}

TEST(f32_to_f16_matches_nearest_search) {
  // Every midpoint between consecutive halves, one float below and above it
  // (both signs), plus a strided sweep over all 2^32 patterns.
  auto check = [](float f) {
    if (std::isnan(f)) return;
    const uint16_t got = f32_to_f16(f), want = ref_f32_to_f16(f);
    CHECK_MSG(got == want,
              "f=" << f << " bits=" << bits_of(f) << " got " << got << " want " << want);
#if defined(__x86_64__)
    if (have_f16c()) CHECK_MSG(got == hw_f32_to_f16(f), "F16C disagrees on bits=" << bits_of(f));
#endif
  };
  for (uint16_t h = 0; h < 0x7bff; ++h) {
    const float mid = float((half_value(h) + half_value(uint16_t(h + 1))) / 2.0);
    CHECK(double(mid) == (half_value(h) + half_value(uint16_t(h + 1))) / 2.0);  // exact in float
    for (float f : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, INFINITY)}) {
      check(f);
      check(-f);
    }
  }
  for (uint64_t b = 0; b < (uint64_t(1) << 32); b += 4099) check(float_of(uint32_t(b)));
#if defined(__x86_64__)
  if (have_f16c())  // NaN payload handling as in F16C
    for (uint32_t b : {0x7fc00000u, 0xffc00001u, 0x7f800001u, 0x7fbfffffu, 0xffffe000u})
      CHECK_MSG(f32_to_f16(float_of(b)) == hw_f32_to_f16(float_of(b)), "NaN bits=" << b);
#endif
}

TEST(gain_registry_lists_every_scheme) {
  const GainScheme all[] = {GainScheme::F32, GainScheme::F16, GainScheme::Int8PerTensor};
  for (size_t i = 0; i < 3; ++i) {
    const GainDecoder* dec = find_gain_decoder(all[i]);
    CHECK(dec != nullptr);
    if (dec == nullptr) continue;
    CHECK(dec->scheme == all[i]);
    for (size_t j = 0; j < i; ++j) CHECK(std::string(dec->name) != find_gain_decoder(all[j])->name);
  }
  CHECK(find_gain_decoder(static_cast<GainScheme>(77)) == nullptr);
}

TEST(gain_validation_errors_name_the_expectation) {
  const float f[4] = {1, 1, 1, 1};
  const float scale = 0.01f, nan_scale = NAN, inf_scale = INFINITY;
  const int8_t q[4] = {100, 100, 100, 100};
  GainView ok{GainScheme::F32, 4, f, sizeof f, nullptr, 0};
  validate_gain(ok);  // must not throw

  GainView g = ok;
  g.scheme = static_cast<GainScheme>(18);
  CHECK_THROWS(validate_gain(g));
  CHECK(validation_error(g).find("unknown scheme 18") != std::string::npos);
  CHECK(validation_error(g).find("int8_per_tensor") != std::string::npos);

  g = ok;
  g.d = 0;
  CHECK_THROWS(validate_gain(g));
  g.d = -3;
  CHECK_THROWS(validate_gain(g));
  CHECK(validation_error(g).find("expected 0 < d") != std::string::npos);

  g = ok;
  g.data = nullptr;
  CHECK_THROWS(validate_gain(g));

  g = ok;
  g.data_bytes = 15;  // truncated payload
  CHECK_THROWS(validate_gain(g));
  CHECK(validation_error(g).find("expected 16") != std::string::npos);
  g.data_bytes = 17;
  CHECK_THROWS(validate_gain(g));

  g = ok;
  g.scheme = GainScheme::F16;  // f16 payload of d = 4 is 8 bytes, not 16
  CHECK_THROWS(validate_gain(g));
  CHECK(validation_error(g).find("expected 8") != std::string::npos);

  g = ok;
  g.params = &scale;
  g.n_params = 1;  // f32 takes no params
  CHECK_THROWS(validate_gain(g));

  GainView i8{GainScheme::Int8PerTensor, 4, q, sizeof q, &scale, 1};
  validate_gain(i8);
  g = i8;
  g.n_params = 0;
  CHECK_THROWS(validate_gain(g));
  CHECK(validation_error(g).find("expected 1 (the scale)") != std::string::npos);
  g = i8;
  g.params = nullptr;
  CHECK_THROWS(validate_gain(g));
  g = i8;
  g.params = &nan_scale;
  CHECK_THROWS(validate_gain(g));
  CHECK(validation_error(g).find("not finite") != std::string::npos);
  g.params = &inf_scale;
  CHECK_THROWS(validate_gain(g));
  g = i8;
  g.data_bytes = 3;
  CHECK_THROWS(validate_gain(g));

  float out[4];
  CHECK_THROWS(decode_gain(ok, nullptr));
  g = ok;
  g.data_bytes = 0;
  CHECK_THROWS(decode_gain(g, out));  // decode validates first
}

TEST(gain_decode_f32_exact_and_unaligned) {
  Rng rng(11);
  const int64_t d = 37;
  std::vector<float> v(d);
  for (float& x : v) x = rng.normal();
  v[3] = -0.0f;
  v[4] = float_of(1);  // a float subnormal survives unchanged
  // Payload at an odd address: decoders must not assume alignment.
  std::vector<unsigned char> buf(d * 4 + 1);
  std::memcpy(buf.data() + 1, v.data(), d * 4);
  std::vector<float> out(d, 7.0f);
  decode_gain(GainView{GainScheme::F32, d, buf.data() + 1, size_t(d * 4), nullptr, 0}, out.data());
  for (int64_t i = 0; i < d; ++i) CHECK_MSG(bits_of(out[i]) == bits_of(v[i]), "i=" << i);

  v[5] = NAN;
  std::memcpy(buf.data() + 1, v.data(), d * 4);
  CHECK_THROWS(decode_gain(GainView{GainScheme::F32, d, buf.data() + 1, size_t(d * 4), nullptr, 0},
                           out.data()));
}

TEST(gain_decode_f16_subnormals_and_non_finite) {
  // Normals, subnormals (smallest and largest), zeros of both signs, at an odd address.
  const uint16_t h[] = {0x3c00, 0x3bff, 0x0001, 0x03ff, 0x8001,
                        0x0000, 0x8000, 0x7bff, 0xfbff, 0x0400};
  const int64_t d = sizeof h / 2;
  std::vector<unsigned char> buf(d * 2 + 1);
  std::memcpy(buf.data() + 1, h, sizeof h);
  std::vector<float> out(d);
  decode_gain(GainView{GainScheme::F16, d, buf.data() + 1, size_t(d * 2), nullptr, 0}, out.data());
  for (int64_t i = 0; i < d; ++i) {
    CHECK_MSG(double(out[i]) == half_value(h[i]), "i=" << i);
    CHECK(std::signbit(out[i]) == bool(h[i] & 0x8000));
  }
  CHECK(out[2] == 0x1p-24f);
  CHECK(out[3] == 1023 * 0x1p-24f);

  // An inf or NaN half is not a usable gain: the error names its index.
  for (uint16_t bad : {uint16_t(0x7c00), uint16_t(0xfc00), uint16_t(0x7e00), uint16_t(0x7c01)}) {
    uint16_t hb[3] = {0x3c00, bad, 0x3c00};
    std::string msg = "<no exception>";
    try {
      float o[3];
      decode_gain(GainView{GainScheme::F16, 3, hb, sizeof hb, nullptr, 0}, o);
    } catch (const std::invalid_argument& e) {
      msg = e.what();
    }
    CHECK_MSG(msg.find("gain[1]") != std::string::npos, "bad=" << bad << ": " << msg);
  }
}

TEST(gain_decode_int8_per_tensor) {
  const int8_t q[] = {-128, -127, -1, 0, 1, 64, 127};
  const int64_t d = sizeof q;
  for (float scale : {0.0f, 1.0f, 0.0078125f, 3.3e-3f, -0.5f, 1e-40f}) {
    std::vector<float> out(d);
    decode_gain(GainView{GainScheme::Int8PerTensor, d, q, size_t(d), &scale, 1}, out.data());
    for (int64_t i = 0; i < d; ++i)
      CHECK_MSG(bits_of(out[i]) == bits_of(float(q[i]) * scale), "scale=" << scale << " i=" << i);
  }
  // q * scale overflowing float is rejected, naming the gain.
  const float huge = FLT_MAX / 64;
  float out[d];
  CHECK_THROWS(decode_gain(GainView{GainScheme::Int8PerTensor, d, q, size_t(d), &huge, 1}, out));
}
