// A purge chunk's items are checked against the registry once, before its calls go out one by one.
// An app its own system brought back (an import said active) while the chunk's first hard delete
// was out was hard-deleted all the same, its item recorded done and its row rewritten purged (a
// probe). Each HTTP hard delete now asks the registry again right before its call.
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { command, isDrillCall } from '../support/exec-helpers.ts';
import { buildExecHarness, waitForState, type ExecHarness } from '../support/execution.ts';
import { deleteAndComplete, useHttp } from '../support/restores.ts';
import { appId, query, seedRegistry, tenantId } from '../support/seed.ts';

let h: ExecHarness;
beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 3, appsPerSite: 3 });
  await useHttp(h);
});
afterAll(async () => {
  await h?.close();
});

describe('a purge whose resource is imported as active while its chunk sends', () => {
  it('leaves that resource alone, saying why, and purges the rest', async () => {
    const ids = [appId(0, 0), appId(0, 1), appId(0, 2), appId(1, 0)];
    for (const id of ids)
      h.downstream.resources.set(id, { id, tenantId: tenantId(Number(id.slice(4, 9))), state: 'active', data: {} });
    await deleteAndComplete(h, 'app', ids, { rollout: { bakeSeconds: 0, waves: ['100%'], restoreDrill: false } });
    await query(h.databaseUrl, `UPDATE resources SET purge_after = now() - interval '1 day' WHERE id = ANY($1)`, [ids]);
    const back = appId(1, 0);
    let imported: request.Response | undefined;
    h.downstream.beforeApply(async (c) => {
      if (c.action === 'hardDelete' && c.resourceId === ids[0] && !imported) {
        // Its own system brings `back` back, and an import says so, while the purge's first call is out.
        Object.assign(h.downstream.resources.get(back)!, { state: 'active' });
        imported = await request(h.app.server)
          .post('/v1/registry/resources')
          .set('authorization', h.auth('admin'))
          .send({ resources: [{ id: back, type: 'app', tenantId: tenantId(1), state: 'active' }] });
      }
    });
    try {
      const p = await request(h.app.server)
        .post('/v1/purges')
        .set('authorization', h.auth('requester'))
        .send({
          reason: 'Retention ended',
          ticket: 'CHG-1',
          targetType: 'app',
          ids,
          rollout: { bakeSeconds: 0, concurrency: 1, waves: ['100%'] },
          haltPolicy: { maxFailureRate: 1 },
        });
      expect(p.status, JSON.stringify(p.body)).toBe(201);
      await command(h, 'approver', p.body.id, 'approve', { planHash: p.body.planHash }).expect(200);
      await command(h, 'operator', p.body.id, 'start').expect(200);
      const end = await waitForState(h, p.body.id, ['completed', 'completed_with_failures', 'halted', 'paused']);
      expect(imported?.status, JSON.stringify(imported?.body)).toBe(200);
      expect(end.state).toBe('completed_with_failures');
      const items = await query<{ resource_id: string; state: string; last_error: string | null }>(
        h.databaseUrl,
        'SELECT resource_id, state, last_error FROM operation_items WHERE operation_id = $1',
        [p.body.id],
      );
      const of = new Map(items.map((i) => [i.resource_id, i]));
      expect(of.get(back)).toMatchObject({ state: 'failed' });
      expect(of.get(back)!.last_error).toMatch(/^not purged: .*active again/);
      for (const id of ids.slice(0, 3)) expect(of.get(id)).toMatchObject({ state: 'done' });
    } finally {
      h.downstream.beforeApply(undefined);
    }
    expect(
      h.downstream.calls.filter((c) => c.action === 'hardDelete' && !isDrillCall(c)).map((c) => c.resourceId),
    ).not.toContain(back);
    expect(h.downstream.state(back)).toBe('active');
    expect(
      (await query<{ state: string }>(h.databaseUrl, 'SELECT state FROM resources WHERE id = $1', [back]))[0]!.state,
    ).toBe('active');
  });
});
