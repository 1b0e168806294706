// A resource is in at most one live operation (promise 7). `resource_locks` names the operation
// that holds each resource. No step has to release a lock: a lock whose holder has ended
// (terminal or ended state; an aborted one once its run is settled: holdsResources) is simply
// taken over by the next operation, so an operation that ends, expires or crashes can never leave
// a resource blocked. Such rows are deleted afterwards in
// the background (releaseEndedLocks) only to keep the table small and the next plan's insert cheap.
import type pg from 'pg';
import { DESCENDANT_IDS } from './cascade-plan.ts';
import { holdsResources, LIVE_STATES } from './lifecycle-types.ts';
import { estimatedRows, NESTED_LOOPS, NESTED_LOOPS_END } from '../../lib/sql.ts';

const UNIQUE_VIOLATION = '23505';
// Taking locks is serialised (transaction-scoped, so held until the plan commits or rolls back):
// two plans of overlapping lists, inserting at once in their own orders, could each hold a lock row
// the other waits for, and PostgreSQL broke that deadlock after a second by failing one plan with
// a 500 where a 422 naming the holder was due. Serialised, the second waits for the first to end
// and then loses cleanly. Inserting in id order would avoid it too, but the sort cost a 1M-ID plan
// ~1 s (npm run bench -- plan); plans already serialise from their rolling-budget check to their
// commit (operations/rolling-budgets.ts), so this only adds the lock statement to that stretch.
const PLAN_LOCKS_LOCK = 7_342_006;

export interface Holder {
  resourceId: string;
  operationId: string;
}

// The ON CONFLICT arm takes a lock over only from an operation that has visibly ended. A concurrent
// plan that inserted the same resource first makes this statement wait for its commit, then see
// its lock — while that plan's operation row may still be invisible to this statement's snapshot.
// So the rule is "the holder exists and is no longer live", never "no live holder is visible":
// the loser learns it lost from the rows not counted, and nobody takes over a lock by accident.
// The row count (inserted or taken over; a row the WHERE refuses is not counted) is all the
// caller needs: no RETURNING, which sent the API one row per lock (1M rows held in its memory).
const TAKE = `
  ON CONFLICT (resource_id) DO UPDATE SET operation_id = EXCLUDED.operation_id
  WHERE resource_locks.operation_id = EXCLUDED.operation_id
     OR EXISTS (SELECT 1 FROM operations o WHERE o.id = resource_locks.operation_id AND NOT ${holdsResources('o', '$2')})`;

/**
 * Locks every ID of the planning input (plan_class rows classified ok) and every descendant their
 * cascades take (plan_cascade). All or nothing: when a concurrent plan got some of them first,
 * nothing is kept and false is returned (the caller then classifies those IDs as in_flight).
 *
 * `unlocked`: the classification saw no lock row for any of them (no resource was ever locked, or
 * its holder's row is gone), or did not look (deferLockRows). They are then first taken with a
 * plain INSERT — half the cost of the upsert's speculative insertion per row — which the primary
 * key makes exactly as safe: a lock row a concurrent plan inserted meanwhile makes it fail (after
 * waiting for that plan's commit), and the upsert below, with its take-over rule, then decides as
 * it always does.
 */
export async function lockPlanned(
  client: pg.PoolClient,
  operationId: string,
  expected: number,
  unlocked = false,
): Promise<boolean> {
  const planned = `SELECT id FROM plan_class WHERE class = 'ok' UNION ALL ${DESCENDANT_IDS}`;
  await client.query('SELECT pg_advisory_xact_lock($1)', [PLAN_LOCKS_LOCK]);
  await client.query('SAVEPOINT plan_locks');
  if (unlocked) {
    try {
      const r = await client.query(
        `INSERT INTO resource_locks (resource_id, operation_id) SELECT id, $1 FROM (${planned}) x`,
        [operationId],
      );
      if ((r.rowCount ?? 0) === expected) return true;
    } catch (err) {
      if ((err as { code?: string }).code !== UNIQUE_VIOLATION) throw err;
    }
    await client.query('ROLLBACK TO SAVEPOINT plan_locks');
    // A lock row is in the way. When a live operation's is, the upsert below could only fail too,
    // after a speculative insertion per ID (classify leaves such lists to this stage:
    // deferLockRows). `unlocked` comes without descendants, so the listed IDs are all there is.
    const live = await joinLocks(client, expected, () =>
      client.query(
        `SELECT 1 FROM plan_class c JOIN resource_locks l ON l.resource_id = c.id
         JOIN operations o ON o.id = l.operation_id AND ${holdsResources('o', '$1')} WHERE c.class = 'ok' LIMIT 1`,
        [LIVE_STATES],
      ),
    );
    if (live.rowCount) return false;
  }
  const r = await client.query(
    `INSERT INTO resource_locks (resource_id, operation_id) SELECT id, $1 FROM (${planned}) x ${TAKE}`,
    [operationId, LIVE_STATES],
  );
  if ((r.rowCount ?? 0) === expected) return true;
  await client.query('ROLLBACK TO SAVEPOINT plan_locks');
  return false;
}

/**
 * Whether markLockRows may wait until the classification is known. Its join reads the whole lock
 * table, whose size is every live operation's items, not this plan's: 39 / 66 / 285 ms for 100k /
 * 100k / 1M IDs against 100k / 200k / 300k other lock rows (npm run bench -- plan, PostgreSQL's
 * statement log, 2026-12-07), for a list whose resources had no lock row at all. A list that is
 * otherwise all ok needs no lock row from classify: the lock stage that follows (not for a dry run)
 * finds every one itself, takes over those of ended holders, and on a live holder is refused, and
 * then markLockedByOthers names it — the same in_flight, heldBy and rejection. A list rejected for
 * another reason is marked afterwards, which equals marking it first only when nothing after the
 * registry join reclassifies a row: no duplicates (their rows copy the first occurrence's lock
 * fields), no cascade and no ledger check of an external type.
 */
export function deferLockRows(
  lockStage: boolean,
  duplicates: boolean,
  cascadeTo: readonly string[],
  ledgerCheck: boolean,
): boolean {
  return lockStage && !duplicates && cascadeTo.length === 0 && !ledgerCheck;
}

/**
 * The lock rows of the resolved IDs, in a statement of its own after the registry join: `lock_row`
 * for every one, and `in_flight` (with the holder in held_by) where the holder is live — over the
 * classes it outranks, as a branch of the join's CASE between out_of_scope and already_deleted did.
 * Joined inside the registry join, the lock table was looked up once per ID (forced nested loops for
 * the `lookup` join) and the operations rescanned per ID: 75 ms of a 100k-ID classify's 280 with no
 * lock row at all; here the few lock rows are joined to the plan's rows instead.
 */
export async function markLockRows(client: pg.PoolClient, rows: number): Promise<void> {
  await joinLocks(client, rows, () =>
    client.query(
      `UPDATE plan_class c SET lock_row = true, held_by = o.id,
         class = CASE WHEN o.id IS NOT NULL AND c.class IN ('already_deleted', 'protected', 'ok') THEN 'in_flight' ELSE c.class END
       FROM resource_locks l LEFT JOIN operations o ON o.id = l.operation_id AND ${holdsResources('o', '$1')}
       WHERE l.resource_id = c.id AND c.actual_type IS NOT NULL`,
      [LIVE_STATES],
    ),
  );
}

/** A lock table over this many times a plan's rows is probed per row rather than hashed (joinLocks). */
const PROBE_RATIO = 2;

/**
 * Runs `statement`, a join of a plan's `planned` rows to resource_locks, by a primary-key probe per
 * planned row when the lock table holds over PROBE_RATIO times as many rows (reltuples: ANALYZE's
 * count; a never analysed table keeps PostgreSQL's choice). PostgreSQL hashed the whole lock table,
 * every live operation's rows, for any plan: 100k rows against 1M lock rows 448 → 85 ms by probes
 * (psql, 2026-12-07). A probe costs ~0.85 µs per planned row and the hash ~0.45 µs per lock row, so
 * the probes win while the plan is under about half the table.
 */
export async function joinLocks<T>(client: pg.PoolClient, planned: number, statement: () => Promise<T>): Promise<T> {
  if (planned <= 0) return statement();
  if (planned * PROBE_RATIO >= (await estimatedRows(client, 'resource_locks'))) return statement();
  await client.query(NESTED_LOOPS);
  const out = await statement();
  await client.query(NESTED_LOOPS_END);
  return out;
}

/** Takes back the resources an operation touched (before rolling back an ended operation). */
export async function relockTouched(client: pg.PoolClient, operationId: string): Promise<Holder[]> {
  await client.query('SELECT pg_advisory_xact_lock($1)', [PLAN_LOCKS_LOCK]);
  await client.query(
    `INSERT INTO resource_locks (resource_id, operation_id)
     SELECT resource_id, $1 FROM operation_items WHERE operation_id = $1 AND executed_seq IS NOT NULL ${TAKE}`,
    [operationId, LIVE_STATES],
  );
  const r = await client.query<{ resource_id: string; operation_id: string }>(
    `SELECT l.resource_id, l.operation_id FROM operation_items i JOIN resource_locks l ON l.resource_id = i.resource_id
     WHERE i.operation_id = $1 AND i.executed_seq IS NOT NULL AND l.operation_id <> $1 ORDER BY l.resource_id LIMIT 100`,
    [operationId],
  );
  return r.rows.map((x) => ({ resourceId: x.resource_id, operationId: x.operation_id }));
}

/** Lock rows deleted per statement by releaseEndedLocks (one short statement each). */
const RELEASE_BATCH = 10_000;

/**
 * Deletes lock rows whose holder has ended (or is gone): rows that lock nothing, since every reader
 * looks at a lock only through a live holder. Left in place, they made the next plan of the same
 * resources take each over row by row (a 600k-ID re-plan after a cancel: lock stage 2.9 → 6.6–10.8 s,
 * measured by the new-user trial) and grew the table every classification joins (162 MB after a
 * few re-plans). Run from the workers' reconcile loop, in batches, by any number of processes:
 * SKIP LOCKED leaves rows another process or a plan holds right now, and a row is deleted by its
 * ctid, so a row a plan took over meanwhile (a new version, another ctid) is never deleted.
 * Returns how many rows went.
 */
export async function releaseEndedLocks(pool: Pick<pg.Pool, 'query'>, maxBatches = 20): Promise<number> {
  let released = 0;
  for (let b = 0; b < maxBatches; b++) {
    const r = await pool.query(
      `DELETE FROM resource_locks WHERE ctid = ANY(ARRAY(
         SELECT l.ctid FROM resource_locks l LEFT JOIN operations o ON o.id = l.operation_id
         WHERE o.id IS NULL OR NOT ${holdsResources('o', '$1')}
         LIMIT $2 FOR UPDATE OF l SKIP LOCKED))`,
      [LIVE_STATES, RELEASE_BATCH],
    );
    released += r.rowCount ?? 0;
    if ((r.rowCount ?? 0) < RELEASE_BATCH) break;
  }
  return released;
}
