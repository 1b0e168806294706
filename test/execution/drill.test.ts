// Restore drill at the canary (issue 8 item 7), on the real stack: after the first wave that deleted
// something, one of its items is restored through the adapter, read back, compared with its
// pre-delete snapshot and deleted again, with keys of its own. A difference, a failing restore or
// a failing re-delete halts the operation (restore_drill_failed) before the next wave runs.
import request from 'supertest';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DRILL_KEY_PREFIX } from '../../src/modules/adapters/signing.ts';
import {
  buildExecHarness,
  getOperation,
  submitAndStart,
  until,
  useHttpAdapter,
  waitForState,
  type ExecHarness,
} from '../support/execution.ts';
import { METRICS_TOKEN } from '../support/app.ts';
import { appsOf, isDrillCall, ledger } from '../support/exec-helpers.ts';
import { query, seedRegistry } from '../support/seed.ts';

let h: ExecHarness;
beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 20, appsPerSite: 3, internalTenants: 1 });
});
afterAll(async () => {
  await h?.close();
});
beforeEach(async () => {
  h.downstream.reset();
  await useHttpAdapter(h);
});

const ENDED = ['completed', 'completed_with_failures', 'halted', 'rolling_back', 'rolled_back', 'paused'];
const drillCalls = () => h.downstream.calls.filter((c) => c.idempotencyKey?.startsWith(DRILL_KEY_PREFIX));
const ownDeletes = () =>
  h.downstream.calls.filter((c) => c.action === 'softDelete' && !c.idempotencyKey?.startsWith(DRILL_KEY_PREFIX));
const drills = (opId: string) =>
  query<{ resource_id: string; outcome: string; detail: string | null; item_state: string; wave: number }>(
    h.databaseUrl,
    'SELECT resource_id, outcome, detail, item_state, wave FROM operation_drills WHERE operation_id = $1 ORDER BY id',
    [opId],
  );
const pause = { onHalt: 'pause' };
const rollout = { waves: ['1', '100%'], bakeSeconds: 0 };

describe('restore drill (HTTP adapter)', () => {
  it('a healthy drill passes: one restore + delete of one wave-0 item with drill keys, then the rollout goes on', async () => {
    const ids = appsOf([0, 1, 2], 3);
    const op = await submitAndStart(h, { ids, rollout });
    const done = await waitForState(h, op.id, ENDED);
    expect(done.state, JSON.stringify(done)).toBe('completed');

    const rows = await ledger(h, op.id);
    const first = rows.filter((r) => r.wave === 0).sort((a, b) => a.seq - b.seq)[0]!;
    const calls = drillCalls();
    expect(calls.map((c) => [c.action, c.resourceId, c.status])).toEqual([
      ['restore', first.resource_id, 200],
      ['softDelete', first.resource_id, 200],
    ]);
    // Keys of its own: never the item's own delete key, which the downstream would replay.
    const own = ownDeletes().find((c) => c.resourceId === first.resource_id)!;
    expect(calls.every((c) => c.signatureValid && c.idempotencyKey !== own.idempotencyKey)).toBe(true);
    // Before the next wave: every delete of wave 1 came after the drill's re-delete.
    const wave1 = new Set(rows.filter((r) => r.wave === 1).map((r) => r.resource_id));
    const firstOfWave1 = ownDeletes().find((c) => wave1.has(c.resourceId!))!;
    expect(firstOfWave1.seq).toBeGreaterThan(calls[1]!.seq);
    // Deleted again: downstream and ledger agree.
    expect(h.downstream.state(first.resource_id)).toBe('soft_deleted');
    expect(rows.every((r) => r.state === 'done')).toBe(true);
    expect(await drills(op.id)).toEqual([
      { resource_id: first.resource_id, outcome: 'ok', detail: null, item_state: 'deleted', wave: 0 },
    ]);

    const view = await request(h.app.server).get(`/v1/operations/${op.id}`).set('authorization', h.auth('viewer'));
    expect(view.body.rollout.restoreDrill).toBe(true);
    expect(view.body.drills).toEqual([
      expect.objectContaining({ wave: 0, resourceId: first.resource_id, outcome: 'ok', itemState: 'deleted' }),
    ]);
    const audit = await query<{ action: string; payload: { outcome?: string } }>(
      h.databaseUrl,
      `SELECT action, payload FROM audit_events WHERE operation_id = $1 AND action LIKE 'operation.drill%' ORDER BY seq`,
      [op.id],
    );
    expect(audit.map((a) => a.action)).toEqual(['operation.drill_started', 'operation.drill']);
    expect(audit[1]!.payload.outcome).toBe('ok');
    const metrics = await request(h.app.server).get('/metrics').set('authorization', `Bearer ${METRICS_TOKEN}`);
    expect(metrics.text).toMatch(/blastgate_restore_drills_total\{outcome="ok"\} [1-9]/);
  });

  it('a downstream whose restore brings back different content halts after the first wave; later waves never run', async () => {
    h.downstream.restoreAlters({ plan: 'free' });
    const ids = appsOf([3, 4, 5], 3);
    const op = await submitAndStart(h, { ids, rollout, haltPolicy: pause });
    const halted = await waitForState(h, op.id, ENDED);
    expect(halted.state).toBe('halted');
    expect(halted.haltReason).toBe(
      'restore_drill_failed: app_00003_00 read back differs from its pre-delete snapshot (data)',
    );
    // The first wave that deleted something ran; the ones after it never did.
    const rows = await ledger(h, op.id);
    const [drill] = await drills(op.id);
    expect(drill).toMatchObject({ resource_id: 'app_00003_00', outcome: 'failed', item_state: 'deleted' });
    const ran = rows.filter((r) => r.wave <= drill!.wave);
    expect(new Set(ownDeletes().map((c) => c.resourceId))).toEqual(new Set(ran.map((r) => r.resource_id)));
    const later = rows.filter((r) => r.wave > drill!.wave);
    expect(later.length).toBeGreaterThan(0);
    expect(later.every((r) => r.state === 'pending')).toBe(true);
    // The drill deleted it again: the ledger's "done" is the truth.
    expect(h.downstream.state('app_00003_00')).toBe('soft_deleted');
    expect(rows.find((r) => r.resource_id === 'app_00003_00')!.state).toBe('done');
  });

  it('a failing restore halts the same way', async () => {
    h.downstream.restoreFails(500);
    const op = await submitAndStart(h, { ids: appsOf([6, 7, 8], 3), rollout, haltPolicy: pause });
    const halted = await waitForState(h, op.id, ENDED);
    expect(halted.state).toBe('halted');
    expect(halted.haltReason).toMatch(/^restore_drill_failed: restore of app_00006_00 failed/);
    const rows = await ledger(h, op.id);
    const [drill] = await drills(op.id);
    expect(rows.filter((r) => r.wave > drill!.wave).every((r) => r.state === 'pending')).toBe(true);
    // The restore may have applied (a 500 says nothing), so it was deleted again all the same.
    expect(drillCalls().map((c) => c.action)).toContain('softDelete');
    expect(await drills(op.id)).toEqual([expect.objectContaining({ outcome: 'failed', item_state: 'deleted' })]);
  });

  it('a re-delete that fails leaves the item failed in the ledger (it is live), never "done"', async () => {
    // The drill's restore arms one permanent failure for the next soft delete: the drill's own.
    h.downstream.beforeApply((call) => {
      if (call.action === 'restore' && call.idempotencyKey?.startsWith(DRILL_KEY_PREFIX)) {
        h.downstream.failOnly(['softDelete']);
        h.downstream.failNext(1, 422);
      }
    });
    const op = await submitAndStart(h, { ids: appsOf([9, 10], 3), rollout, haltPolicy: pause });
    const halted = await waitForState(h, op.id, ENDED);
    expect(halted.state).toBe('halted');
    expect(halted.haltReason).toMatch(/^restore_drill_failed: the re-delete of app_00009_00 failed/);
    expect(h.downstream.state('app_00009_00')).toBe('active');
    const item = (await ledger(h, op.id)).find((r) => r.resource_id === 'app_00009_00')!;
    expect(item.state).toBe('failed');
    expect(await drills(op.id)).toEqual([expect.objectContaining({ outcome: 'failed', item_state: 'live' })]);
    // The wave's counters say so too (what completed_with_failures and the halt policy read).
    const [drill] = await drills(op.id);
    const wave = await query<{ done: number; failed: number }>(
      h.databaseUrl,
      'SELECT done, failed FROM operation_waves WHERE operation_id = $1 AND wave = $2',
      [op.id, drill!.wave],
    );
    expect(wave[0]!.failed).toBe(1);
    // Live, so not deleted by this operation: its write-ahead mark is gone, and a rollback neither
    // restores it (over what may have changed since) nor counts it restored.
    const mark = await query<{ executed_seq: string | null }>(
      h.databaseUrl,
      'SELECT executed_seq FROM operation_items WHERE operation_id = $1 AND resource_id = $2',
      [op.id, 'app_00009_00'],
    );
    expect(mark[0]!.executed_seq).toBeNull();
    await request(h.app.server)
      .post(`/v1/operations/${op.id}/rollback`)
      .set('authorization', h.auth('operator'))
      .send({ reason: 'undo the canary' })
      .expect(200);
    const back = await waitForState(h, op.id, ['rolled_back', 'rollback_incomplete']);
    expect(back.state).toBe('rolled_back');
    const restores = h.downstream.calls.filter((c) => c.action === 'restore' && !isDrillCall(c));
    expect(restores.map((c) => c.resourceId)).not.toContain('app_00009_00');
    expect(restores.length).toBeGreaterThan(0);
  });

  it('a re-delete answered 404 after a try that timed out is not called live: that try may be what deleted it', async () => {
    await useHttpAdapter(h, true, { timeoutMs: 400 });
    const drillDeletes = () => drillCalls().filter((c) => c.action === 'softDelete');
    // The drill's first re-delete is held past the adapter's timeout, then applied; its retry, with
    // the same key, is answered as by a service that lost the key: "not found".
    h.downstream.beforeApply(async (call) => {
      if (call.action === 'softDelete' && isDrillCall(call) && drillDeletes().length === 1)
        await new Promise((r) => setTimeout(r, 900));
    });
    h.downstream.answer((call) =>
      call.action === 'softDelete' && isDrillCall(call) && drillDeletes().length > 1 ? 404 : null,
    );
    const op = await submitAndStart(h, { ids: appsOf([18, 19], 3), rollout, haltPolicy: pause });
    expect((await waitForState(h, op.id, ENDED)).state).toBe('halted');
    const [drill] = await drills(op.id);
    expect(drill).toMatchObject({ outcome: 'failed', item_state: 'unknown' });
    await until(() => h.downstream.state(drill!.resource_id) === 'soft_deleted', 'the held re-delete to apply');
    // It may be deleted (it is): the mark stays, so a rollback restores it.
    const mark = await query<{ executed_seq: string | null }>(
      h.databaseUrl,
      'SELECT executed_seq FROM operation_items WHERE operation_id = $1 AND resource_id = $2',
      [op.id, drill!.resource_id],
    );
    expect(mark[0]!.executed_seq).not.toBeNull();
  });

  it('a snapshot that fails verification is a drill failure: nothing is sent, the item stays deleted', async () => {
    const victim = 'app_00016_00';
    // Right before the item's own delete applies (its snapshot is stored by then), someone goes
    // around the append-only trigger and changes the snapshot's content hash.
    h.downstream.beforeApply(async (call) => {
      if (call.action !== 'softDelete' || call.resourceId !== victim || isDrillCall(call)) return;
      await query(
        h.databaseUrl,
        `ALTER TABLE snapshots DISABLE TRIGGER snapshots_append_only;
         UPDATE snapshots SET content_hash = repeat('f', 64) WHERE resource_id = '${victim}';
         ALTER TABLE snapshots ENABLE TRIGGER snapshots_append_only;`,
      );
    });
    const op = await submitAndStart(h, { ids: appsOf([16], 3), rollout, haltPolicy: pause });
    const halted = await waitForState(h, op.id, ENDED);
    expect(halted.state).toBe('halted');
    expect(halted.haltReason).toMatch(
      new RegExp(`^restore_drill_failed: restore of ${victim} failed: snapshot_corrupt: `),
    );
    expect(drillCalls()).toEqual([]);
    expect(h.downstream.state(victim)).toBe('soft_deleted');
    expect(await drills(op.id)).toEqual([expect.objectContaining({ outcome: 'failed', item_state: 'deleted' })]);
  });

  it("fields the adapter declares volatile (the downstream's own write stamps) are left out of the comparison", async () => {
    await useHttpAdapter(h, true, { volatileFields: ['data'] });
    h.downstream.restoreAlters({ plan: 'free' });
    const op = await submitAndStart(h, { ids: appsOf([17], 3), rollout });
    expect((await waitForState(h, op.id, ENDED)).state).toBe('completed');
    expect(await drills(op.id)).toMatchObject([{ outcome: 'ok' }]);
  });

  it('restoreDrill: false skips it', async () => {
    const op = await submitAndStart(h, { ids: appsOf([11], 3), rollout: { ...rollout, restoreDrill: false } });
    expect((await waitForState(h, op.id, ENDED)).state).toBe('completed');
    expect(drillCalls()).toEqual([]);
    expect(await drills(op.id)).toEqual([]);
    expect((await getOperation(h, op.id)) as unknown as { drills?: unknown }).not.toHaveProperty('drills');
  });
});

describe('restore drill (registry adapter)', () => {
  it('passes: the restored row reads back as its snapshot (its own write time aside) and is deleted again', async () => {
    await query(h.databaseUrl, `UPDATE resource_types SET adapter = '{"kind":"registry"}'`);
    const ids = appsOf([12, 13, 14], 3);
    const op = await submitAndStart(h, { ids, rollout });
    const done = await waitForState(h, op.id, ENDED);
    expect(done.state, JSON.stringify(done)).toBe('completed');
    expect(await drills(op.id)).toEqual([
      { resource_id: 'app_00012_00', outcome: 'ok', detail: null, item_state: 'deleted', wave: expect.any(Number) },
    ]);
    const states = await query<{ state: string }>(
      h.databaseUrl,
      `SELECT DISTINCT state FROM resources WHERE id = ANY($1::text[])`,
      [ids],
    );
    expect(states).toEqual([{ state: 'soft_deleted' }]);
  });

  it('a restore that cannot be read back as it was halts (a row changed under the drill)', async () => {
    // A trigger stands in for an owning system that restores something else than it deleted.
    await query(
      h.databaseUrl,
      `CREATE OR REPLACE FUNCTION drill_test_alter() RETURNS trigger AS $$
       BEGIN IF NEW.state = 'active' AND OLD.state = 'soft_deleted' THEN NEW.protected := true; END IF; RETURN NEW; END $$
       LANGUAGE plpgsql;
       CREATE TRIGGER drill_test_alter BEFORE UPDATE ON resources FOR EACH ROW EXECUTE FUNCTION drill_test_alter()`,
    );
    try {
      await query(h.databaseUrl, `UPDATE resource_types SET adapter = '{"kind":"registry"}'`);
      const op = await submitAndStart(h, { ids: appsOf([15], 3), rollout, haltPolicy: pause });
      const halted = await waitForState(h, op.id, ENDED);
      expect(halted.state).toBe('halted');
      expect(halted.haltReason).toMatch(/^restore_drill_failed: app_00015_00 read back differs .*\(protected\)/);
    } finally {
      await query(h.databaseUrl, 'DROP TRIGGER drill_test_alter ON resources; DROP FUNCTION drill_test_alter()');
    }
  });
});
