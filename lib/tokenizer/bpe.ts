// Byte-level BPE tokenizer: ids 0..255 are the bytes themselves, id 256 + k is the k-th learned
// merge of two earlier ids. Merges never cross the chunks of ./pretokenize.ts, so training works
// on the unique chunks weighted by their counts and encoding caches each chunk's tokens.
//
// Training rule (deterministic): repeatedly merge the adjacent pair with the highest count
// (occurrences summed over all chunks, weighted by each chunk's frequency); ties go to the
// pair with the smallest left id, then the smallest right id. A merge rewrites every chunk
// left to right without overlap ("a a a" -> "aa a"). Encoding applies the merges in the same
// order, so encoding the training text reproduces the training segmentation.
//
// Serialized form (little-endian), version 1:
//   "TBPE" | u16 version | u8 pre-tokenizer version | u8 reserved (0) | u32 vocabSize |
//   vocabSize-256 merges as (u16 left, u16 right) | u32 CRC-32 of all preceding bytes.

import { crc32 } from 'node:zlib';
import { chunkEnd, PRETOKENIZER_VERSION } from './pretokenize.js';

export const BPE_FORMAT_VERSION = 1;
export const MIN_VOCAB_SIZE = 256;
export const MAX_VOCAB_SIZE = 65536;
const MAGIC = [0x54, 0x42, 0x50, 0x45]; // "TBPE"
const HEADER_BYTES = 12;
// Encoding keeps at most this many distinct chunks cached; the cache is cleared when full.
const ENCODE_CACHE_LIMIT = 1 << 18;

export interface BpeTrainOptions {
  /** Total vocabulary size including the 256 byte tokens: 256 <= vocabSize <= 65536. */
  vocabSize: number;
  /**
   * A pair is merged only if it occurs at least this often (default 2). Training throws if the
   * text runs out of such pairs before reaching vocabSize.
   */
  minPairCount?: number;
}

const pairKey = (a: number, b: number): number => a * 65536 + b;

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function checkBytes(bytes: unknown, what: string): asserts bytes is Uint8Array {
  if (!(bytes instanceof Uint8Array)) {
    throw new TypeError(`${what}: expected a Uint8Array of bytes, got ${describe(bytes)}`);
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  return typeof v;
}

export class BpeTokenizer {
  readonly vocabSize: number;
  private readonly mergeTable: Uint16Array;
  private readonly ranks: Map<number, number>;
  private readonly tokenData: Uint8Array;
  private readonly tokenOffsets: Int32Array;
  private readonly cache = new Map<string, Int32Array>();

  private constructor(merges: Uint16Array) {
    const numMerges = merges.length / 2;
    this.vocabSize = MIN_VOCAB_SIZE + numMerges;
    this.mergeTable = merges;
    this.ranks = new Map();
    const offsets = new Int32Array(this.vocabSize + 1);
    for (let b = 0; b < 256; b++) offsets[b + 1] = b + 1;
    for (let k = 0; k < numMerges; k++) {
      const a = merges[2 * k]!;
      const b = merges[2 * k + 1]!;
      const id = 256 + k;
      offsets[id + 1] = offsets[id]! + (offsets[a + 1]! - offsets[a]!) + (offsets[b + 1]! - offsets[b]!);
      this.ranks.set(pairKey(a, b), k);
    }
    const data = new Uint8Array(offsets[this.vocabSize]!);
    for (let b = 0; b < 256; b++) data[b] = b;
    for (let k = 0; k < numMerges; k++) {
      const a = merges[2 * k]!;
      const b = merges[2 * k + 1]!;
      const at = offsets[256 + k]!;
      data.copyWithin(at, offsets[a]!, offsets[a + 1]!);
      data.copyWithin(at + offsets[a + 1]! - offsets[a]!, offsets[b]!, offsets[b + 1]!);
    }
    this.tokenData = data;
    this.tokenOffsets = offsets;
  }

  /** Learns vocabSize - 256 merges from `bytes` (see the training rule at the top of this file). */
  static train(bytes: Uint8Array, options: BpeTrainOptions): BpeTokenizer {
    checkBytes(bytes, 'BpeTokenizer.train');
    if (typeof options !== 'object' || options === null) {
      throw new TypeError('BpeTokenizer.train: expected options { vocabSize }');
    }
    const { vocabSize } = options;
    const minPairCount = options.minPairCount ?? 2;
    if (!Number.isInteger(vocabSize) || vocabSize < MIN_VOCAB_SIZE || vocabSize > MAX_VOCAB_SIZE) {
      throw new RangeError(
        `BpeTokenizer.train: vocabSize must be an integer in [${MIN_VOCAB_SIZE}, ${MAX_VOCAB_SIZE}], got ${vocabSize}`,
      );
    }
    if (!Number.isInteger(minPairCount) || minPairCount < 1) {
      throw new RangeError(`BpeTokenizer.train: minPairCount must be an integer >= 1, got ${minPairCount}`);
    }
    return new BpeTokenizer(learnMerges(bytes, vocabSize, minPairCount));
  }

  /** Parses the output of serialize(); throws a descriptive error on any corruption. */
  static deserialize(data: Uint8Array): BpeTokenizer {
    checkBytes(data, 'BpeTokenizer.deserialize');
    const fail = (why: string): never => {
      throw new Error(`BpeTokenizer.deserialize: invalid tokenizer data (${data.length} bytes): ${why}`);
    };
    if (data.length < HEADER_BYTES + 4) fail(`truncated: need at least ${HEADER_BYTES + 4} bytes`);
    for (let i = 0; i < 4; i++) if (data[i] !== MAGIC[i]) fail('bad magic, expected "TBPE"');
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const version = view.getUint16(4, true);
    if (version !== BPE_FORMAT_VERSION) fail(`unsupported format version ${version}, expected ${BPE_FORMAT_VERSION}`);
    const pre = data[6]!;
    if (pre !== PRETOKENIZER_VERSION) fail(`unsupported pre-tokenizer version ${pre}, expected ${PRETOKENIZER_VERSION}`);
    if (data[7] !== 0) fail(`reserved byte is ${data[7]}, expected 0`);
    const vocabSize = view.getUint32(8, true);
    if (vocabSize < MIN_VOCAB_SIZE || vocabSize > MAX_VOCAB_SIZE) {
      fail(`vocabSize ${vocabSize} outside [${MIN_VOCAB_SIZE}, ${MAX_VOCAB_SIZE}]`);
    }
    const numMerges = vocabSize - MIN_VOCAB_SIZE;
    const expected = HEADER_BYTES + 4 * numMerges + 4;
    if (data.length !== expected) {
      fail(`${data.length < expected ? 'truncated' : 'trailing bytes'}: vocabSize ${vocabSize} needs exactly ${expected} bytes`);
    }
    const stored = view.getUint32(expected - 4, true);
    const actual = crc32(data.subarray(0, expected - 4));
    if (stored !== actual) fail(`checksum mismatch (stored crc32 ${hex32(stored)}, computed ${hex32(actual)})`);
    const merges = new Uint16Array(2 * numMerges);
    const seen = new Set<number>();
    for (let k = 0; k < numMerges; k++) {
      const a = view.getUint16(HEADER_BYTES + 4 * k, true);
      const b = view.getUint16(HEADER_BYTES + 4 * k + 2, true);
      if (a >= 256 + k || b >= 256 + k) fail(`merge ${k} (${a}, ${b}) refers to an id not defined before ${256 + k}`);
      const key = pairKey(a, b);
      if (seen.has(key)) fail(`merge ${k} repeats the pair (${a}, ${b})`);
      seen.add(key);
      merges[2 * k] = a;
      merges[2 * k + 1] = b;
    }
    return new BpeTokenizer(merges);
  }

  /** A copy of the merges: [2k] and [2k+1] are the left and right ids merged into id 256 + k. */
  get merges(): Uint16Array {
    return this.mergeTable.slice();
  }

  serialize(): Uint8Array {
    const merges = this.mergeTable;
    const numMerges = merges.length / 2;
    const out = new Uint8Array(HEADER_BYTES + 4 * numMerges + 4);
    const view = new DataView(out.buffer);
    out.set(MAGIC, 0);
    view.setUint16(4, BPE_FORMAT_VERSION, true);
    out[6] = PRETOKENIZER_VERSION;
    out[7] = 0;
    view.setUint32(8, this.vocabSize, true);
    for (let k = 0; k < numMerges; k++) {
      view.setUint16(HEADER_BYTES + 4 * k, merges[2 * k]!, true);
      view.setUint16(HEADER_BYTES + 4 * k + 2, merges[2 * k + 1]!, true);
    }
    view.setUint32(out.length - 4, crc32(out.subarray(0, out.length - 4)), true);
    return out;
  }

  /** Token ids of `bytes`; any byte string is accepted and decode() returns it exactly. */
  encode(bytes: Uint8Array): Int32Array {
    checkBytes(bytes, 'BpeTokenizer.encode');
    const n = bytes.length;
    const out = new Int32Array(n);
    const buf = asBuffer(bytes);
    const cache = this.cache;
    let m = 0;
    for (let i = 0; i < n; ) {
      const e = chunkEnd(bytes, i);
      if (e - i === 1) {
        out[m++] = bytes[i]!;
      } else {
        const key = buf.toString('latin1', i, e);
        let ids = cache.get(key);
        if (ids === undefined) {
          ids = this.encodeChunk(bytes, i, e);
          if (cache.size >= ENCODE_CACHE_LIMIT) cache.clear();
          cache.set(key, ids);
        }
        for (let j = 0; j < ids.length; j++) out[m++] = ids[j]!;
      }
      i = e;
    }
    return out.slice(0, m);
  }

  /** Bytes of the token sequence `ids`; throws on an id outside [0, vocabSize). */
  decode(ids: ArrayLike<number>): Uint8Array {
    if (ids === null || typeof ids !== 'object' || typeof ids.length !== 'number') {
      throw new TypeError(`BpeTokenizer.decode: expected an array of token ids, got ${describe(ids)}`);
    }
    const off = this.tokenOffsets;
    let total = 0;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new RangeError(`BpeTokenizer.decode: token ${i} is ${id}, expected an integer in [0, ${this.vocabSize})`);
      }
      total += off[id + 1]! - off[id]!;
    }
    const out = new Uint8Array(total);
    let at = 0;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      const s = off[id]!;
      const e = off[id + 1]!;
      if (e - s === 1) out[at++] = this.tokenData[s]!;
      else {
        out.set(this.tokenData.subarray(s, e), at);
        at += e - s;
      }
    }
    return out;
  }

  /** The bytes that token `id` stands for (a copy). */
  tokenBytes(id: number): Uint8Array {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new RangeError(`BpeTokenizer.tokenBytes: id ${id} outside [0, ${this.vocabSize})`);
    }
    return this.tokenData.slice(this.tokenOffsets[id]!, this.tokenOffsets[id + 1]!);
  }

  // Applies merges lowest rank first, leftmost first: equal to replaying the merges in order.
  private encodeChunk(bytes: Uint8Array, start: number, end: number): Int32Array {
    const sym = new Int32Array(end - start);
    for (let j = start; j < end; j++) sym[j - start] = bytes[j]!;
    let len = sym.length;
    const ranks = this.ranks;
    for (;;) {
      let best = -1;
      let at = -1;
      for (let j = 0; j + 1 < len; j++) {
        const r = ranks.get(pairKey(sym[j]!, sym[j + 1]!));
        if (r !== undefined && (best < 0 || r < best)) {
          best = r;
          at = j;
        }
      }
      if (best < 0) break;
      sym[at] = 256 + best;
      sym.copyWithin(at + 1, at + 2, len);
      len--;
    }
    return sym.slice(0, len);
  }
}

function hex32(v: number): string {
  return '0x' + v.toString(16).padStart(8, '0');
}

// ---- training ---------------------------------------------------------------------------------

/** Max-heap of (count, pair key): higher count first, then smaller key (= smaller left, right). */
class PairHeap {
  private counts: number[] = [];
  private keys: number[] = [];

  get size(): number {
    return this.counts.length;
  }

  private above(i: number, j: number): boolean {
    const ci = this.counts[i]!;
    const cj = this.counts[j]!;
    return ci > cj || (ci === cj && this.keys[i]! < this.keys[j]!);
  }

  private swap(i: number, j: number): void {
    const c = this.counts[i]!;
    this.counts[i] = this.counts[j]!;
    this.counts[j] = c;
    const k = this.keys[i]!;
    this.keys[i] = this.keys[j]!;
    this.keys[j] = k;
  }

  push(count: number, key: number): void {
    this.counts.push(count);
    this.keys.push(key);
    let i = this.counts.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.above(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }

  /** Removes the top entry; returns [count, key]. Requires size > 0. */
  pop(): [number, number] {
    const top: [number, number] = [this.counts[0]!, this.keys[0]!];
    const lastC = this.counts.pop()!;
    const lastK = this.keys.pop()!;
    const n = this.counts.length;
    if (n > 0) {
      this.counts[0] = lastC;
      this.keys[0] = lastK;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < n && this.above(l, m)) m = l;
        if (r < n && this.above(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    return top;
  }
}

function learnMerges(bytes: Uint8Array, vocabSize: number, minPairCount: number): Uint16Array {
  // Unique chunks with their counts, in first-occurrence order.
  const chunkCounts = new Map<string, number>();
  const buf = asBuffer(bytes);
  for (let i = 0; i < bytes.length; ) {
    const e = chunkEnd(bytes, i);
    if (e - i > 1) {
      const key = buf.toString('latin1', i, e);
      chunkCounts.set(key, (chunkCounts.get(key) ?? 0) + 1);
    }
    i = e;
  }
  const words: Int32Array[] = [];
  const weights: number[] = [];
  for (const [key, count] of chunkCounts) {
    const w = new Int32Array(key.length);
    for (let j = 0; j < key.length; j++) w[j] = key.charCodeAt(j);
    words.push(w);
    weights.push(count);
  }
  chunkCounts.clear();

  // Pair counts and, per pair, the words that may contain it (stale entries are skipped).
  const pairCounts = new Map<number, number>();
  const where = new Map<number, number[]>();
  for (let w = 0; w < words.length; w++) {
    const word = words[w]!;
    const c = weights[w]!;
    for (let j = 0; j + 1 < word.length; j++) {
      const k = pairKey(word[j]!, word[j + 1]!);
      pairCounts.set(k, (pairCounts.get(k) ?? 0) + c);
      const list = where.get(k);
      if (list === undefined) where.set(k, [w]);
      else if (list[list.length - 1] !== w) list.push(w);
    }
  }
  const heap = new PairHeap();
  for (const [k, c] of pairCounts) heap.push(c, k);

  const numMerges = vocabSize - MIN_VOCAB_SIZE;
  const merges = new Uint16Array(2 * numMerges);
  const visited = new Int32Array(words.length).fill(-1);
  const delta = new Map<number, number>();
  for (let m = 0; m < numMerges; m++) {
    // Pop until an entry matches its pair's current count (older entries are stale).
    let key = -1;
    let count = 0;
    while (heap.size > 0) {
      const [c, k] = heap.pop();
      if (pairCounts.get(k) === c) {
        key = k;
        count = c;
        break;
      }
    }
    if (key < 0 || count < minPairCount) {
      throw new Error(
        `BpeTokenizer.train: the training text supports only ${m} merges with pairs occurring >= ${minPairCount} times ` +
          `(vocabSize ${vocabSize} needs ${numMerges}); give more text or a smaller vocabSize`,
      );
    }
    const a = Math.floor(key / 65536);
    const b = key % 65536;
    const id = MIN_VOCAB_SIZE + m;
    merges[2 * m] = a;
    merges[2 * m + 1] = b;
    pairCounts.delete(key);
    const list = where.get(key)!;
    where.delete(key);
    delta.clear();
    for (const w of list) {
      if (visited[w] === m) continue;
      visited[w] = m;
      const word = words[w]!;
      const len = word.length;
      let hits = 0;
      for (let j = 0; j + 1 < len; j++) {
        if (word[j] === a && word[j + 1] === b) {
          hits++;
          j++;
        }
      }
      if (hits === 0) continue;
      const c = weights[w]!;
      for (let j = 0; j + 1 < len; j++) {
        const k = pairKey(word[j]!, word[j + 1]!);
        delta.set(k, (delta.get(k) ?? 0) - c);
      }
      const merged = new Int32Array(len - hits);
      let t = 0;
      for (let j = 0; j < len; j++) {
        if (j + 1 < len && word[j] === a && word[j + 1] === b) {
          merged[t++] = id;
          j++;
        } else merged[t++] = word[j]!;
      }
      words[w] = merged;
      for (let j = 0; j + 1 < merged.length; j++) {
        const x = merged[j]!;
        const y = merged[j + 1]!;
        const k = pairKey(x, y);
        delta.set(k, (delta.get(k) ?? 0) + c);
        if (x === id || y === id) {
          const l = where.get(k);
          if (l === undefined) where.set(k, [w]);
          else if (l[l.length - 1] !== w) l.push(w);
        }
      }
    }
    for (const [k, d] of delta) {
      if (d === 0 || k === key) continue;
      const c = (pairCounts.get(k) ?? 0) + d;
      if (c > 0) {
        pairCounts.set(k, c);
        heap.push(c, k);
      } else {
        pairCounts.delete(k);
        where.delete(k);
      }
    }
  }
  return merges;
}
