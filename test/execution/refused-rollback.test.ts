// A delete the downstream refused on every try never happened: the rollback after a halt sends it no
// restore (which, over HTTP, would write the snapshot over the live resource) and does not count it
// restored. Its write-ahead mark goes only when that is certain: every try of it, in this run and
// before, was a definite refusal. A refusal after a try that may have applied (a timeout, a 5xx), or
// of an item an earlier run may have sent, keeps the mark, and the rollback restores the item.
// On the real stack: real workers, a real downstream over HTTP that records every call.
import request from 'supertest';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  buildExecHarness,
  submitAndStart,
  until,
  useHttpAdapter,
  waitForState,
  type ExecHarness,
} from '../support/execution.ts';
import { appsOf, command } from '../support/exec-helpers.ts';
import { postRestore, useHttp } from '../support/restores.ts';
import { appId, query, seedRegistry, siteId, tenantId } from '../support/seed.ts';

const APPS = 4;
const ROLLOUT = { bakeSeconds: 0, concurrency: 2, waves: ['100%'], restoreDrill: false };
const ENDED = ['completed', 'completed_with_failures', 'halted', 'rolled_back', 'rollback_incomplete'];
let nextSite = 10;
/** Sites no other test of this file uses. */
const freshSites = (n: number) => Array.from({ length: n }, () => nextSite++);

let h: ExecHarness;
beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 40, appsPerSite: APPS, internalTenants: 2 });
});
afterAll(async () => {
  await h?.close();
});
beforeEach(async () => {
  h.downstream.reset();
  await useHttpAdapter(h);
});

interface Item {
  resource_id: string;
  state: string;
  permanent: boolean;
  executed_seq: string | null;
  last_error: string | null;
}
const items = async (opId: string) =>
  new Map(
    (
      await query<Item>(
        h.databaseUrl,
        `SELECT resource_id, state, permanent, executed_seq, last_error FROM operation_items
         WHERE operation_id = $1 ORDER BY seq`,
        [opId],
      )
    ).map((r) => [r.resource_id, r]),
  );
const callsOf = (id: string, action: 'softDelete' | 'restore') =>
  h.downstream.calls.filter((c) => c.resourceId === id && c.action === action);
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
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('a delete refused on every try (HTTP 422)', () => {
  it('gets no restore call when the wave halts and rolls back, and is not counted restored', async () => {
    const [ok, refusing] = freshSites(2) as [number, number];
    const done = appsOf([ok], APPS);
    const refused = appsOf([refusing], APPS);
    h.downstream.failOnly(['softDelete']);
    h.downstream.failTenants([tenantId(refusing)], 422);
    // Every item is sent (the wave is judged on all 8), then the failure rate halts it.
    const haltPolicy = { probe: 'optional', onHalt: 'rollback', minSample: 8, maxFailureRate: 0.4 };
    const op = await submitAndStart(h, { ids: [...done, ...refused], rollout: ROLLOUT, haltPolicy });
    const end = await waitForState(h, op.id, ENDED);

    const rows = await items(op.id);
    for (const id of refused) {
      // Refused once (a 422 is not retried), never restored: the resource was never deleted.
      expect(callsOf(id, 'softDelete').map((c) => c.status)).toEqual([422]);
      expect(callsOf(id, 'restore'), id).toEqual([]);
      expect(h.downstream.state(id)).toBe('active');
      expect(rows.get(id)).toMatchObject({ state: 'failed', permanent: true, executed_seq: null });
      expect(rows.get(id)!.last_error).toMatch(/HTTP 422/);
    }
    for (const id of done) {
      expect(callsOf(id, 'restore').map((c) => c.status)).toEqual([200]);
      expect(h.downstream.state(id)).toBe('active');
      expect(rows.get(id)).toMatchObject({ state: 'restored' });
    }
    // Every item it deleted came back: rolled_back, counting the restores it made and no failure.
    expect(end.state).toBe('rolled_back');
    expect(await settled(op.id)).toEqual({ action: 'operation.rolled_back', restored: done.length, failed: 0 });
  });

  it("takes its cascade's marks with it: neither the site nor the apps its delete would take are restored", async () => {
    // Both types on the test downstream (sites under /sites, apps under /apps), with a cascade.
    await useHttp(h);
    try {
      const [ok, refusing] = freshSites(2) as [number, number];
      for (const s of [ok, refusing]) h.downstream.cascade(siteId(s), appsOf([s], APPS));
      h.downstream.failOnly(['softDelete']);
      h.downstream.failTenants([tenantId(refusing)], 422);
      const haltPolicy = { probe: 'optional', onHalt: 'rollback', minSample: 2, maxFailureRate: 0.4 };
      const op = await submitAndStart(h, {
        targetType: 'site',
        ids: [siteId(ok), siteId(refusing)],
        rollout: ROLLOUT,
        haltPolicy,
      });
      const end = await waitForState(h, op.id, ENDED);

      const rows = await items(op.id);
      for (const id of [siteId(refusing), ...appsOf([refusing], APPS)]) {
        expect(callsOf(id, 'restore'), id).toEqual([]);
        expect(h.downstream.state(id)).toBe('active');
        expect(rows.get(id)).toMatchObject({ state: 'failed', permanent: true, executed_seq: null });
      }
      for (const id of [siteId(ok), ...appsOf([ok], APPS)]) {
        expect(
          callsOf(id, 'restore').map((c) => c.status),
          id,
        ).toEqual([200]);
        expect(rows.get(id)).toMatchObject({ state: 'restored' });
      }
      expect(end.state).toBe('rolled_back');
      expect(await settled(op.id)).toEqual({ action: 'operation.rolled_back', restored: 1 + APPS, failed: 0 });
    } finally {
      await query(h.databaseUrl, `UPDATE resource_types SET adapter = '{"kind":"registry"}' WHERE name = 'site'`);
    }
  });
});

describe('a refusal that may follow an applied delete keeps the mark, and the rollback restores it', () => {
  it('a try timed out (and was applied downstream), its retry was answered 404 or 422: restored', async () => {
    await useHttpAdapter(h, true, { timeoutMs: 400 });
    const [s] = freshSites(1) as [number];
    const ids = appsOf([s], APPS);
    const retryAnswers = new Map([
      [appId(s, 0), 404],
      [appId(s, 1), 422],
    ]);
    // The first try is held past the adapter's timeout, then applied (its answer goes nowhere); the
    // retry, with the same key, is answered as by a service that lost the key: "gone", or refused.
    h.downstream.beforeApply(async (call) => {
      if (call.action === 'softDelete' && retryAnswers.has(call.resourceId!)) await sleep(900);
    });
    h.downstream.answer((call) =>
      call.action === 'softDelete' && callsOf(call.resourceId!, 'softDelete').length > 1
        ? (retryAnswers.get(call.resourceId!) ?? null)
        : null,
    );
    const haltPolicy = { probe: 'optional', onHalt: 'pause', minSample: APPS, maxFailureRate: 0.4 };
    const op = await submitAndStart(h, { ids, rollout: ROLLOUT, haltPolicy });
    expect((await waitForState(h, op.id, ENDED)).state).toBe('halted');
    // Both deletes did happen downstream.
    await until(() => [...retryAnswers.keys()].every((id) => h.downstream.state(id) === 'soft_deleted'), 'applied');

    const before = await items(op.id);
    for (const [id, status] of retryAnswers) {
      const row = before.get(id)!;
      expect(row).toMatchObject({ state: 'failed', permanent: true });
      expect(row.executed_seq, id).not.toBeNull();
      expect(row.last_error).toMatch(new RegExp(`^HTTP ${status}.*; earlier attempt: timeout after 400 ms`));
    }
    await command(h, 'operator', op.id, 'rollback', { reason: 'undo' }).expect(200);
    const end = await waitForState(h, op.id, ['rolled_back', 'rollback_incomplete']);
    const after = await items(op.id);
    for (const id of ids) {
      expect(h.downstream.state(id), id).toBe('active');
      expect(after.get(id)!.state, id).toBe('restored');
    }
    for (const id of retryAnswers.keys()) expect(callsOf(id, 'restore').map((c) => c.status)).toEqual([200]);
    expect(end.state).toBe('rolled_back');
    expect(await settled(op.id)).toEqual({ action: 'operation.rolled_back', restored: ids.length, failed: 0 });
  });

  it('marked by an earlier run (its try timed out, applied), refused 422 on the resume: restored', async () => {
    // One try per run: the run that marks it gives up on the timeout, the resume's only try is refused.
    await useHttpAdapter(h, true, { timeoutMs: 400, retries: 0 });
    const [s] = freshSites(1) as [number];
    const ids = appsOf([s], APPS);
    const victim = appId(s, 0);
    h.downstream.beforeApply(async (call) => {
      if (call.action === 'softDelete' && call.resourceId === victim) await sleep(900);
    });
    const haltPolicy = { probe: 'optional', onHalt: 'pause', minSample: APPS, maxFailureRate: 0.2 };
    const op = await submitAndStart(h, { ids, rollout: ROLLOUT, haltPolicy });
    expect((await waitForState(h, op.id, ENDED)).state).toBe('halted');
    await until(() => h.downstream.state(victim) === 'soft_deleted', 'the timed-out delete applied');
    const first = (await items(op.id)).get(victim)!;
    expect(first).toMatchObject({ state: 'failed', permanent: false });
    expect(first.executed_seq).not.toBeNull();

    // The resume sends it again; this time the downstream refuses it outright, on its only try.
    h.downstream.answer((call) => (call.action === 'softDelete' && call.resourceId === victim ? 422 : null));
    await command(h, 'operator', op.id, 'resume', {}).expect(200);
    await until(async () => (await items(op.id)).get(victim)!.permanent, 'the refusal recorded');
    expect((await waitForState(h, op.id, ENDED)).state).toMatch(/^(halted|completed_with_failures)$/);
    const refused = (await items(op.id)).get(victim)!;
    expect(refused).toMatchObject({ state: 'failed', permanent: true, executed_seq: first.executed_seq });
    expect(refused.last_error).toMatch(/^HTTP 422/);
    // Two tries in all: the first run's, which timed out, and the resume's.
    const tries = callsOf(victim, 'softDelete');
    expect([tries.length, tries[1]?.status]).toEqual([2, 422]);

    await command(h, 'operator', op.id, 'rollback', { reason: 'undo' }).expect(200);
    const end = await waitForState(h, op.id, ['rolled_back', 'rollback_incomplete']);
    expect(callsOf(victim, 'restore').map((c) => c.status)).toEqual([200]);
    for (const id of ids) expect(h.downstream.state(id), id).toBe('active');
    expect((await items(op.id)).get(victim)!.state).toBe('restored');
    expect(end.state).toBe('rolled_back');
    expect(await settled(op.id)).toEqual({ action: 'operation.rolled_back', restored: ids.length, failed: 0 });
  });
});

describe('a restore of the operation or its tenant names a delete that may or may not have happened', () => {
  it('left out as uncertain (a try timed out, its retry was answered 404), never skipped silently', async () => {
    await useHttpAdapter(h, true, { timeoutMs: 400 });
    const [s] = freshSites(1) as [number];
    const ids = appsOf([s], APPS);
    const victim = appId(s, 0);
    h.downstream.beforeApply(async (call) => {
      if (call.action === 'softDelete' && call.resourceId === victim) await sleep(900);
    });
    h.downstream.answer((call) =>
      call.action === 'softDelete' && call.resourceId === victim && callsOf(victim, 'softDelete').length > 1
        ? 404
        : null,
    );
    // One failure in four stays under the halt threshold: the operation ends with it failed.
    const haltPolicy = { probe: 'optional', onHalt: 'pause', minSample: APPS, maxFailureRate: 0.5 };
    const op = await submitAndStart(h, { ids, rollout: ROLLOUT, haltPolicy });
    expect((await waitForState(h, op.id, ENDED)).state).toBe('completed_with_failures');
    const row = (await items(op.id)).get(victim)!;
    expect(row).toMatchObject({ state: 'failed' });
    expect(row.executed_seq).not.toBeNull();

    const uncertain = {
      id: victim,
      reason: 'uncertain',
      by: op.id,
      detail: `the delete by ${op.id} may or may not have happened (a try of unknown outcome, then a failure): a rollback of ${op.id} restores it from its snapshot`,
    };
    for (const scope of [{ operationId: op.id }, { tenantId: tenantId(s) }]) {
      const r = await postRestore(h, { ...scope, dryRun: true });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      // The three it knows it deleted are restored; the fourth is named with why it is not.
      expect(r.body.plan, JSON.stringify(scope)).toMatchObject({
        itemCount: APPS - 1,
        leftOut: { uncertain: 1, items: [uncertain] },
      });
    }

    // Named by ID, it is refused as uncertain with the delete that may have happened, not as
    // not_deleted: that read as certain that nothing was deleted (a new-user trial).
    const byIds = await postRestore(h, { targetType: 'app', ids: [appId(s, 1), victim], dryRun: true });
    expect(byIds.status, JSON.stringify(byIds.body)).toBe(422);
    expect(byIds.body.code).toBe('PLAN_REJECTED');
    expect(byIds.body.details.counts).toMatchObject({ ok: 1, uncertain: 1, not_deleted: 0 });
    expect(byIds.body.details.offenders.uncertain).toEqual([
      expect.objectContaining({ id: victim, index: 1, deletedBy: op.id }),
    ]);
    expect(byIds.body.message).toContain(
      '1 ID whose delete may or may not have happened (roll back that delete to restore it from its snapshot) (uncertain)',
    );
    // The full report names the delete too.
    const stored = await postRestore(h, { targetType: 'app', ids: [victim] });
    expect(stored.status).toBe(422);
    const report = await request(h.app.server)
      .get(`/v1/operations/${stored.body.details.operationId}/report`)
      .set('authorization', h.auth('viewer'));
    expect(report.status, JSON.stringify(report.body)).toBe(200);
    expect(report.body.items).toEqual([expect.objectContaining({ id: victim, class: 'uncertain', deletedBy: op.id })]);
    expect(report.body.items[0]).not.toHaveProperty('heldBy');

    // The registry says so too: deletedBy null alone read as never touched.
    const view = async (id: string) =>
      (await request(h.app.server).get(`/v1/registry/resources/${id}`).set('authorization', h.auth('viewer'))).body;
    expect(await view(victim)).toMatchObject({ deletedBy: null, uncertainDelete: { operationId: op.id } });
    expect(await view(appId(s, 1))).toMatchObject({ deletedBy: { operationId: op.id }, uncertainDelete: null });
    const list = await request(h.app.server)
      .get(`/v1/registry/resources?tenantId=${tenantId(s)}&type=app`)
      .set('authorization', h.auth('viewer'));
    expect(list.body.items.find((r: { id: string }) => r.id === victim)).toMatchObject({
      uncertainDelete: { operationId: op.id },
    });
  });

  it('is no longer uncertain once a later operation deleted it and its rollback brought it back', async () => {
    await useHttpAdapter(h, true, { timeoutMs: 400 });
    const [s] = freshSites(1) as [number];
    const victim = appId(s, 0);
    h.downstream.beforeApply(async (call) => {
      if (call.action === 'softDelete' && call.resourceId === victim && callsOf(victim, 'softDelete').length === 1)
        await sleep(900);
    });
    h.downstream.answer((call) =>
      call.action === 'softDelete' && call.resourceId === victim && callsOf(victim, 'softDelete').length === 2
        ? 404
        : null,
    );
    const haltPolicy = { probe: 'optional', onHalt: 'pause', minSample: APPS, maxFailureRate: 0.5 };
    const first = await submitAndStart(h, { ids: appsOf([s], APPS), rollout: ROLLOUT, haltPolicy });
    expect((await waitForState(h, first.id, ENDED)).state).toBe('completed_with_failures');
    // A later delete of it alone went through, and was rolled back: its latest act on it took effect.
    h.downstream.beforeApply(undefined);
    h.downstream.answer(null);
    const second = await submitAndStart(h, { ids: [victim], rollout: ROLLOUT });
    expect((await waitForState(h, second.id, ENDED)).state).toBe('completed');
    await command(h, 'operator', second.id, 'rollback', { reason: 'wrong app' }).expect(200);
    expect((await waitForState(h, second.id, ENDED)).state).toBe('rolled_back');

    // The first delete's restore no longer tells anyone to roll it back for this one (a trial).
    const r = await postRestore(h, { operationId: first.id, dryRun: true });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.plan.leftOut?.uncertain ?? 0).toBe(0);
    const view = await request(h.app.server)
      .get(`/v1/registry/resources/${victim}`)
      .set('authorization', h.auth('viewer'));
    expect(view.body).toMatchObject({ deletedBy: null, uncertainDelete: null });
  });
});
