// The tokenizer part of the native addon (native/addon/tokenizer_binding.cpp): positional and
// checked by the addon itself; lib/tokenizer/bpe.ts and vocab.ts are the typed surface.

import { loadAddon } from '../native.js';

export interface NativeByteBpe {
  vocabSize(): number;
  merges(): Uint16Array;
  serialize(): Uint8Array;
  encode(bytes: Uint8Array): Int32Array;
  decode(ids: Int32Array): Uint8Array;
  tokenBytes(id: number): Uint8Array;
}

export interface VocabMetadata {
  /** tokenizer.ggml.model: "gpt2" (byte-level BPE) or "llama" (SentencePiece). */
  model: 'gpt2' | 'llama';
  /** tokenizer.ggml.pre for gpt2: "default"/"gpt-2" or "llama-bpe" (Llama 3); ignored for llama. */
  pre?: string;
  tokens: string[];
  /** Required for llama. */
  scores?: Float32Array;
  /** Empty or absent: every token is normal. */
  tokenTypes?: Int32Array;
  /** gpt2: "left right" in rank order. */
  merges?: string[];
  bos?: number;
  eos?: number;
  unk?: number;
  pad?: number;
  addBos?: boolean;
  addEos?: boolean;
  /** llama: tokenizer.ggml.add_space_prefix (default true). */
  addSpacePrefix?: boolean;
}

export interface NativeVocabTokenizer {
  size(): number;
  encode(bytes: Uint8Array, addSpecial: boolean, parseSpecial: boolean): Int32Array;
  decode(ids: Int32Array, renderSpecial: boolean): Uint8Array;
}

export interface TokenizerAddon {
  byteBpeConstants: {
    formatVersion: number;
    pretokenizerVersion: number;
    maxChunkBytes: number;
    minVocabSize: number;
    maxVocabSize: number;
  };
  ByteBpe: new (merges: Uint16Array) => NativeByteBpe;
  VocabTokenizer: new (metadata: VocabMetadata) => NativeVocabTokenizer;
  byteBpeTrain(text: Uint8Array, vocabSize: number, minPairCount: number): Uint16Array;
  byteBpeParse(data: Uint8Array): Uint16Array;
  byteChunkBounds(bytes: Uint8Array): Uint32Array;
}

export function tokenizerAddon(): TokenizerAddon {
  return loadAddon() as unknown as TokenizerAddon;
}

/**
 * Token ids as the Int32Array the core takes: an Int32Array passes as is (the core checks its
 * range), any other array-like is checked here, naming `who` and the first bad id.
 */
export function tokenIds(ids: ArrayLike<number>, vocabSize: number, who: string): Int32Array {
  if (ids === null || typeof ids !== 'object' || typeof ids.length !== 'number') {
    throw new TypeError(`${who}: expected an array of token ids, got ${describeValue(ids)}`);
  }
  if (ids instanceof Int32Array) return ids;
  const i32 = new Int32Array(ids.length);
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw new RangeError(`${who}: token ${i} is ${id}, expected an integer in [0, ${vocabSize})`);
    }
    i32[i] = id;
  }
  return i32;
}

/** A value's kind for a message: 'null', a class name, or its typeof. */
export function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  return typeof v;
}
