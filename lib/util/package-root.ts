// The ternorm package root: where models/, results/, lib/bet/schema/ and package.json live, wherever
// the command runs from (dist/lib/... after tsc, lib/... under vitest).

import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const PACKAGE_NAME = 'ternorm';
let cached: string | undefined;

/** The directory of the nearest package.json named "ternorm" at or above this module. */
export function packageRoot(): string {
  if (cached !== undefined) return cached;
  const start = dirname(fileURLToPath(import.meta.url));
  for (let dir = start; ; dir = dirname(dir)) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      try {
        if ((JSON.parse(readFileSync(manifest, 'utf8')) as { name?: unknown }).name === PACKAGE_NAME) return (cached = dir);
      } catch {
        // an unreadable package.json on the way up is not ours; keep walking
      }
    }
    if (dirname(dir) === dir)
      throw new Error(`ternorm: cannot find the package root (a package.json named "${PACKAGE_NAME}") above ${start}`);
  }
}
