// Token scope: a team's CI token may only delete `app` resources of the tenants it names. Every ID
// outside the scope rejects the plan as out_of_scope, with counts, offenders and the scope named.
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { appId, seedRegistry, siteId, tenantId } from '../support/seed.ts';

let t: TestApp;
let teamA: string;
let appsOnly: string;
beforeAll(async () => {
  t = await buildTestApp();
  await seedRegistry(t.databaseUrl, { sites: 10, appsPerSite: 5 });
  const mint = async (name: string, scope: object) =>
    (
      await request(t.app.server)
        .post('/v1/admin/tokens')
        .set('authorization', t.auth('admin'))
        .send({ name, role: 'requester', scope })
        .expect(201)
    ).body.token as string;
  teamA = await mint('team-a-ci', { resourceTypes: ['app'], tenants: [tenantId(1), tenantId(2)] });
  appsOnly = await mint('apps-only', { resourceTypes: ['app'] });
});
afterAll(async () => {
  await t?.close();
});

const spec = { targetType: 'app', reason: 'Remove the legacy app', ticket: 'CHG-9' };
const submit = (token: string, body: object) =>
  request(t.app.server).post('/v1/operations').set('authorization', `Bearer ${token}`).send(body);

describe('token scope at planning', () => {
  it('plans IDs inside the scope', async () => {
    const r = await submit(teamA, { ...spec, ids: [appId(1, 0), appId(2, 0)], dryRun: true }).expect(200);
    expect(r.body.plan).toMatchObject({ itemCount: 2, tenantCount: 2 });
  });

  it('rejects IDs of other tenants as out_of_scope: counts, offenders, the scope named, and the full report', async () => {
    const ids = [appId(1, 0), appId(3, 0), appId(1, 1), appId(4, 2)];
    const r = await submit(teamA, { ...spec, ids }).expect(422);
    expect(r.body.code).toBe('PLAN_REJECTED');
    expect(r.body.message).toBe(
      `The operation was rejected: 2 IDs outside the token's scope (out_of_scope). Token "team-a-ci" may submit only resources of type app, ` +
        'of tenants tenant_00001, tenant_00002. Nothing will run; every offending ID is listed at ' +
        `/v1/operations/${r.body.details.operationId}/report. Resubmit a corrected list (with a new Idempotency-Key).`,
    );
    expect(r.body.details.counts).toMatchObject({ ok: 2, out_of_scope: 2 });
    expect(r.body.details.offenders.out_of_scope).toEqual([
      { index: 1, id: appId(3, 0), actualType: 'app', tenantId: tenantId(3) },
      { index: 3, id: appId(4, 2), actualType: 'app', tenantId: tenantId(4) },
    ]);
    expect(r.body.details.scope).toEqual({
      token: 'team-a-ci',
      resourceTypes: ['app'],
      tenants: [tenantId(1), tenantId(2)],
      tenantCount: 2,
    });
    const report = await request(t.app.server)
      .get(`/v1/operations/${r.body.details.operationId}/report?class=out_of_scope`)
      .set('authorization', t.auth('viewer'))
      .expect(200);
    expect(report.body.items.map((i: { id: string; class: string }) => [i.id, i.class])).toEqual([
      [appId(3, 0), 'out_of_scope'],
      [appId(4, 2), 'out_of_scope'],
    ]);
    // The stored rejection keeps the scope it was judged against.
    const op = await request(t.app.server)
      .get(`/v1/operations/${r.body.details.operationId}`)
      .set('authorization', t.auth('viewer'))
      .expect(200);
    expect(op.body.rejection.scope).toMatchObject({ token: 'team-a-ci', tenants: [tenantId(1), tenantId(2)] });
  });

  it('rejects a target type outside the scope: every ID out_of_scope, also on a dry run', async () => {
    const r = await submit(appsOnly, { ...spec, targetType: 'site', ids: [siteId(1), siteId(2)], dryRun: true }).expect(
      422,
    );
    expect(r.body.details.counts).toMatchObject({ ok: 0, out_of_scope: 2 });
    expect(r.body.message).toContain('Token "apps-only" may submit only resources of type app.');
    expect(r.body.details).toMatchObject({ operationId: null, scope: { token: 'apps-only', tenants: null } });
  });

  it('keeps the other classes first: a site ID in an app plan is type_mismatch, an unknown ID unknown', async () => {
    const r = await submit(teamA, { ...spec, ids: [siteId(1), 'app_99999_01', appId(5, 0)] }).expect(422);
    expect(r.body.details.counts).toMatchObject({ type_mismatch: 1, unknown: 1, out_of_scope: 1 });
  });

  it('leaves unscoped tokens alone', async () => {
    await request(t.app.server)
      .post('/v1/operations')
      .set('authorization', t.auth('requester'))
      .send({ ...spec, ids: [appId(6, 0), appId(7, 0)], dryRun: true })
      .expect(200);
  });
});
