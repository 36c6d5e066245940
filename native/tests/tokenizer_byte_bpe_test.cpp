// The project byte BPE in the core: encoding equals a slow replay of every merge in order,
// round trips on any bytes, training's tie rule, and a fuzz of the "TBPE" parser (every
// truncation and bit flip rejected with a message, random blobs never crash).
#include <cstring>
#include <string>
#include <vector>

#include "harness.h"
#include "tokenizer/byte_bpe.h"
#include "tokenizer/byte_pretokenize.h"

using namespace ternorm;
using namespace ternorm::test;
using tok::ByteBpe;

namespace {

std::vector<uint8_t> bytes_of(const std::string& s) {
  return std::vector<uint8_t>(s.begin(), s.end());
}

// A word soup with UTF-8, digits, punctuation, runs of spaces and some invalid bytes.
std::vector<uint8_t> corpus(size_t n, uint64_t seed) {
  static const char* words[] = {"the", "whale", "Ahab", "don't",  "café", "naïve",
                                "σ",   "1790",  "3.14", "return", "=>",   "  ",
                                "\n",  "\t",    "it's", "ü",      "—",    "x"};
  Rng r(seed);
  std::vector<uint8_t> out;
  while (out.size() < n) {
    if (r.below(50) == 0) out.push_back(uint8_t(0x80 + r.below(128)));
    const std::string w = words[r.below(sizeof words / sizeof *words)];
    out.insert(out.end(), w.begin(), w.end());
    out.push_back(r.below(4) == 0 ? ',' : ' ');
  }
  return out;
}

// Reference: per chunk, replay each merge in order, left to right without overlap.
std::vector<int32_t> replay(const ByteBpe& t, const std::vector<uint8_t>& b) {
  std::vector<int32_t> out;
  const auto& m = t.merges();
  for (size_t i = 0; i < b.size();) {
    const size_t e = tok::byte_chunk_end(b.data(), b.size(), i);
    std::vector<int32_t> sym(b.begin() + long(i), b.begin() + long(e));
    for (size_t k = 0; k < m.size() / 2 && sym.size() > 1; ++k) {
      std::vector<int32_t> next;
      for (size_t j = 0; j < sym.size(); ++j) {
        if (j + 1 < sym.size() && sym[j] == m[2 * k] && sym[j + 1] == m[2 * k + 1]) {
          next.push_back(256 + int32_t(k));
          ++j;
        } else {
          next.push_back(sym[j]);
        }
      }
      sym.swap(next);
    }
    out.insert(out.end(), sym.begin(), sym.end());
    i = e;
  }
  return out;
}

uint32_t crc32_ref(const uint8_t* p, size_t n) {  // bitwise zlib CRC-32
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
  }
  return ~c;
}

}  // namespace

TEST(tokenizer_byte_bpe_encode_matches_replay_and_round_trips) {
  const auto text = corpus(60000, 1);
  const ByteBpe t = ByteBpe::train(text.data(), text.size(), 400, 2);
  CHECK(t.vocab_size() == 400);
  const auto held = corpus(20000, 2);
  const auto ids = t.encode(held.data(), held.size());
  CHECK(ids == replay(t, held));
  CHECK(ids.size() < held.size() / 2);
  CHECK(t.decode(ids.data(), ids.size()) == held);
  Rng r(3);
  for (size_t n : {size_t(0), size_t(1), size_t(2), size_t(7), size_t(5000)}) {
    std::vector<uint8_t> b(n);
    for (auto& x : b) x = uint8_t(r.below(256));
    const auto i2 = t.encode(b.data(), b.size());
    CHECK(i2 == replay(t, b));
    CHECK(t.decode(i2.data(), i2.size()) == b);
  }
  const int32_t bad[] = {1, 400};
  CHECK(mentions(thrown_message([&] { t.decode(bad, 2); }),
                 "token 1 is 400, expected an integer in [0, 400)"));
}

TEST(tokenizer_byte_bpe_training_tie_rule) {
  // (" ",c), (a,b), (c,d) all occur 3 times: the smallest pair wins, then (a,b), (" c",d), ("
  // ",ab).
  const auto text = bytes_of("ab ab ab cd cd cd");
  const ByteBpe t = ByteBpe::train(text.data(), text.size(), 260, 2);
  CHECK((t.merges() == std::vector<uint16_t>{32, 99, 97, 98, 256, 100, 32, 257}));
  CHECK(mentions(thrown_message([&] { ByteBpe::train(text.data(), text.size(), 261, 2); }),
                 "supports only 4 merges with pairs occurring >= 2 times"));
  CHECK(mentions(thrown_message([&] { ByteBpe::train(text.data(), text.size(), 255, 2); }),
                 "vocabSize"));
  const auto aa = bytes_of("aa aa aa");
  const ByteBpe t2 = ByteBpe::train(aa.data(), aa.size(), 257, 2);
  const auto five = bytes_of("aaaaa");
  CHECK((t2.encode(five.data(), five.size()) == std::vector<int32_t>{256, 256, 97}));
}

TEST(tokenizer_byte_bpe_serialized_form_fuzz) {
  const auto text = corpus(20000, 4);
  const ByteBpe t = ByteBpe::train(text.data(), text.size(), 300, 2);
  const auto blob = t.serialize();
  CHECK(blob.size() == 12 + 4 * 44 + 4);
  CHECK(ByteBpe::deserialize(blob.data(), blob.size()).merges() == t.merges());
  for (size_t n = 0; n < blob.size(); ++n)
    CHECK(mentions(thrown_message([&] { ByteBpe::deserialize(blob.data(), n); }),
                   "invalid tokenizer data"));
  for (size_t i = 0; i < blob.size(); ++i)
    for (int bit = 0; bit < 8; ++bit) {
      auto c = blob;
      c[i] ^= uint8_t(1 << bit);
      CHECK(mentions(thrown_message([&] { ByteBpe::deserialize(c.data(), c.size()); }),
                     "invalid tokenizer data"));
    }
  // Random merges with a recomputed checksum reach the merge checks: parsed or rejected with a
  // message, never a crash.
  Rng r(5);
  int parsed = 0;
  for (int k = 0; k < 300; ++k) {
    auto c = blob;
    for (int j = 0; j < 4; ++j)
      c[12 + size_t(r.below(int64_t(c.size()) - 16))] = uint8_t(r.below(256));
    const uint32_t crc = crc32_ref(c.data(), c.size() - 4);
    std::memcpy(c.data() + c.size() - 4, &crc, 4);  // little-endian hosts (x86-64, arm64)
    try {
      const ByteBpe p = ByteBpe::deserialize(c.data(), c.size());
      CHECK(p.vocab_size() == 300);
      ++parsed;
    } catch (const std::invalid_argument& e) {
      CHECK(mentions(e.what(), "invalid tokenizer data"));
    }
  }
  CHECK(parsed > 0 && parsed < 300);  // both outcomes were reached
}
