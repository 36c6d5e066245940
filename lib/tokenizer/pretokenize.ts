// The project BPE's byte pre-tokenizer lives in the core (native/tokenizer/byte_pretokenize.h,
// where its rules are written down); this exposes its chunk boundaries for tests and tools.

import { tokenizerAddon } from './native.js';

// The core's values, repeated so that importing this module does not load the addon;
// test/tokenizer.test.ts checks them against the addon's byteBpeConstants.
/** Version of the chunk rules, stored in every serialized tokenizer. */
export const PRETOKENIZER_VERSION = 1;
/** No chunk is longer than this many bytes. */
export const MAX_CHUNK_BYTES = 64;

/** Chunk boundaries of `bytes` as [start0, end0 = start1, ...]. */
export function chunkBounds(bytes: Uint8Array): number[] {
  if (!(bytes instanceof Uint8Array)) throw new TypeError('chunkBounds: expected a Uint8Array of bytes');
  return Array.from(tokenizerAddon().byteChunkBounds(bytes));
}
