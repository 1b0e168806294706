// Swagger UI is a dashboard operators click through: "Try it out" fills in the documented example
// and "Execute" sends it. The submission examples are dry runs, so executing them as they stand
// creates nothing (test/http/openapi.test.ts checks the examples' text).
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { query } from '../support/seed.ts';

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp();
  // The registry the examples name: tenant tn_acme, its site and apps.
  await query(
    t.databaseUrl,
    `INSERT INTO resource_types (name, id_pattern, parent_type, cascade_to) VALUES
       ('site', '^site_[a-z0-9]+$', NULL, ARRAY['app']), ('app', '^app_[a-z0-9]+$', 'site', ARRAY[]::text[])`,
  );
  await query(
    t.databaseUrl,
    `INSERT INTO tenants (id, name, internal, protected) VALUES ('tn_acme', 'Acme', false, false)`,
  );
  await query(
    t.databaseUrl,
    `INSERT INTO resources (id, type, tenant_id, parent_id) VALUES
       ('site_k2m1', 'site', 'tn_acme', NULL), ('app_9f2c1', 'app', 'tn_acme', 'site_k2m1'),
       ('app_9f2c2', 'app', 'tn_acme', 'site_k2m1')`,
  );
});
afterAll(async () => {
  await t?.close();
});

interface Doc {
  paths: Record<
    string,
    Record<string, { requestBody?: { content: Record<string, { schema: { $ref?: string; example?: unknown } }> } }>
  >;
  components: { schemas: Record<string, { example?: unknown }> };
}

/** The JSON example Swagger UI fills in for a route, from the document the server serves. */
async function exampleBody(path: string): Promise<Record<string, unknown>> {
  const doc = (await request(t.app.server).get('/openapi.json').expect(200)).body as Doc;
  const schema = doc.paths[path]!.post!.requestBody!.content['application/json']!.schema;
  const named = schema.$ref ? doc.components.schemas[schema.$ref.split('/').pop()!] : schema;
  return named!.example as Record<string, unknown>;
}

const operationCount = async () =>
  (await query<{ n: number }>(t.databaseUrl, 'SELECT count(*)::int AS n FROM operations'))[0]!.n;

describe('Swagger UI examples, executed as they stand', () => {
  it('POST /v1/operations: a dry run that shows the plan and creates no operation', async () => {
    const body = await exampleBody('/v1/operations');
    expect(body.dryRun).toBe(true);
    const before = await operationCount();
    const r = await request(t.app.server)
      .post('/v1/operations')
      .set('authorization', t.auth('requester'))
      .send(body)
      .expect(200);
    expect(r.body).toMatchObject({ dryRun: true, plan: { itemCount: 2, tenantCount: 1 } });
    expect(await operationCount()).toBe(before);
    const locks = await query<{ n: number }>(t.databaseUrl, 'SELECT count(*)::int AS n FROM operation_items');
    expect(locks[0]!.n).toBe(0);
  });

  it('PUT /v1/registry/types and POST /v1/registry/tenants: leave the existing types and tenants alone', async () => {
    const before = await query(t.databaseUrl, 'SELECT name, id_pattern, adapter FROM resource_types ORDER BY name');
    await query(t.databaseUrl, `UPDATE tenants SET protected = true WHERE id = 'tn_acme'`);
    for (const [method, path] of [
      ['put', '/v1/registry/types'],
      ['post', '/v1/registry/tenants'],
    ] as const) {
      const doc = (await request(t.app.server).get('/openapi.json').expect(200)).body as Doc;
      const schema = doc.paths[path]![method]!.requestBody!.content['application/json']!.schema;
      const body = (schema.$ref ? doc.components.schemas[schema.$ref.split('/').pop()!] : schema)!.example as object;
      await request(t.app.server)[method](path).set('authorization', t.auth('admin')).send(body).expect(200);
    }
    const after = await query(t.databaseUrl, 'SELECT name, id_pattern, adapter FROM resource_types ORDER BY name');
    expect(after.filter((r) => ['app', 'site'].includes(r.name as string))).toEqual(before);
    const acme = await query(t.databaseUrl, `SELECT protected FROM tenants WHERE id = 'tn_acme'`);
    expect(acme).toEqual([{ protected: true }]);
    await query(t.databaseUrl, `UPDATE tenants SET protected = false WHERE id = 'tn_acme'`);
  });

  it('POST /v1/restores and POST /v1/purges: dry runs, nothing created', async () => {
    for (const path of ['/v1/restores', '/v1/purges']) {
      const body = await exampleBody(path);
      expect(body.dryRun, path).toBe(true);
      const before = await operationCount();
      const r = await request(t.app.server).post(path).set('authorization', t.auth('admin')).send(body);
      // Nothing of tn_acme is deleted: the dry run says so (422) or shows an empty plan; either way nothing is stored.
      expect([200, 422], `${path}: ${JSON.stringify(r.body)}`).toContain(r.status);
      expect(await operationCount(), path).toBe(before);
    }
  });
});
