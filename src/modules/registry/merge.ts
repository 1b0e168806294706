// Writes validated staged rows into `resources`: one UPDATE for rows that changed, one INSERT for
// new rows. Unchanged rows are not touched, so a re-import writes nothing.
//
// Measured on the 2-core dev machine (PG 15), 1M new rows into an empty table:
//   row by row: 15.4 s   (heap + primary key 2.2 s; the tenant_id and parent_id indexes and the
//                         two foreign-key triggers, fired once per row, make up the rest)
//   bulk path:   3.4 s   (insert 2.2 s, rebuild both indexes 0.9 s, re-check both FKs 0.3 s)
// So a load that is large next to the table drops the secondary indexes and foreign keys, inserts,
// and re-creates them from their own catalog definitions (pg_get_indexdef/_constraintdef), all in
// the import's transaction: at commit the schema is exactly as before, and the FKs are re-checked
// over the whole table. The cost: ACCESS EXCLUSIVE on `resources` until commit (readers wait a few
// seconds), so it is only used when it pays, and falls back to row by row when the lock is not
// granted within BULK_LOCK_TIMEOUT or the role may not alter the table.
//
// synchronous_commit stays on: the time goes to index maintenance and CPU, not to the single WAL
// flush at commit, and turning it off would let a crash lose an import we already acknowledged.
import pg from 'pg';
import { LIVE_STATES } from '../operations/lifecycle-types.ts';
import { heldBy, type HeldByOperation, type HeldChange, type HeldRows } from './held.ts';

/** Fewer new rows than this always go row by row (rebuilding indexes costs O(table)). */
export const BULK_MIN_ROWS = 100_000;
/** Bulk only when the table holds at most this many rows per new row (rebuild ≈ 1/6 of a row insert). */
const BULK_TABLE_RATIO = 2;
/** Longest wait for the exclusive lock before falling back to row by row. */
const BULK_LOCK_TIMEOUT = '3s';

// Omitted state/protected keep the stored value (Blastgate itself changes them during
// operations; a routine sync must not undo a soft delete), and so does an omitted parentId: an
// import that only marks a resource protected took it out of its parent's cascade (a trial); an
// explicit null removes the parent. deleted_at follows the state; a row
// made active again by an import is no longer due for a purge (its retention ends with it).
// An explicit `state: active` for a row with a retention running is such an import even when the
// row reads active already: an HTTP adapter's soft delete leaves the state alone and only sets
// purge_after, so without it a resource brought back in its own system (outside Blastgate) stayed
// unchanged here, was refused as already_deleted, and was hard-deleted by the next due purge.
// state_imported_at records such an import (an explicit state that changed the state or ended a
// retention): for an HTTP adapter's resources it is what undoes Blastgate's delete, never a change
// of anything else of the row (restores/history.ts).
const PARENT = 'CASE WHEN s.parent_given THEN s.parent_id ELSE r.parent_id END';
const CHANGES = `((r.type, r.tenant_id, r.parent_id, r.state, r.protected)
    IS DISTINCT FROM (s.type, s.tenant_id, ${PARENT}, coalesce(s.state, r.state), coalesce(s.protected, r.protected))
  OR (s.state = 'active' AND r.purge_after IS NOT NULL))`;
const MERGE_UPDATE = `
  UPDATE resources r SET type = s.type, tenant_id = s.tenant_id, parent_id = ${PARENT},
    state = coalesce(s.state, r.state), protected = coalesce(s.protected, r.protected),
    deleted_at = CASE WHEN coalesce(s.state, r.state) = 'active' THEN NULL ELSE coalesce(r.deleted_at, now()) END,
    purge_after = CASE WHEN coalesce(s.state, r.state) = 'active' AND (r.state <> 'active' OR s.state IS NOT NULL)
      THEN NULL ELSE r.purge_after END,
    state_imported_at = CASE WHEN s.state IS NOT NULL AND (s.state <> r.state OR (s.state = 'active' AND r.purge_after IS NOT NULL))
      THEN now() ELSE r.state_imported_at END,
    updated_at = now()
  FROM registry_stage s
  WHERE r.id = s.id AND ${CHANGES}`;
/**
 * Whether the import changes any existing row. The UPDATE runs only then: it is a statement on the
 * columns plans and protection depend on, and any such statement is noted as a change, rows or no
 * rows (prisma/sql/registry_changes.sql, protection_changes.sql). A routine sync that changes
 * nothing must not make every running delete read protection again, nor every start its whole plan.
 */
const ANY_CHANGE = `SELECT EXISTS (SELECT 1 FROM registry_stage s JOIN resources r ON r.id = s.id WHERE ${CHANGES}) AS any`;

const NEW_ROWS = 'FROM registry_stage s WHERE NOT EXISTS (SELECT 1 FROM resources r WHERE r.id = s.id)';

const MERGE_INSERT = `
  INSERT INTO resources (id, type, tenant_id, parent_id, state, protected, deleted_at, updated_at)
  SELECT s.id, s.type, s.tenant_id, s.parent_id, coalesce(s.state, 'active'), coalesce(s.protected, false),
    CASE WHEN coalesce(s.state, 'active') = 'active' THEN NULL ELSE now() END, now()
  ${NEW_ROWS}`;

/**
 * Existing resources the import changes that a live operation holds (resource_locks): it was
 * planned against what they were. A trial's import with a wrong tenantId moved a resource that a
 * planned delete held, answered `updated: 1`, and only the start's PLAN_STALE showed it later.
 * Also a resource, existing or new, that the import puts under a parent a live operation holds
 * (`under`): the parent's cascade was planned without it (a second trial's finding), and the
 * start's PLAN_STALE or the run's refusal of a new child was the first to say so.
 */
const LIVE_HOLDER = `JOIN operations o ON o.id = l.operation_id AND o.state = ANY($1::text[])`;
const HELD: HeldRows = {
  sql: `SELECT s.pos AS ord, s.id, l.operation_id, o.state, NULL::text AS under
    FROM registry_stage s JOIN resources r ON r.id = s.id
    JOIN resource_locks l ON l.resource_id = s.id ${LIVE_HOLDER}
    WHERE ${CHANGES}
    UNION ALL
    SELECT s.pos, s.id, l.operation_id, o.state, s.parent_id
    FROM registry_stage s LEFT JOIN resources r ON r.id = s.id
    JOIN resource_locks l ON l.resource_id = s.parent_id ${LIVE_HOLDER}
    WHERE s.parent_given AND s.parent_id IS DISTINCT FROM r.parent_id`,
  params: [LIVE_STATES],
};
const ANY_LIVE = 'SELECT EXISTS (SELECT 1 FROM operations WHERE state = ANY($1::text[])) AS any';
/** Whether the upload puts any resource under a new parent (only then may it be one held). */
const ANY_NEW_PARENT = `SELECT EXISTS (SELECT 1 FROM registry_stage s LEFT JOIN resources r ON r.id = s.id
  WHERE s.parent_given AND s.parent_id IS NOT NULL AND s.parent_id IS DISTINCT FROM r.parent_id) AS any`;

export interface MergeResult {
  inserted: number;
  updated: number;
  /** Whether secondary indexes and FKs were rebuilt instead of maintained per row. */
  bulk: boolean;
  /** Changed resources held by a live operation (none: null). */
  held: HeldChange | null;
  /** The same, per operation (for its audit event). */
  heldOps: HeldByOperation[];
}

/** Runs inside the import transaction, under the registry write lock, after validation. */
export async function mergeStage(client: pg.PoolClient): Promise<MergeResult> {
  const changes = (await client.query<{ any: boolean }>(ANY_CHANGE)).rows[0]!.any;
  // Nothing can be held while no operation is live (a first load, most syncs): no join at all.
  const live = (await client.query<{ any: boolean }>(ANY_LIVE, [LIVE_STATES])).rows[0]!.any;
  // New rows are no change of an existing one, but may go under a held parent.
  const mayHold = live && (changes || (await client.query<{ any: boolean }>(ANY_NEW_PARENT)).rows[0]!.any);
  const found = mayHold ? await heldBy(client, HELD) : null;
  const held = found?.held ?? null;
  const heldOps = found?.operations ?? [];
  const updated = changes ? ((await client.query(MERGE_UPDATE)).rowCount ?? 0) : 0;
  const fresh = (await client.query<{ n: number }>(`SELECT count(*)::int AS n ${NEW_ROWS}`)).rows[0]!.n;
  if (fresh === 0) return { inserted: 0, updated, bulk: false, held, heldOps };
  const restore = fresh >= BULK_MIN_ROWS ? await suspendSecondaryStructures(client, fresh) : null;
  const inserted = (await client.query(MERGE_INSERT)).rowCount ?? 0;
  if (restore) await restore();
  return { inserted, updated, bulk: restore !== null, held, heldOps };
}

/**
 * Drops the plain secondary indexes and foreign keys of `resources` when the load is large next to
 * the table; returns the function that re-creates them, or null to go row by row.
 */
async function suspendSecondaryStructures(
  client: pg.PoolClient,
  newRows: number,
): Promise<(() => Promise<void>) | null> {
  const size = await client.query<{ n: number }>(
    `SELECT CASE WHEN reltuples >= 0 THEN reltuples::bigint ELSE (SELECT count(*) FROM resources) END AS n
     FROM pg_class WHERE oid = 'resources'::regclass`,
  );
  if (size.rows[0]!.n > newRows * BULK_TABLE_RATIO) return null;
  const fks = await client.query<{ name: string; def: string }>(
    `SELECT conname AS name, pg_get_constraintdef(oid) AS def FROM pg_constraint
     WHERE conrelid = 'resources'::regclass AND contype = 'f' ORDER BY conname`,
  );
  // Only plain indexes: the primary key stays (it finds existing rows and keeps IDs unique).
  const indexes = await client.query<{ name: string; def: string }>(
    `SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def FROM pg_index i
     WHERE i.indrelid = 'resources'::regclass AND NOT i.indisunique AND NOT i.indisprimary
       AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
     ORDER BY 1`,
  );
  const table = 'resources';
  await client.query('SAVEPOINT registry_bulk');
  try {
    const prev = await client.query<{ v: string }>(`SELECT current_setting('lock_timeout') AS v`);
    await client.query(`SELECT set_config('lock_timeout', $1, true)`, [BULK_LOCK_TIMEOUT]);
    for (const fk of fks.rows)
      await client.query(`ALTER TABLE ${table} DROP CONSTRAINT ${pg.escapeIdentifier(fk.name)}`);
    for (const ix of indexes.rows) await client.query(`DROP INDEX ${ix.name}`);
    await client.query(`SELECT set_config('lock_timeout', $1, true)`, [prev.rows[0]!.v]);
    await client.query('RELEASE SAVEPOINT registry_bulk');
  } catch {
    // Lock not granted in time, or not the table owner: maintain the indexes row by row instead.
    await client.query('ROLLBACK TO SAVEPOINT registry_bulk');
    await client.query('RELEASE SAVEPOINT registry_bulk');
    return null;
  }
  return async () => {
    await client.query(`SET LOCAL maintenance_work_mem = '512MB'`);
    for (const ix of indexes.rows) await client.query(ix.def);
    for (const fk of fks.rows)
      await client.query(`ALTER TABLE ${table} ADD CONSTRAINT ${pg.escapeIdentifier(fk.name)} ${fk.def}`);
  };
}
