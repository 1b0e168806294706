// A rollback sends its restores through the adapter its types are declared with now. After the
// type of an HTTP delete was re-declared to the registry, the rollback "restored" the registry rows
// (which an HTTP delete leaves active), sent nothing, and read rolled_back while the apps stayed
// deleted in their system; re-pointed at another URL, it restored into a system the delete never
// called (a probe). It is refused now (409 ADAPTER_CHANGED) until the adapter reaches the system
// the delete went through.
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { command, ownCalls } from '../support/exec-helpers.ts';
import {
  buildExecHarness,
  getOperation,
  useHttpAdapter,
  waitForState,
  type ExecHarness,
} from '../support/execution.ts';
import { appsOfSite, deleteAndComplete } from '../support/restores.ts';
import { query, seedRegistry, tenantId } from '../support/seed.ts';

let h: ExecHarness;

beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 4, appsPerSite: 3 });
});
afterAll(async () => {
  await h?.close();
});

const declareApps = (adapter: Record<string, unknown>) =>
  request(h.app.server)
    .put('/v1/registry/types')
    .set('authorization', h.auth('admin'))
    .send({ types: [{ name: 'app', parentType: 'site', adapter }] });
const adapterOfApps = async () =>
  (
    await query<{ adapter: Record<string, unknown> }>(
      h.databaseUrl,
      `SELECT adapter FROM resource_types WHERE name = 'app'`,
    )
  )[0]!.adapter;

describe('a rollback after the type was re-declared to another system', () => {
  it('is refused, sends nothing, and runs once the adapter reaches the system the delete used again', async () => {
    await useHttpAdapter(h, false);
    const http = await adapterOfApps();
    const apps = appsOfSite(0);
    for (const x of apps)
      h.downstream.resources.set(x, { id: x, tenantId: tenantId(0), state: 'active', data: { name: x } });
    const del = await deleteAndComplete(h, 'app', apps);

    for (const other of [{ kind: 'registry' }, { ...http, baseUrl: 'http://127.0.0.1:9' }]) {
      expect((await declareApps(other)).status).toBe(200);
      const r = await command(h, 'operator', del, 'rollback', { reason: 'undo the cleanup' });
      expect(r.status, JSON.stringify(r.body)).toBe(409);
      expect(r.body).toMatchObject({
        code: 'ADAPTER_CHANGED',
        details: { changed: [{ type: 'app', was: `http ${h.downstream.url.replace(/\/$/, '')}` }] },
      });
      expect((await getOperation(h, del)).state).toBe('completed');
    }
    expect(ownCalls(h, 'restore')).toEqual([]);

    // Declared as it was (a new timeout is still the same system), the rollback runs.
    expect((await declareApps({ ...http, timeoutMs: 6_000 })).status).toBe(200);
    await command(h, 'operator', del, 'rollback', { reason: 'undo the cleanup' }).expect(200);
    expect((await waitForState(h, del, ['rolled_back', 'rollback_incomplete'])).state).toBe('rolled_back');
    expect(apps.map((x) => h.downstream.state(x))).toEqual(apps.map(() => 'active'));
  });
});
