// One run of a job at a time holds across queue prefixes of one database: processes with different
// BLASTGATE_QUEUE_PREFIX values (a mistyped one: a trial) each queue an operation's jobs under the
// same IDs from the shared ledger, and their runs of one chunk used to take locks under different
// keys, so both ran at once. Two processes' job locks (no prefix in the key) now let one run.
import { DelayedError, type Job } from 'bullmq';
import { afterAll, describe, expect, it } from 'vitest';
import { createJobLocks } from '../../src/modules/execution/exclusive.ts';
import { createTestDatabase } from '../support/db.ts';

const locks: { close(): Promise<void> }[] = [];
afterAll(async () => {
  for (const l of locks) await l.close();
});

describe('job runs of two processes on one database', () => {
  it('are one at a time for the same job, whatever queue prefix each process uses', async () => {
    const databaseUrl = await createTestDatabase();
    const a = createJobLocks(databaseUrl, 2, 1_000, 'runner-a');
    const b = createJobLocks(databaseUrl, 2, 1_000, 'runner-b');
    locks.push(a, b);
    let delayed = 0;
    const job = (prefix: string) =>
      ({
        id: 'op_1.e0.wave.0.chunk.0',
        queueName: 'items',
        prefix,
        data: { opId: 'op_1', epoch: 0, wave: 0, from: 0, to: 500 },
        moveToDelayed: async () => {
          delayed++;
        },
      }) as unknown as Job;
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let entered!: () => void;
    const inside = new Promise<void>((r) => (entered = r));
    const first = a.run(job('blastgate'), 'token-a', async () => {
      entered();
      await held;
    });
    await inside;
    // The other process's run of the same chunk, from its own queues: put off, never run alongside.
    let ran = false;
    try {
      await expect(
        b.run(job('blastgat'), 'token-b', async () => {
          ran = true;
        }),
      ).rejects.toBeInstanceOf(DelayedError);
      expect(ran).toBe(false);
      expect(delayed).toBe(1);
    } finally {
      release();
      await first;
    }
    // Once the first run ended, the other goes ahead.
    await b.run(job('blastgat'), 'token-b', async () => {
      ran = true;
    });
    expect(ran).toBe(true);
  });
});
