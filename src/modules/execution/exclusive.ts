// One run of a job at a time, even when BullMQ hands the same job out twice. That happens after a
// Redis restart: job locks that expired while Redis was away make the stalled-job check start a
// job again while its first run is still going, and a restart that lost every key lets the
// reconciler re-add a job that is running. Both runs would claim the same items (the claimer is
// the job ID) and send the same Idempotency-Keys at once; the owning system answers 409 "in
// progress" to one of them, and items that were deleted get recorded as failed (and can halt a
// healthy operation).
//
// A run holds a Postgres advisory lock on a session of its own for as long as it works. A second
// run that finds the lock taken puts the job back as delayed and tries again later; when the first
// run ends, or its process dies (its session closes and Postgres drops the lock), it goes ahead and
// takes over whatever is still claimed.
import { DelayedError, type Job } from 'bullmq';
import pg from 'pg';

export interface JobLocks {
  run(job: Job, token: string | undefined, fn: () => Promise<void>): Promise<void>;
  close(): Promise<void>;
}

/**
 * `sessions` bounds the connections held for locks: at least the jobs this process runs at once.
 * `retryMs`: how long a job whose other run is still going waits before it looks again.
 */
export function createJobLocks(databaseUrl: string, prefix: string, sessions: number, retryMs: number): JobLocks {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: sessions, application_name: 'blastgate-job-locks' });
  pool.on('error', () => undefined);
  return {
    async run(job, token, fn) {
      const key = `${prefix}:${job.queueName}:${job.id}`;
      const client = await pool.connect();
      let locked = false;
      let broken: Error | undefined;
      try {
        const r = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS ok', [
          key,
        ]);
        locked = r.rows[0]!.ok;
        if (!locked) {
          await job.moveToDelayed(Date.now() + retryMs, token);
          throw new DelayedError();
        }
        await fn();
      } finally {
        if (locked) {
          await client.query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [key]).catch((err: Error) => {
            broken = err;
          });
        }
        // A session whose unlock failed is closed: Postgres then drops its locks.
        client.release(broken ?? false);
      }
    },
    close: () => pool.end(),
  };
}
