// Budgets come from the admin policy: a plan beyond them is planned but needs break-glass.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import request from 'supertest';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { changedTables, fingerprint } from '../support/fingerprint.ts';
import { appId, query, seedRegistry } from '../support/seed.ts';

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp();
  await seedRegistry(t.databaseUrl, { sites: 10, appsPerSite: 10 });
});
afterAll(async () => {
  await t?.close();
});

const plan = (ids: string[]) =>
  request(t.app.server)
    .post('/v1/operations')
    .set('authorization', t.auth('requester'))
    .send({ targetType: 'app', reason: 'cleanup', ticket: 'CHG-7', ids, dryRun: true });

describe('admin policy', () => {
  it('applies new budgets to later plans, audited, admin only', async () => {
    const ids = [appId(0, 0), appId(1, 0), appId(2, 0)];
    expect((await plan(ids).expect(200)).body.plan.requiresBreakGlass).toBe(false);
    await request(t.app.server)
      .put('/v1/admin/policy')
      .set('authorization', t.auth('operator'))
      .send({ budgets: { maxTenants: 2, maxItems: 100 } })
      .expect(403);
    await request(t.app.server)
      .put('/v1/admin/policy')
      .set('authorization', t.auth('admin'))
      .send({ budgets: { maxTenants: 2, maxItems: 100 } })
      .expect(200);
    const after = await plan(ids).expect(200);
    expect(after.body.plan).toMatchObject({
      requiresBreakGlass: true,
      budgets: { maxTenants: 2, withinBudget: false, breaches: ['3 tenants exceeds the budget of 2'] },
    });
    const got = await request(t.app.server).get('/v1/admin/policy').set('authorization', t.auth('viewer')).expect(200);
    // maxRestoreMinutes was left out: the budgets are replaced whole, so it is the default.
    expect(got.body).toEqual({
      budgets: { maxTenants: 2, maxItems: 100, maxRestoreMinutes: 240 },
      planTtlSeconds: 86_400,
      rollingBudgets: {
        windowHours: 24,
        perRequester: { maxTenants: 50, maxItems: 100_000 },
        total: { maxTenants: 200, maxItems: 400_000 },
      },
      restoreApproval: 'required',
      retentionDays: 30,
    });
    const audit = await query(t.databaseUrl, `SELECT actor FROM audit_events WHERE action = 'policy.set'`);
    expect(audit).toEqual([{ actor: 'bootstrap-admin' }]);
  });

  it('refuses a budget of zero or unknown fields', async () => {
    const r = await request(t.app.server)
      .put('/v1/admin/policy')
      .set('authorization', t.auth('admin'))
      .send({ budgets: { maxTenants: 0, maxItems: 1 } })
      .expect(400);
    expect(r.body.code).toBe('VALIDATION_FAILED');
    await request(t.app.server)
      .put('/v1/admin/policy')
      .set('authorization', t.auth('admin'))
      .send({ budgets: { maxTenants: 1, maxItems: 1, extra: 1 } })
      .expect(400);
    await request(t.app.server)
      .put('/v1/admin/policy')
      .set('authorization', t.auth('admin'))
      .send({ budgets: { maxTenants: 1, maxItems: 1, maxRestoreMinutes: 0 } })
      .expect(400);
  });

  it('takes back the document GET answers, as it is (GET, edit, PUT)', async () => {
    const admin = t.auth('admin');
    const got = await request(t.app.server).get('/v1/admin/policy').set('authorization', admin).expect(200);
    expect(got.body.rollingBudgets.windowHours).toBe(24);
    const edited = { ...got.body, planTtlSeconds: 3_600 };
    const put = await request(t.app.server).put('/v1/admin/policy').set('authorization', admin).send(edited);
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    expect(put.body).toEqual(edited);
    // The window is not stored with the budgets: it is the service's, not the policy's.
    const [row] = await query(t.databaseUrl, `SELECT value FROM settings WHERE key = 'rolling_budgets'`);
    expect(row?.value).toEqual({
      perRequester: got.body.rollingBudgets.perRequester,
      total: got.body.rollingBudgets.total,
    });
  });

  it('changes only what a PUT gives: the budgets in force stay when they are left out', async () => {
    const admin = t.auth('admin');
    const tight = { maxTenants: 7, maxItems: 700, maxRestoreMinutes: 60 };
    await request(t.app.server)
      .put('/v1/admin/policy')
      .set('authorization', admin)
      .send({ budgets: tight })
      .expect(200);
    const got = await request(t.app.server).get('/v1/admin/policy').set('authorization', admin).expect(200);
    const r = await request(t.app.server)
      .put('/v1/admin/policy')
      .set('authorization', admin)
      .send({ retentionDays: 14 });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body).toEqual({ ...got.body, retentionDays: 14 });
    expect(r.body.budgets).toMatchObject(tight);
  });

  it('refuses another rolling window, naming the field and saying it is fixed, changing nothing', async () => {
    const admin = t.auth('admin');
    const got = await request(t.app.server).get('/v1/admin/policy').set('authorization', admin).expect(200);
    const before = await fingerprint(t.app.db.pool);
    for (const windowHours of [48, 0, '24', null]) {
      const r = await request(t.app.server)
        .put('/v1/admin/policy')
        .set('authorization', admin)
        .send({ ...got.body, rollingBudgets: { ...got.body.rollingBudgets, windowHours } });
      expect(r.status, JSON.stringify(r.body)).toBe(400);
      expect(r.body.code).toBe('VALIDATION_FAILED');
      expect(r.body.details[0]).toMatchObject({ field: 'body.rollingBudgets.windowHours', allowed: [24] });
      expect(r.body.message).toMatch(/^Invalid body\.rollingBudgets\.windowHours: .*fixed at 24/);
    }
    expect(changedTables(before, await fingerprint(t.app.db.pool))).toEqual([]);
  });
});
