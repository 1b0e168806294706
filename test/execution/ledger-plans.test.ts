// Statements that write a few items of a large ledger must find them by key, whatever the
// planner's statistics say. A plan writes its whole ledger in one go (1M rows), usually after the
// table's last ANALYZE: the statistics then say the new operation has next to no rows, and a
// rollback's record of a batch (200 restores joined to an unnest() of seqs) was planned as a scan
// of every row of the operation — 0.3–0.9 s per batch until autovacuum analysed the table
// (npm run bench -- control, EXPLAIN ANALYZE of finish). Run here for real under EXPLAIN ANALYZE.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pgRollbackLedger } from '../../src/modules/execution/rollback-ledger.ts';
import { supersededItems } from '../../src/modules/execution/rollback-superseded.ts';
import { clearRetention } from '../../src/modules/purges/retention.ts';
import { createRestoreIds, latestEvents } from '../../src/modules/restores/history.ts';
import { standingDeletes, uncertainDeletes } from '../../src/modules/restores/history-views.ts';
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
/** Rows of `table` (operation_items) the plan's scans read (kept or filtered out), over all loops. */
function ledgerRowsRead(n: PlanNode, table = 'operation_items'): number {
  const own =
    n['Relation Name'] === table && !('Plans' in n && n.Plans?.some((c) => c['Relation Name']))
      ? ((n['Actual Rows'] ?? 0) + (n['Rows Removed by Filter'] ?? 0) + (n['Rows Removed by Index Recheck'] ?? 0)) *
        (n['Actual Loops'] ?? 1)
      : 0;
  return own + (n.Plans ?? []).reduce((s, c) => s + ledgerRowsRead(c, table), 0);
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
/**
 * A client whose every statement's plan is kept (auto_explain, as JSON), for code that takes a
 * pool and runs its own transaction: what it reads, statement by statement.
 */
async function explainedClient() {
  const client = new pg.Client({ connectionString: db.options.connectionString });
  await client.connect();
  const plans: PlanNode[] = [];
  client.on('notice', (m) => {
    const text = m.message ?? '';
    const at = text.indexOf('{');
    if (text.startsWith('duration') && at >= 0) plans.push((JSON.parse(text.slice(at)) as { Plan: PlanNode }).Plan);
  });
  for (const set of [
    `LOAD 'auto_explain'`,
    'SET auto_explain.log_min_duration = 0',
    'SET auto_explain.log_analyze = on',
    'SET auto_explain.log_format = json',
    'SET auto_explain.log_level = notice',
  ])
    await client.query(set);
  const pool = { connect: async () => Object.assign(client, { release: () => undefined }) };
  return { plans, pool: pool as unknown as pg.Pool, end: () => client.end() };
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

  it('and the registry rows of its restores by key, not every resource due for a purge', async () => {
    await db.query(`INSERT INTO tenants (id, name) VALUES ('t_1', 't') ON CONFLICT DO NOTHING`);
    await db.query(`INSERT INTO resource_types (name) VALUES ('app') ON CONFLICT DO NOTHING`);
    // What ANALYZE saw: active rows, none due for a purge.
    await db.query(
      `INSERT INTO resources (id, type, tenant_id) SELECT 'active' || s, 'app', 't_1' FROM generate_series(1, 1000) s`,
    );
    await db.query('ANALYZE resources');
    // Since: a large delete's rows, each due for a purge once its retention ends; the batch's among them.
    await db.query(
      `INSERT INTO resources (id, type, tenant_id, state, purge_after)
       SELECT 'due' || s, 'app', 't_1', 'soft_deleted', now() + interval '30 days' FROM generate_series(1, $1::int) s
       UNION ALL SELECT $2 || s, 'app', 't_1', 'soft_deleted', now() + interval '30 days' FROM generate_series(0, $3::int - 1) s`,
      [LATER, OP, FEW],
    );
    const x = explaining();
    await pgRollbackLedger(x.pool, 60_000).finish(
      OP,
      'tk',
      seqs(0).map((seq) => ({ seq, ok: true, error: null, permanent: false })),
    );
    await db.query(
      `UPDATE operation_items SET state = 'restoring', claim_token = 'tk' WHERE operation_id = $1 AND seq < $2`,
      [OP, FEW],
    );
    expect(ledgerRowsRead(x.plans[0]!, 'resources')).toBeLessThan(10 * FEW);
    // A restore operation's chunk clears the same retention (purges/retention.ts clearRetention).
    const y = explaining();
    await clearRetention(y.pool, OP, seqs(FEW), 'done');
    expect(ledgerRowsRead(y.plans[0]!, 'resources') + ledgerRowsRead(y.plans[0]!)).toBeLessThan(10 * FEW);
  });
});

describe("a rollback's check for items superseded since (purged, deleted again, restored by another operation)", () => {
  it("reads none of the operation's ledger: the batch's items carry what it asks about", async () => {
    const x = await explainedClient();
    try {
      const picked = seqs(FEW).map((seq) => ({
        seq,
        resourceId: `${OP}${seq}`,
        tenantId: 't_1',
        executedSeq: seq,
        state: 'restoring',
        parentSeq: null,
        depth: 0,
        type: null,
        snapshotId: null,
      }));
      expect(await supersededItems(x.pool, OP, picked)).toEqual([]);
      expect(x.plans.length).toBeGreaterThan(0);
      expect(x.plans.reduce((n, p) => n + ledgerRowsRead(p), 0)).toBeLessThan(10 * FEW);
    } finally {
      await x.end();
    }
  });

  it("reads the history of the batch's resources by resource, not every snapshot", async () => {
    // Snapshots of other resources, written after the last ANALYZE as a large delete's are.
    await db.query(
      `INSERT INTO snapshots (operation_id, resource_id, tenant_id, key_id, content_hash, iv, tag, ciphertext)
       SELECT 'op_earlier', 'other' || s, 't_1', 1, 'h', '\\x00', '\\x00', '\\x00' FROM generate_series(1, $1::int) s`,
      [LATER],
    );
    const x = await explainedClient();
    const client = await x.pool.connect();
    try {
      await client.query('BEGIN');
      await createRestoreIds(client);
      await client.query(`INSERT INTO restore_ids (id) SELECT 'mine' || s FROM generate_series(1, $1::int) s`, [FEW]);
      await latestEvents(client);
      await client.query('COMMIT');
      expect(x.plans.reduce((n, p) => n + ledgerRowsRead(p, 'snapshots'), 0)).toBeLessThan(10 * FEW);
    } finally {
      await x.end();
    }
  });
});

describe("the registry views' deletes by Blastgate, once a large delete's items were snapshotted after the last ANALYZE", () => {
  it('read the ledger per snapshot of the page, not every row of the operation', async () => {
    const op = 'op_snapped';
    const items = LATER;
    await db.query(`INSERT INTO tenants (id, name) VALUES ('t_1', 't') ON CONFLICT DO NOTHING`);
    await db.query(`INSERT INTO resource_types (name) VALUES ('app') ON CONFLICT DO NOTHING`);
    await db.query(
      `INSERT INTO operations (id, action, target_type, mode, reason, ticket, state, requested_by, requested_by_name,
         request_hash, rollout, halt_policy) VALUES ($1, 'delete', 'app', 'soft', 'r', 't', 'completed', 'x', 'x', 'h', '{}', '{}')`,
      [op],
    );
    await db.query(
      `INSERT INTO resources (id, type, tenant_id, state) SELECT $1 || s, 'app', 't_1', 'soft_deleted'
       FROM generate_series(0, 9) s`,
      [op],
    );
    // Planned (ledger rows without snapshots), analysed, then executed: every item snapshotted.
    await db.query(
      `INSERT INTO operation_items (operation_id, seq, resource_id, tenant_id, ordinal, wave, state)
       SELECT $1, s, $1 || s, 't_1', s, 0, 'pending' FROM generate_series(0, $2::int - 1) s`,
      [op, items],
    );
    await db.query('ANALYZE operation_items');
    await db.query(
      `WITH s AS (
         INSERT INTO snapshots (operation_id, resource_id, tenant_id, key_id, content_hash, iv, tag, ciphertext)
         SELECT $1, $1 || s, 't_1', 1, 'h', '\\x00', '\\x00', '\\x00' FROM generate_series(0, $2::int - 1) s
         RETURNING id, resource_id)
       UPDATE operation_items i SET snapshot_id = s.id, state = 'done', executed_seq = i.seq
       FROM s WHERE i.operation_id = $1 AND i.resource_id = s.resource_id`,
      [op, items],
    );
    const page = Array.from({ length: 10 }, (_, i) => `${op}${i}`);
    const x = await explainedClient();
    const client = await x.pool.connect();
    try {
      const standing = await standingDeletes(client, page);
      expect([...standing.keys()].sort()).toEqual([...page].sort());
      expect(await uncertainDeletes(client, page)).toEqual(new Map());
      expect(x.plans.reduce((n, p) => n + ledgerRowsRead(p), 0)).toBeLessThan(10 * FEW);
    } finally {
      await x.end();
    }
  });
});

describe("a rollback's pick of a batch, on a ledger written after the last ANALYZE", () => {
  it('locks and claims the batch by its rows, not by a walk over every row of the operation', async () => {
    const op = 'op_pick';
    await db.query(
      `INSERT INTO operation_items (operation_id, seq, resource_id, tenant_id, ordinal, wave, state, executed_seq, snapshot_id)
       SELECT $1, s, $1 || s, 't_1', s, 0, 'done', s, s FROM generate_series(0, $2::int - 1) s`,
      [op, LATER],
    );
    const x = explaining();
    await pgRollbackLedger(x.pool, 60_000).pick(op, 'tk2', 200);
    // The first statement is the bulk's (newest executed roots); claimed by key, its update walked
    // the operation's 60,000 rows and probed the pick for each (60,400 read).
    expect(ledgerRowsRead(x.plans[0]!)).toBeLessThan(5 * 200);
  });
});
