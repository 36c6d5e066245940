// absmean quantisation, the 2-bit compute layout and the 5-trit storage layout.
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "harness.h"
#include "ternary/ternary.h"

using namespace ternorm;
using namespace ternorm::ternary;
using ternorm::test::Rng;

namespace {

std::vector<int8_t> random_trits(Rng& rng, int64_t n) {
  std::vector<int8_t> t(static_cast<size_t>(n));
  for (auto& v : t) v = int8_t(rng.below(3) - 1);
  return t;
}

// An independent encoder written from the header's wording, walking the
// packed bytes: byte i of tile (p, b), bit pair j = row p*16 + i/4,
// column b*16 + 4j + i%4, code w + 1; padding holds the code of 0.
std::vector<uint8_t> spec_pack2(const std::vector<int8_t>& t, int64_t rows, int64_t cols) {
  const int64_t cb = padded_cols(cols) / 16;
  std::vector<uint8_t> out(size_t(packed2_bytes(rows, cols)));
  for (int64_t p = 0; p < padded_rows(rows) / 16; ++p)
    for (int64_t b = 0; b < cb; ++b)
      for (int i = 0; i < 64; ++i) {
        unsigned byte = 0;
        for (int j = 0; j < 4; ++j) {
          const int64_t r = p * 16 + i / 4, c = b * 16 + 4 * j + i % 4;
          const int w = (r < rows && c < cols) ? t[size_t(r * cols + c)] : 0;
          byte |= unsigned(w + 1) << (2 * j);
        }
        out[size_t((p * cb + b) * 64 + i)] = uint8_t(byte);
      }
  return out;
}

void check_pack2_round_trip(Rng& rng, int64_t rows, int64_t cols) {
  const auto t = random_trits(rng, rows * cols);
  std::vector<uint8_t> packed(size_t(packed2_bytes(rows, cols)), 0xAB);
  pack2(t.data(), rows, cols, packed.data());
  CHECK_MSG(packed == spec_pack2(t, rows, cols), "layout differs at " << rows << "x" << cols);
  std::vector<int8_t> back(size_t(rows * cols), 9);
  unpack2(packed.data(), rows, cols, back.data());
  CHECK_MSG(back == t, "round trip " << rows << "x" << cols);
}

}  // namespace

TEST(ternary_pack2_round_trip_all_sizes) {
  Rng rng(11);
  for (int64_t s = 1; s <= 300; ++s) {
    check_pack2_round_trip(rng, s, 1 + rng.below(40));
    check_pack2_round_trip(rng, 1 + rng.below(40), s);
  }
  check_pack2_round_trip(rng, 1000, 3001);
  check_pack2_round_trip(rng, 4096, 64);
}

TEST(ternary_pack2_padding_and_known_bytes) {
  // One row [-1, 0, 1, 1, 0 ...]: row 0 occupies bytes 0..3 of the tile;
  // byte 0 holds columns 0, 4, 8, 12 in bit pairs 0..3.
  std::vector<int8_t> t(17, 0);
  t[0] = -1;
  t[2] = 1;
  t[3] = 1;
  t[4] = -1;
  t[16] = 1;
  std::vector<uint8_t> p(size_t(packed2_bytes(1, 17)));
  CHECK(p.size() == 2 * 64);
  pack2(t.data(), 1, 17, p.data());
  CHECK(p[0] == 0x50);  // cols 0, 4, 8, 12 -> codes 0, 0, 1, 1: 0b01010000
  CHECK(p[1] == 0x55);  // col 1 (0), 5, 9, 13
  CHECK(p[2] == 0x56);  // col 2 (1 -> code 2)
  CHECK(p[3] == 0x56);
  for (int i = 4; i < 64; ++i) CHECK(p[size_t(i)] == 0x55);  // padding rows
  CHECK(p[64] == 0x56);                                      // col 16 -> code 2, cols 20.. padding
  for (int i = 65; i < 128; ++i) CHECK(p[size_t(i)] == 0x55);
}

TEST(ternary_pack2_rejects_bad_input) {
  std::vector<int8_t> t(32, 0);
  std::vector<uint8_t> p(size_t(packed2_bytes(2, 16)), 0x11);
  const std::vector<uint8_t> before = p;
  t[17] = 2;
  CHECK_THROWS(pack2(t.data(), 2, 16, p.data()));
  t[17] = -2;
  CHECK_THROWS(pack2(t.data(), 2, 16, p.data()));
  CHECK(p == before);  // nothing written on error
  t[17] = 0;
  CHECK_THROWS(pack2(nullptr, 2, 16, p.data()));
  CHECK_THROWS(pack2(t.data(), 2, 16, nullptr));
  CHECK_THROWS(pack2(t.data(), 0, 16, p.data()));
  CHECK_THROWS(pack2(t.data(), 2, -1, p.data()));
  pack2(t.data(), 2, 16, p.data());
  p[5] |= 3 << 4;  // code 3 at row 1, col 9
  CHECK_THROWS(unpack2(p.data(), 2, 16, t.data()));
  CHECK_THROWS(unpack2(p.data(), 0, 16, t.data()));
  CHECK_THROWS(unpack2(nullptr, 2, 16, t.data()));
  // Code 3 in a padding row is outside the matrix and ignored.
  pack2(t.data(), 2, 16, p.data());
  p[63] = 0xFF;
  unpack2(p.data(), 2, 16, t.data());
  for (int8_t v : t) CHECK(v == 0);
}

TEST(ternary_pack5_round_trip_all_sizes) {
  Rng rng(12);
  std::vector<int64_t> sizes;
  for (int64_t s = 1; s <= 300; ++s) sizes.push_back(s);
  sizes.push_back(100003);
  sizes.push_back(1 << 20);
  for (int64_t n : sizes) {
    const auto t = random_trits(rng, n);
    std::vector<uint8_t> p(size_t(packed5_bytes(n)));
    pack5(t.data(), n, p.data());
    // Direct formula for every byte.
    bool ok = true;
    for (int64_t b = 0; b < packed5_bytes(n); ++b) {
      int v = 0, pw = 1;
      for (int i = 0; i < 5; ++i, pw *= 3)
        if (b * 5 + i < n) v += (t[size_t(b * 5 + i)] + 1) * pw;
      ok = ok && p[size_t(b)] == v;
    }
    CHECK_MSG(ok, "byte values, n=" << n);
    std::vector<int8_t> back(size_t(n), 9);
    unpack5(p.data(), n, back.data());
    CHECK_MSG(back == t, "round trip n=" << n);
  }
  const int8_t t5[5] = {-1, 0, 1, -1, 1};
  uint8_t b = 0;
  pack5(t5, 5, &b);
  CHECK(b == 0 + 1 * 3 + 2 * 9 + 0 * 27 + 2 * 81);
  const int8_t all1[5] = {1, 1, 1, 1, 1};
  pack5(all1, 5, &b);
  CHECK(b == 242);
}

TEST(ternary_pack5_rejects_bad_input) {
  int8_t t[7] = {0, 1, -1, 0, 1, 1, -1};
  uint8_t p[2];
  pack5(t, 7, p);
  CHECK(p[1] == 2 + 0 * 3);  // last byte: 2 trits
  int8_t out[7];
  uint8_t bad[2] = {243, p[1]};
  CHECK_THROWS(unpack5(bad, 7, out));
  bad[0] = 255;
  CHECK_THROWS(unpack5(bad, 7, out));
  bad[0] = p[0];
  bad[1] = 9;  // a digit in the unused third position of the last byte
  CHECK_THROWS(unpack5(bad, 7, out));
  bad[1] = 8;
  unpack5(bad, 7, out);
  CHECK(out[5] == 1 && out[6] == 1);
  t[3] = 3;
  CHECK_THROWS(pack5(t, 7, p));
  t[3] = -2;
  CHECK_THROWS(pack5(t, 7, p));
  t[3] = 0;
  CHECK_THROWS(pack5(t, 0, p));
  CHECK_THROWS(pack5(nullptr, 7, p));
  CHECK_THROWS(unpack5(p, -3, out));
  CHECK_THROWS(unpack5(p, 7, nullptr));
  // The full 5-digit last byte (count a multiple of 5) allows every value < 243.
  uint8_t full = 242;
  int8_t o5[5];
  unpack5(&full, 5, o5);
  for (int8_t v : o5) CHECK(v == 1);
}

TEST(ternary_absmean_known_values) {
  // mean |w| = (1 + 3 + 0.5 + 0 + 0.5) / 5 = 1: w / scale hits the .5 tie
  // (rounds to even 0) and 3 clamps to 1.
  const float w[10] = {1.0f, 3.0f,  0.5f, 0.0f, -0.5f,  // row 0: mean 1
                       1.5f, -2.5f, 0.0f, 0.0f, 0.0f};  // row 1: mean 0.8
  int8_t t[10];
  float s[2];
  absmean_quantize(w, 2, 5, true, t, s);
  CHECK(s[0] == 1.0f);
  CHECK(s[1] == 0.8f);
  const int8_t want_row[10] = {1, 1, 0, 0, 0, 1, -1, 0, 0, 0};
  CHECK(std::memcmp(t, want_row, 10) == 0);
  absmean_quantize(w, 2, 5, false, t, s);
  CHECK(s[0] == 0.9f && s[1] == 0.9f);                              // 9 / 10
  const int8_t want_tensor[10] = {1, 1, 1, 0, -1, 1, -1, 0, 0, 0};  // 0.5/0.9 = 0.56 -> 1
  CHECK(std::memcmp(t, want_tensor, 10) == 0);
}

TEST(ternary_absmean_matches_direct_formula) {
  Rng rng(13);
  for (int64_t rows : {1, 3, 17}) {
    for (int64_t cols : {1, 2, 7, 64, 257}) {
      std::vector<float> w(size_t(rows * cols));
      for (auto& v : w) v = rng.normal() * 0.02f;
      for (int64_t c = 0; c < cols; ++c) w[size_t(c)] = 0.0f;  // row 0 all zero
      std::vector<int8_t> t(w.size());
      std::vector<float> s(static_cast<size_t>(rows));
      for (bool per_row : {false, true}) {
        absmean_quantize(w.data(), rows, cols, per_row, t.data(), s.data());
        double total = 0;
        for (float v : w) total += std::fabs(double(v));
        for (int64_t r = 0; r < rows; ++r) {
          double sum = 0;
          for (int64_t c = 0; c < cols; ++c) sum += std::fabs(double(w[size_t(r * cols + c)]));
          const float want =
              per_row ? float(sum / double(cols)) : float(total / double(rows * cols));
          CHECK_MSG(s[size_t(r)] == want, "scale row " << r);
          for (int64_t c = 0; c < cols; ++c) {
            const float x = w[size_t(r * cols + c)];
            int expect = 0;
            if (want != 0.0f) {
              const double v = double(x) / double(want);  // the tie cases need float division
              expect = v > 1.5 ? 1 : v < -1.5 ? -1 : int(std::nearbyint(x / want));
              if (expect > 1) expect = 1;
              if (expect < -1) expect = -1;
            }
            CHECK_MSG(t[size_t(r * cols + c)] == expect, "trit " << r << "," << c);
          }
        }
        if (per_row) CHECK(s[0] == 0.0f);
      }
    }
  }
  // An all-zero tensor: scale 0, trits 0.
  std::vector<float> z(40, 0.0f);
  std::vector<int8_t> t(40, 5);
  std::vector<float> s(4, 7.0f);
  absmean_quantize(z.data(), 4, 10, false, t.data(), s.data());
  for (float v : s) CHECK(v == 0.0f);
  for (int8_t v : t) CHECK(v == 0);
}

TEST(ternary_absmean_rejects_bad_input) {
  std::vector<float> w(12, 1.0f);
  std::vector<int8_t> t(12);
  std::vector<float> s(3);
  w[7] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS(absmean_quantize(w.data(), 3, 4, true, t.data(), s.data()));
  w[7] = std::numeric_limits<float>::infinity();
  CHECK_THROWS(absmean_quantize(w.data(), 3, 4, false, t.data(), s.data()));
  w[7] = 1.0f;
  CHECK_THROWS(absmean_quantize(w.data(), 0, 4, true, t.data(), s.data()));
  CHECK_THROWS(absmean_quantize(w.data(), 3, -4, true, t.data(), s.data()));
  CHECK_THROWS(absmean_quantize(nullptr, 3, 4, true, t.data(), s.data()));
  CHECK_THROWS(absmean_quantize(w.data(), 3, 4, true, nullptr, s.data()));
  CHECK_THROWS(absmean_quantize(w.data(), 3, 4, true, t.data(), nullptr));
}
