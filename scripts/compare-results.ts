// npm run results:compare -- A.json B.json: how far run B's science is from run A's on the same
// users (both read and checked as `ternorm report` reads them): the verdict entries (scheme x user:
// within STRICT, within LENIENT, worse than no adapter) and policy choices that differ, each user's
// raw_fp32 test ppl move, and how many of B's test ratios to raw lie inside A's intervals. What
// the README and the closing notes quote when a setting changes (int8 gradients, --eval-stride,
// a model's table type), recomputed from the files.
//
//   node dist/scripts/compare-results.js A.json B.json [--json]
import { parseArgs } from 'node:util';

import { readResults } from '../lib/bet/results-reader.js';
import type { AdapterCompressResults } from '../lib/bet/results-types.js';

const { values, positionals } = parseArgs({ options: { json: { type: 'boolean' } }, allowPositionals: true });
if (positionals.length !== 2) {
  process.stderr.write('usage: node dist/scripts/compare-results.js A.json B.json [--json]\n');
  process.exit(2);
}
/** The comparison of run b against run a (the same users, in the same order). */
function compare(a: AdapterCompressResults, b: AdapterCompressResults) {
  const users = a.users.map((u) => u.user);
  const others = b.users.map((u) => u.user);
  const first = users.findIndex((u, i) => u !== others[i]);
  if (users.length !== others.length || first >= 0)
    throw new Error(
      `the runs have other users (${users.length} against ${others.length}` +
        (first >= 0 ? `; user ${first + 1} is ${users[first]} against ${others[first] ?? 'none'})` : ')'),
    );

  type Tier = [boolean, boolean, boolean];
  const tiers = (r: AdapterCompressResults): Map<string, Tier> =>
    new Map(
      r.verdicts.flatMap((v) =>
        v.users.map((u) => [`${v.scheme} ${u.user}`, [u.withinStrict, u.withinLenient, u.worseThanNoAdapter] as Tier]),
      ),
    );
  const ta = tiers(a),
    tb = tiers(b);
  const verdictsChanged = [...ta].filter(([k, t]) => tb.get(k)?.join() !== t.join()).map(([k]) => k);

  const policyChanged = a.users.flatMap((u, i) => {
    const other = b.users[i]!.policy.choice;
    return u.policy.choice === other ? [] : [{ user: u.user, from: u.policy.choice, to: other }];
  });

  let inside = 0,
    ratios = 0;
  const rawPplMoves = a.users.map((u, i) => {
    const v = b.users[i]!;
    for (const [c, x] of Object.entries(u.test.conditions)) {
      const r = x.ratioToReference;
      const y = v.test.conditions[c]?.ratioToReference;
      if (r === null || r === undefined || y === null || y === undefined) continue;
      ratios++;
      if (r.ci.low <= y.value && y.value <= r.ci.high) inside++;
    }
    return { user: u.user, relative: v.test.conditions.raw_fp32!.ppl.value / u.test.conditions.raw_fp32!.ppl.value - 1 };
  });
  return {
    users: users.length,
    verdictEntries: ta.size,
    verdictsChanged,
    policyChanged,
    policyMeanBytes: [a.policy.meanBytes, b.policy.meanBytes],
    rawPplMoves,
    testRatiosInsideA: { inside, of: ratios },
  };
}

let c: ReturnType<typeof compare>;
try {
  const [a, b] = positionals.map((p) => readResults(p)) as [AdapterCompressResults, AdapterCompressResults];
  c = compare(a, b);
} catch (e) {
  process.stderr.write(`compare-results: ${(e as Error).message}\n`);
  process.exit(1);
}
if (values.json) process.stdout.write(`${JSON.stringify(c)}\n`);
else {
  const pct = (x: number): string => `${x >= 0 ? '+' : ''}${(x * 100).toFixed(3)} %`;
  const changed = c.verdictsChanged.length ? ` (changed: ${c.verdictsChanged.join(', ')})` : '';
  process.stdout.write(
    [
      `verdict entries: ${c.verdictEntries - c.verdictsChanged.length} of ${c.verdictEntries} the same${changed}`,
      `policy choices: ${c.users - c.policyChanged.length} of ${c.users} the same${c.policyChanged.map((p) => `; ${p.user} ${p.from} -> ${p.to}`).join('')} ` +
        `(mean bytes ${c.policyMeanBytes[0]} -> ${c.policyMeanBytes[1]})`,
      `raw_fp32 test ppl: ${c.rawPplMoves.map((m) => `${m.user} ${pct(m.relative)}`).join(', ')}`,
      `test ratios to raw inside A's intervals: ${c.testRatiosInsideA.inside} of ${c.testRatiosInsideA.of}`,
    ].join('\n') + '\n',
  );
}
