// Protection is checked again just before a chunk's destructive calls: a resource or tenant that
// became protected after the plan was approved is not deleted (chunk.ts protectedNow).
import type pg from 'pg';
import { PROTECTED_SINCE_PLAN, TENANT_PROTECTED_SINCE_PLAN } from '../adapters/registry-apply.ts';

/**
 * The chunk's resources that are protected now, or whose tenant is (unless the approval named that
 * tenant): each with the reason its item fails.
 */
export async function protectedNow(
  pool: Pick<pg.Pool, 'query'>,
  ids: string[],
  approvedTenants: string[],
): Promise<Map<string, string>> {
  // One primary-key lookup per ID: with `id = ANY(…)` PostgreSQL scans the whole registry below a
  // few hundred thousand rows (registry-apply.ts says the same of its statement). The chunk's few
  // tenants are looked up once each, as the registry statement does (ptenant).
  const r = await pool.query<{ id: string; protected: boolean; tenant_id: string }>(
    `WITH r AS MATERIALIZED (
       SELECT r.id, r.protected, r.tenant_id FROM unnest($1::text[]) AS i(id)
       CROSS JOIN LATERAL (SELECT id, protected, tenant_id FROM resources r WHERE r.id = i.id) r
     ), ptenant AS (
       SELECT t.id FROM (SELECT DISTINCT tenant_id FROM r) d
       CROSS JOIN LATERAL (SELECT id FROM tenants t WHERE t.id = d.tenant_id AND t.protected) t
       WHERE NOT (t.id = ANY($2::text[]))
     )
     SELECT id, protected, tenant_id FROM r WHERE protected OR tenant_id IN (SELECT id FROM ptenant)`,
    [ids, approvedTenants],
  );
  return new Map(
    r.rows.map((row) => [
      row.id,
      row.protected ? PROTECTED_SINCE_PLAN(row.id) : TENANT_PROTECTED_SINCE_PLAN(row.id, row.tenant_id),
    ]),
  );
}
