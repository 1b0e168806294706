import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import request from 'supertest';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { FIXTURE_TYPES, ndjson, resourcesFor, tenantsFor } from '../support/registry-fixtures.ts';

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp();
  await request(t.app.server)
    .put('/v1/registry/types')
    .set('authorization', t.auth('admin'))
    .send({ types: FIXTURE_TYPES })
    .expect(200);
});
afterAll(async () => {
  await t?.close();
});

const post = (body: unknown, role: 'admin' | 'viewer' | 'requester' = 'admin') =>
  request(t.app.server)
    .post('/v1/registry/tenants')
    .set('authorization', t.auth(role))
    .send(body as object);
const tenantRows = async () =>
  (await t.app.db.pool.query('SELECT id, name, internal, protected FROM tenants ORDER BY id')).rows;

describe('POST /v1/registry/tenants', () => {
  it('inserts, then reports unchanged and updated rows on a second upsert', async () => {
    const first = await post({ tenants: tenantsFor(3, { internal: 1, protectedIds: [2], contact: true }) }).expect(200);
    expect(first.body).toEqual({ received: 3, inserted: 3, updated: 0, unchanged: 0, contactsChanged: 3 });
    expect(await tenantRows()).toEqual([
      { id: 'tn_0', name: 'Tenant 0', internal: true, protected: false },
      { id: 'tn_1', name: 'Tenant 1', internal: false, protected: false },
      { id: 'tn_2', name: 'Tenant 2', internal: false, protected: true },
    ]);

    const again = await post({ tenants: tenantsFor(3, { internal: 1, protectedIds: [2], contact: true }) }).expect(200);
    expect(again.body).toEqual({ received: 3, inserted: 0, updated: 0, unchanged: 3, contactsChanged: 0 });

    const renamed = await post({
      tenants: [
        { id: 'tn_1', name: 'Renamed' },
        { id: 'tn_9', name: 'New' },
      ],
    }).expect(200);
    expect(renamed.body).toEqual({ received: 2, inserted: 1, updated: 1, unchanged: 0, contactsChanged: 0 });
  });

  it('keeps stored flags and contacts when a later upsert omits them', async () => {
    await post({ tenants: [{ id: 'tn_2', name: 'Tenant 2' }] }).expect(200);
    const row = await t.app.db.pool.query('SELECT protected FROM tenants WHERE id = $1', ['tn_2']);
    expect(row.rows[0].protected).toBe(true);
    const c = await t.app.db.pool.query('SELECT contact FROM tenant_contacts WHERE tenant_id = $1', ['tn_2']);
    expect(c.rows[0].contact).toEqual({ email: 'ops+2@example.test' });
    await post({ tenants: [{ id: 'tn_2', name: 'Tenant 2', protected: false }] }).expect(200);
    expect((await t.app.db.pool.query('SELECT protected FROM tenants WHERE id = $1', ['tn_2'])).rows[0].protected).toBe(
      false,
    );
  });

  it('records in the audit log which tenants an upsert protected or unprotected', async () => {
    const last = async () =>
      (
        await t.app.db.pool.query(
          `SELECT payload FROM audit_events WHERE action = 'registry.tenants.upsert' ORDER BY seq DESC LIMIT 1`,
        )
      ).rows[0].payload as Record<string, unknown>;
    await post({
      tenants: [
        { id: 'tn_1', name: 'Renamed', protected: true },
        { id: 'tn_2', name: 'Tenant 2', protected: false },
        { id: 'tn_9', name: 'New', protected: true },
      ],
    }).expect(200);
    expect((await last()).protection).toEqual({ count: 2, protected: ['tn_1', 'tn_9'], unprotected: [] });
    await post({ tenants: [{ id: 'tn_9', name: 'New', protected: false }] }).expect(200);
    await post({ tenants: [{ id: 'tn_1', name: 'Renamed', protected: false }] }).expect(200);
    expect((await last()).protection).toEqual({ count: 1, protected: [], unprotected: ['tn_1'] });
    await post({ tenants: [{ id: 'tn_1', name: 'Renamed' }] }).expect(200);
    expect(await last()).not.toHaveProperty('protection');
  });

  it('upserts 20,000 tenants in one request', async () => {
    const r = await post({ tenants: tenantsFor(20_000) }).expect(200);
    // tn_0, tn_1, tn_2 and tn_9 exist: tn_0 loses `internal`, tn_1 and tn_9 get their names back.
    expect(r.body).toEqual({ received: 20_000, inserted: 19_996, updated: 3, unchanged: 1, contactsChanged: 0 });
    const n = await t.app.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM tenants');
    expect(n.rows[0]!.n).toBe(20_000);
  });

  it('refuses a tenant ID given twice, writing nothing', async () => {
    const before = await tenantRows();
    const r = await post({
      tenants: [
        { id: 'tn_dup', name: 'a' },
        { id: 'tn_x', name: 'x' },
        { id: 'tn_dup', name: 'b' },
      ],
    }).expect(422);
    expect(r.body.code).toBe('DUPLICATE_TENANT_ID');
    expect(r.body.details).toEqual([{ field: 'tenants[2].id', id: 'tn_dup', firstIndex: 0 }]);
    expect(await tenantRows()).toEqual(before);
  });

  it('validates the body: unknown field, missing name, wrong types, empty list', async () => {
    const unknown = await post({ tenants: [{ id: 'tn_a', name: 'A', tier: 'gold' }] }).expect(400);
    expect(unknown.body).toMatchObject({ code: 'VALIDATION_FAILED', message: expect.stringContaining('"tier"') });
    await post({ tenants: [{ id: 'tn_a' }] }).expect(400);
    await post({ tenants: [{ id: 'tn_a', name: 'A', internal: 'yes' }] }).expect(400);
    await post({ tenants: [] }).expect(400);
    const nul = await post({ tenants: [{ id: 'tn_a', name: 'A\u0000' }] }).expect(400);
    expect(nul.body.code).toBe('VALIDATION_FAILED');
  });

  it('answers 415 for NDJSON and 401/403 without a token or the admin role', async () => {
    const r = await request(t.app.server)
      .post('/v1/registry/tenants')
      .set('authorization', t.auth('admin'))
      .set('content-type', 'application/x-ndjson')
      .send('{"id":"tn_a","name":"A"}\n')
      .expect(415);
    expect(r.body.code).toBe('UNSUPPORTED_MEDIA_TYPE');
    await request(t.app.server)
      .post('/v1/registry/tenants')
      .send({ tenants: [{ id: 'tn_a', name: 'A' }] })
      .expect(401);
    await post({ tenants: [{ id: 'tn_a', name: 'A' }] }, 'requester').expect(403);
    expect((await t.app.db.pool.query('SELECT 1 FROM tenants WHERE id = $1', ['tn_a'])).rowCount).toBe(0);
  });
});

describe('GET /v1/registry/tenants/{id}', () => {
  it('returns flags and resource counts by type and state, never the contact', async () => {
    await request(t.app.server)
      .post('/v1/registry/resources')
      .set('authorization', t.auth('admin'))
      .set('content-type', 'application/x-ndjson')
      .send(ndjson(resourcesFor({ tenants: 1, sitesPerTenant: 2, appsPerSite: 3 })))
      .expect(200);
    await request(t.app.server)
      .post('/v1/registry/resources')
      .set('authorization', t.auth('admin'))
      .send({
        resources: [{ id: 'app_t0s0a0', type: 'app', tenantId: 'tn_0', parentId: 'site_t0s0', state: 'soft_deleted' }],
      })
      .expect(200);
    const r = await request(t.app.server)
      .get('/v1/registry/tenants/tn_0')
      .set('authorization', t.auth('viewer'))
      .expect(200);
    expect(r.body).toMatchObject({ id: 'tn_0', name: 'Tenant 0', internal: false, protected: false, resourceTotal: 8 });
    expect(r.body.resourceCounts).toEqual([
      { type: 'app', state: 'active', count: 5 },
      { type: 'app', state: 'soft_deleted', count: 1 },
      { type: 'site', state: 'active', count: 2 },
    ]);
    expect(JSON.stringify(r.body)).not.toContain('example.test');
    expect(r.body).not.toHaveProperty('contact');
  });

  it('answers 404 for an unknown tenant and 401 without a token', async () => {
    const r = await request(t.app.server)
      .get('/v1/registry/tenants/tn_nope')
      .set('authorization', t.auth('viewer'))
      .expect(404);
    expect(r.body.code).toBe('NOT_FOUND');
    await request(t.app.server).get('/v1/registry/tenants/tn_0').expect(401);
  });
});
