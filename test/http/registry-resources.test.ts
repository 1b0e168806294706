import { request as httpRequest } from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import request from 'supertest';
import { buildTestApp, type TestApp } from '../support/app.ts';
import {
  FIXTURE_TYPES,
  appId,
  ndjson,
  resourcesFor,
  shapeNdjsonChunks,
  siteId,
  tenantsFor,
  type RegistryShape,
} from '../support/registry-fixtures.ts';

let t: TestApp;
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
    .send({ tenants: tenantsFor(20) })
    .expect(200);
});
afterAll(async () => {
  await t?.close();
});

// 20 tenants × 10 sites × (1 + 99 apps) = 20,000 resources.
const SHAPE: RegistryShape = { tenants: 20, sitesPerTenant: 10, appsPerSite: 99 };

const postNdjson = (body: string, role: 'admin' | 'viewer' = 'admin') =>
  request(t.app.server)
    .post('/v1/registry/resources')
    .set('authorization', t.auth(role))
    .set('content-type', 'application/x-ndjson')
    .send(body);
const postJson = (body: unknown) =>
  request(t.app.server)
    .post('/v1/registry/resources')
    .set('authorization', t.auth('admin'))
    .send(body as object);
const resourceCount = async () =>
  (await t.app.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM resources')).rows[0]!.n;
const getResource = (id: string) =>
  request(t.app.server).get(`/v1/registry/resources/${id}`).set('authorization', t.auth('viewer'));

describe('POST /v1/registry/resources (JSON)', () => {
  it('imports a JSON array and serves each resource', async () => {
    const r = await postJson({
      resources: [
        { id: 'site_json1', type: 'site', tenantId: 'tn_0' },
        { id: 'app_json1', type: 'app', tenantId: 'tn_0', parentId: 'site_json1', protected: true },
        { id: 'app_json2', type: 'app', tenantId: 'tn_0', parentId: null, state: 'soft_deleted' },
      ],
    }).expect(200);
    expect(r.body).toEqual({ received: 3, inserted: 3, updated: 0, unchanged: 0 });
    const app = await getResource('app_json1').expect(200);
    expect(app.body).toEqual({
      id: 'app_json1',
      type: 'app',
      tenantId: 'tn_0',
      parentId: 'site_json1',
      state: 'active',
      protected: true,
      deletedAt: null,
      purgeAfter: null,
      updatedAt: expect.any(String),
      deletedBy: null,
      uncertainDelete: null,
      uncertainPurge: null,
      uncertainRestore: null,
    });
    const deleted = await getResource('app_json2').expect(200);
    expect(deleted.body).toMatchObject({ state: 'soft_deleted', parentId: null, deletedAt: expect.any(String) });
  });

  it('reports rejected rows by array index', async () => {
    const r = await postJson({
      resources: [
        { id: 'site_ok', type: 'site', tenantId: 'tn_0' },
        { id: 'site_bad', type: 'site', tenantId: 'tn_missing' },
      ],
    }).expect(422);
    expect(r.body.details.offenders).toEqual([
      { index: 1, id: 'site_bad', problem: 'unknown_tenant', value: 'tn_missing' },
    ]);
    await getResource('site_ok').expect(404);
    // A duplicate names the first by the same 0-based index (it said "first at 1" for index 0).
    const dup = await postJson({
      resources: [
        { id: 'site_dup', type: 'site', tenantId: 'tn_0' },
        { id: 'site_dup', type: 'site', tenantId: 'tn_0' },
      ],
    }).expect(422);
    expect(dup.body.details.offenders).toEqual([
      { index: 1, id: 'site_dup', problem: 'duplicate_id', value: 'first at index 0' },
    ]);
  });

  it('validates the JSON body: unknown field, bad state, malformed JSON, empty list', async () => {
    const unknown = await postJson({
      resources: [{ id: 'site_x', type: 'site', tenantId: 'tn_0', owner: 'me' }],
    }).expect(400);
    expect(unknown.body).toMatchObject({
      code: 'VALIDATION_FAILED',
      details: [expect.objectContaining({ unknownField: 'owner' })],
    });
    await postJson({ resources: [{ id: 'site_x', type: 'site', tenantId: 'tn_0', state: 'gone' }] }).expect(400);
    await postJson({ resources: [] }).expect(400);
    await postJson({ items: [] }).expect(400);
    const malformed = await request(t.app.server)
      .post('/v1/registry/resources')
      .set('authorization', t.auth('admin'))
      .set('content-type', 'application/json')
      .send('{"resources": [{"id": ')
      .expect(400);
    expect(malformed.body.code).toBe('MALFORMED_BODY');
  });
});

describe('POST /v1/registry/resources (NDJSON)', () => {
  it('imports 20,000 streamed rows, then re-imports them as unchanged', async () => {
    const before = await resourceCount();
    const body = ndjson(resourcesFor(SHAPE));
    const first = await postNdjson(body).expect(200);
    expect(first.body).toEqual({ received: 20_000, inserted: 20_000, updated: 0, unchanged: 0 });
    expect(await resourceCount()).toBe(before + 20_000);
    const app = await getResource(appId(19, 9, 98)).expect(200);
    expect(app.body).toMatchObject({
      type: 'app',
      tenantId: 'tn_19',
      parentId: siteId(19, 9),
      state: 'active',
      protected: false,
    });

    const updatedAt = (await t.app.db.pool.query('SELECT max(updated_at) AS m FROM resources')).rows[0].m;
    const again = await postNdjson(body).expect(200);
    expect(again.body).toEqual({ received: 20_000, inserted: 0, updated: 0, unchanged: 20_000 });
    // Nothing was rewritten: no row has a newer updated_at.
    expect((await t.app.db.pool.query('SELECT max(updated_at) AS m FROM resources')).rows[0].m).toEqual(updatedAt);
  });

  it('writes only changed rows and keeps omitted state and protection', async () => {
    const changed = ndjson([
      { id: appId(0, 0, 0), type: 'app', tenantId: 'tn_0', parentId: siteId(0, 0), state: 'soft_deleted' },
      { id: appId(0, 0, 1), type: 'app', tenantId: 'tn_0', parentId: siteId(0, 1) },
      { id: appId(0, 0, 2), type: 'app', tenantId: 'tn_0', parentId: siteId(0, 0), protected: true },
      { id: appId(0, 0, 3), type: 'app', tenantId: 'tn_0', parentId: siteId(0, 0) },
      { id: 'app_brandnew', type: 'app', tenantId: 'tn_1' },
    ]);
    const r = await postNdjson(changed).expect(200);
    expect(r.body).toEqual({ received: 5, inserted: 1, updated: 3, unchanged: 1 });
    expect((await getResource(appId(0, 0, 0))).body).toMatchObject({
      state: 'soft_deleted',
      deletedAt: expect.any(String),
    });

    // A routine sync without state/protected must not undo the soft delete or the protection.
    const sync = await postNdjson(
      ndjson([
        { id: appId(0, 0, 0), type: 'app', tenantId: 'tn_0', parentId: siteId(0, 0) },
        { id: appId(0, 0, 2), type: 'app', tenantId: 'tn_0', parentId: siteId(0, 0) },
      ]),
    ).expect(200);
    expect(sync.body).toMatchObject({ updated: 0, unchanged: 2 });
    expect((await getResource(appId(0, 0, 0))).body.state).toBe('soft_deleted');
    expect((await getResource(appId(0, 0, 2))).body.protected).toBe(true);

    const restored = await postNdjson(
      ndjson([{ id: appId(0, 0, 0), type: 'app', tenantId: 'tn_0', parentId: siteId(0, 0), state: 'active' }]),
    ).expect(200);
    expect(restored.body.updated).toBe(1);
    expect((await getResource(appId(0, 0, 0))).body).toMatchObject({ state: 'active', deletedAt: null });
  });

  it('keeps the stored parent when parentId is omitted (an import that only marks protection), clears it on null', async () => {
    const id = appId(0, 0, 4);
    expect((await getResource(id)).body.parentId).toBe(siteId(0, 0));
    // As an operator marks one resource protected: without its parent, which must not go with it
    // (it would leave the site's cascade, and stay active under a deleted site).
    const mark = await postNdjson(ndjson([{ id, type: 'app', tenantId: 'tn_0', protected: true }])).expect(200);
    expect(mark.body).toMatchObject({ updated: 1 });
    expect((await getResource(id)).body).toMatchObject({ parentId: siteId(0, 0), protected: true });
    // Who protected it, and when, is in the audit log (what an operator asks after a delete left it).
    const lastImport = async () =>
      (
        await t.app.db.pool.query(
          `SELECT actor, payload FROM audit_events WHERE action = 'registry.import' ORDER BY seq DESC LIMIT 1`,
        )
      ).rows[0] as { actor: string; payload: Record<string, unknown> };
    expect(await lastImport()).toMatchObject({
      actor: 'bootstrap-admin',
      payload: { protection: { count: 1, protected: [id], unprotected: [] } },
    });
    const json = await postJson({ resources: [{ id, type: 'app', tenantId: 'tn_0', protected: false }] }).expect(200);
    expect(json.body).toMatchObject({ updated: 1 });
    expect((await getResource(id)).body).toMatchObject({ parentId: siteId(0, 0), protected: false });
    expect((await lastImport()).payload.protection).toEqual({ count: 1, protected: [], unprotected: [id] });
    const cleared = await postNdjson(ndjson([{ id, type: 'app', tenantId: 'tn_0', parentId: null }])).expect(200);
    expect(cleared.body).toMatchObject({ updated: 1 });
    expect((await lastImport()).payload).not.toHaveProperty('protection');
    expect((await getResource(id)).body.parentId).toBeNull();
    await postNdjson(ndjson([{ id, type: 'app', tenantId: 'tn_0', parentId: siteId(0, 0) }])).expect(200);
  });

  it('names a raw control character that makes a line invalid JSON (a NUL from a C tool), and where it is', async () => {
    const before = await resourceCount();
    const body = `{"id":"site_ok1","type":"site","tenantId":"tn_0"}\n{"id":"site_\u0000x","type":"site","tenantId":"tn_0"}\n`;
    const r = await postNdjson(body).expect(400);
    expect(r.body).toMatchObject({ code: 'MALFORMED_NDJSON', details: { line: 2, codePoint: 'U+0000', column: 13 } });
    expect(r.body.message).toContain('control character U+0000 (NUL) at column 13');
    expect(await resourceCount()).toBe(before);
  });

  it('answers a malformed line with 400 naming it, and writes nothing', async () => {
    const before = await resourceCount();
    // ~2 MB: the server refuses at line 3 while the client is still sending the rest.
    const rows = [...resourcesFor(SHAPE)].map((r) => ({ ...r, id: `${r.id}z` }));
    const lines = ndjson(rows).split('\n');
    lines[2] = '{"id": "site_broken", "type": ';
    const r = await postNdjson(lines.join('\n')).expect(400);
    expect(r.body).toMatchObject({ code: 'MALFORMED_NDJSON', details: { line: 3 } });
    expect(r.body.message).toContain('Line 3');
    expect(await resourceCount()).toBe(before);
  });

  it('answers a line with an unknown field or a wrong type with 400 naming line and field', async () => {
    const before = await resourceCount();
    const rows: object[] = [...resourcesFor({ ...SHAPE, tenants: 2 })].map((r) => ({ ...r, id: `${r.id}y` }));
    rows[1_499] = { id: 'app_y', type: 'app', tenantId: 'tn_0', colour: 'red' };
    const unknown = await postNdjson(ndjson(rows)).expect(400);
    expect(unknown.body).toMatchObject({
      code: 'VALIDATION_FAILED',
      details: [{ line: 1500, field: 'colour', unknownField: 'colour' }],
    });
    rows[1_499] = { id: 'app_y', type: 'app', tenantId: 'tn_0', protected: 'yes' };
    const wrong = await postNdjson(ndjson(rows)).expect(400);
    expect(wrong.body.details).toEqual([expect.objectContaining({ line: 1500, field: 'protected' })]);
    rows[1_499] = { id: 'x'.repeat(201), type: 'app', tenantId: 'tn_0' };
    const long = await postNdjson(ndjson(rows)).expect(400);
    expect(long.body.details).toEqual([expect.objectContaining({ line: 1500, field: 'id' })]);
    rows[1_499] = { id: 'app_nul\u0000', type: 'app', tenantId: 'tn_0' };
    const nul = await postNdjson(ndjson(rows)).expect(400);
    expect(nul.body.details).toEqual([
      expect.objectContaining({
        line: 1500,
        field: 'id',
        codePoint: 'U+0000',
        message: expect.stringContaining('NUL'),
      }),
    ]);
    rows[1_499] = ['not', 'an', 'object'];
    await postNdjson(ndjson(rows)).expect(400);
    expect(await resourceCount()).toBe(before);
  });

  it('rejects unknown tenants and types, bad states, duplicates and pattern mismatches, writing nothing', async () => {
    const before = await resourceCount();
    const rows: object[] = [...resourcesFor({ ...SHAPE, tenants: 1 })].map((r) => ({ ...r, id: `${r.id}w` }));
    rows.push({ id: appId(5, 5, 5), type: 'app', tenantId: 'tn_5', state: 'soft_deleted' }); // a valid update in the same upload
    rows[9] = { id: 'app_w9', type: 'app', tenantId: 'tn_nope' };
    rows[19] = { id: 'db_w19', type: 'database', tenantId: 'tn_0' };
    rows[29] = { id: 'app_w29', type: 'app', tenantId: 'tn_0', state: 'deleted' };
    rows[39] = { id: 'site_w39', type: 'app', tenantId: 'tn_0' }; // a site ID in the app type
    rows[49] = { id: 'app_w9', type: 'app', tenantId: 'tn_0' }; // duplicate of line 10
    const r = await postNdjson(ndjson(rows)).expect(422);
    expect(r.body.code).toBe('REGISTRY_REJECTED');
    expect(r.body.details).toMatchObject({
      received: 1_001,
      rejectedRows: 5,
      counts: { unknown_tenant: 1, unknown_type: 1, bad_state: 1, pattern_mismatch: 1, duplicate_id: 1 },
    });
    expect(r.body.details.offenders).toEqual([
      { line: 10, id: 'app_w9', problem: 'unknown_tenant', value: 'tn_nope' },
      { line: 20, id: 'db_w19', problem: 'unknown_type', value: 'database' },
      { line: 30, id: 'app_w29', problem: 'bad_state', value: 'deleted' },
      { line: 40, id: 'site_w39', problem: 'pattern_mismatch', value: '^app_[a-z0-9]+$' },
      { line: 50, id: 'app_w9', problem: 'duplicate_id', value: 'first at line 10' },
    ]);
    expect(await resourceCount()).toBe(before);
    expect((await getResource(appId(5, 5, 5))).body.state).toBe('active');
  });

  it('rejects impossible parents (itself, unknown, not of the parentType), writing nothing; a parent in the same upload is fine', async () => {
    const before = await resourceCount();
    const r = await postNdjson(
      ndjson([
        { id: 'app_selfp', type: 'app', tenantId: 'tn_0', parentId: 'app_selfp' },
        { id: 'app_nop', type: 'app', tenantId: 'tn_0', parentId: 'site_nowhere' },
        { id: 'app_underapp', type: 'app', tenantId: 'tn_0', parentId: appId(0, 0, 1) },
        { id: 'site_newp', type: 'site', tenantId: 'tn_0' },
        { id: 'app_newp', type: 'app', tenantId: 'tn_0', parentId: 'site_newp' },
      ]),
    ).expect(422);
    expect(r.body.code).toBe('REGISTRY_REJECTED');
    expect(r.body.details.counts).toEqual({ parent_is_self: 1, unknown_parent: 1, parent_type_mismatch: 1 });
    expect(r.body.details.offenders).toEqual([
      { line: 1, id: 'app_selfp', problem: 'parent_is_self', value: 'app_selfp' },
      { line: 2, id: 'app_nop', problem: 'unknown_parent', value: 'site_nowhere' },
      {
        line: 3,
        id: 'app_underapp',
        problem: 'parent_type_mismatch',
        value: `app (${appId(0, 0, 1)}); app needs site`,
      },
    ]);
    expect(await resourceCount()).toBe(before);
    const ok = await postNdjson(
      ndjson([
        { id: 'site_newp', type: 'site', tenantId: 'tn_0' },
        { id: 'app_newp', type: 'app', tenantId: 'tn_0', parentId: 'site_newp' },
      ]),
    ).expect(200);
    expect(ok.body).toMatchObject({ inserted: 2 });
  });

  it('rejects a loop of parents (a type with no parentType takes its own kind), in the upload or through the registry', async () => {
    // Two sites each the other's parent: every cascade, purge and restore order walks the family
    // up or down, and a loop has no top (a probe's purge sent both side by side).
    const before = await resourceCount();
    const loop = await postNdjson(
      ndjson([
        { id: 'site_loop1', type: 'site', tenantId: 'tn_0', parentId: 'site_loop2' },
        { id: 'site_loop2', type: 'site', tenantId: 'tn_0', parentId: 'site_loop1' },
      ]),
    ).expect(422);
    expect(loop.body.details.counts).toEqual({ parent_loop: 2 });
    expect(loop.body.details.offenders[0]).toEqual({
      line: 1,
      id: 'site_loop1',
      problem: 'parent_loop',
      value: 'site_loop1 → site_loop2 → site_loop1',
    });
    expect(await resourceCount()).toBe(before);
    // A chain is fine; putting its top under its own grandchild is not.
    await postNdjson(
      ndjson([
        { id: 'site_top', type: 'site', tenantId: 'tn_0' },
        { id: 'site_mid', type: 'site', tenantId: 'tn_0', parentId: 'site_top' },
        { id: 'site_low', type: 'site', tenantId: 'tn_0', parentId: 'site_mid' },
      ]),
    ).expect(200);
    const moved = await postNdjson(
      ndjson([{ id: 'site_top', type: 'site', tenantId: 'tn_0', parentId: 'site_low' }]),
    ).expect(422);
    expect(moved.body.details.offenders).toEqual([
      {
        line: 1,
        id: 'site_top',
        problem: 'parent_loop',
        value: 'site_top → site_low → site_mid → site_top',
      },
    ]);
    expect((await getResource('site_top')).body.parentId ?? null).toBeNull();
  });

  it('rejects a loop closed by a row of a type with a parentType, and a loop longer than a thousand', async () => {
    // site_la under app_lx under site_lb, then app_lx put under site_la: the loop's new link is the app's.
    await postNdjson(
      ndjson([
        { id: 'site_la', type: 'site', tenantId: 'tn_0' },
        { id: 'site_lb', type: 'site', tenantId: 'tn_0' },
        { id: 'app_lx', type: 'app', tenantId: 'tn_0', parentId: 'site_lb' },
      ]),
    ).expect(200);
    await postNdjson(ndjson([{ id: 'site_la', type: 'site', tenantId: 'tn_0', parentId: 'app_lx' }])).expect(200);
    const closed = await postNdjson(
      ndjson([{ id: 'app_lx', type: 'app', tenantId: 'tn_0', parentId: 'site_la' }]),
    ).expect(422);
    expect(closed.body.details.offenders).toEqual([
      { line: 1, id: 'app_lx', problem: 'parent_loop', value: 'app_lx → site_la → app_lx' },
    ]);
    // A chain of 1,500 sites, its top then put under its bottom.
    const chain = Array.from({ length: 1_500 }, (_, k) => `site_ch${k}`);
    await postNdjson(
      ndjson(chain.map((id, k) => ({ id, type: 'site', tenantId: 'tn_0', ...(k ? { parentId: chain[k - 1] } : {}) }))),
    ).expect(200);
    const long = await postNdjson(
      ndjson([{ id: chain[0], type: 'site', tenantId: 'tn_0', parentId: chain[chain.length - 1] }]),
    ).expect(422);
    expect(long.body.details.counts).toEqual({ parent_loop: 1 });
  });

  it('carries backslashes and non-ASCII IDs through COPY unchanged', async () => {
    const ids = ['app_back\\slash', 'app_tab\\tnot', 'app_ünïcode_✓'];
    const r = await postNdjson(ndjson(ids.map((id) => ({ id, type: 'app', tenantId: 'tn_0' })))).expect(422);
    expect(r.body.details.offenders.map((o: { id: string }) => o.id)).toEqual(ids);
  });

  it('lists at most 100 offenders but counts all of them', async () => {
    const rows = Array.from({ length: 250 }, (_, i) => ({ id: `app_many${i}`, type: 'app', tenantId: 'tn_unknown' }));
    const r = await postNdjson(ndjson(rows)).expect(422);
    expect(r.body.details.counts).toEqual({ unknown_tenant: 250 });
    expect(r.body.details.offenders).toHaveLength(100);
    expect(r.body.details.offenders[99].line).toBe(100);
  });

  it('answers an empty upload 400, other content types 415, and checks the role', async () => {
    expect((await postNdjson('\n\n').expect(400)).body.code).toBe('EMPTY_IMPORT');
    const text = await request(t.app.server)
      .post('/v1/registry/resources')
      .set('authorization', t.auth('admin'))
      .set('content-type', 'text/plain')
      .send('site_a\n')
      .expect(415);
    expect(text.body).toMatchObject({
      code: 'UNSUPPORTED_MEDIA_TYPE',
      details: { accepted: ['application/json', 'application/x-ndjson'] },
    });
    const csv = await request(t.app.server)
      .post('/v1/registry/resources')
      .set('authorization', t.auth('admin'))
      .set('content-type', 'text/csv')
      .send('id,type\n')
      .expect(415);
    expect(csv.body.code).toBe('UNSUPPORTED_MEDIA_TYPE');
    await request(t.app.server)
      .post('/v1/registry/resources')
      .set('content-type', 'application/x-ndjson')
      .send('{}\n')
      .expect(401);
    const before = await resourceCount();
    expect(
      (await postNdjson(ndjson([{ id: 'site_viewer', type: 'site', tenantId: 'tn_0' }]), 'viewer').expect(403)).body
        .code,
    ).toBe('FORBIDDEN');
    expect(await resourceCount()).toBe(before);
  });

  it('records each import in the audit log with its counts', async () => {
    const r = await t.app.db.pool.query(
      `SELECT actor, payload FROM audit_events WHERE action = 'registry.import' ORDER BY seq`,
    );
    expect(r.rows.map((x) => x.payload)).toContainEqual({
      received: 20_000,
      inserted: 20_000,
      updated: 0,
      unchanged: 0,
      format: 'ndjson',
      bulk: false,
    });
    expect(r.rows.map((x) => x.payload)).toContainEqual({
      received: 20_000,
      inserted: 0,
      updated: 0,
      unchanged: 20_000,
      format: 'ndjson',
      bulk: false,
    });
    expect(r.rows[0].actor).toBe('bootstrap-admin');
  });
});

/** Polls `check` until it holds, failing after `ms` (no fixed sleeps). */
async function eventually(check: () => Promise<boolean>, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((r) => setImmediate(r));
  }
}

describe('streamed uploads over a real connection', () => {
  let address: string;
  beforeAll(async () => {
    address = await t.app.listen({ host: '127.0.0.1', port: 0 });
  });

  it('answers a refusal while the client is still sending, and lets the upload finish', async () => {
    const before = await resourceCount();
    const chunks = shapeNdjsonChunks({ tenants: 200, sitesPerTenant: 10, appsPerSite: 99 }); // 200k lines, ~16 MB
    async function* body() {
      yield '{"id":"site_a","type":"site","tenantId":"tn_0"}\n{"id": 42}\n';
      yield* chunks;
    }
    let sent!: Promise<void>;
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest(
        `${address}/v1/registry/resources`,
        { method: 'POST', headers: { authorization: t.auth('admin'), 'content-type': 'application/x-ndjson' } },
        (r) => {
          let text = '';
          r.setEncoding('utf8');
          r.on('data', (c: string) => {
            text += c;
          });
          r.on('end', () => resolve({ status: r.statusCode ?? 0, body: text }));
        },
      );
      req.on('error', reject);
      sent = pipeline(Readable.from(body()), req);
    });
    // The server read off the rest of the body: the client's upload completes instead of stalling
    // on a connection nobody reads (which would also hold up the server's shutdown).
    await sent;
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body)).toMatchObject({ code: 'VALIDATION_FAILED', details: [{ line: 2, field: 'id' }] });
    expect(await resourceCount()).toBe(before);
  }, 10_000); // an answer stuck behind the unread body would take minutes

  it('is rolled back and frees its database connection when the client goes away', async () => {
    const before = await resourceCount();
    const copying = async () =>
      (
        await t.app.db.pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'COPY registry_stage%' AND state <> 'idle'`,
        )
      ).rows[0]!.n;
    const req = httpRequest(`${address}/v1/registry/resources`, {
      method: 'POST',
      headers: { authorization: t.auth('admin'), 'content-type': 'application/x-ndjson' },
    });
    req.on('error', () => undefined);
    req.write(ndjson(resourcesFor({ tenants: 1, sitesPerTenant: 5, appsPerSite: 99 })));
    await eventually(async () => (await copying()) > 0);
    req.destroy();
    await eventually(async () => (await copying()) === 0);
    const open = await t.app.db.pool.query(
      `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'`,
    );
    expect(open.rowCount).toBe(0);
    expect(await resourceCount()).toBe(before);
  });

  it('rejects a NUL character in a JSON body with 400', async () => {
    const r = await postJson({ resources: [{ id: 'site_\u0000', type: 'site', tenantId: 'tn_0' }] }).expect(400);
    expect(r.body.details).toEqual([expect.objectContaining({ field: 'body.resources.0.id', codePoint: 'U+0000' })]);
    expect(r.body.message).toContain('body.resources.0.id');
  });
});

describe('GET /v1/registry/resources/{id}', () => {
  it('answers 404 for an unknown ID and 401 without a token', async () => {
    const r = await getResource('app_nope').expect(404);
    expect(r.body.code).toBe('NOT_FOUND');
    await request(t.app.server).get('/v1/registry/resources/app_json1').expect(401);
  });
});
