// A delete chunk on the registry adapter runs in one transaction (chunk-same-db.ts): the registry
// change, the snapshot of each row as it was, and the ledger's record commit together or not at
// all. Here the record fails (a trigger on the wave counters, armed for a while): the registry must
// not be changed meanwhile and no item may be left claimed or marked; once the fault is gone the
// same chunk completes, and each item's snapshot is its row as it was before the delete.
import pg from 'pg';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { snapshotStore } from '../../src/modules/snapshots/store.ts';
import { appsOf } from '../support/exec-helpers.ts';
import { buildExecHarness, submitAndStart, until, waitForState, type ExecHarness } from '../support/execution.ts';
import { TEST_SNAPSHOT_KEY_BYTES } from '../support/keys.ts';
import { query, seedRegistry, sequenceValue, tenantId } from '../support/seed.ts';

const APPS = 10;

let h: ExecHarness;
beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 13, appsPerSite: APPS });
  // Fails (or, in mode 'sleep', holds for 1.5 s) every update of a wave's counters while armed; counts the failures in a sequence (a
  // sequence is not rolled back with the transaction that fails).
  await query(
    h.databaseUrl,
    `CREATE TABLE test_fault (armed boolean NOT NULL, mode text NOT NULL DEFAULT 'fail');
     INSERT INTO test_fault VALUES (false);
     CREATE SEQUENCE test_fault_hits;
     CREATE FUNCTION test_fault() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       IF (SELECT armed FROM test_fault) THEN
         PERFORM nextval('test_fault_hits');
         IF (SELECT mode FROM test_fault) = 'sleep' THEN
           PERFORM pg_sleep(1.5);
         ELSE
           RAISE EXCEPTION 'injected: the record of this chunk fails';
         END IF;
       END IF;
       RETURN NEW;
     END $$;
     CREATE TRIGGER test_fault BEFORE UPDATE OF done, failed ON operation_waves
       FOR EACH ROW WHEN (NEW.done IS DISTINCT FROM OLD.done OR NEW.failed IS DISTINCT FROM OLD.failed)
       EXECUTE FUNCTION test_fault()`,
  );
});
afterAll(async () => {
  await query(h.databaseUrl, 'DROP TRIGGER IF EXISTS test_fault ON operation_waves').catch(() => undefined);
  await h?.close();
});

const hits = () => sequenceValue(h.databaseUrl, 'test_fault_hits');

describe('a registry delete chunk', () => {
  it('changes the registry, stores the snapshots and records the outcomes in one transaction', async () => {
    const ids = appsOf([0, 1, 2, 3], APPS);
    await query(h.databaseUrl, 'UPDATE test_fault SET armed = true');
    const op = await submitAndStart(h, {
      ids,
      rollout: { bakeSeconds: 0, concurrency: 4, waves: ['100%'], restoreDrill: false },
      haltPolicy: { probe: 'optional' },
    });
    await until(async () => (await hits()) >= 2, 'the chunk to fail its record twice');
    // While every attempt fails: nothing of the chunk is kept anywhere.
    const resources = await query<{ state: string }>(
      h.databaseUrl,
      'SELECT state FROM resources WHERE id = ANY($1::text[])',
      [ids],
    );
    expect(resources.map((r) => r.state)).toEqual(ids.map(() => 'active'));
    const items = await query<{ state: string; executed_seq: string | null; snapshot_id: string | null }>(
      h.databaseUrl,
      'SELECT state, executed_seq, snapshot_id FROM operation_items WHERE operation_id = $1',
      [op.id],
    );
    expect(items).toEqual(ids.map(() => ({ state: 'pending', executed_seq: null, snapshot_id: null })));
    const snaps = await query(h.databaseUrl, 'SELECT 1 FROM snapshots WHERE operation_id = $1', [op.id]);
    expect(snaps).toEqual([]);

    await query(h.databaseUrl, 'UPDATE test_fault SET armed = false');
    const end = await waitForState(h, op.id, ['completed', 'completed_with_failures', 'halted', 'paused'], 60_000);
    expect(end.state).toBe('completed');
    const after = await query<{ id: string; state: string; snapshot_id: string; executed_seq: string | null }>(
      h.databaseUrl,
      `SELECT i.resource_id AS id, i.state, i.snapshot_id, i.executed_seq FROM operation_items i
       WHERE i.operation_id = $1 ORDER BY i.seq`,
      [op.id],
    );
    expect(after.every((i) => i.state === 'done' && i.snapshot_id !== null && i.executed_seq !== null)).toBe(true);
    const rows = await query<{ state: string }>(
      h.databaseUrl,
      'SELECT state FROM resources WHERE id = ANY($1::text[])',
      [ids],
    );
    expect(rows.every((r) => r.state === 'soft_deleted')).toBe(true);
    // Each snapshot is the row as it was: active, not yet deleted, of its own type and tenant.
    const pool = new pg.Pool({ connectionString: h.databaseUrl, max: 1 });
    try {
      const read = await snapshotStore(TEST_SNAPSHOT_KEY_BYTES).get(
        pool,
        after.map((i) => Number(i.snapshot_id)),
      );
      for (const i of after) {
        const got = read.get(Number(i.snapshot_id));
        expect(got?.ok).toBe(true);
        expect(got?.ok && got.data).toMatchObject({ id: i.id, type: 'app', state: 'active', deletedAt: null });
      }
    } finally {
      await pool.end();
    }
  });

  it('is undone whole when a pause commits while it runs: nothing is recorded done after the pause', async () => {
    const ids = appsOf([4, 5], APPS);
    const before = await hits();
    await query(h.databaseUrl, `UPDATE test_fault SET armed = true, mode = 'sleep'`);
    const op = await submitAndStart(h, {
      ids,
      rollout: { bakeSeconds: 0, concurrency: 4, waves: ['100%'], restoreDrill: false },
      haltPolicy: { probe: 'optional' },
    });
    // The chunk has changed its rows and is held just before its counters and commit.
    await until(async () => (await hits()) > before, 'the chunk to reach its record');
    const paused = await request(h.app.server)
      .post(`/v1/operations/${op.id}/pause`)
      .set('authorization', h.auth('operator'))
      .send({ reason: 'stop while a chunk is in flight' });
    expect(paused.status, JSON.stringify(paused.body)).toBe(200);
    await query(h.databaseUrl, 'UPDATE test_fault SET armed = false');
    // Long enough for the held chunk to finish whichever way it goes (1.5 s hold), bounded.
    await new Promise((r) => setTimeout(r, 2_500));
    const end = await waitForState(h, op.id, ['paused'], 10_000);
    expect(end.state).toBe('paused');
    const items = await query<{ state: string }>(
      h.databaseUrl,
      'SELECT state FROM operation_items WHERE operation_id = $1',
      [op.id],
    );
    expect(items.map((i) => i.state)).toEqual(ids.map(() => 'pending'));
    const rows = await query<{ state: string }>(
      h.databaseUrl,
      'SELECT state FROM resources WHERE id = ANY($1::text[])',
      [ids],
    );
    expect(rows.map((r) => r.state)).toEqual(ids.map(() => 'active'));
  });

  it('leaves a resource marked protected while the operation runs: its item fails saying so, the rest is deleted', async () => {
    const ids = appsOf([6, 7], APPS);
    const guarded = appsOf([7], APPS)[3]!;
    const op = await submitAndStart(h, {
      ids,
      rollout: { bakeSeconds: 2, concurrency: 4, waves: ['1', '100%'], restoreDrill: false },
      haltPolicy: { probe: 'optional', maxFailureRate: 0.5, onHalt: 'pause' },
    });
    // Seconds before the second wave (site 7's) runs, as an import would.
    await query(h.databaseUrl, 'UPDATE resources SET protected = true WHERE id = $1', [guarded]);
    const end = await waitForState(h, op.id, ['completed', 'completed_with_failures', 'halted', 'paused'], 60_000);
    expect(end.state).toBe('completed_with_failures');
    const items = await query<{
      resource_id: string;
      state: string;
      last_error: string | null;
      snapshot_id: string | null;
    }>(
      h.databaseUrl,
      'SELECT resource_id, state, last_error, snapshot_id FROM operation_items WHERE operation_id = $1',
      [op.id],
    );
    expect(items.find((i) => i.resource_id === guarded)).toMatchObject({ state: 'failed', snapshot_id: null });
    expect(items.find((i) => i.resource_id === guarded)!.last_error).toContain('protected');
    expect(items.filter((i) => i.state === 'done')).toHaveLength(ids.length - 1);
    const rows = await query<{ id: string; state: string }>(
      h.databaseUrl,
      'SELECT id, state FROM resources WHERE id = ANY($1::text[])',
      [ids],
    );
    expect(rows.filter((r) => r.state === 'active').map((r) => r.id)).toEqual([guarded]);
  }, 60_000);
  it("leaves a tenant's resources when the tenant is marked protected while the operation runs", async () => {
    const ids = appsOf([8, 9], APPS);
    const op = await submitAndStart(h, {
      ids,
      rollout: { bakeSeconds: 2, concurrency: 4, waves: ['1', '100%'], restoreDrill: false },
      // Ten refusals in a row would halt under the default policy (5 consecutive failures).
      haltPolicy: { probe: 'optional', maxFailureRate: 1, maxConsecutiveFailures: 100, onHalt: 'pause' },
    });
    // Seconds before the second wave (site 9's) runs, as an import would. The plan had no protected
    // tenant, so no break-glass approval covers this one.
    await query(h.databaseUrl, 'UPDATE tenants SET protected = true WHERE id = $1', [tenantId(9)]);
    try {
      const end = await waitForState(h, op.id, ['completed', 'completed_with_failures', 'halted', 'paused'], 60_000);
      expect(end.state).toBe('completed_with_failures');
      const items = await query<{ resource_id: string; tenant_id: string; state: string; last_error: string | null }>(
        h.databaseUrl,
        'SELECT resource_id, tenant_id, state, last_error FROM operation_items WHERE operation_id = $1',
        [op.id],
      );
      const theirs = items.filter((i) => i.tenant_id === tenantId(9));
      expect(theirs).toHaveLength(APPS);
      for (const i of theirs) {
        expect(i.state).toBe('failed');
        expect(i.last_error).toContain(`its tenant ${tenantId(9)} is protected`);
      }
      expect(items.filter((i) => i.state === 'done')).toHaveLength(APPS);
      const rows = await query<{ tenant_id: string; state: string }>(
        h.databaseUrl,
        'SELECT tenant_id, state FROM resources WHERE id = ANY($1::text[])',
        [ids],
      );
      for (const r of rows) expect(r.state).toBe(r.tenant_id === tenantId(9) ? 'active' : 'soft_deleted');
    } finally {
      await query(h.databaseUrl, 'UPDATE tenants SET protected = false WHERE id = $1', [tenantId(9)]);
    }
  }, 60_000);
  it('halts with a reason that names the cause: the last refusal (a tenant protected since the plan)', async () => {
    const ids = appsOf([10, 11], APPS);
    const op = await submitAndStart(h, {
      ids,
      rollout: { bakeSeconds: 2, concurrency: 4, waves: ['1', '100%'], restoreDrill: false },
      haltPolicy: { probe: 'optional', maxFailureRate: 0.5, maxConsecutiveFailures: 100, onHalt: 'pause' },
    });
    await query(h.databaseUrl, 'UPDATE tenants SET protected = true WHERE id = $1', [tenantId(11)]);
    try {
      const end = await waitForState(h, op.id, ['completed', 'completed_with_failures', 'halted', 'paused'], 60_000);
      expect(end.state).toBe('halted');
      // Not only "item failure rate 100% over 50%": why the items failed, as the general path says it.
      expect(end.haltReason).toContain('item failure rate');
      expect(end.haltReason).toContain(`last error: `);
      expect(end.haltReason).toContain(`its tenant ${tenantId(11)} is protected`);
    } finally {
      await query(h.databaseUrl, 'UPDATE tenants SET protected = false WHERE id = $1', [tenantId(11)]);
    }
  }, 60_000);
  it('keeps one record per change when another run claims one of its items while it runs', async () => {
    // Two runs of the same items (a chunk started twice after a Redis restart): the chunk holds its
    // items from the read to its commit, so the other run's claim waits and then finds them done.
    // (Read without the lock, measured no faster, the chunk's record must find every item still
    // pending or undo itself: without either, this run ended "completed" with an item left claimed.)
    // Here the chunk is held on a registry row (session A) while the other run claims one item (B).
    const ids = appsOf([12], APPS);
    const target = ids[3]!;
    const a = new pg.Client({ connectionString: h.databaseUrl });
    const b = new pg.Client({ connectionString: h.databaseUrl });
    await a.connect();
    await b.connect();
    try {
      await a.query('BEGIN');
      await a.query('SELECT 1 FROM resources WHERE id = $1 FOR UPDATE', [target]);
      const op = await submitAndStart(h, {
        ids,
        rollout: { bakeSeconds: 0, concurrency: 4, waves: ['100%'], restoreDrill: false },
        haltPolicy: { probe: 'optional' },
      });
      await until(
        async () =>
          (
            await query(
              h.databaseUrl,
              `SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%ptenant AS%'`,
            )
          ).length > 0,
        'the chunk to wait for the registry row',
      );
      // Not awaited yet: the chunk holds that item.
      const other = b.query(
        `UPDATE operation_items SET state = 'claimed', claimed_by = 'another-run', claim_token = 'another-run/1',
           claimed_at = now() WHERE operation_id = $1 AND resource_id = $2 AND state = 'pending'`,
        [op.id, target],
      );
      await new Promise((r) => setTimeout(r, 200));
      await a.query('ROLLBACK');
      await other;
      const end = await waitForState(h, op.id, ['completed', 'completed_with_failures', 'halted', 'paused'], 45_000);
      expect(end.state).toBe('completed');
      const items = await query<{ id: string; state: string; snapshot_id: string | null }>(
        h.databaseUrl,
        'SELECT resource_id AS id, state, snapshot_id FROM operation_items WHERE operation_id = $1',
        [op.id],
      );
      const rows = await query<{ id: string; state: string; snaps: number }>(
        h.databaseUrl,
        `SELECT r.id, r.state, (SELECT count(*)::int FROM snapshots s WHERE s.operation_id = $2 AND s.resource_id = r.id) AS snaps
         FROM resources r WHERE r.id = ANY($1::text[]) ORDER BY r.id`,
        [ids, op.id],
      );
      // Every registry change has its record and exactly one snapshot.
      expect(rows).toEqual([...ids].sort().map((id) => ({ id, state: 'soft_deleted', snaps: 1 })));
      expect(items.filter((i) => i.state === 'done' && i.snapshot_id !== null)).toHaveLength(ids.length);
    } finally {
      await a.end();
      await b.end();
    }
  }, 60_000);
});
