// `start` of a cascade delete re-checks its plan against the registry (plan-stale.ts) inside the
// transaction that holds the operation's row. PostgreSQL cannot know how many ledger rows a new
// operation has (its ID is in no statistics, and older large operations fill them): it guessed 4,
// chose nested loops over the ledger, and the start of one site with 5,000 apps ran for minutes,
// past the request timeout, while an abort of the same operation waited behind it (a trial). The
// checks read a copy of the ledger with statistics: whatever the statistics say of the others,
// the start answers, and commands on the operation are not held up.
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { query, seedRegistry } from '../support/seed.ts';

const APPS = 5_000;
let t: TestApp;
const bigApp = (site: number, k: number) => `app_${String(site).padStart(5, '0')}_9${String(k).padStart(5, '0')}`;
beforeAll(async () => {
  t = await buildTestApp();
  await seedRegistry(t.databaseUrl, { sites: 10, appsPerSite: 2 });
  await query(
    t.databaseUrl,
    `INSERT INTO resources (id, type, tenant_id, parent_id)
     SELECT 'app_' || lpad(s::text, 5, '0') || '_9' || lpad(k::text, 5, '0'), 'app', 'tenant_' || lpad(s::text, 5, '0'),
            'site_' || lpad(s::text, 5, '0')
     FROM generate_series(0, 6) s, generate_series(0, $1 - 1) k`,
    [APPS],
  );
});
afterAll(async () => {
  await t?.close();
});

const submit = (body: Record<string, unknown>) =>
  request(t.app.server)
    .post('/v1/operations')
    .set('authorization', t.auth('requester'))
    .send({ reason: 'Decommission', ticket: 'CHG-77', ...body });
const command = (role: 'approver' | 'operator', id: string, path: string, body: Record<string, unknown> = {}) =>
  request(t.app.server).post(`/v1/operations/${id}/${path}`).set('authorization', t.auth(role)).send(body);

describe('start of a cascade delete next to large operations', () => {
  it('answers, and the plan is still checked (a new app under the site makes it stale)', async () => {
    // Two large operations fill the ledger's statistics.
    for (const sites of [
      [1, 2, 3],
      [4, 5, 6],
    ])
      await submit({
        targetType: 'app',
        ids: sites.flatMap((s) => Array.from({ length: APPS }, (_, k) => bigApp(s, k))),
      }).expect(201);
    await query(t.databaseUrl, 'ANALYZE');

    const stale = await submit({ targetType: 'site', ids: ['site_00000'] }).expect(201);
    expect(stale.body.itemCount).toBe(1 + 2 + APPS);
    await command('approver', stale.body.id, 'approve', { planHash: stale.body.planHash }).expect(200);
    await query(
      t.databaseUrl,
      `INSERT INTO resources (id, type, tenant_id, parent_id) VALUES ('app_00000_7', 'app', 'tenant_00000', 'site_00000')`,
    );
    const refused = await command('operator', stale.body.id, 'start').expect(409);
    expect(refused.body).toMatchObject({ code: 'PLAN_STALE', details: { total: 1 } });
    expect(refused.body.message).toContain('app_00000_7');
    await command('operator', stale.body.id, 'abort', { reason: 'stale' }).expect(200);
    await query(t.databaseUrl, `DELETE FROM resources WHERE id = 'app_00000_7'`);

    const op = await submit({ targetType: 'site', ids: ['site_00000'] }).expect(201);
    await command('approver', op.body.id, 'approve', { planHash: op.body.planHash }).expect(200);
    const started = await command('operator', op.body.id, 'start');
    expect(started.status, JSON.stringify(started.body)).toBe(200);
    expect(started.body.state).toBe('running');
  }, 120_000);
});
