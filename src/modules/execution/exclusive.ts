// One run of a job at a time, even when BullMQ hands the same job out twice. That happens after a
// Redis restart: job locks that expired while Redis was away make the stalled-job check start a
// job again while its first run is still going, and a restart that lost every key lets the
// reconciler re-add a job that is running.
//
// A run holds a Postgres advisory lock on a session of its own for as long as it works. A second
// run that finds the lock taken puts the job back as delayed and tries again later; when the first
// run ends, or its process dies (its session closes and Postgres drops the lock), it goes ahead and
// takes over whatever is still claimed.
//
// The lock vanishes with the session, so a PostgreSQL restart frees it while the first run may
// still be going. The run is then FENCED: `fence.lost` goes up the moment its lock session fails,
// the run stops sending, and its claim token no longer matches anything it tries to record.
import { randomUUID } from 'node:crypto';
import { DelayedError, type Job } from 'bullmq';
import pg from 'pg';

export interface Fence {
  /** The run's exclusivity is gone (its lock session died): send nothing more. */
  lost: boolean;
  /** The process whose lock session holds the run (see LOCK_SESSIONS); absent outside the workers. */
  runner?: string;
}

/**
 * Lock sessions are named `${LOCK_SESSIONS}/<runner>`, one runner ID per worker process, and a run's
 * claim tokens start with `<runner>/` (runToken). A run holds its lock session for as long as it
 * works, and a process that dies loses its sessions at once (its sockets close), so whether a claim's
 * process may still be working on it is a question pg_stat_activity answers: after a `kill -9` the
 * rollback said nothing for ~60 s about the items the dead run held, noted only by the rollback's
 * own job once BullMQ's lock of the dead worker ran out (stopped-holds.ts).
 */
export const LOCK_SESSIONS = 'blastgate-job-locks';

/** A claim token that names the run's process (the plain UUID outside the workers). */
export const runToken = (fence: Pick<Fence, 'runner'>): string =>
  fence.runner ? `${fence.runner}/${randomUUID()}` : randomUUID();

export interface JobLocks {
  run(job: Job, token: string | undefined, fn: (fence: Fence) => Promise<void>): Promise<void>;
  close(): Promise<void>;
}

/** The lock a job's runs share: a rollback (or a drill) is one per operation whatever its job ID. */
export const lockKeyOf = (job: Pick<Job, 'id' | 'queueName' | 'data'>): string => {
  const d = job.data as { kind?: string; opId?: string };
  // A drill too: two runs of one operation's drill must not restore and delete its item at once.
  return (d.kind === 'rollback' || d.kind === 'drill') && d.opId ? `${d.kind}:${d.opId}` : `${job.queueName}:${job.id}`;
};

/**
 * `sessions` bounds the connections held for locks: at least the jobs this process runs at once.
 * `retryMs`: how long a job whose other run is still going waits before it looks again. `runner`: this
 * process's ID, in its sessions' names and its runs' claim tokens (LOCK_SESSIONS).
 */
export function createJobLocks(databaseUrl: string, sessions: number, retryMs: number, runner: string): JobLocks {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: sessions,
    application_name: `${LOCK_SESSIONS}/${runner}`,
  });
  pool.on('error', () => undefined);
  return {
    async run(job, token, fn) {
      // Not under the queue prefix: advisory locks belong to one database already, and processes
      // of one database with different prefixes (a mistyped BLASTGATE_QUEUE_PREFIX: prefix-check.ts)
      // each queue its operations' jobs under the same IDs. Under one key their runs are one at a time.
      const key = lockKeyOf(job);
      const client = await pool.connect();
      const fence: Fence = { lost: false, runner };
      // Without a listener a dropped session would be an uncaught 'error' and end the process.
      const onError = () => {
        fence.lost = true;
      };
      client.on('error', onError);
      let locked = false;
      try {
        const r = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS ok', [
          key,
        ]);
        locked = r.rows[0]!.ok;
        if (!locked) {
          await job.moveToDelayed(Date.now() + retryMs, token);
          throw new DelayedError();
        }
        await fn(fence);
      } finally {
        let broken: Error | undefined = fence.lost ? new Error('lock session lost') : undefined;
        if (locked && !broken) {
          await client.query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [key]).catch((err: Error) => {
            broken = err;
          });
        }
        client.removeListener('error', onError);
        // A session whose unlock failed is closed: Postgres then drops its locks.
        client.release(broken ?? false);
      }
    },
    close: () => pool.end(),
  };
}
