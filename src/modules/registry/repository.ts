// Registry SQL. Bulk writes are set-based (unnest arrays, or a COPY-filled staging table in
// import.ts) so that 100k tenants or 1M resources are a handful of statements, not one per row.
import type pg from 'pg';
import type { Queryable } from '../../lib/sql.ts';
import { historyViews } from '../restores/history-views.ts';
import type { Resource, ResourceType, ResourceTypeInput, TenantInput } from './schemas.ts';

// Registry writers take this transaction-scoped advisory lock, so that two bulk upserts never
// interleave (no deadlocks between overlapping imports; the update-then-insert merge stays exact).
const REGISTRY_WRITE_LOCK = 7_342_010;

export async function lockRegistryWrites(client: pg.PoolClient): Promise<void> {
  await client.query('SELECT pg_advisory_xact_lock($1)', [REGISTRY_WRITE_LOCK]);
}

const iso = (d: Date | null) => (d ? d.toISOString() : null);

/**
 * A resource's purgeAfter as shown: none once it is purged (a purge or an erasure hard-deleted it),
 * where the stored date read as "within retention" still.
 */
export const purgeAfterView = (state: string, purgeAfter: Date | null) => (state === 'purged' ? null : iso(purgeAfter));

// ---- resource types ------------------------------------------------------------------------

const toType = (r: Record<string, unknown>): ResourceType => ({
  name: r.name as string,
  idPattern: (r.id_pattern as string | null) ?? null,
  parentType: (r.parent_type as string | null) ?? null,
  cascadeTo: (r.cascade_to as string[] | null) ?? [],
  adapter: r.adapter as ResourceType['adapter'],
  retentionDays: (r.retention_days as number | null) ?? null,
  createdAt: (r.created_at as Date).toISOString(),
  updatedAt: (r.updated_at as Date).toISOString(),
});

export async function listTypes(db: Queryable): Promise<ResourceType[]> {
  const res = await db.query('SELECT * FROM resource_types ORDER BY name');
  return res.rows.map(toType);
}

/** Parent links of every stored type, for reference and cycle checks. */
export async function typeParents(db: Queryable): Promise<Map<string, string | null>> {
  const res = await db.query<{ name: string; parent_type: string | null }>(
    'SELECT name, parent_type FROM resource_types',
  );
  return new Map(res.rows.map((r) => [r.name, r.parent_type]));
}

/** Whether PostgreSQL's regex engine accepts the pattern (it differs from JavaScript's). */
export async function postgresAcceptsRegex(db: Queryable, pattern: string): Promise<string | null> {
  try {
    await db.query("SELECT '' ~ $1", [pattern]);
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

/** Upserts whole declarations (a PUT replaces every field of a named type). */
export async function upsertTypes(client: pg.PoolClient, types: ResourceTypeInput[]): Promise<void> {
  await client.query(
    `INSERT INTO resource_types AS t (name, id_pattern, parent_type, cascade_to, adapter, retention_days)
     SELECT i.name, i.id_pattern, i.parent_type, coalesce(i.cascade_to, '{}'), coalesce(i.adapter, '{"kind":"registry"}'),
       i.retention_days
     FROM jsonb_to_recordset($1::jsonb)
       AS i(name text, id_pattern text, parent_type text, cascade_to text[], adapter jsonb, retention_days int)
     ON CONFLICT (name) DO UPDATE SET
       id_pattern = EXCLUDED.id_pattern, parent_type = EXCLUDED.parent_type, cascade_to = EXCLUDED.cascade_to,
       adapter = EXCLUDED.adapter, retention_days = EXCLUDED.retention_days, updated_at = now()
     WHERE (t.id_pattern, t.parent_type, t.cascade_to, t.adapter, t.retention_days)
       IS DISTINCT FROM (EXCLUDED.id_pattern, EXCLUDED.parent_type, EXCLUDED.cascade_to, EXCLUDED.adapter,
                         EXCLUDED.retention_days)`,
    [
      JSON.stringify(
        types.map((t) => ({
          name: t.name,
          id_pattern: t.idPattern ?? null,
          parent_type: t.parentType ?? null,
          cascade_to: t.cascadeTo ?? [],
          adapter: t.adapter ?? null,
          retention_days: t.retentionDays ?? null,
        })),
      ),
    ],
  );
}

// ---- tenants -------------------------------------------------------------------------------

/** Protection an import turns on or off, for the audit log: the first LISTED of each, and how many. */
export interface ProtectionChanges {
  count: number;
  protected: string[];
  unprotected: string[];
}
const LISTED = 100;

/**
 * What `sql` (rows of id, protected: the rows whose protection changes, with its new value, and
 * `total`, their count) says; null when nothing changes. Who protected a tenant or a resource, and
 * when, is what an operator asks after an operation left its items (the guard of a delete).
 */
export async function protectionChanges(
  client: Pick<pg.PoolClient, 'query'>,
  sql: string,
  params: unknown[] = [],
): Promise<ProtectionChanges | null> {
  const r = await client.query<{ id: string; protected: boolean; total: number }>(
    `SELECT id, protected, count(*) OVER ()::int AS total FROM (${sql}) c ORDER BY protected DESC, id LIMIT ${2 * LISTED}`,
    params,
  );
  if (r.rows.length === 0) return null;
  const ids = (on: boolean) =>
    r.rows
      .filter((x) => x.protected === on)
      .slice(0, LISTED)
      .map((x) => x.id);
  return { count: r.rows[0]!.total, protected: ids(true), unprotected: ids(false) };
}

/**
 * Update-then-insert under the registry write lock. Omitted `internal`/`protected` keep the
 * stored value (a sync that does not know about protection must not clear it).
 */
export async function upsertTenants(client: pg.PoolClient, tenants: TenantInput[]) {
  const cols = [
    tenants.map((t) => t.id),
    tenants.map((t) => t.name),
    tenants.map((t) => t.internal ?? null),
    tenants.map((t) => t.protected ?? null),
  ];
  const input = 'unnest($1::text[], $2::text[], $3::bool[], $4::bool[]) AS i(id, name, internal, protected)';
  const protection = await protectionChanges(
    client,
    `SELECT i.id, i.protected FROM ${input} LEFT JOIN tenants t ON t.id = i.id
     WHERE i.protected IS NOT NULL AND i.protected IS DISTINCT FROM coalesce(t.protected, false)`,
    cols,
  );
  // Each statement only when it has rows to write: any statement on tenants' protection is noted as
  // a change, rows or no rows (prisma/sql/protection_changes.sql), and a routine sync that changes
  // nothing must not make every running delete read protection again (merge.ts says the same).
  const changed = `(t.name, t.internal, t.protected)
       IS DISTINCT FROM (i.name, coalesce(i.internal, t.internal), coalesce(i.protected, t.protected))`;
  const todo = await client.query<{ updates: boolean; inserts: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM ${input} JOIN tenants t ON t.id = i.id WHERE ${changed}) AS updates,
            EXISTS (SELECT 1 FROM ${input} WHERE NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = i.id)) AS inserts`,
    cols,
  );
  const updated = todo.rows[0]!.updates
    ? await client.query(
        `UPDATE tenants t SET name = i.name, internal = coalesce(i.internal, t.internal),
           protected = coalesce(i.protected, t.protected), updated_at = now()
         FROM ${input} WHERE t.id = i.id AND ${changed}`,
        cols,
      )
    : null;
  const inserted = todo.rows[0]!.inserts
    ? await client.query(
        `INSERT INTO tenants (id, name, internal, protected)
         SELECT i.id, i.name, coalesce(i.internal, false), coalesce(i.protected, false) FROM ${input}
         ON CONFLICT (id) DO NOTHING`,
        cols,
      )
    : null;
  return { inserted: inserted?.rowCount ?? 0, updated: updated?.rowCount ?? 0, protection };
}

/** Contacts go to their own table, which no delete path touches. Returns rows changed. */
export async function upsertContacts(
  client: pg.PoolClient,
  contacts: { tenantId: string; contact: unknown }[],
): Promise<number> {
  if (contacts.length === 0) return 0;
  // The database accepts contact writes only from a transaction that says it is the registry
  // (prisma/sql/contacts_guard.sql): no destructive path ever says so.
  await client.query(`SET LOCAL blastgate.contact_writer = 'registry'`);
  const res = await client.query(
    `INSERT INTO tenant_contacts AS c (tenant_id, contact)
     SELECT * FROM unnest($1::text[], $2::jsonb[])
     ON CONFLICT (tenant_id) DO UPDATE SET contact = EXCLUDED.contact, updated_at = now()
     WHERE c.contact IS DISTINCT FROM EXCLUDED.contact`,
    [contacts.map((c) => c.tenantId), contacts.map((c) => JSON.stringify(c.contact))],
  );
  return res.rowCount ?? 0;
}

export async function getTenant(db: Queryable, id: string) {
  const res = await db.query(
    'SELECT id, name, internal, protected, created_at, updated_at FROM tenants WHERE id = $1',
    [id],
  );
  const r = res.rows[0] as Record<string, unknown> | undefined;
  if (!r) return undefined;
  const counts = await db.query<{ type: string; state: string; count: number }>(
    'SELECT type, state, count(*)::int AS count FROM resources WHERE tenant_id = $1 GROUP BY type, state ORDER BY type, state',
    [id],
  );
  return {
    id: r.id as string,
    name: r.name as string,
    internal: r.internal as boolean,
    protected: r.protected as boolean,
    createdAt: (r.created_at as Date).toISOString(),
    updatedAt: (r.updated_at as Date).toISOString(),
    resourceTotal: counts.rows.reduce((n, c) => n + c.count, 0),
    resourceCounts: counts.rows,
  };
}

// ---- resources -----------------------------------------------------------------------------

export async function getResource(db: Queryable, id: string): Promise<Resource | undefined> {
  const res = await db.query('SELECT * FROM resources WHERE id = $1', [id]);
  const r = res.rows[0] as Record<string, unknown> | undefined;
  if (!r) return undefined;
  const history = await historyViews(db, [id]);
  return {
    id: r.id as string,
    type: r.type as string,
    tenantId: r.tenant_id as string,
    parentId: (r.parent_id as string | null) ?? null,
    state: r.state as string,
    protected: r.protected as boolean,
    deletedAt: iso(r.deleted_at as Date | null),
    purgeAfter: purgeAfterView(r.state as string, r.purge_after as Date | null),
    updatedAt: (r.updated_at as Date).toISOString(),
    ...history(id),
  };
}
