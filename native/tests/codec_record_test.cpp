// Codec records: exact sizes (the formula per scheme and the serialised byte
// count agree), round trips, and corrupt records refused with clear messages.
// The mutation fuzz of the parser is in codec_fuzz_test.cpp.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "codec/codec.h"
#include "harness.h"

using namespace ternorm;
using namespace ternorm::codec;
using norm::GainScheme;
using ternorm::test::mentions;
using ternorm::test::Rng;
using ternorm::test::thrown_message;

namespace {

bool same(const EncodedGain& a, const EncodedGain& b) {
  return a.scheme == b.scheme && a.d == b.d && a.payload == b.payload &&
         a.params.size() == b.params.size() &&
         (a.params.empty() ||
          std::memcmp(a.params.data(), b.params.data(), a.params.size() * 4) == 0);
}
void put_u32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + size_t(i)] = uint8_t(v >> (8 * i));
}

// The size each scheme's record must have, from the format alone.
uint64_t formula(const EncodedGain& e) {
  const uint64_t d = uint64_t(e.d), half = (d + 1) / 2, k = e.params.size();
  switch (e.scheme) {
    case GainScheme::F32: return 12 + 4 * d;
    case GainScheme::F16: return 12 + 2 * d;
    case GainScheme::Int8PerTensor: return 12 + 4 + d;
    case GainScheme::Int8Group: {
      const uint64_t b = uint64_t(e.params[0]);
      return 12 + 4 * (1 + (d + b - 1) / b) + d;
    }
    case GainScheme::Int8Asym: return 12 + 8 + d;
    case GainScheme::Int8Delta: return 12 + 4 + d;
    case GainScheme::Int4Delta: return 12 + 4 + half;
    case GainScheme::KMeans16: return 12 + 4 * k + half;
    case GainScheme::KMeans256: return 12 + 4 * k + d;
    case GainScheme::Int3Delta: return 12 + 4 + (3 * d + 7) / 8;
    case GainScheme::Int2Delta: return 12 + 4 + (2 * d + 7) / 8;
    case GainScheme::Sign1Delta: return 12 + 4 + (d + 7) / 8;
    case GainScheme::KMeans2: return 12 + 4 * k + (d + 7) / 8;
    case GainScheme::KMeans4: return 12 + 4 * k + (2 * d + 7) / 8;
    case GainScheme::KMeans8: return 12 + 4 * k + (3 * d + 7) / 8;
    case GainScheme::SparseDelta: {
      uint64_t ib = 1;
      while ((uint64_t(1) << ib) < d) ++ib;
      return 12 + 8 + (uint64_t(e.params[0]) * (ib + 8) + 7) / 8;
    }
    case GainScheme::RiceDelta: return 12 + 12 + uint64_t(e.params[2]);
    case GainScheme::Unit: return 12;
  }
  return 0;
}

std::vector<float> adapter_gains(int64_t n, int64_t d, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> g(size_t(n * d));
  for (float& v : g) v = 1.0f + 0.02f * rng.normal();
  return g;
}

}  // namespace

// The record layout, byte for byte, on a small example.
TEST(codec_record_layout) {
  const float g[3] = {1.0f, 1.7f, 0.3f};
  const EncodedGain e = encode_delta(4, g, 3);
  std::vector<uint8_t> r;
  append_record(e, r);
  std::vector<uint8_t> want = {6, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0};
  uint32_t sb;
  std::memcpy(&sb, &e.params[0], 4);
  for (int i = 0; i < 4; ++i) want.push_back(uint8_t(sb >> (8 * i)));
  want.push_back(0x70);
  want.push_back(0x09);
  CHECK(r == want);
  CHECK(record_bytes(e) == want.size());
  const std::vector<uint8_t> blob = serialize_adapter({e, e});
  CHECK(blob.size() == 8 + 2 * want.size());
  CHECK(std::vector<uint8_t>(blob.begin(), blob.begin() + 8) ==
        std::vector<uint8_t>({1, 0, 0, 0, 2, 0, 0, 0}));
}

// Exact sizes: formula == record_bytes == bytes written, for every method and
// awkward sizes, and the round trip restores every encoding exactly. Prints
// the default adapter's sizes (9 x 256).
TEST(codec_record_exact_sizes_and_round_trip) {
  for (int64_t d : {1, 2, 3, 31, 33, 256, 257}) {
    const std::vector<float> g = adapter_gains(3, d, 100 + uint64_t(d));
    for (Method m : all_methods()) {
      if (method_needs_loss(m)) continue;
      EncodeOptions o;
      o.group_size = 7;
      o.byte_budget = 200;  // sparse_delta
      const EncodedAdapter ad = encode_adapter(m, g.data(), 3, d, o);
      uint64_t sum = kAdapterHeaderBytes, compact = kCompactAdapterHeaderBytes;
      for (const EncodedGain& e : ad.tensors) {
        std::vector<uint8_t> r;
        append_record(e, r);
        CHECK_MSG(
            r.size() == record_bytes(e) && r.size() == formula(e),
            method_name(m) << " d=" << d << " wrote " << r.size() << " formula " << formula(e));
        const EncodedGain back = parse_record(r.data(), r.size());
        CHECK(same(back, e));
        sum += r.size();
        compact += r.size() - (kRecordHeaderBytes - kCompactRecordHeaderBytes);
      }
      const std::vector<uint8_t> blob = serialize_adapter(ad.tensors);
      CHECK(blob.size() == sum && blob.size() == adapter_bytes(ad.tensors));
      CHECK(serialize_adapter(ad.tensors, 2).size() == compact &&
            adapter_bytes(ad.tensors, 2) == compact);
      const std::vector<EncodedGain> back = parse_adapter(blob.data(), blob.size(), 3, d);
      CHECK(back.size() == 3);
      for (size_t t = 0; t < back.size(); ++t) CHECK(same(back[t], ad.tensors[t]));
    }
  }
  // The default adapter: 9 norms x 256 gains.
  const std::vector<float> g = adapter_gains(9, 256, 7);
  std::printf("    default adapter (9 x 256): method, adapter bytes, params+payload bytes\n");
  for (Method m : all_methods()) {
    if (method_needs_loss(m)) continue;
    EncodeOptions o;
    o.byte_budget = 128;  // sparse_delta
    const EncodedAdapter ad = encode_adapter(m, g.data(), 9, 256, o);
    uint64_t data = 0;
    for (const EncodedGain& e : ad.tensors) data += 4 * e.params.size() + e.payload.size();
    std::printf("    %-16s %6llu %6llu\n", method_name(m),
                (unsigned long long)adapter_bytes(ad.tensors, ad.format), (unsigned long long)data);
    const uint64_t per = formula(ad.tensors[0]);
    const bool fixed = m != Method::KMeans16 && m != Method::KMeans256 && m != Method::KMeans2 &&
                       m != Method::KMeans4 && m != Method::KMeans8 && m != Method::SparseDelta &&
                       m != Method::RiceInt4Delta && m != Method::RiceInt3Delta;
    if (fixed && ad.format == 1) CHECK(adapter_bytes(ad.tensors) == 8 + 9 * per);
    if (fixed && ad.format == 2) CHECK(adapter_bytes(ad.tensors, 2) == 12 + 9 * (per - 9));
  }
  // The low-rate sizes of the README table (format 2).
  CHECK(adapter_bytes(encode_adapter(Method::Int3Delta, g.data(), 9, 256).tensors, 2) ==
        12 + 9 * 103);
  CHECK(adapter_bytes(encode_adapter(Method::Int2Delta, g.data(), 9, 256).tensors, 2) ==
        12 + 9 * 71);
  CHECK(adapter_bytes(encode_adapter(Method::Sign1Delta, g.data(), 9, 256).tensors, 2) ==
        12 + 9 * 39);
  CHECK(adapter_bytes(encode_adapter(Method::Int8PerTensor, g.data(), 9, 256).tensors) ==
        8 + 9 * 272);
  CHECK(adapter_bytes(encode_adapter(Method::Int4Delta, g.data(), 9, 256).tensors) == 8 + 9 * 144);
  CHECK(adapter_bytes(encode_adapter(Method::RawF16, g.data(), 9, 256).tensors) == 8 + 9 * 524);
}

// Corrupt or mismatched records: each refused, the message says what is wrong.
TEST(codec_record_corruption_rejected) {
  const std::vector<float> g = adapter_gains(2, 33, 9);
  std::vector<float> few(33);  // 5 distinct gains: a codebook of k = 5
  for (size_t i = 0; i < few.size(); ++i) few[i] = 1.0f + 0.01f * float(i % 5);
  const EncodedGain k16 = encode_kmeans(16, few.data(), 33);
  CHECK(k16.params.size() == 5);
  const EncodedGain grp = encode_int8_group(g.data(), 33, 8);
  std::vector<uint8_t> r;
  append_record(k16, r);

  // Every truncation.
  for (size_t n = 0; n < r.size(); ++n) {
    const std::string m = thrown_message<std::invalid_argument>([&] { parse_record(r.data(), n); });
    CHECK_MSG(mentions(m, "gain record:") && mentions(m, "truncated"), "n=" << n << ": " << m);
  }
  // Trailing bytes when the record must fill the buffer; fine with `consumed`.
  {
    std::vector<uint8_t> longer = r;
    longer.push_back(0);
    CHECK(mentions(
        thrown_message<std::invalid_argument>([&] { parse_record(longer.data(), longer.size()); }),
        "1 bytes after the record"));
    size_t used = 0;
    parse_record(longer.data(), longer.size(), &used);
    CHECK(used == r.size());
  }
  auto edited = [&](std::vector<uint8_t> b, size_t at, uint32_t v) {
    put_u32(b, at, v);
    return thrown_message<std::invalid_argument>([&] { parse_record(b.data(), b.size()); });
  };
  CHECK(mentions(edited(r, 0, 18), "unknown scheme id 18") &&
        mentions(edited(r, 0, 18), "7 (kmeans16)"));
  CHECK(mentions(edited(r, 0, 0xffffffffu), "unknown scheme id 4294967295"));
  CHECK(mentions(edited(r, 4, 0), "d = 0"));
  CHECK(mentions(edited(r, 4, (1u << 24) + 1), "d = 16777217"));
  CHECK(mentions(edited(r, 4, 35), "truncated: the payload needs 18 bytes"));
  CHECK(mentions(edited(r, 4, 31), "bytes after the record"));
  CHECK(mentions(edited(r, 8, 0xffffffffu), "params need 17179869180 bytes"));
  CHECK(mentions(edited(r, 8, 0), "1..16 centroids"));
  // A codebook index >= k: make gain 0's index 15 with fewer centroids.
  {
    std::vector<uint8_t> b = r;
    const size_t pay = 12 + 4 * k16.params.size();
    b[pay] = uint8_t((b[pay] & 0xf0) | 0x0f);
    const std::string m =
        thrown_message<std::invalid_argument>([&] { parse_record(b.data(), b.size()); });
    CHECK_MSG(mentions(m, "gain[0] has codebook index 15, expected < k = 5"), m);
  }
  // The padding nibble of an odd d.
  {
    std::vector<uint8_t> b = r;
    b.back() = uint8_t(b.back() | 0x10);
    CHECK(mentions(thrown_message<std::invalid_argument>([&] { parse_record(b.data(), b.size()); }),
                   "padding nibble"));
  }
  // Centroids out of order, a NaN param, a bad block size.
  {
    std::vector<uint8_t> b = r;
    std::memcpy(b.data() + 12, b.data() + 16, 4);  // c0 = c1
    CHECK(mentions(thrown_message<std::invalid_argument>([&] { parse_record(b.data(), b.size()); }),
                   "strictly increasing"));
    put_u32(b, 12, 0x7fc00000u);
    CHECK(mentions(thrown_message<std::invalid_argument>([&] { parse_record(b.data(), b.size()); }),
                   "params[0] is not finite"));
    std::vector<uint8_t> gr;
    append_record(grp, gr);
    const float half = 8.5f;
    std::memcpy(gr.data() + 12, &half, 4);
    CHECK(
        mentions(thrown_message<std::invalid_argument>([&] { parse_record(gr.data(), gr.size()); }),
                 "block size B"));
  }
  // A decoded gain that is not finite (q * scale overflowing).
  {
    const float huge = 3e38f;
    EncodedGain e;
    e.scheme = GainScheme::Int8PerTensor;
    e.d = 1;
    e.params = {huge};
    e.payload = {100};
    CHECK(mentions(thrown_message<std::invalid_argument>([&] {
                     std::vector<uint8_t> o;
                     append_record(e, o);
                   }),
                   "non-finite"));
    std::vector<uint8_t> b = {2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 100};
    std::memcpy(b.data() + 12, &huge, 4);
    CHECK(mentions(thrown_message<std::invalid_argument>([&] { parse_record(b.data(), b.size()); }),
                   "non-finite"));
  }
  CHECK(mentions(thrown_message<std::invalid_argument>([&] { parse_record(nullptr, 5); }), "null"));

  // Adapter blobs.
  const std::vector<uint8_t> blob = serialize_adapter({k16, grp});
  parse_adapter(blob.data(), blob.size(), 2, 33);
  for (size_t n = 0; n < blob.size(); ++n)
    CHECK_MSG(thrown_message<std::invalid_argument>([&] { parse_adapter(blob.data(), n); }) !=
                  "<no exception>",
              "n=" << n);
  auto blob_edit = [&](size_t at, uint32_t v) {
    std::vector<uint8_t> b = blob;
    put_u32(b, at, v);
    return thrown_message<std::invalid_argument>([&] { parse_adapter(b.data(), b.size()); });
  };
  CHECK(mentions(blob_edit(0, 3), "format version 3, expected 1 or 2"));
  CHECK(mentions(blob_edit(4, 0), "0 tensors"));
  CHECK(mentions(blob_edit(4, 3), "tensor 2") || mentions(blob_edit(4, 3), "truncated"));
  CHECK(mentions(blob_edit(4, 1), "bytes after the last record"));
  CHECK(mentions(blob_edit(4, 70000), "70000 tensors"));
  CHECK(mentions(blob_edit(4, 60000), "truncated: 60000 records"));
  CHECK(mentions(
      thrown_message<std::invalid_argument>([&] { parse_adapter(blob.data(), blob.size(), 9); }),
      "2 tensors, expected 9"));
  CHECK(mentions(thrown_message<std::invalid_argument>(
                     [&] { parse_adapter(blob.data(), blob.size(), 2, 256); }),
                 "has d = 33, expected 256"));
  CHECK(mentions(blob_edit(8, 77), "tensor 0") &&
        mentions(blob_edit(8, 77), "unknown scheme id 77"));
  // Writing refuses what parsing would refuse.
  EncodedGain broken = grp;
  broken.payload.pop_back();
  CHECK(mentions(thrown_message<std::invalid_argument>([&] {
                   serialize_adapter({k16, broken});
                 }),
                 "tensor 1"));
  CHECK(mentions(thrown_message<std::invalid_argument>([&] { record_bytes(broken); }),
                 "expected 33"));
  CHECK(
      mentions(thrown_message<std::invalid_argument>([&] { serialize_adapter({}); }), "0 tensors"));
}
