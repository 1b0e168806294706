// A tenant move while an HTTP delete runs (a new-user trial): an import moved an app to another
// tenant before its delete call went out. The call still went out with the plan's tenant (README),
// the delete ended `completed`, and its ledger and snapshot kept that tenant. A restore of that
// tenant then refused the app as `superseded`, as if something after the delete had changed it,
// while a rollback restored it: only a change after the delete supersedes its snapshot. A change
// after it (a move, an import that says it is active again) still does.
import request from 'supertest';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { command, ledger, ownCalls } from '../support/exec-helpers.ts';
import {
  buildExecHarness,
  getOperation,
  submitAndStart,
  until,
  waitForState,
  type ExecHarness,
} from '../support/execution.ts';
import { deleteAndComplete, postRestore, restoreItems, runRestore, useHttp } from '../support/restores.ts';
import { appId, query, seedRegistry, tenantId } from '../support/seed.ts';

let h: ExecHarness;

beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 12, appsPerSite: 3 });
  await useHttp(h);
});
afterAll(async () => {
  await h?.close();
});
beforeEach(() => h.downstream.reset());

/** The import a system of record sends: apps that belong to tenant `to` now (state and parent omitted: kept). */
const importApps = (ids: string[], to: number, extra: Record<string, unknown> = {}) =>
  request(h.app.server)
    .post('/v1/registry/resources')
    .set('authorization', h.auth('admin'))
    .send({ resources: ids.map((id) => ({ id, type: 'app', tenantId: tenantId(to), ...extra })) })
    .expect(200);

/**
 * A delete of one app of site `canary` (its tenant is the first wave alone: fewest items) and of
 * `moved`, all apps of one other site; while the first wave bakes, before any call for `moved`,
 * an import moves them to tenant `to`. Returns the delete, ended `completed`.
 */
async function deleteMovingMeanwhile(canary: number, moved: string[], to: number) {
  const op = await submitAndStart(h, {
    ids: [appId(canary, 0), ...moved],
    reason: 'Cleanup script',
    rollout: { bakeSeconds: 3, concurrency: 4, waves: ['1', '100%'] },
    haltPolicy: { probe: 'optional' },
  });
  await until(async () => {
    const v = await getOperation(h, op.id);
    return v.state === 'baking' && v.currentWave === 0;
  }, 'the first wave to bake');
  expect(ownCalls(h, 'softDelete').filter((c) => moved.includes(c.resourceId!))).toEqual([]);
  await importApps(moved, to);
  expect((await waitForState(h, op.id, ['completed', 'completed_with_failures', 'halted'])).state).toBe('completed');
  return op.id;
}

describe('an app moved to another tenant before its HTTP delete call', () => {
  it("is restored by a restore of the delete's tenant, as the delete sent it and its snapshot says", async () => {
    const [canary, s, to] = [0, 1, 2];
    const moved = appId(s, 0);
    const del = await deleteMovingMeanwhile(canary, [moved], to);
    // As README says: the call went out with the plan's tenant, and the ledger keeps it.
    expect(ownCalls(h, 'softDelete').filter((c) => c.resourceId === moved)).toEqual([
      expect.objectContaining({ tenantId: tenantId(s), status: 200 }),
    ]);
    expect((await ledger(h, del)).find((r) => r.resource_id === moved)).toMatchObject({
      tenant_id: tenantId(s),
      state: 'done',
    });

    // Listed by ID it is not superseded either (dry run: nothing held).
    const byId = await postRestore(h, { targetType: 'app', ids: [moved], dryRun: true });
    expect(byId.status, JSON.stringify(byId.body)).toBe(200);
    // A scoped token needs both tenants: the delete's, which it comes back under, and the one the
    // registry names now (it could not delete it now without that one).
    const asToken = async (name: string, tenants: number[]) => {
      const token = await request(h.app.server)
        .post('/v1/admin/tokens')
        .set('authorization', h.auth('admin'))
        .send({ name, role: 'requester', scope: { resourceTypes: ['app'], tenants: tenants.map(tenantId) } })
        .expect(201);
      return request(h.app.server)
        .post('/v1/restores')
        .set('authorization', `Bearer ${token.body.token as string}`)
        .send({ tenantId: tenantId(s), reason: 'scoped restore', ticket: 'INC-9', dryRun: true });
    };
    const onlyOld = await asToken('restore-old-tenant', [s]);
    expect(onlyOld.status, JSON.stringify(onlyOld.body)).toBe(422);
    expect(onlyOld.body.details.counts).toMatchObject({ out_of_scope: 1, ok: 0 });
    expect((await asToken('restore-both-tenants', [s, to])).status).toBe(200);

    const run = await runRestore(h, { tenantId: tenantId(s) });
    expect(run).toMatchObject({ state: 'completed', itemCount: 1 });
    // Back where the delete took it from: the restore is addressed as the delete was, under the
    // tenant its ledger and snapshot say; the registry row (the owning system's) stays as imported.
    expect(await restoreItems(h, run.id)).toEqual([expect.objectContaining({ resource_id: moved, state: 'done' })]);
    const [item] = await query<{ tenant_id: string }>(
      h.databaseUrl,
      `SELECT tenant_id FROM operation_items WHERE operation_id = $1`,
      [run.id],
    );
    expect(item!.tenant_id).toBe(tenantId(s));
    expect(ownCalls(h, 'restore').filter((c) => c.resourceId === moved)).toEqual([
      expect.objectContaining({ tenantId: tenantId(s), status: 200 }),
    ]);
    expect(h.downstream.state(moved)).toBe('active');
    const [row] = await query<{ tenant_id: string }>(h.databaseUrl, `SELECT tenant_id FROM resources WHERE id = $1`, [
      moved,
    ]);
    expect(row!.tenant_id).toBe(tenantId(to));
  });
});

describe('a change after the delete still supersedes it', () => {
  it('an app moved after its delete: refused as superseded by ID, left out of its old tenant (moved)', async () => {
    const s = 3;
    const app = appId(s, 0);
    await deleteAndComplete(h, 'app', [app]);
    await importApps([app], 4);
    const byId = await postRestore(h, { targetType: 'app', ids: [app], dryRun: true });
    expect(byId.status, JSON.stringify(byId.body)).toBe(422);
    expect(byId.body).toMatchObject({ code: 'PLAN_REJECTED', details: { counts: { ok: 0, superseded: 1 } } });
    const byTenant = await postRestore(h, { tenantId: tenantId(s), dryRun: true });
    expect(byTenant.status, JSON.stringify(byTenant.body)).toBe(422);
    expect(byTenant.body).toMatchObject({
      code: 'NOTHING_TO_RESTORE',
      details: { leftOut: { moved: 1, items: [{ id: app, reason: 'moved', tenantId: tenantId(4) }] } },
    });
  });

  it('an app moved before its delete and changed after it (moved again, imported active): not restored', async () => {
    const [canary, s, to] = [5, 6, 7];
    const [again, active] = [appId(s, 0), appId(s, 1)];
    await deleteMovingMeanwhile(canary, [again, active], to);
    await importApps([again], 8);
    // Its system brought it back (an import that says it is active), in the tenant it moved to.
    await importApps([active], to, { state: 'active' });
    for (const id of [again, active]) {
      const r = await postRestore(h, { targetType: 'app', ids: [id], dryRun: true });
      expect(r.status, JSON.stringify(r.body)).toBe(422);
      expect(r.body).toMatchObject({ code: 'PLAN_REJECTED', details: { counts: { ok: 0, superseded: 1 } } });
    }
    // The tenant's restore leaves out both: the one moved again, and the one active again.
    const r = await postRestore(h, { tenantId: tenantId(s), dryRun: true });
    expect(r.status, JSON.stringify(r.body)).toBe(422);
    expect(r.body).toMatchObject({ code: 'NOTHING_TO_RESTORE', details: { leftOut: { moved: 1, activeAgain: 1 } } });
  });
});

// A rollback sends this operation's snapshot back, as a restore would: the same changes supersede
// it. Through an HTTP adapter nothing else stopped it: a rollback wrote the delete's snapshot over
// an app edited since it came back, and restored one under the tenant it had left (a probe).
describe('a rollback after the registry said the resource changed', () => {
  it('sends nothing for an app moved after its delete or active again, and restores the rest', async () => {
    const s = 9;
    const [moved, back, plain] = [appId(s, 0), appId(s, 1), appId(s, 2)];
    for (const id of [moved, back, plain])
      h.downstream.resources.set(id, { id, tenantId: tenantId(s), state: 'active', data: { name: id, v: 1 } });
    const del = await deleteAndComplete(h, 'app', [moved, back, plain]);
    await importApps([moved], 10);
    // Its system brought it back and it was edited since; an import says it is active.
    Object.assign(h.downstream.resources.get(back)!, { state: 'active', data: { name: back, v: 2 } });
    await importApps([back], s, { state: 'active' });

    await command(h, 'operator', del, 'rollback', { reason: 'wrong apps' }).expect(200);
    expect((await waitForState(h, del, ['rolled_back', 'rollback_incomplete'])).state).toBe('rollback_incomplete');
    expect(ownCalls(h, 'restore').map((c) => c.resourceId)).toEqual([plain]);
    expect(h.downstream.resources.get(back)!.data).toEqual({ name: back, v: 2 });
    const rows = await query<{ resource_id: string; state: string; last_error: string | null }>(
      h.databaseUrl,
      'SELECT resource_id, state, last_error FROM operation_items WHERE operation_id = $1',
      [del],
    );
    const items = new Map(rows.map((r) => [r.resource_id, r]));
    expect(items.get(moved)).toMatchObject({ state: 'restore_failed' });
    expect(items.get(moved)!.last_error).toContain(`belongs to ${tenantId(10)} now, not ${tenantId(s)}`);
    expect(items.get(back)).toMatchObject({ state: 'restored' });
    expect(items.get(back)!.last_error).toContain('active again since this delete');
    expect(items.get(plain)).toMatchObject({ state: 'restored', last_error: null });
  });

  it('restores an app moved before its delete call, under the tenant the delete used', async () => {
    const [canary, s, to] = [10, 11, 9];
    const moved = appId(s, 0);
    const del = await deleteMovingMeanwhile(canary, [moved], to);
    await command(h, 'operator', del, 'rollback', { reason: 'wrong apps' }).expect(200);
    expect((await waitForState(h, del, ['rolled_back', 'rollback_incomplete'])).state).toBe('rolled_back');
    expect(ownCalls(h, 'restore').filter((c) => c.resourceId === moved)).toEqual([
      expect.objectContaining({ tenantId: tenantId(s), status: 200 }),
    ]);
  });
});
