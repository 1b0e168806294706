// A signal names the tenant it is about. A typo there (tenant_00l2 for tenant_0012) still halts a
// running operation — a signal must never be refused or lost — but the answer said nothing of it,
// and the operator believed the customer's tenant was in the operation (a trial). The command's
// answer now warns when the tenant is unknown to the registry, or has no item in the operation.
import type { Queryable } from '../../lib/sql.ts';
import { TOP_TENANTS } from '../operations/plan-build.ts';

interface PlanTenants {
  tenants?: { top?: { tenantId: string }[] };
}

/** A warning for the signal's answer, or null when the tenant is one of the operation's. */
export async function signalTenantWarning(
  db: Queryable,
  op: { id: string; plan: unknown; tenantCount: number },
  tenantId: string,
): Promise<string | null> {
  const known = await db.query(`SELECT 1 FROM tenants WHERE id = $1`, [tenantId]);
  if (!known.rowCount)
    return `tenant ${tenantId} is not in the registry (a typo?); the signal was recorded all the same`;
  const top = (op.plan as PlanTenants | null)?.tenants?.top ?? [];
  if (top.some((t) => t.tenantId === tenantId)) return null;
  // The plan lists every tenant when they are few; otherwise the ledger is asked (a scan of the
  // operation's items when the tenant has none: only for a signal, after it was committed).
  if (top.length >= TOP_TENANTS || top.length < op.tenantCount) {
    const inOp = await db.query(`SELECT 1 FROM operation_items WHERE operation_id = $1 AND tenant_id = $2 LIMIT 1`, [
      op.id,
      tenantId,
    ]);
    if (inOp.rowCount) return null;
  }
  return `tenant ${tenantId} has no item in this operation (a typo?); the signal was recorded all the same`;
}
