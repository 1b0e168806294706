// Statements that write a few items of a large ledger must find them by key. A plan writes its
// whole ledger in one go (1M rows), usually after the table's last ANALYZE: the statistics then say
// the new operation has next to no rows, and a rollback's record of a batch (200 restores joined to
// an unnest() of seqs) was planned as a scan of every row of the operation — 0.3–0.9 s per batch
// until autovacuum analysed the table (npm run bench -- control, EXPLAIN ANALYZE of finish). A plan
// of ANALYZE_AFTER_ITEMS items or more now analyses the ledger after it commits (ledger-stats.ts).
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import request from 'supertest';
import { ANALYZE_AFTER_ITEMS, ledgerStats } from '../../src/modules/operations/ledger-stats.ts';
import { pgRollbackLedger } from '../../src/modules/execution/rollback-ledger.ts';
import { createTestDatabase } from '../support/db.ts';
import { buildTestApp } from '../support/app.ts';
import { until } from '../support/execution.ts';
import { appId, seedRegistry } from '../support/seed.ts';

const OP = 'op_ledger_plans';
/** Items written after ANALYZE: what a scan of the whole operation would read. */
const LATER = 60_000;
/** The few items each statement is about. */
const FEW = 10;
/** Descendants are numbered after every wave's range. */
const KID = 100_000;

let db: pg.Pool;
beforeAll(async () => {
  db = new pg.Pool({ connectionString: await createTestDatabase(), max: 2 });
  await db.query('ALTER TABLE operation_items SET (autovacuum_enabled = false)');
  const insert = (
    op: string,
    from: number,
    to: number,
    state: string,
    o: { token?: string; parent?: string; snapshot?: boolean } = {},
  ) =>
    db.query(
      `INSERT INTO operation_items (operation_id, seq, resource_id, tenant_id, ordinal, wave, state, claim_token, parent_seq, snapshot_id)
       SELECT $1, s, $1 || s, 't_1', s, 0, $2, $5, ${o.parent ?? 'NULL::int'}, ${o.snapshot ? '1000000 + s' : 'NULL::bigint'} FROM generate_series($3::int, $4::int - 1) s`,
      [op, state, from, to, o.token ?? null],
    );
  // What ANALYZE saw: an earlier operation's ledger, done, with snapshots (no claim tokens, no restores).
  await insert('op_earlier', 0, LATER, 'done', { snapshot: true });
  await db.query('ANALYZE operation_items');
  // Written since: this operation, with the few items the statements are about, and descendants
  // of those (numbered after the waves).
  await insert(OP, 0, FEW, 'restoring', { token: 'tk' });
  await insert(OP, FEW, FEW + LATER, 'done');
  await insert(OP, KID, KID + FEW, 'pending', { parent: `s - ${KID}` });
});
afterAll(async () => {
  await db?.end();
});

interface PlanNode {
  'Relation Name'?: string;
  'Actual Rows'?: number;
  'Actual Loops'?: number;
  'Rows Removed by Filter'?: number;
  'Rows Removed by Index Recheck'?: number;
  Plans?: PlanNode[];
}
/** Rows of operation_items the plan's scans read (kept or filtered out), over all loops. */
function ledgerRowsRead(n: PlanNode): number {
  const own =
    n['Relation Name'] === 'operation_items' && !('Plans' in n && n.Plans?.some((c) => c['Relation Name']))
      ? ((n['Actual Rows'] ?? 0) + (n['Rows Removed by Filter'] ?? 0) + (n['Rows Removed by Index Recheck'] ?? 0)) *
        (n['Actual Loops'] ?? 1)
      : 0;
  return own + (n.Plans ?? []).reduce((s, c) => s + ledgerRowsRead(c), 0);
}

/** A pool whose statements run for real under EXPLAIN ANALYZE, their plans kept. */
function explaining() {
  const plans: PlanNode[] = [];
  const query = async (sql: string, params?: unknown[]) => {
    const r = await db.query<{ 'QUERY PLAN': { Plan: PlanNode }[] }>(`EXPLAIN (ANALYZE, FORMAT JSON) ${sql}`, params);
    plans.push(r.rows[0]!['QUERY PLAN'][0]!.Plan);
    return { rows: [], rowCount: 0 };
  };
  return { plans, pool: { query } as unknown as pg.Pool };
}
const seqs = (from: number) => Array.from({ length: FEW }, (_, i) => from + i);
const states = async (from: number) =>
  (
    await db.query<{ state: string }>(
      `SELECT state FROM operation_items WHERE operation_id = $1 AND seq >= $2 AND seq < $3 ORDER BY seq`,
      [OP, from, from + FEW],
    )
  ).rows.map((r) => r.state);

const finishFew = async () => {
  const x = explaining();
  await pgRollbackLedger(x.pool, 60_000).finish(
    OP,
    'tk',
    seqs(0).map((seq) => ({ seq, ok: true, error: null, permanent: false })),
  );
  expect(await states(0)).toEqual(Array(FEW).fill('restored'));
  await db.query(
    `UPDATE operation_items SET state = 'restoring', claim_token = 'tk' WHERE operation_id = $1 AND seq < $2`,
    [OP, FEW],
  );
  return ledgerRowsRead(x.plans[0]!);
};

describe("a rollback's record of a batch, on a ledger written after the last ANALYZE", () => {
  it('reads every row of the operation while the statistics are stale (what the next test cures)', async () => {
    expect(await finishFew()).toBeGreaterThan(LATER);
  });

  it('reads only the items of the batch once the ledger was analysed after the plan', async () => {
    const columnStats = async (column: string) =>
      (
        await db.query<{ null_frac: number; vals: string | null }>(
          `SELECT null_frac, most_common_vals::text AS vals FROM pg_stats
           WHERE tablename = 'operation_items' AND attname = $1`,
          [column],
        )
      ).rows[0];
    const snapshotsBefore = await columnStats('snapshot_id');
    const stats = ledgerStats(db, { warn: () => undefined });
    stats.planned(FEW + LATER);
    await stats.idle();
    expect(await finishFew()).toBeLessThan(10 * FEW);
    expect((await columnStats('operation_id'))?.vals).toContain(OP);
    // Only operation_id: the rest of a just-planned ledger (no snapshot, every item pending) is not
    // what its execution will look like, and planned from it the history reads of a rollback hashed
    // every snapshot link of the table per batch (ledger-stats.ts).
    expect(await columnStats('snapshot_id')).toEqual(snapshotsBefore);
  });
});

describe('a plan of many items', () => {
  it(`analyses the ledger after it commits (${ANALYZE_AFTER_ITEMS.toLocaleString('en')} items or more)`, async () => {
    const t = await buildTestApp();
    try {
      await seedRegistry(t.databaseUrl, { sites: 100, appsPerSite: 100 });
      const lastAnalyze = async () =>
        (
          await t.app.db.pool.query<{ at: Date | null }>(
            `SELECT last_analyze AS at FROM pg_stat_user_tables WHERE relname = 'operation_items'`,
          )
        ).rows[0]!.at;
      expect(await lastAnalyze()).toBeNull();
      const ids = Array.from({ length: 100 }, (_, s) => Array.from({ length: 100 }, (_, j) => appId(s, j))).flat();
      const res = await request(t.app.server)
        .post('/v1/operations')
        .set('authorization', t.auth('requester'))
        .send({ targetType: 'app', reason: 'Remove the legacy app', ticket: 'CHG-1', ids });
      expect(res.status, JSON.stringify(res.body).slice(0, 500)).toBe(201);
      expect(res.body.itemCount).toBe(ANALYZE_AFTER_ITEMS);
      await until(async () => (await lastAnalyze()) !== null, 'operation_items to be analysed', 20_000);
    } finally {
      await t.close();
    }
  });
});
