// A cheap fingerprint of the domain tables, to prove that a refused request changed nothing.
// audit_events is left out: refusals of destructive requests are recorded there by design.
import type { Queryable } from '../../src/lib/sql.ts';

/** Small tables are hashed whole (any change shows); the item ledger by count and latest change. */
const HASHED = [
  'resource_types',
  'tenants',
  'tenant_contacts',
  'resources',
  'api_tokens',
  'api_token_secrets',
  'operations',
  'operation_waves',
  'resource_locks',
  'operation_rejections',
  'operation_tenants',
  'approvals',
  'signals',
  'snapshots',
  'settings',
  'webhook_endpoints',
] as const;

const SQL = `SELECT ${[
  ...HASHED.map(
    (t) =>
      `(SELECT count(*)::text || ':' || coalesce(md5(string_agg(x::text, ',' ORDER BY x::text)), '') FROM ${t} x) AS ${t}`,
  ),
  `(SELECT count(*)::text || ':' || coalesce(max(updated_at)::text, '') FROM operation_items) AS operation_items`,
].join(', ')}`;

export type Fingerprint = Record<string, string>;

export async function fingerprint(db: Queryable): Promise<Fingerprint> {
  const r = await db.query<Fingerprint>(SQL);
  return r.rows[0]!;
}

/** Tables whose fingerprint differs. */
export function changedTables(before: Fingerprint, after: Fingerprint): string[] {
  return Object.keys(after).filter((k) => before[k] !== after[k]);
}
