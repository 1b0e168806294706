// Lock rows of ended operations are deleted in the background (releaseEndedLocks): only those, in
// batches, never a row another transaction holds or a plan took over.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { releaseEndedLocks } from '../../src/modules/operations/resource-locks.ts';
import { createTestDatabase } from '../support/db.ts';

let pool: pg.Pool;
beforeAll(async () => {
  pool = new pg.Pool({ connectionString: await createTestDatabase(), max: 3 });
});
afterAll(async () => {
  await pool?.end();
});

async function op(id: string, state: string) {
  await pool.query(
    `INSERT INTO operations (id, action, target_type, mode, reason, ticket, state, requested_by, requested_by_name,
       request_hash, rollout, halt_policy)
     VALUES ($1, 'delete', 'app', 'soft', 'r', 't', $2, 'tok', 'name', 'h', '{}', '{}')`,
    [id, state],
  );
}

async function lock(opId: string, prefix: string, n: number) {
  await pool.query(
    `INSERT INTO resource_locks (resource_id, operation_id) SELECT $1 || i, $2 FROM generate_series(1, $3) i`,
    [prefix, opId, n],
  );
}

const holders = async () =>
  Object.fromEntries(
    (
      await pool.query<{ operation_id: string; n: number }>(
        `SELECT operation_id, count(*)::int AS n FROM resource_locks GROUP BY 1 ORDER BY 1`,
      )
    ).rows.map((r) => [r.operation_id, r.n]),
  );

describe('releaseEndedLocks', () => {
  it("deletes every lock of ended or missing operations, batch by batch, and none of a live one's", async () => {
    await op('op_live', 'planned');
    await op('op_running', 'running');
    await op('op_done', 'completed');
    await op('op_cancelled', 'cancelled');
    await lock('op_live', 'a_', 5);
    await lock('op_running', 'b_', 3);
    await lock('op_done', 'c_', 25_000);
    await lock('op_cancelled', 'd_', 7);
    await lock('op_gone', 'e_', 2);
    expect(await releaseEndedLocks(pool, 2)).toBe(20_000);
    expect(await releaseEndedLocks(pool)).toBe(5_009);
    expect(await holders()).toEqual({ op_live: 5, op_running: 3 });
    expect(await releaseEndedLocks(pool)).toBe(0);
  });

  it('skips a row another transaction holds, and keeps one a plan took over meanwhile', async () => {
    await op('op_old', 'expired');
    await op('op_new', 'planned');
    await lock('op_old', 'x_', 3);
    const plan = await pool.connect();
    try {
      // A plan takes x_1 over (as lockPlanned's upsert does) and has not committed yet.
      await plan.query('BEGIN');
      await plan.query(`UPDATE resource_locks SET operation_id = 'op_new' WHERE resource_id = 'x_1'`);
      expect(await releaseEndedLocks(pool)).toBe(2);
      await plan.query('COMMIT');
    } finally {
      plan.release();
    }
    expect(await releaseEndedLocks(pool)).toBe(0);
    const rows = await pool.query(`SELECT resource_id, operation_id FROM resource_locks WHERE resource_id LIKE 'x_%'`);
    expect(rows.rows).toEqual([{ resource_id: 'x_1', operation_id: 'op_new' }]);
  });
});
