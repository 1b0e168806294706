// lastSnapshotsBefore: for a point-in-time restore, each resource's last snapshot taken before T,
// read back (and verified) through the store; a resource erased since reports erased.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { inTransaction } from '../../src/lib/sql.ts';
import { lastSnapshotsBefore } from '../../src/modules/snapshots/repository.ts';
import { snapshotStore } from '../../src/modules/snapshots/store.ts';
import { createTestDatabase } from '../support/db.ts';

const store = snapshotStore(randomBytes(32));
let pool: pg.Pool;
beforeAll(async () => {
  pool = new pg.Pool({ connectionString: await createTestDatabase(), max: 4 });
});
afterAll(async () => {
  await pool?.end();
});

/** Stores snapshots in one transaction; returns their ids and the time they were taken. */
async function put(op: string, inputs: { resourceId: string; data: unknown }[]) {
  const ids = await inTransaction(pool, (tx) =>
    store.put(
      tx,
      op,
      inputs.map((i) => ({ ...i, tenantId: 't1' })),
    ),
  );
  const at = (await pool.query<{ at: Date }>(`SELECT created_at AS at FROM snapshots WHERE id = $1`, [ids[0]])).rows[0]!
    .at;
  // The next transaction starts in a later millisecond (created_at has millisecond precision).
  for (;;) {
    const now = (await pool.query<{ now: Date }>(`SELECT date_trunc('milliseconds', clock_timestamp()) AS now`))
      .rows[0]!.now;
    if (now > at) break;
  }
  return { ids, at };
}
const plus = (d: Date, ms: number) => new Date(d.getTime() + ms);

it('returns the last snapshot before T per resource, verified through the store', async () => {
  const first = await put('op_1', [
    { resourceId: 'app_a', data: { v: 1 } },
    { resourceId: 'app_b', data: { v: 1 } },
  ]);
  const second = await put('op_2', [{ resourceId: 'app_a', data: { v: 2 } }]);
  const third = await put('op_3', [
    { resourceId: 'app_a', data: { v: 3 } },
    { resourceId: 'app_b', data: { v: 3 } },
  ]);

  const atSecond = await lastSnapshotsBefore(pool, ['app_a', 'app_b', 'app_none', 'app_a'], plus(second.at, 1));
  expect([...atSecond.keys()].sort()).toEqual(['app_a', 'app_b']);
  expect(atSecond.get('app_a')).toMatchObject({ snapshotId: second.ids[0], operationId: 'op_2', tenantId: 't1' });
  expect(atSecond.get('app_b')).toMatchObject({ snapshotId: first.ids[1], operationId: 'op_1' });
  const read = await store.get(
    pool,
    [...atSecond.values()].map((r) => r.snapshotId),
  );
  expect(read.get(second.ids[0]!)).toEqual({ ok: true, data: { v: 2 } });
  expect(read.get(first.ids[1]!)).toEqual({ ok: true, data: { v: 1 } });

  // Strictly before: a snapshot taken at T is not "before T".
  expect((await lastSnapshotsBefore(pool, ['app_a'], second.at)).get('app_a')?.snapshotId).toBe(first.ids[0]);
  expect((await lastSnapshotsBefore(pool, ['app_a'], first.at)).size).toBe(0);
  expect((await lastSnapshotsBefore(pool, ['app_a', 'app_b'], plus(third.at, 1))).get('app_b')?.snapshotId).toBe(
    third.ids[1],
  );
  expect((await lastSnapshotsBefore(pool, [], new Date())).size).toBe(0);
});

it('two snapshots of one resource in the same millisecond: the later insert', async () => {
  const both = await put('op_4', [
    { resourceId: 'app_c', data: { v: 'old' } },
    { resourceId: 'app_c', data: { v: 'new' } },
  ]);
  expect((await lastSnapshotsBefore(pool, ['app_c'], plus(both.at, 1))).get('app_c')?.snapshotId).toBe(both.ids[1]);
});

it('an erased resource still has its reference, and the store says erased', async () => {
  const s = await put('op_5', [{ resourceId: 'app_d', data: { v: 1 } }]);
  await inTransaction(pool, (tx) => store.erase(tx, ['app_d']));
  const ref = (await lastSnapshotsBefore(pool, ['app_d'], plus(s.at, 1))).get('app_d')!;
  expect((await store.get(pool, [ref.snapshotId])).get(ref.snapshotId)).toMatchObject({ ok: false, reason: 'erased' });
});
