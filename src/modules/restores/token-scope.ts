// A scoped token (issue: out_of_scope) may bring back only what it may delete: resources of its
// types and tenants. A restore writes to customers' data like a delete does, so the same limit holds.
import type pg from 'pg';
import type { TokenScope } from '../auth/roles.ts';

/** Marks resolved resources outside the token's scope out_of_scope (other offences are kept). */
export async function markOutOfScope(client: pg.PoolClient, scope: TokenScope | null | undefined): Promise<void> {
  if (!scope || (!scope.resourceTypes && !scope.tenants)) return;
  await client.query(
    `UPDATE plan_class SET class = 'out_of_scope'
     WHERE class NOT IN ('duplicate', 'unknown')
       AND (($1::text[] IS NOT NULL AND type <> ALL($1::text[]))
         OR ($2::text[] IS NOT NULL AND (tenant_id IS NULL OR tenant_id <> ALL($2::text[]))))`,
    [scope.resourceTypes ?? null, scope.tenants ?? null],
  );
}
