// After an outage (PostgreSQL or Redis away), the jobs that failed meanwhile waited out their
// backoff: a trial saw a delete sit still 6-8 s after PostgreSQL returned, saying nothing, before
// its chunks ran again (up to 16-32 s after a 15 s outage). The reconcile loop now looks again
// every second while its rounds fail, and once one succeeds moves those jobs to the front.
import { randomBytes } from 'node:crypto';
import { Worker } from 'bullmq';
import pino from 'pino';
import { afterAll, describe, expect, inject, it, vi } from 'vitest';
import { startReconcileLoop, type ReconcilerDeps } from '../../src/modules/execution/reconciler.ts';
import { createQueues, QUEUE_NAMES, type ChunkJob } from '../../src/modules/execution/queues.ts';
import { createRedis } from '../../src/plugins/redis.ts';

const logger = pino({ level: 'silent' });
const conns: { disconnect(): void }[] = [];
afterAll(() => {
  for (const c of conns) c.disconnect();
});

describe('the reconcile loop after an outage', () => {
  it('looks again every second while its rounds fail, and says once that the dependency is back', async () => {
    let down = true;
    let rounds = 0;
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    const deps = {
      pool: {
        query: async () => {
          rounds++;
          if (down) throw refused;
          return { rows: [] };
        },
      },
      load: async () => undefined,
      engine: { apply: async () => undefined },
      enqueueChunks: async () => undefined,
      enqueueControl: async () => undefined,
      clock: () => Date.now(),
    } as unknown as ReconcilerDeps;
    const recovered = vi.fn(async () => undefined);
    // Rounds a minute apart: only the loop's own retries can be seen within this test.
    const loop = await startReconcileLoop({ deps, everyMs: 60_000, releaseLocks: async () => 0, recovered, logger });
    try {
      await vi.waitFor(() => expect(rounds).toBeGreaterThanOrEqual(3), { timeout: 5_000, interval: 100 });
      expect(recovered).not.toHaveBeenCalled();
      down = false;
      await vi.waitFor(() => expect(recovered).toHaveBeenCalledTimes(1), { timeout: 3_000, interval: 100 });
      // Back: no more retries, and no second "recovered".
      const after = rounds;
      await new Promise((r) => setTimeout(r, 1_500));
      expect(rounds).toBe(after);
      expect(recovered).toHaveBeenCalledTimes(1);
    } finally {
      loop.stop();
    }
  });
});

describe('the reconcile loop failing for a reason of its own', () => {
  it('keeps the pace of its rounds (no retry every second: that is for a dependency away)', async () => {
    let rounds = 0;
    const deps = {
      pool: {
        query: async () => {
          rounds++;
          throw new Error('column "x" does not exist');
        },
      },
      clock: () => Date.now(),
    } as unknown as ReconcilerDeps;
    const loop = await startReconcileLoop({ deps, everyMs: 60_000, releaseLocks: async () => 0, logger });
    try {
      await new Promise((r) => setTimeout(r, 2_500));
      expect(rounds).toBe(1);
    } finally {
      loop.stop();
    }
  });
});

describe('retryFailedNow', () => {
  it('moves the jobs that failed and wait for their retry, not the jobs put off on purpose', async () => {
    const prefix = `bgretry${randomBytes(4).toString('hex')}`;
    const redis = createRedis(inject('redisUrl'), true);
    conns.push(redis);
    const queues = createQueues(redis, prefix);
    const job = (n: number): ChunkJob => ({ opId: `op_${n}`, epoch: 0, wave: 0, from: 0, to: 1 });
    // One that fails once and waits a minute for its retry; one put off for a minute (no failure).
    await queues.items.add('chunk', job(1), {
      jobId: 'job-that-failed',
      attempts: 3,
      backoff: { type: 'fixed', delay: 60_000 },
    });
    const workerConn = createRedis(inject('redisUrl'), true);
    conns.push(workerConn);
    let runs = 0;
    const worker = new Worker(
      QUEUE_NAMES.items,
      async () => {
        runs++;
        if (runs === 1) throw new Error('connect ECONNREFUSED (PostgreSQL away)');
      },
      { connection: workerConn, prefix },
    );
    try {
      await vi.waitFor(async () => expect(await queues.items.getJobState('job-that-failed')).toBe('delayed'), {
        timeout: 5_000,
      });
      await queues.items.add('chunk', job(2), { jobId: 'job-put-off', delay: 60_000 });
      expect(await queues.retryFailedNow()).toBe(1);
      // The failed one runs again now (and succeeds); the other keeps its time.
      await vi.waitFor(async () => expect(runs).toBe(2), { timeout: 5_000 });
      expect(await queues.items.getJobState('job-put-off')).toBe('delayed');
    } finally {
      await worker.close();
      await queues.items.obliterate({ force: true });
      await queues.close();
    }
  });
});
