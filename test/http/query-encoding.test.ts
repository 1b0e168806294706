// A query string whose percent-encoding is broken is refused on every route (400 BAD_URL naming
// the parameter, as a broken path is), never taken literally: a reason stored as "rrr%ff%fe" is
// not what the client meant. Valid encodings (%20, +, multi-byte UTF-8) keep working.
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { changedTables, fingerprint } from '../support/fingerprint.ts';
import { appId, query, seedRegistry, tenantId } from '../support/seed.ts';

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp();
  await seedRegistry(t.databaseUrl, { sites: 3, appsPerSite: 2 });
});
afterAll(async () => {
  await t?.close();
});

const unchanged = async <T>(fn: () => Promise<T>): Promise<T> => {
  const before = await fingerprint(t.app.db.pool);
  const result = await fn();
  expect(changedTables(before, await fingerprint(t.app.db.pool))).toEqual([]);
  return result;
};
const submitText = (qs: string, id = appId(0, 0)) =>
  request(t.app.server)
    .post(`/v1/operations/text?${qs}`)
    .set('authorization', t.auth('requester'))
    .set('content-type', 'text/plain')
    .send(`${id}\n`);
const tenants = (qs: string) =>
  request(t.app.server).get(`/v1/registry/tenants?${qs}`).set('authorization', t.auth('viewer'));

describe('broken percent-encoding in a query string', () => {
  it('refuses a submission whose reason and ticket do not decode, planning nothing', async () => {
    const res = await unchanged(() => submitText('targetType=app&reason=rrr%ff%fe&ticket=T%c3'));
    expect(res.status).toBe(400);
    expect(Object.keys(res.body).sort()).toEqual(['code', 'details', 'message', 'requestId']);
    expect(res.body.code).toBe('BAD_URL');
    expect(res.body.message).toContain('querystring.reason');
    expect(res.body.details.map((d: { field: string }) => d.field)).toEqual([
      'querystring.reason',
      'querystring.ticket',
    ]);
    expect(res.body.details[0].message).toMatch(/UTF-8/);
    expect(await query(t.databaseUrl, 'SELECT id FROM operations')).toEqual([]);
  });

  it('refuses it on a list route too, naming the parameter', async () => {
    const res = await tenants('idPrefix=%ff%fe').expect(400);
    expect(res.body).toMatchObject({ code: 'BAD_URL', details: [{ field: 'querystring.idPrefix' }] });
  });

  it.each([
    ['a lone %', 'tn%'],
    ['% and no hex', 'tn%zz'],
    ['% and one hex digit', 'tn%4'],
    ['a truncated escape', '%E0%A4%A'],
    ['a lone continuation byte', '%80'],
    ['a truncated sequence', '%E0%A4'],
    ['a sequence cut by a character', '%C3x%A9'],
    ['an overlong encoding', '%C0%AF'],
    ['a surrogate', '%ED%A0%80'],
    ['a code point beyond U+10FFFF', '%F4%90%80%80'],
    ['a byte that never starts UTF-8', '%FF'],
  ])('refuses %s', async (_what, value) => {
    const res = await tenants(`idPrefix=${value}`).expect(400);
    expect(res.body.code).toBe('BAD_URL');
    expect(res.body.details[0].field).toBe('querystring.idPrefix');
  });

  it('refuses a parameter name that does not decode', async () => {
    const res = await tenants('%ff=1').expect(400);
    expect(res.body.code).toBe('BAD_URL');
    expect(res.body.details[0]).toMatchObject({ field: 'querystring', name: '%ff' });
  });

  it('answers before authentication, as a broken path does', async () => {
    const res = await request(t.app.server).get('/v1/registry/tenants?idPrefix=%ff').expect(400);
    expect(res.body.code).toBe('BAD_URL');
  });
});

describe('valid encodings', () => {
  it('decode as before: %20, +, %2B and multi-byte UTF-8', async () => {
    const reason = encodeURIComponent('Remove the café app 😀 (a+b)').replace(/%20/g, '+');
    // An app of its own: the refusals above must not have planned theirs, but this must not depend on it.
    const res = await submitText(`targetType=app&reason=${reason}&ticket=CHG%2D1&dryRun=true`, appId(1, 0));
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.dryRun).toBe(true);
    const planned = await submitText(`targetType=app&reason=${reason}&ticket=CHG%201`, appId(1, 0)).expect(201);
    expect(planned.body).toMatchObject({ reason: 'Remove the café app 😀 (a+b)', ticket: 'CHG 1' });
  });

  it('keep plain values and repeated parameters working', async () => {
    const res = await tenants(`idPrefix=${encodeURIComponent(tenantId(0).slice(0, 9))}&limit=2`).expect(200);
    expect(res.body.items.map((x: { id: string }) => x.id)).toEqual([tenantId(0), tenantId(1)]);
    await request(t.app.server)
      .get('/v1/operations?state=planned&state=running')
      .set('authorization', t.auth('viewer'))
      .expect(200);
  });
});
