// A purge's waves go by tenant, and a cascade crosses tenants (a site of one with apps of another).
// A trial purged such a site in wave 0 with its apps in wave 1; stopped in between, the apps were
// left soft-deleted under a purged site, never restorable (parent_deleted naming a purged parent).
// A parent is never planned before a child it purges: a list of IDs refuses it (child_later, via
// the child), and everything due (as a tenant or an operation) keeps it for a later purge
// (children_kept), which takes it once its children are gone.
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { command } from '../support/exec-helpers.ts';
import { buildExecHarness, waitForState, type ExecHarness } from '../support/execution.ts';
import { ageTwoDays, deleteAndComplete, postPurge as postPurgeAs, registryStates } from '../support/restores.ts';
import { query, seedRegistry, siteId, tenantId } from '../support/seed.ts';

let h: ExecHarness;
const SITE = siteId(0);
const OWN_APP = 'app_00000_00';
/** Apps of tenant 5 under tenant 0's site: 3 items against the site's tenant's 2, so a later wave. */
const CROSS = ['app_00000_50', 'app_00000_51', 'app_00000_52'];
const FAMILY = [SITE, OWN_APP, ...CROSS];

beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 6, appsPerSite: 1 });
  await request(h.app.server)
    .post('/v1/registry/resources')
    .set('authorization', h.auth('admin'))
    .send({ resources: CROSS.map((id) => ({ id, type: 'app', tenantId: tenantId(5), parentId: SITE })) })
    .expect(200);
  await deleteAndComplete(h, 'site', [SITE]);
  await ageTwoDays(h, FAMILY);
});
afterAll(async () => {
  await h?.close();
});

const WAVES = { bakeSeconds: 0, concurrency: 4, waves: ['1', '100%'] };
const postPurge = (body: Record<string, unknown>) => postPurgeAs(h, { rollout: WAVES, ...body });
async function run(purge: { id: string; planHash: string }) {
  await command(h, 'approver', purge.id, 'approve', { planHash: purge.planHash }).expect(200);
  await command(h, 'operator', purge.id, 'start').expect(200);
  return (await waitForState(h, purge.id, ['completed', 'completed_with_failures', 'halted', 'paused'])).state;
}

/**
 * Sites `canary` (tenant wave 0) and `site` (after a 2 s bake) deleted, due and purged by ID:
 * returns the purge once its bake runs.
 */
async function purgeIntoBake(canary: string, site: string, family: string[]) {
  await deleteAndComplete(h, 'site', [canary, site]);
  await ageTwoDays(h, family);
  const r = await postPurge({ targetType: 'site', ids: [canary, site], rollout: { ...WAVES, bakeSeconds: 2 } });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  await command(h, 'approver', r.body.id, 'approve', { planHash: r.body.planHash }).expect(200);
  await command(h, 'operator', r.body.id, 'start').expect(200);
  await waitForState(h, r.body.id, ['baking']);
  return r.body as { id: string };
}
const importApp = (resource: Record<string, unknown>) =>
  request(h.app.server)
    .post('/v1/registry/resources')
    .set('authorization', h.auth('admin'))
    .send({ resources: [{ type: 'app', ...resource }] })
    .expect(200);

describe('a parent whose child is of a tenant a later wave takes', () => {
  it('listed by ID, is refused through the child; with one wave the family is planned', async () => {
    const r = await postPurge({ targetType: 'site', ids: [SITE], dryRun: true });
    expect(r.status, JSON.stringify(r.body)).toBe(422);
    expect(r.body).toMatchObject({ code: 'PLAN_REJECTED', details: { counts: { child_later: 1 } } });
    expect(r.body.details.offenders.child_later).toEqual([
      expect.objectContaining({
        id: SITE,
        via: expect.objectContaining({ id: expect.stringMatching(/^app_00000_5/) }),
      }),
    ]);
    expect(r.body.message).toMatch(/of a tenant the purge's waves take later/);

    const oneWave = { ...WAVES, waves: ['100%'] };
    const one = await postPurge({ targetType: 'site', ids: [SITE], dryRun: true, rollout: oneWave });
    expect(one.status, JSON.stringify(one.body)).toBe(200);
    expect(one.body.plan.itemCount).toBe(FAMILY.length);
    // Within the wave the site comes after its apps (chunks run in seq order); then it is aborted.
    const planned = await postPurge({ targetType: 'site', ids: [SITE], rollout: oneWave });
    expect(planned.status, JSON.stringify(planned.body)).toBe(201);
    const order = await query<{ resource_id: string }>(
      h.databaseUrl,
      'SELECT resource_id FROM operation_items WHERE operation_id = $1 ORDER BY seq',
      [planned.body.id],
    );
    expect(order.map((r) => r.resource_id).at(-1)).toBe(SITE);
    await command(h, 'operator', planned.body.id, 'abort', { reason: 'order checked' }).expect(200);
  });

  it('due, is kept back while its children are purged, and a later purge takes it', async () => {
    const r = await postPurge({ dueBefore: new Date().toISOString() });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body.plan).toMatchObject({ itemCount: FAMILY.length - 1, leftOut: { childrenKept: 1 } });
    expect(r.body.plan.leftOut.items).toEqual([
      expect.objectContaining({ id: SITE, reason: 'children_kept', detail: expect.stringMatching(/later wave/) }),
    ]);
    expect(await run(r.body)).toBe('completed');
    expect(await registryStates(h, FAMILY)).toEqual({
      [SITE]: 'soft_deleted',
      ...Object.fromEntries([OWN_APP, ...CROSS].map((id) => [id, 'purged'])),
    });

    const after = await postPurge({ dueBefore: new Date().toISOString() });
    expect(after.status, JSON.stringify(after.body)).toBe(201);
    expect(after.body.plan.itemCount).toBe(1);
    expect(await run(after.body)).toBe('completed');
    expect((await registryStates(h, [SITE]))[SITE]).toBe('purged');
  });
});

describe('a child its cascade takes that an import moved to another tenant since the delete', () => {
  it("refuses the listed parent through it (moved); listed on its own, the child is the operator's to purge", async () => {
    const site = siteId(1);
    const app = 'app_00001_00';
    await deleteAndComplete(h, 'site', [site]);
    await ageTwoDays(h, [site, app]);
    await importApp({ id: app, tenantId: tenantId(2) });
    // (One wave: otherwise its tenant's later wave refuses the site already, as child_later.)
    const r = await postPurge({
      targetType: 'site',
      ids: [site],
      dryRun: true,
      rollout: { ...WAVES, waves: ['100%'] },
    });
    expect(r.status, JSON.stringify(r.body)).toBe(422);
    expect(r.body).toMatchObject({ code: 'PLAN_REJECTED', details: { counts: { moved: 1 } } });
    expect(r.body.details.offenders.moved).toEqual([
      expect.objectContaining({ id: site, via: expect.objectContaining({ id: app }) }),
    ]);
    const alone = await postPurge({ targetType: 'app', ids: [app], dryRun: true });
    expect(alone.status, JSON.stringify(alone.body)).toBe(200);
  });
});

describe('a child imported under a parent while its purge runs', () => {
  it('keeps the parent: its item fails naming the child, which stays live', async () => {
    const [canary, site] = [siteId(4), siteId(5)];
    const family = [canary, 'app_00004_00', site, 'app_00005_00'];
    // Two items each: tenant 4 is the canary wave (ties go by tenant id), tenant 5 goes after a bake.
    const purge = await purgeIntoBake(canary, site, family);
    const newcomer = 'app_00005_60';
    await importApp({ id: newcomer, tenantId: tenantId(5), parentId: site, state: 'active' });
    const end = await waitForState(h, purge.id, ['completed', 'completed_with_failures', 'halted', 'paused']);
    // One of the wave's two items failed: past the halt policy's failure rate, the purge halts for a human.
    expect(end.state).toBe('halted');
    expect(await registryStates(h, [...family, newcomer])).toEqual({
      [canary]: 'purged',
      app_00004_00: 'purged',
      [site]: 'soft_deleted',
      app_00005_00: 'purged',
      [newcomer]: 'active',
    });
    const [item] = await query<{ last_error: string }>(
      h.databaseUrl,
      'SELECT last_error FROM operation_items WHERE operation_id = $1 AND resource_id = $2',
      [purge.id, site],
    );
    expect(item?.last_error).toMatch(new RegExp(`has a child ${newcomer} \\(active\\) that this purge does not take`));
  });
});

describe('a child the purge holds, made active again while the purge runs', () => {
  it('keeps its parent too: both items fail, the child stays live under a deleted (not purged) parent', async () => {
    const [canary, site] = [siteId(2), siteId(3)];
    const child = 'app_00003_00';
    const family = [canary, 'app_00002_00', site, child];
    const purge = await purgeIntoBake(canary, site, family);
    await importApp({ id: child, tenantId: tenantId(3), state: 'active' });
    const end = await waitForState(h, purge.id, ['completed', 'completed_with_failures', 'halted', 'paused']);
    expect(end.state).toBe('halted');
    expect(await registryStates(h, family)).toEqual({
      [canary]: 'purged',
      app_00002_00: 'purged',
      [site]: 'soft_deleted',
      [child]: 'active',
    });
  });
});
