// What a registry write changes that a live operation holds (resource_locks): the operation was
// planned against what those resources were, so the write's answer names them (`held`).
import type pg from 'pg';

/** Changed resources a `held` answer names (the count is of all). */
export const HELD_LISTED = 20;

export interface HeldChange {
  count: number;
  /** `under`: not held itself, but put under this parent, which the operation holds. */
  resources: { id: string; operationId: string; operationState: string; under?: string }[];
}

/** What a HELD-shaped query found (rows of total, id, operation_id, state); null when none. */
export async function heldBy(
  client: Pick<pg.PoolClient, 'query'>,
  sql: string,
  params: unknown[],
): Promise<HeldChange | null> {
  const h = await client.query<{
    total: number;
    id: string;
    operation_id: string;
    state: string;
    under?: string | null;
  }>(sql, params);
  if (h.rows.length === 0) return null;
  return {
    count: h.rows[0]!.total,
    resources: h.rows.map((x) => ({
      id: x.id,
      operationId: x.operation_id,
      operationState: x.state,
      ...(x.under ? { under: x.under } : {}),
    })),
  };
}

/**
 * Resources of tenants an upsert is about to protect (not protected now) that a live operation
 * holds: its plan did not need break-glass for them, so its start or its run refuses them now.
 */
export const HELD_BY_TENANTS = `
  SELECT count(*) OVER ()::int AS total, r.id, l.operation_id, o.state
  FROM tenants t JOIN resources r ON r.tenant_id = t.id
  JOIN resource_locks l ON l.resource_id = r.id
  JOIN operations o ON o.id = l.operation_id AND o.state = ANY($2::text[])
  WHERE t.id = ANY($1::text[]) AND NOT t.protected
  ORDER BY r.id LIMIT ${HELD_LISTED}`;
