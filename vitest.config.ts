// The kernel suites (test/kernels.*.test.ts) run once per ISA path this
// architecture has, each in its own project whose TERNORM_ISA is set before
// the addon loads (the addon reads it once, when it loads); a path the CPU
// cannot run is reported as skipped. Every other test runs once, in "default".
import { configDefaults, defineConfig } from 'vitest/config';

const KERNEL_SUITES = ['test/kernels.*.test.ts'];
const ISAS = process.arch === 'x64' ? ['scalar', 'avx2', 'avx512'] : process.arch === 'arm64' ? ['scalar', 'neon'] : ['scalar'];

export default defineConfig({
  test: {
    projects: [
      ...ISAS.map((isa) => ({
        test: {
          name: `isa-${isa}`,
          include: KERNEL_SUITES,
          env: { TERNORM_ISA: isa },
        },
      })),
      {
        test: {
          name: 'default',
          include: ['test/**/*.test.ts'],
          // A hang guard, not a speed check: end-to-end cases train and evaluate real (tiny) models
          // and must pass on a loaded shared machine too.
          testTimeout: 120_000,
          hookTimeout: 120_000,
          exclude: [...configDefaults.exclude, ...KERNEL_SUITES],
        },
      },
    ],
  },
});
