// A resource deleted and rolled back by one operation, then deleted again by a second whose delete's
// outcome is unknown (the downstream applied it, then answered 500). The second's rollback read the
// first's restore as the latest act (an unconfirmed delete is not one that took effect), marked the
// item restored "already restored by" the first, sent nothing and ended rolled_back, with the
// resource still deleted downstream and no way back through Blastgate (a probe). Only an act made
// after this operation's own snapshot of the item supersedes its rollback.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { command } from '../support/exec-helpers.ts';
import { buildExecHarness, submitAndStart, waitForState, type ExecHarness } from '../support/execution.ts';
import { deleteAndComplete, useHttp } from '../support/restores.ts';
import { appId, query, seedRegistry, tenantId } from '../support/seed.ts';

let h: ExecHarness;

beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 1, appsPerSite: 2 });
  await useHttp(h);
});
afterAll(async () => {
  await h?.close();
});

describe('a rollback of a delete whose outcome is unknown, after an earlier delete was rolled back', () => {
  it('sends the restore, and the resource is live again', async () => {
    const app = appId(0, 0);
    h.downstream.resources.set(app, { id: app, tenantId: tenantId(0), state: 'active', data: {} });
    const first = await deleteAndComplete(h, 'app', [app]);
    await command(h, 'operator', first, 'rollback', { reason: 'wrong app' }).expect(200);
    expect((await waitForState(h, first, ['rolled_back', 'rollback_incomplete'])).state).toBe('rolled_back');
    expect(h.downstream.state(app)).toBe('active');

    // Applied, then answered 500 on every try: the delete's outcome is unknown to Blastgate.
    h.downstream.answer((c) => {
      if (c.action !== 'softDelete' || c.resourceId !== app) return null;
      h.downstream.resources.get(app)!.state = 'soft_deleted';
      return 500;
    });
    const second = await submitAndStart(h, {
      targetType: 'app',
      reason: 'Cleanup script',
      ids: [app],
      rollout: { bakeSeconds: 0, waves: ['100%'], restoreDrill: false },
      haltPolicy: { probe: 'optional', maxFailureRate: 1 },
    });
    const end = await waitForState(h, second.id, ['completed', 'completed_with_failures', 'halted', 'paused']);
    expect(['completed_with_failures', 'halted']).toContain(end.state);
    expect(h.downstream.state(app)).not.toBe('active');
    h.downstream.answer(null);

    await command(h, 'operator', second.id, 'rollback', { reason: 'undo it' }).expect(200);
    expect((await waitForState(h, second.id, ['rolled_back', 'rollback_incomplete'])).state).toBe('rolled_back');
    expect(h.downstream.state(app)).toBe('active');
    // The first rollback's restore and the second's (the first delete's restore drill aside).
    const restores = h.downstream.calls.filter(
      (c) => c.action === 'restore' && c.resourceId === app && !c.idempotencyKey?.includes('drill'),
    );
    expect(restores.map((c) => c.status)).toEqual([200, 200]);
    const [item] = await query<{ state: string; last_error: string | null }>(
      h.databaseUrl,
      'SELECT state, last_error FROM operation_items WHERE operation_id = $1',
      [second.id],
    );
    expect(item).toMatchObject({ state: 'restored' });
    expect(item!.last_error ?? '').not.toMatch(/already restored/);
  });
});
