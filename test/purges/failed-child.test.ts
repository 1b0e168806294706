// A purge of a registry site whose apps live in an HTTP system: the chunk sends the apps' hard
// deletes first (their type goes first), then the site's statement. A probe had one app's hard
// delete refused (403) and the site purged anyway, the app left deleted under a purged site, never
// restorable (parent_deleted naming a purged parent). A child that is not purged holds its parent.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { command } from '../support/exec-helpers.ts';
import { buildExecHarness, waitForState, type ExecHarness } from '../support/execution.ts';
import { ageTwoDays, appsOfSite, deleteAndComplete, postPurge, registryStates, useHttp } from '../support/restores.ts';
import { query, seedRegistry, siteId, tenantId } from '../support/seed.ts';

let h: ExecHarness;

beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 3, appsPerSite: 3 });
  await useHttp(h);
  await query(h.databaseUrl, `UPDATE resource_types SET adapter = '{"kind":"registry"}' WHERE name = 'site'`);
});
afterAll(async () => {
  await h?.close();
});

describe('a site whose app is not purged', () => {
  it('is not purged either: its item fails naming the app, and the site stays soft-deleted', async () => {
    const site = siteId(0);
    const apps = appsOfSite(0);
    for (const x of apps) h.downstream.resources.set(x, { id: x, tenantId: tenantId(0), state: 'active', data: {} });
    await deleteAndComplete(h, 'site', [site]);
    await ageTwoDays(h, [site, ...apps]);
    const refused = apps[1]!;
    h.downstream.answer((c) => (c.action === 'hardDelete' && c.resourceId === refused ? 403 : null));
    const r = await postPurge(h, { targetType: 'site', ids: [site] });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    await command(h, 'approver', r.body.id, 'approve', { planHash: r.body.planHash }).expect(200);
    await command(h, 'operator', r.body.id, 'start').expect(200);
    const end = await waitForState(h, r.body.id, ['completed', 'completed_with_failures', 'halted', 'paused']);
    expect(['halted', 'completed_with_failures']).toContain(end.state);
    expect((await registryStates(h, [site]))[site]).toBe('soft_deleted');
    expect(h.downstream.state(refused)).toBe('soft_deleted');
    const [siteItem] = await query<{ state: string; last_error: string | null }>(
      h.databaseUrl,
      'SELECT state, last_error FROM operation_items WHERE operation_id = $1 AND resource_id = $2',
      [r.body.id, site],
    );
    expect(siteItem).toMatchObject({ state: 'failed' });
    expect(siteItem!.last_error).toMatch(new RegExp(`its child ${refused} was not purged by this purge`));
  });
});

describe('the site again, once its app is purged on its own', () => {
  it('is purged by ID: the apps its delete took that are purged already do not refuse it', async () => {
    const site = siteId(1);
    const apps = appsOfSite(1);
    for (const x of apps) h.downstream.resources.set(x, { id: x, tenantId: tenantId(1), state: 'active', data: {} });
    await deleteAndComplete(h, 'site', [site]);
    await ageTwoDays(h, [site, ...apps]);
    const runPurge = async (body: Record<string, unknown>) => {
      const r = await postPurge(h, body);
      expect(r.status, JSON.stringify(r.body)).toBe(201);
      await command(h, 'approver', r.body.id, 'approve', { planHash: r.body.planHash }).expect(200);
      await command(h, 'operator', r.body.id, 'start').expect(200);
      return waitForState(h, r.body.id, ['completed', 'completed_with_failures', 'halted', 'paused']);
    };
    // Two of its apps purged on their own first (a purge that failed the site, or by ID).
    expect((await runPurge({ targetType: 'app', ids: apps.slice(0, 2) })).state).toBe('completed');
    expect((await runPurge({ targetType: 'site', ids: [site] })).state).toBe('completed');
    expect(await registryStates(h, [site, ...apps])).toEqual(
      Object.fromEntries([site, ...apps].map((x) => [x, 'purged'])),
    );
  });
});

describe('a site whose HTTP app was deleted on its own before it', () => {
  it('is refused through the app as child_not_listed once the app is due too, not as not_deleted', async () => {
    const site = siteId(2);
    const apps = appsOfSite(2);
    for (const x of apps) h.downstream.resources.set(x, { id: x, tenantId: tenantId(2), state: 'active', data: {} });
    await deleteAndComplete(h, 'app', [apps[0]!]);
    await deleteAndComplete(h, 'site', [site]);
    // The app's registry row stays active: its system, not the registry, holds its state.
    expect((await registryStates(h, [apps[0]!]))[apps[0]!]).toBe('active');
    await ageTwoDays(h, [site, ...apps]);
    const r = await postPurge(h, { targetType: 'site', ids: [site], dryRun: true });
    expect(r.status, JSON.stringify(r.body)).toBe(422);
    expect(r.body.details.offenders.child_not_listed).toEqual([
      expect.objectContaining({ id: site, via: expect.objectContaining({ id: apps[0] }) }),
    ]);
  });
});
