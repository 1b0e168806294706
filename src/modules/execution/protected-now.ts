// Protection is checked again just before a chunk's destructive calls: a resource or tenant that
// became protected after the plan was approved is not deleted (chunk.ts protectedNow).
import type pg from 'pg';
import { PROTECTED_SINCE_PLAN, TENANT_PROTECTED_SINCE_PLAN } from '../adapters/registry-refusals.ts';

/** What a look at protection found, and the snapshot it was taken in (for protectionChangedSince). */
export interface ProtectionLook {
  /** Each resource that may not be deleted now, with why. */
  refusals: Map<string, string>;
  /** The look's snapshot (`pg_current_snapshot()` as text). */
  seen: string;
}

/**
 * The chunk's resources that are protected now, or whose tenant is (unless the approval named that
 * tenant): each with the reason its item fails.
 */
export async function protectedNow(
  pool: Pick<pg.Pool, 'query'>,
  ids: string[],
  approvedTenants: string[],
): Promise<ProtectionLook> {
  // One primary-key lookup per ID: with `id = ANY(…)` PostgreSQL scans the whole registry below a
  // few hundred thousand rows (registry-apply.ts says the same of its statement). The chunk's few
  // tenants are looked up once each, as the registry statement does (ptenant).
  // The snapshot is the statement's own (pg_current_snapshot reads the active one), so "changed
  // since" below means exactly "committed after what this look saw". It rides on every row, and on
  // one row of its own when none is refused (the usual case).
  const r = await pool.query<{ id: string | null; protected: boolean; tenant_id: string; seen: string }>(
    `WITH r AS MATERIALIZED (
       SELECT r.id, r.protected, r.tenant_id FROM unnest($1::text[]) AS i(id)
       CROSS JOIN LATERAL (SELECT id, protected, tenant_id FROM resources r WHERE r.id = i.id) r
     ), ptenant AS (
       SELECT t.id FROM (SELECT DISTINCT tenant_id FROM r) d
       CROSS JOIN LATERAL (SELECT id FROM tenants t WHERE t.id = d.tenant_id AND t.protected) t
       WHERE NOT (t.id = ANY($2::text[]))
     )
     SELECT id, protected, tenant_id, pg_current_snapshot()::text AS seen FROM r
     WHERE protected OR tenant_id IN (SELECT id FROM ptenant)
     UNION ALL SELECT NULL, false, NULL, pg_current_snapshot()::text`,
    [ids, approvedTenants],
  );
  const refusals = new Map<string, string>();
  for (const row of r.rows)
    if (row.id !== null)
      refusals.set(
        row.id,
        row.protected ? PROTECTED_SINCE_PLAN(row.id) : TENANT_PROTECTED_SINCE_PLAN(row.id, row.tenant_id),
      );
  return { refusals, seen: r.rows[0]!.seen };
}

/** Rows of `table` (a change log) whose transaction committed after the snapshot `seen` was taken. */
const committedSince = (table: 'protection_changes' | 'registry_changes', seen: string) =>
  `EXISTS (SELECT 1 FROM ${table}
           WHERE xid >= pg_snapshot_xmin(${seen}::pg_snapshot) AND NOT pg_visible_in_snapshot(xid, ${seen}::pg_snapshot))`;

/**
 * Whether a statement that may change protection (prisma/sql/protection_changes.sql) committed
 * after the look whose snapshot is `seen`: its transaction was running or not yet begun then, and has
 * committed now. One index range over the few changes since the oldest transaction `seen` waited on.
 */
export async function protectionChangedSince(pool: Pick<pg.Pool, 'query'>, seen: string): Promise<boolean> {
  const r = await pool.query<{ changed: boolean }>(`SELECT ${committedSince('protection_changes', '$1')} AS changed`, [
    seen,
  ]);
  return r.rows[0]!.changed;
}

/**
 * Whether anything a delete's plan was checked against may have changed since its snapshot `seen`:
 * protection (protection_changes) or the registry's resources and types (registry_changes).
 */
export async function registryChangedSince(db: Pick<pg.Pool, 'query'>, seen: string): Promise<boolean> {
  const r = await db.query<{ changed: boolean }>(
    `SELECT ${committedSince('protection_changes', '$1')} OR ${committedSince('registry_changes', '$1')} AS changed`,
    [seen],
  );
  return r.rows[0]!.changed;
}

/** The statement's snapshot, for protectionChangedSince (a plan takes it before it reads protection). */
export async function snapshotNow(db: Pick<pg.Pool, 'query'>): Promise<string> {
  return (await db.query<{ seen: string }>('SELECT pg_current_snapshot()::text AS seen')).rows[0]!.seen;
}

/**
 * How old a plan's snapshot (OperationRecord.protectionSeen) may be and still be compared with the
 * changes since: well inside the day they are kept, whatever an operation's bakes add to its plan's age.
 */
export const PLAN_LOOK_MAX_MS = 12 * 3_600_000;

/** Changes (protection_changes, registry_changes) older than this are deleted (pruneChangeLogs): far beyond any look still compared with them. */
export const CHANGE_LOGS_KEPT = '1 day';

/** Deletes the changes no look can still need (the workers' reconcile loop). Returns how many went. */
export async function pruneChangeLogs(pool: Pick<pg.Pool, 'query'>): Promise<number> {
  const r = await pool.query<{ n: number }>(
    `WITH p AS (DELETE FROM protection_changes WHERE at < now() - $1::interval RETURNING 1),
          g AS (DELETE FROM registry_changes WHERE at < now() - $1::interval RETURNING 1)
     SELECT (SELECT count(*) FROM p)::int + (SELECT count(*) FROM g)::int AS n`,
    [CHANGE_LOGS_KEPT],
  );
  return r.rows[0]!.n;
}
