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

const put = (body: unknown, role: 'admin' | 'viewer' = 'admin') =>
  request(t.app.server)
    .put('/v1/registry/types')
    .set('authorization', t.auth(role))
    .send(body as object);

// A complete http adapter: a declaration with a broken one is refused (test/http/registry-adapters.test.ts).
const APPS_ADAPTER = {
  kind: 'http',
  baseUrl: 'https://apps.internal',
  snapshot: 'GET /apps/{id}',
  softDelete: 'POST /apps/{id}/soft-delete',
  restore: 'POST /apps/{id}/restore',
  hardDelete: 'DELETE /apps/{id}',
};

const typeCount = async () =>
  (await t.app.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM resource_types')).rows[0]!.n;

describe('PUT/GET /v1/registry/types', () => {
  it('declares types in one body, with a parent declared alongside, and lists them', async () => {
    const r = await put({
      types: [
        {
          name: 'app',
          idPattern: '^app_[a-z0-9]+$',
          parentType: 'site',
          adapter: APPS_ADAPTER,
        },
        { name: 'site', idPattern: '^site_[a-z0-9]+$', cascadeTo: ['app'] },
      ],
    }).expect(200);
    expect(r.body.items.map((x: { name: string }) => x.name)).toEqual(['app', 'site']);

    const list = await request(t.app.server)
      .get('/v1/registry/types')
      .set('authorization', t.auth('viewer'))
      .expect(200);
    const app = list.body.items.find((x: { name: string }) => x.name === 'app');
    expect(app).toMatchObject({
      idPattern: '^app_[a-z0-9]+$',
      parentType: 'site',
      cascadeTo: [],
      adapter: APPS_ADAPTER,
    });
    const site = list.body.items.find((x: { name: string }) => x.name === 'site');
    expect(site).toMatchObject({ parentType: null, cascadeTo: ['app'], adapter: { kind: 'registry' } });
  });

  it('replaces a declaration on a second PUT and refers to types stored earlier', async () => {
    await put({ types: [{ name: 'db', parentType: 'app', idPattern: '^db_\\d+$' }] }).expect(200);
    await put({ types: [{ name: 'db', parentType: 'site' }] }).expect(200);
    const row = await t.app.db.pool.query('SELECT id_pattern, parent_type FROM resource_types WHERE name = $1', ['db']);
    expect(row.rows[0]).toEqual({ id_pattern: null, parent_type: 'site' });
  });

  it('refuses an idPattern that is not a JavaScript regex, naming the field; nothing is written', async () => {
    const before = await typeCount();
    const r = await put({ types: [{ name: 'good' }, { name: 'bad', idPattern: '^app_[' }] }).expect(422);
    expect(r.body.code).toBe('INVALID_TYPE_DECLARATION');
    expect(r.body.details).toEqual([
      expect.objectContaining({ field: 'types[1].idPattern', problem: 'invalid_regex', value: '^app_[' }),
    ]);
    expect(await typeCount()).toBe(before);
  });

  it('refuses an idPattern that JavaScript accepts but PostgreSQL does not', async () => {
    // Named groups compile in JS; PostgreSQL's ARE syntax rejects (?<name>…).
    expect(() => new RegExp('^(?<prefix>app)_x$')).not.toThrow();
    const r = await put({ types: [{ name: 'named', idPattern: '^(?<prefix>app)_x$' }] }).expect(422);
    expect(r.body.details[0]).toMatchObject({ field: 'types[0].idPattern', problem: 'invalid_regex' });
  });

  it('refuses unknown parentType and cascadeTo names, and parent cycles', async () => {
    const r = await put({ types: [{ name: 'orphan', parentType: 'nope', cascadeTo: ['app', 'ghost'] }] }).expect(422);
    expect(r.body.code).toBe('INVALID_TYPE_DECLARATION');
    expect(r.body.details).toEqual([
      expect.objectContaining({ field: 'types[0].parentType', problem: 'unknown_type', value: 'nope' }),
      expect.objectContaining({ field: 'types[0].cascadeTo[1]', problem: 'unknown_type', value: 'ghost' }),
    ]);
    const cycle = await put({
      types: [
        { name: 'aa', parentType: 'bb' },
        { name: 'bb', parentType: 'aa' },
      ],
    }).expect(422);
    expect(cycle.body.details.map((d: { problem: string }) => d.problem)).toEqual(['parent_cycle', 'parent_cycle']);
    const dup = await put({ types: [{ name: 'twice' }, { name: 'twice' }] }).expect(422);
    expect(dup.body.details[0]).toMatchObject({ field: 'types[1].name', problem: 'duplicate_name' });
  });

  it('validates names and unknown fields with 400; an unknown adapter kind is a 422 declaration problem', async () => {
    const name = await put({ types: [{ name: 'Bad-Name' }] }).expect(400);
    expect(name.body.code).toBe('VALIDATION_FAILED');
    expect(name.body.details[0].field).toBe('body.types.0.name');
    const unknown = await put({ types: [{ name: 'x', colour: 'red' }] }).expect(400);
    expect(unknown.body.details[0].unknownField).toBe('colour');
    const kind = await put({ types: [{ name: 'x', adapter: { kind: 'ftp' } }] }).expect(422);
    expect(kind.body.code).toBe('INVALID_TYPE_DECLARATION');
    expect(kind.body.details).toEqual([
      expect.objectContaining({
        field: 'types[0].adapter.kind',
        problem: 'unknown_kind',
        allowed: ['http', 'registry'],
      }),
    ]);
  });

  it('answers malformed JSON 400 and other content types 415', async () => {
    const bad = await request(t.app.server)
      .put('/v1/registry/types')
      .set('authorization', t.auth('admin'))
      .set('content-type', 'application/json')
      .send('{"types": [')
      .expect(400);
    expect(bad.body.code).toBe('MALFORMED_BODY');
    const text = await request(t.app.server)
      .put('/v1/registry/types')
      .set('authorization', t.auth('admin'))
      .set('content-type', 'text/plain')
      .send('site')
      .expect(415);
    expect(text.body.code).toBe('UNSUPPORTED_MEDIA_TYPE');
    const xml = await request(t.app.server)
      .put('/v1/registry/types')
      .set('authorization', t.auth('admin'))
      .set('content-type', 'application/xml')
      .send('<types/>')
      .expect(415);
    expect(xml.body.code).toBe('UNSUPPORTED_MEDIA_TYPE');
  });

  it('needs a token, and the admin role to write', async () => {
    await request(t.app.server).get('/v1/registry/types').expect(401);
    await request(t.app.server)
      .put('/v1/registry/types')
      .send({ types: [{ name: 'x' }] })
      .expect(401);
    const r = await put({ types: [{ name: 'x' }] }, 'viewer').expect(403);
    expect(r.body.code).toBe('FORBIDDEN');
    expect((await t.app.db.pool.query('SELECT 1 FROM resource_types WHERE name = $1', ['x'])).rowCount).toBe(0);
  });

  it('records the declaration in the audit log', async () => {
    const r = await t.app.db.pool.query(
      `SELECT payload FROM audit_events WHERE action = 'registry.types.put' ORDER BY seq`,
    );
    expect(r.rows[0].payload).toEqual({ types: ['app', 'site'] });
  });
});
