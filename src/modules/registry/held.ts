// What a registry write changes that a live operation holds (resource_locks): the operation was
// planned against what those resources were, so the write's answer names them (`held`), and the
// audit log has an event on each such operation (registry.held_changed), so that the operation's
// own audit trail (GET /v1/audit?operationId=…) shows the write that made its plan stale.
import type pg from 'pg';
import { appendAudit } from '../audit/repository.ts';

/** Changed resources a `held` answer names (the count is of all), and each audit event. */
export const HELD_LISTED = 20;

export interface HeldChange {
  count: number;
  /** `under`: not held itself, but put under this parent, which the operation holds. */
  resources: { id: string; operationId: string; operationState: string; under?: string }[];
}

/** Per live operation: how many of what the write changed it holds, and the first of them. */
export interface HeldByOperation {
  operationId: string;
  operationState: string;
  count: number;
  resources: string[];
}

/**
 * A held-rows query: rows of (ord, id, operation_id, state, under), one per changed resource and
 * live operation that holds it (or its new parent: under; a resource may have a row of each), in
 * the answer's order by `ord`.
 */
export interface HeldRows {
  sql: string;
  params: unknown[];
}

/** What a write changed that live operations hold: the answer's `held`, and per operation; null when none. */
export async function heldBy(
  client: Pick<pg.PoolClient, 'query'>,
  rows: HeldRows,
): Promise<{ held: HeldChange; operations: HeldByOperation[] } | null> {
  // A resource held itself and put under a parent another operation holds is one row of the
  // answer, as itself; each of the two operations gets its event (below).
  const h = await client.query<{
    total: number;
    id: string;
    operation_id: string;
    state: string;
    under: string | null;
  }>(
    `SELECT count(*) OVER ()::int AS total, id, operation_id, state, under
     FROM (SELECT DISTINCT ON (id) * FROM (${rows.sql}) a ORDER BY id, under NULLS FIRST) h
     ORDER BY ord LIMIT ${HELD_LISTED}`,
    rows.params,
  );
  if (h.rows.length === 0) return null;
  // Per operation, without that dedupe: a second pass, run only when something is held.
  const ops = await client.query<{ operation_id: string; state: string; n: number; ids: string[] }>(
    `SELECT operation_id, min(state) AS state, count(*)::int AS n, (array_agg(id ORDER BY ord))[1:${HELD_LISTED}] AS ids
     FROM (${rows.sql}) h GROUP BY operation_id ORDER BY operation_id`,
    rows.params,
  );
  return {
    held: {
      count: h.rows[0]!.total,
      resources: h.rows.map((x) => ({
        id: x.id,
        operationId: x.operation_id,
        operationState: x.state,
        ...(x.under ? { under: x.under } : {}),
      })),
    },
    operations: ops.rows.map((o) => ({
      operationId: o.operation_id,
      operationState: o.state,
      count: o.n,
      resources: o.ids,
    })),
  };
}

/** One audit event per operation whose held resources `action` (the write's audit action) changed. */
export async function auditHeld(
  client: pg.PoolClient,
  actor: string,
  action: string,
  operations: HeldByOperation[],
): Promise<void> {
  for (const o of operations)
    await appendAudit(client, {
      actor,
      action: 'registry.held_changed',
      outcome: 'accepted',
      operationId: o.operationId,
      payload: { by: action, operationState: o.operationState, count: o.count, resources: o.resources },
    });
}

/**
 * Resources of tenants an upsert is about to protect (not protected now) that a live operation
 * holds: its plan did not need break-glass for them, so its start or its run refuses them now.
 */
export const heldByTenants = (tenants: string[], live: readonly string[]): HeldRows => ({
  sql: `SELECT r.id AS ord, r.id, l.operation_id, o.state, NULL::text AS under
        FROM tenants t JOIN resources r ON r.tenant_id = t.id
        JOIN resource_locks l ON l.resource_id = r.id
        JOIN operations o ON o.id = l.operation_id AND o.state = ANY($2::text[])
        WHERE t.id = ANY($1::text[]) AND NOT t.protected`,
  params: [tenants, live],
});
