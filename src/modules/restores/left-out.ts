// What a tenant or an operation scope names but a restore (or purge) plan leaves out, and why
// (`leftOut`). Nothing is skipped silently: each left-out resource is counted under its reason and
// the first of each reason are named with who did it. Runs inside resolveDeleted's transaction,
// after plan_input holds what the plan takes.
import type pg from 'pg';
import type { RestoreScope } from './schemas.ts';
import { isErased } from './history.ts';

/** How many IDs of each reason leftOut names (and liveAtAsOf). */
export const LEFT_OUT_SAMPLE = 20;

export type LeftOutReason = 'purged' | 'erased';

export interface LeftOutItem {
  id: string;
  reason: LeftOutReason;
  /** The operation that did it, when Blastgate did (a purge or an erasure), else null. */
  by: string | null;
  detail: string;
}

export interface LeftOut {
  /** Purged since (by a purge or an erasure): final. Erased ones are counted here too. */
  purged: number;
  /** The first purged ones by ID. */
  ids: string[];
  /** Of the purged, those a compliance erasure erased (their snapshots destroyed). */
  erased: number;
  /** The first of each reason, by ID, with why. */
  items: LeftOutItem[];
}

type Scope = Extract<RestoreScope, { kind: 'tenant' | 'operation' }>;

/**
 * Fills left_out (id, reason, by) with what the scope names that is gone for good: purged by a
 * purge or an erasure (Blastgate's latest delete of it stands, in the scope), and, for a tenant,
 * what a purge or an erasure of it since deletedSince took. An erasure may take a resource that was
 * active (never soft-deleted first): no delete of it is in the tenant's history, so it was named
 * nowhere, and the requester could not tell it apart from something never deleted (a trial).
 */
async function gone(client: pg.PoolClient, scope: Scope): Promise<void> {
  const inScope =
    scope.kind === 'tenant'
      ? `SELECT l.id FROM restore_latest l
         WHERE l.deleted AND l.tenant_id = $1 AND l.at >= coalesce($2::timestamptz, '-infinity')
         UNION
         SELECT s.resource_id FROM snapshots s
         JOIN operations o ON o.id = s.operation_id AND o.action IN ('purge', 'erase')
         JOIN operation_items i ON i.snapshot_id = s.id AND (i.operation_id || '') = s.operation_id AND i.state = 'done'
         WHERE s.tenant_id = $1 AND s.created_at >= coalesce($2::timestamptz, '-infinity')`
      : `SELECT l.id FROM restore_latest l WHERE l.deleted AND l.op_id = $1`;
  await client.query(
    `INSERT INTO left_out (id, reason, by)
     SELECT g.id, CASE WHEN ${isErased('g.id')} THEN 'erased' ELSE 'purged' END, hd.op_id
     FROM (${inScope}) g JOIN resources r ON r.id = g.id AND r.state = 'purged'
     -- Who hard-deleted it: its latest purge or erasure that took effect (none when only an import
     -- said it is purged).
     LEFT JOIN LATERAL (
       SELECT s.operation_id AS op_id FROM snapshots s
       JOIN operations o ON o.id = s.operation_id AND o.action IN ('purge', 'erase')
       JOIN operation_items i ON i.snapshot_id = s.id AND (i.operation_id || '') = s.operation_id AND i.state = 'done'
       WHERE s.resource_id = g.id ORDER BY s.created_at DESC, s.id DESC LIMIT 1) hd ON true`,
    scope.kind === 'tenant' ? [scope.tenantId, scope.deletedSince] : [scope.operationId],
  );
}

/** What the scope leaves out, or null when it leaves out nothing. */
export async function leftOutOf(client: pg.PoolClient, scope: Scope): Promise<LeftOut | null> {
  await client.query(`CREATE TEMP TABLE left_out (id text PRIMARY KEY, reason text, by text) ON COMMIT DROP`);
  await gone(client, scope);
  const counts = await client.query<{ reason: LeftOutReason; n: number }>(
    `SELECT reason, count(*)::int AS n FROM left_out GROUP BY reason`,
  );
  if (!counts.rowCount) return null;
  const n = Object.fromEntries(counts.rows.map((r) => [r.reason, r.n])) as Partial<Record<LeftOutReason, number>>;
  const sample = await client.query<{ id: string; reason: LeftOutReason; by: string | null }>(
    `SELECT id, reason, by FROM (SELECT *, row_number() OVER (PARTITION BY reason ORDER BY id) AS k FROM left_out) x
     WHERE k <= $1 ORDER BY id`,
    [LEFT_OUT_SAMPLE],
  );
  const ids = await client.query<{ id: string }>(
    `SELECT id FROM left_out WHERE reason IN ('purged', 'erased') ORDER BY id LIMIT $1`,
    [LEFT_OUT_SAMPLE],
  );
  return {
    purged: (n.purged ?? 0) + (n.erased ?? 0),
    ids: ids.rows.map((r) => r.id),
    erased: n.erased ?? 0,
    items: sample.rows.map((r) => ({ ...r, detail: detailOf(r.reason, r.by) })),
  };
}

function detailOf(reason: LeftOutReason, by: string | null): string {
  switch (reason) {
    case 'erased':
      return by
        ? `erased by ${by} (compliance erasure): its snapshots are destroyed, it can never be restored`
        : 'erased (its snapshot keys are destroyed): it can never be restored';
    case 'purged':
      return by
        ? `purged by ${by}: a hard delete is final, it can never be restored`
        : 'purged (the registry says so): final, it can never be restored';
  }
}

/** The NOTHING_TO_… sentence about what a scope left out, and why. */
export function leftOutSentence(leftOut: LeftOut | null, verb: string): string {
  if (!leftOut?.purged) return '';
  const erased = leftOut.erased ? ` (${leftOut.erased} erased by a compliance erasure)` : '';
  return `; ${leftOut.purged} resource(s) of it are purged${erased} and can never be ${verb} (${leftOut.ids.slice(0, 5).join(', ')}${leftOut.purged > 5 ? ', …' : ''})`;
}
