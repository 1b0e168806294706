// Writes a new operation's row, as a plan commits it (deletes, restores and purges alike).
import type pg from 'pg';
import { adapterSystem } from '../restores/history.ts';

export interface NewOperation {
  id: string;
  action: string;
  targetType: string;
  mode: string;
  reason: string;
  ticket: string;
  /** approved: a restore the policy lets run without an approval (restoreApproval "none"). */
  state: 'planned' | 'rejected' | 'approved';
  requestedBy: string;
  requestedByName: string;
  idempotencyKey: string | null;
  requestHash: string;
  rollout: unknown;
  haltPolicy: unknown;
  plan: unknown;
  planHash: string | null;
  rejection: unknown;
  itemCount: number;
  tenantCount: number;
  requiresBreakGlass: boolean;
  autoStart: boolean;
  /** When a planned operation stops blocking its resources if nobody starts it. */
  expiresAt: Date | null;
  /** Restores: the scope asked for. */
  scope?: unknown;
  /** Deletes: the plan's tenants that are protected (its break-glass covers them, no other). */
  protectedTenants?: string[];
  /** Deletes: the snapshot taken before the plan read protection (OperationRecord.protectionSeen). */
  protectionSeen?: string;
}

export async function insertOperation(client: pg.PoolClient, o: NewOperation) {
  await client.query(
    `INSERT INTO operations (id, action, target_type, mode, reason, ticket, state, requested_by, requested_by_name,
       idempotency_key, request_hash, rollout, halt_policy, plan, plan_hash, rejection, item_count, tenant_count,
       requires_break_glass, auto_start, expires_at, scope, protected_tenants, protection_seen, finished_at,
       adapter_systems)
     VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23,$24,
       -- A rejected plan ends as it is made (the rolling budgets do not count rejected ones).
       CASE WHEN $7 = 'rejected' THEN now() END,
       -- Every type's (a handful): what the rollback's guard compares (engine-store.ts adaptersChanged).
       (SELECT jsonb_object_agg(t.name, ${adapterSystem('t')}) FROM resource_types t))`,
    [
      o.id,
      o.action,
      o.targetType,
      o.mode,
      o.reason,
      o.ticket,
      o.state,
      o.requestedBy,
      o.requestedByName,
      o.idempotencyKey,
      o.requestHash,
      JSON.stringify(o.rollout),
      JSON.stringify(o.haltPolicy),
      o.plan === null ? null : JSON.stringify(o.plan),
      o.planHash,
      o.rejection === null ? null : JSON.stringify(o.rejection),
      o.itemCount,
      o.tenantCount,
      o.requiresBreakGlass,
      o.autoStart,
      o.expiresAt,
      o.scope === undefined ? null : JSON.stringify(o.scope),
      o.protectedTenants ?? [],
      o.protectionSeen ?? null,
    ],
  );
}
