import { describe, expect, it } from 'vitest';
import { crc32 } from 'node:zlib';
import { BPE_FORMAT_VERSION, BpeTokenizer, MAX_VOCAB_SIZE, MIN_VOCAB_SIZE } from '../lib/tokenizer/bpe.js';
import { tokenizerAddon } from '../lib/tokenizer/native.js';
import { chunkBounds, MAX_CHUNK_BYTES, PRETOKENIZER_VERSION } from '../lib/tokenizer/pretokenize.js';

// Deterministic PRNG (mulberry32) so every run sees the same "random" inputs.
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomBytes(n: number, seed: number): Uint8Array {
  const r = rng(seed);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(r() * 256);
  return out;
}

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

// A synthetic corpus: a Zipf-like draw from a 3000-word lexicon of random syllables plus fixed
// words (contractions, UTF-8, numbers, code), with punctuation, indentation and newlines.
const LEXICON: string[] = (() => {
  const r = rng(12345);
  const syl = ['ka', 'lo', 'mi', 'ne', 'th', 'er', 'qu', 'ist', 'an', 'ol', 'ré', 'ü', 'st', 'io', 'ph', 'ee'];
  const fixed = ["don't", "it's", 'café', 'naïve', 'σ', 'µ', '1790', '3.14', 'return', 'const', '=>', 'Ahab'];
  const out = [...fixed];
  while (out.length < 3000) {
    let w = '';
    const n = 1 + Math.floor(r() * 4);
    for (let i = 0; i < n; i++) w += syl[Math.floor(r() * syl.length)]!;
    out.push(r() < 0.1 ? w[0]!.toUpperCase() + w.slice(1) : w);
  }
  return out;
})();

function corpus(bytes: number, seed: number): Uint8Array {
  const r = rng(seed);
  const seps = [' ', ' ', ' ', ' ', ' ', ' ', ', ', '. ', '\n', '\n\n', '; ', ' — ', '\n    ', '(', ')', ' = '];
  const parts: string[] = [];
  let len = 0;
  while (len < bytes) {
    const w = LEXICON[Math.floor(Math.pow(r(), 3) * LEXICON.length)]!;
    const s = seps[Math.floor(r() * seps.length)]!;
    parts.push(w, s);
    len += w.length + s.length;
  }
  return enc(parts.join(''));
}

function concat(...xs: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(xs.reduce((n, x) => n + x.length, 0));
  let at = 0;
  for (const x of xs) {
    out.set(x, at);
    at += x.length;
  }
  return out;
}

// Reference BPE: for each pre-tokenizer chunk, replay every merge in order, left to right.
function referenceEncode(tok: BpeTokenizer, bytes: Uint8Array): number[] {
  const out: number[] = [];
  const bounds = chunkBounds(bytes);
  const merges = tok.merges;
  for (let c = 0; c + 1 < bounds.length; c++) {
    let sym = Array.from(bytes.subarray(bounds[c]!, bounds[c + 1]!));
    for (let k = 0; k < merges.length / 2 && sym.length > 1; k++) {
      const a = merges[2 * k]!;
      const b = merges[2 * k + 1]!;
      const next: number[] = [];
      for (let j = 0; j < sym.length; j++) {
        if (j + 1 < sym.length && sym[j] === a && sym[j + 1] === b) {
          next.push(256 + k);
          j++;
        } else next.push(sym[j]!);
      }
      sym = next;
    }
    out.push(...sym);
  }
  return out;
}

// Reference trainer: recount every pair over all chunks before each merge (slow, obviously right).
function referenceMerges(bytes: Uint8Array, vocabSize: number): number[] {
  const bounds = chunkBounds(bytes);
  const words = new Map<string, { sym: number[]; count: number }>();
  for (let c = 0; c + 1 < bounds.length; c++) {
    const sym = Array.from(bytes.subarray(bounds[c]!, bounds[c + 1]!));
    const key = sym.join(',');
    const w = words.get(key);
    if (w) w.count++;
    else words.set(key, { sym, count: 1 });
  }
  const merges: number[] = [];
  for (let id = 256; id < vocabSize; id++) {
    const counts = new Map<number, number>();
    for (const { sym, count } of words.values()) {
      for (let j = 0; j + 1 < sym.length; j++) {
        const k = sym[j]! * 65536 + sym[j + 1]!;
        counts.set(k, (counts.get(k) ?? 0) + count);
      }
    }
    let best = -1;
    let bestCount = 0;
    for (const [k, c] of counts) if (c > bestCount || (c === bestCount && k < best)) [best, bestCount] = [k, c];
    if (bestCount < 2) throw new Error('reference trainer ran out of pairs');
    const a = Math.floor(best / 65536);
    const b = best % 65536;
    merges.push(a, b);
    for (const w of words.values()) {
      const next: number[] = [];
      for (let j = 0; j < w.sym.length; j++) {
        if (j + 1 < w.sym.length && w.sym[j] === a && w.sym[j + 1] === b) {
          next.push(id);
          j++;
        } else next.push(w.sym[j]!);
      }
      w.sym = next;
    }
  }
  return merges;
}

const TRAIN_TEXT = corpus(300_000, 1);
const TOK = BpeTokenizer.train(TRAIN_TEXT, { vocabSize: 1024 });

function expectRoundTrip(tok: BpeTokenizer, bytes: Uint8Array): Int32Array {
  const ids = tok.encode(bytes);
  expect(ids).toBeInstanceOf(Int32Array);
  for (const id of ids) expect(id >= 0 && id < tok.vocabSize).toBe(true);
  expect(Buffer.from(tok.decode(ids)).equals(Buffer.from(bytes))).toBe(true);
  return ids;
}

describe('constants', () => {
  it("are the core's", () => {
    expect(tokenizerAddon().byteBpeConstants).toEqual({
      formatVersion: BPE_FORMAT_VERSION,
      pretokenizerVersion: PRETOKENIZER_VERSION,
      maxChunkBytes: MAX_CHUNK_BYTES,
      minVocabSize: MIN_VOCAB_SIZE,
      maxVocabSize: MAX_VOCAB_SIZE,
    });
  });
});

describe('pre-tokenizer', () => {
  it('splits like GPT-2, on bytes', () => {
    const text = "Hello, world!  It's   the 1990s' café—naïve $\\mu$\n    return x;\n\t\tfoo 'sun don't";
    const b = enc(text);
    const bounds = chunkBounds(b);
    const chunks = bounds.slice(1).map((e, i) => new TextDecoder().decode(b.subarray(bounds[i]!, e)));
    expect(chunks).toEqual([
      'Hello',
      ',',
      ' world',
      '!',
      ' ',
      ' It',
      "'s",
      '  ',
      ' the',
      ' 1990',
      's',
      "'",
      ' café',
      '—',
      'naïve',
      ' $\\',
      'mu',
      '$',
      '\n   ',
      ' return',
      ' x',
      ';',
      '\n\t\t',
      'foo',
      " '",
      'sun',
      ' don',
      "'t",
    ]);
  });

  it('tiles any byte string with chunks of at most MAX_CHUNK_BYTES', () => {
    const inputs = [
      randomBytes(20_000, 7),
      enc('a'.repeat(1000) + ' '.repeat(300) + '9'.repeat(200) + '-'.repeat(150)),
      new Uint8Array([0xe2, 0x82, 0x20, 0xf0, 0x9f, 0x98, 0x80, 0xed, 0xa0, 0x80, 0xc0, 0xaf, 0xff, 0x80]),
    ];
    for (const b of inputs) {
      const bounds = chunkBounds(b);
      expect(bounds[0]).toBe(0);
      expect(bounds[bounds.length - 1]).toBe(b.length);
      for (let i = 1; i < bounds.length; i++) {
        const len = bounds[i]! - bounds[i - 1]!;
        expect(len).toBeGreaterThan(0);
        expect(len).toBeLessThanOrEqual(MAX_CHUNK_BYTES);
      }
    }
    expect(chunkBounds(new Uint8Array(0))).toEqual([0]);
  });
});

describe('BPE round trips', () => {
  it('round-trips random bytes of many lengths', () => {
    for (const [n, seed] of [
      [1, 1],
      [2, 2],
      [3, 3],
      [17, 4],
      [1000, 5],
      [65_537, 6],
    ] as const) {
      expectRoundTrip(TOK, randomBytes(n, seed));
    }
  });

  it('round-trips invalid UTF-8', () => {
    const cases = [
      [0x80],
      [0xbf],
      [0xc0, 0xaf],
      [0xc1, 0xbf],
      [0xe0, 0x80, 0xaf],
      [0xed, 0xa0, 0x80],
      [0xed, 0xbf, 0xbf],
      [0xf4, 0x90, 0x80, 0x80],
      [0xf5, 0x80, 0x80, 0x80],
      [0xfe],
      [0xff],
      [0xe2, 0x82],
      [0xf0, 0x9f, 0x98],
      [0x63, 0x61, 0x66, 0xc3],
      [0xc3, 0x28],
      [0x20, 0xe9, 0x20, 0x74, 0x68, 0x65],
    ];
    for (const c of cases) expectRoundTrip(TOK, new Uint8Array(c));
    const mixed = concat(enc(' the whale '), new Uint8Array([0xff, 0xfe, 0xc3]), enc('café'), new Uint8Array([0xa9, 0x80]));
    expectRoundTrip(TOK, mixed);
  });

  it('handles empty input', () => {
    expect(TOK.encode(new Uint8Array(0)).length).toBe(0);
    expect(TOK.decode([]).length).toBe(0);
    expect(TOK.decode(new Int32Array(0)).length).toBe(0);
  });

  it('encodes every single byte value as itself and round-trips all 256 together', () => {
    for (let b = 0; b < 256; b++) {
      expect(Array.from(TOK.encode(new Uint8Array([b])))).toEqual([b]);
      expect(Array.from(TOK.decode([b]))).toEqual([b]);
    }
    const all = new Uint8Array(256).map((_, i) => i);
    expectRoundTrip(TOK, all);
    expectRoundTrip(TOK, all.slice().reverse());
  });

  it('round-trips and compresses held-out text, and matches the reference encoder', () => {
    const held = corpus(50_000, 2);
    const ids = expectRoundTrip(TOK, held);
    expect(ids.length).toBeLessThan(held.length / 2);
    expect(Array.from(ids)).toEqual(referenceEncode(TOK, held));
    const rnd = randomBytes(5000, 11);
    expect(Array.from(TOK.encode(rnd))).toEqual(referenceEncode(TOK, rnd));
  });

  it('gives the same ids with a cold and a warm chunk cache', () => {
    const text = corpus(20_000, 3);
    const warm = TOK.encode(text);
    const cold = BpeTokenizer.deserialize(TOK.serialize()).encode(text);
    expect(Array.from(cold)).toEqual(Array.from(warm));
  });

  it('rejects bad ids and non-byte input with clear errors', () => {
    expect(() => TOK.decode([0, 1024])).toThrow(/token 1 is 1024, expected an integer in \[0, 1024\)/);
    expect(() => TOK.decode([-1])).toThrow(/token 0 is -1/);
    expect(() => TOK.decode([1.5])).toThrow(/token 0 is 1.5/);
    expect(() => TOK.decode([NaN])).toThrow(/token 0 is NaN/);
    expect(() => TOK.encode('text' as unknown as Uint8Array)).toThrow(/expected a Uint8Array of bytes, got string/);
    expect(() => TOK.encode([1, 2] as unknown as Uint8Array)).toThrow(/got Array/);
    expect(() => TOK.decode(null as unknown as number[])).toThrow(/expected an array of token ids/);
  });
});

describe('BPE training', () => {
  it('breaks ties by the smallest (left, right) pair and stops with a clear error', () => {
    // chunks "ab", " ab" x2, " cd" x3: (" ",c)=(a,b)=(c,d)=3 tie -> (32,99) first; then (a,b)=3 and
    // (" c",d)=3 tie -> (97,98); then (" c",d); then (" ",ab)=2. Nothing is left after that.
    const text = enc('ab ab ab cd cd cd');
    const tok = BpeTokenizer.train(text, { vocabSize: 260 });
    expect(Array.from(tok.merges)).toEqual([32, 99, 97, 98, 256, 100, 32, 257]);
    expect(Array.from(tok.encode(text))).toEqual([257, 259, 259, 258, 258, 258]);
    expect(() => BpeTokenizer.train(text, { vocabSize: 261 })).toThrow(/supports only 4 merges with pairs occurring >= 2 times/);
  });

  it('merges pairs seen once only when minPairCount allows it', () => {
    const text = enc('xy ab ab');
    expect(() => BpeTokenizer.train(text, { vocabSize: 259 })).toThrow(/supports only 2 merges/);
    const tok = BpeTokenizer.train(text, { vocabSize: 259, minPairCount: 1 });
    expect(Array.from(tok.merges)).toEqual([32, 97, 256, 98, 120, 121]);
  });

  it('merges left to right without overlap', () => {
    const tok = BpeTokenizer.train(enc('aa aa aa'), { vocabSize: 257 });
    expect(Array.from(tok.merges)).toEqual([97, 97]);
    expect(Array.from(tok.encode(enc('aaa')))).toEqual([256, 97]);
    expect(Array.from(tok.encode(enc('aaaa')))).toEqual([256, 256]);
    expect(Array.from(tok.encode(enc('aaaaa')))).toEqual([256, 256, 97]);
  });

  it('learns the same merges as a slow reference trainer', () => {
    const text = concat(corpus(30_000, 5), randomBytes(3000, 6), enc('a'.repeat(500) + ' ' + 'ab'.repeat(300)));
    const tok = BpeTokenizer.train(text, { vocabSize: 700 });
    expect(Array.from(tok.merges)).toEqual(referenceMerges(text, 700));
  });

  it('is deterministic: same input, identical serialized tokenizer', () => {
    const a = BpeTokenizer.train(TRAIN_TEXT, { vocabSize: 1024 }).serialize();
    expect(Buffer.from(a).equals(Buffer.from(TOK.serialize()))).toBe(true);
    const other = BpeTokenizer.train(corpus(300_000, 99), { vocabSize: 1024 }).serialize();
    expect(Buffer.from(other).equals(Buffer.from(a))).toBe(false);
  });

  it('accepts vocabSize 256 on any input (no merges) and rejects bad options', () => {
    const t = BpeTokenizer.train(new Uint8Array(0), { vocabSize: 256 });
    expect(t.vocabSize).toBe(256);
    expectRoundTrip(t, randomBytes(300, 9));
    expect(() => BpeTokenizer.train(new Uint8Array(0), { vocabSize: 300 })).toThrow(/supports only 0 merges/);
    expect(() => BpeTokenizer.train(TRAIN_TEXT, { vocabSize: 255 })).toThrow(/vocabSize must be an integer in \[256, 65536\], got 255/);
    expect(() => BpeTokenizer.train(TRAIN_TEXT, { vocabSize: MAX_VOCAB_SIZE + 1 })).toThrow(/got 65537/);
    expect(() => BpeTokenizer.train(TRAIN_TEXT, { vocabSize: 300.5 })).toThrow(/got 300.5/);
    expect(() => BpeTokenizer.train(TRAIN_TEXT, { vocabSize: 300, minPairCount: 0 })).toThrow(/minPairCount/);
    expect(() => BpeTokenizer.train('abc' as unknown as Uint8Array, { vocabSize: 300 })).toThrow(/expected a Uint8Array/);
    expect(() => BpeTokenizer.train(TRAIN_TEXT, undefined as unknown as { vocabSize: number })).toThrow(/expected options/);
  });

  it('tokenBytes gives each token its bytes', () => {
    expect(Array.from(TOK.tokenBytes(65))).toEqual([65]);
    let total = 0;
    for (let id = 0; id < TOK.vocabSize; id++) total += TOK.tokenBytes(id).length;
    expect(total).toBeGreaterThan(TOK.vocabSize);
    const k = 10;
    const merges = TOK.merges;
    const merged = concat(TOK.tokenBytes(merges[2 * k]!), TOK.tokenBytes(merges[2 * k + 1]!));
    merges[2 * k] = 0; // a copy: the tokenizer is unaffected
    expect(TOK.merges[2 * k]).not.toBe(0);
    expect(Array.from(TOK.tokenBytes(256 + k))).toEqual(Array.from(merged));
    expect(() => TOK.tokenBytes(1024)).toThrow(/outside \[0, 1024\)/);
  });
});

describe('BPE serialization', () => {
  const small = BpeTokenizer.train(corpus(20_000, 4), { vocabSize: 300 });
  const blob = small.serialize();

  // Rewrites the trailing CRC so that only the semantic checks can reject the blob.
  function withCrc(b: Uint8Array): Uint8Array {
    const c = b.slice();
    new DataView(c.buffer).setUint32(c.length - 4, crc32(c.subarray(0, c.length - 4)), true);
    return c;
  }

  it('round-trips exactly', () => {
    expect(blob.length).toBe(12 + 4 * 44 + 4);
    const back = BpeTokenizer.deserialize(blob);
    expect(back.vocabSize).toBe(300);
    expect(Buffer.from(back.serialize()).equals(Buffer.from(blob))).toBe(true);
    const text = corpus(10_000, 8);
    expect(Array.from(back.encode(text))).toEqual(Array.from(small.encode(text)));
    const big = BpeTokenizer.deserialize(TOK.serialize());
    expect(Array.from(big.merges)).toEqual(Array.from(TOK.merges));
  });

  it('rejects every truncation and trailing bytes', () => {
    for (let n = 0; n < blob.length; n++) {
      expect(() => BpeTokenizer.deserialize(blob.subarray(0, n))).toThrow(/BpeTokenizer.deserialize: invalid tokenizer data/);
    }
    expect(() => BpeTokenizer.deserialize(concat(blob, new Uint8Array([0])))).toThrow(/trailing bytes/);
  });

  it('rejects every single-bit corruption', () => {
    for (let i = 0; i < blob.length; i++) {
      for (const bit of [0, 7]) {
        const c = blob.slice();
        c[i]! ^= 1 << bit;
        expect(() => BpeTokenizer.deserialize(c)).toThrow(/invalid tokenizer data/);
      }
    }
  });

  it('names what is wrong', () => {
    const badMagic = blob.slice();
    badMagic[0] = 0x58;
    expect(() => BpeTokenizer.deserialize(badMagic)).toThrow(/bad magic/);
    const v2 = blob.slice();
    v2[4] = 2;
    expect(() => BpeTokenizer.deserialize(withCrc(v2))).toThrow(/unsupported format version 2/);
    const pre = blob.slice();
    pre[6] = 9;
    expect(() => BpeTokenizer.deserialize(withCrc(pre))).toThrow(/pre-tokenizer version 9/);
    const vocab = blob.slice();
    vocab[9] = 0; // vocabSize 300 -> 44
    expect(() => BpeTokenizer.deserialize(withCrc(vocab))).toThrow(/vocabSize 44 outside/);
    const crc = blob.slice();
    crc[crc.length - 1]! ^= 0xff;
    expect(() => BpeTokenizer.deserialize(crc)).toThrow(/checksum mismatch/);
    const forward = blob.slice();
    new DataView(forward.buffer).setUint16(12, 256, true); // merge 0 refers to itself
    expect(() => BpeTokenizer.deserialize(withCrc(forward))).toThrow(/merge 0 \(256, \d+\) refers to an id not defined/);
    const dup = blob.slice();
    dup.copyWithin(16, 12, 16); // merge 1 = merge 0
    expect(() => BpeTokenizer.deserialize(withCrc(dup))).toThrow(/merge 1 repeats the pair/);
    expect(() => BpeTokenizer.deserialize([1, 2] as unknown as Uint8Array)).toThrow(/expected a Uint8Array/);
  });
});
