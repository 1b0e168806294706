// The bulk path of a large import (secondary indexes and foreign keys rebuilt instead of
// maintained row by row) must leave the schema exactly as it was, and must not wait long for
// its exclusive lock.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import request from 'supertest';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { FIXTURE_TYPES, ndjson, resourcesFor, shapeForRows, tenantsFor } from '../support/registry-fixtures.ts';

let t: TestApp;
const ROWS = 100_000; // merge.ts BULK_MIN_ROWS
beforeAll(async () => {
  t = await buildTestApp();
  const admin = t.auth('admin');
  await request(t.app.server)
    .put('/v1/registry/types')
    .set('authorization', admin)
    .send({ types: FIXTURE_TYPES })
    .expect(200);
  await request(t.app.server)
    .post('/v1/registry/tenants')
    .set('authorization', admin)
    .send({ tenants: tenantsFor(shapeForRows(ROWS).tenants) })
    .expect(200);
});
afterAll(async () => {
  await t?.close();
});

const schemaOf = async () =>
  (
    await t.app.db.pool.query(`
  SELECT 'index' AS kind, indexname AS name, indexdef AS def, true AS valid FROM pg_indexes WHERE tablename = 'resources'
  UNION ALL
  SELECT 'constraint', conname, pg_get_constraintdef(oid), convalidated FROM pg_constraint WHERE conrelid = 'resources'::regclass
  ORDER BY 1, 2`)
  ).rows;
const lastImport = async () =>
  (
    await t.app.db.pool.query(
      `SELECT payload FROM audit_events WHERE action = 'registry.import' ORDER BY seq DESC LIMIT 1`,
    )
  ).rows[0].payload;
const postNdjson = (body: string) =>
  request(t.app.server)
    .post('/v1/registry/resources')
    .set('authorization', t.auth('admin'))
    .set('content-type', 'application/x-ndjson')
    .send(body);
const suffixed = (suffix: string) =>
  [...resourcesFor(shapeForRows(ROWS))].map((r) => ({
    ...r,
    id: r.id + suffix,
    ...(r.parentId ? { parentId: r.parentId + suffix } : {}),
  }));

describe('large imports', () => {
  it('rebuilds indexes and foreign keys exactly as they were, and they still hold', async () => {
    const before = await schemaOf();
    expect(before.map((r) => r.name)).toEqual(
      expect.arrayContaining([
        'resources_tenant_id_idx',
        'resources_parent_id_idx',
        'resources_tenant_id_fkey',
        'resources_type_fkey',
      ]),
    );
    const r = await postNdjson(ndjson(resourcesFor(shapeForRows(ROWS)))).expect(200);
    expect(r.body).toEqual({ received: ROWS, inserted: ROWS, updated: 0, unchanged: 0 });
    expect(await lastImport()).toMatchObject({ inserted: ROWS, bulk: true });
    expect(await schemaOf()).toEqual(before);
    await expect(
      t.app.db.pool.query(`INSERT INTO resources (id, type, tenant_id) VALUES ('app_x', 'app', 'tn_missing')`),
    ).rejects.toMatchObject({ code: '23503' });
    const counts = await request(t.app.server)
      .get('/v1/registry/tenants/tn_99')
      .set('authorization', t.auth('viewer'))
      .expect(200);
    expect(counts.body.resourceTotal).toBe(1_000);
  });

  it('falls back to row-by-row writes when a reader holds the table, instead of waiting', async () => {
    const reader = new pg.Client({ connectionString: t.databaseUrl });
    await reader.connect();
    try {
      await reader.query('BEGIN');
      await reader.query('SELECT count(*) FROM resources'); // holds ACCESS SHARE until the end of its transaction
      const r = await postNdjson(ndjson(suffixed('b'))).expect(200);
      expect(r.body).toMatchObject({ inserted: ROWS, updated: 0 });
      expect(await lastImport()).toMatchObject({ inserted: ROWS, bulk: false });
    } finally {
      await reader.query('ROLLBACK');
      await reader.end();
    }
    expect((await t.app.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM resources')).rows[0]!.n).toBe(
      2 * ROWS,
    );
  });
});
