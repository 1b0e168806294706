// Reading the snapshot store by resource and time, for restores (issue 8: `asOf` restores each
// resource to its state at T from the last snapshot taken before T). Only references: the content
// is read through SnapshotStore.get, which verifies it (snapshot_corrupt, erased).
import type { Queryable } from '../../lib/sql.ts';

export interface SnapshotRef {
  snapshotId: number;
  resourceId: string;
  tenantId: string;
  /** The operation whose destructive call the snapshot was taken before. */
  operationId: string;
  /** When it was stored: the start of the transaction that also set the write-ahead mark. */
  takenAt: Date;
}

/**
 * The last snapshot of each resource taken strictly before `before` (two in the same millisecond:
 * the later insert). Resources with none are absent from the map. Set-based: one index probe per
 * resource on (resource_id, created_at).
 */
export async function lastSnapshotsBefore(
  db: Queryable,
  resourceIds: readonly string[],
  before: Date,
): Promise<Map<string, SnapshotRef>> {
  const out = new Map<string, SnapshotRef>();
  if (resourceIds.length === 0) return out;
  const r = await db.query<{
    id: string | number;
    resource_id: string;
    tenant_id: string;
    operation_id: string;
    created_at: Date;
  }>(
    `SELECT s.id, s.resource_id, s.tenant_id, s.operation_id, s.created_at
     FROM (SELECT DISTINCT unnest($1::text[]) AS id) r
     CROSS JOIN LATERAL (
       SELECT * FROM snapshots s WHERE s.resource_id = r.id AND s.created_at < $2
       ORDER BY s.created_at DESC, s.id DESC LIMIT 1
     ) s`,
    [resourceIds, before],
  );
  for (const x of r.rows)
    out.set(x.resource_id, {
      snapshotId: Number(x.id),
      resourceId: x.resource_id,
      tenantId: x.tenant_id,
      operationId: x.operation_id,
      takenAt: x.created_at,
    });
  return out;
}
