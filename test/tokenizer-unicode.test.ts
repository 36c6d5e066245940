// native/tokenizer/unicode_tables.cpp is generated from Node's Unicode data by
// scripts/gen-unicode-tables.mjs; this fails when the committed file is stale (regenerate with
// `node scripts/gen-unicode-tables.mjs`).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
// @ts-expect-error -- a plain .mjs script without type declarations
import { unicodeTablesSource, UNICODE_TABLES_PATH } from '../scripts/gen-unicode-tables.mjs';

describe('Unicode tables of the core tokenizers', () => {
  it('are what the generator makes from this Node', () => {
    const committed = readFileSync(UNICODE_TABLES_PATH as string, 'utf8');
    expect(committed === (unicodeTablesSource as () => string)()).toBe(true);
  });
});
