// A cascade that crosses adapters (a new-user trial): sites kept in the registry (registry adapter)
// whose delete cascades to apps owned by another system (HTTP adapter). The registry's one statement
// cannot delete an app, so each app is deleted (and brought back) through its own type's adapter,
// over HTTP, and is done only when that call succeeded; its registry row's state stays the owning
// system's, as for any HTTP-type resource. Before the fix the operation ended `completed`, the apps'
// registry rows read soft_deleted and the downstream never got a delete.
import request from 'supertest';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildExecHarness, useHttpAdapter, waitForState, type ExecHarness } from '../support/execution.ts';
import { command, isDrillCall, ownCalls as ownCallsOf, deleteSitesOf } from '../support/exec-helpers.ts';
import { registryStates, runRestore } from '../support/restores.ts';
import { appId, query, seedRegistry, siteId, tenantId } from '../support/seed.ts';

const APPS = 3;
const ENDED = ['completed', 'completed_with_failures', 'halted', 'paused', 'rolled_back', 'rollback_incomplete'];
let nextSite = 0;
const freshSites = (n: number) => Array.from({ length: n }, () => nextSite++);
const appsOfSite = (s: number) => Array.from({ length: APPS }, (_, j) => appId(s, j));

let h: ExecHarness;
beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 20, appsPerSite: APPS });
  // site: the registry adapter (the seed's default); app: the test downstream, over HTTP.
  await useHttpAdapter(h, false);
});
afterAll(async () => {
  await h?.close();
});
beforeEach(() => h.downstream.reset());

const deleteSites = (sites: number[], extra: Record<string, unknown> = {}) => deleteSitesOf(h, sites, extra);

interface Row {
  resource_id: string;
  state: string;
  permanent: boolean;
  snapshot_id: string | null;
  executed_seq: string | null;
  last_error: string | null;
}
const items = async (opId: string) =>
  new Map(
    (
      await query<Row>(
        h.databaseUrl,
        `SELECT resource_id, state, permanent, snapshot_id, executed_seq, last_error FROM operation_items
         WHERE operation_id = $1 ORDER BY seq`,
        [opId],
      )
    ).map((r) => [r.resource_id, r]),
  );
const registry = (ids: string[]) => registryStates(h, ids);
/** The site's registry state at the instant each app's destructive call reaches the downstream. */
function siteStateAtEachCall(action: 'softDelete' | 'hardDelete') {
  const seen = new Map<string, string>();
  h.downstream.beforeApply(async (c) => {
    if (c.action !== action || isDrillCall(c)) return;
    const [r] = await query<{ state: string }>(
      h.databaseUrl,
      `SELECT s.state FROM resources a JOIN resources s ON s.id = a.parent_id WHERE a.id = $1`,
      [c.resourceId],
    );
    seen.set(c.resourceId!, r!.state);
  });
  return seen;
}
/** The operation's own calls of one action (not the restore drill's), as they reached the downstream. */
const ownCalls = (action: 'softDelete' | 'restore') => ownCallsOf(h, action);

describe('registry site, HTTP apps: each app is deleted and restored over HTTP', () => {
  it('deletes every app through its adapter before its site, and the rollback restores them over HTTP', async () => {
    const sites = freshSites(2);
    const apps = sites.flatMap(appsOfSite);
    const siteAt = siteStateAtEachCall('softDelete');
    const op = await deleteSites(sites);
    expect((await waitForState(h, op.id, ENDED)).state).toBe('completed');

    // One soft-delete call per app, answered 200, each with its own Idempotency-Key; none for a site.
    const deletes = ownCalls('softDelete');
    expect(deletes.map((c) => c.resourceId).sort()).toEqual(apps);
    for (const c of deletes) {
      expect(c.path).toBe(`/apps/${c.resourceId}/soft-delete`);
      expect(c.status).toBe(200);
      expect(c.idempotencyKey).toMatch(/^bg1-softDelete-/);
      // Snapshotted before its delete.
      const read = h.downstream.calls.find((x) => x.action === 'snapshot' && x.resourceId === c.resourceId)!;
      expect(read.seq).toBeLessThan(c.seq);
    }
    for (const a of apps) expect(h.downstream.state(a), a).toBe('soft_deleted');
    // Children first: each app went while its site was still live (nothing live under a deleted site).
    expect([...siteAt.keys()].sort()).toEqual(apps);
    expect(new Set(siteAt.values())).toEqual(new Set(['active']));
    // The restore drill brought one site's apps back over HTTP and deleted them again, with its own keys.
    const drilled = h.downstream.calls.filter((c) => isDrillCall(c) && c.action === 'restore').map((c) => c.resourceId);
    const redeleted = h.downstream.calls.filter((c) => isDrillCall(c) && c.action === 'softDelete');
    expect(drilled.length).toBe(APPS);
    expect(redeleted.map((c) => c.resourceId).sort()).toEqual([...drilled].sort());

    // The sites' rows are the registry's to change; the apps' rows are left as the owning system said.
    const rows = await registry([...sites.map(siteId), ...apps]);
    for (const s of sites) expect(rows[siteId(s)]).toBe('soft_deleted');
    for (const a of apps) expect(rows[a], a).toBe('active');
    const ledger = await items(op.id);
    expect(ledger.size).toBe(sites.length * (1 + APPS));
    for (const [id, r] of ledger) {
      expect(r.state, id).toBe('done');
      expect(r.snapshot_id, id).not.toBeNull();
    }

    await command(h, 'operator', op.id, 'rollback', { reason: 'wrong sites' }).expect(200);
    expect((await waitForState(h, op.id, ['rolled_back', 'rollback_incomplete'])).state).toBe('rolled_back');
    const restores = ownCalls('restore');
    expect(restores.map((c) => c.resourceId).sort()).toEqual(apps);
    for (const c of restores) {
      expect(c.path).toBe(`/apps/${c.resourceId}/restore`);
      expect(c.status).toBe(200);
    }
    for (const a of apps) expect(h.downstream.state(a), a).toBe('active');
    const back = await registry([...sites.map(siteId), ...apps]);
    for (const id of [...sites.map(siteId), ...apps]) expect(back[id], id).toBe('active');
    for (const [id, r] of await items(op.id)) expect(r.state, id).toBe('restored');
  });

  it('an app whose delete is refused keeps its site live; the apps deleted say so, and come back on rollback', async () => {
    const [ok, refusing] = freshSites(2) as [number, number];
    const refusedApp = appsOfSite(refusing)[1]!;
    // 422: refused as it stood, nothing changed (not retried).
    h.downstream.answer((c) => (c.action === 'softDelete' && c.resourceId === refusedApp ? 422 : null));
    const op = await deleteSites([ok, refusing], {
      rollout: { bakeSeconds: 0, concurrency: 2, waves: ['100%'], restoreDrill: false },
      haltPolicy: { probe: 'optional', maxFailureRate: 1, onHalt: 'pause' },
    });
    expect((await waitForState(h, op.id, ENDED)).state).toBe('completed_with_failures');

    const ledger = await items(op.id);
    const site = ledger.get(siteId(refusing))!;
    expect(site).toMatchObject({ state: 'failed', permanent: true });
    expect(site.last_error).toContain(refusedApp);
    expect(site.last_error).toMatch(/HTTP 422/);
    // The site was never deleted: its delete waits for its whole cascade.
    expect((await registry([siteId(refusing)]))[siteId(refusing)]).toBe('active');
    expect(ledger.get(refusedApp)).toMatchObject({ state: 'failed', permanent: true, executed_seq: null });
    expect(h.downstream.state(refusedApp)).toBe('active');
    // Its siblings' deletes went out beside it and succeeded: the ledger says so, not "failed".
    for (const a of appsOfSite(refusing).filter((x) => x !== refusedApp)) {
      expect(h.downstream.state(a), a).toBe('soft_deleted');
      expect(ledger.get(a), a).toMatchObject({ state: 'done' });
    }
    for (const id of [siteId(ok), ...appsOfSite(ok)]) expect(ledger.get(id)!.state, id).toBe('done');

    await command(h, 'operator', op.id, 'rollback', { reason: 'undo' }).expect(200);
    expect((await waitForState(h, op.id, ['rolled_back', 'rollback_incomplete'])).state).toBe('rolled_back');
    // Everything deleted came back over HTTP; the app that was never deleted got no restore.
    const restored = ownCalls('restore').map((c) => c.resourceId);
    expect(restored).not.toContain(refusedApp);
    for (const a of [...appsOfSite(ok), ...appsOfSite(refusing)]) expect(h.downstream.state(a), a).toBe('active');
    expect(restored.sort()).toEqual([...appsOfSite(ok), ...appsOfSite(refusing).filter((x) => x !== refusedApp)]);
  });

  it('a restore operation of the delete brings the apps back over HTTP, the site in the registry', async () => {
    const sites = freshSites(1);
    const apps = appsOfSite(sites[0]!);
    const del = await deleteSites(sites, { rollout: { bakeSeconds: 0, concurrency: 2, restoreDrill: false } });
    expect((await waitForState(h, del.id, ENDED)).state).toBe('completed');
    for (const a of apps) expect(h.downstream.state(a), a).toBe('soft_deleted');

    const op = await runRestore(h, { operationId: del.id });
    expect(op).toMatchObject({ state: 'completed', itemCount: 1 + APPS });
    const restores = ownCalls('restore');
    expect(restores.map((c) => [c.resourceId, c.path, c.status]).sort()).toEqual(
      apps.map((a) => [a, `/apps/${a}/restore`, 200]),
    );
    for (const a of apps) expect(h.downstream.state(a), a).toBe('active');
    expect((await registry([siteId(sites[0]!)]))[siteId(sites[0]!)]).toBe('active');
  });

  it('an erasure hard-deletes each app over HTTP before purging its site', async () => {
    const sites = freshSites(1);
    const apps = appsOfSite(sites[0]!);
    const siteAt = siteStateAtEachCall('hardDelete');
    const op = await deleteSites(sites, { erasure: true });
    expect((await waitForState(h, op.id, ENDED)).state).toBe('completed');
    const purges = h.downstream.destructiveCalls().filter((c) => c.action === 'hardDelete');
    expect(purges.map((c) => [c.resourceId, c.method, c.path, c.status]).sort()).toEqual(
      apps.map((a) => [a, 'DELETE', `/apps/${a}`, 200]),
    );
    for (const a of apps) expect(h.downstream.state(a), a).toBe('purged');
    expect(apps.map((a) => siteAt.get(a))).toEqual(apps.map(() => 'active'));
    expect((await registry([siteId(sites[0]!)]))[siteId(sites[0]!)]).toBe('purged');
    for (const [id, r] of await items(op.id)) expect(r.state, id).toBe('done');
  });

  it('an app protected while the operation runs keeps its site and every app of it: nothing is sent', async () => {
    const sites = freshSites(2);
    const op = await deleteSites(sites, {
      rollout: { bakeSeconds: 4, concurrency: 2, waves: ['1', '100%'], restoreDrill: false },
      haltPolicy: { probe: 'optional', maxFailureRate: 1, onHalt: 'pause' },
    });
    // An app of the second wave's site, protected (as an import would) during the first wave's bake.
    // Found by its planned wave: read by state, both sites were still pending when the first wave
    // had not begun yet, and the first wave's site was picked (its delete then took the app).
    const [w] = await query<{ resource_id: string }>(
      h.databaseUrl,
      `SELECT resource_id FROM operation_items WHERE operation_id = $1 AND wave = 1 AND parent_seq IS NULL`,
      [op.id],
    );
    const second = sites.find((s) => siteId(s) === w!.resource_id)!;
    const guarded = appsOfSite(second)[1]!;
    await query(h.databaseUrl, `UPDATE resources SET protected = true WHERE id = $1`, [guarded]);
    expect((await waitForState(h, op.id, ENDED)).state).toBe('completed_with_failures');
    const site = (await items(op.id)).get(siteId(second))!;
    expect(site).toMatchObject({ state: 'failed', permanent: true });
    expect(site.last_error).toContain(`its cascade would take ${guarded}, which is protected`);
    expect((await registry([siteId(second)]))[siteId(second)]).toBe('active');
    for (const a of appsOfSite(second)) {
      expect(
        h.downstream.calls.filter((c) => c.resourceId === a && c.action === 'softDelete'),
        a,
      ).toEqual([]);
      expect(h.downstream.state(a), a).toBe('active');
    }
  }, 60_000);
});

describe('a site whose own delete was never sent, some of its apps deleted (a new-user trial)', () => {
  /** The counts the rollback settled with (its closing audit event). */
  const settled = async (opId: string) => {
    const [e] = await query<{ action: string; payload: { restored: number; failed: number } }>(
      h.databaseUrl,
      `SELECT action, payload FROM audit_events WHERE operation_id = $1
         AND action IN ('operation.rolled_back', 'operation.rollback_incomplete') ORDER BY seq DESC LIMIT 1`,
      [opId],
    );
    return e && { action: e.action, restored: e.payload.restored, failed: e.payload.failed };
  };

  it('stays failed with its error after the halt rolls back: only its deleted apps are restored and counted', async () => {
    const [s] = freshSites(1) as [number];
    const apps = appsOfSite(s);
    const refusedApp = apps[1]!;
    const deleted = apps.filter((a) => a !== refusedApp);
    // 403: refused as it stood, nothing changed (not retried); its siblings' deletes go through.
    h.downstream.answer((c) => (c.action === 'softDelete' && c.resourceId === refusedApp ? 403 : null));
    const op = await deleteSites([s], {
      rollout: { bakeSeconds: 0, concurrency: 2, waves: ['100%'], restoreDrill: false },
      haltPolicy: { probe: 'optional', onHalt: 'rollback', minSample: 1, maxFailureRate: 0.4 },
    });
    const end = await waitForState(h, op.id, ['rolled_back', 'rollback_incomplete', 'completed_with_failures']);

    // The site was never deleted: its registry statement waits for its whole cascade.
    expect((await registry([siteId(s)]))[siteId(s)]).toBe('active');
    const ledger = await items(op.id);
    const site = ledger.get(siteId(s))!;
    expect(site.state).toBe('failed');
    expect(site.last_error).toBe(
      `${siteId(s)} not deleted: the delete of ${refusedApp} (app): HTTP 403 Forbidden failed`,
    );
    expect(ledger.get(refusedApp)).toMatchObject({ state: 'failed', executed_seq: null });
    // The apps deleted beside the refused one came back over HTTP; the refused one got no restore.
    for (const a of deleted) {
      expect(ledger.get(a)!.state, a).toBe('restored');
      expect(
        ownCalls('restore')
          .filter((c) => c.resourceId === a)
          .map((c) => c.status),
        a,
      ).toEqual([200]);
      expect(h.downstream.state(a), a).toBe('active');
    }
    expect(ownCalls('restore').map((c) => c.resourceId)).not.toContain(refusedApp);
    expect(h.downstream.state(refusedApp)).toBe('active');

    // Every item it deleted came back (the two apps): rolled_back, the site counted neither way.
    expect(end.state).toBe('rolled_back');
    expect(await settled(op.id)).toEqual({ action: 'operation.rolled_back', restored: deleted.length, failed: 0 });
    const view = await request(h.app.server).get(`/v1/operations/${op.id}`).set('authorization', h.auth('viewer'));
    expect(view.body.counts.byState).toEqual({ failed: 2, restored: deleted.length });
  });
});

describe('a restore of a delete whose site was never deleted, some of its apps were', () => {
  it('brings back the apps deleted, and leaves the live site alone: neither restored nor named as uncertain', async () => {
    const [s] = freshSites(1) as [number];
    const apps = appsOfSite(s);
    const refusedApp = apps[1]!;
    const deleted = apps.filter((a) => a !== refusedApp);
    h.downstream.answer((c) => (c.action === 'softDelete' && c.resourceId === refusedApp ? 403 : null));
    const del = await deleteSites([s], {
      rollout: { bakeSeconds: 0, concurrency: 2, waves: ['100%'], restoreDrill: false },
      haltPolicy: { probe: 'optional', maxFailureRate: 1, onHalt: 'pause' },
    });
    expect((await waitForState(h, del.id, ENDED)).state).toBe('completed_with_failures');
    expect((await items(del.id)).get(siteId(s))!.state).toBe('failed');
    h.downstream.answer(null);

    // The registry does not read the live site as a delete that may have happened.
    const view = await request(h.app.server)
      .get(`/v1/registry/resources/${siteId(s)}`)
      .set('authorization', h.auth('viewer'))
      .expect(200);
    expect(view.body).toMatchObject({ state: 'active', deletedBy: null, uncertainDelete: null });
    // By ID, the site is not deleted (not "uncertain": its delete was never sent).
    const byId = await request(h.app.server)
      .post('/v1/restores')
      .set('authorization', h.auth('requester'))
      .send({ reason: 'undo', ticket: 'INC-1', targetType: 'site', ids: [siteId(s)], dryRun: true });
    expect(byId.body.details?.counts, JSON.stringify(byId.body)).toMatchObject({ uncertain: 0, not_deleted: 1 });

    // The operation's restore: the two apps deleted, over HTTP; nothing of the site, nor the refused app.
    const dry = await request(h.app.server)
      .post('/v1/restores')
      .set('authorization', h.auth('requester'))
      .send({ reason: 'undo', ticket: 'INC-1', operationId: del.id, dryRun: true });
    expect(dry.status, JSON.stringify(dry.body)).toBe(200);
    expect(dry.body.plan.leftOut ?? null).toBeNull();
    const op = await runRestore(h, { operationId: del.id });
    expect(op).toMatchObject({ state: 'completed', itemCount: deleted.length });
    expect(
      ownCalls('restore')
        .map((c) => [c.resourceId, c.status])
        .sort(),
    ).toEqual(deleted.map((a) => [a, 200]));
    for (const a of apps) expect(h.downstream.state(a), a).toBe('active');
    expect((await registry([siteId(s)]))[siteId(s)]).toBe('active');
  });
});

describe("a canary whose cascade reaches another tenant's apps", () => {
  it("counts that tenant in the canary wave, and the bake probes it through the apps' adapter: unhealthy halts", async () => {
    const [a, b] = freshSites(2) as [number, number];
    // Site a's first app belongs to site b's customer: the canary (site a) deletes one of b's apps.
    const moved = appId(a, 0);
    await query(h.databaseUrl, `UPDATE resources SET tenant_id = $2 WHERE id = $1`, [moved, tenantId(b)]);
    await useHttpAdapter(h, true); // the apps' system has a health probe; the sites' (the registry) too
    h.downstream.probe(tenantId(b), 'unhealthy');
    try {
      const op = await deleteSites([a, b], {
        rollout: { bakeSeconds: 2, concurrency: 2, waves: ['1', '100%'], restoreDrill: false },
        haltPolicy: { probe: 'required', onHalt: 'pause' },
      });
      // The plan: wave 1 deletes tenant a's site and apps and one of tenant b's apps.
      const planned = await request(h.app.server).get(`/v1/operations/${op.id}`).set('authorization', h.auth('viewer'));
      const plan = planned.body.plan;
      expect(
        plan.waves.map((w: { tenants: number; cumulativeTenants: number }) => [w.tenants, w.cumulativeTenants]),
      ).toEqual([
        [2, 2],
        [1, 2],
      ]);
      // What each tenant loses, counted once, where it belongs; the first wave that touches it.
      expect(plan.tenants.top).toEqual([
        { tenantId: tenantId(b), items: 2 + APPS, internal: false, wave: 0 },
        { tenantId: tenantId(a), items: APPS, internal: false, wave: 0 },
      ]);
      expect(plan.itemCount).toBe(2 * (1 + APPS));

      const end = await waitForState(h, op.id, ENDED);
      expect(end.state, end.haltReason ?? undefined).toBe('halted');
      expect(end.haltReason).toMatch(new RegExp(`unhealthy probes: ${tenantId(b)} via app \\(unhealthy`));
      // Asked through the apps' adapter, for the tenant only the cascade touched; site b was never deleted.
      expect(h.downstream.calls.some((c) => c.action === 'probe' && c.tenantId === tenantId(b))).toBe(true);
      expect((await registry([siteId(b)]))[siteId(b)]).toBe('active');
      expect(
        ownCalls('softDelete')
          .map((c) => c.resourceId)
          .sort(),
      ).toEqual([...appsOfSite(a)].sort());

      const rb = await command(h, 'operator', op.id, 'rollback', { reason: 'tenant b unhealthy' });
      expect(rb.status, JSON.stringify(rb.body)).toBe(200);
      expect((await waitForState(h, op.id, ENDED)).state).toBe('rolled_back');
      expect(h.downstream.state(moved)).toBe('active');
    } finally {
      h.downstream.probe(tenantId(b), 'healthy');
      await useHttpAdapter(h, false);
    }
  });
});

describe('an app created over HTTP under a planned site while the operation runs', () => {
  it('leaves the site: it fails naming the app, which stays live, and the site is not deleted', async () => {
    const [a, b] = freshSites(2) as [number, number];
    const op = await deleteSites([a, b], {
      rollout: { bakeSeconds: 2, concurrency: 2, waves: ['1', '100%'], restoreDrill: false },
      haltPolicy: { probe: 'optional', maxFailureRate: 1, onHalt: 'pause' },
    });
    const born = appId(b, 90);
    await request(h.app.server)
      .post('/v1/registry/resources')
      .set('authorization', h.auth('admin'))
      .send({ resources: [{ id: born, type: 'app', tenantId: tenantId(b), parentId: siteId(b) }] })
      .expect(200);
    const end = await waitForState(h, op.id, ENDED);
    expect(end.state).toBe('completed_with_failures');
    expect((await items(op.id)).get(siteId(b))!.last_error).toContain(
      `its cascade would now take ${born}, which the plan does not list`,
    );
    expect((await registry([siteId(b)]))[siteId(b)]).toBe('active');
    expect(ownCalls('softDelete').some((c) => appsOfSite(b).includes(c.resourceId!) || c.resourceId === born)).toBe(
      false,
    );
  });
});
