// lockPlanned's fast path: a plan whose classification saw no lock row takes its locks with a
// plain INSERT. The hint may be stale by the time it locks (a concurrent plan committed a lock
// meanwhile); the primary key then makes the insert fail, and the upsert's rule decides as always:
// a live holder keeps its resource, an ended one hands it over. And the lock rows of ended
// operations are deleted in the background (releaseEndedLocks): only those, in batches, never a row
// another transaction holds or a plan took over.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lockPlanned, releaseEndedLocks } from '../../src/modules/operations/resource-locks.ts';
import { createTestDatabase } from '../support/db.ts';

let pool: pg.Pool;
beforeAll(async () => {
  pool = new pg.Pool({ connectionString: await createTestDatabase(), max: 5 });
});
afterAll(async () => {
  await pool?.end();
});

async function operation(id: string, state: string) {
  await pool.query(
    `INSERT INTO operations (id, action, target_type, mode, reason, ticket, state, requested_by, requested_by_name,
       request_hash, rollout, halt_policy)
     VALUES ($1, 'delete', 'app', 'soft', 'r', 't', $2, 'tok', 'n', 'h', '{}', '{}')`,
    [id, state],
  );
}

/** lockPlanned with the "no lock rows seen" hint, for plan_class rows `ids` (all ok). */
async function lockUnlocked(operationId: string, ids: string[]) {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query(
      `CREATE TEMP TABLE plan_class ON COMMIT DROP AS SELECT id, 'ok'::text AS class FROM unnest($1::text[]) AS id`,
      [ids],
    );
    await client.query(`CREATE TEMP TABLE plan_cascade (id text, root text) ON COMMIT DROP`);
    const ok = await lockPlanned(client, operationId, ids.length, true);
    await client.query('COMMIT');
    return ok;
  } finally {
    client.release();
  }
}

const holders = async (ids: string[]) =>
  (
    await pool.query<{ resource_id: string; operation_id: string }>(
      'SELECT resource_id, operation_id FROM resource_locks WHERE resource_id = ANY($1) ORDER BY 1',
      [ids],
    )
  ).rows.map((r) => [r.resource_id, r.operation_id]);

describe('locks taken with a stale "unlocked" hint', () => {
  it('takes free resources, never one a live operation holds, and takes over from an ended one', async () => {
    await operation('op_live', 'planned');
    await operation('op_ended', 'cancelled');
    await operation('op_a', 'planned');
    await operation('op_b', 'planned');
    await operation('op_c', 'planned');
    expect(await lockUnlocked('op_a', ['r1', 'r2'])).toBe(true);
    expect(await holders(['r1', 'r2'])).toEqual([
      ['r1', 'op_a'],
      ['r2', 'op_a'],
    ]);

    // Locked meanwhile by a live operation: nothing is taken.
    await pool.query(`INSERT INTO resource_locks (resource_id, operation_id) VALUES ('r4', 'op_live')`);
    expect(await lockUnlocked('op_b', ['r3', 'r4'])).toBe(false);
    expect(await holders(['r3', 'r4'])).toEqual([['r4', 'op_live']]);

    // Locked meanwhile by an operation that has ended since: taken over, with the free one.
    await pool.query(`INSERT INTO resource_locks (resource_id, operation_id) VALUES ('r6', 'op_ended')`);
    expect(await lockUnlocked('op_c', ['r5', 'r6'])).toBe(true);
    expect(await holders(['r5', 'r6'])).toEqual([
      ['r5', 'op_c'],
      ['r6', 'op_c'],
    ]);
  });
});

/** Backends of `pool` waiting for a lock (a row another transaction holds). */
async function waitingForLocks(pids: number[]) {
  const r = await pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = ANY($1) AND wait_event_type = 'Lock'`,
    [pids],
  );
  return r.rows[0]!.n;
}

describe('two plans locking the same resources at once, their lists in opposite orders', () => {
  // A third transaction holds the middle resource until both plans wait, so that they would be
  // mid-statement together. Unserialised, each then held what the other needed next: a deadlock,
  // which PostgreSQL broke by failing one plan (40P01, answered 500). Serialised, the second waits
  // for the first to commit and then loses cleanly: false (in_flight).
  it.each([
    ['plain insert (no lock row seen)', true],
    ['upsert', false],
  ])('%s: one takes them all, the other none, and neither fails', async (_name, unlocked) => {
    const tag = unlocked ? 'ord_i' : 'ord_u';
    const ids = Array.from({ length: 41 }, (_, i) => `${tag}_${String(i).padStart(3, '0')}`);
    await operation(`op_${tag}_a`, 'planned');
    await operation(`op_${tag}_b`, 'planned');
    await operation(`op_${tag}_c`, 'planned');
    const [a, b, c] = [await pool.connect(), await pool.connect(), await pool.connect()];
    try {
      await c.query('BEGIN');
      await c.query(`INSERT INTO resource_locks (resource_id, operation_id) VALUES ($1, $2)`, [ids[20], `op_${tag}_c`]);
      const start = async (client: pg.PoolClient, op: string, list: string[]) => {
        await client.query('BEGIN');
        await client.query(
          `CREATE TEMP TABLE plan_class ON COMMIT DROP AS SELECT id, 'ok'::text AS class FROM unnest($1::text[]) AS id`,
          [list],
        );
        await client.query(`CREATE TEMP TABLE plan_cascade (id text, root text) ON COMMIT DROP`);
        const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
        const locked = lockPlanned(client, op, list.length, unlocked).then(async (ok) => {
          await client.query('COMMIT');
          return ok;
        });
        locked.catch(() => client.query('ROLLBACK').catch(() => undefined));
        return { pid, locked };
      };
      const first = await start(a, `op_${tag}_a`, ids);
      const second = await start(b, `op_${tag}_b`, [...ids].reverse());
      const until = Date.now() + 10_000;
      while ((await waitingForLocks([first.pid, second.pid])) < 2 && Date.now() < until)
        await new Promise((r) => setTimeout(r, 10));
      expect(await waitingForLocks([first.pid, second.pid])).toBe(2);
      await c.query('ROLLBACK');
      const outcomes = await Promise.allSettled([first.locked, second.locked]);
      // Which one serialises first is a race between the two connections (each plan sends a query
      // or two before the lock that serialises them): a loaded CI machine saw the second win.
      // Either way one takes them all, the other none, and neither fails.
      expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'fulfilled']);
      const took = outcomes.map((o) => (o as PromiseFulfilledResult<boolean>).value);
      expect([...took].sort()).toEqual([false, true]);
      expect(await holders(ids)).toEqual(ids.map((id) => [id, took[0] ? `op_${tag}_a` : `op_${tag}_b`]));
    } finally {
      for (const x of [a, b, c]) x.release();
    }
  });
});

async function lock(opId: string, prefix: string, n: number) {
  await pool.query(
    `INSERT INTO resource_locks (resource_id, operation_id) SELECT $1 || i, $2 FROM generate_series(1, $3) i`,
    [prefix, opId, n],
  );
}

const holdersOf = async (prefix: string) =>
  Object.fromEntries(
    (
      await pool.query<{ operation_id: string; n: number }>(
        `SELECT operation_id, count(*)::int AS n FROM resource_locks WHERE resource_id LIKE $1 || '%' GROUP BY 1`,
        [prefix],
      )
    ).rows.map((r) => [r.operation_id, r.n]),
  );

describe('releaseEndedLocks', () => {
  it("deletes every lock of ended or missing operations, batch by batch, and none of a live one's", async () => {
    await operation('op_rel_live', 'planned');
    await operation('op_rel_running', 'running');
    await operation('op_rel_done', 'completed');
    await operation('op_rel_cancelled', 'cancelled');
    await lock('op_rel_live', 'rel_a_', 5);
    await lock('op_rel_running', 'rel_b_', 3);
    await lock('op_rel_done', 'rel_c_', 25_000);
    await lock('op_rel_cancelled', 'rel_d_', 7);
    await lock('op_rel_gone', 'rel_e_', 2);
    expect(await releaseEndedLocks(pool, 2)).toBe(20_000);
    expect(await releaseEndedLocks(pool)).toBeGreaterThanOrEqual(5_009);
    expect(await holdersOf('rel_')).toEqual({ op_rel_live: 5, op_rel_running: 3 });
    expect(await releaseEndedLocks(pool)).toBe(0);
  });

  it('skips a row another transaction holds, and keeps one a plan took over meanwhile', async () => {
    await operation('op_rel_old', 'expired');
    await operation('op_rel_new', 'planned');
    await lock('op_rel_old', 'rel_x_', 3);
    const plan = await pool.connect();
    try {
      // A plan takes rel_x_1 over (as lockPlanned's upsert does) and has not committed yet.
      await plan.query('BEGIN');
      await plan.query(`UPDATE resource_locks SET operation_id = 'op_rel_new' WHERE resource_id = 'rel_x_1'`);
      expect(await releaseEndedLocks(pool)).toBe(2);
      await plan.query('COMMIT');
    } finally {
      plan.release();
    }
    expect(await releaseEndedLocks(pool)).toBe(0);
    expect(await holdersOf('rel_x_')).toEqual({ op_rel_new: 1 });
  });
});
