// A delete whose call failed with an unknown outcome (the downstream answered 500 and had not
// applied it) keeps its mark, so a rollback takes the item over to restore it. When that restore
// failed before any request went out (an unreadable snapshot, a rollback ended first), the item was
// left restore_failed: read as a delete that stands, its registry view said deletedBy, and a purge
// past retention hard-deleted the resource, live in its own system all along (found by a probe of
// this path). Time passing is simulated by backdating the resources' snapshots.
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { command, isDrillCall } from '../support/exec-helpers.ts';
import {
  buildExecHarness,
  submitAndStart,
  until,
  useHttpAdapter,
  waitForState,
  waitSettled,
  type ExecHarness,
} from '../support/execution.ts';
import {
  ageTwoDays,
  APPS,
  appsOfSite,
  ONE_LANE,
  postPurge as postPurgeAs,
  tamperSnapshots,
} from '../support/restores.ts';
import { query, seedRegistry, tenantId } from '../support/seed.ts';

let h: ExecHarness;
let nextSite = 0;
const LENIENT = { probe: 'optional', maxFailureRate: 1, maxConsecutiveFailures: 1_000_000 };

beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 10, appsPerSite: APPS });
  await useHttpAdapter(h, false, { retries: 1 });
  await query(h.databaseUrl, `UPDATE resource_types SET retention_days = 1 WHERE name = 'app'`);
});
afterAll(async () => {
  await h?.close();
});

const registryView = async (id: string) =>
  (await request(h.app.server).get(`/v1/registry/resources/${id}`).set('authorization', h.auth('viewer')).expect(200))
    .body as Record<string, unknown>;
const postPurge = (body: Record<string, unknown>) => postPurgeAs(h, body);
const itemOf = async (opId: string, id: string) =>
  (
    await query<{ state: string; restore_calls: number; forward_unconfirmed: boolean }>(
      h.databaseUrl,
      `SELECT state, restore_calls, forward_unconfirmed FROM operation_items WHERE operation_id = $1 AND resource_id = $2`,
      [opId, id],
    )
  )[0]!;
const restoresSent = () => h.downstream.calls.filter((c) => c.action === 'restore' && !isDrillCall(c));
const hardDeletes = () => h.downstream.calls.filter((c) => c.action === 'hardDelete').map((c) => c.resourceId);

const age = (ids: string[]) => ageTwoDays(h, ids);

/** A fresh site's apps, live downstream, deleted; X's soft delete answered 500 on every try, not applied. */
async function deleteWithXUnconfirmed() {
  h.downstream.reset();
  const s = nextSite++;
  const apps = appsOfSite(s);
  for (const x of apps)
    h.downstream.resources.set(x, { id: x, tenantId: tenantId(s), state: 'active', data: { name: x } });
  const X = apps[0]!;
  h.downstream.answer((c) => (c.action === 'softDelete' && c.resourceId === X ? 500 : null));
  try {
    const del = (await submitAndStart(h, { targetType: 'app', ids: apps, rollout: ONE_LANE, haltPolicy: LENIENT })).id;
    expect((await waitForState(h, del, ['completed_with_failures', 'completed', 'halted'])).state).toBe(
      'completed_with_failures',
    );
    expect(h.downstream.state(X)).toBe('active');
    return { s, apps, X, del };
  } finally {
    h.downstream.answer(null);
  }
}

describe('a rollback that never sent the restore of a delete of unknown outcome', () => {
  it('ended before the call: the delete does not stand, and no purge takes the live resource', async () => {
    const { apps, X, del } = await deleteWithXUnconfirmed();
    // The first restore sent is held until the rollback has been ended: X's and the third app's
    // restores are never sent.
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    h.downstream.beforeApply(async (c) => {
      if (c.action === 'restore' && c.resourceId !== X && !isDrillCall(c)) await gate;
    });
    try {
      await command(h, 'operator', del, 'rollback', { reason: 'wrong apps' }).expect(200);
      await until(() => restoresSent().length > 0, 'a restore under way');
      await command(h, 'operator', del, 'abort', { reason: 'downstream slow', endRollback: true }).expect(200);
    } finally {
      release();
      h.downstream.beforeApply(undefined);
    }
    await until(
      async () => (await Promise.all(apps.map((a) => itemOf(del, a)))).every((i) => i.state !== 'restoring'),
      'no item restoring',
    );
    // The ended rollback holds them until its run is settled (a restore of it may still land).
    await waitSettled(h, del);
    const held = restoresSent()[0]!.resourceId!;
    const third = apps.find((a) => a !== X && a !== held)!;
    expect(restoresSent().map((c) => c.resourceId)).toEqual([held]);
    expect(await itemOf(del, X)).toEqual({ state: 'restore_failed', restore_calls: 0, forward_unconfirmed: true });
    // Its delete did take effect: its restore never went out either, and that delete stands.
    expect(await itemOf(del, third)).toEqual({ state: 'restore_failed', restore_calls: 0, forward_unconfirmed: false });

    // The view says X's delete is of unknown outcome, not that it stands.
    expect(await registryView(X)).toMatchObject({
      deletedBy: null,
      uncertainDelete: { operationId: del },
      uncertainRestore: null,
    });
    expect(await registryView(third)).toMatchObject({ deletedBy: { operationId: del }, uncertainDelete: null });

    await age(apps);
    const byIds = await postPurge({ targetType: 'app', ids: [X], dryRun: true });
    expect(byIds.status, JSON.stringify(byIds.body)).toBe(422);
    expect(byIds.body.details.counts).toMatchObject({ ok: 0, not_deleted: 1 });
    const ofOp = await postPurge({ operationId: del, dryRun: true });
    expect(ofOp.status, JSON.stringify(ofOp.body)).toBe(200);
    // The operation's purge takes the third app; it leaves X out, saying why, beside the restored one.
    expect(ofOp.body.plan).toMatchObject({ itemCount: 1, leftOut: { uncertain: 1, restored: 1 } });
    expect(ofOp.body.plan.leftOut.items).toEqual(
      expect.arrayContaining([expect.objectContaining({ id: X, reason: 'uncertain', by: del })]),
    );
    expect(ofOp.body.plan.leftOut.items.map((i: { id: string }) => i.id)).not.toContain(third);
    // A real purge of X's list: refused, nothing hard-deleted.
    expect((await postPurge({ targetType: 'app', ids: [X, third] })).status).toBe(422);
    expect(hardDeletes()).toEqual([]);
    expect(h.downstream.state(X)).toBe('active');
  });

  it('an unreadable snapshot: a tenant purge leaves the live resource out', async () => {
    const { s, apps, X, del } = await deleteWithXUnconfirmed();
    await tamperSnapshots(
      h,
      `UPDATE snapshots SET content_hash = repeat('f', 64) WHERE operation_id = $1 AND resource_id = $2`,
      [del, X],
    );
    await command(h, 'operator', del, 'rollback', { reason: 'wrong apps' }).expect(200);
    expect((await waitForState(h, del, ['rolled_back', 'rollback_incomplete'])).state).toBe('rollback_incomplete');
    expect(await itemOf(del, X)).toMatchObject({ state: 'restore_failed', restore_calls: 0 });
    await age(apps);
    // The other apps were restored: nothing of the tenant is left to purge. X was taken as deleted.
    const r = await postPurge({ tenantId: tenantId(s) });
    expect(r.status, JSON.stringify(r.body)).toBe(422);
    expect(r.body.code).toBe('NOTHING_TO_PURGE');
    expect(hardDeletes()).toEqual([]);
    expect(h.downstream.state(X)).toBe('active');
  });
});
