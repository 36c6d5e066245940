// Byte-level pre-tokenisation (version 1): cuts any byte string into chunks that BPE merges
// never cross. It follows GPT-2's split (contractions, letter runs, digit runs, punctuation runs,
// whitespace runs, a single leading space glued to the next run) but works on BYTES, so invalid
// UTF-8 and binary data are handled without any decoding step that could lose information.
//
// A "character" is one ASCII byte, one well-formed UTF-8 sequence (2-4 bytes, no overlong
// forms, no surrogates, <= U+10FFFF), or one byte that starts no well-formed sequence.
// Classes: LETTER (ASCII letters; \p{L} and \p{M} code points), DIGIT (ASCII digits; \p{N}),
// SPACE (ASCII space, \t, \n, \v, \f, \r) and OTHER (everything else, including invalid bytes).
// Non-ASCII classes come from the JS engine's Unicode tables, which only ever add code points.
//
// Chunk rules, tried in order at each position:
//  1. "'" + one of s t m d re ve ll (ASCII lower case), not followed by a letter: one chunk.
//  2. one ASCII space followed by a LETTER, DIGIT or OTHER character: the space plus the run.
//  3. a run of LETTER, DIGIT or OTHER characters.
//  4. a run of SPACE bytes; when it is followed by a non-space and ends in an ASCII space and is
//     longer than one byte, the final space is left to start the next chunk (rule 2).
// Every chunk is at most MAX_CHUNK_BYTES long (a run is cut at a character boundary), which
// bounds the cost of BPE per chunk on pathological input (long identifiers, base64, ASCII art).

export const PRETOKENIZER_VERSION = 1;
export const MAX_CHUNK_BYTES = 64;

const LETTER = 0;
const DIGIT = 1;
const SPACE = 2;
const OTHER = 3;

const ASCII_CLASS = new Uint8Array(128);
for (let b = 0; b < 128; b++) {
  let c = OTHER;
  if ((b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a)) c = LETTER;
  else if (b >= 0x30 && b <= 0x39) c = DIGIT;
  else if (b === 0x20 || (b >= 0x09 && b <= 0x0d)) c = SPACE;
  ASCII_CLASS[b] = c;
}

const LETTER_RE = /^[\p{L}\p{M}]$/u;
const NUMBER_RE = /^\p{N}$/u;
// Non-ASCII code point -> class; filled lazily (deterministic: depends only on the code point).
const codePointClass = new Map<number, number>();

function classOfCodePoint(cp: number): number {
  let c = codePointClass.get(cp);
  if (c === undefined) {
    const s = String.fromCodePoint(cp);
    c = LETTER_RE.test(s) ? LETTER : NUMBER_RE.test(s) ? DIGIT : OTHER;
    codePointClass.set(cp, c);
  }
  return c;
}

const isCont = (b: number): boolean => (b & 0xc0) === 0x80;
const isSpaceByte = (b: number): boolean => b < 0x80 && ASCII_CLASS[b] === SPACE;

/**
 * Class and byte length of the character starting at `i` (requires i < bytes.length),
 * packed as `class * 8 + length`.
 */
function charAt(bytes: Uint8Array, i: number): number {
  const n = bytes.length;
  const b0 = bytes[i]!;
  if (b0 < 0x80) return ASCII_CLASS[b0]! * 8 + 1;
  if (b0 >= 0xc2 && b0 <= 0xdf) {
    if (i + 1 < n && isCont(bytes[i + 1]!)) {
      return classOfCodePoint(((b0 & 0x1f) << 6) | (bytes[i + 1]! & 0x3f)) * 8 + 2;
    }
  } else if (b0 >= 0xe0 && b0 <= 0xef) {
    if (i + 2 < n) {
      const b1 = bytes[i + 1]!;
      const b2 = bytes[i + 2]!;
      const lo = b0 === 0xe0 ? 0xa0 : 0x80;
      const hi = b0 === 0xed ? 0x9f : 0xbf;
      if (b1 >= lo && b1 <= hi && isCont(b2)) {
        return classOfCodePoint(((b0 & 0x0f) << 12) | ((b1 & 0x3f) << 6) | (b2 & 0x3f)) * 8 + 3;
      }
    }
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    if (i + 3 < n) {
      const b1 = bytes[i + 1]!;
      const lo = b0 === 0xf0 ? 0x90 : 0x80;
      const hi = b0 === 0xf4 ? 0x8f : 0xbf;
      if (b1 >= lo && b1 <= hi && isCont(bytes[i + 2]!) && isCont(bytes[i + 3]!)) {
        const cp =
          ((b0 & 0x07) << 18) | ((b1 & 0x3f) << 12) | ((bytes[i + 2]! & 0x3f) << 6) | (bytes[i + 3]! & 0x3f);
        return classOfCodePoint(cp) * 8 + 4;
      }
    }
  }
  return OTHER * 8 + 1; // a byte that starts no well-formed sequence
}

/** End (exclusive) of a run of class `cls` starting at `i`, capped at `limit`. */
function runEnd(bytes: Uint8Array, i: number, cls: number, limit: number): number {
  const n = bytes.length;
  while (i < n) {
    const ch = charAt(bytes, i);
    if (ch >> 3 !== cls) break;
    const next = i + (ch & 7);
    if (next > limit) break;
    i = next;
  }
  return i;
}

function isContraction(bytes: Uint8Array, i: number): number {
  // returns the contraction's length (2 or 3) at i, or 0
  const n = bytes.length;
  if (i + 1 >= n) return 0;
  const c1 = bytes[i + 1]!;
  let len = 0;
  if (c1 === 0x73 || c1 === 0x74 || c1 === 0x6d || c1 === 0x64) len = 2; // s t m d
  else if (i + 2 < n) {
    const c2 = bytes[i + 2]!;
    if ((c1 === 0x72 && c2 === 0x65) || (c1 === 0x76 && c2 === 0x65) || (c1 === 0x6c && c2 === 0x6c)) len = 3;
  }
  if (len === 0) return 0;
  if (i + len < n && charAt(bytes, i + len) >> 3 === LETTER) return 0;
  return len;
}

/**
 * End (exclusive) of the chunk that starts at `i` (requires 0 <= i < bytes.length).
 * Iterate with `for (let i = 0, e; i < n; i = e) { e = chunkEnd(bytes, i); ... }`.
 */
export function chunkEnd(bytes: Uint8Array, i: number): number {
  const n = bytes.length;
  const limit = Math.min(n, i + MAX_CHUNK_BYTES);
  const b0 = bytes[i]!;
  if (b0 === 0x27) {
    const len = isContraction(bytes, i);
    if (len > 0) return i + len;
  }
  if (b0 === 0x20 && i + 1 < n) {
    const cls = charAt(bytes, i + 1) >> 3;
    if (cls !== SPACE) return runEnd(bytes, i + 1, cls, limit);
  }
  const cls = charAt(bytes, i) >> 3;
  // A character is at most 4 bytes, so a non-space run is never empty.
  if (cls !== SPACE) return runEnd(bytes, i, cls, limit);
  let e = i + 1;
  while (e < limit && isSpaceByte(bytes[e]!)) e++;
  if (e < n && !isSpaceByte(bytes[e]!) && e - i > 1 && bytes[e - 1] === 0x20) return e - 1;
  return e;
}

/** Chunk boundaries of `bytes` as [start0, end0 = start1, ...]: for tests and tools. */
export function chunkBounds(bytes: Uint8Array): number[] {
  const out = [0];
  for (let i = 0; i < bytes.length; ) {
    i = chunkEnd(bytes, i);
    out.push(i);
  }
  return out;
}
