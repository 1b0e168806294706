// GET /v1/registry/tenants and GET /v1/registry/resources: filtered, validated, keyset-paged lists.
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { appId, query, seedRegistry, siteId, tenantId } from '../support/seed.ts';

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp();
  // 30 tenants, each with one site holding 3 apps; the first 2 tenants internal, tenant 5 protected.
  await seedRegistry(t.databaseUrl, {
    sites: 30,
    appsPerSite: 3,
    internalTenants: 2,
    protectedTenants: [tenantId(5)],
  });
  await query(t.databaseUrl, `UPDATE resources SET state = 'soft_deleted', deleted_at = now() WHERE id = ANY($1)`, [
    [appId(1, 0), appId(2, 1)],
  ]);
  await query(t.databaseUrl, `UPDATE resources SET state = 'purged', deleted_at = now() WHERE id = $1`, [appId(3, 2)]);
});
afterAll(async () => {
  await t?.close();
});

const get = (url: string) => request(t.app.server).get(url).set('authorization', t.auth('viewer'));
const ids = (body: { items: { id: string }[] }) => body.items.map((x) => x.id);

/** Every page from `url` on, following links.next (bounded). */
async function walk(url: string, maxPages = 50) {
  const all: string[] = [];
  let next: string | null = url;
  let pages = 0;
  while (next && pages < maxPages) {
    const r: request.Response = await get(next).expect(200);
    all.push(...ids(r.body));
    next = r.body.links.next;
    pages++;
  }
  return { all, pages };
}

describe('GET /v1/registry/tenants', () => {
  it('pages every tenant once, in ID order, following links.next', async () => {
    const { all, pages } = await walk('/v1/registry/tenants?limit=7');
    expect(all).toEqual(Array.from({ length: 30 }, (_, i) => tenantId(i)));
    expect(pages).toBe(5);
    const first = await get('/v1/registry/tenants?limit=2').expect(200);
    expect(first.body).toMatchObject({
      items: [
        { id: tenantId(0), internal: true, protected: false, links: { self: `/v1/registry/tenants/${tenantId(0)}` } },
        { id: tenantId(1) },
      ],
      nextCursor: tenantId(1),
      links: { next: `/v1/registry/tenants?limit=2&after=${tenantId(1)}` },
    });
    expect(first.body.items[0]).not.toHaveProperty('contact');
    // A last page that is exactly full offers no next page (it led to an empty one).
    const last = await get(`/v1/registry/tenants?limit=10&after=${tenantId(19)}`).expect(200);
    expect(last.body.items.map((x: { id: string }) => x.id)).toEqual(
      Array.from({ length: 10 }, (_, i) => tenantId(20 + i)),
    );
    expect(last.body).toMatchObject({ nextCursor: null, links: { next: null } });
  });

  it('filters by internal, protected and ID prefix, and keeps the filters across pages', async () => {
    expect(ids((await get('/v1/registry/tenants?internal=true').expect(200)).body)).toEqual([tenantId(0), tenantId(1)]);
    expect(ids((await get('/v1/registry/tenants?protected=true').expect(200)).body)).toEqual([tenantId(5)]);
    const customers = await walk('/v1/registry/tenants?internal=false&protected=false&limit=10');
    expect(customers.all).toHaveLength(27);
    expect(customers.all).not.toContain(tenantId(5));
    const prefixed = await walk('/v1/registry/tenants?idPrefix=tenant_0001&limit=4');
    expect(prefixed.all).toEqual(Array.from({ length: 10 }, (_, i) => tenantId(10 + i)));
    // A prefix is not a pattern: % and _ match themselves.
    expect(ids((await get('/v1/registry/tenants?idPrefix=tenant%25').expect(200)).body)).toEqual([]);
  });

  it('refuses bad parameters with a 400 naming them', async () => {
    const r = await get('/v1/registry/tenants?internal=maybe').expect(400);
    expect(r.body).toMatchObject({ code: 'VALIDATION_FAILED' });
    expect(r.body.details[0].field).toBe('querystring.internal');
    await get('/v1/registry/tenants?limit=1001').expect(400);
    await get('/v1/registry/tenants?limit=0').expect(400);
    const unknown = await get('/v1/registry/tenants?interal=true').expect(400);
    expect(unknown.body.details[0]).toMatchObject({ unknownField: 'interal', didYouMean: 'internal' });
  });
});

describe('GET /v1/registry/resources', () => {
  it('filters by type, tenant, parent and several states (repeated or comma-separated)', async () => {
    const apps = await walk('/v1/registry/resources?type=app&limit=25');
    expect(apps.all).toHaveLength(90);
    expect(apps.all).toEqual([...apps.all].sort());
    expect(apps.pages).toBe(4);
    const both = await walk('/v1/registry/resources?type=app,site&limit=40');
    expect(both.all).toHaveLength(120);
    expect(ids((await get(`/v1/registry/resources?tenantId=${tenantId(3)}`).expect(200)).body)).toEqual([
      appId(3, 0),
      appId(3, 1),
      appId(3, 2),
      siteId(3),
    ]);
    expect(ids((await get(`/v1/registry/resources?parentId=${siteId(2)}`).expect(200)).body)).toEqual([
      appId(2, 0),
      appId(2, 1),
      appId(2, 2),
    ]);
    const gone = [appId(1, 0), appId(2, 1), appId(3, 2)];
    expect(ids((await get('/v1/registry/resources?state=soft_deleted&state=purged').expect(200)).body)).toEqual(gone);
    expect(ids((await get('/v1/registry/resources?state=soft_deleted,purged').expect(200)).body)).toEqual(gone);
    const r = await get(`/v1/registry/resources?state=purged&tenantId=${tenantId(3)}`).expect(200);
    expect(r.body.items).toEqual([
      expect.objectContaining({
        id: appId(3, 2),
        type: 'app',
        tenantId: tenantId(3),
        parentId: siteId(3),
        state: 'purged',
      }),
    ]);
  });

  it('keeps every filter in links.next', async () => {
    const r = await get('/v1/registry/resources?type=app&state=active,soft_deleted&limit=2').expect(200);
    const next = new URL(r.body.links.next, 'http://x');
    expect(next.pathname).toBe('/v1/registry/resources');
    expect(next.searchParams.getAll('state')).toEqual(['active', 'soft_deleted']);
    expect(next.searchParams.getAll('type')).toEqual(['app']);
    expect(next.searchParams.get('after')).toBe(r.body.nextCursor);
  });

  it('an unknown state or an undeclared type is a 400 naming the parameter and what it allows', async () => {
    const state = await get('/v1/registry/resources?state=active,deleted').expect(400);
    expect(state.body.code).toBe('VALIDATION_FAILED');
    expect(state.body.details[0].field).toBe('querystring.state');
    expect(state.body.details[0].allowed).toEqual(['active', 'soft_deleted', 'purged']);
    const type = await get('/v1/registry/resources?type=apps').expect(400);
    expect(type.body).toMatchObject({
      code: 'VALIDATION_FAILED',
      details: [{ field: 'querystring.type', unknown: ['apps'], allowed: ['app', 'site'] }],
    });
    await get('/v1/registry/resources?type=App').expect(400);
    await get('/v1/registry/resources?limit=5000').expect(400);
  });
});
