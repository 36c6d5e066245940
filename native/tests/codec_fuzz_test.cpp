// A deterministic mutation fuzz of the codec record parser (runs in the normal
// suite, so under ASan/UBSan in the sanitizer build). Seeds: records of every
// scheme at several sizes, and adapter blobs. Mutations: every truncation,
// every single-bit flip, random multi-byte overwrites, header field edits,
// byte insertions and deletions. Each parse must either throw
// std::invalid_argument or return encodings that decode to finite gains and
// serialise back to exactly the parsed bytes (the format has one encoding per
// value, so an accepted buffer is a canonical one).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "codec/codec.h"
#include "harness.h"

using namespace ternorm;
using namespace ternorm::codec;
using ternorm::test::Rng;

namespace {

struct Tally {
  int64_t accepted = 0, rejected = 0, bad = 0;
};

// One record parse under the oracle.
void try_record(const std::vector<uint8_t>& b, Tally& tally) {
  EncodedGain e;
  try {
    e = parse_record(b.data(), b.size());
  } catch (const std::invalid_argument& ex) {
    if (std::string(ex.what()).rfind("gain record: ", 0) != 0) {
      if (tally.bad++ < 5) CHECK_MSG(false, "message without the record prefix: " << ex.what());
    }
    ++tally.rejected;
    return;
  } catch (const std::exception& ex) {
    if (tally.bad++ < 5) CHECK_MSG(false, "unexpected exception type: " << ex.what());
    return;
  }
  ++tally.accepted;
  std::vector<uint8_t> again;
  append_record(e, again);
  std::vector<float> g(size_t(e.d));
  norm::decode_gain(e.view(), g.data());
  bool finite = true;
  for (float x : g) finite = finite && std::isfinite(x);
  if (!(again == b && finite) && tally.bad++ < 5)
    CHECK_MSG(false, "accepted a record that does not round trip (" << b.size() << " bytes)");
}

void try_adapter(const std::vector<uint8_t>& b, Tally& tally) {
  std::vector<EncodedGain> a;
  uint32_t format = 0;
  try {
    a = parse_adapter(b.data(), b.size(), -1, -1, &format);
  } catch (const std::invalid_argument&) {
    ++tally.rejected;
    return;
  } catch (const std::exception& ex) {
    if (tally.bad++ < 5) CHECK_MSG(false, "unexpected exception type: " << ex.what());
    return;
  }
  ++tally.accepted;
  if (serialize_adapter(a, format) != b && tally.bad++ < 5)
    CHECK_MSG(false,
              "accepted an adapter blob that does not round trip (" << b.size() << " bytes)");
}

std::vector<std::vector<uint8_t>> seed_records() {
  Rng rng(2024);
  std::vector<std::vector<uint8_t>> seeds;
  for (int64_t d : {1, 5, 32}) {
    std::vector<float> g(static_cast<size_t>(d)), few(static_cast<size_t>(d));
    for (float& x : g) x = 1.0f + 0.05f * rng.normal();
    for (size_t i = 0; i < few.size(); ++i) few[i] = 1.0f + 0.1f * float(i % 3);
    std::vector<EncodedGain> encs = {
        encode_f32(g.data(), d),
        encode_f16(g.data(), d),
        encode_int8_per_tensor(g.data(), d),
        encode_int8_group(g.data(), d, 4),
        encode_int8_asym(g.data(), d),
        encode_delta(8, g.data(), d),
        encode_delta(4, g.data(), d),
        encode_kmeans(16, few.data(), d),
        encode_kmeans(256, g.data(), d),
        // The low-rate schemes: bit-packed fields, sparse entries, a Rice stream, no payload.
        encode_delta(3, g.data(), d),
        encode_delta(2, g.data(), d),
        encode_sign1(g.data(), d),
        encode_kmeans(2, g.data(), d),
        encode_kmeans(4, few.data(), d),
        encode_kmeans(8, g.data(), d),
        encode_sparse(g.data(), d,
                      d > 2 ? std::vector<int64_t>{0, d / 2, d - 1} : std::vector<int64_t>{0}),
        encode_rice(4, g.data(), d),
        encode_rice(8, g.data(), d),
        encode_unit(d),
    };
    for (const EncodedGain& e : encs) {
      std::vector<uint8_t> r;
      append_record(e, r);
      seeds.push_back(r);
    }
  }
  return seeds;
}

void put_u32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + size_t(i)] = uint8_t(v >> (8 * i));
}

}  // namespace

TEST(codec_record_fuzz) {
  Rng rng(99);
  Tally tally;
  const uint8_t specials[] = {0x00, 0xff, 0x7f, 0x80, 0x01, 0x0f, 0xf0, 0x10};
  const std::vector<std::vector<uint8_t>> seeds = seed_records();
  for (const std::vector<uint8_t>& s : seeds) {
    try_record(s, tally);  // the seed itself
    for (size_t n = 0; n < s.size(); ++n)
      try_record(std::vector<uint8_t>(s.begin(), s.begin() + long(n)), tally);
    for (size_t bit = 0; bit < s.size() * 8; ++bit) {
      std::vector<uint8_t> b = s;
      b[bit / 8] = uint8_t(b[bit / 8] ^ (1u << (bit % 8)));
      try_record(b, tally);
    }
    for (int k = 0; k < 2000; ++k) {
      std::vector<uint8_t> b = s;
      const int edits = 1 + int(rng.below(4));
      for (int j = 0; j < edits; ++j)
        b[size_t(rng.below(int64_t(b.size())))] =
            rng.below(2) ? uint8_t(rng.next()) : specials[rng.below(sizeof specials)];
      try_record(b, tally);
    }
    // Header fields: scheme, d, n_params set to edge values.
    const uint32_t values[] = {
        0,           1,          2,  3,  4,  5,   6,   7,   8,        9,
        15,          16,         17, 31, 33, 255, 256, 257, 1u << 24, (1u << 24) + 1,
        0x7fffffffu, 0xffffffffu};
    for (size_t field = 0; field < 3; ++field)
      for (uint32_t v : values) {
        std::vector<uint8_t> b = s;
        put_u32(b, 4 * field, v);
        try_record(b, tally);
      }
    for (int k = 0; k < 60; ++k) {
      std::vector<uint8_t> b = s;
      const size_t at = size_t(rng.below(int64_t(b.size()) + 1));
      if (k % 2 && !b.empty())
        b.erase(b.begin() + long(std::min(at, b.size() - 1)));
      else
        b.insert(b.begin() + long(at), uint8_t(rng.next()));
      try_record(b, tally);
    }
  }
  std::printf("    record fuzz: %lld parses, %lld accepted, %lld rejected\n",
              (long long)(tally.accepted + tally.rejected), (long long)tally.accepted,
              (long long)tally.rejected);
  CHECK(tally.bad == 0);
  CHECK(tally.rejected > 10000);
  CHECK(tally.accepted > 1000);  // payload and param edits that stay valid

  // Adapter blobs made of the seeds.
  Tally at;
  for (size_t first = 0; first + 3 <= seeds.size(); first += 3) {
    std::vector<uint8_t> blob = {1, 0, 0, 0, 3, 0, 0, 0};
    for (size_t i = first; i < first + 3; ++i)
      blob.insert(blob.end(), seeds[i].begin(), seeds[i].end());
    try_adapter(blob, at);
    for (size_t n = 0; n < blob.size(); ++n)
      try_adapter(std::vector<uint8_t>(blob.begin(), blob.begin() + long(n)), at);
    for (int k = 0; k < 400; ++k) {
      std::vector<uint8_t> b = blob;
      const int edits = 1 + int(rng.below(3));
      for (int j = 0; j < edits; ++j)
        b[size_t(rng.below(int64_t(b.size())))] =
            rng.below(2) ? uint8_t(rng.next()) : specials[rng.below(sizeof specials)];
      try_adapter(b, at);
    }
  }
  std::printf("    adapter fuzz: %lld parses, %lld accepted, %lld rejected\n",
              (long long)(at.accepted + at.rejected), (long long)at.accepted,
              (long long)at.rejected);
  CHECK(at.bad == 0);
  CHECK(at.rejected > 1000 && at.accepted > 100);
}

// Format-2 (compact) adapter blobs of the low-rate methods, mutated the same way.
TEST(codec_compact_adapter_fuzz) {
  Rng rng(7);
  Tally at;
  const uint8_t specials[] = {0x00, 0xff, 0x7f, 0x80, 0x01, 0x0f, 0xf0, 0x10};
  for (int64_t d : {5, 32}) {
    std::vector<float> g(size_t(3 * d));
    for (float& x : g) x = 1.0f + 0.05f * rng.normal();
    for (Method m : all_methods()) {
      if (adapter_format(m) != 2 || method_needs_loss(m)) continue;
      EncodeOptions o;
      o.byte_budget = 60;
      const std::vector<uint8_t> blob =
          serialize_adapter(encode_adapter(m, g.data(), 3, d, o).tensors, 2);
      try_adapter(blob, at);
      for (size_t n = 0; n < blob.size(); ++n)
        try_adapter(std::vector<uint8_t>(blob.begin(), blob.begin() + long(n)), at);
      for (size_t bit = 0; bit < blob.size() * 8; ++bit) {
        std::vector<uint8_t> b = blob;
        b[bit / 8] = uint8_t(b[bit / 8] ^ (1u << (bit % 8)));
        try_adapter(b, at);
      }
      for (int k = 0; k < 600; ++k) {
        std::vector<uint8_t> b = blob;
        const int edits = 1 + int(rng.below(3));
        for (int j = 0; j < edits; ++j)
          b[size_t(rng.below(int64_t(b.size())))] =
              rng.below(2) ? uint8_t(rng.next()) : specials[rng.below(sizeof specials)];
        try_adapter(b, at);
      }
      for (int k = 0; k < 40; ++k) {
        std::vector<uint8_t> b = blob;
        const size_t pos = size_t(rng.below(int64_t(b.size()) + 1));
        if (k % 2)
          b.erase(b.begin() + long(std::min(pos, b.size() - 1)));
        else
          b.insert(b.begin() + long(pos), uint8_t(rng.next()));
        try_adapter(b, at);
      }
    }
  }
  std::printf("    compact adapter fuzz: %lld parses, %lld accepted, %lld rejected\n",
              (long long)(at.accepted + at.rejected), (long long)at.accepted,
              (long long)at.rejected);
  CHECK(at.bad == 0);
  CHECK(at.rejected > 1000 && at.accepted > 100);
}
