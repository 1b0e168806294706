// Statements that write a few items of a large ledger must find them by key, whatever the
// planner's statistics say. A plan writes its whole ledger in one go (1M rows), usually after the
// table's last ANALYZE: the statistics then say the new operation has next to no rows, and a
// rollback's record of a batch (200 restores joined to an unnest() of seqs) was planned as a scan
// of every row of the operation — 0.3–0.9 s per batch until autovacuum analysed the table
// (npm run bench -- control, EXPLAIN ANALYZE of finish). Run here for real under EXPLAIN ANALYZE.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pgRollbackLedger } from '../../src/modules/execution/rollback-ledger.ts';
import { createTestDatabase } from '../support/db.ts';

const OP = 'op_ledger_plans';
/** Items written after ANALYZE: what a scan of the whole operation would read. */
const LATER = 60_000;
/** The batch's items. */
const FEW = 10;

let db: pg.Pool;
beforeAll(async () => {
  db = new pg.Pool({ connectionString: await createTestDatabase(), max: 2 });
  await db.query('ALTER TABLE operation_items SET (autovacuum_enabled = false)');
  const insert = (op: string, from: number, to: number, state: string, token: string | null = null) =>
    db.query(
      `INSERT INTO operation_items (operation_id, seq, resource_id, tenant_id, ordinal, wave, state, claim_token)
       SELECT $1, s, $1 || s, 't_1', s, 0, $2, $5 FROM generate_series($3::int, $4::int - 1) s`,
      [op, state, from, to, token],
    );
  // What ANALYZE saw: an earlier operation's ledger, done (no claim tokens, no restores).
  await insert('op_earlier', 0, LATER, 'done');
  await db.query('ANALYZE operation_items');
  // Written since: this operation, with the batch's items held by the rollback run 'tk'.
  await insert(OP, 0, FEW, 'restoring', 'tk');
  await insert(OP, FEW, FEW + LATER, 'done');
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
  it('reads the items of the batch, not every row of the operation', async () => {
    expect(await finishFew()).toBeLessThan(10 * FEW);
  });
});
