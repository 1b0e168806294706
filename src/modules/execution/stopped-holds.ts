// Items a rolling-back operation must restore that a stopped run still holds. The rollback job
// notes the items other runs hold when it goes to sleep (rollback-ledger.ts nextWake), which the
// views show as `waiting: claims`. But after a `kill -9` of the only worker, the job itself waits
// out BullMQ's lock of the dead worker (30 s) before it runs again: a trial saw the rollback sit
// still for ~60 s while the view said nothing, then "no item outcome recorded", and `claims` only
// in the last seconds of the 90 s lease. The reconciler runs this instead (reconciler.ts), from
// the first tick of any live worker process.
//
// A running delete after such a kill: its chunk job, handed out again once the dead worker's job
// lock lapses, takes its claims over at once (same job ID), but until then nothing moved and the
// view said nothing for up to 30 s (then `progress`). Its claims are noted the same way.
//
// A run is stopped when no lock session of its process is connected (exclusive.ts LOCK_SESSIONS:
// a claim token names the run's process). Only what is certain is said: tokens that name no
// process (drills, runs of older versions) are left to the rollback job, and nothing is noted
// while the rollback moves or while what the views show is current.
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { ChunkJob } from './queues.ts';
import { STALLED_CHECK_MS } from './consumers.ts';
import { LOCK_SESSIONS } from './exclusive.ts';
import { HELD_JSON, heldItemsSql } from './rollback-ledger.ts';
import { LAST_PROGRESS_SQL } from '../operations/repository.ts';

/** An operation with no item outcome for this long may be waiting on a stopped run's claims. */
export const STOPPED_HOLDS_AFTER_MS = 5_000;

/** The runners (processes) with a lock session connected; `pattern`: the parameter holding `${LOCK_SESSIONS}/%`. */
const liveRunners = (pattern: string) =>
  `SELECT split_part(application_name, '/', 2) AS runner FROM pg_stat_activity WHERE application_name LIKE ${pattern}`;

/**
 * The state of operation $1 when it is in one of `states`, has recorded no item outcome for `secs`
 * seconds (a parameter), and its held note (if any) is not one the views still show.
 */
const sitsStill = (states: string, secs: string) =>
  `SELECT o.state FROM operations o, LATERAL (SELECT coalesce(${LAST_PROGRESS_SQL}, '-infinity') AS at) p
   WHERE o.id = $1 AND o.state IN ${states} AND p.at < now() - make_interval(secs => ${secs})
     AND NOT coalesce((o.restore_wait->'held'->>'until')::timestamptz > now()
                      AND (o.restore_wait->'held'->>'notedAt')::timestamptz >= p.at, false)`;

/**
 * Writes `restore_wait.held` (items, since, until the first lease ends or, for a running delete, its
 * stopped chunk jobs run again if sooner, notedAt) when items of a
 * rolling-back or running operation are held by claims of stopped runs and nothing moved for
 * STOPPED_HOLDS_AFTER_MS; keeps the rest of `restore_wait`. Returns how many items it noted.
 * A rollback waits for the items it must restore (marked ones); a running delete for any it claimed.
 */
export async function noteStoppedHolds(
  pool: Pick<pg.Pool, 'query'>,
  opId: string,
  leaseMs: number,
  /** A running delete's: its running wave's items (only they can be claimed), read by their key. */
  seqs: { from: number; to: number } = { from: 0, to: 2 ** 31 - 1 },
  /** A running delete's chunk jobs, for when their next run takes the claims over (see below). */
  jobs?: ChunkJobsView,
): Promise<number> {
  // A running delete's claims are taken over at once by the next run of their chunk job (the same
  // job ID), which BullMQ hands out once the stopped worker's job lock lapses: a trial saw `until`
  // at the claim lease (~90 s) while the work went on at ~30 s. The sooner of the two is noted.
  // Read only for an operation that sits still: a running one has chunk jobs out all the time.
  const still = jobs && (await pool.query(sitsStill(`('running')`, '$2'), [opId, STOPPED_HOLDS_AFTER_MS / 1000]));
  const lapse = still?.rowCount ? await stoppedChunkJobs(pool, jobs!, opId, seqs).catch(() => null) : null;
  const jobsUntil = lapse?.stopped.length ? new Date(lapse.until + STALLED_CHECK_MS) : null;
  // The operation's row is checked first (an InitPlan): the ledger is read only for an operation
  // that sits still and whose held items the views do not already show.
  const r = await pool.query<{ items: number }>(
    `WITH op AS (${sitsStill(`('rolling_back', 'running')`, '$3')}), live AS (${liveRunners('$4')}), claims AS (
       ${heldItemsSql(
         `EXISTS (SELECT 1 FROM op) AND seq >= $5 AND seq < $6 AND strpos(claim_token, '/') > 0
          AND split_part(claim_token, '/', 1) NOT IN (SELECT runner FROM live)`,
         `(SELECT state FROM op) = 'running'`,
       )}
     ), held AS (SELECT items, since, least(at, $7::timestamptz) AS at FROM claims)
     UPDATE operations o SET restore_wait = coalesce(o.restore_wait, '{}') || ${HELD_JSON}
     FROM held, op WHERE o.id = $1 AND o.state = op.state AND held.items > 0
     RETURNING held.items`,
    [opId, leaseMs / 1000, STOPPED_HOLDS_AFTER_MS / 1000, `${LOCK_SESSIONS}/%`, seqs.from, seqs.to, jobsUntil],
  );
  return r.rows[0]?.items ?? 0;
}

/**
 * The chunk jobs of operation `opId` (within `seqs`) in the hands of a process with no lock session,
 * under a job lock that has not lapsed yet, and when the last of those locks lapses (ms).
 */
async function stoppedChunkJobs(
  pool: Pick<pg.Pool, 'query'>,
  jobs: ChunkJobsView,
  opId: string,
  seqs: { from: number; to: number },
) {
  const mine = (await jobs.active()).filter(
    (j) => j.id && j.processedBy && j.data.opId === opId && j.data.from >= seqs.from && j.data.to <= seqs.to,
  );
  const stopped: typeof mine = [];
  let until = 0;
  if (mine.length === 0) return { stopped, until };
  const live = await pool.query<{ runner: string }>(liveRunners('$1'), [`${LOCK_SESSIONS}/%`]);
  const alive = new Set(live.rows.map((r) => r.runner));
  for (const j of mine) {
    if (alive.has(j.processedBy!)) continue;
    const left = await jobs.lockLeftMs(j.id!);
    // A lapsed lock: the stalled-job check hands the job out again within seconds.
    if (left <= 0) continue;
    stopped.push(j);
    until = Math.max(until, Date.now() + left);
  }
  return { stopped, until };
}

/** What the reconciler reads of the chunk queue (BullMQ, in Redis). */
export interface ChunkJobsView {
  /** Chunk jobs in some worker's hands, with that worker's name (the runner of its process). */
  active(): Promise<{ id?: string; data: ChunkJob; processedBy?: string; processedOn?: number }[]>;
  /** How long the job's lock has left, in ms (negative: none). */
  lockLeftMs(jobId: string): Promise<number>;
}

/** Active chunk jobs read at most: the jobs in all workers' hands at once (their concurrency). */
const ACTIVE_READ = 200;

/**
 * A running delete whose chunk job a stopped process had (a registry chunk is one transaction: it
 * claims nothing in the ledger, so noteStoppedHolds finds nothing). BullMQ keeps the job active
 * under the dead worker's job lock until it lapses, and the view said nothing until `progress` at
 * 30 s (a trial). Noted the same way (`restore_wait.held`, with `chunk: true`), until that lock
 * lapses; only for an operation that sits still and whose held note the views do not already show.
 * Returns how many items it noted.
 */
export async function noteStoppedChunks(
  pool: Pick<pg.Pool, 'query'>,
  jobs: ChunkJobsView,
  opId: string,
  seqs: { from: number; to: number },
): Promise<number> {
  const still = await pool.query(sitsStill(`('running')`, '$2'), [opId, STOPPED_HOLDS_AFTER_MS / 1000]);
  if (!still.rowCount) return 0;
  const { stopped, until } = await stoppedChunkJobs(pool, jobs, opId, seqs);
  if (stopped.length === 0) return 0;
  const since = Math.min(...stopped.map((j) => j.processedOn ?? Date.now()));
  const r = await pool.query<{ items: number }>(
    `WITH held AS (
       SELECT count(*)::int AS items FROM operation_items i JOIN unnest($2::int[], $3::int[]) AS c(f, t)
         ON i.seq >= c.f AND i.seq < c.t
       WHERE i.operation_id = $1 AND i.seq >= $6 AND i.seq < $7 AND i.state IN ('pending', 'claimed')
     )
     UPDATE operations o SET restore_wait = coalesce(o.restore_wait, '{}') || jsonb_build_object('held',
       jsonb_build_object('items', held.items, 'since', $4::timestamptz, 'until', $5::timestamptz, 'notedAt', now(), 'chunk', true))
     FROM held WHERE o.id = $1 AND o.state = 'running' AND held.items > 0
     RETURNING held.items`,
    [
      opId,
      stopped.map((j) => j.data.from),
      stopped.map((j) => j.data.to),
      new Date(since),
      new Date(until),
      seqs.from,
      seqs.to,
    ],
  );
  return r.rows[0]?.items ?? 0;
}

/** The chunk queue as noteStoppedChunks reads it. */
export function chunkJobsView(items: Queue<ChunkJob>, redis: Pick<Redis, 'pttl'>): ChunkJobsView {
  return {
    active: () => items.getActive(0, ACTIVE_READ - 1),
    // BullMQ's key of a job's lock (prepareJobForProcessing.lua: the job's key, then ':lock').
    lockLeftMs: (jobId) => redis.pttl(`${items.toKey(jobId)}:lock`),
  };
}
