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

export interface NativeVocabMetadata {
  model: string;
  pre?: string;
  tokens: string[];
  scores?: Float32Array;
  tokenTypes?: Int32Array;
  merges?: string[];
  bos?: number;
  eos?: number;
  unk?: number;
  pad?: number;
  addBos?: boolean;
  addEos?: boolean;
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
  VocabTokenizer: new (metadata: NativeVocabMetadata) => NativeVocabTokenizer;
  byteBpeTrain(text: Uint8Array, vocabSize: number, minPairCount: number): Uint16Array;
  byteBpeParse(data: Uint8Array): Uint16Array;
  byteChunkBounds(bytes: Uint8Array): Uint32Array;
}

export function tokenizerAddon(): TokenizerAddon {
  return loadAddon() as unknown as TokenizerAddon;
}
