// A running HTTP delete whose worker was killed with a chunk in hand: the chunk's items stay
// claimed by the dead run, and its job stays active under the dead worker's BullMQ lock. The next
// run of that job (the same job ID) takes the claims over at once, so the work goes on when the job
// lock lapses, not when the claim lease ends. The view's `until` said the lease (~90 s in a trial,
// while the delete went on at ~30 s); it now says the sooner of the two (stopped-holds.ts).
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appsOf, deadWorkerTakesChunk, ledger, waitForWaiting } from '../support/exec-helpers.ts';
import {
  buildExecHarness,
  getOperation,
  submitAndStart,
  useHttpAdapter,
  waitForState,
  type ExecHarness,
} from '../support/execution.ts';
import { query, seedRegistry } from '../support/seed.ts';

const APPS = 4;
/** The dead worker's job lock: lapses well before the claim lease (3 × the live worker's 20 s lock). */
const DEAD_LOCK_MS = 12_000;

let h: ExecHarness;
beforeAll(async () => {
  // No worker yet: the chunk job goes to the one that dies. The one started later has a 60 s lease.
  h = await buildExecHarness({ workers: 0, lockDurationMs: 20_000 });
  await seedRegistry(h.databaseUrl, { sites: 4, appsPerSite: APPS, internalTenants: 2 });
  await useHttpAdapter(h);
});
afterAll(async () => {
  await h?.close();
});

describe('a running HTTP delete whose chunk a stopped worker had claimed', () => {
  it('says until when its job lock lapses (its next run takes the claims over), not the claim lease', async () => {
    const ids = appsOf([1, 2], APPS);
    const plan = await submitAndStart(h, {
      ids,
      rollout: { bakeSeconds: 0, concurrency: 2, waves: ['100%'] },
      haltPolicy: { probe: 'optional' },
    });
    const runner = randomUUID();
    const job = await deadWorkerTakesChunk(h, DEAD_LOCK_MS, runner);
    const claimedAt = Date.now();
    // What the dead run had done before it died: claimed its chunk's items (a token naming its process).
    const claimed = await query(
      h.databaseUrl,
      `UPDATE operation_items SET state = 'claimed', claimed_by = $2, claim_token = $3, claimed_at = now()
       WHERE operation_id = $1 AND seq >= $4 AND seq < $5 AND state = 'pending' RETURNING seq`,
      [plan.id, job.id, `${runner}/${randomUUID()}`, job.data.from, job.data.to],
    );
    expect(claimed.length).toBeGreaterThan(0);
    expect((await getOperation(h, plan.id)).state).toBe('running');
    await h.startWorker();
    const { waiting, live } = await waitForWaiting(
      h,
      plan.id,
      'claims',
      'the view to say that a stopped run holds items of the running delete',
      DEAD_LOCK_MS - 2_000,
    );
    expect(waiting).toMatchObject({ on: 'claims', items: claimed.length });
    const untilAt = Date.parse(waiting.until!);
    expect(untilAt).toBeGreaterThan(Date.now());
    // The job lock's lapse and the stalled-job check (5 s) at the latest; the lease ends at +60 s.
    expect(untilAt).toBeLessThanOrEqual(claimedAt + DEAD_LOCK_MS + 5_000 + 1_000);
    expect(waiting.detail).toMatch(/job lock lapses/);
    expect(live).toEqual(waiting);
    // The lock lapses, the job runs again and takes the claims over: every item is deleted, once.
    const end = await waitForState(h, plan.id, ['completed', 'completed_with_failures', 'halted'], 40_000);
    expect(end.state).toBe('completed');
    expect(Date.now()).toBeLessThan(claimedAt + 60_000);
    expect((await ledger(h, plan.id)).every((r) => r.state === 'done')).toBe(true);
  }, 90_000);
});
