// Helpers for crash tests: hold a Postgres lock to freeze a worker at an exact step, see who waits
// on it, and check promise 5 (every item applied exactly once downstream, none missing, the
// ledger agrees) at the end.
import pg from 'pg';
import { expect } from 'vitest';
import { idempotencyKeyFor } from '../../src/modules/adapters/signing.ts';
import type { Downstream } from './downstream.ts';
import { query } from './seed.ts';

/** A transaction that holds whatever lock `sql` took until release() (always call it). */
export interface HeldLock {
  release(): Promise<void>;
}

export async function holdLock(databaseUrl: string, sql: string, params: unknown[] = []): Promise<HeldLock> {
  const c = new pg.Client({ connectionString: databaseUrl, application_name: 'test-lock-holder' });
  await c.connect();
  let released = false;
  try {
    await c.query('BEGIN');
    await c.query(sql, params);
  } catch (err) {
    await c.end().catch(() => undefined);
    throw err;
  }
  return {
    async release() {
      if (released) return;
      released = true;
      await c.query('ROLLBACK').catch(() => undefined);
      await c.end().catch(() => undefined);
    },
  };
}

/** Statements of this database now waiting for a lock whose text contains `fragment` (e.g. a table name). */
export async function lockWaiters(databaseUrl: string, fragment: string): Promise<number> {
  const r = await query<{ n: number }>(
    databaseUrl,
    `SELECT count(*)::int AS n FROM pg_stat_activity
     WHERE datname = current_database() AND wait_event_type = 'Lock' AND position($1 in query) > 0`,
    [fragment],
  );
  return r[0]!.n;
}

/** A bounded poll with a short interval, for kill points that pass quickly. */
export async function pollUntil(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 20_000,
  everyMs = 2,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/**
 * The test adapter's 500 ms per-call deadline is for tests of timeouts; on a loaded CI box a
 * crash test's snapshot reads can exceed it, and an item failed by load would be noise here.
 */
export async function relaxAdapterTimeout(databaseUrl: string, timeoutMs = 5_000) {
  await query(
    databaseUrl,
    `UPDATE resource_types SET adapter = adapter || jsonb_build_object('timeoutMs', $1::int) WHERE name = 'app'`,
    [timeoutMs],
  );
}

export const softDeleteKey = (operationId: string, resourceId: string) =>
  idempotencyKeyFor({ operationId, resourceId }, 'softDelete');

/** How many of the operation's soft deletes the downstream has applied so far. */
export function appliedCount(downstream: Downstream, operationId: string, ids: string[]): number {
  let n = 0;
  for (const id of ids) if (downstream.appliedByKey.has(softDeleteKey(operationId, id))) n++;
  return n;
}

export async function ledgerCounts(databaseUrl: string, operationId: string): Promise<Record<string, number>> {
  const rows = await query<{ state: string; n: number }>(
    databaseUrl,
    'SELECT state, count(*)::int AS n FROM operation_items WHERE operation_id = $1 GROUP BY state',
    [operationId],
  );
  return Object.fromEntries(rows.map((r) => [r.state, r.n]));
}

/**
 * Promise 5 at the end of a completed operation: every submitted item was soft-deleted downstream
 * exactly once (counted by its Idempotency-Key), none was restored or purged, and the
 * ledger shows every item done, snapshotted and write-ahead marked, with wave counters that
 * count each item once.
 */
export async function expectEachAppliedOnce(
  databaseUrl: string,
  downstream: Downstream,
  operationId: string,
  ids: string[],
) {
  const missing: string[] = [];
  const twice: string[] = [];
  for (const id of ids) {
    const n = downstream.appliedByKey.get(softDeleteKey(operationId, id)) ?? 0;
    if (n === 0) missing.push(id);
    else if (n > 1) twice.push(`${id}×${n}`);
  }
  expect(missing, 'items never deleted downstream').toEqual([]);
  expect(twice, 'items deleted more than once downstream').toEqual([]);
  // Nothing of this operation was restored or purged, and every item is soft-deleted now.
  const otherActions = ids
    .flatMap((id) =>
      (['restore', 'hardDelete'] as const).map((a) => idempotencyKeyFor({ operationId, resourceId: id }, a)),
    )
    .filter((k) => downstream.appliedByKey.has(k));
  expect(otherActions, 'restores or purges applied for items of the operation').toEqual([]);
  const notSoftDeleted = ids.filter((id) => downstream.state(id) !== 'soft_deleted');
  expect(notSoftDeleted, 'items not soft-deleted downstream at the end').toEqual([]);

  const items = await query<{
    resource_id: string;
    state: string;
    snapshot_id: number | null;
    executed_seq: number | null;
  }>(databaseUrl, 'SELECT resource_id, state, snapshot_id, executed_seq FROM operation_items WHERE operation_id = $1', [
    operationId,
  ]);
  expect(items.length).toBe(ids.length);
  const notDone = items.filter((i) => i.state !== 'done' || i.snapshot_id === null || i.executed_seq === null);
  expect(notDone, 'ledger items not done, or done without snapshot or write-ahead mark').toEqual([]);
  const waves = await query<{ done: number; failed: number }>(
    databaseUrl,
    'SELECT coalesce(sum(done), 0)::int AS done, coalesce(sum(failed), 0)::int AS failed FROM operation_waves WHERE operation_id = $1',
    [operationId],
  );
  expect(waves[0]).toEqual({ done: ids.length, failed: 0 });
}
