// `npm run models:record`: writes the base model's record (models/README.md) and loss curve
// (models/training-curve.svg) from the two runs' model files and `/usr/bin/time -v` logs
// (lib/model/base-record.ts computes them).
//
//   node dist/scripts/base-record.js --ternary models/base.tnm --fp32 out/runs/base-fp32.tnm \
//     --ternary-log out/runs/ternary.err --fp32-log out/runs/fp32.err [--out-dir models]

import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { writeBaseRecord } from '../lib/model/base-record.js';
import { packageRoot } from '../lib/util/package-root.js';

function main(argv: string[]): number {
  const usage =
    'usage: node dist/scripts/base-record.js --ternary models/base.tnm --fp32 out/runs/base-fp32.tnm ' +
    '--ternary-log out/runs/ternary.err --fp32-log out/runs/fp32.err [--out-dir models]\n';
  let v: Record<string, string | boolean | undefined>;
  try {
    v = parseArgs({
      args: argv,
      options: {
        ternary: { type: 'string' },
        fp32: { type: 'string' },
        'ternary-log': { type: 'string' },
        'fp32-log': { type: 'string' },
        'out-dir': { type: 'string' },
        help: { type: 'boolean' },
      },
      strict: true,
    }).values;
  } catch (err) {
    process.stderr.write(`models:record: ${(err as Error).message}\n${usage}`);
    return 2;
  }
  if (v.help) {
    process.stdout.write(usage);
    return 0;
  }
  const missing = ['ternary', 'fp32', 'ternary-log', 'fp32-log'].filter((k) => typeof v[k] !== 'string' || v[k] === '');
  if (missing.length > 0) {
    process.stderr.write(`models:record: missing --${missing.join(', --')}\n${usage}`);
    return 2;
  }
  try {
    const files = writeBaseRecord({
      ternary: v.ternary as string,
      fp32: v.fp32 as string,
      ternaryLog: v['ternary-log'] as string,
      fp32Log: v['fp32-log'] as string,
      outDir: resolve((v['out-dir'] as string | undefined) ?? join(packageRoot(), 'models')),
    });
    process.stdout.write(`wrote ${files.join(' and ')}\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`models:record: ${(err as Error).message}\n`);
    return 1;
  }
}

process.exitCode = main(process.argv.slice(2));
