// Micro-benchmark of the snapshot store's write path, `snapshotStore(master).put`, in isolation:
// what every chunk pays before its destructive calls, inside the transaction that also writes the
// write-ahead marks (while holding the operation row FOR SHARE). Bounded: 20 rounds of 500 items
// per case, its own PostgreSQL on 127.0.0.1, torn down at the end.
//   node --import tsx bench/snapshot-put.ts
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { snapshotStore, type SnapshotInput } from '../src/modules/snapshots/store.ts';
import { BENCH_SNAPSHOT_KEY, benchServices, table } from './support.ts';

const ITEMS = 500;
const ROUNDS = 20;
const WARMUP = 3;

/** A registry-like resource (~0.5 kB of JSON), different per resource and round. */
const resource = (id: string, round: number) => ({
  id,
  name: `Application ${id}`,
  owner: { team: 'platform', email: 'platform@example.com' },
  labels: { env: 'prod', tier: String(round % 3), region: 'eu-west-1' },
  createdAt: '2026-11-01T10:00:00.000Z',
  revision: round,
  permissions: ['read', 'write', 'admin'].map((p, k) => ({
    scope: p,
    grantedTo: `group_${k}`,
    since: 1_700_000_000 + k,
  })),
  description: 'A resource as the registry describes it, with enough text to be a realistic snapshot body.',
});

const services = await benchServices();
const pool = new pg.Pool({ connectionString: services.databaseUrl, max: 2 });
const store = snapshotStore(BENCH_SNAPSHOT_KEY);

/** put() then COMMIT: ms for each, per round. */
async function round(inputs: SnapshotInput[], op: string) {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    const t0 = performance.now();
    const ids = await store.put(c, op, inputs);
    const t1 = performance.now();
    await c.query('COMMIT');
    const t2 = performance.now();
    if (ids.length !== inputs.length) throw new Error('put returned the wrong number of ids');
    return { put: t1 - t0, commit: t2 - t1 };
  } finally {
    c.release();
  }
}

const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!;

try {
  const rows: Record<string, string>[] = [];
  // New resources (a key is made for each: the common case of a first delete), then the same
  // resources again with changed content (their keys exist and are unwrapped).
  for (const kind of ['new keys', 'existing keys'] as const) {
    const put: number[] = [];
    const commit: number[] = [];
    for (let r = 0; r < WARMUP + ROUNDS; r++) {
      const base = `r${r}`;
      const inputs = Array.from({ length: ITEMS }, (_, k) => {
        const id = `app_${base}_${k}`;
        return { resourceId: id, tenantId: 't1', data: resource(id, kind === 'new keys' ? r : r + 1000) };
      });
      const t = await round(inputs, `op_${kind === 'new keys' ? 'n' : 'e'}_${r}`);
      if (r >= WARMUP) {
        put.push(t.put);
        commit.push(t.commit);
      }
    }
    const mean = put.reduce((a, b) => a + b, 0) / put.length;
    rows.push({
      figure: `put(), ${ITEMS} items, ${kind}`,
      value: `${mean.toFixed(1)} ms`,
      goal: 'lower',
      detail: `mean; p50 ${pct(put, 0.5).toFixed(1)} p90 ${pct(put, 0.9).toFixed(1)} ms over ${ROUNDS} rounds`,
    });
    rows.push({
      figure: `COMMIT after it, ${kind}`,
      value: `${pct(commit, 0.5).toFixed(1)} ms`,
      goal: '-',
      detail: 'p50',
    });
  }
  table('Snapshot store write path (bench/snapshot-put.ts)', rows);
} finally {
  await pool.end();
  services.dispose();
}
