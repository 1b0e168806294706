// A resource type's adapter is checked when the type is declared: a broken http adapter is a 422
// naming every offending field and what is allowed, never a 200 that wedges a later operation.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import request from 'supertest';
import { buildTestApp, type TestApp } from '../support/app.ts';

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp();
});
afterAll(async () => {
  await t?.close();
});

interface Problem {
  field: string;
  problem: string;
  value?: unknown;
  message: string;
  allowed?: unknown;
}
interface StoredType {
  name: string;
  adapter: Record<string, unknown>;
  updatedAt: string;
}

const put = (body: unknown) =>
  request(t.app.server)
    .put('/v1/registry/types')
    .set('authorization', t.auth('admin'))
    .send(body as object);

const listTypes = async (): Promise<StoredType[]> =>
  (await request(t.app.server).get('/v1/registry/types').set('authorization', t.auth('viewer')).expect(200)).body.items;

const http = (over: Record<string, unknown> = {}) => ({
  kind: 'http',
  baseUrl: 'https://apps.internal/api/v2',
  snapshot: 'GET /apps/{id}?tenantId={tenantId}',
  softDelete: 'POST /apps/{id}/soft-delete',
  restore: 'POST /apps/{id}/restore',
  hardDelete: 'DELETE /tenants/{tenantId}/{type}s/{id}?op={operationId}',
  probe: 'GET /tenants/{tenantId}/health',
  timeoutMs: 2_000,
  retries: 3,
  retryBaseMs: 50,
  ...over,
});
const without = (field: string) => {
  const c: Record<string, unknown> = http();
  delete c[field];
  return c;
};

/** PUTs the adapters as types `<prefix>_0…`, expects 422 and returns the problems; none is stored. */
async function refuse(prefix: string, adapters: unknown[]): Promise<Problem[]> {
  const names = adapters.map((_, i) => `${prefix}_${i}`);
  const r = await put({ types: adapters.map((adapter, i) => ({ name: names[i], adapter })) });
  expect(r.status, JSON.stringify(r.body)).toBe(422);
  expect(r.body.code).toBe('INVALID_TYPE_DECLARATION');
  const stored = new Set((await listTypes()).map((x) => x.name));
  expect(names.filter((n) => stored.has(n))).toEqual([]);
  return r.body.details as Problem[];
}

describe('PUT /v1/registry/types: adapter declarations', () => {
  it('declares a complete http adapter with 200 and lists it as given (it signs with the default secret of the server)', async () => {
    const minimal = without('probe');
    delete minimal.timeoutMs;
    delete minimal.retries;
    delete minimal.retryBaseMs;
    const r = await put({
      types: [
        { name: 'svc_full', adapter: http() },
        { name: 'svc_min', adapter: { ...minimal, baseUrl: 'http://127.0.0.1:8080' } },
        { name: 'svc_reg', adapter: { kind: 'registry' } },
      ],
    });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const types = await listTypes();
    expect(types.find((x) => x.name === 'svc_full')!.adapter).toEqual(http());
    expect(types.find((x) => x.name === 'svc_min')!.adapter).toEqual({ ...minimal, baseUrl: 'http://127.0.0.1:8080' });
    expect(types.find((x) => x.name === 'svc_reg')!.adapter).toEqual({ kind: 'registry' });
  });

  // A PUT replaces every field: one that meant to change a retention and left the adapter out moved
  // an HTTP type to the registry, and its deletes then sent nothing to its system (a trial).
  it('refuses leaving out the adapter of a type declared with another system; registry on purpose is accepted', async () => {
    expect((await put({ types: [{ name: 'svc_omit', adapter: http() }, { name: 'reg_omit' }] })).status).toBe(200);
    const r = await put({
      types: [
        { name: 'reg_omit', retentionDays: 7 },
        { name: 'svc_omit', retentionDays: 7 },
      ],
    });
    expect(r.status, JSON.stringify(r.body)).toBe(422);
    expect(r.body.details).toEqual([
      expect.objectContaining({
        field: 'types[1].adapter',
        problem: 'adapter_omitted',
        message: expect.stringContaining('svc_omit is declared with http https://apps.internal/api/v2'),
      }),
    ]);
    const stored = await listTypes();
    expect(stored.find((x) => x.name === 'svc_omit')!.adapter).toEqual(http());
    // The registry type may leave it out (it is the registry either way); the HTTP one says so.
    const ok = await put({
      types: [
        { name: 'reg_omit', retentionDays: 7 },
        { name: 'svc_omit', adapter: { kind: 'registry' } },
      ],
    });
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    expect((await listTypes()).find((x) => x.name === 'svc_omit')!.adapter).toEqual({ kind: 'registry' });
  });

  it('refuses {"kind":"http"} alone, naming baseUrl and every missing template', async () => {
    const details = await refuse('bare', [{ kind: 'http' }]);
    expect(details).toEqual(
      ['baseUrl', 'snapshot', 'softDelete', 'restore', 'hardDelete'].map((f) =>
        expect.objectContaining({ field: `types[0].adapter.${f}`, problem: 'missing_field' }),
      ),
    );
  });

  it('refuses a single missing template, naming it', async () => {
    const details = await refuse('miss', [without('restore'), without('baseUrl')]);
    expect(details).toEqual([
      expect.objectContaining({ field: 'types[0].adapter.restore', problem: 'missing_field' }),
      expect.objectContaining({ field: 'types[1].adapter.baseUrl', problem: 'missing_field' }),
    ]);
  });

  it('refuses a baseUrl that is not an absolute http(s) URL with a host, no credentials, no query or fragment', async () => {
    const bad = [
      'not a url',
      'ftp://files.internal',
      '/relative/path',
      'apps.internal',
      'http://',
      'http:apps.internal',
      'https://user:secret@apps.internal',
      'https://token@apps.internal',
      'https://apps.internal/api?x=1',
      'https://apps.internal/api#top',
      'http://apps.internal:99999',
      'http://[::1',
      ' https://apps.internal',
      'https://apps.internal\\admin',
    ];
    const details = await refuse(
      'url',
      bad.map((baseUrl) => http({ baseUrl })),
    );
    expect(details).toHaveLength(bad.length);
    bad.forEach((value, i) =>
      expect(details[i]).toMatchObject({
        field: `types[${i}].adapter.baseUrl`,
        problem: 'invalid_url',
        // Credentials are never echoed (the refusal is logged): the user info is masked.
        value: value.includes('@') ? value.replace(/\/\/[^@]*@/, '//***@') : value,
      }),
    );
    const message = (v: string) => details[bad.indexOf(v)]!.message;
    expect(message('https://user:secret@apps.internal')).toMatch(/credentials/);
    expect(message('https://apps.internal/api?x=1')).toMatch(/query/);
    expect(message('https://apps.internal/api#top')).toMatch(/fragment/);
    expect(message('ftp://files.internal')).toMatch(/http or https/);
    expect(message('not a url')).toMatch(/absolute/);
    expect(JSON.stringify(details)).not.toContain('secret');
    expect(JSON.stringify(details)).not.toContain('token@');
  });

  it('refuses a baseUrl that is not a string', async () => {
    const details = await refuse('url_type', [http({ baseUrl: 42 })]);
    expect(details).toEqual([
      expect.objectContaining({ field: 'types[0].adapter.baseUrl', problem: 'invalid_value', value: 42 }),
    ]);
  });

  it('refuses template methods other than GET/POST/PUT/PATCH/DELETE, listing the allowed ones', async () => {
    const details = await refuse('method', [
      http({ snapshot: 'FETCH /apps/{id}' }),
      http({ softDelete: 'post /apps/{id}/soft-delete' }),
      http({ hardDelete: 'DELETE apps/{id}' }),
      http({ restore: 'POST' }),
      http({ snapshot: 7 }),
    ]);
    expect(details).toEqual([
      expect.objectContaining({
        field: 'types[0].adapter.snapshot',
        problem: 'invalid_method',
        value: 'FETCH /apps/{id}',
        allowed: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'],
      }),
      expect.objectContaining({ field: 'types[1].adapter.softDelete', problem: 'invalid_method' }),
      expect.objectContaining({ field: 'types[2].adapter.hardDelete', problem: 'invalid_template' }),
      expect.objectContaining({ field: 'types[3].adapter.restore', problem: 'invalid_template' }),
      expect.objectContaining({ field: 'types[4].adapter.snapshot', problem: 'invalid_value' }),
    ]);
    expect(details[0]!.message).toMatch(/GET, POST, PUT, PATCH, DELETE/);
  });

  it('refuses unknown {placeholders}, listing the allowed ones, and a probe with anything but {tenantId}', async () => {
    const details = await refuse('ph', [
      http({ softDelete: 'POST /apps/{resourceId}/soft-delete', restore: 'POST /apps/{id}/restore/{tenant}' }),
      http({ probe: 'GET /apps/{id}/health' }),
      http({ snapshot: 'GET /apps/{id' }),
    ]);
    expect(details).toEqual([
      expect.objectContaining({
        field: 'types[0].adapter.softDelete',
        problem: 'unknown_placeholder',
        allowed: ['{id}', '{tenantId}', '{type}', '{operationId}'],
      }),
      expect.objectContaining({ field: 'types[0].adapter.restore', problem: 'unknown_placeholder' }),
      expect.objectContaining({
        field: 'types[1].adapter.probe',
        problem: 'unknown_placeholder',
        allowed: ['{tenantId}'],
      }),
      expect.objectContaining({ field: 'types[2].adapter.snapshot', problem: 'invalid_template' }),
    ]);
    expect(details[0]!.message).toMatch(/\{resourceId\}/);
    expect(details[0]!.message).toMatch(/\{id\}, \{tenantId\}, \{type\}, \{operationId\}/);
    expect(details[2]!.message).toMatch(/\{tenantId\}/);
  });

  it('refuses a GET template without {id}: it has no body, so every resource would be read from one URL', async () => {
    const details = await refuse('noid', [
      http({ snapshot: 'GET /apps/all?tenantId={tenantId}' }),
      // The other methods send the item, its ID included, in their body: a fixed path is theirs to choose.
      http({ softDelete: 'POST /apps/soft-delete', hardDelete: 'GET /apps/purge' }),
    ]);
    expect(details).toEqual([
      expect.objectContaining({
        field: 'types[0].adapter.snapshot',
        problem: 'missing_placeholder',
        allowed: ['{id}'],
      }),
      expect.objectContaining({ field: 'types[1].adapter.hardDelete', problem: 'missing_placeholder' }),
    ]);
    expect(details[0]!.message).toMatch(/\{id\}/);
    const ok = await put({ types: [{ name: 'noid_ok', adapter: http({ softDelete: 'POST /apps/soft-delete' }) }] });
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
  });

  it('refuses dot segments in a template or the baseUrl path: the receiver would resolve them to another path for every resource', async () => {
    const details = await refuse('dots', [
      http({ snapshot: 'GET /apps/{id}/../b' }),
      http({ softDelete: 'POST /tenants/{tenantId}/apps/{id}/%2e%2E' }),
      http({ restore: 'POST /apps/./{id}/restore' }),
      http({ baseUrl: 'http://127.0.0.1:8080/api/../admin' }),
    ]);
    expect(details).toEqual([
      expect.objectContaining({ field: 'types[0].adapter.snapshot', problem: 'invalid_template' }),
      expect.objectContaining({ field: 'types[1].adapter.softDelete', problem: 'invalid_template' }),
      expect.objectContaining({ field: 'types[2].adapter.restore', problem: 'invalid_template' }),
      expect.objectContaining({ field: 'types[3].adapter.baseUrl', problem: 'invalid_url' }),
    ]);
    expect(details[0]!.message).toMatch(/dot segment "\.\."/);
    expect(details[1]!.message).toMatch(/dot segment "%2e%2E"/);
    // A dot inside a segment, or in the query, is an ordinary character.
    const ok = await put({
      types: [
        { name: 'dots_ok', adapter: http({ snapshot: 'GET /apps/{id}.json?v=..', probe: 'GET /v1.2/{tenantId}' }) },
      ],
    });
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
  });

  it('refuses out-of-range or non-integer timeoutMs, retries and retryBaseMs, saying the range', async () => {
    const details = await refuse('range', [
      http({ timeoutMs: 5, retries: 11, retryBaseMs: 0 }),
      http({ timeoutMs: 120_001, retries: -1, retryBaseMs: 60_001 }),
      http({ timeoutMs: 1.5, retries: '3' }),
    ]);
    expect(details).toEqual([
      expect.objectContaining({
        field: 'types[0].adapter.timeoutMs',
        problem: 'out_of_range',
        value: 5,
        allowed: { minimum: 10, maximum: 120_000 },
      }),
      expect.objectContaining({
        field: 'types[0].adapter.retries',
        problem: 'out_of_range',
        allowed: { minimum: 0, maximum: 10 },
      }),
      expect.objectContaining({
        field: 'types[0].adapter.retryBaseMs',
        problem: 'out_of_range',
        allowed: { minimum: 1, maximum: 60_000 },
      }),
      expect.objectContaining({ field: 'types[1].adapter.timeoutMs', problem: 'out_of_range' }),
      expect.objectContaining({ field: 'types[1].adapter.retries', problem: 'out_of_range' }),
      expect.objectContaining({ field: 'types[1].adapter.retryBaseMs', problem: 'out_of_range' }),
      expect.objectContaining({ field: 'types[2].adapter.timeoutMs', problem: 'invalid_value' }),
      expect.objectContaining({ field: 'types[2].adapter.retries', problem: 'invalid_value' }),
    ]);
    expect(details[0]!.message).toMatch(/10.*120000/);
  });

  it('refuses unknown fields of either kind, naming each one', async () => {
    const details = await refuse('extra', [
      http({ headers: { authorization: 'x' }, baseURL: 'https://typo.internal' }),
      { kind: 'registry', baseUrl: 'https://apps.internal' },
    ]);
    expect(details).toEqual([
      expect.objectContaining({ field: 'types[0].adapter.headers', problem: 'unknown_field' }),
      expect.objectContaining({ field: 'types[0].adapter.baseURL', problem: 'unknown_field' }),
      expect.objectContaining({ field: 'types[1].adapter.baseUrl', problem: 'unknown_field', allowed: ['kind'] }),
    ]);
    expect(details[0]!.message).toMatch(/headers/);
    expect(details[0]!.allowed).toEqual(expect.arrayContaining(['kind', 'baseUrl', 'snapshot', 'probe', 'timeoutMs']));
  });

  it('refuses an unknown, missing or non-object kind, listing the allowed kinds', async () => {
    const details = await refuse('kind', [{ kind: 'ftp' }, { baseUrl: 'https://apps.internal' }, 'http', null, []]);
    expect(details).toEqual([
      expect.objectContaining({
        field: 'types[0].adapter.kind',
        problem: 'unknown_kind',
        value: 'ftp',
        allowed: ['http', 'registry'],
      }),
      expect.objectContaining({
        field: 'types[1].adapter.kind',
        problem: 'missing_field',
        allowed: ['http', 'registry'],
      }),
      expect.objectContaining({ field: 'types[2].adapter', problem: 'invalid_value' }),
      expect.objectContaining({ field: 'types[3].adapter', problem: 'invalid_value' }),
      expect.objectContaining({ field: 'types[4].adapter', problem: 'invalid_value' }),
    ]);
    expect(details[0]!.message).toMatch(/http, registry/);
  });

  it('collects every problem of every type in one answer; nothing is written, a stored type stays unchanged', async () => {
    await put({ types: [{ name: 'keep', adapter: http() }] }).expect(200);
    const before = (await listTypes()).find((x) => x.name === 'keep')!;

    const r = await put({
      types: [
        { name: 'keep', adapter: http({ baseUrl: 'not a url', retries: 99 }) },
        { name: 'fresh', idPattern: '^x_[', adapter: { kind: 'http' } },
        { name: 'fresh_ok', adapter: { kind: 'registry' } },
        { name: 'fresh_ftp', parentType: 'nope', adapter: { kind: 'ftp' } },
      ],
    });
    expect(r.status, JSON.stringify(r.body)).toBe(422);
    expect(r.body.code).toBe('INVALID_TYPE_DECLARATION');
    const fields = (r.body.details as Problem[]).map((d) => d.field);
    expect(fields).toEqual(
      expect.arrayContaining([
        'types[0].adapter.baseUrl',
        'types[0].adapter.retries',
        'types[1].idPattern',
        'types[1].adapter.baseUrl',
        'types[1].adapter.snapshot',
        'types[1].adapter.softDelete',
        'types[1].adapter.restore',
        'types[1].adapter.hardDelete',
        'types[3].adapter.kind',
        'types[3].parentType',
      ]),
    );
    expect(fields).toHaveLength(10);
    expect(r.body.message).toMatch(/and 9 more/);

    const after = await listTypes();
    expect(after.find((x) => x.name === 'keep')).toEqual(before);
    expect(after.map((x) => x.name)).not.toEqual(expect.arrayContaining(['fresh']));
    expect(after.map((x) => x.name)).not.toContain('fresh_ok');
    expect(after.map((x) => x.name)).not.toContain('fresh_ftp');
  });

  it('keeps a row stored before the check readable, and other declarations still go through', async () => {
    await t.app.db.pool.query(`INSERT INTO resource_types (name, adapter) VALUES ('legacy', $1)`, [
      JSON.stringify({ kind: 'http', baseUrl: 'not a url' }),
    ]);
    await put({ types: [{ name: 'beside_legacy' }] }).expect(200);
    const legacy = (await listTypes()).find((x) => x.name === 'legacy')!;
    expect(legacy.adapter).toEqual({ kind: 'http', baseUrl: 'not a url' });
  });

  it('documents the adapter union in the OpenAPI document', async () => {
    const doc = (await request(t.app.server).get('/openapi.json').expect(200)).body;
    const resolve = (s: { $ref?: string }): Record<string, unknown> =>
      s.$ref ? resolve(doc.components.schemas[s.$ref.replace('#/components/schemas/', '')]) : s;
    const body = resolve(doc.paths['/v1/registry/types'].put.requestBody.content['application/json'].schema);
    const typeItem = resolve((body.properties as { types: { items: object } }).types.items);
    const adapter = resolve((typeItem.properties as { adapter: object }).adapter);
    const branches = ((adapter.anyOf ?? adapter.oneOf) as object[]).map(resolve);
    const byKind = Object.fromEntries(
      branches.map((b) => [((b.properties as { kind: { enum: string[] } }).kind.enum ?? [])[0], b]),
    );
    expect(Object.keys(byKind).sort()).toEqual(['http', 'registry']);
    expect(byKind.http).toMatchObject({
      additionalProperties: false,
      required: expect.arrayContaining(['kind', 'baseUrl', 'snapshot', 'softDelete', 'restore', 'hardDelete']),
    });
    expect(byKind.registry).toMatchObject({ additionalProperties: false });
  });
});
