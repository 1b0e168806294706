// What a restore refuses, before anything runs: a scope that is missing, doubled or incomplete
// (422 naming the fields), a source operation that is live or not a delete, nothing to restore, and
// — per ID, like a delete plan — every resource that cannot be restored as asked: unknown,
// type_mismatch, duplicate, not_deleted, in_flight (naming the live operation), superseded,
// no_snapshot, erased, purged, parent_deleted. One such ID rejects the whole restore.
import pg from 'pg';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { snapshotStore } from '../../src/modules/snapshots/store.ts';
import { buildExecHarness, submitAndStart, type ExecHarness } from '../support/execution.ts';
import { command } from '../support/exec-helpers.ts';
import { TEST_SNAPSHOT_KEY_BYTES } from '../support/keys.ts';
import { APPS, appsOfSite, deleteAndComplete, postRestore, useRegistry } from '../support/restores.ts';
import { appId, query, seedRegistry, siteId, tenantId } from '../support/seed.ts';

let h: ExecHarness;
let siteDeleted: string;
let beforeDeletes: Date;

const importResources = (resources: Record<string, unknown>[]) =>
  request(h.app.server)
    .post('/v1/registry/resources')
    .set('authorization', h.auth('admin'))
    .send({ resources })
    .expect(200);

beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 30, appsPerSite: APPS });
  await useRegistry(h);
  beforeDeletes = new Date();
  await deleteAndComplete(
    h,
    'app',
    [0, 1, 2, 3, 4, 5].flatMap((s) => appsOfSite(s).slice(0, 2)),
  );
  siteDeleted = await deleteAndComplete(h, 'site', [siteId(6)]);
});
afterAll(async () => {
  await h?.close();
});

describe('scope', () => {
  it.each([
    [{}, 'SCOPE_REQUIRED', []],
    [{ tenantId: tenantId(0), operationId: 'op_x' }, 'SCOPE_CONFLICT', ['tenantId', 'operationId']],
    [{ deletedSince: '2026-01-01T00:00:00Z', ids: ['app_1'] }, 'SCOPE_CONFLICT', ['deletedSince', 'ids']],
    [{ deletedSince: '2026-01-01T00:00:00Z' }, 'SCOPE_INCOMPLETE', ['deletedSince']],
    [{ targetType: 'app' }, 'SCOPE_INCOMPLETE', ['targetType']],
    [{ ids: ['app_1'] }, 'SCOPE_INCOMPLETE', ['ids']],
    // A future asOf would quietly mean "the latest" (no snapshot is taken after now): a typo, refused.
    [{ tenantId: tenantId(0), asOf: new Date(Date.now() + 3_600_000).toISOString() }, 'AS_OF_IN_FUTURE', ['asOf']],
    // Nothing is deleted after now: it was answered NOTHING_TO_RESTORE, as if the tenant had nothing deleted.
    [
      { tenantId: tenantId(0), deletedSince: new Date(Date.now() + 3_600_000).toISOString() },
      'DELETED_SINCE_IN_FUTURE',
      ['deletedSince'],
    ],
  ])('%j → 422 %s naming the fields', async (body, code, fields) => {
    const r = await postRestore(h, body);
    expect(r.status, JSON.stringify(r.body)).toBe(422);
    expect(r.body).toMatchObject({ code, details: { fields } });
    // A time in the future names its field as VALIDATION_FAILED does, too.
    if (code.endsWith('_IN_FUTURE')) expect(r.body.details.field).toBe(`body.${fields[0]}`);
  });

  it('refuses a source that is unknown, live or not a delete, and says when there is nothing to restore', async () => {
    expect((await postRestore(h, { operationId: 'op_nope' })).body).toMatchObject({
      code: 'NOT_FOUND',
      details: { operation: 'op_nope' },
    });
    const live = await submitAndStart(h, { ids: [appId(20, 0)], rollout: { bakeSeconds: 0 } }, false);
    expect((await postRestore(h, { operationId: live.id })).body).toMatchObject({
      code: 'OPERATION_LIVE',
      details: { operationId: live.id, state: 'approved' },
    });
    // Not started: a rollback is refused then, so the way out named is the abort.
    expect((await postRestore(h, { operationId: live.id })).body.message).toContain(
      `abort it (POST /v1/operations/${live.id}/abort)`,
    );
    // Rolling back: its rollback is the way already under way ("or roll it back first" read as a
    // contradiction, trial L). The state alone decides the words: set it for the request.
    await query(h.databaseUrl, `UPDATE operations SET state = 'rolling_back' WHERE id = $1`, [live.id]);
    const back = (await postRestore(h, { operationId: live.id })).body;
    await query(h.databaseUrl, `UPDATE operations SET state = 'approved' WHERE id = $1`, [live.id]);
    expect(back).toMatchObject({ code: 'OPERATION_LIVE', details: { state: 'rolling_back' } });
    expect(back.message).toContain('its rollback is bringing back what it deleted: let it end');
    expect(back.message).not.toContain('roll it back');
    await command(h, 'operator', live.id, 'abort', { reason: 'not needed' }).expect(200);
    // Ended without ever starting: it deleted nothing, said so for a restore and a purge (a trial read
    // "deleted nothing … that is still deleted (what was rolled back or restored since …)").
    const aborted = await postRestore(h, { operationId: live.id });
    expect([aborted.status, aborted.body.code]).toEqual([422, 'NOTHING_TO_RESTORE']);
    expect(aborted.body.message).toMatch(/ended \w+ without ever starting: it deleted nothing/);
    const purgeAborted = await request(h.app.server)
      .post('/v1/purges')
      .set('authorization', h.auth('requester'))
      .send({ operationId: live.id, reason: 'Purge a plan never run', ticket: 'T-8', dryRun: true });
    expect([purgeAborted.status, purgeAborted.body.code]).toEqual([422, 'NOTHING_TO_PURGE']);
    const restore = await postRestore(h, { targetType: 'app', ids: [appId(5, 0)] });
    expect(restore.status).toBe(201);
    expect((await postRestore(h, { operationId: restore.body.id })).body).toMatchObject({ code: 'NOT_A_DELETE' });
    const purgeOfRestore = await request(h.app.server)
      .post('/v1/purges')
      .set('authorization', h.auth('requester'))
      .send({ operationId: restore.body.id, reason: 'Purge a restore', ticket: 'T-8', dryRun: true });
    expect(purgeOfRestore.body).toMatchObject({
      code: 'NOT_A_DELETE',
      message: expect.stringContaining('is a restore, not a delete: there is nothing of it to purge'),
    });
    await command(h, 'operator', restore.body.id, 'abort', { reason: 'not needed' }).expect(200);
    const none = await postRestore(h, { tenantId: tenantId(25) });
    expect([none.status, none.body.code]).toEqual([422, 'NOTHING_TO_RESTORE']);
    // A tenant that is not in the registry (a typo) is named as such, for a restore and a purge.
    const typo = await postRestore(h, { tenantId: 'tenant_nope' });
    expect([typo.status, typo.body.code]).toEqual([404, 'NOT_FOUND']);
    expect(typo.body).toMatchObject({
      message: 'Tenant tenant_nope does not exist',
      details: { tenant: 'tenant_nope' },
    });
    const purge = await request(h.app.server)
      .post('/v1/purges')
      .set('authorization', h.auth('requester'))
      .send({ tenantId: 'tenant_nope', reason: 'Retention ended', ticket: 'CHG-1' });
    expect([purge.status, purge.body.code]).toEqual([404, 'NOT_FOUND']);
    const later = await postRestore(h, {
      tenantId: tenantId(0),
      deletedSince: new Date(Date.now() + 60_000).toISOString(),
    });
    expect(later.body.code).toBe('NOTHING_TO_RESTORE');
    expect((await postRestore(h, { targetType: 'nope', ids: ['x_1'] })).body).toMatchObject({
      code: 'UNKNOWN_TARGET_TYPE',
      details: { field: 'targetType' },
    });
    // A typo names the type meant and the declared ones (the CLI names --type).
    const typeTypo = (await postRestore(h, { targetType: 'ap', ids: ['x_1'] })).body;
    expect(typeTypo).toMatchObject({ code: 'UNKNOWN_TARGET_TYPE', details: { targetType: 'ap', didYouMean: 'app' } });
    expect(typeTypo.details.declared).toEqual(expect.arrayContaining(['app', 'site']));
    expect(typeTypo.message).toContain('(did you mean "app"?); declared types: ');
    // A restore never rolls back, so it has no onHalt to set.
    const r = await postRestore(h, { tenantId: tenantId(0), haltPolicy: { onHalt: 'rollback' } });
    expect([r.status, r.body.code]).toEqual([400, 'VALIDATION_FAILED']);
  });

  it('deletedSince keeps only what was deleted since then', async () => {
    const s = 26;
    await deleteAndComplete(h, 'app', [appId(s, 0)]);
    const between = new Date();
    await deleteAndComplete(h, 'app', [appId(s, 1)]);
    const r = await postRestore(h, { tenantId: tenantId(s), deletedSince: between.toISOString(), dryRun: true });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.plan.itemCount).toBe(1);
    const all = await postRestore(h, { tenantId: tenantId(s), dryRun: true });
    expect(all.body.plan.itemCount).toBe(2);
  });
});

describe('per ID, like a delete plan', () => {
  it('rejects the whole restore with a report naming every offending ID and why; nothing is held', async () => {
    const ok = appId(0, 0);
    // in_flight: one held by a planned restore, one by a planned delete.
    const heldByRestore = await postRestore(h, { targetType: 'app', ids: [appId(1, 0)] });
    expect(heldByRestore.status).toBe(201);
    const heldByDelete = await submitAndStart(h, { ids: [appId(11, 0)], rollout: { bakeSeconds: 0 } }, false);
    // superseded: re-created active by an import; changed (protected) after the delete.
    await importResources([
      { id: appId(2, 0), type: 'app', tenantId: tenantId(2), parentId: siteId(2), state: 'active' },
      { id: appId(2, 1), type: 'app', tenantId: tenantId(2), parentId: siteId(2), protected: true },
      // no_snapshot: deleted, but not by Blastgate. purged: gone for good since.
      { id: appId(12, 0), type: 'app', tenantId: tenantId(12), parentId: siteId(12), state: 'soft_deleted' },
      { id: appId(4, 0), type: 'app', tenantId: tenantId(4), parentId: siteId(4), state: 'purged' },
    ]);
    // erased: its snapshot key destroyed (a compliance erasure).
    const client = new pg.Client({ connectionString: h.databaseUrl });
    await client.connect();
    await snapshotStore(TEST_SNAPSHOT_KEY_BYTES).erase(client as unknown as pg.PoolClient, [appId(3, 1)]);
    await client.end();

    const ids = [
      ok,
      'app_99999_99', // unknown
      siteId(7), // type_mismatch
      ok, // duplicate
      appId(10, 0), // not_deleted
      appId(1, 0), // in_flight (restore)
      appId(11, 0), // in_flight (delete)
      appId(2, 0), // superseded (re-created)
      appId(2, 1), // superseded (changed)
      appId(12, 0), // no_snapshot
      appId(3, 1), // erased
      appId(4, 0), // purged
      appId(6, 0), // parent_deleted: taken by its site's delete, the site is not in the list
    ];
    const r = await postRestore(h, { targetType: 'app', ids });
    expect(r.status, JSON.stringify(r.body)).toBe(422);
    expect(r.body.code).toBe('PLAN_REJECTED');
    expect(r.body.details.counts).toEqual({
      ok: 1,
      unknown: 1,
      type_mismatch: 1,
      duplicate: 1,
      not_deleted: 1,
      uncertain: 0,
      in_flight: 2,
      superseded: 2,
      adapter_changed: 0,
      no_snapshot: 1,
      erased: 1,
      purged: 1,
      parent_deleted: 1,
      out_of_scope: 0,
    });
    const o = r.body.details.offenders;
    expect(o.in_flight).toEqual([
      expect.objectContaining({ id: appId(1, 0), index: 5, heldBy: heldByRestore.body.id }),
      expect.objectContaining({ id: appId(11, 0), index: 6, heldBy: heldByDelete.id }),
    ]);
    expect(o.type_mismatch).toEqual([expect.objectContaining({ id: siteId(7), actualType: 'site' })]);
    expect(o.parent_deleted).toEqual([
      expect.objectContaining({
        id: appId(6, 0),
        tenantId: tenantId(6),
        via: { id: siteId(6), type: 'site', tenantId: tenantId(6) },
      }),
    ]);

    // Recorded: the operation (kind restore, rejected), the full report, the audit event.
    const opId = r.body.details.operationId as string;
    const report = await request(h.app.server)
      .get(`/v1/operations/${opId}/report?class=superseded`)
      .set('authorization', h.auth('viewer'))
      .expect(200);
    expect(report.body.items.map((i: { id: string }) => i.id)).toEqual([appId(2, 0), appId(2, 1)]);
    const [row] = await query<{ action: string; state: string }>(
      h.databaseUrl,
      `SELECT action, state FROM operations WHERE id = $1`,
      [opId],
    );
    expect(row).toEqual({ action: 'restore', state: 'rejected' });
    const audit = await query<{ action: string; outcome: string; payload: { counts: Record<string, number> } }>(
      h.databaseUrl,
      `SELECT action, outcome, payload FROM audit_events WHERE operation_id = $1`,
      [opId],
    );
    expect(audit).toEqual([expect.objectContaining({ action: 'restore.rejected', outcome: 'refused' })]);
    expect(audit[0]!.payload.counts.erased).toBe(1);

    // Nothing was held: the ok resource can be restored on its own.
    const alone = await postRestore(h, { targetType: 'app', ids: [ok], dryRun: true });
    expect(alone.status).toBe(200);
    for (const id of [heldByRestore.body.id, heldByDelete.id])
      await command(h, 'operator', id, 'abort', { reason: 'done with it' }).expect(200);
  });

  it('asOf before the only delete: no_snapshot', async () => {
    const r = await postRestore(h, { targetType: 'app', ids: [appId(5, 1)], asOf: beforeDeletes.toISOString() });
    expect(r.status).toBe(422);
    expect(r.body.details.counts).toMatchObject({ no_snapshot: 1, ok: 0 });
  });

  it('an operation restore of a site delete takes the site with its apps; asking for an app of it alone is parent_deleted', async () => {
    const plan = await postRestore(h, { operationId: siteDeleted, dryRun: true });
    expect(plan.status, JSON.stringify(plan.body)).toBe(200);
    expect(plan.body.plan).toMatchObject({ itemCount: 1 + APPS, cascade: [{ type: 'app', count: APPS }] });
    const child = await postRestore(h, { targetType: 'app', ids: [appId(6, 1)], dryRun: true });
    expect(child.status).toBe(422);
    expect(child.body.details).toMatchObject({ operationId: null, counts: { parent_deleted: 1 } });
  });

  it('a resource a listed ID takes along that cannot come back is reported as that ID, at its position in the list', async () => {
    await deleteAndComplete(h, 'site', [siteId(7), siteId(8)]);
    await importResources([
      { id: appId(8, 1), type: 'app', tenantId: tenantId(8), parentId: siteId(8), state: 'purged' },
    ]);
    const ids = [siteId(7), siteId(8)];
    const r = await postRestore(h, { targetType: 'site', ids, dryRun: true });
    expect(r.status, JSON.stringify(r.body)).toBe(422);
    // Only the submitted IDs are counted and named: site 8 is purged because its app is.
    expect(r.body.details.counts).toMatchObject({ ok: 1, purged: 1 });
    expect(Object.values(r.body.details.counts as Record<string, number>).reduce((a, b) => a + b)).toBe(2);
    expect(r.body.details.offenders).toEqual({
      purged: [
        expect.objectContaining({
          index: 1,
          id: siteId(8),
          via: { id: appId(8, 1), type: 'app', tenantId: tenantId(8) },
        }),
      ],
    });
    // A purge of the same list: every class it reports is for one of the two listed IDs.
    const purge = await request(h.app.server)
      .post('/v1/purges')
      .set('authorization', h.auth('requester'))
      .send({ targetType: 'site', ids, reason: 'Purge two sites', ticket: 'T-9', dryRun: true });
    expect(purge.status, JSON.stringify(purge.body)).toBe(422);
    expect(Object.values(purge.body.details.counts as Record<string, number>).reduce((a, b) => a + b)).toBe(2);
    const named = Object.values(purge.body.details.offenders as Record<string, { index: number; id: string }[]>).flat();
    expect(named.map((o) => [o.index, o.id]).sort()).toEqual([
      [0, siteId(7)],
      [1, siteId(8)],
    ]);
  });

  it('a tenant scope leaves out what is purged already (final), and says so, instead of refusing for good', async () => {
    // Tenant 4: two apps deleted by Blastgate, one of them purged since.
    await importResources([
      { id: appId(4, 0), type: 'app', tenantId: tenantId(4), parentId: siteId(4), state: 'purged' },
    ]);
    const r = await postRestore(h, { tenantId: tenantId(4), dryRun: true });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.plan).toMatchObject({ itemCount: 1, leftOut: { purged: 1, ids: [appId(4, 0)] } });
    // By IDs nothing is left out: the purged one is named.
    const byIds = await postRestore(h, { targetType: 'app', ids: [appId(4, 0), appId(4, 1)], dryRun: true });
    expect(byIds.body.details.counts).toMatchObject({ ok: 1, purged: 1 });
    // Nothing due by a time: said so, with when the next retention ends.
    const due = await request(h.app.server)
      .post('/v1/purges')
      .set('authorization', h.auth('requester'))
      .send({ dueBefore: '2020-01-01T00:00:00Z', reason: 'Purge what is due', ticket: 'T-10', dryRun: true });
    expect(due.status, JSON.stringify(due.body)).toBe(422);
    expect(due.body).toMatchObject({
      code: 'NOTHING_TO_PURGE',
      message: expect.stringMatching(
        /^Nothing is due for purging by 2020-01-01T00:00:00.000Z: the next resource's retention ends at 20\d\d-/,
      ),
      details: { nextPurgeAfter: expect.any(String) },
    });
  });
});

describe('token scope', () => {
  it('a scoped token restores only its own types and tenants: the rest is out_of_scope, naming the scope', async () => {
    const mint = async (name: string, tenants: string[]) =>
      (
        await request(h.app.server)
          .post('/v1/admin/tokens')
          .set('authorization', h.auth('admin'))
          .send({ name, role: 'requester', scope: { resourceTypes: ['app'], tenants } })
          .expect(201)
      ).body.token as string;
    const elsewhere = await mint('restore-team-1', [tenantId(1)]);
    const own = await mint('restore-team-5', [tenantId(5)]);
    const body = { targetType: 'app', ids: [appId(5, 0)], reason: 'scoped restore', ticket: 'INC-9', dryRun: true };
    const refused = await request(h.app.server)
      .post('/v1/restores')
      .set('authorization', `Bearer ${elsewhere}`)
      .send(body)
      .expect(422);
    expect(refused.body.details).toMatchObject({
      counts: { out_of_scope: 1, ok: 0 },
      scope: { token: 'restore-team-1', tenants: [tenantId(1)] },
    });
    expect(refused.body.message).toContain('Token "restore-team-1" may submit only resources of type app');
    await request(h.app.server).post('/v1/restores').set('authorization', `Bearer ${own}`).send(body).expect(200);
  });
});

describe('dry runs and retries', () => {
  it('dryRun stores nothing and holds nothing; the same Idempotency-Key replays, another body is 409', async () => {
    const body = { targetType: 'app', ids: [appId(5, 0)] };
    const before = await query(h.databaseUrl, 'SELECT count(*)::int AS n FROM operations');
    const dry = await postRestore(h, { ...body, dryRun: true });
    expect(dry.status).toBe(200);
    expect(dry.body).toMatchObject({ dryRun: true, plan: { itemCount: 1, planHash: expect.any(String) } });
    expect(await query(h.databaseUrl, 'SELECT count(*)::int AS n FROM operations')).toEqual(before);

    const first = await postRestore(h, body, 'restore-key-1');
    expect(first.status).toBe(201);
    const again = await postRestore(h, body, 'restore-key-1');
    expect(again.status).toBe(200);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.body.id).toBe(first.body.id);
    const other = await postRestore(h, { ...body, reason: 'another reason' }, 'restore-key-1');
    expect([other.status, other.body.code]).toEqual([409, 'IDEMPOTENCY_KEY_REUSED']);
    // Worded as for a delete: which operation the key belongs to, and its state.
    expect(other.body).toMatchObject({
      message: `This Idempotency-Key belongs to operation ${first.body.id} (planned), submitted with a different request body; use a new key for a different request`,
      details: { operationId: first.body.id, state: 'planned' },
    });
    await command(h, 'operator', first.body.id, 'abort', { reason: 'done with it' }).expect(200);
  });
});
