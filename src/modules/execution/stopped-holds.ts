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
import type pg from 'pg';
import { LOCK_SESSIONS } from './exclusive.ts';
import { HELD_JSON, heldItemsSql } from './rollback-ledger.ts';
import { LAST_PROGRESS_SQL } from '../operations/repository.ts';

/** An operation with no item outcome for this long may be waiting on a stopped run's claims. */
export const STOPPED_HOLDS_AFTER_MS = 5_000;

/**
 * Writes `restore_wait.held` (items, since, until the first lease ends, notedAt) when items of a
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
): Promise<number> {
  // The operation's row is checked first (an InitPlan): the ledger is read only for an operation
  // that sits still and whose held items the views do not already show.
  const r = await pool.query<{ items: number }>(
    `WITH op AS (
       SELECT o.state FROM operations o, LATERAL (SELECT coalesce(${LAST_PROGRESS_SQL}, '-infinity') AS at) p
       WHERE o.id = $1 AND o.state IN ('rolling_back', 'running')
         AND p.at < now() - make_interval(secs => $3)
         AND NOT coalesce((o.restore_wait->'held'->>'until')::timestamptz > now()
                          AND (o.restore_wait->'held'->>'notedAt')::timestamptz >= p.at, false)
     ), live AS (
       SELECT split_part(application_name, '/', 2) AS runner FROM pg_stat_activity WHERE application_name LIKE $4
     ), held AS (
       ${heldItemsSql(
         `EXISTS (SELECT 1 FROM op) AND seq >= $5 AND seq < $6 AND strpos(claim_token, '/') > 0
          AND split_part(claim_token, '/', 1) NOT IN (SELECT runner FROM live)`,
         `(SELECT state FROM op) = 'running'`,
       )}
     )
     UPDATE operations o SET restore_wait = coalesce(o.restore_wait, '{}') || ${HELD_JSON}
     FROM held, op WHERE o.id = $1 AND o.state = op.state AND held.items > 0
     RETURNING held.items`,
    [opId, leaseMs / 1000, STOPPED_HOLDS_AFTER_MS / 1000, `${LOCK_SESSIONS}/%`, seqs.from, seqs.to],
  );
  return r.rows[0]?.items ?? 0;
}
