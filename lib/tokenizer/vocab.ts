// Tokenizers of GGUF models from plain tokenizer metadata (the tokenizer.ggml.* keys): a typed
// surface over the core's VocabTokenizer (native/tokenizer/vocab.h, which documents the
// behaviour and how it follows llama.cpp). Each call hands a whole text to the core.

import { tokenIds, tokenizerAddon, type NativeVocabTokenizer, type VocabMetadata } from './native.js';

export type { VocabMetadata } from './native.js';

/** tokenizer.ggml.token_type values. */
export const TOKEN_TYPE = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;

export interface EncodeOptions {
  /** Add BOS / EOS as the metadata's addBos / addEos say (default true, like llama.cpp's tokenize). */
  addSpecial?: boolean;
  /**
   * Match control and unknown tokens written in the text (e.g. "<|eot_id|>") as those tokens
   * (default false: text is data). User-defined tokens are always matched, as in llama.cpp.
   */
  parseSpecial?: boolean;
}

export class VocabTokenizer {
  readonly size: number;
  private readonly core: NativeVocabTokenizer;

  constructor(readonly metadata: VocabMetadata) {
    if (typeof metadata !== 'object' || metadata === null) throw new TypeError('VocabTokenizer: expected a metadata object');
    this.core = new (tokenizerAddon().VocabTokenizer)(metadata);
    this.size = this.core.size();
  }

  /** Token ids of a text (a string is encoded as UTF-8; bytes are taken as they are). */
  encode(text: string | Uint8Array, options: EncodeOptions = {}): Int32Array {
    const bytes = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
    if (!(bytes instanceof Uint8Array)) throw new TypeError('VocabTokenizer.encode: expected a string or a Uint8Array');
    return this.core.encode(bytes, options.addSpecial ?? true, options.parseSpecial ?? false);
  }

  /**
   * Bytes of the ids. Control and unknown tokens give nothing unless renderSpecial. For llama
   * with addSpacePrefix, the first piece's leading space (the one encode prefixed) is dropped.
   */
  decode(ids: ArrayLike<number>, options: { renderSpecial?: boolean } = {}): Uint8Array {
    return this.core.decode(tokenIds(ids, this.size, 'VocabTokenizer.decode'), options.renderSpecial ?? false);
  }

  /** decode() as a UTF-8 string (invalid sequences become U+FFFD). */
  decodeText(ids: ArrayLike<number>, options: { renderSpecial?: boolean } = {}): string {
    return Buffer.from(this.decode(ids, options)).toString('utf8');
  }
}
