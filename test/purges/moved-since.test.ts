// What a tenant's or an operation's deletes took and an import has since moved to another tenant
// (or type). A tenant's purge hard-deleted such an app, now another customer's, its plan listing
// that other tenant with nothing saying why (a probe); a tenant's restore refused the whole tenant
// for it (PLAN_REJECTED, superseded), for good, as one app brought back outside Blastgate once did.
// Both scopes leave it out now (leftOut: moved, naming where it is), as they leave out what is
// active again, and act on the rest; a list of IDs still names it and is judged as it was. So does
// everything due (dueBefore, the daily proposal), which hard-deleted it under its new tenant (a trial).
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { command } from '../support/exec-helpers.ts';
import { buildExecHarness, waitForState, type ExecHarness } from '../support/execution.ts';
import {
  ageTwoDays,
  appsOfSite,
  deleteAndComplete,
  postPurge as postPurgeAs,
  postRestore,
  useHttp,
} from '../support/restores.ts';
import { query, seedRegistry, tenantId } from '../support/seed.ts';

let h: ExecHarness;

beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 6, appsPerSite: 3 });
  await useHttp(h);
  await query(h.databaseUrl, `UPDATE resource_types SET retention_days = 1 WHERE name = 'app'`);
});
afterAll(async () => {
  await h?.close();
});

const postPurge = (body: Record<string, unknown>) => postPurgeAs(h, body);
/** The import a system of record sends: these apps belong to tenant `to` now (state and parent kept). */
const moveApps = (ids: string[], to: number) =>
  request(h.app.server)
    .post('/v1/registry/resources')
    .set('authorization', h.auth('admin'))
    .send({ resources: ids.map((id) => ({ id, type: 'app', tenantId: tenantId(to) })) })
    .expect(200);
const age = (ids: string[]) => ageTwoDays(h, ids);
/** A site's apps, live downstream, deleted through their HTTP adapter; then `moved` goes to tenant `to`. */
async function deleteThenMove(s: number, to: number) {
  h.downstream.reset();
  const apps = appsOfSite(s);
  for (const x of apps)
    h.downstream.resources.set(x, { id: x, tenantId: tenantId(s), state: 'active', data: { name: x } });
  const del = await deleteAndComplete(h, 'app', apps);
  await age(apps);
  await moveApps([apps[0]!], to);
  return { apps, moved: apps[0]!, rest: apps.slice(1), del };
}
const movedItem = (id: string, to: number, del: string) =>
  expect.objectContaining({ id, reason: 'moved', by: del, tenantId: tenantId(to) });

describe('a resource moved to another tenant after its delete', () => {
  it("is left out of its old tenant's purge, which hard-deletes the rest only", async () => {
    const { moved, rest, del } = await deleteThenMove(0, 1);
    const r = await postPurge({ tenantId: tenantId(0) });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body.plan).toMatchObject({ itemCount: rest.length, leftOut: { moved: 1 } });
    expect(r.body.plan.leftOut.items).toEqual([movedItem(moved, 1, del)]);
    await command(h, 'approver', r.body.id, 'approve', { planHash: r.body.planHash }).expect(200);
    await command(h, 'operator', r.body.id, 'start').expect(200);
    expect((await waitForState(h, r.body.id, ['completed', 'completed_with_failures', 'halted'])).state).toBe(
      'completed',
    );
    const hardDeleted = h.downstream.calls.filter((c) => c.action === 'hardDelete').map((c) => c.resourceId);
    expect(hardDeleted.sort()).toEqual([...rest].sort());
    expect(h.downstream.state(moved)).toBe('soft_deleted');

    // Its delete's purge leaves it out the same way; by ID it is still the operator's to name.
    const ofOp = await postPurge({ operationId: del, dryRun: true });
    expect(ofOp.status, JSON.stringify(ofOp.body)).toBe(422);
    expect(ofOp.body).toMatchObject({ code: 'NOTHING_TO_PURGE' });
    expect(ofOp.body.message).toMatch(/moved to another tenant or type since/);
    const byId = await postPurge({ targetType: 'app', ids: [moved], dryRun: true });
    expect(byId.status, JSON.stringify(byId.body)).toBe(200);
    expect(byId.body.plan).toMatchObject({ itemCount: 1 });
  });

  it("is left out of its old tenant's and its delete's restores, which restore the rest", async () => {
    const { moved, rest, del } = await deleteThenMove(2, 3);
    for (const scope of [{ tenantId: tenantId(2) }, { operationId: del }]) {
      const r = await postRestore(h, { ...scope, dryRun: true });
      expect(r.status, `${JSON.stringify(scope)} ${JSON.stringify(r.body)}`).toBe(200);
      expect(r.body.plan).toMatchObject({ itemCount: rest.length, leftOut: { moved: 1 } });
      expect(r.body.plan.leftOut.items).toEqual([movedItem(moved, 3, del)]);
    }
    // Named by ID it is still refused: its snapshot is of another tenant's resource now.
    const byId = await postRestore(h, { targetType: 'app', ids: [moved], dryRun: true });
    expect(byId.status, JSON.stringify(byId.body)).toBe(422);
    expect(byId.body).toMatchObject({ code: 'PLAN_REJECTED', details: { counts: { superseded: 1 } } });
  });

  it('is left out of everything due (dueBefore), which hard-deletes the rest and then says why nothing is left', async () => {
    const { moved, rest, del } = await deleteThenMove(4, 5);
    const now = new Date().toISOString();
    const r = await postPurge({ dueBefore: now });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body.plan.leftOut.moved).toBeGreaterThanOrEqual(1);
    expect(r.body.plan.leftOut.items).toEqual(expect.arrayContaining([movedItem(moved, 5, del)]));
    expect(r.body.plan.leftOut.items.every((i: { reason: string }) => i.reason === 'moved')).toBe(true);
    const left = r.body.plan.leftOut.items.map((i: { id: string }) => i.id);
    await command(h, 'approver', r.body.id, 'approve', { planHash: r.body.planHash }).expect(200);
    await command(h, 'operator', r.body.id, 'start').expect(200);
    expect((await waitForState(h, r.body.id, ['completed', 'completed_with_failures', 'halted'])).state).toBe(
      'completed',
    );
    const hardDeleted = h.downstream.calls.filter((c) => c.action === 'hardDelete').map((c) => c.resourceId);
    expect(hardDeleted).toEqual(expect.arrayContaining(rest));
    expect(hardDeleted.filter((id) => left.includes(id))).toEqual([]);
    expect(h.downstream.state(moved)).toBe('soft_deleted');

    const again = await postPurge({ dueBefore: new Date().toISOString(), dryRun: true });
    expect(again.status, JSON.stringify(again.body)).toBe(422);
    expect(again.body).toMatchObject({ code: 'NOTHING_TO_PURGE', details: { leftOut: { moved: left.length } } });
    expect(again.body.message).toMatch(/were left out: \d+ moved \(moved to another tenant or type since their delete/);
  });
});
