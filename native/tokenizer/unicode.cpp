#include "tokenizer/unicode.h"

#include <vector>

namespace ternorm::tok {

namespace {
// One byte per code point (1.1 MB), built once from the runs: a lookup per character is what
// the pre-tokenizers do most.
const std::vector<uint8_t>& flag_table() {
  static const std::vector<uint8_t> table = [] {
    std::vector<uint8_t> t(0x110000, 0);
    for (size_t r = 0; r < kUnicodeRunCount; ++r) {
      const uint32_t end = r + 1 < kUnicodeRunCount ? kUnicodeRuns[r + 1].start : 0x110000;
      for (uint32_t cp = kUnicodeRuns[r].start; cp < end; ++cp) t[cp] = kUnicodeRuns[r].flags;
    }
    return t;
  }();
  return table;
}
inline bool cont(uint8_t b) { return (b & 0xC0) == 0x80; }
}  // namespace

uint8_t unicode_flags(uint32_t cp) { return cp < 0x110000 ? flag_table()[cp] : 0; }

int32_t utf8_strict(const uint8_t* s, size_t n, size_t i, size_t* len) {
  const uint8_t b0 = s[i];
  *len = 1;
  if (b0 < 0x80) return b0;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    if (i + 1 < n && cont(s[i + 1])) {
      *len = 2;
      return ((b0 & 0x1F) << 6) | (s[i + 1] & 0x3F);
    }
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    if (i + 2 < n) {
      const uint8_t b1 = s[i + 1], b2 = s[i + 2];
      const uint8_t lo = b0 == 0xE0 ? 0xA0 : 0x80, hi = b0 == 0xED ? 0x9F : 0xBF;
      if (b1 >= lo && b1 <= hi && cont(b2)) {
        *len = 3;
        return ((b0 & 0x0F) << 12) | ((b1 & 0x3F) << 6) | (b2 & 0x3F);
      }
    }
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    if (i + 3 < n) {
      const uint8_t b1 = s[i + 1];
      const uint8_t lo = b0 == 0xF0 ? 0x90 : 0x80, hi = b0 == 0xF4 ? 0x8F : 0xBF;
      if (b1 >= lo && b1 <= hi && cont(s[i + 2]) && cont(s[i + 3])) {
        *len = 4;
        return ((b0 & 0x07) << 18) | ((b1 & 0x3F) << 12) | ((s[i + 2] & 0x3F) << 6) |
               (s[i + 3] & 0x3F);
      }
    }
  }
  return -1;
}

uint32_t utf8_lenient(const uint8_t* s, size_t n, size_t i, size_t* len) {
  const uint8_t b0 = s[i];
  *len = 1;
  if (b0 < 0x80) return b0;
  size_t need = 0;
  uint32_t cp = 0;
  if ((b0 & 0xE0) == 0xC0)
    need = 1, cp = b0 & 0x1F;
  else if ((b0 & 0xF0) == 0xE0)
    need = 2, cp = b0 & 0x0F;
  else if ((b0 & 0xF8) == 0xF0)
    need = 3, cp = b0 & 0x07;
  else
    return 0xFFFD;
  if (i + need >= n) return 0xFFFD;
  for (size_t k = 1; k <= need; ++k) {
    if (!cont(s[i + k])) return 0xFFFD;
    cp = (cp << 6) | (s[i + k] & 0x3F);
  }
  // llama.cpp throws on re-encoding such a code point; reading it as U+FFFD keeps going.
  if (cp > 0x10FFFF) return 0xFFFD;
  *len = need + 1;
  return cp;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(char(cp));
  } else if (cp < 0x800) {
    out.push_back(char(0xC0 | (cp >> 6)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(char(0xE0 | (cp >> 12)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(char(0xF0 | (cp >> 18)));
    out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  }
}

}  // namespace ternorm::tok
