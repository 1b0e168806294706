// A running delete through the registry adapter whose worker process was killed mid-chunk. Such a
// chunk is one transaction and claims nothing in the ledger, so nothing said why the operation sat
// still until `progress` at 30 s (a trial), while BullMQ kept the chunk job under the dead worker's
// job lock. The reconciler now reads the chunk queue's active jobs: one whose worker's process has
// no lock session any more is noted, with its items and when that lock lapses (stopped-holds.ts).
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appsOf, deadWorkerTakesChunk, ledger, waitForWaiting } from '../support/exec-helpers.ts';
import {
  buildExecHarness,
  getOperation,
  submitAndStart,
  waitForState,
  type ExecHarness,
} from '../support/execution.ts';
import { seedRegistry } from '../support/seed.ts';

const APPS = 4;
/** The dead worker's job lock: long enough to see the note, short enough to see the chunk run again. */
const DEAD_LOCK_MS = 12_000;

let h: ExecHarness;
beforeAll(async () => {
  // No worker yet: the chunk job goes to the one that dies.
  h = await buildExecHarness({ workers: 0 });
  await seedRegistry(h.databaseUrl, { sites: 4, appsPerSite: APPS, internalTenants: 2 });
});
afterAll(async () => {
  await h?.close();
});

describe('a running registry delete whose chunk job a stopped process had', () => {
  it('says so within seconds (waiting: claims, the chunk, until its job lock lapses), then the chunk runs again', async () => {
    const ids = appsOf([1, 2], APPS);
    const plan = await submitAndStart(h, {
      ids,
      rollout: { bakeSeconds: 0, concurrency: 2, waves: ['100%'] },
      haltPolicy: { probe: 'optional' },
    });
    // A worker of a process that dies with the job in hand: its runner has no lock session, and
    // BullMQ keeps the job active under its lock (no renewal: it lapses DEAD_LOCK_MS later).
    await deadWorkerTakesChunk(h, DEAD_LOCK_MS);
    expect((await getOperation(h, plan.id)).state).toBe('running');
    await h.startWorker();
    const { waiting, live } = await waitForWaiting(
      h,
      plan.id,
      'claims',
      "the view to say that a stopped process had the delete's chunk",
      DEAD_LOCK_MS - 2_000,
    );
    // The items of the running wave's chunk (the plan puts one tenant's first: a canary wave).
    const first = plan.waves[0]!.items;
    expect(first).toBeLessThan(ids.length);
    expect(waiting).toMatchObject({ on: 'claims', items: first });
    expect(Date.parse(waiting.until!)).toBeGreaterThan(Date.now());
    expect(Date.parse(waiting.until!)).toBeLessThanOrEqual(Date.now() + DEAD_LOCK_MS);
    expect(waiting.detail).toMatch(/Nothing of the chunk was applied/);
    expect(live).toEqual(waiting);
    // The lock lapses, the stalled-job check hands the chunk out again: every item is deleted once.
    const end = await waitForState(h, plan.id, ['completed', 'completed_with_failures', 'halted'], 40_000);
    expect(end.state).toBe('completed');
    expect((await ledger(h, plan.id)).every((r) => r.state === 'done')).toBe(true);
    const after = await request(h.app.server).get(`/v1/operations/${plan.id}`).set('authorization', h.auth('viewer'));
    expect(after.body.waiting).toBeNull();
  }, 60_000);
});
