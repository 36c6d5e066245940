// Who a fleet run measures: `fixture:NAME` (a fixture family shipped with ternorm) or a JSON-lines
// file, one user a line: {"name": "u1", "text": "u1.txt", "family": "prose", "adapter": "u1.adapter"}
// ("family" and "adapter" optional; paths relative to the file). Workers read the texts at these
// paths, so on several machines the paths must reach the same files (a shared or copied folder).

import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

import { checkUserName } from '../bet/results-format.js';
import { defaultUsers, fixtureUsers, type BetUser } from '../bet/protocol.js';

export interface FleetUser {
  user: BetUser;
  /** The group the report breaks the distribution down by. */
  family: string;
  /** Position in the run's user list (the report's order). */
  ordinal: number;
}

/** Fixture families: name -> its users and their family. */
const FIXTURE_FAMILIES: Record<string, () => { user: BetUser; family: string }[]> = {
  default: () => defaultUsers().map((u) => ({ user: u, family: u.name })),
};

/** The fleet fixture (lib/data/fleet.ts): "fleet" or "fleet/<family>"; a user's family is its name's prefix ("<family>-<index>"). */
function fleetFixture(name: string): { user: BetUser; family: string }[] | undefined {
  if (name !== 'fleet' && !name.startsWith('fleet/')) return undefined;
  return fixtureUsers(name).map((u) => ({ user: u, family: u.name.replace(/-\d+$/, '') }));
}

const FAMILY_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** Reads a --users value into the run's users (names unique, every text path absolute). */
export function readFleetUsers(spec: string): FleetUser[] {
  let list: { user: BetUser; family: string }[];
  if (spec.startsWith('fixture:')) {
    const name = spec.slice('fixture:'.length);
    const fleet = fleetFixture(name);
    const family = FIXTURE_FAMILIES[name];
    if (fleet === undefined && family === undefined)
      throw new Error(
        `--users ${spec}: no fixture family "${name}" (known: ${[...Object.keys(FIXTURE_FAMILIES), 'fleet', 'fleet/<family>'].join(', ')})`,
      );
    list = fleet ?? family!();
  } else {
    let text: string;
    try {
      text = readFileSync(spec, 'utf8');
    } catch (err) {
      throw new Error(`--users ${spec}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
    }
    const base = dirname(resolve(spec));
    list = [];
    text.split('\n').forEach((line, i) => {
      if (line.trim() === '') return;
      const where = `--users ${spec} line ${i + 1}`;
      let o: unknown;
      try {
        o = JSON.parse(line);
      } catch {
        throw new Error(`${where}: not a JSON object`);
      }
      const r = o as Record<string, unknown>;
      if (o === null || typeof o !== 'object' || Array.isArray(o)) throw new Error(`${where}: not a JSON object`);
      for (const k of Object.keys(r))
        if (!['name', 'text', 'family', 'adapter'].includes(k))
          throw new Error(`${where}: unknown key "${k}" (expected name, text, family, adapter)`);
      const name = checkUserName(r.name, where);
      if (typeof r.text !== 'string' || r.text === '') throw new Error(`${where}: "text" must be the path of the user's text file`);
      const family = r.family ?? 'users';
      if (typeof family !== 'string' || !FAMILY_PATTERN.test(family))
        throw new Error(`${where}: "family" must be 1-64 letters, digits, '_', '.' or '-'`);
      if (r.adapter !== undefined && (typeof r.adapter !== 'string' || r.adapter === ''))
        throw new Error(`${where}: "adapter" must be the path of a trained adapter file`);
      const user: BetUser = { name, source: { kind: 'file', path: resolve(base, r.text) } };
      if (typeof r.adapter === 'string') user.adapterPath = resolve(base, r.adapter);
      list.push({ user, family });
    });
    if (list.length === 0) throw new Error(`--users ${spec}: no users in the file`);
  }
  const seen = new Set<string>();
  for (const { user } of list) {
    if (seen.has(user.name)) throw new Error(`--users ${spec}: user "${user.name}" is given twice; user names must be unique`);
    seen.add(user.name);
  }
  return list.map((u, ordinal) => ({ ...u, ordinal }));
}
