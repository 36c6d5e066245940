// A deterministic mutation fuzzer for the container parser. It runs in the
// normal test suite, so also under ASan/UBSan. Each parse of a mutated file
// must either throw a std::exception or succeed with a self-consistent result
// (check_consistent); it must never crash or hang. Besides blind mutations
// (truncation, bit flips, byte overwrites, which the checksums catch), it edits
// the section table and header and then recomputes every checksum, so the
// deeper checks (offsets, overlaps, sizes, names, types, padding) are reached;
// the test asserts that each of those checks was in fact reached.
// native/fuzz/container_fuzzer.cpp is the libFuzzer counterpart.
#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "harness.h"
#include "le_bytes.h"
#include "io/container.h"
#include "io/crc32c.h"

using namespace ternorm;
using namespace ternorm::io;
using namespace ternorm::test;

namespace {

// Positions of the table entries whose fixed part lies inside both the
// buffer and the table the header claims (a mutated file may claim anything).
std::vector<size_t> entry_positions(const Bytes& b) {
  std::vector<size_t> out;
  if (b.size() < 64) return out;
  const uint64_t table_end =
      std::min<uint64_t>(64 + std::min<uint64_t>(rd64(b, 24), b.size()), b.size());
  const uint32_t count = rd32(b, 32);
  uint64_t pos = 64;
  for (uint32_t i = 0; i < count && pos + 32 <= table_end; ++i) {
    out.push_back(size_t(pos));
    const uint64_t name_len = uint64_t(b[pos + 24]) | uint64_t(b[pos + 25]) << 8;
    pos += (32 + name_len + 7) / 8 * 8;
  }
  return out;
}

// Recomputes every checksum that can be computed: each payload CRC whose
// range lies in the buffer, the table CRC when the claimed table does, and the
// header CRC.
void reseal(Bytes& b) {
  if (b.size() < 64) return;
  for (size_t e : entry_positions(b)) {
    const uint64_t off = rd64(b, e), n = rd64(b, e + 8);
    if (off <= b.size() && n <= b.size() - off) wr32(b, e + 20, crc32c(b.data() + off, size_t(n)));
  }
  const uint64_t table = rd64(b, 24);
  if (table <= b.size() - 64) wr32(b, 36, crc32c(b.data() + 64, size_t(table)));
  wr32(b, 60, crc32c(b.data(), 60));
}

// What a successful parse promises. Any violation is a parser bug.
void check_consistent(const Container& c, const Bytes& file, const Limits& lim) {
  CHECK(c.file_bytes() == file.size());
  CHECK(std::memcmp(c.bytes(), file.data(), file.size()) == 0);
  CHECK(c.sections().size() <= lim.max_sections);
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  std::set<std::string> names;
  for (const Section& s : c.sections()) {
    CHECK(!s.name.empty() && s.name.size() <= lim.max_name_bytes);
    CHECK(names.insert(s.name).second);
    CHECK(c.find(s.name) == &s);
    CHECK(s.offset % 64 == 0 && s.offset >= 64);
    CHECK(s.offset <= file.size() && s.bytes <= file.size() - s.offset);
    CHECK(s.bytes % dtype_size(s.type) == 0);
    CHECK(s.data == c.bytes() + s.offset);
    CHECK(reinterpret_cast<uintptr_t>(s.data) % 64 == 0);
    CHECK(crc32c(s.data, size_t(s.bytes)) == s.crc);
    ranges.push_back({s.offset, s.offset + s.bytes});
    const int64_t n = int64_t(s.count());
    switch (s.type) {
      case DType::U8: CHECK(c.get_u8(s.name, n).size == s.count()); break;
      case DType::I8: CHECK(c.get_i8(s.name, n).size == s.count()); break;
      case DType::U16: CHECK(c.get_u16(s.name, n).size == s.count()); break;
      case DType::I16: CHECK(c.get_i16(s.name, n).size == s.count()); break;
      case DType::F16: CHECK(c.get_f16(s.name, n).size == s.count()); break;
      case DType::U32: CHECK(c.get_u32(s.name, n).size == s.count()); break;
      case DType::I32: CHECK(c.get_i32(s.name, n).size == s.count()); break;
      case DType::F32: CHECK(c.get_f32(s.name, n).size == s.count()); break;
      case DType::U64: CHECK(c.get_u64(s.name, n).size == s.count()); break;
      case DType::I64: CHECK(c.get_i64(s.name, n).size == s.count()); break;
      case DType::F64: CHECK(c.get_f64(s.name, n).size == s.count()); break;
      case DType::Utf8: CHECK(c.get_text(s.name).size() == s.bytes); break;
      case DType::Json: CHECK(c.get_json(s.name).size() == s.bytes); break;
    }
    CHECK_THROWS(c.get_f32(s.name, n + 1));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) CHECK(ranges[i].first >= ranges[i - 1].second);
  // Written again, the sections make a file with the same content.
  // (The writer's layout can be up to 63 bytes longer than another valid one.)
  Limits relaxed = lim;
  relaxed.max_file_bytes += 64;
  Writer w(c.kind(), relaxed);
  for (const Section& s : c.sections()) w.add(s.name, s.type, s.data, size_t(s.bytes));
  const Bytes again = w.finish();
  const Container c2 = Container::copy(again.data(), again.size(), ParseOptions{relaxed, c.kind()});
  CHECK(fingerprint(c2) == fingerprint(c));
}

// The files mutations start from.
std::vector<Bytes> seed_files() {
  std::vector<Bytes> seeds;
  seeds.push_back(Writer(FileKind::Model).finish());

  Writer adapter(FileKind::Adapter);
  std::vector<float> g(23);
  for (size_t i = 0; i < g.size(); ++i) g[i] = 1.0f + 0.02f * float(i);
  adapter.add_f32("norm.0.gain", g.data(), g.size());
  adapter.add_f32("norm.1.gain", g.data(), 7);
  adapter.add_json("config", "{\"d\":23,\"layers\":2}");
  const uint8_t fp[32] = {9, 8, 7};
  adapter.add_u8(kBaseFingerprintSection, fp, 32);
  seeds.push_back(adapter.finish());

  Writer types(FileKind::EncodedAdapter);
  const uint8_t raw[48] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  const DType all[] = {DType::U8,  DType::I8,  DType::U16, DType::I16, DType::F16, DType::U32,
                       DType::I32, DType::F32, DType::U64, DType::I64, DType::F64};
  for (DType t : all) types.add(std::string("t.") + dtype_name(t), t, raw, 3 * dtype_size(t));
  types.add_text("note", "caf\xC3\xA9 \xE2\x9C\x93");
  types.add_f32("empty", nullptr, 0);
  seeds.push_back(types.finish());

  Writer many(FileKind::Model);
  for (int i = 0; i < 40; ++i) many.add_u8("s" + std::to_string(i), raw, size_t(i % 9));
  seeds.push_back(many.finish());

  // A valid file the writer would not produce: payloads in reverse table order.
  Bytes rev = seeds[1];
  const std::vector<size_t> pos = entry_positions(rev);
  std::vector<Bytes> payloads;
  for (size_t e : pos)
    payloads.emplace_back(rev.begin() + long(rd64(rev, e)),
                          rev.begin() + long(rd64(rev, e) + rd64(rev, e + 8)));
  const uint64_t data_start = (64 + rd64(rev, 24) + 63) / 64 * 64;
  std::fill(rev.begin() + long(data_start), rev.end(), 0);
  uint64_t cursor = data_start;
  for (size_t k = pos.size(); k-- > 0;) {
    cursor = (cursor + 63) / 64 * 64;
    wr64(rev, pos[k], cursor);
    std::copy(payloads[k].begin(), payloads[k].end(), rev.begin() + long(cursor));
    cursor += payloads[k].size();
  }
  rev.resize(size_t(cursor));
  wr64(rev, 16, cursor);
  reseal(rev);
  seeds.push_back(rev);
  return seeds;
}

struct Outcome {
  int64_t parses = 0, accepted = 0;
  std::map<std::string, int64_t> reached;  // check (message fragment) -> times it fired
};

// Fragments of the parser's messages, one per check the structured mutations
// must reach.
const char* const kChecks[] = {
    "header checksum mismatch",
    "section table checksum mismatch",
    "checksum mismatch in section",
    "file format version",
    "unknown file kind",
    "reserved",
    "above the limit",
    "trailing data",
    "truncated",
    "does not fit in a file",
    "cannot hold",
    "runs past the end",
    "unused bytes",
    "empty section name",
    "not valid UTF-8 or contains control",
    "unknown element type",
    "not a whole number",
    "not a multiple of 64",
    "inside the header",
    "needs bytes",
    "overlaps section",
    "duplicate section name",
    "sections end at byte",
    "nonzero padding",
    "is not valid UTF-8 at byte",
};

void try_parse(const Bytes& b, const ParseOptions& o, Outcome& out) {
  ++out.parses;
  std::string msg;
  try {
    const Container c = Container::copy(b.data(), b.size(), o);
    ++out.accepted;
    check_consistent(c, b, o.limits);
    return;
  } catch (const std::exception& e) {
    msg = e.what();
  }
  CHECK_MSG(!msg.empty(), "an exception without a message");
  for (const char* k : kChecks)
    if (msg.find(k) != std::string::npos) ++out.reached[k];
}

uint64_t pick_u64(Rng& rng, uint64_t around) {
  switch (rng.below(8)) {
    case 0: return rng.next();
    case 1: return 0;
    case 2: return around + 1;
    case 3: return around - 1;
    case 4: return around + 64;
    case 5: return around - 64;
    case 6: return ~uint64_t(0) - uint64_t(rng.below(128));
    default: return uint64_t(rng.below(4096));
  }
}

// One structural edit of a (possibly already mutated) file.
void mutate(Bytes& b, Rng& rng) {
  if (b.size() < 64) return;
  const std::vector<size_t> es = entry_positions(b);
  const size_t e = es.empty() ? 0 : es[size_t(rng.below(int64_t(es.size())))];
  const size_t other = es.empty() ? 0 : es[size_t(rng.below(int64_t(es.size())))];
  switch (es.empty() ? 8 + rng.below(8) : rng.below(17)) {
    case 0: {  // payload offset: somewhere, onto another section, misaligned, ...
      const uint64_t cur = rd64(b, e);
      const uint64_t choices[] = {pick_u64(rng, cur),
                                  rd64(b, other),
                                  cur + 64,
                                  cur - 64,
                                  cur + 8,
                                  uint64_t(b.size()),
                                  64,
                                  (64 + rd64(b, 24)) / 64 * 64};
      wr64(b, e, choices[rng.below(8)]);
      break;
    }
    case 1: {  // payload size
      const uint64_t cur = rd64(b, e + 8);
      const uint64_t choices[] = {pick_u64(rng, cur), rd64(b, other + 8), cur + 1, cur + 64,
                                  uint64_t(b.size()) - std::min<uint64_t>(rd64(b, e), b.size())};
      wr64(b, e + 8, choices[rng.below(5)]);
      break;
    }
    case 2:  // element type
      wr32(b, e + 16, rng.below(4) == 0 ? uint32_t(rng.next()) : uint32_t(rng.below(16)));
      break;
    case 3: {  // a name byte: invalid UTF-8, control, NUL, or just different
      const size_t len = size_t(b[e + 24]) | size_t(b[e + 25]) << 8;
      if (len == 0 || e + 32 + len > b.size()) break;
      const uint8_t bad[] = {
          0xFF, 0xC0, 0x80, 0xED, 0xF5, 0x00, '\n', 0x7F, 0xC2, uint8_t(rng.next()), 'a'};
      const size_t at = e + 32 + size_t(rng.below(int64_t(len)));
      b[at] = bad[rng.below(11)];
      break;
    }
    case 4: {  // copy another entry's name (a duplicate when the lengths match)
      const size_t la = size_t(b[e + 24]) | size_t(b[e + 25]) << 8;
      const size_t lb = size_t(b[other + 24]) | size_t(b[other + 25]) << 8;
      const size_t n = std::min(la, lb);
      if (e + 32 + n <= b.size() && other + 32 + n <= b.size())
        std::memmove(&b[e + 32], &b[other + 32], n);
      break;
    }
    case 5: {  // name length
      const uint16_t v =
          rng.below(2) ? uint16_t(rng.next()) : uint16_t(b[e + 24] + rng.below(17) - 8);
      b[e + 24] = uint8_t(v);
      b[e + 25] = uint8_t(v >> 8);
      break;
    }
    case 6: {  // reserved bytes of an entry
      const size_t at = e + 26 + size_t(rng.below(6));
      b[at] = uint8_t(rng.next() | 1);
      break;
    }
    case 7: {  // a payload byte (its CRC is recomputed: reaches the UTF-8 check of text sections)
      const uint64_t off = rd64(b, e), n = rd64(b, e + 8);
      if (n > 0 && off < b.size() && n <= b.size() - off) {
        const uint8_t bad[] = {0xFF, 0xC0, 0x80, 0xED, uint8_t(rng.next())};
        const size_t at =
            size_t(off + uint64_t(rng.below(int64_t(std::min<uint64_t>(n, 1 << 20)))));
        b[at] = bad[rng.below(5)];
      }
      break;
    }
    case 8:  // section count
      wr32(b, 32,
           rng.below(2) ? uint32_t(rd32(b, 32) + rng.below(5) - 2)
                        : uint32_t(pick_u64(rng, rd32(b, 32))));
      break;
    case 9:  // table size
      wr64(b, 24,
           rng.below(2) ? rd64(b, 24) + uint64_t(rng.below(33)) - 16 : pick_u64(rng, rd64(b, 24)));
      break;
    case 10:  // recorded file size
      wr64(b, 16, pick_u64(rng, rd64(b, 16)));
      break;
    case 11: {  // kind or version (each draw its own statement: argument order is unspecified)
      const size_t at = rng.below(2) ? 12 : 8;
      wr32(b, at, uint32_t(rng.below(6)));
      break;
    }
    case 12: {  // reserved header bytes
      const size_t at = 40 + size_t(rng.below(20));
      b[at] = uint8_t(rng.next() | 1);
      break;
    }
    case 13: {  // truncate or extend
      if (rng.below(2)) {
        b.resize(size_t(rng.below(int64_t(b.size()) + 1)));
      } else {
        const size_t extra = size_t(rng.below(130));
        const uint8_t fill = rng.below(2) ? 0 : uint8_t(rng.next());
        b.resize(b.size() + extra, fill);
      }
      break;
    }
    case 14: {  // a padding byte anywhere in the file
      const size_t at = size_t(rng.below(int64_t(b.size())));
      b[at] = uint8_t(rng.next());
      break;
    }
    case 15:  // move a section's payload and the recorded file size along with it
      if (!es.empty()) {
        const uint64_t off = rd64(b, e) + 64 * uint64_t(rng.below(3));
        wr64(b, e, off);
        if (off + rd64(b, e + 8) > rd64(b, 16)) wr64(b, 16, off + rd64(b, e + 8));
        if (rd64(b, 16) < (uint64_t(1) << 20)) b.resize(size_t(rd64(b, 16)), 0);
      }
      break;
    default: {  // swap two entries' offsets
      const uint64_t x = rd64(b, e), y = rd64(b, other);
      wr64(b, e, y);
      wr64(b, other, x);
      break;
    }
  }
}

}  // namespace

TEST(io_fuzz_seeds_are_valid) {
  const std::vector<Bytes> seeds = seed_files();
  Outcome out;
  for (const Bytes& s : seeds) try_parse(s, ParseOptions{}, out);
  CHECK(out.accepted == int64_t(seeds.size()));
}

TEST(io_fuzz_truncation_and_extension) {
  Outcome out;
  for (const Bytes& s : seed_files()) {
    for (size_t n = 0; n < s.size(); ++n) {
      const Bytes cut(s.begin(), s.begin() + long(n));
      const int64_t before = out.accepted;
      try_parse(cut, ParseOptions{}, out);
      CHECK_MSG(out.accepted == before,
                "a file cut to " << n << " of " << s.size() << " bytes was accepted");
    }
    for (size_t extra = 1; extra <= 70; ++extra) {
      Bytes longer = s;
      longer.resize(s.size() + extra, 0);
      const int64_t before = out.accepted;
      try_parse(longer, ParseOptions{}, out);
      CHECK(out.accepted == before);
    }
  }
  std::printf("    truncation/extension: %lld parses\n", static_cast<long long>(out.parses));
}

TEST(io_fuzz_every_single_bit_flip_is_detected) {
  // Every byte of a valid file is under a checksum or must be zero, so no
  // single flipped bit may go unnoticed.
  Outcome out;
  for (const Bytes& s : seed_files()) {
    for (size_t i = 0; i < s.size(); ++i)
      for (int bit = 0; bit < 8; ++bit) {
        Bytes b = s;
        b[i] ^= uint8_t(1u << bit);
        const int64_t before = out.accepted;
        try_parse(b, ParseOptions{}, out);
        CHECK_MSG(out.accepted == before,
                  "flip of bit " << bit << " of byte " << i << " went unnoticed");
      }
  }
  std::printf("    single-bit flips: %lld parses\n", static_cast<long long>(out.parses));
}

TEST(io_fuzz_random_overwrites) {
  // Blind damage: several random bytes overwritten, a random cut, a random
  // tail. Checksums catch nearly all of it; what passes must be consistent.
  Rng rng(0xF022);
  Outcome out;
  const std::vector<Bytes> seeds = seed_files();
  for (int it = 0; it < 6000; ++it) {
    Bytes b = seeds[size_t(rng.below(int64_t(seeds.size())))];
    const int edits = 1 + int(rng.below(6));
    for (int k = 0; k < edits && !b.empty(); ++k) {
      const size_t at = size_t(rng.below(int64_t(b.size())));
      b[at] = uint8_t(rng.next());
    }
    if (rng.below(8) == 0) b.resize(size_t(rng.below(int64_t(b.size()) + 1)));
    try_parse(b, ParseOptions{}, out);
  }
  std::printf("    random overwrites: %lld parses, %lld accepted\n",
              static_cast<long long>(out.parses), static_cast<long long>(out.accepted));
}

TEST(io_fuzz_structured_edits_with_checksums_recomputed) {
  Rng rng(0x5EC7);
  Outcome out;
  const std::vector<Bytes> seeds = seed_files();
  ParseOptions tight;  // small limits, so the limit checks fire too
  tight.limits.max_file_bytes = 4096;
  tight.limits.max_sections = 32;
  tight.limits.max_name_bytes = 12;
  for (int it = 0; it < 30000; ++it) {
    Bytes b = seeds[size_t(rng.below(int64_t(seeds.size())))];
    const int edits = 1 + int(rng.below(3));
    for (int k = 0; k < edits; ++k) mutate(b, rng);
    if (rng.below(10) != 0) reseal(b);
    try_parse(b, rng.below(5) == 0 ? tight : ParseOptions{}, out);
  }
  std::printf("    structured edits: %lld parses, %lld accepted\n",
              static_cast<long long>(out.parses), static_cast<long long>(out.accepted));
  for (const char* k : kChecks) {
    std::printf("      %6lld x \"%s\"\n", static_cast<long long>(out.reached[k]), k);
    CHECK_MSG(out.reached[k] > 0, "the fuzzer never reached the check \"" << k << "\"");
  }
  CHECK(out.accepted > 0);  // some edits keep a file valid (payloads swapped, moved)
}

TEST(io_fuzz_writer_round_trips) {
  // Random sections (names with multi-byte characters, every type, sizes
  // around the 64-byte alignment) written and read back bit for bit.
  Rng rng(0xAB1E);
  const char* pieces[] = {"norm", ".", "gain", "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80",
                          "_",    "7", "w"};
  for (int it = 0; it < 300; ++it) {
    const FileKind kind = FileKind(1 + rng.below(3));
    Writer w(kind);
    std::vector<std::pair<std::string, std::pair<DType, Bytes>>> added;
    std::set<std::string> used;
    const int n = int(rng.below(12));
    for (int i = 0; i < n; ++i) {
      std::string name;
      const int parts = 1 + int(rng.below(5));
      for (int k = 0; k < parts; ++k) name += pieces[rng.below(9)];
      if (!used.insert(name).second) continue;
      const DType t = DType(1 + rng.below(11));  // numeric types: any bytes are valid
      Bytes payload(size_t(rng.below(150)) * dtype_size(t));
      for (auto& x : payload) x = uint8_t(rng.next());
      w.add(name, t, payload.data(), payload.size());
      added.push_back({name, {t, payload}});
    }
    const Bytes file = w.finish();
    CHECK(file.size() == w.file_bytes());
    const Container c = Container::copy(file.data(), file.size(), ParseOptions{Limits{}, kind});
    CHECK(c.sections().size() == added.size());
    for (size_t i = 0; i < added.size(); ++i) {
      const Section& s = c.sections()[i];
      CHECK(s.name == added[i].first && s.type == added[i].second.first);
      CHECK(s.bytes == added[i].second.second.size());
      CHECK(s.bytes == 0 ||
            std::memcmp(s.data, added[i].second.second.data(), size_t(s.bytes)) == 0);
    }
  }
}
