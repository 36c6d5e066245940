// The GGUF-metadata tokenizers on small hand-made vocabularies: each pre-tokenizer's word cuts
// (seen through merges that would cross them), SentencePiece scores, space prefix and byte
// fallback, special tokens, and a fuzz of texts and metadata (never a crash; ids in range;
// SentencePiece round-trips any bytes). test/tokenizer-vocab.test.ts checks real vocabularies.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "harness.h"
#include "tokenizer/unicode.h"
#include "tokenizer/vocab.h"

using namespace ternorm;
using namespace ternorm::test;
using tok::VocabData;
using tok::VocabTokenizer;

namespace {

// GPT-2's byte characters: printable Latin-1 stands for itself, the rest maps to U+0100...
std::string byte_char(int b) {
  int next = 0;
  for (int x = 0; x < 256; ++x) {
    const bool printable =
        (x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF);
    const uint32_t cp = printable ? uint32_t(x) : uint32_t(256 + next++);
    if (x == b) {
      std::string s;
      tok::append_utf8(s, cp);
      return s;
    }
  }
  return "";
}

// 256 byte tokens, then merges building 123 / 1234 / 45 / "a," / ",b" / "Ġhi".
VocabData bpe_vocab(const std::string& pre) {
  VocabData d;
  d.model = "gpt2";
  d.pre = pre;
  for (int b = 0; b < 256; ++b) d.tokens.push_back(byte_char(b));
  const std::string G = byte_char(' ');
  d.merges = {"1 2", "12 3", "123 4", "4 5", "a ,", ", b", G + " h", G + "h i"};
  for (const char* t : {"12", "123", "1234", "45", "a,", ",b"}) d.tokens.push_back(t);
  d.tokens.push_back(G + "h");
  d.tokens.push_back(G + "hi");
  return d;
}

std::vector<std::string> pieces(const VocabTokenizer& t, const std::string& text) {
  std::vector<std::string> out;
  for (const int32_t id : t.encode(text, false, false)) out.push_back(t.data().tokens[size_t(id)]);
  return out;
}

using S = std::vector<std::string>;

}  // namespace

TEST(tokenizer_vocab_bpe_pretokenizers_cut_words_like_llama_cpp) {
  const VocabTokenizer gpt2(bpe_vocab("gpt-2")), llama3(bpe_vocab("llama-bpe")),
      def(bpe_vocab("default"));
  // digits: GPT-2 keeps the run, Llama 3 cuts groups of 3, default cuts ASCII triples
  CHECK((pieces(gpt2, "12345") == S{"1234", "5"}));
  CHECK((pieces(llama3, "12345") == S{"123", "45"}));
  CHECK((pieces(def, "12345") == S{"123", "45"}));
  // punctuation: default cuts punctuation runs out first, GPT-2 and Llama 3 keep "a" apart from ","
  CHECK((pieces(gpt2, "a,b") == S{"a", ",", "b"}));
  CHECK((pieces(llama3, "a,b") == S{"a", ",b"}));
  CHECK((pieces(def, "a,b") == S{"a", ",", "b"}));
  const std::string G = byte_char(' ');
  CHECK((pieces(gpt2, " hi") == S{G + "hi"}));
  CHECK((pieces(llama3, "\n hi") == S{byte_char('\n'), G + "hi"}));
  CHECK(mentions(thrown_message([] { VocabTokenizer(bpe_vocab("qwen2")); }),
                 "unsupported pre-tokenizer \"qwen2\""));
}

TEST(tokenizer_vocab_spm_scores_prefix_bytes_and_specials) {
  VocabData d;
  d.model = "llama";
  const std::string sp = "\xE2\x96\x81";
  d.tokens = {"<unk>", "<s>", "</s>"};
  d.token_types = {tok::kTokenUnknown, tok::kTokenControl, tok::kTokenControl};
  d.scores = {0, 0, 0};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    d.tokens.push_back(buf);
    d.token_types.push_back(tok::kTokenByte);
    d.scores.push_back(0);
  }
  const std::pair<std::string, float> normal[] = {{sp, -10},  {"a", -11},     {"b", -12},
                                                  {"ab", -1}, {sp + "a", -2}, {sp + "ab", -3}};
  for (const auto& [t, s] : normal) {
    d.tokens.push_back(t);
    d.token_types.push_back(tok::kTokenNormal);
    d.scores.push_back(s);
  }
  d.bos = 1, d.eos = 2, d.unk = 0, d.add_bos = true;
  const VocabTokenizer t(d);
  // The same vocabulary plus one long token holding every ASCII byte: then no byte cuts the text
  // into independent pieces, so this is the one-pass tokenization to compare with.
  VocabData whole_d = d;
  std::string all;
  for (int b = 1; b < 128; ++b) all.push_back(char(b));
  whole_d.tokens.push_back(all + all);
  whole_d.token_types.push_back(tok::kTokenNormal);
  whole_d.scores.push_back(-100);
  const VocabTokenizer whole(whole_d);
  const auto id = [&](const std::string& s) {
    return int32_t(std::find(d.tokens.begin(), d.tokens.end(), s) - d.tokens.begin());
  };
  // "ab" (score -1) merges before "▁a" (-2), so " ab" becomes ▁ + ab, then ▁ab.
  CHECK((t.encode("ab", false, false) == std::vector<int32_t>{id(sp + "ab")}));
  CHECK((t.encode("ab b", true, false) == std::vector<int32_t>{1, id(sp + "ab"), id(sp), id("b")}));
  // byte fallback for a character with no piece
  CHECK((t.encode("\xC3\xA9", false, false) ==
         std::vector<int32_t>{id(sp), id("<0xC3>"), id("<0xA9>")}));
  // control tokens in the text: only with parse_special, and the space prefix comes back after
  CHECK((t.encode("a<s>a", false, true) == std::vector<int32_t>{id(sp + "a"), 1, id(sp + "a")}));
  CHECK(t.encode("a<s>a", false, false).size() > 3);
  const std::vector<int32_t> ids = t.encode(" a  b\n", true, false);
  CHECK(t.decode(ids.data(), ids.size(), false) == " a  b\n");
  // Cutting at bytes that merge with nothing changes no id, invalid UTF-8 included (the cuts
  // are made at symbol starts only).
  Rng r2(8);
  for (int k = 0; k < 300; ++k) {
    std::string s(size_t(r2.below(40)), '\0');
    for (char& c : s) c = char(r2.below(3) ? r2.below(256) : ' ');
    CHECK(t.encode(s, true, false) == whole.encode(s, true, false));
  }
  // valid UTF-8 round-trips (invalid bytes need not: like llama.cpp, a bad lead byte takes the
  // next bytes into its symbol, and a space swallowed that way comes back as U+2581's bytes)
  Rng r(7);
  for (int k = 0; k < 200; ++k) {
    std::string s;
    for (int64_t n = r.below(30); n > 0; --n) {
      const int64_t kind = r.below(4);
      const uint32_t cp = kind == 0   ? ' '
                          : kind == 1 ? uint32_t(r.below(128))
                                      : uint32_t(0x80 + r.below(0x10FF80));
      if ((cp >= 0xD800 && cp <= 0xDFFF) || cp == 0x2581) continue;
      tok::append_utf8(s, cp);
    }
    const auto e = t.encode(s, true, false);
    CHECK(e == whole.encode(s, true, false));
    for (const int32_t x : e) CHECK(x >= 0 && x < t.n_tokens());
    const std::string back = t.decode(e.data(), e.size(), false);
    CHECK_MSG(back == s, "len " << s.size() << " -> " << back.size() << " first byte "
                                << int(uint8_t(s.empty() ? 0 : s[0])));
  }
}

TEST(tokenizer_vocab_fuzz_metadata_and_text) {
  Rng r(11);
  int built = 0, refused = 0;
  for (int k = 0; k < 400; ++k) {
    VocabData d = bpe_vocab(k % 3 == 0 ? "default" : k % 3 == 1 ? "gpt-2" : "llama-bpe");
    if (k % 2) {
      d.model = "llama";
      d.scores.assign(d.tokens.size(), 0.f);
    }
    switch (r.below(8)) {
      case 0: d.token_types.assign(size_t(r.below(300)), int32_t(r.below(8))); break;
      case 1: d.bos = int32_t(r.below(600)) - 2, d.add_bos = r.below(2) == 1; break;
      case 2: d.scores.resize(size_t(r.below(300))); break;
      case 3: d.merges.push_back(std::string(size_t(r.below(3)), ' ')); break;
      case 4: d.tokens.resize(size_t(r.below(3))); break;
      default: break;
    }
    try {
      const VocabTokenizer t(d);
      ++built;
      std::string s(size_t(r.below(64)), '\0');
      for (char& c : s) c = char(r.below(4) ? 0x20 + r.below(96) : r.below(256));
      const auto ids = t.encode(s, true, true);
      for (const int32_t x : ids) CHECK(x >= 0 && x < t.n_tokens());
      t.decode(ids.data(), ids.size(), true);
    } catch (const std::invalid_argument& e) {
      ++refused;
      CHECK(mentions(e.what(), "tokenizer"));
    }
  }
  CHECK(built > 0 && refused > 0);
}

TEST(tokenizer_vocab_of_the_project_bpe_spells_tokens_and_merges_like_gpt2) {
  // A project BPE trained on a small text, as the gpt2-style vocabulary an exported GGUF carries:
  // byte tokens spelled through bytes-to-unicode, merged tokens their concatenation, merge k
  // "left right" of id 256 + k; the GGUF tokenizer then gives the project BPE's own ids on text
  // where the two pre-tokenizers cut alike (no blank-line runs before text, valid UTF-8).
  std::string train;
  for (int i = 0; i < 200; ++i)
    train += "the ship sailed 12 times, it's grey; the whale sang 345 songs. ";
  const tok::ByteBpe bpe =
      tok::ByteBpe::train(reinterpret_cast<const uint8_t*>(train.data()), train.size(), 290, 2);
  const VocabData d = tok::byte_bpe_vocab(bpe, "gpt-2");
  CHECK(d.model == "gpt2" && d.pre == "gpt-2" && d.tokens.size() == 290 && d.merges.size() == 34);
  CHECK(d.tokens[size_t('a')] == "a" && d.tokens[size_t(' ')] == byte_char(' ') &&
        d.tokens[10] == byte_char(10));
  for (size_t k = 0; k < d.merges.size(); ++k) {
    const uint16_t l = bpe.merges()[2 * k], r = bpe.merges()[2 * k + 1];
    CHECK(d.merges[k] == d.tokens[l] + " " + d.tokens[r]);
    CHECK(d.tokens[256 + k] == d.tokens[l] + d.tokens[r]);
  }
  const VocabTokenizer t(d);
  for (const std::string& text :
       {std::string("the whale sailed 12345 times, it's grey."), train.substr(0, 500),
        std::string("  the  ship\n the\tsang 👍 café")}) {
    const std::vector<int32_t> want =
        bpe.encode(reinterpret_cast<const uint8_t*>(text.data()), text.size());
    CHECK_MSG(t.encode(text, false, false) == want, text);
    CHECK(t.decode(want.data(), want.size(), false) == text);
  }
}
