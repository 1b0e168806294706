// The rollout's `concurrency` is the operation's budget of destructive calls in flight per worker
// process, shared by every chunk of it the process runs (call-slots.ts): two chunks of one wave
// run at once on a worker with 4 chunk slots, and the downstream still never has more than
// `concurrency` of the operation's calls in hand. Per chunk (before), it had up to 2 × concurrency.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appsOf, isDrillCall } from '../support/exec-helpers.ts';
import {
  buildExecHarness,
  submitAndStart,
  useHttpAdapter,
  waitForState,
  type ExecHarness,
} from '../support/execution.ts';
import { seedRegistry } from '../support/seed.ts';

const SITES = 15;
const APPS = 100; // 1,500 items: two chunks in one wave (CHUNK_SIZE 1,000 + 500)
const CONCURRENCY = 3;

let h: ExecHarness;
beforeAll(async () => {
  h = await buildExecHarness({ workers: 0 });
  await h.startWorker({ concurrency: 4 });
  await seedRegistry(h.databaseUrl, { sites: SITES, appsPerSite: APPS });
});
afterAll(async () => {
  await h?.close();
});

describe('destructive calls in flight per operation and worker process', () => {
  it('never exceed the rollout concurrency, however many of its chunks the worker runs at once', async () => {
    await useHttpAdapter(h, false, { snapshotBatch: 'POST /apps/snapshots' });
    // Each destructive call is held a few ms, so the three chunks' calls overlap in time.
    h.downstream.hang(4);
    const ids = appsOf(
      Array.from({ length: SITES }, (_, i) => i),
      APPS,
    );
    const op = await submitAndStart(h, {
      ids,
      targetType: 'app',
      rollout: { bakeSeconds: 0, concurrency: CONCURRENCY, waves: ['100%'], restoreDrill: false },
      haltPolicy: { probe: 'optional' },
    });
    const end = await waitForState(h, op.id, ['completed', 'completed_with_failures', 'halted', 'paused'], 90_000);
    h.downstream.hang(0);
    expect(end.state).toBe('completed');
    const deletes = h.downstream.destructiveCalls().filter((c) => !isDrillCall(c));
    expect(deletes).toHaveLength(ids.length);
    expect(h.downstream.peakInProgress).toBeGreaterThan(1);
    expect(h.downstream.peakInProgress).toBeLessThanOrEqual(CONCURRENCY);
  });
});
