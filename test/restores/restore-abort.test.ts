// An aborted restore (and a rollback ended by an operator) records what its calls did. It ends at once (cancelled: nothing sends its items
// again), so what went out must be written as it happened: a site that came back is restored, the
// apps its cascade did not reach yet were never sent, and a call whose run was killed is of unknown
// outcome. A trial found all of them recorded `pending` (or `claimed` for good after a `kill -9`),
// and every later restore of the apps refused parent_deleted, with their site live.
import { afterAll, beforeAll, beforeEach, describe, expect, it, onTestFailed } from 'vitest';
import { pollUntil } from '../support/crash.ts';
import { command, isDrillCall } from '../support/exec-helpers.ts';
import {
  buildExecHarness,
  getOperation,
  SECRET,
  submitAndStart,
  useHttpAdapter,
  waitForState,
  waitSettled,
  type ExecHarness,
} from '../support/execution.ts';
import {
  APPS,
  appsOfSite,
  deleteAndComplete,
  getRestore,
  postRestore,
  restoreItems,
  startRestore,
  useHttp,
  type RestoreView,
} from '../support/restores.ts';
import { query, seedRegistry, siteId, tenantId } from '../support/seed.ts';
import { spawnWorker } from '../support/worker-child.ts';

let h: ExecHarness;
let nextSite = 0;

beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 10, appsPerSite: APPS });
});
afterAll(async () => {
  await h?.close();
});
beforeEach(() => h.downstream.reset());

/** A site and its apps, live downstream (the site's delete cascades to them), deleted by a completed operation. */
async function deletedSite(siteAdapter: 'http' | 'registry' = 'http') {
  const s = nextSite++;
  const apps = appsOfSite(s);
  await useHttp(h);
  // The incident's shape: sites in the registry, apps in another system (restored over HTTP after their site).
  if (siteAdapter === 'registry')
    await query(h.databaseUrl, `UPDATE resource_types SET adapter = '{"kind":"registry"}' WHERE name = 'site'`);
  h.downstream.resources.set(siteId(s), { id: siteId(s), tenantId: tenantId(s), state: 'active', data: { s } });
  for (const x of apps) h.downstream.resources.set(x, { id: x, tenantId: tenantId(s), state: 'active', data: { x } });
  h.downstream.cascade(siteId(s), apps);
  await deleteAndComplete(h, 'site', [siteId(s)]);
  return { s, apps };
}

const runningRestore = async () =>
  (
    await query<{ id: string }>(
      h.databaseUrl,
      `SELECT id FROM operations WHERE action = 'restore' AND state = 'running' ORDER BY created_at DESC LIMIT 1`,
    )
  )[0]!.id;

/**
 * When the first app's restore reaches the downstream (before it is applied), the operator sends
 * `command` to the running restore; the halt watch polls every 100 ms, so the next call finds it.
 * Returns the operation it was sent to, once it was.
 */
function onFirstAppRestore(app: string, what: 'abort' | 'pause') {
  let sentTo: string | undefined;
  h.downstream.beforeApply(async (c) => {
    if (c.action !== 'restore' || c.resourceId !== app || sentTo) return;
    sentTo = await runningRestore();
    await command(h, 'operator', sentTo, what, { reason: 'wrong tenant' }).expect(200);
    await new Promise((r) => setTimeout(r, 600));
  });
  return () => sentTo;
}

/** Waits (bounded) until no item of the operation is claimed. */
const nothingClaimed = (opId: string, what: string, timeoutMs = 20_000) =>
  pollUntil(async () => (await restoreItems(h, opId)).every((i) => i.state !== 'claimed'), what, timeoutMs, 100);

/** The operation's view once `ok` says so (bounded: the last view read otherwise). */
async function waitForView(opId: string, ok: (v: RestoreView & { waiting: unknown }) => boolean) {
  let v = (await getRestore(h, opId)) as RestoreView & { waiting: unknown };
  for (let i = 0; i < 50 && !ok(v); i++) {
    await new Promise((r) => setTimeout(r, 200));
    v = (await getRestore(h, opId)) as RestoreView & { waiting: unknown };
  }
  return v;
}

const marks = async (opId: string) =>
  Object.fromEntries(
    (
      await query<{ resource_id: string; marked: boolean }>(
        h.databaseUrl,
        `SELECT resource_id, executed_seq IS NOT NULL AS marked FROM operation_items WHERE operation_id = $1`,
        [opId],
      )
    ).map((r) => [r.resource_id, r.marked]),
  );

describe('an abort midway through a cascade', () => {
  it('records the site and the app that came back restored and the apps never sent as such; a later restore brings those back', async () => {
    const { s, apps } = await deletedSite();
    // The first app's restore reaches the downstream; the operator aborts before it is applied.
    const aborted = onFirstAppRestore(apps[0]!, 'abort');
    const op = await startRestore(h, { tenantId: tenantId(s), rollout: { concurrency: 1 } });
    await waitForState(h, op.id, ['cancelled']);
    expect(aborted()).toBe(op.id);
    await nothingClaimed(op.id, "the chunk's record");
    expect([siteId(s), ...apps].map((x) => h.downstream.state(x))).toEqual([
      'active',
      'active',
      'soft_deleted',
      'soft_deleted',
    ]);
    const items = Object.fromEntries((await restoreItems(h, op.id)).map((i) => [i.resource_id, i]));
    expect(items[siteId(s)]).toMatchObject({ state: 'done' });
    expect(items[siteId(s)]!.last_error).toMatch(/^restored, but 2 of the 3 it took were not: .*aborted first/);
    expect(items[apps[0]!]).toMatchObject({ state: 'done' });
    for (const x of apps.slice(1))
      expect(items[x]).toMatchObject({
        state: 'failed',
        last_error: 'restore not sent: the operation was aborted first; nothing was applied',
      });
    // What was never sent carries no write-ahead mark: no purge takes it for a restore of unknown outcome.
    expect(await marks(op.id)).toEqual({ [siteId(s)]: true, [apps[0]!]: true, [apps[1]!]: false, [apps[2]!]: false });
    // The view's count of a cascade's ledger is shared for a second or two (wave-progress.ts).
    expect((await waitForView(op.id, (v) => v.counts?.pending === 0)).counts).toMatchObject({
      restored: 2,
      notRestored: 2,
    });

    // The apps left deleted can be restored: their site is back (it was parent_deleted). Once the
    // aborted restore is settled: it holds them until then.
    h.downstream.beforeApply(undefined);
    await waitSettled(h, op.id);
    const again = await postRestore(h, { tenantId: tenantId(s) });
    expect(again.status, JSON.stringify(again.body)).toBe(201);
    expect(again.body.itemCount).toBe(2);
  });
});

/** Only a worker process of its own, to be killed, runs what comes next (the in-process workers stop). */
async function victimWorker() {
  for (const w of h.workers.splice(0)) await w.close();
  const victim = await spawnWorker({
    databaseUrl: h.databaseUrl,
    redisUrl: h.redisUrl,
    queuePrefix: h.prefix,
    signingSecret: SECRET,
    lockMs: 1_500,
    name: 'victim',
  });
  onTestFailed(() => console.error(victim.output()));
  return victim;
}

describe('an abort of a restore paused midway through a cascade', () => {
  it('records the site and the app that came back as restored, the others of unknown outcome; a later restore takes those', async () => {
    const { s, apps } = await deletedSite();
    // The first app's restore reaches the downstream; the operator pauses before it is applied.
    const paused = onFirstAppRestore(apps[0]!, 'pause');
    const op = await startRestore(h, { tenantId: tenantId(s), rollout: { concurrency: 1 } });
    await waitForState(h, op.id, ['paused']);
    expect(paused()).toBe(op.id);
    // Handed back whole, to be sent again on resume; the app that came back is recorded so meanwhile.
    await nothingClaimed(op.id, "the chunk's record");
    h.downstream.beforeApply(undefined);
    await command(h, 'operator', op.id, 'abort', { reason: 'wrong tenant after all' }).expect(200);
    await pollUntil(
      async () => (await restoreItems(h, op.id)).every((i) => i.state !== 'pending'),
      'the abort to be settled',
      20_000,
      100,
    );
    expect([siteId(s), ...apps].map((x) => h.downstream.state(x))).toEqual([
      'active',
      'active',
      'soft_deleted',
      'soft_deleted',
    ]);
    const items = Object.fromEntries((await restoreItems(h, op.id)).map((i) => [i.resource_id, i]));
    expect(items[siteId(s)]).toMatchObject({ state: 'done' });
    expect(items[siteId(s)]!.last_error).toMatch(/^restored, but 2 of the 3 it took were not/);
    expect(items[apps[0]!]).toMatchObject({ state: 'done' });
    for (const x of apps.slice(1)) {
      expect(items[x]!.state).toBe('failed');
      expect(items[x]!.last_error).toMatch(/^outcome unknown: its restore may have been sent/);
    }
    // Every way back was refused (parent_deleted via the site, superseded for the site itself): now
    // the apps left deleted are restored, under a site that is back (once the abort is settled).
    await waitSettled(h, op.id);
    const again = await postRestore(h, { tenantId: tenantId(s) });
    expect(again.status, JSON.stringify(again.body)).toBe(201);
    expect(again.body.itemCount).toBe(2);
  });
});

describe('an abort after the worker running the restore was killed', () => {
  it.each(['http', 'registry'] as const)(
    "site on the %s adapter: records the calls it had out as of unknown outcome once its lease ran out, instead of claimed for good; the registry's word stands for its own restores",
    async (siteAdapter) => {
      const { s, apps } = await deletedSite(siteAdapter);
      const victim = await victimWorker();
      try {
        h.downstream.hang(60_000);
        const op = await startRestore(h, { tenantId: tenantId(s), rollout: { concurrency: 1 } });
        // Over HTTP the site's own restore hangs; on the registry it commits, and the first app's hangs.
        const hung = siteAdapter === 'http' ? siteId(s) : apps[0];
        await pollUntil(
          () => h.downstream.calls.some((c) => c.action === 'restore' && c.resourceId === hung && !isDrillCall(c)),
          'a restore to reach the downstream',
          20_000,
          20,
        );
        await victim.kill();
        await command(h, 'operator', op.id, 'abort', { reason: 'worker lost' }).expect(200);
        expect(await restoreItems(h, op.id).then((xs) => xs.find((i) => i.resource_id === siteId(s))?.state)).toBe(
          'claimed',
        );
        await h.startWorker();
        // Until then the view says what it waits for (it listed the items claimed, saying nothing).
        const settling = await waitForView(op.id, (v) => v.waiting !== null || !(v.counts?.pending ?? 0));
        expect(settling.waiting).toMatchObject({ on: 'claims', items: 1, until: expect.any(String) });
        // The victim's lease (5 s) runs out; a live worker's reconciler records it.
        await nothingClaimed(op.id, 'the killed run’s claim to be settled', 30_000);
        expect((await waitForView(op.id, (v) => v.waiting === null)).waiting).toBeNull();
        const items = Object.fromEntries((await restoreItems(h, op.id)).map((i) => [i.resource_id, i]));
        for (const x of siteAdapter === 'http' ? [siteId(s), ...apps] : apps) {
          expect(items[x]!.state).toBe('failed');
          expect(items[x]!.last_error).toMatch(
            /^outcome unknown: its restore may have been sent and the operation was aborted/,
          );
        }
        // Kept marked: it may be live again (a purge refuses it as restore_uncertain).
        expect(Object.values(await marks(op.id))).toEqual([true, true, true, true]);
        const counted = (await waitForView(op.id, (v) => v.counts?.pending === 0)).counts;
        if (siteAdapter === 'http') {
          expect(counted).toMatchObject({ byState: { failed: 4 }, restored: 0 });
        } else {
          // The registry restored the site in its own transaction: it is back, and recorded so. Every
          // later restore of its apps was refused parent_deleted (a trial): now they are taken.
          expect(items[siteId(s)]).toMatchObject({ state: 'done' });
          expect(counted).toMatchObject({ byState: { done: 1, failed: 3 }, restored: 1 });
          h.downstream.hang(0);
          await waitSettled(h, op.id);
          const again = await postRestore(h, { tenantId: tenantId(s) });
          expect(again.status, JSON.stringify(again.body)).toBe(201);
          expect(again.body.itemCount).toBe(APPS);
        }
        // Settled: the reconciler stops looking once its claims could no longer be taken.
        await pollUntil(
          async () =>
            (await query(h.databaseUrl, `SELECT 1 FROM operations WHERE id = $1 AND settled_at IS NOT NULL`, [op.id]))
              .length === 1,
          'the operation to be settled',
          30_000,
          200,
        );
      } finally {
        h.downstream.hang(0);
        await victim.kill().catch(() => undefined);
      }
    },
  );
});

describe('a rollback ended after the worker running it was killed', () => {
  it('records the restores it held as failed with their outcome unknown, instead of restoring for good; a rollback again restores them', async () => {
    await useHttpAdapter(h, false);
    const s = nextSite++;
    const apps = appsOfSite(s);
    const op = await submitAndStart(h, {
      ids: apps,
      rollout: { bakeSeconds: 0, waves: ['100%'], concurrency: 4 },
      haltPolicy: { probe: 'optional' },
    });
    await waitForState(h, op.id, ['completed']);
    const victim = await victimWorker();
    try {
      h.downstream.hang(60_000);
      await command(h, 'operator', op.id, 'rollback', { reason: 'wrong apps' }).expect(200);
      await pollUntil(
        () => h.downstream.calls.filter((c) => c.action === 'restore' && !isDrillCall(c)).length === apps.length,
        'the restores to reach the downstream',
        20_000,
        20,
      );
      await victim.kill();
      await command(h, 'operator', op.id, 'abort', { reason: 'worker lost', endRollback: true }).expect(200);
      expect((await getOperation(h, op.id)).state).toBe('rollback_incomplete');
      await h.startWorker();
      const states = async () =>
        (
          await query<{ state: string; last_error: string | null }>(
            h.databaseUrl,
            `SELECT state, last_error FROM operation_items WHERE operation_id = $1`,
            [op.id],
          )
        ).map((i) => i.state);
      expect(await states()).toEqual(['restoring', 'restoring', 'restoring']);
      // The victim's lease (5 s) runs out; a live worker's reconciler records the restores it held.
      await pollUntil(
        async () => !(await states()).includes('restoring'),
        'the held restores to be settled',
        30_000,
        200,
      );
      const items = await query<{ state: string; last_error: string }>(
        h.databaseUrl,
        `SELECT state, last_error FROM operation_items WHERE operation_id = $1`,
        [op.id],
      );
      for (const i of items) {
        expect(i.state).toBe('restore_failed');
        expect(i.last_error).toMatch(
          /^outcome unknown: its restore may have been sent and the rollback was ended before an answer/,
        );
      }
      const view = await getOperation(h, op.id);
      expect(view).toMatchObject({ state: 'rollback_incomplete', progress: { restoring: 0, restoreFailed: APPS } });

      // Started again, the rollback sends them again (under the same keys) and ends rolled back.
      h.downstream.hang(0);
      await command(h, 'operator', op.id, 'rollback', { reason: 'again' }).expect(200);
      await waitForState(h, op.id, ['rolled_back']);
      expect(apps.map((x) => h.downstream.state(x))).toEqual(['active', 'active', 'active']);
    } finally {
      h.downstream.hang(0);
      await victim.kill().catch(() => undefined);
    }
  });
});
