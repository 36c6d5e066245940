// The kernel suites (test/kernels.*.test.ts) run once per ISA path: the vitest
// projects in vitest.config.ts set TERNORM_ISA before the addon loads. This
// helper says which path a suite is forced to and whether this CPU can run it
// (a path it cannot run is skipped, and said so in the suite's name).
import { describe, expect, it } from 'vitest';

import { cpuInfo } from '../lib/kernels.js';
import { loadAddon } from '../lib/native.js';

const forced = process.env.TERNORM_ISA === undefined || process.env.TERNORM_ISA === '' ? undefined : process.env.TERNORM_ISA;
// The raw info works even when TERNORM_ISA is unusable (cpuInfo() would throw).
const raw = loadAddon().cpuInfo();
const runnable = forced === undefined || (raw.supportedIsas as string[]).includes(forced);

export const isaLabel = forced === undefined ? `default ISA (${raw.defaultIsa})` : `TERNORM_ISA=${forced}`;

/** describe() that runs on the forced ISA path and first checks the addon really uses it. */
export function describeOnIsa(name: string, body: () => void): void {
  const title = runnable ? `${name} [${isaLabel}]` : `${name} [${isaLabel}: not supported by this CPU, skipped]`;
  describe.skipIf(!runnable)(title, () => {
    it('runs on the forced ISA path', () => {
      const info = cpuInfo();
      if (forced !== undefined) expect(info.defaultIsa).toBe(forced);
      expect(info.supportedIsas).toContain(info.defaultIsa);
      expect(info.supportedIsas[0]).toBe('scalar');
    });
    body();
  });
}
