// Unicode for the tokenizers without ICU: property flags of a code point (from the generated
// unicode_tables.cpp) and the two UTF-8 readers the tokenizers need — a strict one (the project
// pre-tokenizer: well-formed sequences only) and llama.cpp's lenient one (GGUF vocabularies).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace ternorm::tok {

enum UnicodeFlag : uint8_t {
  kLetter = 1,  // \p{L}
  kMark = 2,    // \p{M}
  kNumber = 4,  // \p{N}
  kSpace = 8,   // White_Space (what \s means in the tokenizers' patterns)
  kPunct = 16,  // \p{P}
};

struct UnicodeRun {
  uint32_t start;
  uint8_t flags;
};
extern const UnicodeRun kUnicodeRuns[];
extern const size_t kUnicodeRunCount;

// Flags of code point cp (0 above U+10FFFF).
uint8_t unicode_flags(uint32_t cp);

// Strict UTF-8: the code point of the well-formed sequence at s[i..n) (no overlong forms, no
// surrogates, <= U+10FFFF) and its length in *len, or -1 when s[i] starts none (*len = 1).
int32_t utf8_strict(const uint8_t* s, size_t n, size_t i, size_t* len);

// llama.cpp's reading of UTF-8: the lead byte's length with continuation bytes checked but not
// overlong forms or surrogates; a byte that starts no such sequence, or one that would give a
// code point above U+10FFFF, reads as U+FFFD and consumes one byte.
uint32_t utf8_lenient(const uint8_t* s, size_t n, size_t i, size_t* len);

// Appends the UTF-8 form of cp (<= U+10FFFF) to out.
void append_utf8(std::string& out, uint32_t cp);

}  // namespace ternorm::tok
