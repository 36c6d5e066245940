// sha256 of bytes or a UTF-8 string, as 64 lowercase hex digits: the one hashing helper of the
// TypeScript side (fixtures, results checksums, criteria, seeds, model fingerprints of files).

import { createHash } from 'node:crypto';

export function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}
