// A restore chunk asked the registry about its items once, before their snapshots, and then sent
// its restores in parts. An app its own system brought back and edited while the first part went
// out (an import said active) got this restore's snapshot written over the edit. Each part after
// the first asks again now (a purge asks before every hard delete: test/purges/purge-mid-chunk).
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildExecHarness, type ExecHarness } from '../support/execution.ts';
import { appsOfSite, deleteAndComplete, restoreItems, runRestore, useHttp } from '../support/restores.ts';
import { query, seedRegistry, tenantId } from '../support/seed.ts';

let h: ExecHarness;
beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 8, appsPerSite: 3 });
  await useHttp(h);
});
afterAll(async () => {
  await h?.close();
});

describe('a restore whose resource is brought back while its first part is sent', () => {
  it('leaves that resource alone in a later part, saying why, and restores the rest', async () => {
    // 24 apps: more than a first part (20), so the last ones go out in a later part.
    const ids = Array.from({ length: 8 }, (_, s) => appsOfSite(s)).flat();
    for (const id of ids)
      h.downstream.resources.set(id, { id, tenantId: tenantId(Number(id.slice(4, 9))), state: 'active', data: {} });
    await deleteAndComplete(h, 'app', ids, { rollout: { bakeSeconds: 0, waves: ['100%'], restoreDrill: false } });
    const back = ids.at(-1)!;
    let imported: request.Response | undefined;
    h.downstream.beforeApply(async (c) => {
      if (c.action === 'restore' && !imported) {
        // Its own system brings `back` back and edits it, and an import says so, while the first
        // part of the restore goes out.
        Object.assign(h.downstream.resources.get(back)!, { state: 'active', data: { edited: true } });
        imported = await request(h.app.server)
          .post('/v1/registry/resources')
          .set('authorization', h.auth('admin'))
          .send({ resources: [{ id: back, type: 'app', tenantId: tenantId(7), state: 'active' }] });
      }
    });
    try {
      const op = await runRestore(h, {
        targetType: 'app',
        ids,
        rollout: { bakeSeconds: 0, concurrency: 1, waves: ['100%'] },
        haltPolicy: { maxFailureRate: 1 },
      });
      expect(imported?.status, JSON.stringify(imported?.body)).toBe(200);
      expect(op.state).toBe('completed_with_failures');
      const items = new Map((await restoreItems(h, op.id)).map((i) => [i.resource_id, i]));
      expect(items.get(back)).toMatchObject({ state: 'failed' });
      expect(items.get(back)!.last_error).toMatch(/^not restored: .*active again/);
      expect(ids.filter((id) => id !== back).every((id) => items.get(id)!.state === 'done')).toBe(true);
      // Never sent: the write-ahead mark its part set is taken back (no purge reads it as a restore
      // of unknown outcome).
      const [mark] = await query<{ marked: boolean }>(
        h.databaseUrl,
        'SELECT executed_seq IS NOT NULL AS marked FROM operation_items WHERE operation_id = $1 AND resource_id = $2',
        [op.id, back],
      );
      expect(mark).toEqual({ marked: false });
    } finally {
      h.downstream.beforeApply(undefined);
    }
    expect(h.downstream.calls.filter((c) => c.action === 'restore').map((c) => c.resourceId)).not.toContain(back);
    expect(h.downstream.resources.get(back)!.data).toEqual({ edited: true });
  });
});
