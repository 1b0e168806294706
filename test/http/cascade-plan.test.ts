// Cascades at planning (promise 2 for what a delete takes with it): a site delete's plan counts its
// active apps (and their widgets) as items, budgets them, locks them, and writes each to the ledger
// against the site that takes it. A cascade that would take a protected resource, or one another
// live operation holds, or one of a tenant outside the token's scope, rejects its site; a plan whose
// cascade changed before the start is stale.
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { appId, query, seedRegistry, siteId, tenantId } from '../support/seed.ts';

let t: TestApp;
const APPS = 4;
const PROTECTED_APP = appId(5, 1);
beforeAll(async () => {
  t = await buildTestApp();
  await seedRegistry(t.databaseUrl, { sites: 40, appsPerSite: APPS, protectedApps: [PROTECTED_APP] });
  // Two levels: widgets live in apps, and a site delete takes both.
  await query(t.databaseUrl, `INSERT INTO resource_types (name, parent_type) VALUES ('widget', 'app')`);
  await query(t.databaseUrl, `UPDATE resource_types SET cascade_to = ARRAY['app', 'widget'] WHERE name = 'site'`);
  await query(
    t.databaseUrl,
    `INSERT INTO resources (id, type, tenant_id, parent_id) VALUES ('widget_1', 'widget', $1, $2), ('widget_2', 'widget', $1, $2)`,
    [tenantId(1), appId(1, 0)],
  );
});
afterAll(async () => {
  await t?.close();
});

const submit = (ids: string[], extra: object = {}) =>
  request(t.app.server)
    .post('/v1/operations')
    .set('authorization', t.auth('requester'))
    .send({ targetType: 'site', reason: 'Decommission sites', ticket: 'CHG-9', ids, ...extra });

describe('a site delete takes its active descendants with it', () => {
  it('counts, locks and ledgers them against their site, after every wave, in their site’s wave', async () => {
    await query(t.databaseUrl, `UPDATE resources SET state = 'soft_deleted' WHERE id = $1`, [appId(2, 3)]);
    const res = await submit([siteId(1), siteId(2), siteId(3)]).expect(201);
    const plan = res.body.plan;
    // 3 sites, 12 apps less the one already deleted, 2 widgets.
    expect(plan.cascade).toEqual([
      { type: 'app', count: 11 },
      { type: 'widget', count: 2 },
    ]);
    expect(plan).toMatchObject({ itemCount: 16, tenantCount: 3 });
    expect(plan.waves.reduce((n: number, w: { items: number }) => n + w.items, 0)).toBe(16);
    expect(plan.waves.at(-1).toSeq).toBe(3);

    const rows = await query<{
      seq: number;
      resource_id: string;
      parent_seq: number | null;
      resource_type: string | null;
      depth: number;
      wave: number;
      tenant_id: string;
    }>(
      t.databaseUrl,
      `SELECT seq, resource_id, parent_seq, resource_type, depth, wave, tenant_id FROM operation_items
       WHERE operation_id = $1 ORDER BY seq`,
      [res.body.id],
    );
    expect(rows).toHaveLength(16);
    const sites = rows.filter((r) => r.parent_seq === null);
    expect(sites.map((r) => r.seq)).toEqual([0, 1, 2]);
    const seqOf = new Map(sites.map((r) => [r.resource_id, r]));
    const site1 = seqOf.get(siteId(1))!;
    const under1 = rows.filter((r) => r.parent_seq === site1.seq);
    expect(under1.map((r) => [r.resource_id, r.resource_type, r.depth])).toEqual([
      [appId(1, 0), 'app', 1],
      [appId(1, 1), 'app', 1],
      [appId(1, 2), 'app', 1],
      [appId(1, 3), 'app', 1],
      ['widget_1', 'widget', 2],
      ['widget_2', 'widget', 2],
    ]);
    for (const d of rows.filter((r) => r.parent_seq !== null)) {
      expect(d.seq).toBeGreaterThanOrEqual(3);
      const parent = rows.find((r) => r.seq === d.parent_seq)!;
      expect([d.wave, d.tenant_id]).toEqual([parent.wave, parent.tenant_id]);
    }
    expect(rows.map((r) => r.resource_id)).not.toContain(appId(2, 3));
    // A resource is in at most one live operation: the descendants are locked with their sites.
    const locks = await query<{ n: number }>(
      t.databaseUrl,
      `SELECT count(*)::int AS n FROM resource_locks WHERE operation_id = $1`,
      [res.body.id],
    );
    expect(locks[0]!.n).toBe(16);
    // …so an app delete of one of them is refused, naming the site delete that holds it.
    const apps = await request(t.app.server)
      .post('/v1/operations')
      .set('authorization', t.auth('requester'))
      .send({ targetType: 'app', reason: 'Remove an app', ticket: 'CHG-10', ids: [appId(3, 0)] })
      .expect(422);
    expect(apps.body.details.offenders.in_flight).toEqual([expect.objectContaining({ heldBy: res.body.id })]);
  });

  it('budgets descendants and their tenants: items, tenants and protected tenants beyond the sites', async () => {
    // An app of site 10 that belongs to another (protected) customer.
    await query(t.databaseUrl, `UPDATE tenants SET protected = true WHERE id = $1`, [tenantId(39)]);
    await query(t.databaseUrl, `UPDATE resources SET tenant_id = $2 WHERE id = $1`, [appId(10, 0), tenantId(39)]);
    await request(t.app.server)
      .put('/v1/admin/policy')
      .set('authorization', t.auth('admin'))
      .send({ budgets: { maxTenants: 2, maxItems: 9 } })
      .expect(200);
    try {
      const res = await submit([siteId(10), siteId(11)], { dryRun: true }).expect(200);
      expect(res.body.plan).toMatchObject({ itemCount: 10, tenantCount: 3, requiresBreakGlass: true });
      expect(res.body.plan.tenants).toMatchObject({ total: 3, protected: 1 });
      expect(res.body.plan.budgets.breaches).toEqual([
        '3 tenants exceeds the budget of 2',
        '10 items exceeds the budget of 9',
      ]);
      expect(res.body.plan.breakGlassReasons.join(' ')).toContain(tenantId(39));
      // The blast radius names the tenant the cascade reaches, in the wave that reaches it: the
      // plan said 3 tenants while its top list and waves named 2.
      const siteWave = res.body.plan.tenants.top.find((x: { tenantId: string }) => x.tenantId === tenantId(10)).wave;
      expect(res.body.plan.tenants.top).toContainEqual({
        tenantId: tenantId(39),
        items: 1,
        internal: false,
        wave: siteWave,
      });
      // Each tenant's own loss, counted once: the moved app is tenant 39's, not also site 10’s tenant’s
      // (which read 5, and the list added up to 11 of 10 items).
      const top = res.body.plan.tenants.top as { tenantId: string; items: number }[];
      expect(top.find((x) => x.tenantId === tenantId(10))!.items).toBe(APPS); // the site and its other apps
      expect(top.reduce((n, x) => n + x.items, 0)).toBe(10);
      const waves = res.body.plan.waves as { index: number; tenants: number; cumulativeTenants: number }[];
      expect(waves.reduce((n, w) => n + w.tenants, 0)).toBe(3);
      expect(waves.at(-1)!.cumulativeTenants).toBe(3);
    } finally {
      await request(t.app.server)
        .put('/v1/admin/policy')
        .set('authorization', t.auth('admin'))
        .send({ budgets: { maxTenants: 50, maxItems: 100_000 } })
        .expect(200);
    }
  });

  it('rejects a site whose cascade would take a protected app, or an app another live operation holds', async () => {
    const held = await request(t.app.server)
      .post('/v1/operations')
      .set('authorization', t.auth('requester'))
      .send({ targetType: 'app', reason: 'Remove an app', ticket: 'CHG-11', ids: [appId(6, 2)] })
      .expect(201);
    const res = await submit([siteId(5), siteId(6), siteId(7)]).expect(422);
    expect(res.body.details.counts).toMatchObject({ ok: 1, protected: 1, in_flight: 1 });
    // Each names the descendant it is rejected for: site 5 itself is not protected, its app is.
    const viaApp = (site: number, app: number) => ({ id: appId(site, app), type: 'app', tenantId: tenantId(site) });
    expect(res.body.details.offenders.protected).toEqual([
      expect.objectContaining({ id: siteId(5), via: viaApp(5, 1) }),
    ]);
    expect(res.body.details.offenders.in_flight).toEqual([
      expect.objectContaining({ id: siteId(6), heldBy: held.body.id, via: viaApp(6, 2) }),
    ]);
    // The full report says the same; a listed ID rejected for itself has no `via`.
    const report = await request(t.app.server)
      .get(`${res.body.details.reportUrl}`)
      .set('authorization', t.auth('viewer'))
      .expect(200);
    expect(report.body.items).toEqual([
      expect.objectContaining({ id: siteId(5), class: 'protected', via: viaApp(5, 1) }),
      expect.objectContaining({ id: siteId(6), class: 'in_flight', via: viaApp(6, 2) }),
    ]);
    const direct = await submit([siteId(8), siteId(8)], { dryRun: true }).expect(422);
    expect(direct.body.details.offenders.duplicate[0]).not.toHaveProperty('via');
    // Nothing of the rejected plan holds anything.
    const locks = await query(t.databaseUrl, `SELECT 1 FROM resource_locks WHERE resource_id = ANY($1)`, [
      [siteId(7), appId(7, 0)],
    ]);
    expect(locks).toEqual([]);
  });

  it('judges descendants against the token scope, and counts their tenants in the rolling budgets', async () => {
    const mint = async (name: string, tenants: string[]) =>
      (
        await request(t.app.server)
          .post('/v1/admin/tokens')
          .set('authorization', t.auth('admin'))
          .send({ name, role: 'requester', scope: { resourceTypes: ['site'], tenants } })
          .expect(201)
      ).body.token as string;
    // An app of site 31 that belongs to another customer: a delete of site 31 deletes it too.
    await query(t.databaseUrl, `UPDATE resources SET tenant_id = $2 WHERE id = $1`, [appId(31, 0), tenantId(32)]);
    const narrow = await mint('sites-30-31', [tenantId(30), tenantId(31)]);
    const refused = await request(t.app.server)
      .post('/v1/operations')
      .set('authorization', `Bearer ${narrow}`)
      .send({ targetType: 'site', reason: 'Decommission sites', ticket: 'CHG-12', ids: [siteId(30), siteId(31)] })
      .expect(422);
    expect(refused.body.details.counts).toMatchObject({ ok: 1, out_of_scope: 1 });
    expect(refused.body.details.offenders.out_of_scope).toEqual([
      expect.objectContaining({ id: siteId(31), via: { id: appId(31, 0), type: 'app', tenantId: tenantId(32) } }),
    ]);
    expect(refused.body.details.scope).toMatchObject({ token: 'sites-30-31' });

    const wide = await mint('sites-30-32', [tenantId(30), tenantId(31), tenantId(32)]);
    const res = await request(t.app.server)
      .post('/v1/operations')
      .set('authorization', `Bearer ${wide}`)
      .send({ targetType: 'site', reason: 'Decommission sites', ticket: 'CHG-12', ids: [siteId(30), siteId(31)] })
      .expect(201);
    expect(res.body.plan).toMatchObject({ itemCount: 10, tenantCount: 3 });
    expect(res.body.plan.budgets.rolling.requester.tenants).toMatchObject({ before: 0, withPlan: 3 });
    expect(res.body.plan.budgets.rolling.requester.items).toMatchObject({ before: 0, withPlan: 10 });
    const counted = await query(
      t.databaseUrl,
      `SELECT tenant_id, items FROM operation_tenants WHERE operation_id = $1 ORDER BY tenant_id`,
      [res.body.id],
    );
    expect(counted).toEqual([
      { tenant_id: tenantId(30), items: 5 },
      { tenant_id: tenantId(31), items: 4 },
      { tenant_id: tenantId(32), items: 1 },
    ]);
  });

  it('a plan whose cascade changed before the start is stale: a new app, an app moved away', async () => {
    const res = await submit([siteId(20), siteId(21)]).expect(201);
    await request(t.app.server)
      .post(`/v1/operations/${res.body.id}/approve`)
      .set('authorization', t.auth('approver'))
      .send({ planHash: res.body.planHash })
      .expect(200);
    await query(
      t.databaseUrl,
      `INSERT INTO resources (id, type, tenant_id, parent_id) VALUES ('app_new', 'app', $1, $2)`,
      [tenantId(20), siteId(20)],
    );
    await query(t.databaseUrl, `UPDATE resources SET tenant_id = $2 WHERE id = $1`, [appId(21, 1), tenantId(22)]);
    const start = await request(t.app.server)
      .post(`/v1/operations/${res.body.id}/start`)
      .set('authorization', t.auth('operator'))
      .send({})
      .expect(409);
    expect(start.body.code).toBe('PLAN_STALE');
    // Both in one answer: the new app was named only at the next start, once the moved one was fixed (a trial).
    expect(start.body.details.total).toBe(2);
    expect(start.body.details.changed.map((c: { resourceId: string }) => c.resourceId)).toEqual([
      appId(21, 1),
      'app_new',
    ]);
    expect(start.body.message).toContain(`1 planned resource(s) changed in the registry since the plan was made`);
    expect(start.body.message).toContain(`, and 1 resource(s) that the plan does not list would now be taken`);
    // Once the moved app is back, the app nobody planned still makes it stale.
    await query(t.databaseUrl, `UPDATE resources SET tenant_id = $2 WHERE id = $1`, [appId(21, 1), tenantId(21)]);
    const again = await request(t.app.server)
      .post(`/v1/operations/${res.body.id}/start`)
      .set('authorization', t.auth('operator'))
      .send({})
      .expect(409);
    expect(again.body.details.changed).toEqual([
      expect.objectContaining({
        resourceId: 'app_new',
        planned: null,
        // In words, as every other changed resource (a trial found this one without).
        reason: `it is active under ${siteId(20)}, and its cascade would now take it: the plan does not list it`,
      }),
    ]);
  });

  it('a listed descendant refused for itself (type_mismatch) still counts against the site that would take it', async () => {
    // The protected app listed by mistake beside its site: the report must not call the site ok,
    // or the list fixed by removing the named offender is refused again for the site.
    const res = await submit([siteId(5), PROTECTED_APP], { dryRun: true }).expect(422);
    expect(res.body.details.counts).toMatchObject({ ok: 0, protected: 1, type_mismatch: 1 });
    expect(res.body.details.offenders.protected).toEqual([
      expect.objectContaining({ id: siteId(5), via: { id: PROTECTED_APP, type: 'app', tenantId: tenantId(5) } }),
    ]);
  });

  it('a planned app moved out of its site (parentId changed) makes the plan stale, naming where it is now', async () => {
    const res = await submit([siteId(24), siteId(25)]).expect(201);
    await request(t.app.server)
      .post(`/v1/operations/${res.body.id}/approve`)
      .set('authorization', t.auth('approver'))
      .send({ planHash: res.body.planHash })
      .expect(200);
    // An import that sends "parentId": null (or another parent) after the plan: the site's delete
    // no longer takes the app, so starting would delete (or record as deleted) a resource nobody
    // planned to take.
    await query(t.databaseUrl, `UPDATE resources SET parent_id = NULL WHERE id = $1`, [appId(24, 2)]);
    await query(t.databaseUrl, `UPDATE resources SET parent_id = $2 WHERE id = $1`, [appId(25, 0), siteId(26)]);
    const start = await request(t.app.server)
      .post(`/v1/operations/${res.body.id}/start`)
      .set('authorization', t.auth('operator'))
      .send({})
      .expect(409);
    expect(start.body.code).toBe('PLAN_STALE');
    expect(start.body.details.changed).toEqual([
      expect.objectContaining({
        resourceId: appId(24, 2),
        reason: `it is no longer in ${siteId(24)}'s cascade (its parent is none now)`,
        now: expect.objectContaining({ parentId: null }),
      }),
      expect.objectContaining({
        resourceId: appId(25, 0),
        reason: `it is no longer in ${siteId(25)}'s cascade (its parent is ${siteId(26)} now)`,
      }),
    ]);
    expect(start.body.message).toContain(`${appId(24, 2)}: it is no longer in ${siteId(24)}'s cascade`);
    // Moved back where the plan found them: the plan starts.
    await query(t.databaseUrl, `UPDATE resources SET parent_id = $2 WHERE id = $1`, [appId(24, 2), siteId(24)]);
    await query(t.databaseUrl, `UPDATE resources SET parent_id = $2 WHERE id = $1`, [appId(25, 0), siteId(25)]);
    await request(t.app.server)
      .post(`/v1/operations/${res.body.id}/start`)
      .set('authorization', t.auth('operator'))
      .send({})
      .expect(200);
  });

  it("follows each level's own cascade types: an org takes its projects and their tasks, and a new task makes it stale", async () => {
    // org → proj → task, each type naming only its children's type (a trial: the tasks stayed
    // active, unlocked and unsnapshotted under a deleted project).
    await query(
      t.databaseUrl,
      `INSERT INTO resource_types (name, parent_type, cascade_to) VALUES
         ('org', NULL, ARRAY['proj']), ('proj', 'org', ARRAY['task']), ('task', 'proj', '{}')`,
    );
    await query(
      t.databaseUrl,
      `INSERT INTO resources (id, type, tenant_id, parent_id) VALUES
         ('org_1', 'org', $1, NULL), ('proj_1', 'proj', $1, 'org_1'), ('task_1', 'task', $1, 'proj_1'),
         ('task_2', 'task', $1, 'proj_1')`,
      [tenantId(36)],
    );
    const org = (extra: object = {}) =>
      request(t.app.server)
        .post('/v1/operations')
        .set('authorization', t.auth('requester'))
        .send({ targetType: 'org', reason: 'Offboard org', ticket: 'CHG-10', ids: ['org_1'], ...extra });
    const res = await org().expect(201);
    expect(res.body.plan.cascade).toEqual([
      { type: 'task', count: 2 },
      { type: 'proj', count: 1 },
    ]);
    expect(res.body.plan.itemCount).toBe(4);
    await request(t.app.server)
      .post(`/v1/operations/${res.body.id}/approve`)
      .set('authorization', t.auth('approver'))
      .send({ planHash: res.body.planHash })
      .expect(200);
    await query(
      t.databaseUrl,
      `INSERT INTO resources (id, type, tenant_id, parent_id) VALUES ('task_3', 'task', $1, 'proj_1')`,
      [tenantId(36)],
    );
    const start = await request(t.app.server)
      .post(`/v1/operations/${res.body.id}/start`)
      .set('authorization', t.auth('operator'))
      .send({})
      .expect(409);
    expect(start.body.details.changed).toEqual([expect.objectContaining({ resourceId: 'task_3', planned: null })]);
  });

  it('refuses a cascade deeper than it follows instead of leaving the deepest resources behind, naming them', async () => {
    // site 33 → app → widget ×5: the fifth widget is at level 6, below the last level followed.
    const chain = ['dw_1', 'dw_2', 'dw_3', 'dw_4', 'dw_5'];
    for (const [k, id] of chain.entries())
      await query(
        t.databaseUrl,
        `INSERT INTO resources (id, type, tenant_id, parent_id) VALUES ($1, 'widget', $2, $3)`,
        [id, tenantId(33), k === 0 ? appId(33, 0) : chain[k - 1]],
      );
    const res = await submit([siteId(32), siteId(33)], { dryRun: true }).expect(422);
    expect(res.body).toMatchObject({
      code: 'CASCADE_TOO_DEEP',
      details: { maxDepth: 5, resources: [{ id: siteId(33), beyondDepth: 'dw_5' }] },
    });
    await query(t.databaseUrl, `UPDATE resources SET state = 'soft_deleted' WHERE id = 'dw_5'`);
    const ok = await submit([siteId(32), siteId(33)], { dryRun: true }).expect(200);
    expect(ok.body.plan.cascade).toEqual(expect.arrayContaining([{ type: 'widget', count: 4 }]));
  });

  it('names the descendants it leaves out because they are already deleted, apart from those it takes', async () => {
    // site 36: apps 1 and 3 soft-deleted (app 3 purged) before the plan; a widget under app 1 is not counted
    // (what lies under a descendant left out is not the plan's either).
    await query(t.databaseUrl, `UPDATE resources SET state = 'soft_deleted' WHERE id = $1`, [appId(36, 1)]);
    await query(t.databaseUrl, `UPDATE resources SET state = 'purged' WHERE id = $1`, [appId(36, 3)]);
    await query(
      t.databaseUrl,
      `INSERT INTO resources (id, type, tenant_id, parent_id, state) VALUES ('widget_36', 'widget', $1, $2, 'soft_deleted')`,
      [tenantId(36), appId(36, 1)],
    );
    const res = await submit([siteId(36), siteId(37)], { dryRun: true }).expect(200);
    expect(res.body.plan.cascade).toEqual([{ type: 'app', count: 2 * APPS - 2 }]);
    expect(res.body.plan.cascadeLeftOut).toEqual([{ type: 'app', count: 2, ids: [appId(36, 1), appId(36, 3)] }]);
    // Nothing left out: no field.
    const clean = await submit([siteId(37)], { dryRun: true }).expect(200);
    expect(clean.body.plan).not.toHaveProperty('cascadeLeftOut');
  });
});
