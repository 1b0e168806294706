// A job that moves itself back with no delay (`later(0)`: a rollback handing its slot back after
// 30 s) can be fetched again by the same worker before BullMQ has finished with its first run, and
// BullMQ tracks lock renewal by job ID: the first run's end untracked the second run's lock. Nothing
// renewed it, it lapsed, the stalled-job check handed the job out again while it ran, and its own
// next move failed with "Missing lock" — every ~64 s of a long rollback (a new-user trial). Real
// Redis and BullMQ, the product's own `later` and `keepingLock`.
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue, Worker, type Job } from 'bullmq';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { keepingLock, later } from '../../src/modules/execution/consumers.ts';
import { createRedis } from '../../src/plugins/redis.ts';

const LOCK_MS = 1_000;
const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

/** One job through a worker of `concurrency` 2; returns each run's token, the stalls and the worker's errors. */
async function runOnce(processor: (job: Job, token: string | undefined, runs: string[]) => Promise<void>) {
  const prefix = `lock-${randomUUID()}`;
  const conn = createRedis(inject('redisUrl'), true);
  closers.push(async () => conn.disconnect());
  const queue = new Queue('renewal', { connection: conn, prefix });
  closers.push(() => queue.close());
  const runs: string[] = [];
  const errors: string[] = [];
  let stalled = 0;
  // BullMQ leaves a connection it was given open on close (it is the caller's): dropped after it.
  const workerConn = createRedis(inject('redisUrl'), true);
  closers.push(async () => workerConn.disconnect());
  const worker = new Worker('renewal', (job, token) => processor(job, token, runs), {
    connection: workerConn,
    prefix,
    concurrency: 2,
    lockDuration: LOCK_MS,
    stalledInterval: LOCK_MS,
    maxStalledCount: 100,
  });
  closers.push(() => worker.close(true));
  worker.on('error', (err) => errors.push(err.message));
  worker.on('stalled', () => stalled++);
  const completed = new Promise<void>((resolve) => worker.on('completed', () => resolve()));
  await queue.add('step', {}, { jobId: 'step-job' });
  await Promise.race([completed, sleep(15_000)]);
  // Whatever a late stall would still do shows within another lock's time.
  await sleep(LOCK_MS);
  return { runs, errors, stalled, state: await queue.getJobState('step-job') };
}

describe('a job that comes back at once (later(0)) and then runs longer than its lock', () => {
  it('keeps its lock: one more run, no stall, no "Missing lock", completed', async () => {
    const r = await runOnce((job, token, runs) =>
      keepingLock(job, token, LOCK_MS, async () => {
        runs.push(token!);
        try {
          if (runs.length === 1) await later(job, token, 0);
          await sleep(3 * LOCK_MS);
        } finally {
          // What a run does after it, as exclusive.ts does: release its session lock (a round trip).
          await sleep(20);
        }
      }),
    );
    expect(r.errors).toEqual([]);
    expect(r.stalled).toBe(0);
    expect(r.runs).toHaveLength(2);
    expect(r.state).toBe('completed');
  }, 30_000);
});
