// Retention and gated purges against real PostgreSQL, Redis and the downstream HTTP service: a soft
// delete records when each resource's retention ends (purgeAfter); a purge within retention is
// refused per ID naming it; a due purge runs only after a second person's approval and ends
// `purged` in the registry and downstream; it is never rolled back; the scheduled proposal plans
// and waits; a later restore reports `purged`.
import { Queue } from 'bullmq';
import pg from 'pg';
import request from 'supertest';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createRegistryAdapter } from '../../src/modules/adapters/registry-adapter.ts';
import { operationReads } from '../../src/modules/operations/repository.ts';
import {
  proposeDuePurge,
  PURGE_SCHEDULER_ID,
  RETENTION_QUEUE,
  RETENTION_SCHEDULER,
  startPurgeScheduler,
} from '../../src/modules/purges/scheduler.ts';
import { createRedis } from '../../src/plugins/redis.ts';
import { METRICS_TOKEN } from '../support/app.ts';
import { command, ledger } from '../support/exec-helpers.ts';
import { buildExecHarness, waitForState, waitSettled, type ExecHarness } from '../support/execution.ts';
import { IDEMPOTENCY_KEY_PATTERN } from '../support/keys.ts';
import {
  APPS,
  appsOfSite,
  auditOf,
  deleteAndComplete,
  getRestore,
  postRestore,
  registryStates,
  runRestore,
  useHttp,
  useRegistry,
} from '../support/restores.ts';
import { query, seedRegistry, siteId, tenantId } from '../support/seed.ts';

let h: ExecHarness;
let nextSite = 0;
const freshSite = () => nextSite++;
const ROLLOUT = { bakeSeconds: 0, concurrency: 4, waves: ['1', '100%'] };
const DAY = 86_400_000;

beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 40, appsPerSite: APPS });
});
afterAll(async () => {
  await h?.close();
});
beforeEach(async () => {
  h.downstream.reset();
  await useRegistry(h);
});

const postPurge = (body: Record<string, unknown>, key?: string) => {
  const r = request(h.app.server).post('/v1/purges').set('authorization', h.auth('requester'));
  if (key) r.set('idempotency-key', key);
  return r.send({ reason: 'Retention ended', ticket: 'CHG-2211', rollout: ROLLOUT, ...body });
};
/** A dry-run delete plan of app IDs (a second delete of what may be live again). */
const planDelete = (ids: string[]) =>
  request(h.app.server)
    .post('/v1/operations')
    .set('authorization', h.auth('requester'))
    .send({ targetType: 'app', reason: 'Remove the legacy app', ticket: 'CHG-1', ids, dryRun: true });
const purgeAfterOf = async (ids: string[]) =>
  Object.fromEntries(
    (
      await query<{ id: string; purge_after: Date | null }>(
        h.databaseUrl,
        'SELECT id, purge_after FROM resources WHERE id = ANY($1)',
        [ids],
      )
    ).map((r) => [r.id, r.purge_after]),
  );
/** Their retention ended yesterday. */
const makeDue = (ids: string[]) =>
  query(h.databaseUrl, `UPDATE resources SET purge_after = now() - interval '1 day' WHERE id = ANY($1)`, [ids]);
const siteAndApps = (s: number) => [siteId(s), ...appsOfSite(s)];
/** Two apps of a fresh site, live downstream, soft-deleted through their HTTP adapter. */
/** GET /v1/registry/resources/{id}. */
const registryView = async (id: string) =>
  (await request(h.app.server).get(`/v1/registry/resources/${id}`).set('authorization', h.auth('viewer')).expect(200))
    .body as Record<string, unknown>;

async function twoHttpAppsDeleted() {
  await useHttp(h);
  const s = freshSite();
  const apps = appsOfSite(s).slice(0, 2);
  for (const x of apps)
    h.downstream.resources.set(x, { id: x, tenantId: tenantId(s), state: 'active', data: { name: x } });
  await deleteAndComplete(h, 'app', apps);
  return { s, apps };
}

async function approveAndRun(op: { id: string; planHash: string }) {
  await command(h, 'approver', op.id, 'approve', { planHash: op.planHash }).expect(200);
  await command(h, 'operator', op.id, 'start').expect(200);
  await waitForState(h, op.id, ['completed', 'completed_with_failures', 'halted', 'cancelled']);
  return getRestore(h, op.id);
}

describe('retention', () => {
  it('a soft delete records purgeAfter = deleted + retention (the type’s, else the policy’s) for the item and what its cascade took; a rollback clears it', async () => {
    await query(h.databaseUrl, `UPDATE resource_types SET retention_days = 7 WHERE name = 'app'`);
    try {
      const s = freshSite();
      const before = Date.now();
      const del = await deleteAndComplete(h, 'site', [siteId(s)]);
      const after = await purgeAfterOf(siteAndApps(s));
      expect(after[siteId(s)]!.getTime()).toBeGreaterThanOrEqual(before + 30 * DAY - 1000);
      expect(after[siteId(s)]!.getTime()).toBeLessThanOrEqual(Date.now() + 30 * DAY);
      for (const a of appsOfSite(s)) {
        expect(after[a]!.getTime()).toBeGreaterThanOrEqual(before + 7 * DAY - 1000);
        expect(after[a]!.getTime()).toBeLessThanOrEqual(Date.now() + 7 * DAY);
      }
      // Shown on the registry's resource read.
      const read = await request(h.app.server)
        .get(`/v1/registry/resources/${siteId(s)}`)
        .set('authorization', h.auth('viewer'))
        .expect(200);
      expect(read.body.purgeAfter).toBe(after[siteId(s)]!.toISOString());
      const items = await request(h.app.server)
        .get(`/v1/operations/${del}/items`)
        .set('authorization', h.auth('viewer'))
        .expect(200);
      expect(items.body.items[0].purgeAfter).toBe(after[siteId(s)]!.toISOString());

      await command(h, 'operator', del, 'rollback', { reason: 'wrong site' }).expect(200);
      expect((await waitForState(h, del, ['rolled_back', 'rollback_incomplete'])).state).toBe('rolled_back');
      expect(Object.values(await purgeAfterOf(siteAndApps(s)))).toEqual(Array(1 + APPS).fill(null));
    } finally {
      await query(h.databaseUrl, `UPDATE resource_types SET retention_days = NULL WHERE name = 'app'`);
    }
  });

  it('a restore clears purgeAfter of what it brought back', async () => {
    const s = freshSite();
    await deleteAndComplete(h, 'site', [siteId(s)]);
    expect(Object.values(await purgeAfterOf(siteAndApps(s))).every((d) => d !== null)).toBe(true);
    const r = await postRestore(h, { tenantId: tenantId(s), rollout: { concurrency: 4 } });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    const op = await approveAndRun(r.body);
    expect(op.state).toBe('completed');
    expect(Object.values(await purgeAfterOf(siteAndApps(s)))).toEqual(Array(1 + APPS).fill(null));
  });

  it('the registry adapter writes the retention with its soft delete (before any outcome is recorded); a row that has one keeps it', async () => {
    const s = freshSite();
    const pool = new pg.Pool({ connectionString: h.databaseUrl });
    try {
      const adapter = createRegistryAdapter(pool);
      const item = { operationId: 'op_retention_direct', resourceId: siteId(s), tenantId: tenantId(s), type: 'site' };
      const opts = { idempotencyKey: () => 'k', shouldContinue: () => true, concurrency: 1 };
      const before = Date.now();
      expect(await adapter.apply('softDelete', [item], opts)).toEqual([{ ok: true }]);
      const first = (await purgeAfterOf([siteId(s)]))[siteId(s)]!;
      expect(first.getTime()).toBeGreaterThanOrEqual(before + 30 * DAY - 1000);
      expect(first.getTime()).toBeLessThanOrEqual(Date.now() + 30 * DAY);
      // Active again (as a restore drill leaves it) and deleted again: its first time stands.
      await query(h.databaseUrl, `UPDATE resources SET state = 'active', deleted_at = NULL WHERE id = $1`, [siteId(s)]);
      expect(await adapter.apply('softDelete', [item], opts)).toEqual([{ ok: true }]);
      expect((await purgeAfterOf([siteId(s)]))[siteId(s)]).toEqual(first);
    } finally {
      await pool.end();
    }
  });

  it('policy retentionDays: GET shows the default 30, PUT sets it (1..3650, else 400), omitted keeps it', async () => {
    const get = () => request(h.app.server).get('/v1/admin/policy').set('authorization', h.auth('viewer')).expect(200);
    const put = (body: Record<string, unknown>) =>
      request(h.app.server)
        .put('/v1/admin/policy')
        .set('authorization', h.auth('admin'))
        .send({ budgets: { maxTenants: 50, maxItems: 100_000 }, ...body });
    expect((await get()).body.retentionDays).toBe(30);
    expect((await put({ retentionDays: 0 })).status).toBe(400);
    expect((await put({ retentionDays: 3651 })).status).toBe(400);
    expect((await get()).body.retentionDays).toBe(30);
    expect((await put({ retentionDays: 45 })).body.retentionDays).toBe(45);
    expect((await put({})).body.retentionDays).toBe(45);
    await put({ retentionDays: 30 }).expect(200);
  });

  it('per-type retentionDays is declared with the type (1..3650, else 400 naming the field)', async () => {
    const types = (retentionDays: unknown) =>
      request(h.app.server)
        .put('/v1/registry/types')
        .set('authorization', h.auth('admin'))
        .send({ types: [{ name: 'retained', retentionDays }] });
    const bad = await types(0);
    expect(bad.status).toBe(400);
    expect(JSON.stringify(bad.body)).toMatch(/retentionDays/);
    expect((await types(4000)).status).toBe(400);
    expect((await types(90)).status).toBe(200);
    const list = await request(h.app.server).get('/v1/registry/types').set('authorization', h.auth('viewer'));
    expect(list.body.items.find((t: { name: string }) => t.name === 'retained')).toMatchObject({ retentionDays: 90 });
  });
});

describe('purge refusals', () => {
  it('within retention: 422 PLAN_REJECTED per ID, naming each purgeAfter, recorded with its report; nothing changes', async () => {
    const s = freshSite();
    await deleteAndComplete(h, 'site', [siteId(s)]);
    const ends = await purgeAfterOf(siteAndApps(s));
    const r = await postPurge({ targetType: 'site', ids: [siteId(s)] });
    expect(r.status, JSON.stringify(r.body)).toBe(422);
    expect(r.body.code).toBe('PLAN_REJECTED');
    // Only the submitted ID is counted and named: the apps its delete took are reported as it.
    expect(r.body.details.counts).toMatchObject({ ok: 0, within_retention: 1 });
    const offenders = r.body.details.offenders.within_retention as { id: string; purgeAfter: string }[];
    for (const o of offenders) expect(o.purgeAfter).toBe(ends[o.id]!.toISOString());
    const report = await request(h.app.server)
      .get(`/v1/operations/${r.body.details.operationId}/report`)
      .set('authorization', h.auth('viewer'))
      .expect(200);
    expect(report.body.items.find((i: { id: string }) => i.id === siteId(s))).toMatchObject({
      class: 'within_retention',
      purgeAfter: ends[siteId(s)]!.toISOString(),
    });
    expect(Object.values(await registryStates(h, siteAndApps(s)))).toEqual(Array(1 + APPS).fill('soft_deleted'));
    const audit = await auditOf(h, r.body.details.operationId);
    expect(audit[0]).toMatchObject({ action: 'purge.rejected', payload: { reason: 'Retention ended' } });
  });

  it('active, unknown and already purged resources are refused per ID', async () => {
    const [a, b] = [freshSite(), freshSite()];
    await deleteAndComplete(h, 'site', [siteId(b)]);
    await makeDue(siteAndApps(b));
    await query(h.databaseUrl, `UPDATE resources SET state = 'purged' WHERE id = $1`, [appsOfSite(b)[0]]);
    const r = await postPurge({
      targetType: 'app',
      ids: [appsOfSite(a)[0], 'app_nope', appsOfSite(b)[0], appsOfSite(b)[1]],
    });
    expect(r.status, JSON.stringify(r.body)).toBe(422);
    expect(r.body.details.counts).toMatchObject({ ok: 1, not_deleted: 1, unknown: 1, purged: 1 });
    expect(r.body.details.offenders).toMatchObject({
      not_deleted: [{ id: appsOfSite(a)[0] }],
      unknown: [{ id: 'app_nope' }],
      purged: [{ id: appsOfSite(b)[0] }],
    });
  });

  it('a dueBefore in the future: 422 DUE_BEFORE_IN_FUTURE naming it, nothing stored (not every ID rejected)', async () => {
    const before = await query<{ n: number }>(h.databaseUrl, 'SELECT count(*)::int AS n FROM operations');
    const later = new Date(Date.now() + 30 * DAY).toISOString();
    const r = await postPurge({ dueBefore: later });
    expect(r.status, JSON.stringify(r.body)).toBe(422);
    expect(r.body).toMatchObject({
      code: 'DUE_BEFORE_IN_FUTURE',
      details: { field: 'body.dueBefore', dueBefore: later },
    });
    expect(await query(h.databaseUrl, 'SELECT count(*)::int AS n FROM operations')).toEqual(before);
    // A tenant's deletedSince in the future selects nothing: refused too, not NOTHING_TO_PURGE (a trial).
    const since = await postPurge({ tenantId: tenantId(0), deletedSince: later });
    expect(since.status, JSON.stringify(since.body)).toBe(422);
    expect(since.body).toMatchObject({
      code: 'DELETED_SINCE_IN_FUTURE',
      details: { field: 'body.deletedSince', fields: ['deletedSince'] },
    });
  });

  it('a scope that conflicts: 422 SCOPE_CONFLICT naming the fields', async () => {
    const r = await postPurge({ dueBefore: new Date().toISOString(), tenantId: tenantId(0) });
    expect(r.status).toBe(422);
    expect(r.body).toMatchObject({ code: 'SCOPE_CONFLICT', details: { fields: ['dueBefore', 'tenantId'] } });
    // None at all: the allowed scopes include dueBefore, which the message names too.
    const none = await postPurge({});
    expect(none.status).toBe(422);
    expect(none.body).toMatchObject({
      code: 'SCOPE_REQUIRED',
      details: { allowed: ['tenantId', 'operationId', 'targetType + ids', 'dueBefore'] },
    });
    expect(none.body.message).toMatch(/dueBefore/);
    // Two of the restore's scopes on a purge: the allowed ones listed include dueBefore too.
    const two = await postPurge({ tenantId: tenantId(0), operationId: 'op_x' });
    expect(two.status).toBe(422);
    expect(two.body.code).toBe('SCOPE_CONFLICT');
    expect(two.body.details.allowed).toContain('dueBefore');
    expect(two.body.message).toMatch(/dueBefore/);
  });
});

describe('a due purge', () => {
  it('registry: planned and waiting for a second person; runs only after approval; ends purged; never rolled back; a restore then reports purged', async () => {
    const s = freshSite();
    await deleteAndComplete(h, 'site', [siteId(s)]);
    await makeDue(siteAndApps(s));
    const r = await postPurge({ tenantId: tenantId(s) }, `purge-${s}`);
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body).toMatchObject({ kind: 'purge', mode: 'hard', state: 'planned', itemCount: 1 + APPS });
    expect(r.body.scope).toMatchObject({ kind: 'tenant', tenantId: tenantId(s) });
    // The same key and body: the same purge.
    const again = await postPurge({ tenantId: tenantId(s) }, `purge-${s}`);
    expect(again.status).toBe(200);
    expect(again.body.id).toBe(r.body.id);
    // Not started without an approval, and nothing purged meanwhile.
    await command(h, 'operator', r.body.id, 'start').expect(409);
    expect(Object.values(await registryStates(h, siteAndApps(s)))).toEqual(Array(1 + APPS).fill('soft_deleted'));

    const op = await approveAndRun(r.body);
    expect(op.state).toBe('completed');
    expect(op.counts).toMatchObject({ items: 1 + APPS, purged: 1 + APPS, notPurged: 0 });
    expect(Object.values(await registryStates(h, siteAndApps(s)))).toEqual(Array(1 + APPS).fill('purged'));
    // The resource view names the purge as what deleted it, not the soft delete before it.
    const view = await request(h.app.server)
      .get(`/v1/registry/resources/${siteId(s)}`)
      .set('authorization', h.auth('viewer'))
      .expect(200);
    // Purged: no retention left to wait for, so no purgeAfter shown.
    expect(view.body).toMatchObject({
      state: 'purged',
      purgeAfter: null,
      deletedBy: { operationId: op.id, mode: 'hard' },
    });

    const rb = await command(h, 'operator', op.id, 'rollback', { reason: 'oops' });
    expect(rb.status).toBe(409);
    expect(rb.body.code).toBe('ROLLBACK_NOT_SUPPORTED');
    expect((await getRestore(h, op.id)).state).toBe('completed');

    const restore = await postRestore(h, { targetType: 'site', ids: [siteId(s)] });
    expect(restore.status).toBe(422);
    // The site (and the apps its delete took, reported as the site): purged.
    expect(restore.body.details.counts).toMatchObject({ ok: 0, purged: 1 });

    const audit = await auditOf(h, op.id);
    expect(audit.map((e) => e.action)).toContain('purge.planned');
    expect(audit.find((e) => e.action === 'purge.planned')).toMatchObject({
      actor: expect.any(String),
      payload: { reason: 'Retention ended', items: 1 + APPS },
    });
    expect(audit.find((e) => e.action === 'operation.completed')).toMatchObject({
      payload: { kind: 'purge', purged: 1 + APPS, notPurged: 0 },
    });
    const metrics = await request(h.app.server)
      .get('/metrics')
      .set('authorization', `Bearer ${METRICS_TOKEN}`)
      .expect(200);
    expect(metrics.text).toMatch(/blastgate_purge_plans_total\{outcome="planned"\} [1-9]/);
    expect(metrics.text).toMatch(/blastgate_purge_plans_total\{outcome="rejected"\} [1-9]/);
    expect(metrics.text).toMatch(/blastgate_purge_items\{outcome="purged"\} [1-9]/);
  });

  it('HTTP: each item is hard-deleted once through its type’s adapter with its idempotency key, and ends purged in the registry and downstream', async () => {
    await useHttp(h);
    const s = freshSite();
    for (const x of siteAndApps(s))
      h.downstream.resources.set(x, { id: x, tenantId: tenantId(s), state: 'active', data: { name: x } });
    h.downstream.cascade(siteId(s), appsOfSite(s));
    await deleteAndComplete(h, 'site', [siteId(s)]);
    // The HTTP adapter leaves the registry row's state alone; the ledger outcome set purgeAfter.
    expect(Object.values(await purgeAfterOf(siteAndApps(s))).every((d) => d !== null)).toBe(true);
    await makeDue(siteAndApps(s));
    h.downstream.reset();
    for (const x of siteAndApps(s))
      h.downstream.resources.set(x, { id: x, tenantId: tenantId(s), state: 'soft_deleted', data: { name: x } });

    const r = await postPurge({ targetType: 'site', ids: [siteId(s)] });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(h.downstream.destructiveCalls()).toHaveLength(0);
    const op = await approveAndRun(r.body);
    expect(op.state).toBe('completed');
    const deletes = h.downstream.destructiveCalls();
    expect(deletes.map((c) => c.action)).toEqual(Array(1 + APPS).fill('hardDelete'));
    expect(new Set(deletes.map((c) => c.resourceId))).toEqual(new Set(siteAndApps(s)));
    for (const c of deletes) {
      expect(c.idempotencyKey).toMatch(IDEMPOTENCY_KEY_PATTERN);
      expect(c.signatureValid).toBe(true);
    }
    expect(deletes.find((c) => c.resourceId === siteId(s))!.path).toBe(`/sites/${siteId(s)}`);
    expect(Object.values(await registryStates(h, siteAndApps(s)))).toEqual(Array(1 + APPS).fill('purged'));
    // The resource view names the purge as what deleted it, not the soft delete before it.
    const view = await request(h.app.server)
      .get(`/v1/registry/resources/${siteId(s)}`)
      .set('authorization', h.auth('viewer'))
      .expect(200);
    expect(view.body).toMatchObject({ state: 'purged', deletedBy: { operationId: op.id, mode: 'hard' } });
    for (const x of siteAndApps(s)) expect(h.downstream.state(x)).toBe('purged');
  });
});

describe('a purge whose hard delete had an unknown outcome', () => {
  it('HTTP: the registry view says the resource may be purged (uncertainPurge), not only soft-deleted', async () => {
    const { s, apps } = await twoHttpAppsDeleted();
    await makeDue(apps);
    const r = await postPurge({
      targetType: 'app',
      ids: apps,
      rollout: { bakeSeconds: 0, concurrency: 1, waves: ['100%'] },
      haltPolicy: { maxFailureRate: 1 },
    });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    // Each first hard delete is applied downstream, then answered 500; every later try of it finds a
    // service that lost its key (503 before anything): the outcome is never known.
    const tried = new Set<string>();
    h.downstream.failNext(apps.length, 500, { afterApply: true });
    h.downstream.answer((c) => {
      if (c.action !== 'hardDelete') return null;
      if (!tried.has(c.resourceId!)) return (tried.add(c.resourceId!), null);
      return 503;
    });
    try {
      const op = await approveAndRun(r.body);
      expect(op.state).toBe('completed_with_failures');
    } finally {
      h.downstream.answer(null);
    }
    expect(apps.map((x) => h.downstream.state(x))).toEqual(['purged', 'purged']);
    const view = async (id: string) =>
      (await request(h.app.server).get(`/v1/registry/resources/${id}`).set('authorization', h.auth('viewer'))).body;
    // It read as deleted by the soft delete alone, as if a restore could still bring it back.
    expect(await view(apps[0]!)).toMatchObject({
      deletedBy: { mode: 'soft' },
      uncertainDelete: null,
      uncertainPurge: { operationId: r.body.id },
    });
    const list = await request(h.app.server)
      .get(`/v1/registry/resources?tenantId=${tenantId(s)}&type=app`)
      .set('authorization', h.auth('viewer'));
    expect(list.body.items.find((x: { id: string }) => x.id === apps[1])).toMatchObject({
      uncertainPurge: { operationId: r.body.id },
    });
    expect(list.body.items.find((x: { id: string }) => x.id === appsOfSite(s)[2])).toMatchObject({
      uncertainPurge: null,
    });
  });
});

describe('a purge of what a restore may have brought back', () => {
  it('HTTP: refuses a resource whose restore went out with its outcome unknown (restore_uncertain): it may be live', async () => {
    const { s, apps } = await twoHttpAppsDeleted();
    let restoreId = '';
    // The first app's restore is applied downstream and answered 500; every later try of it finds
    // a service that lost its key (503): the restore fails with its outcome unknown. The app is live.
    const tried = new Set<string>();
    h.downstream.answer((c) => {
      if (c.action !== 'restore' || c.resourceId !== apps[0]) return null;
      if (!tried.has(c.resourceId!)) return (tried.add(c.resourceId!), null);
      return 503;
    });
    h.downstream.failOnly(['restore']);
    h.downstream.failNext(1, 500, { afterApply: true });
    try {
      restoreId = (
        await runRestore(h, {
          targetType: 'app',
          ids: [apps[0]],
          haltPolicy: { maxFailureRate: 1 },
          rollout: { bakeSeconds: 0, concurrency: 1, waves: ['100%'] },
        })
      ).id;
      expect((await getRestore(h, restoreId)).state).toBe('completed_with_failures');
    } finally {
      h.downstream.answer(null);
      h.downstream.failOnly(null);
    }
    expect(h.downstream.state(apps[0]!)).toBe('active');
    // The registry's view says it may be back, beside the delete that stands (it read as deleted alone).
    expect(await registryView(apps[0]!)).toMatchObject({ uncertainRestore: { operationId: restoreId } });
    expect(await registryView(apps[1]!)).toMatchObject({ uncertainRestore: null });
    await makeDue(apps);
    // It was classified ok, and the purge hard-deleted a live app (a trial purged two so).
    const r = await postPurge({ targetType: 'app', ids: [apps[0]] });
    expect(r.status, JSON.stringify(r.body)).toBe(422);
    expect(r.body).toMatchObject({ code: 'PLAN_REJECTED', details: { counts: { restore_uncertain: 1 } } });
    expect(r.body.message).toContain('whose restore may or may not have happened');
    // A new delete of it says the same: it read "already deleted" (soft_deleted) while it was live.
    const again = await planDelete(apps);
    expect(again.status, JSON.stringify(again.body)).toBe(422);
    expect(again.body.details.counts).toMatchObject({ ok: 0, restore_uncertain: 1, already_deleted: 1 });
    expect(again.body.details.offenders.restore_uncertain).toEqual([expect.objectContaining({ id: apps[0] })]);
    expect(again.body.details.offenders.already_deleted).toEqual([expect.objectContaining({ id: apps[1] })]);
    // The other app, whose delete stands with nothing after it, may be purged.
    const other = await postPurge({ targetType: 'app', ids: [apps[1]] });
    expect(other.status, JSON.stringify(other.body)).toBe(201);
    await command(h, 'operator', other.body.id, 'abort', { reason: 'not now' }).expect(200);
    // A scope the plan computes (a tenant, everything due) leaves it out, saying so, and purges the
    // rest: one such app rejected every daily proposal of the retention scheduler (a trial).
    const tenant = await postPurge({ tenantId: tenantId(s) });
    expect(tenant.status, JSON.stringify(tenant.body)).toBe(201);
    expect(tenant.body.itemCount).toBe(1);
    expect(tenant.body.plan.leftOut).toMatchObject({
      restoreUncertain: 1,
      // Naming the restore whose outcome is unknown (by was null: trial M).
      items: [{ id: apps[0], reason: 'restore_uncertain', by: restoreId }],
    });
    expect(tenant.body.plan.leftOut.items[0].detail).toContain(`a restore of it by ${restoreId} since its delete`);
    await command(h, 'operator', tenant.body.id, 'abort', { reason: 'not now' }).expect(200);
    expect(h.downstream.state(apps[0]!)).toBe('active');
  });
});

describe('a purge of what a rollback may have brought back', () => {
  it("HTTP: refuses a resource whose rollback's restore went out with its outcome unknown (restore_uncertain)", async () => {
    const { s, apps } = await twoHttpAppsDeleted();
    const del = (
      await query<{ operation_id: string }>(
        h.databaseUrl,
        `SELECT operation_id FROM operation_items WHERE resource_id = $1 ORDER BY updated_at DESC LIMIT 1`,
        [apps[0]],
      )
    )[0]!.operation_id;
    // The first app's restore is applied downstream and answered 500, every later try 503; the other
    // app's restores are all refused 503 before anything. The rollback retries with a backoff.
    const tried = new Set<string>();
    h.downstream.answer((c) => {
      if (c.action !== 'restore') return null;
      if (c.resourceId === apps[0] && !tried.has(apps[0]!)) return (tried.add(apps[0]!), null);
      return 503;
    });
    h.downstream.failOnly(['restore']);
    h.downstream.failNext(1, 500, { afterApply: true });
    try {
      await command(h, 'operator', del, 'rollback', { reason: 'wrong apps' }).expect(200);
      const failed = async () =>
        (
          await query<{ n: number }>(
            h.databaseUrl,
            `SELECT count(*)::int AS n FROM operation_items WHERE operation_id = $1 AND state = 'restore_failed'`,
            [del],
          )
        )[0]!.n === apps.length;
      for (let i = 0; i < 200 && !(await failed()); i++) await new Promise((r) => setTimeout(r, 100));
      expect(await failed()).toBe(true);
      // Their errors say what the purge below concludes: it may be back. They read "HTTP 503 …
      // (after 3 restore requests)", as if nothing had happened.
      const errors = await query<{ last_error: string }>(
        h.databaseUrl,
        `SELECT last_error FROM operation_items WHERE operation_id = $1`,
        [del],
      );
      for (const e of errors)
        expect(e.last_error).toMatch(
          /^outcome unknown: its restore went out and did not succeed \(HTTP 503 .*restore requests?\)\); it may have been applied/,
        );
      // The operator gives up on the rollback: what it did not restore stays deleted, as far as it knows.
      await command(h, 'operator', del, 'abort', { reason: 'downstream down', endRollback: true }).expect(200);
    } finally {
      h.downstream.answer(null);
      h.downstream.failOnly(null);
    }
    expect(h.downstream.state(apps[0]!)).toBe('active');
    const view = await registryView(apps[0]!);
    expect(view).toMatchObject({ uncertainRestore: { operationId: del } });
    // When its restore went out and failed, not when it was deleted (the snapshot's time, trial M).
    const at = (x: unknown) => Date.parse((x as { at: string }).at);
    expect(at(view.uncertainRestore)).toBeGreaterThan(at(view.deletedBy));
    // The ended rollback holds them until its run is settled (a restore of it may still land).
    await waitSettled(h, del);
    await makeDue(apps);
    // It read as deleted (restore_failed) and was purged: a live app hard-deleted (a trial purged one so).
    const r = await postPurge({ targetType: 'app', ids: apps });
    expect(r.status, JSON.stringify(r.body)).toBe(422);
    // The other app's restores were refused before anything was applied, but the item cannot tell.
    expect(r.body).toMatchObject({ code: 'PLAN_REJECTED', details: { counts: { restore_uncertain: 2 } } });
    // A new delete of them says the same (it said already_deleted of a live app).
    const again = await planDelete(apps);
    expect(again.status, JSON.stringify(again.body)).toBe(422);
    expect(again.body.details.counts).toMatchObject({ ok: 0, restore_uncertain: 2, already_deleted: 0 });
    expect(again.body.message).toContain('whose restore may or may not have happened');
    // A tenant's purge leaves them out, saying so: nothing is left to purge.
    const tenant = await postPurge({ tenantId: tenantId(s) });
    expect(tenant.status, JSON.stringify(tenant.body)).toBe(422);
    expect(tenant.body).toMatchObject({ code: 'NOTHING_TO_PURGE', details: { leftOut: { restoreUncertain: 2 } } });
    // They are deleted and not purged: the message says all of them were left out, and why.
    expect(tenant.body.message).toBe(
      `All 2 deleted resources in this scope were left out: 2 restore_uncertain (a restore of each went out with its outcome unknown, so they may be live again; restore them again to settle it: ${[...apps].sort().join(', ')}); nothing to purge`,
    );
    expect(h.downstream.state(apps[0]!)).toBe('active');
  });
});

describe('a purge whose snapshot reads fail', () => {
  it("HTTP: sends none of a chunk's hard deletes once its failed reads make the wave unhealthy, and halts", async () => {
    // As for deletes (halt.test.ts): failed reads counted only once the chunk was recorded, after
    // every hard delete of the chunk whose snapshot could be read had been sent.
    await useHttp(h);
    const sites = [freshSite(), freshSite(), freshSite(), freshSite()];
    const apps = sites.flatMap(appsOfSite);
    for (const s of sites)
      for (const x of appsOfSite(s))
        h.downstream.resources.set(x, { id: x, tenantId: tenantId(s), state: 'active', data: { name: x } });
    await deleteAndComplete(h, 'app', apps);
    await makeDue(apps);
    h.downstream.reset();
    for (const s of sites)
      for (const x of appsOfSite(s))
        h.downstream.resources.set(x, { id: x, tenantId: tenantId(s), state: 'soft_deleted', data: { name: x } });

    const haltPolicy = { minSample: 3, maxConsecutiveFailures: 3, maxFailureRate: 0.05 };
    const r = await postPurge({ targetType: 'app', ids: apps, haltPolicy });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    // Wave 1 (three tenants, one chunk): the reads of its first three items fail.
    const wave1 = (await ledger(h, r.body.id)).filter((x) => x.wave === 1).map((x) => x.resource_id);
    expect(wave1).toHaveLength(3 * APPS);
    const unreadable = wave1.slice(0, 3);
    h.downstream.failSnapshotsOf(unreadable);
    await command(h, 'approver', r.body.id, 'approve', { planHash: r.body.planHash }).expect(200);
    await command(h, 'operator', r.body.id, 'start').expect(200);
    const end = await waitForState(h, r.body.id, ['completed', 'completed_with_failures', 'paused', 'halted']);
    expect(end.state).toBe('halted');
    expect(end.haltReason).toMatch(/^wave 2 of 2: .*snapshot failed/);
    const hardDeleted = h.downstream.destructiveCalls().map((c) => c.resourceId);
    expect(hardDeleted.filter((id) => wave1.includes(id!))).toEqual([]);
  });
});

describe('rolling back a delete after a later purge or restore of its items', () => {
  it('HTTP: sends no restore for what was purged or brought back since, and says so item by item', async () => {
    await useHttp(h);
    const s = freshSite();
    const apps = appsOfSite(s);
    const [purgedId, restoredId, ...rest] = apps;
    for (const x of apps)
      h.downstream.resources.set(x, { id: x, tenantId: tenantId(s), state: 'active', data: { name: x } });
    const deleteOp = await deleteAndComplete(h, 'app', apps);
    // Since the delete: one app restored on its own, one purged once its retention ended.
    const restore = await postRestore(h, { targetType: 'app', ids: [restoredId!], rollout: ROLLOUT });
    expect(restore.status, JSON.stringify(restore.body)).toBe(201);
    expect((await approveAndRun(restore.body)).state).toBe('completed');
    await makeDue([purgedId!]);
    const purge = await postPurge({ targetType: 'app', ids: [purgedId!] });
    expect(purge.status, JSON.stringify(purge.body)).toBe(201);
    expect((await approveAndRun(purge.body)).state).toBe('completed');
    expect(h.downstream.state(purgedId!)).toBe('purged');
    h.downstream.reset();
    for (const x of rest)
      h.downstream.resources.set(x, { id: x, tenantId: tenantId(s), state: 'soft_deleted', data: { name: x } });
    h.downstream.resources.set(restoredId!, {
      id: restoredId!,
      tenantId: tenantId(s),
      state: 'active',
      data: { v: 2 },
    });
    h.downstream.resources.set(purgedId!, { id: purgedId!, tenantId: tenantId(s), state: 'purged', data: {} });

    await command(h, 'operator', deleteOp, 'rollback', { reason: 'undo the cleanup' }).expect(200);
    const end = await waitForState(h, deleteOp, ['rolled_back', 'rollback_incomplete']);
    // Before: a signed restore (carrying the old snapshot) went to the purged app and to the one
    // already back, and the rollback said rolled_back while the registry said purged.
    const restored = h.downstream.destructiveCalls().map((c) => c.resourceId);
    expect(restored.sort()).toEqual([...rest].sort());
    expect(end.state).toBe('rollback_incomplete');
    const items = await query<{ resource_id: string; state: string; last_error: string | null; permanent: boolean }>(
      h.databaseUrl,
      'SELECT resource_id, state, last_error, permanent FROM operation_items WHERE operation_id = $1',
      [deleteOp],
    );
    const byId = new Map(items.map((i) => [i.resource_id, i]));
    expect(byId.get(purgedId!)).toMatchObject({ state: 'restore_failed', permanent: true });
    expect(byId.get(purgedId!)!.last_error).toMatch(new RegExp(`cannot restore ${purgedId}: it is purged`));
    // Already back (by the restore): nothing to undo, and its newer state is left alone.
    expect(byId.get(restoredId!)!.state).toBe('restored');
    // Said so, naming who did: not a restore of this rollback's.
    expect(byId.get(restoredId!)!.last_error).toBe(
      `already restored by ${(restore.body as { id: string }).id}: nothing sent (this operation's older snapshot would overwrite it)`,
    );
    expect(h.downstream.resources.get(restoredId!)!.data).toEqual({ v: 2 });
    for (const x of rest) expect(byId.get(x)!.state).toBe('restored');
    expect(await registryStates(h, [purgedId!])).toEqual({ [purgedId!]: 'purged' });
  });
});

describe('the scheduled proposal', () => {
  it('is one BullMQ job scheduler however many worker processes upsert it, and off removes it', async () => {
    const conns = Array.from({ length: 5 }, () => createRedis(h.redisUrl, true));
    const prefix = `${h.prefix}sched`;
    const deps = {
      pool: new pg.Pool({ connectionString: h.databaseUrl, max: 2 }),
      reads: operationReads(h.app.db.pool),
      log: { info: () => undefined, warn: () => undefined },
    };
    const said: string[] = [];
    const log = { ...deps.log, info: (_: object, msg: string) => said.push(msg), error: () => undefined };
    const queue = new Queue(RETENTION_QUEUE, { connection: conns[4]!, prefix });
    try {
      const start = (k: number, cron: string | null) =>
        startPurgeScheduler({
          connection: conns[k * 2]!,
          workerConnection: conns[k * 2 + 1]!,
          prefix,
          cron,
          deps,
          log,
        });
      const a = await start(0, '0 3 * * *');
      const b = await start(1, '0 3 * * *');
      const schedulers = await queue.getJobSchedulers();
      expect(schedulers).toHaveLength(1);
      expect(schedulers[0]).toMatchObject({ key: PURGE_SCHEDULER_ID, pattern: '0 3 * * *' });
      // The start-up log says what the schedule resolved to: its next firing, at 03:00 UTC.
      expect(said[0]).toMatch(
        /^retention scheduler: purge proposals on "0 3 \* \* \*" \(UTC\), next at \d{4}-\d\d-\d\dT03:00:00\.000Z$/,
      );
      await a.close();
      await b.close();
      await (await start(0, null)).close();
      expect(await queue.getJobSchedulers()).toHaveLength(0);
      expect(said.at(-1)).toMatch(/^retention scheduler: off/);
    } finally {
      await queue.close();
      for (const c of conns) c.disconnect();
      await deps.pool.end();
    }
  });

  it('plans a purge of what is due as retention-scheduler, waits for approval, does not pile up, and nothing is purged until a human approves and starts', async () => {
    const pool = new pg.Pool({ connectionString: h.databaseUrl, max: 4 });
    const deps = {
      pool,
      reads: operationReads(h.app.db.pool),
      log: { info: () => undefined, warn: () => undefined },
    };
    try {
      // Nothing else is due: earlier tests' due resources are purged or not due.
      await query(h.databaseUrl, `UPDATE resources SET purge_after = NULL WHERE state <> 'purged'`);
      const nothing = await proposeDuePurge(deps, new Date());
      expect(nothing).toMatchObject({ outcome: 'skipped', why: 'nothing_due' });

      const s = freshSite();
      await deleteAndComplete(h, 'site', [siteId(s)]);
      await makeDue(siteAndApps(s));
      const first = await proposeDuePurge(deps, new Date());
      expect(first).toMatchObject({ outcome: 'planned' });
      const id = (first as { operationId: string }).operationId;
      const op = await getRestore(h, id);
      expect(op).toMatchObject({ kind: 'purge', state: 'planned', itemCount: 1 + APPS, scope: { kind: 'due' } });
      expect((op as unknown as { requestedBy: string }).requestedBy).toBe(RETENTION_SCHEDULER.name);

      // A second run while it waits: skipped, and the audit log says why.
      const second = await proposeDuePurge(deps, new Date(Date.now() + DAY));
      expect(second).toMatchObject({ outcome: 'skipped', why: 'proposal_pending', pending: id });
      const skipped = await auditOf(h, id);
      expect(skipped.at(-1)).toMatchObject({
        action: 'purge.proposal_skipped',
        payload: { why: 'proposal_pending', detail: expect.stringMatching(/still planned/) },
      });
      // Time passes: still planned, nothing purged.
      await new Promise((r) => setTimeout(r, 1_000));
      expect((await getRestore(h, id)).state).toBe('planned');
      expect(Object.values(await registryStates(h, siteAndApps(s)))).toEqual(Array(1 + APPS).fill('soft_deleted'));

      const done = await approveAndRun(op);
      expect(done.state).toBe('completed');
      expect(Object.values(await registryStates(h, siteAndApps(s)))).toEqual(Array(1 + APPS).fill('purged'));
      // The resource view names the purge as what deleted it, not the soft delete before it.
      const view = await request(h.app.server)
        .get(`/v1/registry/resources/${siteId(s)}`)
        .set('authorization', h.auth('viewer'))
        .expect(200);
      expect(view.body).toMatchObject({ state: 'purged', deletedBy: { operationId: op.id, mode: 'hard' } });
    } finally {
      await pool.end();
    }
  });
});

describe('a scope of everything due or of a tenant: a parent goes only with its children', () => {
  it('keeps a due site whose apps are within their retention, or active again, instead of purging it alone', async () => {
    // Site A is due; its apps (deleted with it) keep the delete's 30-day retention.
    const a = freshSite();
    await deleteAndComplete(h, 'site', [siteId(a)]);
    await makeDue([siteId(a)]);
    const due = await postPurge({ dueBefore: new Date().toISOString(), dryRun: true });
    const leftOut = (due.status === 200 ? due.body.plan.leftOut : due.body.details?.leftOut) ?? {};
    expect(leftOut.childrenKept, JSON.stringify(due.body)).toBeGreaterThanOrEqual(1);
    // Listed by ID, the site is refused through its app, with the app's retention end (not its own, past).
    const listed = await postPurge({ targetType: 'site', ids: [siteId(a)], dryRun: true });
    expect(listed.status, JSON.stringify(listed.body)).toBe(422);
    const [appEnd] = Object.values(await purgeAfterOf([appsOfSite(a)[0]!]));
    expect(listed.body.details.offenders.within_retention).toEqual([
      expect.objectContaining({
        id: siteId(a),
        via: expect.objectContaining({ id: appsOfSite(a)[0] }),
        purgeAfter: appEnd!.toISOString(),
      }),
    ]);
    // A live app imported under a deleted site after its delete: listed by ID, the site is refused
    // through it (before: purged over it, the app left active under a purged site).
    const c = freshSite();
    await deleteAndComplete(h, 'site', [siteId(c)]);
    await makeDue(siteAndApps(c));
    const newcomer = `app_${String(c).padStart(5, '0')}_50`;
    await request(h.app.server)
      .post('/v1/registry/resources')
      .set('authorization', h.auth('admin'))
      .send({ resources: [{ id: newcomer, type: 'app', tenantId: tenantId(c), parentId: siteId(c), state: 'active' }] })
      .expect(200);
    const overLive = await postPurge({ targetType: 'site', ids: [siteId(c)], dryRun: true });
    expect(overLive.status, JSON.stringify(overLive.body)).toBe(422);
    expect(overLive.body.details.offenders.not_deleted).toEqual([
      expect.objectContaining({ id: siteId(c), via: expect.objectContaining({ id: newcomer }) }),
    ]);
    const kept = leftOut.items.find((i: { id: string }) => i.id === siteId(a));
    expect(kept, JSON.stringify(leftOut)).toMatchObject({ reason: 'children_kept', by: null });
    expect(kept.detail).toContain(`its child ${appsOfSite(a)[0]} is not purged with it`);

    // Site B and its apps are due, but one app is active again (an import): the tenant's purge takes
    // the other apps and keeps the site (before: the site was purged over its live app).
    const b = freshSite();
    await deleteAndComplete(h, 'site', [siteId(b)]);
    await makeDue(siteAndApps(b));
    const live = appsOfSite(b)[0]!;
    await request(h.app.server)
      .post('/v1/registry/resources')
      .set('authorization', h.auth('admin'))
      .send({ resources: [{ id: live, type: 'app', tenantId: tenantId(b), state: 'active' }] })
      .expect(200);
    const r = await postPurge({ tenantId: tenantId(b) });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body.plan.leftOut).toMatchObject({ activeAgain: 1, childrenKept: 1 });
    const op = await approveAndRun(r.body);
    expect(op.state).toBe('completed');
    expect(await registryStates(h, siteAndApps(b))).toEqual({
      [siteId(b)]: 'soft_deleted',
      [live]: 'active',
      ...Object.fromEntries(
        appsOfSite(b)
          .slice(1)
          .map((x) => [x, 'purged']),
      ),
    });
  });
});

describe('a tenant or an operation whose every deleted resource is left out', () => {
  it('says they were all left out, by reason, not that nothing is deleted; nothing deleted at all keeps saying that', async () => {
    // A site and its apps, deleted and due; every app is active again (an import): the apps are no
    // longer deleted, and the site, still deleted and not purged, is kept for them (children_kept).
    const s = freshSite();
    const del = await deleteAndComplete(h, 'site', [siteId(s)]);
    await makeDue(siteAndApps(s));
    await request(h.app.server)
      .post('/v1/registry/resources')
      .set('authorization', h.auth('admin'))
      .send({ resources: appsOfSite(s).map((id) => ({ id, type: 'app', tenantId: tenantId(s), state: 'active' })) })
      .expect(200);
    for (const scope of [{ tenantId: tenantId(s) }, { operationId: del }]) {
      const r = await postPurge({ ...scope, dryRun: true });
      expect(r.status, JSON.stringify(r.body)).toBe(422);
      // The code clients branch on stays; details carry the counts by reason (leftOut).
      expect(r.body).toMatchObject({
        code: 'NOTHING_TO_PURGE',
        details: { leftOut: { childrenKept: 1, activeAgain: APPS, purged: 0 } },
      });
      expect(r.body.message).not.toContain('Nothing in this scope is deleted');
      expect(r.body.message).toMatch(
        new RegExp(
          `^The only deleted resource in this scope was left out: 1 children_kept \\(kept because a child of it is not purged with it: within its retention, live, moved, or of a tenant a later wave takes: ${siteId(s)}\\); nothing to purge;`,
        ),
      );
      // What is not deleted any more is still said, after it.
      expect(r.body.message).toContain(`; ${APPS} resource(s) of it are active again, brought back outside Blastgate`);
    }
    // Everything due by now, the same (earlier tests' due resources are not due any more).
    await query(h.databaseUrl, `UPDATE resources SET purge_after = NULL WHERE state <> 'purged' AND id <> $1`, [
      siteId(s),
    ]);
    const dueBefore = new Date().toISOString();
    const due = await postPurge({ dueBefore, dryRun: true });
    expect(due.status, JSON.stringify(due.body)).toBe(422);
    expect(due.body).toMatchObject({ code: 'NOTHING_TO_PURGE', details: { leftOut: { childrenKept: 1 } } });
    expect(due.body.message).toBe(
      `The only resource due for purging by ${new Date(dueBefore).toISOString()} was left out: 1 children_kept (kept because a child of it is not purged with it: within its retention, live, moved, or of a tenant a later wave takes: ${siteId(s)}); nothing to purge; no deleted resource is waiting for its retention to end`,
    );
    // A tenant of which Blastgate deleted nothing: nothing is deleted, as before.
    const fresh = tenantId(freshSite());
    const untouched = await postPurge({ tenantId: fresh, dryRun: true });
    expect(untouched.status, JSON.stringify(untouched.body)).toBe(422);
    expect(untouched.body).toMatchObject({
      code: 'NOTHING_TO_PURGE',
      message: `Blastgate deleted nothing of tenant ${fresh} that is still deleted and not purged yet (a resource an import moved to it after its delete is purged by ID only)`,
    });
    expect(untouched.body.details.leftOut).toBeUndefined();
  });
});
