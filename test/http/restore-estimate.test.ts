// Every delete plan says how long restoring it would take, before anything is deleted; a plan whose
// estimate is over the policy's maxRestoreMinutes needs break-glass, like any other budget breach.
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { appId, query, seedRegistry, siteId } from '../support/seed.ts';

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp();
  // 30 sites of 50 apps: 1,500 apps, each site in a tenant of its own.
  await seedRegistry(t.databaseUrl, { sites: 30, appsPerSite: 50 });
});
afterAll(async () => {
  await t?.close();
});

const appsOf = (sites: number, perSite: number) =>
  Array.from({ length: sites }, (_, s) => Array.from({ length: perSite }, (_, j) => appId(s, j))).flat();

const submit = (body: Record<string, unknown>) =>
  request(t.app.server)
    .post('/v1/operations')
    .set('authorization', t.auth('requester'))
    .send({ targetType: 'app', reason: 'Remove the legacy app', ticket: 'CHG-8', ...body });

/** The app type acts on an HTTP downstream (never called here: planning only reads the registry). */
const appsOverHttp = () =>
  query(t.databaseUrl, `UPDATE resource_types SET adapter = $1 WHERE name = 'app'`, [
    JSON.stringify({
      kind: 'http',
      baseUrl: 'http://127.0.0.1:9',
      snapshot: 'GET /apps/{id}',
      softDelete: 'POST /apps/{id}/soft-delete',
      restore: 'POST /apps/{id}/restore',
      hardDelete: 'DELETE /apps/{id}',
    }),
  ]);
const appsOnRegistry = () =>
  query(t.databaseUrl, `UPDATE resource_types SET adapter = '{"kind":"registry"}' WHERE name = 'app'`);

const setPolicy = (budgets: Record<string, number>) =>
  request(t.app.server).put('/v1/admin/policy').set('authorization', t.auth('admin')).send({ budgets }).expect(200);

describe('estimated time to restore', () => {
  it('shows the estimate on every plan, from the default throughput of the adapter before any measurement', async () => {
    await appsOnRegistry();
    const reg = (await submit({ ids: appsOf(2, 50), dryRun: true }).expect(200)).body.plan;
    expect(reg.estimatedRestore).toEqual({
      seconds: 1,
      items: 100,
      itemsPerSecond: 500,
      basis: 'default',
      byType: [{ type: 'app', items: 100, itemsPerSecond: 500, basis: 'default' }],
    });
    expect(reg.budgets).toMatchObject({ maxRestoreMinutes: 240, withinBudget: true, breaches: [] });

    await appsOverHttp();
    const http = (await submit({ ids: appsOf(2, 50), dryRun: true }).expect(200)).body.plan;
    expect(http.estimatedRestore).toMatchObject({ seconds: 5, items: 100, itemsPerSecond: 20, basis: 'default' });

    // A stored plan keeps its estimate, and a site delete counts the apps its cascade would take.
    // (Sites the next test leaves alone: the stored plan holds their apps, its cascade's too.)
    const site = await submit({ targetType: 'site', ids: [siteId(27), siteId(28)] }).expect(201);
    expect(site.body.plan.estimatedRestore).toEqual({
      seconds: 6, // 2 sites at 500/s + 100 apps at 20/s = 5.004 s, rounded up
      items: 102,
      itemsPerSecond: 20.4,
      basis: 'default',
      byType: [
        { type: 'site', items: 2, itemsPerSecond: 500, basis: 'default' },
        { type: 'app', items: 100, itemsPerSecond: 20, basis: 'default' },
      ],
    });
    const read = await request(t.app.server)
      .get(`/v1/operations/${site.body.id}`)
      .set('authorization', t.auth('viewer'))
      .expect(200);
    expect(read.body.plan.estimatedRestore).toEqual(site.body.plan.estimatedRestore);
    // The stored plan holds its sites and their apps; the next test plans over some of them.
    await request(t.app.server)
      .post(`/v1/operations/${site.body.id}/abort`)
      .set('authorization', t.auth('operator'))
      .send({ reason: 'only the estimate was needed' })
      .expect(200);
  });

  it('needs break-glass for a plan over maxRestoreMinutes, reported and approved like other budgets', async () => {
    await appsOverHttp();
    await setPolicy({ maxTenants: 50, maxItems: 100_000, maxRestoreMinutes: 1 });
    // 60 s at 20 items/s is 1,200 items: 1,250 is over, 1,200 is not.
    const within = (await submit({ ids: appsOf(24, 50), dryRun: true }).expect(200)).body.plan;
    expect(within).toMatchObject({ requiresBreakGlass: false, estimatedRestore: { seconds: 60 } });

    const over = await submit({ ids: appsOf(25, 50) }).expect(201);
    const breach = 'an estimated 2 minutes to restore 1250 items (20 items/s, default) exceeds the budget of 1 minutes';
    expect(over.body).toMatchObject({ state: 'planned', requiresBreakGlass: true });
    expect(over.body.plan).toMatchObject({
      estimatedRestore: { seconds: 63, items: 1250, basis: 'default' },
      budgets: { maxRestoreMinutes: 1, withinBudget: false, breaches: [breach] },
      requiresBreakGlass: true,
      breakGlassReasons: [breach],
    });

    // The break-glass rule of every budget: an approver alone is not enough, an admin completes it.
    const approve = (role: 'approver' | 'admin') =>
      request(t.app.server)
        .post(`/v1/operations/${over.body.id}/approve`)
        .set('authorization', t.auth(role))
        .send({ planHash: over.body.planHash })
        .expect(200);
    expect((await approve('approver')).body.state).toBe('planned');
    expect((await approve('admin')).body.state).toBe('approved');

    // The same plan under the default budget (240 minutes) needs nothing special (the approved
    // operation is cancelled first: it holds these apps).
    await request(t.app.server)
      .post(`/v1/operations/${over.body.id}/abort`)
      .set('authorization', t.auth('operator'))
      .send({ reason: 'replanned' })
      .expect(200);
    await setPolicy({ maxTenants: 50, maxItems: 100_000 });
    const relaxed = (await submit({ ids: appsOf(25, 50), dryRun: true }).expect(200)).body.plan;
    expect(relaxed).toMatchObject({ requiresBreakGlass: false, budgets: { maxRestoreMinutes: 240, breaches: [] } });
  });
});
