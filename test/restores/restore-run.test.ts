// Restores as operations, on the real stack (PostgreSQL, Redis, workers, an HTTP downstream): a
// tenant restored after a completed delete with the registry adapter and with the HTTP adapter,
// an operation restored, a list of IDs restored, and restores to a point in time (asOf) across two
// deletes of the same resource and of a site's apps. Cascades come back with their parent.
import { METRICS_TOKEN } from '../support/app.ts';
import request from 'supertest';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildExecHarness, type ExecHarness } from '../support/execution.ts';
import { command, isDrillCall } from '../support/exec-helpers.ts';
import { IDEMPOTENCY_KEY_PATTERN } from '../support/keys.ts';
import {
  APPS,
  appsOfSite,
  auditOf,
  deleteAndComplete,
  getRestore,
  postRestore,
  registryStates,
  restoreItems,
  runRestore,
  useHttp,
  useRegistry,
} from '../support/restores.ts';
import { query, seedRegistry, siteId, tenantId } from '../support/seed.ts';
import { waitForState } from '../support/execution.ts';

let h: ExecHarness;
let nextSite = 0;
const freshSite = () => nextSite++;

beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 40, appsPerSite: APPS });
});
afterAll(async () => {
  await h?.close();
});
beforeEach(() => h.downstream.reset());

/** A downstream resource with content of our choosing (the downstream makes one lazily otherwise). */
function downstreamHas(id: string, tenant: string, data: Record<string, unknown>) {
  h.downstream.resources.set(id, { id, tenantId: tenant, state: 'active', data });
}

describe('registry adapter', () => {
  it("a tenant restore after a completed delete brings the tenant's site and its apps back in one statement, and nothing else", async () => {
    await useRegistry(h);
    const [a, b] = [freshSite(), freshSite()];
    const del = await deleteAndComplete(h, 'site', [siteId(a), siteId(b)]);
    const deletedSnaps = await query<{ resource_id: string; snapshot_id: string }>(
      h.databaseUrl,
      `SELECT resource_id, snapshot_id FROM operation_items WHERE operation_id = $1`,
      [del],
    );

    const op = await runRestore(h, { tenantId: tenantId(a) });
    expect(op.state).toBe('completed');
    expect(op).toMatchObject({
      kind: 'restore',
      scope: { kind: 'tenant', tenantId: tenantId(a), deletedSince: null, asOf: null },
      itemCount: 1 + APPS,
      tenantCount: 1,
      counts: { items: 1 + APPS, restored: 1 + APPS, notRestored: 0 },
    });
    expect(op.plan.cascade).toEqual([{ type: 'app', count: APPS }]);
    expect(op.plan.waves.map((w) => w.items)).toEqual([1 + APPS]);

    const states = await registryStates(h, [siteId(a), ...appsOfSite(a), siteId(b), ...appsOfSite(b)]);
    for (const id of [siteId(a), ...appsOfSite(a)]) expect(states[id], id).toBe('active');
    for (const id of [siteId(b), ...appsOfSite(b)]) expect(states[id], id).toBe('soft_deleted');
    const rows = await query<{ id: string; updated_at: Date; deleted_at: Date | null }>(
      h.databaseUrl,
      `SELECT id, updated_at, deleted_at FROM resources WHERE id = ANY($1)`,
      [[siteId(a), ...appsOfSite(a)]],
    );
    // One statement: the site and its apps carry the same updated_at.
    expect(new Set(rows.map((r) => r.updated_at.getTime())).size).toBe(1);
    expect(rows.every((r) => r.deleted_at === null)).toBe(true);

    // The ledger: the site, its apps against it, each restored to the snapshot its delete took,
    // after a snapshot of what the restore overwrote.
    const items = await restoreItems(h, op.id);
    const site = items.find((i) => i.resource_id === siteId(a))!;
    expect(site).toMatchObject({ parent_seq: null, resource_type: 'site', state: 'done' });
    for (const i of items) {
      expect(i.state).toBe('done');
      expect(i.snapshot_id).not.toBeNull();
      expect(i.source_snapshot_id).toBe(deletedSnaps.find((d) => d.resource_id === i.resource_id)!.snapshot_id);
      if (i !== site) expect(i).toMatchObject({ parent_seq: site.seq, resource_type: 'app' });
    }

    // Audit: who asked, why, how much; the end says how many came back.
    const events = await auditOf(h, op.id);
    expect(events[0]).toMatchObject({
      action: 'restore.planned',
      actor: 'test-requester',
      payload: { reason: 'Bring back what the script deleted', ticket: 'INC-883', items: 1 + APPS, descendants: APPS },
    });
    expect(events.at(-1)).toMatchObject({
      action: 'operation.completed',
      payload: { kind: 'restore', items: 1 + APPS, restored: 1 + APPS, notRestored: 0 },
    });
    const metrics = await request(h.app.server)
      .get('/metrics')
      .set('authorization', `Bearer ${METRICS_TOKEN}`)
      .expect(200);
    const restored = /blastgate_restore_items\{outcome="restored"\} (\d+)/.exec(metrics.text);
    expect(Number(restored?.[1])).toBeGreaterThanOrEqual(1 + APPS);
  });

  it("a protected tenant's restore needs no break-glass (bringing data back is the safe direction); its plan still counts the tenant protected", async () => {
    await useRegistry(h);
    const a = freshSite();
    await deleteAndComplete(h, 'site', [siteId(a)]);
    await query(h.databaseUrl, `UPDATE tenants SET protected = true WHERE id = $1`, [tenantId(a)]);
    try {
      const planned = await postRestore(h, { tenantId: tenantId(a), rollout: { concurrency: 4 } });
      expect(planned.status, JSON.stringify(planned.body)).toBe(201);
      expect(planned.body).toMatchObject({ requiresBreakGlass: false, plan: { tenants: { protected: 1 } } });
      expect(planned.body.plan.breakGlassReasons).toEqual([]);
      // One approval (not an admin's), and the tenant comes back.
      await command(h, 'approver', planned.body.id, 'approve', { planHash: planned.body.planHash }).expect(200);
      await command(h, 'operator', planned.body.id, 'start').expect(200);
      await waitForState(h, planned.body.id, ['completed']);
      const states = await registryStates(h, [siteId(a), ...appsOfSite(a)]);
      for (const id of [siteId(a), ...appsOfSite(a)]) expect(states[id], id).toBe('active');
    } finally {
      await query(h.databaseUrl, `UPDATE tenants SET protected = false WHERE id = $1`, [tenantId(a)]);
    }
  });

  it('a restore cancelled before it ran leaves the pending metric: its items will never run', async () => {
    await useRegistry(h);
    const a = freshSite();
    await deleteAndComplete(h, 'site', [siteId(a)]);
    const pending = async () => {
      const m = await request(h.app.server).get('/metrics').set('authorization', `Bearer ${METRICS_TOKEN}`).expect(200);
      return Number(/blastgate_restore_items\{outcome="pending"\} (\d+)/.exec(m.text)?.[1]);
    };
    const before = await pending();
    const planned = await postRestore(h, { tenantId: tenantId(a) });
    expect(planned.status, JSON.stringify(planned.body)).toBe(201);
    expect(await pending()).toBe(before + 1 + APPS);
    await command(h, 'operator', planned.body.id, 'abort', { reason: 'not now' }).expect(200);
    // An alert on pending restore items fired for good after such a cancel (a trial).
    expect(await pending()).toBe(before);
  });

  it('an operation restore brings back everything the delete took, across tenants; a delete of those resources meanwhile is in_flight', async () => {
    await useRegistry(h);
    const sites = [freshSite(), freshSite(), freshSite()];
    const apps = sites.flatMap((s) => appsOfSite(s).slice(0, 2));
    const del = await deleteAndComplete(h, 'app', apps);
    const planned = await postRestore(h, { operationId: del, rollout: { concurrency: 4 } });
    expect(planned.status, JSON.stringify(planned.body)).toBe(201);
    expect(planned.body).toMatchObject({
      itemCount: apps.length,
      tenantCount: 3,
      scope: { kind: 'operation', operationId: del },
    });
    // Default waves 10% then 100%: one tenant first, then the other two.
    expect(planned.body.plan.waves.map((w: { tenants: number }) => w.tenants)).toEqual([1, 2]);
    // The restore holds its resources like a delete does.
    const clash = await request(h.app.server)
      .post('/v1/operations')
      .set('authorization', h.auth('requester'))
      .send({ targetType: 'app', reason: 'delete again', ticket: 'CHG-9', ids: [apps[0]] });
    expect(clash.status).toBe(422);
    expect(clash.body.details.offenders.in_flight).toEqual([
      expect.objectContaining({ id: apps[0], heldBy: planned.body.id }),
    ]);

    await command(h, 'approver', planned.body.id, 'approve', { planHash: planned.body.planHash }).expect(200);
    await command(h, 'operator', planned.body.id, 'start').expect(200);
    expect((await waitForState(h, planned.body.id, ['completed', 'completed_with_failures', 'halted'])).state).toBe(
      'completed',
    );
    const states = await registryStates(h, sites.flatMap(appsOfSite));
    for (const s of sites) {
      const [x, y, z] = appsOfSite(s);
      expect([states[x!], states[y!], states[z!]]).toEqual(['active', 'active', 'active']);
    }
  });
});

describe('HTTP adapter', () => {
  it('a tenant restore sends the site, then each app through its own adapter, each with the content its delete snapshotted', async () => {
    await useHttp(h);
    const [a, b] = [freshSite(), freshSite()];
    for (const s of [a, b]) {
      downstreamHas(siteId(s), tenantId(s), { name: `site ${s}`, plan: 'premium' });
      for (const x of appsOfSite(s)) downstreamHas(x, tenantId(s), { name: x, config: { seats: 10 } });
      h.downstream.cascade(siteId(s), appsOfSite(s));
    }
    await deleteAndComplete(h, 'site', [siteId(a), siteId(b)]);
    // What a real system does to deleted content: it is gone from the live record.
    for (const x of [siteId(a), ...appsOfSite(a)]) h.downstream.resources.get(x)!.data = {};

    const op = await runRestore(h, { tenantId: tenantId(a) });
    expect(op.state).toBe('completed');
    expect(op.counts).toMatchObject({ items: 1 + APPS, restored: 1 + APPS });
    expect(h.downstream.resources.get(siteId(a))).toMatchObject({ state: 'active', data: { plan: 'premium' } });
    for (const x of appsOfSite(a))
      expect(h.downstream.resources.get(x)).toMatchObject({ state: 'active', data: { config: { seats: 10 } } });
    for (const x of [siteId(b), ...appsOfSite(b)]) expect(h.downstream.state(x)).toBe('soft_deleted');

    // The restore operation's calls (the delete's restore drill had keys of its own).
    const restores = h.downstream.destructiveCalls().filter((c) => c.action === 'restore' && !isDrillCall(c));
    const site = restores.find((c) => c.resourceId === siteId(a))!;
    expect(site.path).toBe(`/sites/${siteId(a)}/restore`);
    for (const x of appsOfSite(a)) {
      const app = restores.find((c) => c.resourceId === x)!;
      expect(app.path).toBe(`/apps/${x}/restore`);
      expect(app.seq).toBeGreaterThan(site.seq);
      // What the restore overwrote was read (and stored) before the call.
      const read = h.downstream.calls.find((c) => c.action === 'snapshot' && c.resourceId === x)!;
      expect(read.seq).toBeLessThan(app.seq);
    }
    for (const c of restores) {
      expect(c.signatureValid).toBe(true);
      expect(c.idempotencyKey).toMatch(IDEMPOTENCY_KEY_PATTERN);
    }
  });

  it('targetType + ids restores exactly those resources', async () => {
    await useHttp(h);
    const s = freshSite();
    const apps = appsOfSite(s);
    await deleteAndComplete(h, 'app', apps);
    const op = await runRestore(h, { targetType: 'app', ids: apps.slice(0, 2) });
    expect(op).toMatchObject({ state: 'completed', scope: { kind: 'ids', targetType: 'app', ids: 2 }, itemCount: 2 });
    expect(apps.map((x) => h.downstream.state(x))).toEqual(['active', 'active', 'soft_deleted']);
  });
});

describe('asOf: back to the state at a point in time', () => {
  it('across two deletes of the same resource, asOf picks the snapshot of the first', async () => {
    await useHttp(h);
    const s = freshSite();
    const app = appsOfSite(s)[0]!;
    downstreamHas(app, tenantId(s), { version: 1 });
    const first = await deleteAndComplete(h, 'app', [app]);
    await command(h, 'operator', first, 'rollback', { reason: 'not yet' }).expect(200);
    await waitForState(h, first, ['rolled_back']);
    const between = new Date();
    h.downstream.resources.get(app)!.data = { version: 2 };
    const second = await deleteAndComplete(h, 'app', [app]);
    h.downstream.resources.get(app)!.data = {};
    const snapOf = async (opId: string) =>
      (
        await query<{ snapshot_id: string }>(
          h.databaseUrl,
          `SELECT snapshot_id FROM operation_items WHERE operation_id = $1`,
          [opId],
        )
      )[0]!.snapshot_id;

    // Without asOf: the latest delete's snapshot (version 2). Planned only, then cancelled.
    const latest = await postRestore(h, { targetType: 'app', ids: [app] });
    expect(latest.status).toBe(201);
    expect((await restoreItems(h, latest.body.id))[0]!.source_snapshot_id).toBe(await snapOf(second));
    await command(h, 'operator', latest.body.id, 'abort', { reason: 'wrong version' }).expect(200);

    const op = await runRestore(h, { targetType: 'app', ids: [app], asOf: between.toISOString() });
    expect(op.state).toBe('completed');
    expect((await restoreItems(h, op.id))[0]!.source_snapshot_id).toBe(await snapOf(first));
    // It was live at asOf (the first delete rolled back): no snapshot holds that moment, and the
    // plan says so, instead of passing its state when it came back off as its state at asOf.
    expect((op.plan as { liveAtAsOf?: unknown }).liveAtAsOf).toEqual({ count: 1, ids: [app] });
    expect((latest.body.plan as { liveAtAsOf?: unknown }).liveAtAsOf).toBeUndefined();
    expect(h.downstream.resources.get(app)).toMatchObject({ state: 'active', data: { version: 1 } });
  });

  it("a site deleted twice comes back with its apps as they were before the first delete (a restore's own snapshots are never a source)", async () => {
    await useHttp(h);
    const s = freshSite();
    downstreamHas(siteId(s), tenantId(s), { v: 1 });
    for (const x of appsOfSite(s)) downstreamHas(x, tenantId(s), { v: 1 });
    h.downstream.cascade(siteId(s), appsOfSite(s));
    const first = await deleteAndComplete(h, 'site', [siteId(s)]);
    for (const x of [siteId(s), ...appsOfSite(s)]) h.downstream.resources.get(x)!.data = {};
    // Brought back by a restore (which snapshots the emptied records first), then changed, then deleted again.
    expect((await runRestore(h, { operationId: first })).state).toBe('completed');
    const between = new Date();
    for (const x of [siteId(s), ...appsOfSite(s)]) h.downstream.resources.get(x)!.data = { v: 2 };
    await deleteAndComplete(h, 'site', [siteId(s)]);

    const op = await runRestore(h, { targetType: 'site', ids: [siteId(s)], asOf: between.toISOString() });
    expect(op).toMatchObject({ state: 'completed', itemCount: 1 + APPS });
    // Brought back by a restore before asOf: live then, and the plan says so.
    expect((op.plan as { liveAtAsOf?: { ids: string[] } }).liveAtAsOf?.ids).toContain(siteId(s));
    expect(op.plan.cascade).toEqual([{ type: 'app', count: APPS }]);
    for (const x of [siteId(s), ...appsOfSite(s)])
      expect(h.downstream.resources.get(x), x).toMatchObject({ state: 'active', data: { v: 1 } });
  });
  it('names only what it restores as live at asOf, not a parent it read to check the child can come back', async () => {
    await useHttp(h);
    const s = freshSite();
    const app = appsOfSite(s)[0]!;
    h.downstream.cascade(siteId(s), appsOfSite(s));
    const first = await deleteAndComplete(h, 'site', [siteId(s)]);
    // The site (and its apps) brought back, then one app deleted again: at asOf the site is live
    // and stays so, the app is deleted.
    expect((await runRestore(h, { operationId: first })).state).toBe('completed');
    await deleteAndComplete(h, 'app', [app]);

    const op = await runRestore(h, { targetType: 'app', ids: [app], asOf: new Date().toISOString() });
    expect(op).toMatchObject({ state: 'completed', itemCount: 1 });
    expect((op.plan as { liveAtAsOf?: unknown }).liveAtAsOf).toBeUndefined();
  });
});

describe('the restore operation', () => {
  it('is never rolled back: 409 ROLLBACK_NOT_SUPPORTED, and its state does not change', async () => {
    await useRegistry(h);
    const s = freshSite();
    await deleteAndComplete(h, 'site', [siteId(s)]);
    const op = await runRestore(h, { tenantId: tenantId(s) });
    const r = await command(h, 'operator', op.id, 'rollback', { reason: 'undo the restore' });
    expect(r.status).toBe(409);
    expect(r.body.code).toBe('ROLLBACK_NOT_SUPPORTED');
    expect(r.body.message).toMatch(/delete again what it restored/);
    expect((await getRestore(h, op.id)).state).toBe('completed');
  });
});
