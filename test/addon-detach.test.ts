// Defect: detaching (transferring) a typed array an async binding was given, while
// the call runs, crashed Node with SIGSEGV. Each async binding now copies its inputs
// (KernelCall in native/addon/addon.h). The hostile calls run in a child process
// (test/child/detach-inputs.mjs) so a crash fails this test instead of killing vitest.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { loadAddon, packageRoot } from '../lib/native.js';

const root = packageRoot();
const child = join(root, 'test', 'child', 'detach-inputs.mjs');

function runChild(which: string): { status: number | null; signal: NodeJS.Signals | null; out: string } {
  const r = spawnSync(process.execPath, ['--expose-gc', child, root, which], {
    encoding: 'utf8',
    timeout: 110_000,
    env: { ...process.env, UV_THREADPOOL_SIZE: '1' },
  });
  return { status: r.status, signal: r.signal, out: r.stdout + r.stderr };
}

describe('async bindings with inputs detached mid-call', () => {
  for (const which of ['gemmF32', 'ternary', 'model']) {
    it(`${which}: the child exits 0 with the results of untouched inputs`, () => {
      const r = runChild(which);
      expect({ status: r.status, signal: r.signal }, r.out).toEqual({ status: 0, signal: null });
      expect(r.out).toContain(`ok ${which}`);
    });
  }
});

describe('sync bindings given a detached array', () => {
  const addon = loadAddon();
  const detached = (n: number): Float32Array => {
    const a = new Float32Array(n).fill(1);
    structuredClone(a.buffer, { transfer: [a.buffer] });
    return a;
  };

  it('gemmF32 throws a RangeError naming the array', () => {
    expect(() => addon.gemmF32(detached(4), new Float32Array(4), 2, 2, 2, false, false, 1, 0, undefined)).toThrow(RangeError);
    expect(() => addon.gemmF32(detached(4), new Float32Array(4), 2, 2, 2, false, false, 1, 0, undefined)).toThrow(/^a must have/);
    expect(() => addon.gemmF32(new Float32Array(4), new Float32Array(4), 2, 2, 2, false, false, 1, 1, detached(4))).toThrow(/^c must have/);
  });

  it('the ternary kernels and the norm throw RangeErrors', () => {
    const { trits, scales } = addon.absmeanQuantize(new Float32Array(16).fill(0.5), 4, 4, true);
    const packed = addon.pack2(trits, 4, 4);
    expect(() => addon.matmulF32(packed, scales, 4, 4, detached(8), 2)).toThrow(/^x must have/);
    expect(() => addon.matmulF32T(packed, detached(4), 4, 4, new Float32Array(8), 2)).toThrow(/^scales must have/);
    expect(() => addon.rmsNormGain(detached(8), 2, 4, new Float32Array(4), 'raw_fp32', new Float32Array(4), undefined, 1e-5)).toThrow(
      RangeError,
    );
  });
});
