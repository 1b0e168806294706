// Every `cursor` query parameter takes only what the list gave as nextCursor: anything else is a
// 400 INVALID_CURSOR naming querystring.cursor, never a first page or an empty page that a client
// would read as "that was everything". The cursors the API gives keep paging.
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_EXAMPLES, type ErrorExample } from '../../src/lib/error-examples.ts';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { changedTables, fingerprint } from '../support/fingerprint.ts';
import { appId, seedRegistry, tenantId } from '../support/seed.ts';

let t: TestApp;
let planned: string;
let rejected: string;
const spec = { targetType: 'app', reason: 'Remove the legacy app', ticket: 'CHG-1' };

beforeAll(async () => {
  t = await buildTestApp();
  await seedRegistry(t.databaseUrl, { sites: 5, appsPerSite: 2 });
  const submit = (ids: string[]) =>
    request(t.app.server)
      .post('/v1/operations')
      .set('authorization', t.auth('requester'))
      .send({ ...spec, ids });
  // Three tenants, two apps each: six ledger items.
  const ok = await submit([0, 1, 2].flatMap((s) => [appId(s, 0), appId(s, 1)]));
  expect(ok.status, JSON.stringify(ok.body)).toBe(201);
  planned = ok.body.id;
  const bad = await submit([appId(3, 0), 'app_nope_1', 'app_nope_2', 'app_nope_3']);
  expect(bad.status, JSON.stringify(bad.body)).toBe(422);
  rejected = bad.body.details.operationId;
});
afterAll(async () => {
  await t?.close();
});

const get = (path: string) => request(t.app.server).get(path).set('authorization', t.auth('viewer'));

/** A refused cursor: 400 INVALID_CURSOR naming the parameter, and nothing changed. */
async function refused(path: string, example?: ErrorExample) {
  const before = await fingerprint(t.app.db.pool);
  const res = await get(path);
  expect(res.status, `${path}: ${JSON.stringify(res.body)}`).toBe(400);
  expect(res.body.code).toBe('INVALID_CURSOR');
  expect(res.body.details).toEqual([expect.objectContaining({ field: 'querystring.cursor' })]);
  expect(res.body.message).toContain('nextCursor');
  expect(changedTables(before, await fingerprint(t.app.db.pool))).toEqual([]);
  // The OpenAPI document's example of the route is what the server says.
  if (example) expect({ ...res.body, requestId: undefined }).toEqual({ ...example, requestId: undefined });
}

describe('GET /v1/operations', () => {
  it('refuses what is not an operation ID it listed', async () => {
    await refused('/v1/operations?cursor=zzzz', ERROR_EXAMPLES.invalidCursor);
    // Base64 of {"id":10}: what a client might try from another API.
    await refused('/v1/operations?cursor=eyJpZCI6MTB9');
    await refused('/v1/operations?cursor=op_zzzzzzzzzzzzzzzzz');
    await refused(`/v1/operations?cursor=${tenantId(0)}&state=planned`);
  });

  it('pages with the cursors it gives', async () => {
    const first = await get('/v1/operations?limit=1').expect(200);
    expect(first.body.items.map((o: { id: string }) => o.id)).toEqual([rejected]);
    const second = await get(first.body.links.next).expect(200);
    expect(second.body.items.map((o: { id: string }) => o.id)).toEqual([planned]);
    // The last page, exactly full: no next page is offered; past it, an empty page.
    expect(second.body).toMatchObject({ nextCursor: null, links: { next: null } });
    const third = await get(`/v1/operations?limit=1&cursor=${planned}`).expect(200);
    expect(third.body).toMatchObject({ items: [], nextCursor: null });
  });
});

describe('GET /v1/operations/{id}/tenants', () => {
  it("refuses what is not one of the operation's tenants", async () => {
    await refused(`/v1/operations/${planned}/tenants?cursor=tn_nope`, ERROR_EXAMPLES.invalidTenantCursor);
    await refused(`/v1/operations/${planned}/tenants?cursor=abc`);
    // A tenant of the registry, but not of this operation.
    await refused(`/v1/operations/${planned}/tenants?cursor=${tenantId(4)}`);
    // The operation is unknown: that is what the answer says.
    await get('/v1/operations/op_nothing/tenants?cursor=abc').expect(404);
  });

  it('pages with the cursors it gives', async () => {
    const first = await get(`/v1/operations/${planned}/tenants?limit=2`).expect(200);
    expect(first.body.nextCursor).toBe(tenantId(1));
    const second = await get(`/v1/operations/${planned}/tenants?limit=2&cursor=${first.body.nextCursor}`).expect(200);
    expect(second.body.items.map((r: { tenantId: string }) => r.tenantId)).toEqual([tenantId(2)]);
    // An exactly full last page offers no next page (it led to an empty one).
    const all = await get(`/v1/operations/${planned}/tenants?limit=3`).expect(200);
    expect(all.body.items).toHaveLength(3);
    expect(all.body).toMatchObject({ nextCursor: null, links: { next: null } });
  });
});

describe('GET /v1/operations/{id}/items', () => {
  it('refuses a position the ledger does not have', async () => {
    await refused(`/v1/operations/${planned}/items?cursor=999`, ERROR_EXAMPLES.invalidItemCursor);
    await refused(`/v1/operations/${planned}/items?cursor=6`);
    // The cursor of another operation's ledger.
    await refused(`/v1/operations/${rejected}/items?cursor=0`);
    // Not a cursor the list gives (a decimal seq) at all: the same refusal, as README promises for
    // `cursor=zzzz`. `0x5` and `1e0` were read as the numbers 5 and 1 and paged from there.
    for (const cursor of ['abc', 'zzzz', '-1', '0x5', '1e0', '05', '1.0', '99999999999']) {
      const r = await get(`/v1/operations/${planned}/items?cursor=${cursor}`).expect(400);
      expect(r.body, cursor).toMatchObject({ code: 'INVALID_CURSOR', details: [{ field: 'querystring.cursor' }] });
    }
  });

  it('refuses a wave the operation does not have (not an empty page), and nothing changes', async () => {
    const view = await get(`/v1/operations/${planned}`).expect(200);
    const waves = (view.body.plan.waves as unknown[]).length;
    expect(waves).toBeGreaterThan(0);
    const last = await get(`/v1/operations/${planned}/items?wave=${waves - 1}`).expect(200);
    expect(last.body.items.length).toBeGreaterThan(0);
    for (const [op, wave, has] of [
      [planned, waves, `waves are 0 to ${waves - 1}`],
      [planned, 99, `waves are 0 to ${waves - 1}`],
      [rejected, 0, 'has no waves'],
    ] as const) {
      const before = await fingerprint(t.app.db.pool);
      const r = await get(`/v1/operations/${op}/items?wave=${wave}`).expect(400);
      expect(r.body).toMatchObject({
        code: 'VALIDATION_FAILED',
        details: [{ field: 'querystring.wave', value: wave }],
      });
      expect(r.body.message).toContain(has);
      expect(changedTables(before, await fingerprint(t.app.db.pool))).toEqual([]);
    }
  });

  it('pages with the cursors it gives', async () => {
    const first = await get(`/v1/operations/${planned}/items?limit=4`).expect(200);
    expect(first.body.items).toHaveLength(4);
    // links.next is the next page with the same filters, as the other lists give it.
    expect(first.body.links).toEqual({
      next: `/v1/operations/${planned}/items?limit=4&cursor=${first.body.nextCursor}`,
    });
    const second = await get(first.body.links.next).expect(200);
    expect(second.body).toMatchObject({ nextCursor: null, links: { next: null } });
    expect(second.body.items).toHaveLength(2);
    const exact = await get(`/v1/operations/${planned}/items?limit=6`).expect(200);
    expect(exact.body.items).toHaveLength(6);
    expect(exact.body).toMatchObject({ nextCursor: null, links: { next: null } });
    const filtered = await get(`/v1/operations/${planned}/items?limit=1&state=pending`).expect(200);
    expect(filtered.body.links.next).toBe(
      `/v1/operations/${planned}/items?limit=1&state=pending&cursor=${filtered.body.nextCursor}`,
    );
  });
});

describe('GET /v1/operations/{id}/report', () => {
  it('refuses a position the report does not have', async () => {
    await refused(`/v1/operations/${rejected}/report?cursor=999`, ERROR_EXAMPLES.invalidReportCursor);
    await refused(`/v1/operations/${planned}/report?cursor=0`);
    for (const cursor of ['zzzz', '0x1', '-1']) await refused(`/v1/operations/${rejected}/report?cursor=${cursor}`);
  });

  it('pages with the cursors it gives', async () => {
    const first = await get(`/v1/operations/${rejected}/report?limit=2`).expect(200);
    expect(first.body.items.map((r: { id: string }) => r.id)).toEqual(['app_nope_1', 'app_nope_2']);
    expect(first.body.links.next).toBe(`/v1/operations/${rejected}/report?limit=2&cursor=${first.body.nextCursor}`);
    const second = await get(first.body.links.next).expect(200);
    expect(second.body.items.map((r: { id: string }) => r.id)).toEqual(['app_nope_3']);
    expect(second.body.links).toEqual({ next: null });
    const exact = await get(`/v1/operations/${rejected}/report?limit=3`).expect(200);
    expect(exact.body.items).toHaveLength(3);
    expect(exact.body).toMatchObject({ nextCursor: null, links: { next: null } });
  });
});
