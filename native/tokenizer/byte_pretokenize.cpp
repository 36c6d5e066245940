#include "tokenizer/byte_pretokenize.h"

#include <algorithm>

#include "tokenizer/unicode.h"

namespace ternorm::tok {

namespace {

enum Cls : uint8_t { LETTER = 0, DIGIT = 1, SPACE = 2, OTHER = 3 };

struct AsciiClasses {
  uint8_t c[128];
  constexpr AsciiClasses() : c() {
    for (int b = 0; b < 128; ++b) {
      uint8_t k = OTHER;
      if ((b >= 'A' && b <= 'Z') || (b >= 'a' && b <= 'z'))
        k = LETTER;
      else if (b >= '0' && b <= '9')
        k = DIGIT;
      else if (b == ' ' || (b >= 0x09 && b <= 0x0D))
        k = SPACE;
      c[b] = k;
    }
  }
};
constexpr AsciiClasses kAscii;

inline bool is_space_byte(uint8_t b) { return b < 0x80 && kAscii.c[b] == SPACE; }

// Class of the character at i; its length in *len.
inline uint8_t char_at(const uint8_t* s, size_t n, size_t i, size_t* len) {
  const uint8_t b0 = s[i];
  if (b0 < 0x80) {
    *len = 1;
    return kAscii.c[b0];
  }
  const int32_t cp = utf8_strict(s, n, i, len);
  if (cp < 0) return OTHER;
  const uint8_t f = unicode_flags(uint32_t(cp));
  return (f & (kLetter | kMark)) ? LETTER : (f & kNumber) ? DIGIT : OTHER;
}

size_t run_end(const uint8_t* s, size_t n, size_t i, uint8_t cls, size_t limit) {
  while (i < n) {
    size_t len;
    if (char_at(s, n, i, &len) != cls || i + len > limit) break;
    i += len;
  }
  return i;
}

size_t contraction_len(const uint8_t* s, size_t n, size_t i) {
  if (i + 1 >= n) return 0;
  const uint8_t c1 = s[i + 1];
  size_t len = 0;
  if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd')
    len = 2;
  else if (i + 2 < n) {
    const uint8_t c2 = s[i + 2];
    if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) len = 3;
  }
  if (len == 0) return 0;
  size_t l;
  if (i + len < n && char_at(s, n, i + len, &l) == LETTER) return 0;
  return len;
}

}  // namespace

size_t byte_chunk_end(const uint8_t* s, size_t n, size_t i) {
  const size_t limit = std::min(n, i + kMaxChunkBytes);
  const uint8_t b0 = s[i];
  size_t len;
  if (b0 == '\'') {
    const size_t c = contraction_len(s, n, i);
    if (c > 0) return i + c;
  }
  if (b0 == ' ' && i + 1 < n) {
    const uint8_t cls = char_at(s, n, i + 1, &len);
    if (cls != SPACE) return run_end(s, n, i + 1, cls, limit);
  }
  const uint8_t cls = char_at(s, n, i, &len);
  // A character is at most 4 bytes, so a non-space run is never empty.
  if (cls != SPACE) return run_end(s, n, i, cls, limit);
  size_t e = i + 1;
  while (e < limit && is_space_byte(s[e])) ++e;
  if (e < n && !is_space_byte(s[e]) && e - i > 1 && s[e - 1] == ' ') return e - 1;
  return e;
}

}  // namespace ternorm::tok
