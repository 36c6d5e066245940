// Byte-level pre-tokenisation of the project BPE (version 1): cuts any byte string into chunks
// that BPE merges never cross. It follows GPT-2's split (contractions, letter runs, digit runs,
// punctuation runs, whitespace runs, a single leading space glued to the next run) but works on
// BYTES, so invalid UTF-8 and binary data are handled without a decoding step that could lose
// information.
//
// A "character" is one ASCII byte, one well-formed UTF-8 sequence (2-4 bytes, no overlong forms,
// no surrogates, <= U+10FFFF), or one byte that starts no well-formed sequence.
// Classes: LETTER (ASCII letters; \p{L} and \p{M}), DIGIT (ASCII digits; \p{N}), SPACE (ASCII
// space, \t, \n, \v, \f, \r) and OTHER (everything else, including invalid bytes).
//
// Chunk rules, tried in order at each position:
//  1. "'" + one of s t m d re ve ll (ASCII lower case), not followed by a letter: one chunk.
//  2. one ASCII space followed by a LETTER, DIGIT or OTHER character: the space plus the run.
//  3. a run of LETTER, DIGIT or OTHER characters.
//  4. a run of SPACE bytes; when it is followed by a non-space and ends in an ASCII space and is
//     longer than one byte, the final space is left to start the next chunk (rule 2).
// Every chunk is at most kMaxChunkBytes long (a run is cut at a character boundary), which
// bounds the cost of BPE per chunk on pathological input.
#pragma once
#include <cstddef>
#include <cstdint>

namespace ternorm::tok {

constexpr int kPretokenizerVersion = 1;
constexpr size_t kMaxChunkBytes = 64;

// End (exclusive) of the chunk that starts at i (requires i < n).
size_t byte_chunk_end(const uint8_t* s, size_t n, size_t i);

}  // namespace ternorm::tok
