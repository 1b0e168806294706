// Swagger UI is a dashboard operators click through: "Try it out" fills in the documented example
// and "Execute" sends it. Executed in the order the registry tag's description gives (types,
// tenants, resources, then a submission), the examples are a walkthrough on a fresh install: they
// declare a type, a tenant and resources of their own, and the submissions are dry runs against
// them that show a plan and create nothing. Executed where a real registry is, they change none of
// it (test/http/openapi.test.ts checks the examples' text; test/ui/swagger-ui.test.ts clicks them
// in a browser).
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { query } from '../support/seed.ts';

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp();
  // A real registry beside the examples: the names the response examples use (tn_acme, its site
  // and apps), one app protected and one soft-deleted, so that an example that reached them would
  // show (unprotect, reactivate, re-parent, retype).
  await query(
    t.databaseUrl,
    `INSERT INTO resource_types (name, id_pattern, parent_type, cascade_to) VALUES
       ('site', '^site_[a-z0-9]+$', NULL, ARRAY['app']), ('app', '^app_[a-z0-9]+$', 'site', ARRAY[]::text[])`,
  );
  await query(
    t.databaseUrl,
    `INSERT INTO tenants (id, name, internal, protected) VALUES ('tn_acme', 'Acme', false, true)`,
  );
  await query(
    t.databaseUrl,
    `INSERT INTO resources (id, type, tenant_id, parent_id, protected, state) VALUES
       ('site_k2m1', 'site', 'tn_acme', NULL, false, 'active'),
       ('app_9f2c1', 'app', 'tn_acme', 'site_k2m1', true, 'active'),
       ('app_9f2c2', 'app', 'tn_acme', 'site_k2m1', false, 'soft_deleted'),
       ('app_8f3k2m1q', 'app', 'tn_acme', 'site_k2m1', true, 'active')`,
  );
});
afterAll(async () => {
  await t?.close();
});

interface Media {
  example?: unknown;
  schema: { $ref?: string; example?: unknown };
}
interface Param {
  name: string;
  in: string;
  example?: unknown;
  schema?: { example?: unknown };
}
interface Doc {
  paths: Record<
    string,
    Record<
      string,
      {
        requestBody?: { content: Record<string, Media> };
        parameters?: Param[];
      }
    >
  >;
  components: { schemas: Record<string, { example?: unknown }> };
}

let doc: Doc | undefined;
/** The example Swagger UI fills in for a route's body of this media type, from the served document. */
async function example(method: string, path: string, type = 'application/json'): Promise<unknown> {
  doc ??= (await request(t.app.server).get('/openapi.json').expect(200)).body as Doc;
  const media = doc.paths[path]![method]!.requestBody!.content[type]!;
  if (media.example !== undefined) return media.example;
  const schema = media.schema;
  return (schema.$ref ? doc.components.schemas[schema.$ref.split('/').pop()!] : schema)!.example;
}

/** The parameters of one kind (query, path) Swagger UI fills in from their examples. */
function paramExamples(method: string, path: string, kind = 'query'): Record<string, string> {
  const params = (doc!.paths[path]![method]!.parameters ?? []).filter((p) => p.in === kind);
  return Object.fromEntries(
    params.flatMap((p) => {
      const v = p.example ?? p.schema?.example;
      return typeof v === 'string' || typeof v === 'boolean' ? [[p.name, String(v)]] : [];
    }),
  );
}

const count = async (table: string) =>
  (await query<{ n: number }>(t.databaseUrl, `SELECT count(*)::int AS n FROM ${table}`))[0]!.n;

/** Everything of the real registry an example could change. */
const realRegistry = async () => ({
  types: await query(
    t.databaseUrl,
    `SELECT name, id_pattern, parent_type, cascade_to, adapter FROM resource_types WHERE name NOT LIKE 'example%' ORDER BY name`,
  ),
  tenants: await query(
    t.databaseUrl,
    `SELECT id, name, internal, protected FROM tenants WHERE id <> 'tn_example' ORDER BY id`,
  ),
  resources: await query(
    t.databaseUrl,
    `SELECT id, type, tenant_id, parent_id, protected, state FROM resources WHERE id NOT LIKE 'example%' ORDER BY id`,
  ),
});

describe('Swagger UI examples, executed as they stand', () => {
  it('in the documented order they declare, import and plan against a registry of their own, and touch nothing real', async () => {
    const real = await realRegistry();
    const admin = t.auth('admin');
    const send = (method: 'put' | 'post', path: string) =>
      request(t.app.server)[method](path).set('authorization', admin);

    const types = await send('put', '/v1/registry/types').send((await example('put', '/v1/registry/types')) as object);
    expect(types.status, JSON.stringify(types.body)).toBe(200);
    const tenants = await send('post', '/v1/registry/tenants').send(
      (await example('post', '/v1/registry/tenants')) as object,
    );
    expect(tenants.status, JSON.stringify(tenants.body)).toBe(200);
    const json = await send('post', '/v1/registry/resources').send(
      (await example('post', '/v1/registry/resources')) as object,
    );
    expect(json.status, JSON.stringify(json.body)).toBe(200);
    expect(json.body).toMatchObject({ received: 3, inserted: 3 });
    const ndjson = await send('post', '/v1/registry/resources')
      .set('content-type', 'application/x-ndjson')
      .send((await example('post', '/v1/registry/resources', 'application/x-ndjson')) as string);
    expect(ndjson.status, JSON.stringify(ndjson.body)).toBe(200);
    expect(ndjson.body).toMatchObject({ received: 3, inserted: 0 });

    // The three submission forms: each a dry run showing the plan of the example's two apps.
    const operationsBefore = await count('operations');
    const plans = [
      await send('post', '/v1/operations').send((await example('post', '/v1/operations')) as object),
      await send('post', '/v1/operations')
        .set('content-type', 'application/x-ndjson')
        .send((await example('post', '/v1/operations', 'application/x-ndjson')) as string),
      await send('post', '/v1/operations/text')
        .query(paramExamples('post', '/v1/operations/text'))
        .set('content-type', 'text/plain')
        .send((await example('post', '/v1/operations/text', 'text/plain')) as string),
    ];
    for (const r of plans) {
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect(r.body).toMatchObject({ dryRun: true, plan: { itemCount: 2, tenantCount: 1 } });
    }

    // Restores and purges: dry runs too (nothing of tn_example is deleted: 422, or an empty plan).
    for (const path of ['/v1/restores', '/v1/purges']) {
      const body = (await example('post', path)) as Record<string, unknown>;
      expect(body.dryRun, path).toBe(true);
      const r = await send('post', path).send(body);
      expect([200, 422], `${path}: ${JSON.stringify(r.body)}`).toContain(r.status);
    }
    expect(await count('operations')).toBe(operationsBefore);
    expect(await count('operation_items')).toBe(0);
    expect(await count('resource_locks')).toBe(0);
    expect(await realRegistry()).toEqual(real);

    // The registry's reads, with their filters and path IDs as filled in, find the examples' rows
    // (a tenant's path example is a tenant ID, not an app's).
    const list = await request(t.app.server)
      .get('/v1/registry/resources')
      .query(paramExamples('get', '/v1/registry/resources'))
      .set('authorization', admin)
      .expect(200);
    expect((list.body as { items: { id: string }[] }).items.map((r) => r.id)).toEqual([
      'example_app_9f2c1',
      'example_app_9f2c2',
    ]);
    for (const path of [
      '/v1/registry/resources/{id}',
      '/v1/registry/tenants/{id}',
      '/v1/registry/tenants/{id}/contact',
    ]) {
      const id = paramExamples('get', path, 'path').id!;
      const r = await request(t.app.server).get(path.replace('{id}', id)).set('authorization', admin);
      expect(r.status, `${path} with ${id}: ${JSON.stringify(r.body)}`).toBe(200);
    }
  });
});
