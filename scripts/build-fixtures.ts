// `npm run fixtures`: builds (or verifies) the fixture texts and the fleet (lib/data/fleet.ts) in
// the cache directory and prints every text and split with its size and sha256, and the fleet's
// users per family.
//   node dist/scripts/build-fixtures.js [--dir DIR] [--force]
//   node dist/scripts/build-fixtures.js --write-lock   (re-pin lib/data/fixtures-lock.json to the
//                                                       installed packages; review the diff)

import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { computePins, FIXTURE_LOCK_FILE, getFixtures, lockFileText, TEXT_NAMES, type Fixtures } from '../lib/data/fixtures.js';
import { FLEET_FAMILIES, getFleetFixtures, type FleetFixtures } from '../lib/data/fleet.js';
import { writeFileAtomic } from '../lib/util/files.js';
import { packageRoot } from '../lib/util/package-root.js';

function report(fx: Fixtures): void {
  console.log(`fixtures in ${fx.dir} (${fx.builtBecause === null ? 'cache verified' : `built: ${fx.builtBecause}`})`);
  const row = (what: string, bytes: number, sha: string, extra = ''): void =>
    console.log(`  ${what.padEnd(22)} ${String(bytes).padStart(10)} B  ${sha.slice(0, 16)}  ${extra}`);
  for (const name of TEXT_NAMES) {
    const t = fx.manifest.texts[name];
    row(name, t.bytes, t.sha256, t.sources.join(', '));
    for (const [pn, p] of Object.entries(t.parts)) row(`  ${pn}`, p.bytes, p.sha256, `${p.ranges.length} range(s)`);
  }
}

function reportFleet(fx: FleetFixtures): void {
  console.log(
    `fleet in ${fx.dir} (${fx.builtBecause === null ? 'cache verified' : `built: ${fx.builtBecause}`}): ${fx.users.length} users`,
  );
  for (const f of FLEET_FAMILIES) {
    const fam = fx.manifest.families[f];
    const users = fx.manifest.users.filter((u) => u.family === f);
    console.log(
      `  ${f.padEnd(8)} ${String(users.length).padStart(4)} users  ${String(fam.bytes).padStart(10)} B  ${fam.sha256.slice(0, 16)}  ${fam.source}, ${fam.documents} documents`,
    );
  }
}

function main(): void {
  const { values } = parseArgs({
    options: {
      dir: { type: 'string' },
      force: { type: 'boolean', default: false },
      'write-lock': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log('usage: build-fixtures [--dir DIR] [--force] | --write-lock');
    return;
  }
  if (values['write-lock']) {
    const file = join(packageRoot(), FIXTURE_LOCK_FILE);
    writeFileAtomic(file, lockFileText(computePins()));
    console.log(`wrote ${file}; review the diff`);
    return;
  }
  const where = { ...(values.dir !== undefined ? { dir: values.dir } : {}), rebuild: values.force };
  report(getFixtures(where));
  reportFleet(getFleetFixtures(where));
}

try {
  main();
} catch (err) {
  console.error(`build-fixtures: ${(err as Error).message}`);
  process.exitCode = 1;
}
