// classify() reads the lock table (markLockRows) only when its answer depends on it: a plan whose
// list is otherwise all ok leaves the lock rows to the lock stage that follows, since that join
// costs the size of every live operation's lock rows. Each case here must end in the same
// classification as marking them first did: the held resource in_flight, naming its holder.
import pg from 'pg';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACTIVE_ONLY } from '../../src/modules/erasure/states.ts';
import { classify, markLockedByOthers } from '../../src/modules/operations/planner.ts';
import { deferLockRows, joinLocks, lockPlanned } from '../../src/modules/operations/resource-locks.ts';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { appId, query, seedRegistry } from '../support/seed.ts';
import { stageIds } from '../support/staging.ts';

let t: TestApp;
let pool: pg.Pool;
let holder: string;
const HELD = appId(1, 0);
beforeAll(async () => {
  t = await buildTestApp();
  await seedRegistry(t.databaseUrl, { sites: 6, appsPerSite: 5 });
  const first = await request(t.app.server)
    .post('/v1/operations')
    .set('authorization', t.auth('admin'))
    .send({ targetType: 'app', reason: 'hold one app', ticket: 'CHG-1', ids: [HELD] })
    .expect(201);
  holder = first.body.id;
  pool = new pg.Pool({ connectionString: t.databaseUrl, max: 1 });
});
afterAll(async () => {
  await pool?.end();
  await t?.close();
});

/** classify() of `ids` as a plan would (lockStage: not a dry run), then its lock stage; nothing is kept. */
async function planned(ids: string[], opts: { lockStage: boolean; duplicates?: boolean }) {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await stageIds(client, ids);
    const type = (await client.query(`SELECT id_pattern FROM resource_types WHERE name = 'app'`)).rows[0];
    const classified = await classify(client, 'app', type.id_pattern, [], null, ACTIVE_ONLY, {
      submitted: ids.length,
      distinct: !opts.duplicates,
      lockStage: opts.lockStage,
    });
    if (classified.rejected || !opts.lockStage) return { classified, final: classified };
    const op = 'op_classify_locks_test';
    const locked = await lockPlanned(client, op, classified.counts.ok, classified.unlocked);
    return { classified, final: locked ? classified : await markLockedByOthers(client, op) };
  } finally {
    await client.query('ROLLBACK');
    client.release();
  }
}

describe('classify leaves lock rows to the lock stage when only it would read them', () => {
  it('an otherwise all-ok list: classify does not look, and the lock stage names the holder', async () => {
    const { classified, final } = await planned([appId(2, 0), HELD, appId(2, 1)], { lockStage: true });
    // Classify did not read the lock table: nothing is rejected yet, and the plain insert is tried.
    expect(classified).toMatchObject({ rejected: false, unlocked: true });
    expect(classified.counts).toMatchObject({ ok: 3, in_flight: 0 });
    // The lock stage refuses the held one, as marking it first did.
    expect(final.rejected).toBe(true);
    expect(final.counts).toMatchObject({ ok: 2, in_flight: 1 });
    expect(final.samples.in_flight).toEqual([expect.objectContaining({ id: HELD, index: 1, heldBy: holder })]);
  });

  it('a list rejected for another ID: the held one is in_flight, outranking already_deleted', async () => {
    await query(t.databaseUrl, `UPDATE resources SET state = 'soft_deleted' WHERE id = $1`, [HELD]);
    try {
      const { classified } = await planned([HELD, 'app_99999_01', appId(2, 2)], { lockStage: true });
      expect(classified.counts).toMatchObject({ ok: 1, unknown: 1, in_flight: 1, already_deleted: 0 });
      expect(classified.samples.in_flight).toEqual([expect.objectContaining({ id: HELD, index: 0, heldBy: holder })]);
    } finally {
      await query(t.databaseUrl, `UPDATE resources SET state = 'active' WHERE id = $1`, [HELD]);
    }
  });

  it('a dry run (no lock stage follows) and a list with duplicates are marked by classify', async () => {
    const dry = await planned([appId(3, 0), HELD], { lockStage: false });
    expect(dry.classified.counts).toMatchObject({ ok: 1, in_flight: 1 });
    expect(dry.classified.samples.in_flight).toEqual([expect.objectContaining({ id: HELD, heldBy: holder })]);
    const twice = await planned([HELD, appId(3, 1), HELD], { lockStage: true, duplicates: true });
    expect(twice.classified.counts).toMatchObject({ ok: 1, in_flight: 1, duplicate: 1 });
    expect(twice.classified.samples.in_flight).toEqual([expect.objectContaining({ id: HELD, heldBy: holder })]);
  });

  it('defers only when nothing after the registry join reclassifies a row', () => {
    expect(deferLockRows(true, false, [], false)).toBe(true);
    expect(deferLockRows(false, false, [], false)).toBe(false);
    expect(deferLockRows(true, true, [], false)).toBe(false);
    expect(deferLockRows(true, false, ['task'], false)).toBe(false);
    expect(deferLockRows(true, false, [], true)).toBe(false);
  });
});

describe('joinLocks: a plan small next to the lock table probes it per row', () => {
  it('forces nested loops for the statement only when the lock table holds over twice the plan', async () => {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      // As if every live operation together held 1M resources (ANALYZE's count; rolled back).
      await client.query(`UPDATE pg_class SET reltuples = 1e6 WHERE oid = 'resource_locks'::regclass`);
      const hashing = () =>
        client.query<{ on: string }>(`SELECT current_setting('enable_hashjoin') AS on`).then((r) => r.rows[0]!.on);
      expect(await joinLocks(client, 100_000, hashing)).toBe('off');
      expect(await hashing()).toBe('on');
      expect(await joinLocks(client, 500_000, hashing)).toBe('on');
      // Unknown size (0): PostgreSQL's own choice, without even reading the count.
      expect(await joinLocks(client, 0, hashing)).toBe('on');
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
  });
});
