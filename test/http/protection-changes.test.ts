// What an HTTP delete's per-call look at protection relies on (execution/protection-recheck.ts):
// every statement that may change protection notes its transaction (prisma/sql/protection_changes.sql),
// and protectionChangedSince tells a look whether any such transaction committed after it — one
// running while the look was taken included — while the registry adapter's own deletes note nothing.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { protectedNow, protectionChangedSince, pruneChangeLogs } from '../../src/modules/execution/protected-now.ts';
import { loadOperation } from '../../src/modules/execution/state.ts';
import { upsertTenants } from '../../src/modules/registry/repository.ts';
import { createTestDatabase } from '../support/db.ts';

let pool: pg.Pool;
beforeAll(async () => {
  pool = new pg.Pool({ connectionString: await createTestDatabase(), max: 5 });
  await pool.query(`INSERT INTO resource_types (name, id_pattern) VALUES ('app', '^app_')`);
  await pool.query(`INSERT INTO tenants (id, name) VALUES ('t0', 'T0'), ('t1', 'T1')`);
  await pool.query(
    `INSERT INTO resources (id, type, tenant_id) SELECT 'app_' || g, 'app', 't' || (g % 2) FROM generate_series(0, 9) g`,
  );
});
afterAll(async () => {
  await pool?.end();
});

const IDS = ['app_0', 'app_1', 'app_2'];
const notes = async () =>
  (await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM protection_changes')).rows[0]!.n;

describe('protection changes', () => {
  it('a look that nothing changed since says so; a resource marked after it, or one moved, does not', async () => {
    const look = await protectedNow(pool, IDS, []);
    expect(look.refusals.size).toBe(0);
    expect(await protectionChangedSince(pool, look.seen)).toBe(false);
    await pool.query(`UPDATE resources SET protected = true WHERE id = 'app_9'`);
    expect(await protectionChangedSince(pool, look.seen)).toBe(true);

    const after = await protectedNow(pool, IDS, []);
    expect(await protectionChangedSince(pool, after.seen)).toBe(false);
    await pool.query(`UPDATE resources SET tenant_id = 't1' WHERE id = 'app_8'`);
    expect(await protectionChangedSince(pool, after.seen)).toBe(true);
  });

  it('sees a change its look could not: committed by a transaction running while the look was taken', async () => {
    const tx = await pool.connect();
    try {
      await tx.query('BEGIN');
      await tx.query(`UPDATE resources SET protected = true WHERE id = 'app_1'`);
      const look = await protectedNow(pool, IDS, []);
      expect(look.refusals.has('app_1')).toBe(false);
      expect(await protectionChangedSince(pool, look.seen)).toBe(false);
      await tx.query('COMMIT');
      expect(await protectionChangedSince(pool, look.seen)).toBe(true);
      expect((await protectedNow(pool, IDS, [])).refusals.get('app_1')).toContain('protected');
    } finally {
      tx.release();
    }
  });

  it('a tenant protected through the registry import counts; a rolled-back change does not', async () => {
    const look = await protectedNow(pool, ['app_2'], []);
    const rolled = await pool.connect();
    try {
      await rolled.query('BEGIN');
      await rolled.query(`UPDATE tenants SET protected = true WHERE id = 't0'`);
      await rolled.query('ROLLBACK');
    } finally {
      rolled.release();
    }
    expect(await protectionChangedSince(pool, look.seen)).toBe(false);
    const c = await pool.connect();
    try {
      await c.query('BEGIN');
      await upsertTenants(c, [{ id: 't0', name: 'T0', protected: true }]);
      await c.query('COMMIT');
    } finally {
      c.release();
    }
    expect(await protectionChangedSince(pool, look.seen)).toBe(true);
    const now = await protectedNow(pool, ['app_2'], []);
    expect(now.refusals.get('app_2')).toContain('t0');
    expect((await protectedNow(pool, ['app_2'], ['t0'])).refusals.size).toBe(0);
  });

  it("an operation's plan snapshot is compared with while the plan is recent enough, not after", async () => {
    const seen = (await protectedNow(pool, IDS, [])).seen;
    for (const [id, age] of [
      ['op_recent', '11 hours'],
      ['op_old', '13 hours'],
    ] as const)
      await pool.query(
        `INSERT INTO operations (id, action, target_type, mode, reason, ticket, state, requested_by, requested_by_name,
           request_hash, rollout, halt_policy, protection_seen, created_at)
         VALUES ($1, 'delete', 'app', 'soft', 'r', 't', 'running', 'tok', 'n', 'h', '{}', '{}', $2, now() - $3::interval)`,
        [id, seen, age],
      );
    expect((await loadOperation(pool, 'op_recent', false))!.protectionSeen).toBe(seen);
    expect((await loadOperation(pool, 'op_old', false))!.protectionSeen).toBeNull();
  });

  it("the registry adapter's deletes and restores note nothing; old notes are pruned", async () => {
    const before = await notes();
    await pool.query(
      `UPDATE resources SET state = 'soft_deleted', deleted_at = now(), purge_after = now() + interval '30 days'
       WHERE id = 'app_3'`,
    );
    await pool.query(`UPDATE resources SET state = 'active', deleted_at = NULL, purge_after = NULL WHERE id = 'app_3'`);
    expect(await notes()).toBe(before);
    // Registry changes (a start's shortcut, plan-stale.ts) note them: a state is what a plan checks.
    const registryNotes = async () =>
      (await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM registry_changes')).rows[0]!.n;
    const noted = await registryNotes();
    expect(noted).toBeGreaterThanOrEqual(2);
    for (const table of ['protection_changes', 'registry_changes'])
      await pool.query(`UPDATE ${table} SET at = now() - interval '2 days' WHERE id = (SELECT min(id) FROM ${table})`);
    expect(await pruneChangeLogs(pool)).toBe(2);
    expect(await notes()).toBe(before - 1);
    expect(await registryNotes()).toBe(noted - 1);
  });
});
