#include "tokenizer/vocab.h"

#include <algorithm>
#include <cstdio>
#include <queue>
#include <stdexcept>
#include <string_view>

#include "tokenizer/unicode.h"

namespace ternorm::tok {

namespace {

const char* const kSpaceMark = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space
// Length of a UTF-8 character by the high nibble of its lead byte, unchecked (llama.cpp's rule).
constexpr uint8_t kUtf8Len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};

// GPT-2's bytes-to-unicode map: printable Latin-1 bytes stand for themselves, the other 68 bytes
// for U+0100.. in byte order. [b] is the UTF-8 of byte b's code point.
struct ByteUnicode {
  std::string to_utf8[256];
  std::unordered_map<uint32_t, uint8_t> from_cp;
  ByteUnicode() {
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable =
          (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const uint32_t cp = printable ? uint32_t(b) : uint32_t(256 + next++);
      append_utf8(to_utf8[b], cp);
      from_cp[cp] = uint8_t(b);
    }
  }
};
const ByteUnicode& byte_unicode() {
  static const ByteUnicode m;
  return m;
}

inline bool is_cr_lf(uint32_t c) { return c == '\r' || c == '\n'; }
inline uint32_t ascii_lower(uint32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

// The pre-tokenizers of llama.cpp's byte-level BPE, on code points [lo, hi) of a text; each
// appends the word ends. Positions outside read as code point kEnd with no flags, as in llama.cpp.
constexpr uint32_t kEnd = 0xFFFFFFFF;
struct Cpts {
  const std::vector<uint32_t>& cp;
  const std::vector<uint8_t>& fl;
  size_t lo, hi;
  uint32_t at(size_t i) const { return i < hi ? cp[i] : kEnd; }
  uint8_t flags(size_t i) const { return i < hi ? fl[i] : 0; }
  bool in(size_t i) const { return i < hi; }
};

// 's|'t|'re|'ve|'m|'ll|'d (lower-cased next letters when `fold`): the length, or 0.
size_t contraction(const Cpts& c, size_t pos, bool fold) {
  if (c.at(pos) != '\'' || !c.in(pos + 1)) return 0;
  const uint32_t n1 = fold ? ascii_lower(c.at(pos + 1)) : c.at(pos + 1);
  if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') return 2;
  if (!c.in(pos + 2)) return 0;
  const uint32_t n2 = fold ? ascii_lower(c.at(pos + 2)) : c.at(pos + 2);
  if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l')) return 3;
  return 0;
}

// Trailing whitespace: \s+(?!\S) leaves the last space for the next word; \s+ at the end takes all.
size_t whitespace_end(const Cpts& c, size_t pos) {
  size_t k = 0;
  while (c.flags(pos + k) & kSpace) ++k;
  if (k > 1 && c.in(pos + k)) return pos + k - 1;
  if (k > 0) return pos + k;
  return pos + 1;  // no match: one code point
}

// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
void split_gpt2(const Cpts& c, std::vector<size_t>& ends) {
  for (size_t pos = c.lo; pos < c.hi;) {
    if (const size_t k = contraction(c, pos, false)) {
      ends.push_back(pos += k);
      continue;
    }
    const uint32_t cpt = c.at(pos);
    const size_t start = pos + (cpt == ' ');
    const uint8_t f = c.flags(start);
    const bool in_range = c.in(start);
    if (in_range && (f & kLetter)) {
      pos = start;
      while (c.flags(pos) & kLetter) ++pos;
    } else if (in_range && (f & kNumber)) {
      pos = start;
      while (c.flags(pos) & kNumber) ++pos;
    } else if (in_range && !(f & (kSpace | kLetter | kNumber))) {
      pos = start;
      while (c.in(pos) && !(c.flags(pos) & (kSpace | kLetter | kNumber))) ++pos;
    } else {
      pos = whitespace_end(c, pos);
    }
    ends.push_back(pos);
  }
}

// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
// \s*[\r\n]+|\s+(?!\S)|\s+
void split_llama3(const Cpts& c, std::vector<size_t>& ends) {
  for (size_t pos = c.lo; pos < c.hi;) {
    if (const size_t k = contraction(c, pos, true)) {
      ends.push_back(pos += k);
      continue;
    }
    const uint32_t cpt = c.at(pos);
    const uint8_t f = c.flags(pos);
    if (!(is_cr_lf(cpt) || (f & kNumber)) && ((f & kLetter) || (c.flags(pos + 1) & kLetter))) {
      ++pos;
      while (c.flags(pos) & kLetter) ++pos;
      ends.push_back(pos);
      continue;
    }
    if (f & kNumber) {
      size_t run = 0;
      while ((c.flags(pos) & kNumber) && run < 3) ++pos, ++run;
      ends.push_back(pos);
      continue;
    }
    const size_t start = pos + (cpt == ' ');
    const uint8_t f2 = c.flags(start);
    if (c.in(start) && !(f2 & (kSpace | kLetter | kNumber))) {
      pos = start;
      while (c.in(pos) && !(c.flags(pos) & (kSpace | kLetter | kNumber))) ++pos;
      while (is_cr_lf(c.at(pos))) ++pos;
      ends.push_back(pos);
      continue;
    }
    size_t k = 0, last_cr_lf = 0;
    while (c.flags(pos + k) & kSpace) {
      if (is_cr_lf(c.at(pos + k))) last_cr_lf = pos + k + 1;
      ++k;
    }
    pos = last_cr_lf > 0 ? last_cr_lf : whitespace_end(c, pos);
    ends.push_back(pos);
  }
}

// Cuts each word at the maximal runs of code points for which in_run is true (the run and the
// stretches between runs become words): a "[class]+" pattern as llama.cpp's std::regex pass does.
template <typename P>
std::vector<size_t> split_runs(const std::vector<size_t>& ends, P in_run) {
  std::vector<size_t> out;
  size_t start = 0;
  for (const size_t end : ends) {
    for (size_t i = start; i < end;) {
      const bool run = in_run(i);
      size_t j = i + 1;
      while (j < end && in_run(j) == run) ++j;
      out.push_back(i = j);
    }
    start = end;
  }
  return out;
}

// llama.cpp's "default" pre-tokenizer: four passes, each splitting the words of the last.
//   [\p{P}\$\+<=>\^~\|]+  then the GPT-2 pattern, then \p{N}+, then [0-9][0-9][0-9]
// Its \p{P} covers ASCII punctuation and symbols except ` (llama.cpp's ASCII table for the
// category) and non-space code points of category P; \p{N}, ASCII digits and non-space N.
void split_default(const std::vector<uint32_t>& cp, const std::vector<uint8_t>& fl,
                   std::vector<size_t>& ends) {
  const auto ascii_punct = [](uint32_t c) {
    return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x5E) ||
           c == 0x5F || (c >= 0x7B && c <= 0x7E);
  };
  const auto non_space = [&](size_t i, uint8_t flag) {
    return !(fl[i] & kSpace) && (fl[i] & flag);
  };
  ends = split_runs({cp.size()}, [&](size_t i) {
    return cp[i] < 128 ? ascii_punct(cp[i]) : non_space(i, kPunct);
  });
  std::vector<size_t> words;
  size_t start = 0;
  for (const size_t end : ends) {
    split_gpt2(Cpts{cp, fl, start, end}, words);
    start = end;
  }
  ends = split_runs(words, [&](size_t i) {
    return cp[i] < 128 ? (cp[i] >= '0' && cp[i] <= '9') : non_space(i, kNumber);
  });
  words.clear();
  start = 0;
  const auto digit = [&](size_t i) { return cp[i] >= '0' && cp[i] <= '9'; };
  for (const size_t end : ends) {
    size_t gap = start;
    for (size_t i = start; i + 3 <= end;) {
      if (digit(i) && digit(i + 1) && digit(i + 2)) {
        if (i > gap) words.push_back(i);
        words.push_back(gap = i += 3);
      } else {
        ++i;
      }
    }
    if (gap < end) words.push_back(end);
    start = end;
  }
  ends.swap(words);
}

struct Symbol {
  int prev, next;
  size_t at, n;  // bytes [at, at + n) of the word
};

template <typename T>
struct Bigram {
  int left, right;
  T key;  // BPE: rank (lower first); SPM: score (higher first)
  size_t size;
};

}  // namespace

VocabData byte_bpe_vocab(const ByteBpe& bpe, const std::string& pre) {
  const ByteUnicode& bu = byte_unicode();
  VocabData d;
  d.model = "gpt2";
  d.pre = pre;
  d.tokens.resize(size_t(bpe.vocab_size()));
  for (int32_t id = 0; id < bpe.vocab_size(); ++id) {
    size_t n = 0;
    const uint8_t* b = bpe.token_bytes(id, &n);
    for (size_t i = 0; i < n; ++i) d.tokens[size_t(id)] += bu.to_utf8[b[i]];
  }
  const std::vector<uint16_t>& m = bpe.merges();
  d.merges.reserve(m.size() / 2);
  for (size_t k = 0; k + 1 < m.size(); k += 2)
    d.merges.push_back(d.tokens[m[k]] + " " + d.tokens[m[k + 1]]);
  return d;
}

VocabTokenizer::~VocabTokenizer() = default;
VocabTokenizer::VocabTokenizer(VocabTokenizer&&) noexcept = default;

VocabTokenizer::VocabTokenizer(VocabData data) : d_(std::move(data)) {
  const auto bad = [](const std::string& why) {
    throw std::invalid_argument("tokenizer metadata: " + why);
  };
  const size_t n = d_.tokens.size();
  if (d_.model == "llama")
    is_spm_ = true;
  else if (d_.model != "gpt2")
    bad("unsupported tokenizer model \"" + d_.model + "\" (supported: gpt2, llama)");
  if (n == 0) bad("no tokens");
  if (n > size_t(INT32_MAX)) bad("too many tokens");
  if (is_spm_ && d_.scores.size() != n)
    bad("scores has " + std::to_string(d_.scores.size()) + " entries for " + std::to_string(n) +
        " tokens");
  if (!d_.token_types.empty() && d_.token_types.size() != n)
    bad("token_type has " + std::to_string(d_.token_types.size()) + " entries for " +
        std::to_string(n) + " tokens");
  for (size_t i = 0; i < d_.token_types.size(); ++i)
    if (d_.token_types[i] < kTokenNormal || d_.token_types[i] > kTokenByte)
      bad("token_type[" + std::to_string(i) + "] is " + std::to_string(d_.token_types[i]) +
          ", expected 1..6");
  const std::pair<const char*, int32_t> ids[] = {
      {"bos", d_.bos}, {"eos", d_.eos}, {"unk", d_.unk}, {"pad", d_.pad}};
  for (const auto& [name, id] : ids)
    if (id < -1 || id >= int32_t(n))
      bad(std::string(name) + " token id " + std::to_string(id) + " is outside the vocabulary of " +
          std::to_string(n));
  if (d_.add_bos && d_.bos < 0) bad("add_bos_token is true but there is no bos token id");
  if (d_.add_eos && d_.eos < 0) bad("add_eos_token is true but there is no eos token id");
  ids_.reserve(n);
  for (size_t i = 0; i < n; ++i)
    ids_[d_.tokens[i]] = int32_t(i);  // a later duplicate wins, as in llama.cpp

  if (!is_spm_) {
    const std::string& p = d_.pre;
    if (p.empty() || p == "default") {
      pre_ = PreTokenizer::Default;
    } else if (p == "gpt-2") {
      pre_ = PreTokenizer::Gpt2;
    } else if (p == "llama3" || p == "llama-v3" || p == "llama-bpe" || p == "falcon3" ||
               p == "pixtral") {
      pre_ = PreTokenizer::Llama3;
      ignore_merges_ = true;
    } else {
      bad("unsupported pre-tokenizer \"" + p +
          "\" (supported: gpt-2, default, llama-bpe, llama3, llama-v3, falcon3, pixtral)");
    }
    merge_rank_.reserve(d_.merges.size());
    for (size_t r = 0; r < d_.merges.size(); ++r) {
      const std::string& m = d_.merges[r];
      const size_t sp = m.size() > 1 ? m.find(' ', 1) : std::string::npos;
      if (sp == std::string::npos || sp + 1 >= m.size())
        bad("merge " + std::to_string(r) + " \"" + m.substr(0, 40) +
            "\" is not two tokens separated by a space");
      merge_rank_.emplace(m, int32_t(r));  // the first of duplicates keeps its rank
    }
  }
  if (is_spm_) {
    // ASCII bytes only: a non-ASCII byte is part of a multi-byte character symbol.
    for (int b = 0; b < 128; ++b) spm_break_[b] = true;
    for (const std::string& t : d_.tokens)
      if (t.size() > 1)
        for (const char ch : t)
          if (uint8_t(ch) < 128) spm_break_[uint8_t(ch)] = false;
  }
  for (size_t i = 0; i < n; ++i) {
    const int32_t t = d_.token_types.empty() ? kTokenNormal : d_.token_types[i];
    if ((t == kTokenControl || t == kTokenUserDefined || t == kTokenUnknown) &&
        !d_.tokens[i].empty())
      specials_.push_back(int32_t(i));
  }
  std::stable_sort(specials_.begin(), specials_.end(), [this](int32_t a, int32_t b) {
    return d_.tokens[a].size() > d_.tokens[b].size();
  });
}

int32_t VocabTokenizer::find(const std::string& s) const {
  const auto it = ids_.find(s);
  return it == ids_.end() ? -1 : it->second;
}

int32_t VocabTokenizer::byte_token(uint8_t b) const {
  char buf[8];
  std::snprintf(buf, sizeof buf, "<0x%02X>", b);
  int32_t id = find(buf);
  if (id < 0) id = find(std::string(1, char(b)));
  if (id < 0) id = d_.unk;
  if (id < 0) {
    std::snprintf(buf, sizeof buf, "0x%02X", b);
    throw std::invalid_argument(
        std::string("tokenizer: byte ") + buf +
        " has no <0xXX> token, no token of its own and there is no unknown token");
  }
  return id;
}

std::vector<int32_t> VocabTokenizer::encode(const std::string& text, bool add_special,
                                            bool parse_special) const {
  // Fragments: raw text [at, at + len) or a special token (len = 0, id >= 0).
  struct Frag {
    size_t at, len;
    int32_t id;
  };
  std::vector<Frag> frags;
  if (!text.empty()) frags.push_back({0, text.size(), -1});
  for (const int32_t sid : specials_) {
    const int32_t t = d_.token_types[sid];
    if (!parse_special && (t == kTokenControl || t == kTokenUnknown)) continue;
    const std::string& s = d_.tokens[sid];
    std::vector<Frag> next;
    next.reserve(frags.size());
    for (const Frag& f : frags) {
      if (f.id >= 0) {
        next.push_back(f);
        continue;
      }
      size_t at = f.at;
      const size_t end = f.at + f.len;
      const std::string_view frag(text.data(), end);  // search this fragment only
      for (;;) {
        const size_t hit = frag.find(s, at);
        if (hit == std::string_view::npos) break;
        if (hit > at) next.push_back({at, hit - at, -1});
        next.push_back({hit, 0, sid});
        at = hit + s.size();
      }
      if (at < end) next.push_back({at, end - at, -1});
    }
    frags.swap(next);
  }

  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (add_special && d_.add_bos) out.push_back(d_.bos);
  bool prev_special = true;  // SentencePiece: a space prefix at the start and after a special token
  for (const Frag& f : frags) {
    if (f.id >= 0) {
      out.push_back(f.id);
      prev_special = true;
      continue;
    }
    if (is_spm_) {
      std::string piece;
      piece.reserve(f.len * 3 / 2 + 4);
      if (d_.add_space_prefix && prev_special) piece += kSpaceMark;
      for (size_t i = f.at; i < f.at + f.len; ++i) {
        if (text[i] == ' ')
          piece += kSpaceMark;
        else
          piece.push_back(text[i]);
      }
      encode_spm(piece, out);
      prev_special = false;
    } else {
      encode_bpe(text.substr(f.at, f.len), out);
    }
  }
  if (add_special && d_.add_eos) out.push_back(d_.eos);
  return out;
}

void VocabTokenizer::encode_spm(const std::string& text, std::vector<int32_t>& out) const {
  // A byte that no longer token contains can merge with nothing: the text is tokenized piece by
  // piece between such bytes, which gives the same ids as one pass (merges never cross them) and
  // keeps the work queue small (a line instead of a whole book). The cuts are made only at
  // symbol starts, so an invalid lead byte keeps taking the next bytes as in one pass.
  size_t at = 0;
  for (size_t i = 0; i < text.size();) {
    const uint8_t b = uint8_t(text[i]);
    if (!spm_break_[b]) {
      i += kUtf8Len[b >> 4];
      continue;
    }
    if (i > at) encode_spm_piece(text.substr(at, i - at), out);
    encode_spm_piece(text.substr(i, 1), out);
    at = ++i;
  }
  if (at < text.size()) encode_spm_piece(at == 0 ? text : text.substr(at), out);
}

void VocabTokenizer::encode_spm_piece(const std::string& text, std::vector<int32_t>& out) const {
  // Symbols are UTF-8 characters by their lead byte (not validated, as in llama.cpp).
  std::vector<Symbol> sym;
  sym.reserve(text.size());
  for (size_t at = 0; at < text.size();) {
    const size_t len = std::min<size_t>(kUtf8Len[uint8_t(text[at]) >> 4], text.size() - at);
    const int idx = int(sym.size());
    sym.push_back({idx - 1, at + len == text.size() ? -1 : idx + 1, at, len});
    at += len;
  }
  using B = Bigram<float>;
  const auto lower = [](const B& l, const B& r) {
    return l.key < r.key || (l.key == r.key && l.left > r.left);
  };
  std::priority_queue<B, std::vector<B>, decltype(lower)> queue(lower);
  std::string key;
  const auto try_add = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    key.assign(text, sym[left].at, sym[left].n + sym[right].n);
    const int32_t id = find(key);
    if (id < 0) return;
    queue.push({left, right, d_.scores[id], key.size()});
  };
  for (int i = 1; i < int(sym.size()); ++i) try_add(i - 1, i);
  while (!queue.empty()) {
    const B b = queue.top();
    queue.pop();
    Symbol& l = sym[b.left];
    Symbol& r = sym[b.right];
    if (l.n == 0 || r.n == 0 || l.n + r.n != b.size) continue;  // stale: a side was merged since
    l.n += r.n;
    r.n = 0;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = b.left;
    try_add(l.prev, b.left);
    try_add(b.left, l.next);
  }
  // Every merged symbol is a token; a symbol that is not is one character: its bytes fall back
  // to byte tokens (llama.cpp's resegment reaches the same result).
  for (int i = sym.empty() ? -1 : 0; i != -1; i = sym[i].next) {
    key.assign(text, sym[i].at, sym[i].n);
    const int32_t id = find(key);
    if (id >= 0) {
      out.push_back(id);
    } else {
      for (char ch : key) out.push_back(byte_token(uint8_t(ch)));
    }
  }
}

void VocabTokenizer::encode_bpe(const std::string& text, std::vector<int32_t>& out) const {
  std::vector<uint32_t> cps;
  std::vector<uint8_t> fl;
  cps.reserve(text.size());
  fl.reserve(text.size());
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  for (size_t i = 0; i < text.size();) {
    size_t len;
    const uint32_t cp = utf8_lenient(s, text.size(), i, &len);
    cps.push_back(cp);
    fl.push_back(unicode_flags(cp));
    i += len;
  }
  std::vector<size_t> ends;
  const Cpts c{cps, fl, 0, cps.size()};
  if (pre_ == PreTokenizer::Llama3)
    split_llama3(c, ends);
  else if (pre_ == PreTokenizer::Gpt2)
    split_gpt2(c, ends);
  else
    split_default(cps, fl, ends);

  const ByteUnicode& bu = byte_unicode();
  std::unordered_map<std::string, std::pair<uint32_t, uint32_t>> cache;  // word -> ids in `seen`
  std::vector<int32_t> seen;
  std::string word, utf8, key;
  std::vector<Symbol> sym;
  using B = Bigram<int32_t>;
  const auto later = [](const B& l, const B& r) {
    return l.key > r.key || (l.key == r.key && l.left > r.left);
  };
  size_t start = 0;
  for (const size_t end : ends) {
    utf8.clear();
    for (size_t i = start; i < end; ++i) append_utf8(utf8, cps[i]);
    start = end;
    word.clear();
    for (char ch : utf8) word += bu.to_utf8[uint8_t(ch)];
    auto hit = cache.find(word);
    if (hit == cache.end()) {
      const uint32_t at = uint32_t(seen.size());
      sym.clear();
      if (ignore_merges_ && find(word) >= 0) {
        sym.push_back({-1, -1, 0, word.size()});
      } else {
        for (size_t i = 0; i < word.size();) {
          const size_t len = std::min<size_t>(kUtf8Len[uint8_t(word[i]) >> 4], word.size() - i);
          const int idx = int(sym.size());
          sym.push_back({idx - 1, i + len == word.size() ? -1 : idx + 1, i, len});
          i += len;
        }
      }
      std::priority_queue<B, std::vector<B>, decltype(later)> queue(later);
      const auto try_add = [&](int left, int right) {
        if (left < 0 || right < 0) return;
        key.assign(word, sym[left].at, sym[left].n);
        key += ' ';
        key.append(word, sym[right].at, sym[right].n);
        const auto it = merge_rank_.find(key);
        if (it == merge_rank_.end()) return;
        queue.push({left, right, it->second, sym[left].n + sym[right].n});
      };
      for (int i = 1; i < int(sym.size()); ++i) try_add(i - 1, i);
      while (!queue.empty()) {
        const B b = queue.top();
        queue.pop();
        Symbol& l = sym[b.left];
        Symbol& r = sym[b.right];
        if (l.n == 0 || r.n == 0 || l.n + r.n != b.size) continue;
        l.n += r.n;
        r.n = 0;
        l.next = r.next;
        if (r.next >= 0) sym[r.next].prev = b.left;
        try_add(l.prev, b.left);
        try_add(b.left, l.next);
      }
      for (int i = sym.empty() ? -1 : 0; i != -1; i = sym[i].next) {
        key.assign(word, sym[i].at, sym[i].n);
        const int32_t id = find(key);
        if (id >= 0) {
          seen.push_back(id);
        } else {
          // llama.cpp: each byte of the symbol as a one-byte token, when there is one.
          for (char ch : key) {
            const int32_t b = find(std::string(1, ch));
            if (b >= 0) seen.push_back(b);
          }
        }
      }
      hit = cache.emplace(word, std::make_pair(at, uint32_t(seen.size()) - at)).first;
    }
    out.insert(out.end(), seen.begin() + hit->second.first,
               seen.begin() + hit->second.first + hit->second.second);
  }
}

std::string VocabTokenizer::decode(const int32_t* ids, size_t n, bool render_special) const {
  std::string out;
  const ByteUnicode& bu = byte_unicode();
  bool strip_space = is_spm_ && d_.add_space_prefix;
  for (size_t i = 0; i < n; ++i) {
    const int32_t id = ids[i];
    if (id < 0 || id >= n_tokens())
      throw std::invalid_argument("token " + std::to_string(i) + " is " + std::to_string(id) +
                                  ", expected an integer in [0, " + std::to_string(n_tokens()) +
                                  ")");
    const int32_t t = d_.token_types.empty() ? kTokenNormal : d_.token_types[id];
    const std::string& s = d_.tokens[id];
    std::string piece;
    if (t == kTokenControl || t == kTokenUnknown) {
      if (render_special) piece = s;
    } else if (t == kTokenUserDefined) {
      piece = s;
    } else if (is_spm_ && t == kTokenByte && s.size() == 6) {
      piece.push_back(char(std::stoi(s.substr(3, 2), nullptr, 16)));
    } else if (is_spm_) {
      for (size_t k = 0; k < s.size(); ++k) {
        if (s.compare(k, 3, kSpaceMark) == 0) {
          piece.push_back(' ');
          k += 2;
        } else {
          piece.push_back(s[k]);
        }
      }
    } else {
      const auto* p = reinterpret_cast<const uint8_t*>(s.data());
      for (size_t k = 0; k < s.size();) {
        size_t len;
        const uint32_t cp = utf8_lenient(p, s.size(), k, &len);
        const auto it = bu.from_cp.find(cp);
        if (it != bu.from_cp.end())
          piece.push_back(char(it->second));
        else
          piece.append(s, k, len);  // not a byte-level character: kept as text
        k += len;
      }
    }
    if (strip_space && !piece.empty()) {
      if (piece[0] == ' ') piece.erase(0, 1);
      strip_space = false;
    }
    out += piece;
  }
  return out;
}

}  // namespace ternorm::tok
