// GET /v1/operations: a completed operation's summary counts every item done, from the wave
// counters the workers keep, and a rolled-back one what its rollback restored, from the moves its
// statements recorded (the list never reads the item ledger).
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildExecHarness,
  submitAndStart,
  useHttpAdapter,
  waitForState,
  type ExecHarness,
} from '../support/execution.ts';
import { appId, query, seedRegistry } from '../support/seed.ts';
import { command } from '../support/exec-helpers.ts';

let h: ExecHarness;
beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 12, appsPerSite: 5, internalTenants: 1 });
  await useHttpAdapter(h);
});
afterAll(async () => {
  await h?.close();
});

describe('operation summaries', () => {
  it('count every item of a completed operation as done, matching the ledger', async () => {
    const ids = Array.from({ length: 6 }, (_, s) => Array.from({ length: 5 }, (_, j) => appId(s, j))).flat();
    const op = await submitAndStart(h, { ids, rollout: { bakeSeconds: 0 } });
    const end = await waitForState(h, op.id, ['completed', 'completed_with_failures', 'halted', 'rolled_back']);
    expect(end.state).toBe('completed');
    const r = await request(h.app.server)
      .get('/v1/operations?state=completed')
      .set('authorization', h.auth('viewer'))
      .expect(200);
    expect(r.body.items).toHaveLength(1);
    expect(r.body.items[0]).toMatchObject({
      id: op.id,
      state: 'completed',
      itemCount: 30,
      waveCount: op.waves.length,
      progress: { items: 30, done: 30, failed: 0, pending: 0, restoring: 0, restored: 0, restoreFailed: 0 },
    });
    expect(r.body.items[0].finishedAt).not.toBeNull();
    const ledger = await query<{ n: number }>(
      h.databaseUrl,
      `SELECT count(*)::int AS n FROM operation_items WHERE operation_id = $1 AND state = 'done'`,
      [op.id],
    );
    expect(ledger[0]!.n).toBe(30);
  });

  it('say what a rollback restored and what it could not: a rolled-back operation does not read as 30 deleted', async () => {
    const ids = Array.from({ length: 6 }, (_, s) => Array.from({ length: 5 }, (_, j) => appId(s + 6, j))).flat();
    const op = await submitAndStart(h, { ids, rollout: { bakeSeconds: 0, restoreDrill: false } });
    expect((await waitForState(h, op.id, ['completed', 'completed_with_failures', 'halted'])).state).toBe('completed');
    h.downstream.answer((c) => (c.action === 'restore' && c.resourceId === ids[7] ? 422 : null));
    try {
      await command(h, 'operator', op.id, 'rollback', { reason: 'undo' }).expect(200);
      expect((await waitForState(h, op.id, ['rolled_back', 'rollback_incomplete'])).state).toBe('rollback_incomplete');
    } finally {
      h.downstream.answer(null);
    }
    const summary = async () =>
      (
        await request(h.app.server).get('/v1/operations').set('authorization', h.auth('viewer')).expect(200)
      ).body.items.find((i: { id: string }) => i.id === op.id);
    // done stays the forward run's count; the rollback's outcome is beside it.
    expect((await summary()).progress).toEqual({
      items: 30,
      done: 30,
      failed: 0,
      pending: 0,
      restoring: 0,
      restored: 29,
      restoreFailed: 1,
    });
    await command(h, 'operator', op.id, 'rollback', { reason: 'the 422 was fixed' }).expect(200);
    expect((await waitForState(h, op.id, ['rolled_back', 'rollback_incomplete'])).state).toBe('rolled_back');
    expect((await summary()).progress).toMatchObject({ restoring: 0, restored: 30, restoreFailed: 0 });
  });
});
