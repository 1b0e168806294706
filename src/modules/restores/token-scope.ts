// A scoped token (issue: out_of_scope) may bring back only what it may delete: resources of its
// types and tenants. A restore writes to customers' data like a delete does, so the same limit holds.
import type pg from 'pg';
import type { TokenScope } from '../auth/roles.ts';

/**
 * Marks resolved resources outside the token's scope out_of_scope (other offences are kept). A
 * resource moved to another tenant before the delete it undoes comes back under the delete's tenant
 * (classify.ts MOVED_BEFORE_DELETE) while the registry names the new one: the token needs both, as
 * it could not delete it now without the new one.
 */
export async function markOutOfScope(client: pg.PoolClient, scope: TokenScope | null | undefined): Promise<void> {
  if (!scope || (!scope.resourceTypes && !scope.tenants)) return;
  await client.query(
    `UPDATE plan_class SET class = 'out_of_scope'
     WHERE class NOT IN ('duplicate', 'unknown')
       AND (($1::text[] IS NOT NULL AND type <> ALL($1::text[]))
         OR ($2::text[] IS NOT NULL AND (tenant_id IS NULL OR tenant_id <> ALL($2::text[])
           OR EXISTS (SELECT 1 FROM resources r WHERE r.id = plan_class.id AND r.tenant_id <> ALL($2::text[])))))`,
    [scope.resourceTypes ?? null, scope.tenants ?? null],
  );
}
