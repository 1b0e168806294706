// Budgets hold across operations: tenants and items per requester and in total over a rolling
// 24 h, so slicing one big deletion into many small ones needs the same break-glass.
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { appId, query, seedRegistry } from '../support/seed.ts';

let t: TestApp;
let n = 0;
beforeAll(async () => {
  t = await buildTestApp();
  await seedRegistry(t.databaseUrl, { sites: 700, appsPerSite: 2 });
});
afterAll(async () => {
  await t?.close();
});

const spec = { targetType: 'app', reason: 'Remove the legacy app', ticket: 'CHG-24' };
/** A requester token of its own, so each test starts with no usage of its own. */
async function requester(): Promise<{ name: string; auth: string }> {
  const name = `team-${++n}`;
  const r = await request(t.app.server)
    .post('/v1/admin/tokens')
    .set('authorization', t.auth('admin'))
    .send({ name, role: 'requester' })
    .expect(201);
  return { name, auth: `Bearer ${r.body.token}` };
}
const submit = (auth: string, ids: string[], extra: object = {}) =>
  request(t.app.server)
    .post('/v1/operations')
    .set('authorization', auth)
    .send({ ...spec, ids, ...extra });
/** App `app` of sites [from, from + count). */
const apps = (from: number, count: number, app = 0) => Array.from({ length: count }, (_, i) => appId(from + i, app));
const setPolicy = (rollingBudgets: object) =>
  request(t.app.server)
    .put('/v1/admin/policy')
    .set('authorization', t.auth('admin'))
    .send({ budgets: { maxTenants: 50, maxItems: 100_000 }, rollingBudgets })
    .expect(200);
const DEFAULT_ROLLING = {
  perRequester: { maxTenants: 50, maxItems: 100_000 },
  total: { maxTenants: 200, maxItems: 400_000 },
};

describe('rolling 24 h budgets', () => {
  it('are part of the policy, with documented defaults', async () => {
    const r = await request(t.app.server).get('/v1/admin/policy').set('authorization', t.auth('viewer')).expect(200);
    expect(r.body.rollingBudgets).toEqual({ windowHours: 24, ...DEFAULT_ROLLING });
  });

  it('ten operations of 49 tenants need the same break-glass as one of 490', async () => {
    await setPolicy({ ...DEFAULT_ROLLING, total: { maxTenants: 1_000_000, maxItems: 100_000_000 } });
    const me = await requester();
    const one = await submit(me.auth, apps(0, 490), { dryRun: true }).expect(200);
    expect(one.body.plan.requiresBreakGlass).toBe(true);
    const verdicts: boolean[] = [];
    let last: { budgets: { breaches: string[]; rolling: unknown }; breakGlassReasons: string[] } | undefined;
    for (let k = 0; k < 10; k++) {
      const r = await submit(me.auth, apps(k * 49, 49)).expect(201);
      verdicts.push(r.body.plan.requiresBreakGlass as boolean);
      last = r.body.plan;
    }
    expect(verdicts).toEqual([false, true, true, true, true, true, true, true, true, true]);
    const reason = `rolling 24 h budget of requester "${me.name}": 490 tenants (441 in 9 other operation(s) in the last 24 h) exceeds 50`;
    expect(last!.budgets.breaches).toContain(reason);
    expect(last!.breakGlassReasons).toContain(reason);
    expect(last!.budgets.rolling).toMatchObject({
      windowHours: 24,
      requester: {
        operations: 9,
        tenants: { before: 441, withPlan: 490, max: 50 },
        items: { before: 441, withPlan: 490 },
      },
    });
    // Every one of them needs two approvals, one by an admin: an approver alone is not enough.
    const ops = await query<{ requires_break_glass: boolean }>(
      t.databaseUrl,
      `SELECT requires_break_glass FROM operations WHERE requested_by_name = $1 ORDER BY created_at`,
      [me.name],
    );
    expect(ops.map((o) => o.requires_break_glass)).toEqual(verdicts);
  });

  it('counts a tenant once however many operations touch it, and items as planned', async () => {
    await setPolicy({
      perRequester: { maxTenants: 50, maxItems: 50 },
      total: { maxTenants: 1_000_000, maxItems: 100_000_000 },
    });
    const me = await requester();
    await submit(me.auth, apps(500, 30, 0)).expect(201);
    const second = await submit(me.auth, apps(500, 30, 1)).expect(201);
    expect(second.body.plan.budgets.rolling.requester).toMatchObject({
      operations: 1,
      tenants: { before: 30, withPlan: 30 },
      items: { before: 30, withPlan: 60, max: 50 },
    });
    expect(second.body.plan.budgets.breaches).toEqual([
      `rolling 24 h budget of requester "${me.name}": 60 items (30 in 1 other operation(s) in the last 24 h) exceeds 50`,
    ]);
  });

  it('does not count rejected, cancelled or expired operations, nor ones that ended more than 24 h ago', async () => {
    await setPolicy({
      perRequester: { maxTenants: 10, maxItems: 100_000 },
      total: { maxTenants: 1_000_000, maxItems: 100_000_000 },
    });
    const me = await requester();
    const cancelled = await submit(me.auth, apps(540, 8)).expect(201);
    await request(t.app.server)
      .post(`/v1/operations/${cancelled.body.id}/abort`)
      .set('authorization', t.auth('operator'))
      .send({ reason: 'not needed' })
      .expect(200);
    const expired = await submit(me.auth, apps(550, 8)).expect(201);
    await query(t.databaseUrl, `UPDATE operations SET state = 'expired', finished_at = now() WHERE id = $1`, [
      expired.body.id,
    ]);
    await submit(me.auth, [...apps(560, 8), 'app_99999_01']).expect(422);
    const ended = await submit(me.auth, apps(570, 8)).expect(201);
    await query(
      t.databaseUrl,
      `UPDATE operations SET state = 'completed', finished_at = now() - interval '25 hours' WHERE id = $1`,
      [ended.body.id],
    );
    const r = await submit(me.auth, apps(580, 8), { dryRun: true }).expect(200);
    expect(r.body.plan.budgets.rolling.requester).toMatchObject({ operations: 0, tenants: { before: 0, withPlan: 8 } });
    expect(r.body.plan.requiresBreakGlass).toBe(false);
    // A plan made long ago that is still live counts, however old: it may still delete.
    await query(t.databaseUrl, `UPDATE operations SET created_at = now() - interval '30 days' WHERE id = $1`, [
      ended.body.id,
    ]);
    await query(t.databaseUrl, `UPDATE operations SET state = 'running', finished_at = NULL WHERE id = $1`, [
      ended.body.id,
    ]);
    const again = await submit(me.auth, apps(580, 8), { dryRun: true }).expect(200);
    expect(again.body.plan.budgets.rolling.requester).toMatchObject({ operations: 1, tenants: { withPlan: 16 } });
    expect(again.body.plan.budgets.breaches[0]).toMatch(/^rolling 24 h budget of requester "team-\d+": 16 tenants/);
  });

  it('holds in total across requesters', async () => {
    const a = await requester();
    const b = await requester();
    const probe = await submit(a.auth, apps(600, 1), { dryRun: true }).expect(200);
    const before = probe.body.plan.budgets.rolling.total.tenants.before as number;
    await setPolicy({ ...DEFAULT_ROLLING, total: { maxTenants: before + 30, maxItems: 100_000_000 } });
    expect((await submit(a.auth, apps(600, 20)).expect(201)).body.plan.requiresBreakGlass).toBe(false);
    const r = await submit(b.auth, apps(620, 20)).expect(201);
    expect(r.body.plan.requiresBreakGlass).toBe(true);
    expect(r.body.plan.budgets.breaches).toEqual([
      expect.stringMatching(
        new RegExp(
          `^rolling 24 h budget of everyone: ${before + 40} tenants \\(${before + 20} in \\d+ other operation\\(s\\) in the last 24 h\\) exceeds ${before + 30}$`,
        ),
      ),
    ]);
    expect(r.body.plan.budgets.rolling.requester).toMatchObject({ operations: 0, tenants: { withPlan: 20 } });
  });

  it('concurrent submissions by one requester cannot all slip under the budget', async () => {
    await setPolicy({
      perRequester: { maxTenants: 50, maxItems: 100_000 },
      total: { maxTenants: 1_000_000, maxItems: 100_000_000 },
    });
    const me = await requester();
    const res = await Promise.all([0, 1, 2, 3].map((k) => submit(me.auth, apps(640 + k * 15, 15, 1))));
    expect(res.map((r) => r.status)).toEqual([201, 201, 201, 201]);
    // 15, 30, 45 tenants fit; the fourth (60) does not, whichever order they committed in.
    expect(res.filter((r) => r.body.plan.requiresBreakGlass)).toHaveLength(1);
  });

  it('refuses a rolling budget of zero, naming the field', async () => {
    const r = await request(t.app.server)
      .put('/v1/admin/policy')
      .set('authorization', t.auth('admin'))
      .send({
        budgets: { maxTenants: 50, maxItems: 100 },
        rollingBudgets: { ...DEFAULT_ROLLING, total: { maxTenants: 0, maxItems: 1 } },
      })
      .expect(400);
    expect(r.body).toMatchObject({ code: 'VALIDATION_FAILED' });
    expect(JSON.stringify(r.body.details)).toContain('rollingBudgets.total.maxTenants');
  });
});
