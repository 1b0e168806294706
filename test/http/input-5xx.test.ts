// The fuzzer's server errors from client input, one case each: NUL characters in free text, in the
// operation-ID path parameter and in query filters; out-of-range integers in `after`, `cursor` and
// `wave`; objects nested 10,000 deep in free-form fields; lone UTF-16 surrogates; date-times past
// what can be stored. Each is a 400
// in the project's error shape naming the field, and changes nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import request from 'supertest';
import type { Role } from '../../src/modules/auth/roles.ts';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { changedTables, fingerprint } from '../support/fingerprint.ts';
import { appId, seedRegistry, siteId } from '../support/seed.ts';

let t: TestApp;
let planned: string;
let rejected: string;
beforeAll(async () => {
  t = await buildTestApp();
  await seedRegistry(t.databaseUrl, { sites: 5, appsPerSite: 2 });
  const submit = (ids: string[]) =>
    request(t.app.server)
      .post('/v1/operations')
      .set('authorization', t.auth('requester'))
      .send({ targetType: 'app', reason: 'Remove the legacy app', ticket: 'CHG-1', ids });
  planned = (await submit([appId(1, 0)]).expect(201)).body.id;
  rejected = (await submit([siteId(2)]).expect(422)).body.details.operationId;
});
afterAll(async () => {
  await t?.close();
});

interface Case {
  name: string;
  method: 'get' | 'post' | 'put' | 'delete';
  path: () => string;
  role: Role;
  /** A JSON value, or raw text sent as is. */
  body?: unknown;
  raw?: string;
  contentType?: string;
  field: string;
  /** The refusal's code (default VALIDATION_FAILED); a cursor that is no position is INVALID_CURSOR. */
  code?: string;
}

const spec = { targetType: 'app', reason: 'Remove the legacy app', ticket: 'CHG-1' };
const deep = (n: number) => `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`;

const cases: Case[] = [
  // Date-times that are RFC 3339 but no instant JavaScript and PostgreSQL both hold (found by the
  // hostile-input suite): a leap second was an Invalid Date that PostgreSQL refused (a 5xx); a
  // negative offset on 9999-12-31 reached year 10000, which was stored and then could not be
  // answered (a 5xx after the token existed, and a token list that failed from then on).
  ...['2030-06-30T23:59:60Z', '9999-12-31T23:59:59-23:59', '0000-01-01T00:00:00Z'].map((expiresAt): Case => ({
    name: `token expiresAt ${expiresAt}`,
    method: 'post',
    path: () => '/v1/admin/tokens',
    role: 'admin',
    body: { name: 'dated', role: 'viewer', expiresAt },
    field: 'body.expiresAt',
  })),
  // NUL characters in free text
  {
    name: 'NUL in reason',
    method: 'post',
    path: () => '/v1/operations',
    role: 'requester',
    body: { ...spec, reason: 'bad\u0000reason', ids: [appId(3, 0)] },
    field: 'body.reason',
  },
  {
    name: 'NUL in ticket',
    method: 'post',
    path: () => '/v1/operations',
    role: 'requester',
    body: { ...spec, ticket: 'CHG\u0000', ids: [appId(3, 0)] },
    field: 'body.ticket',
  },
  {
    name: 'NUL in the NDJSON spec line',
    method: 'post',
    path: () => '/v1/operations',
    role: 'requester',
    contentType: 'application/x-ndjson',
    raw: `${JSON.stringify({ ...spec, reason: 'x\u0000yz' })}\n"${appId(3, 0)}"\n`,
    field: 'line 1.reason',
  },
  {
    name: 'NUL in a signal detail',
    method: 'post',
    path: () => `/v1/operations/${planned}/signals`,
    role: 'operator',
    body: { kind: 'support_ticket', detail: 'a\u0000b' },
    field: 'body.detail',
  },
  {
    name: 'NUL in a pause reason',
    method: 'post',
    path: () => `/v1/operations/${planned}/pause`,
    role: 'operator',
    body: { reason: 'a\u0000bc' },
    field: 'body.reason',
  },
  {
    name: 'NUL in an approval comment',
    method: 'post',
    path: () => `/v1/operations/${planned}/approve`,
    role: 'approver',
    body: { planHash: 'a'.repeat(64), comment: 'ok\u0000' },
    field: 'body.comment',
  },
  {
    name: 'NUL in a freeze reason',
    method: 'put',
    path: () => '/v1/admin/freeze',
    role: 'admin',
    body: { frozen: true, reason: 'a\u0000bc' },
    field: 'body.reason',
  },
  {
    name: 'NUL in a token name',
    method: 'post',
    path: () => '/v1/admin/tokens',
    role: 'admin',
    body: { name: 'ci\u0000', role: 'viewer' },
    field: 'body.name',
  },
  {
    name: 'NUL in an idPattern',
    method: 'put',
    path: () => '/v1/registry/types',
    role: 'admin',
    body: { types: [{ name: 'zz', idPattern: '^a\u0000$' }] },
    field: 'body.types.0.idPattern',
  },
  {
    name: 'NUL in contact data',
    method: 'post',
    path: () => '/v1/registry/tenants',
    role: 'admin',
    body: { tenants: [{ id: 'tn_nul', name: 'x', contact: { email: 'a\u0000b' } }] },
    field: 'body.tenants.0.contact.email',
  },
  // NUL in the operation-ID path parameter
  {
    name: 'NUL in GET /operations/{id}',
    method: 'get',
    path: () => '/v1/operations/op%00x',
    role: 'viewer',
    field: 'params.id',
  },
  {
    name: 'NUL in GET /operations/{id}/items',
    method: 'get',
    path: () => '/v1/operations/op%00x/items',
    role: 'viewer',
    field: 'params.id',
  },
  {
    name: 'NUL in GET /operations/{id}/report',
    method: 'get',
    path: () => '/v1/operations/op%00x/report',
    role: 'viewer',
    field: 'params.id',
  },
  {
    name: 'NUL in POST /operations/{id}/abort',
    method: 'post',
    path: () => '/v1/operations/op%00x/abort',
    role: 'operator',
    body: { reason: 'because' },
    field: 'params.id',
  },
  // NUL in query filters
  {
    name: 'NUL in ?state of the operations list',
    method: 'get',
    path: () => '/v1/operations?state=planned%00',
    role: 'viewer',
    field: 'querystring.state',
  },
  {
    name: 'NUL in ?cursor of the operations list',
    method: 'get',
    path: () => '/v1/operations?cursor=op%00',
    role: 'viewer',
    field: 'querystring.cursor',
  },
  {
    name: 'NUL in ?operationId of the audit log',
    method: 'get',
    path: () => '/v1/audit?operationId=op%00',
    role: 'viewer',
    field: 'querystring.operationId',
  },
  {
    name: 'NUL in ?state of the items',
    method: 'get',
    path: () => `/v1/operations/${planned}/items?state=%00`,
    role: 'viewer',
    field: 'querystring.state',
  },
  {
    name: 'NUL in a text/plain spec',
    method: 'post',
    path: () => '/v1/operations/text?targetType=app&reason=a%00bc&ticket=CHG-1',
    role: 'requester',
    contentType: 'text/plain',
    raw: `${appId(3, 0)}\n`,
    field: 'querystring.reason',
  },
  // Out-of-range integers (int4 and bigint columns behind unbounded schema integers)
  {
    name: 'audit ?after beyond bigint',
    method: 'get',
    path: () => '/v1/audit?after=99999999999999999999999',
    role: 'viewer',
    field: 'querystring.after',
  },
  {
    name: 'audit ?after=1e300',
    method: 'get',
    path: () => '/v1/audit?after=1e300',
    role: 'viewer',
    field: 'querystring.after',
  },
  {
    name: 'items ?cursor beyond int4',
    method: 'get',
    path: () => `/v1/operations/${planned}/items?cursor=99999999999`,
    role: 'viewer',
    field: 'querystring.cursor',
    code: 'INVALID_CURSOR',
  },
  {
    name: 'items ?wave beyond int4',
    method: 'get',
    path: () => `/v1/operations/${planned}/items?wave=99999999999`,
    role: 'viewer',
    field: 'querystring.wave',
  },
  {
    name: 'report ?cursor beyond int4',
    method: 'get',
    path: () => `/v1/operations/${rejected}/report?cursor=99999999999`,
    role: 'viewer',
    field: 'querystring.cursor',
    code: 'INVALID_CURSOR',
  },
  // Lone UTF-16 surrogates (PostgreSQL cannot store them; text would be altered on the way in)
  {
    name: 'lone surrogate in a tenant name',
    method: 'post',
    path: () => '/v1/registry/tenants',
    role: 'admin',
    contentType: 'application/json',
    raw: '{"tenants":[{"id":"tn_s","name":"x\\ud800"}]}',
    field: 'body.tenants.0.name',
  },
  {
    name: 'lone surrogate in contact data',
    method: 'post',
    path: () => '/v1/registry/tenants',
    role: 'admin',
    contentType: 'application/json',
    raw: '{"tenants":[{"id":"tn_s","name":"x","contact":{"a":"\\udc00"}}]}',
    field: 'body.tenants.0.contact.a',
  },
  {
    name: 'lone surrogate in a reason',
    method: 'post',
    path: () => '/v1/operations',
    role: 'requester',
    contentType: 'application/json',
    raw: `{"targetType":"app","reason":"abc\\udbff","ticket":"x","ids":["${appId(3, 0)}"]}`,
    field: 'body.reason',
  },
];

const deepCases: Case[] = [
  {
    name: 'contact nested 10,000 deep',
    method: 'post',
    path: () => '/v1/registry/tenants',
    role: 'admin',
    contentType: 'application/json',
    raw: `{"tenants":[{"id":"tn_deep","name":"x","contact":${deep(10_000)}}]}`,
    field: 'body.tenants.0.contact',
  },
  {
    name: 'adapter nested 10,000 deep',
    method: 'put',
    path: () => '/v1/registry/types',
    role: 'admin',
    contentType: 'application/json',
    raw: `{"types":[{"name":"zz","adapter":{"kind":"registry","x":${deep(10_000)}}}]}`,
    field: 'body.types.0.adapter.x',
  },
  {
    name: 'ids nested 10,000 deep',
    method: 'post',
    path: () => '/v1/operations',
    role: 'requester',
    contentType: 'application/json',
    raw: `{"targetType":"app","reason":"abc","ticket":"x","ids":[${'['.repeat(10_000)}${']'.repeat(10_000)}]}`,
    field: 'body.ids.0',
  },
];

async function send(c: Case) {
  let r = request(t.app.server)[c.method](c.path()).set('authorization', t.auth(c.role));
  if (c.contentType) r = r.set('content-type', c.contentType);
  if (c.raw !== undefined) return r.send(c.raw);
  if (c.body !== undefined) return r.send(c.body as object);
  return r;
}

function expectProjectShape(body: Record<string, unknown>) {
  expect(Object.keys(body).sort()).toEqual(['code', 'details', 'message', 'requestId']);
  expect(typeof body.message).toBe('string');
  expect(typeof body.requestId).toBe('string');
}

describe('no 5xx from client input', () => {
  it.each(cases.map((c) => [c.name, c] as const))('%s → 400 naming the field, nothing changed', async (_n, c) => {
    const before = await fingerprint(t.app.db.pool);
    const res = await send(c);
    expect(res.status, JSON.stringify(res.body)).toBe(400);
    expectProjectShape(res.body);
    expect(res.body.code).toBe(c.code ?? 'VALIDATION_FAILED');
    expect(res.body.details.map((d: { field: string }) => d.field)).toContain(c.field);
    expect(changedTables(before, await fingerprint(t.app.db.pool))).toEqual([]);
  });

  it.each(deepCases.map((c) => [c.name, c] as const))('%s → 400 BODY_TOO_DEEP, nothing changed', async (_n, c) => {
    const before = await fingerprint(t.app.db.pool);
    const res = await send(c);
    expect(res.status, JSON.stringify(res.body)).toBe(400);
    expectProjectShape(res.body);
    expect(res.body.code).toBe('BODY_TOO_DEEP');
    expect(res.body.details).toMatchObject({ maxDepth: 32 });
    expect(res.body.details.field.startsWith(c.field)).toBe(true);
    expect(changedTables(before, await fingerprint(t.app.db.pool))).toEqual([]);
  });
});
