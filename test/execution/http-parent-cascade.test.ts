// The mirror image of mixed-cascade.test.ts (a new-user trial): sites owned by another system (HTTP
// adapter) whose delete cascades to apps kept in the registry (registry adapter). The downstream's
// own cascade cannot reach a registry row, so each app is deleted (and brought back) through the
// registry adapter, before its site, and is done only when its row changed. Before the fix the
// operation ended `completed` with every app `done` in the ledger while the apps' registry rows
// still read `active`: a success that did not hold.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildExecHarness, waitForState, type ExecHarness } from '../support/execution.ts';
import { command, isDrillCall, ownCalls as ownCallsOf, deleteSitesOf } from '../support/exec-helpers.ts';
import { registryStates, runRestore } from '../support/restores.ts';
import { appId, query, seedRegistry, siteId } from '../support/seed.ts';

const APPS = 2;
const ENDED = ['completed', 'completed_with_failures', 'halted', 'paused', 'rolled_back', 'rollback_incomplete'];
let nextSite = 0;
const freshSites = (n: number) => Array.from({ length: n }, () => nextSite++);
const appsOfSite = (s: number) => Array.from({ length: APPS }, (_, j) => appId(s, j));

let h: ExecHarness;
beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 10, appsPerSite: APPS });
  // site: the test downstream, over HTTP; app: the registry adapter (the seed's default).
  const adapter = {
    kind: 'http',
    baseUrl: h.downstream.url,
    snapshot: 'GET /sites/{id}?tenantId={tenantId}',
    softDelete: 'POST /sites/{id}/soft-delete',
    restore: 'POST /sites/{id}/restore',
    hardDelete: 'DELETE /sites/{id}',
    timeoutMs: 5_000,
    retries: 2,
    retryBaseMs: 10,
  };
  await query(h.databaseUrl, `UPDATE resource_types SET adapter = $1 WHERE name = 'site'`, [JSON.stringify(adapter)]);
});
afterAll(async () => {
  await h?.close();
});
beforeEach(() => h.downstream.reset());

const deleteSites = (sites: number[], extra: Record<string, unknown> = {}) => deleteSitesOf(h, sites, extra);
const registry = (ids: string[]) => registryStates(h, ids);
const ledger = async (opId: string) =>
  Object.fromEntries(
    (
      await query<{ resource_id: string; state: string }>(
        h.databaseUrl,
        `SELECT resource_id, state FROM operation_items WHERE operation_id = $1`,
        [opId],
      )
    ).map((r) => [r.resource_id, r.state]),
  );
const ownCalls = (action: 'softDelete' | 'restore') => ownCallsOf(h, action);

describe('HTTP site, registry apps: each app row is deleted and restored through the registry', () => {
  it('soft-deletes every app row before its site’s call; the rollback brings both back', async () => {
    const sites = freshSites(2);
    const apps = sites.flatMap(appsOfSite);
    // The site's apps' registry states at the instant its delete reaches the downstream.
    const appsAtCall = new Map<string, string[]>();
    h.downstream.beforeApply(async (c) => {
      if (c.action !== 'softDelete' || isDrillCall(c)) return;
      const rows = await query<{ state: string }>(h.databaseUrl, `SELECT state FROM resources WHERE parent_id = $1`, [
        c.resourceId,
      ]);
      appsAtCall.set(
        c.resourceId!,
        rows.map((r) => r.state),
      );
    });
    const op = await deleteSites(sites);
    expect((await waitForState(h, op.id, ENDED)).state).toBe('completed');

    // One call per site, none for an app (the downstream does not own them).
    expect(ownCalls('softDelete').map((c) => [c.resourceId, c.status])).toEqual(
      expect.arrayContaining(sites.map((s) => [siteId(s), 200])),
    );
    expect(ownCalls('softDelete')).toHaveLength(sites.length);
    for (const s of sites) {
      expect(h.downstream.state(siteId(s))).toBe('soft_deleted');
      // Children first: nothing was live under a deleted site.
      expect(appsAtCall.get(siteId(s)), siteId(s)).toEqual(appsOfSite(s).map(() => 'soft_deleted'));
    }
    const rows = await registry(apps);
    for (const a of apps) expect(rows[a], a).toBe('soft_deleted');
    const states = await ledger(op.id);
    expect(Object.keys(states)).toHaveLength(sites.length * (1 + APPS));
    for (const [id, state] of Object.entries(states)) expect(state, id).toBe('done');

    await command(h, 'operator', op.id, 'rollback', { reason: 'wrong sites' }).expect(200);
    expect((await waitForState(h, op.id, ['rolled_back', 'rollback_incomplete'])).state).toBe('rolled_back');
    expect(
      ownCalls('restore')
        .map((c) => c.resourceId)
        .sort(),
    ).toEqual(sites.map(siteId));
    for (const s of sites) expect(h.downstream.state(siteId(s))).toBe('active');
    const back = await registry(apps);
    for (const a of apps) expect(back[a], a).toBe('active');
    for (const [id, state] of Object.entries(await ledger(op.id))) expect(state, id).toBe('restored');
  });

  it('a site refused after its app rows went: the site fails, its apps read done, and a rollback restores them', async () => {
    const [ok, refusing] = freshSites(2) as [number, number];
    // 403: refused as it stood, nothing changed (not retried).
    h.downstream.answer((c) => (c.action === 'softDelete' && c.resourceId === siteId(refusing) ? 403 : null));
    const op = await deleteSites([ok, refusing], {
      rollout: { bakeSeconds: 0, concurrency: 2, waves: ['100%'], restoreDrill: false },
      haltPolicy: { probe: 'optional', maxFailureRate: 1, onHalt: 'pause' },
    });
    expect((await waitForState(h, op.id, ENDED)).state).toBe('completed_with_failures');
    const states = await ledger(op.id);
    expect(states[siteId(refusing)]).toBe('failed');
    expect(h.downstream.state(siteId(refusing))).toBe('active');
    // Its app rows were deleted before the site's call: the ledger says so, and the registry agrees.
    const rows = await registry(appsOfSite(refusing));
    for (const a of appsOfSite(refusing)) {
      expect(states[a], a).toBe('done');
      expect(rows[a], a).toBe('soft_deleted');
    }
    for (const id of [siteId(ok), ...appsOfSite(ok)]) expect(states[id], id).toBe('done');

    h.downstream.answer(null);
    await command(h, 'operator', op.id, 'rollback', { reason: 'undo' }).expect(200);
    expect((await waitForState(h, op.id, ['rolled_back', 'rollback_incomplete'])).state).toBe('rolled_back');
    const back = await registry([...appsOfSite(ok), ...appsOfSite(refusing)]);
    for (const [id, state] of Object.entries(back)) expect(state, id).toBe('active');
    // The site that was never deleted got no restore, and stays failed with its error.
    expect(ownCalls('restore').map((c) => c.resourceId)).toEqual([siteId(ok)]);
    const after = await ledger(op.id);
    expect(after[siteId(refusing)]).toBe('failed');
    for (const a of appsOfSite(refusing)) expect(after[a], a).toBe('restored');
  });

  it('the restore drill brings a site and its app rows back and deletes both again', async () => {
    const sites = freshSites(1);
    const op = await deleteSites(sites, { rollout: { bakeSeconds: 0, concurrency: 2, waves: ['100%'] } });
    expect((await waitForState(h, op.id, ENDED)).state).toBe('completed');
    const drilled = h.downstream.calls.filter((c) => isDrillCall(c));
    expect(drilled.map((c) => [c.action, c.resourceId])).toEqual([
      ['restore', siteId(sites[0]!)],
      ['softDelete', siteId(sites[0]!)],
    ]);
    // Deleted again, with the site: the app rows do not stay live under a deleted site.
    const rows = await registry(appsOfSite(sites[0]!));
    for (const a of appsOfSite(sites[0]!)) expect(rows[a], a).toBe('soft_deleted');
    expect(h.downstream.state(siteId(sites[0]!))).toBe('soft_deleted');
  });

  it('an erasure purges the app rows in the registry before its site’s hard delete over HTTP', async () => {
    const sites = freshSites(1);
    const apps = appsOfSite(sites[0]!);
    const op = await deleteSites(sites, { erasure: true });
    expect((await waitForState(h, op.id, ENDED)).state).toBe('completed');
    const purges = h.downstream.destructiveCalls().filter((c) => c.action === 'hardDelete');
    expect(purges.map((c) => [c.resourceId, c.status])).toEqual([[siteId(sites[0]!), 200]]);
    expect(h.downstream.state(siteId(sites[0]!))).toBe('purged');
    const rows = await registry(apps);
    for (const a of apps) expect(rows[a], a).toBe('purged');
  });

  it('a restore operation of the delete brings the site back over HTTP, then its app rows', async () => {
    const sites = freshSites(1);
    const apps = appsOfSite(sites[0]!);
    const del = await deleteSites(sites, { rollout: { bakeSeconds: 0, concurrency: 2, restoreDrill: false } });
    expect((await waitForState(h, del.id, ENDED)).state).toBe('completed');
    const op = await runRestore(h, { operationId: del.id });
    expect(op).toMatchObject({ state: 'completed', itemCount: 1 + APPS });
    expect(ownCalls('restore').map((c) => [c.resourceId, c.status])).toEqual([[siteId(sites[0]!), 200]]);
    expect(h.downstream.state(siteId(sites[0]!))).toBe('active');
    const rows = await registry(apps);
    for (const a of apps) expect(rows[a], a).toBe('active');
  });
});
