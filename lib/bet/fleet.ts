// Fleet totals: bytes to ship one adapter per user for a fleet of N users, from the exact encoded
// sizes measured for the observed users.
//
// Extrapolation rule: the M observed users, in name order (code units), stand for the fleet in
// equal shares: each stands for floor(N / M) fleet users and the first N mod M of them for one
// more. A row's total is the sum over observed users of (their share) x (their encoded size under
// that row): "all <scheme>" uses the user's size under the scheme; "policy mix" uses the size of the
// encoding the per-user policy chose for that user (on validation). So the policy mix is the
// observed fraction of choices scaled to N, and every total is an exact integer.

import { markdownText as md } from '../util/text.js';
import type { AdapterCompressResults } from './results.js';

export interface FleetRow {
  label: string;
  kind: 'all' | 'policy';
  /** The scheme shipped to everyone, or null for the policy mix. */
  condition: string | null;
  totalBytes: number;
  /** totalBytes / fleet users. */
  bytesPerUser: number;
  /** Encoded bytes of each observed user under this row. */
  observedBytes: Record<string, number>;
  /** Fleet users per encoding. */
  mix: Record<string, number>;
  /** totalBytes / (the all-fallback total). */
  ratioToFallback: number;
}

export interface FleetSummary {
  fleetUsers: number;
  /** Observed user -> fleet users it stands for. */
  shares: Record<string, number>;
  fallback: string;
  bet: string;
  /** "all <fallback>", "all <bet>", "policy mix", then "all <scheme>" for every other encoding. */
  rows: FleetRow[];
}

const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Splits N fleet users over the observed users as described at the top of this file. */
export function fleetShares(users: readonly string[], fleetUsers: number): Record<string, number> {
  if (!Number.isSafeInteger(fleetUsers) || fleetUsers < 1)
    throw new RangeError(`fleet: the number of users must be a positive integer, got ${String(fleetUsers)}`);
  if (users.length === 0) throw new RangeError('fleet: the results have no users yet; nothing to extrapolate from');
  const sorted = [...users].sort(byName);
  if (new Set(sorted).size !== sorted.length) throw new RangeError('fleet: a user appears twice');
  const base = Math.floor(fleetUsers / sorted.length);
  const extra = fleetUsers % sorted.length;
  return Object.fromEntries(sorted.map((u, i) => [u, base + (i < extra ? 1 : 0)]));
}

/** Fleet totals for `fleetUsers` users from the results' encoded sizes and policy choices. */
export function fleetTotals(results: Pick<AdapterCompressResults, 'users' | 'conditions' | 'criteria'>, fleetUsers: number): FleetSummary {
  const shares = fleetShares(
    results.users.map((u) => u.user),
    fleetUsers,
  );
  const { noAdapter, fallback, bet } = results.criteria.criteria.conditions;
  const encodings = results.conditions.filter((c) => c !== noAdapter);
  const sizeOf = (u: AdapterCompressResults['users'][number], c: string): number => {
    const b = u.encodings[c]?.bytes;
    if (b === undefined || !Number.isSafeInteger(b) || b <= 0)
      throw new RangeError(`fleet: user "${u.user}" has no encoded size for "${c}"`);
    return b;
  };
  const total = (
    pick: (u: AdapterCompressResults['users'][number]) => string,
  ): Omit<FleetRow, 'label' | 'kind' | 'condition' | 'ratioToFallback'> => {
    let totalBytes = 0;
    const observedBytes: Record<string, number> = {};
    const mix: Record<string, number> = {};
    for (const u of [...results.users].sort((a, b) => byName(a.user, b.user))) {
      const c = pick(u);
      const b = sizeOf(u, c);
      observedBytes[u.user] = b;
      mix[c] = (mix[c] ?? 0) + shares[u.user]!;
      totalBytes += shares[u.user]! * b;
    }
    if (!Number.isSafeInteger(totalBytes)) throw new RangeError(`fleet: the total (${totalBytes} bytes) exceeds exact integer range`);
    const sortedMix = Object.fromEntries(Object.entries(mix).sort(([a], [b]) => byName(a, b)));
    return { totalBytes, bytesPerUser: totalBytes / fleetUsers, observedBytes, mix: sortedMix };
  };
  const fallbackTotal = total(() => fallback).totalBytes;
  const row = (
    label: string,
    kind: FleetRow['kind'],
    condition: string | null,
    pick: (u: AdapterCompressResults['users'][number]) => string,
  ): FleetRow => {
    const t = total(pick);
    return { label, kind, condition, ...t, ratioToFallback: t.totalBytes / fallbackTotal };
  };
  const rows: FleetRow[] = [
    row(`all ${fallback}`, 'all', fallback, () => fallback),
    row(`all ${bet}`, 'all', bet, () => bet),
    row('policy mix', 'policy', null, (u) => u.policy.choice),
    ...encodings.filter((c) => c !== fallback && c !== bet).map((c) => row(`all ${c}`, 'all', c, () => c)),
  ];
  return { fleetUsers, shares, fallback, bet, rows };
}

const UNITS = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** Bytes in binary (IEC) units with 3 significant digits: 512 B, 1.50 KiB, 210 MiB. */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) throw new RangeError(`formatBytes: expected a non-negative number of bytes, got ${bytes}`);
  if (bytes < 1024) return `${Number.isInteger(bytes) ? bytes : bytes.toFixed(1)} B`;
  let v = bytes / 1024;
  let i = 0;
  for (;;) {
    const text = v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0);
    // rounding up to 1024 moves to the next unit (1048575 B is 1.00 MiB, not 1024 KiB)
    if (Number(text) < 1024 || i === UNITS.length - 1) return `${text} ${UNITS[i]}`;
    v /= 1024;
    i++;
  }
}

function pct(r: number): string {
  return `${(r * 100).toFixed(1)}%`;
}

function mixText(mix: Record<string, number>): string {
  return Object.entries(mix)
    .map(([c, n]) => `${c} ${n}`)
    .join(', ');
}

/** A Markdown table of the fleet totals. */
export function fleetMarkdown(s: FleetSummary): string {
  const lines = [
    `Fleet of ${s.fleetUsers} users; observed users stand for: ${Object.entries(s.shares)
      .map(([u, n]) => `${md(u)} ${n}`)
      .join(', ')}.`,
    '',
    `| shipping | bytes per user | fleet total (bytes) | fleet total | vs all ${md(s.fallback)} | users per encoding |`,
    '|---|---:|---:|---:|---:|---|',
    ...s.rows.map(
      (r) =>
        `| ${md(r.label)} | ${r.bytesPerUser.toFixed(1)} | ${r.totalBytes} | ${formatBytes(r.totalBytes)} | ${pct(r.ratioToFallback)} | ${md(mixText(r.mix))} |`,
    ),
  ];
  return lines.join('\n') + '\n';
}

/** A plain-text table of the fleet totals, for the CLI. */
export function formatFleet(s: FleetSummary): string {
  const head = ['shipping', 'bytes/user', 'fleet bytes', 'fleet', `vs all ${s.fallback}`];
  const body = s.rows.map((r) => [
    r.label,
    r.bytesPerUser.toFixed(1),
    String(r.totalBytes),
    formatBytes(r.totalBytes),
    pct(r.ratioToFallback),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const fmt = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  const policy = s.rows.find((r) => r.kind === 'policy')!;
  return (
    [
      `fleet of ${s.fleetUsers} users (observed users stand for: ${Object.entries(s.shares)
        .map(([u, n]) => `${u} ${n}`)
        .join(', ')})`,
      fmt(head),
      ...body.map(fmt),
      `policy mix: ${mixText(policy.mix)}`,
    ].join('\n') + '\n'
  );
}
