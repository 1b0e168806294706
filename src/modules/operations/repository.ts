// Data access for operations: plain SQL (writes take the transaction's client).
import { memo } from '../../lib/memo.ts';
import type pg from 'pg';
import type { Queryable } from '../../lib/sql.ts';
import { NotFoundError } from '../../lib/errors.ts';
import type { Operation } from '../../generated/prisma/client.ts';
import type { DrillView } from './views.ts';
import { ownUnsent, RESTORE_ATTEMPTS, shownState } from '../execution/rollback-ledger.ts';
import { progressFrom } from './progress.ts';
import { progressOf } from './wave-progress.ts';
import { COUNTERS_JSON_SQL, MOVES_JSON_SQL, type WaveCounter, type WaveMove } from '../execution/wave-moves.ts';

/** Items listed in an operation's `unfinished` summary; the items route pages through all of them. */
const UNFINISHED_LISTED = 100;

// Reads are plain SQL: Prisma Client's query compiler cost the API ~55 MB of memory on its first
// query, and its groupBy counted a whole ledger per GET. The schema and migrations stay Prisma's.
const ITEM_COLUMNS = `seq, resource_id AS "resourceId", tenant_id AS "tenantId", wave, state, attempts,
  last_error AS "lastError", parent_seq AS "parentSeq", resource_type AS "resourceType", updated_at AS "updatedAt"`;

/** States of an operation whose items may be restoring/restored (a rollback began): counted from the ledger. */
export const ROLLBACK_STATES = ['rolling_back', 'rolled_back', 'rollback_incomplete'];

export interface ItemRow {
  seq: number;
  resourceId: string;
  tenantId: string;
  wave: number;
  state: string;
  attempts: number;
  lastError: string | null;
  parentSeq: number | null;
  resourceType: string | null;
  updatedAt: Date;
}

export interface RejectionRow {
  ordinal: number;
  resourceId: string;
  class: string;
  actualType: string | null;
  tenantId: string | null;
  heldBy: string | null;
  purgeAfter: Date | null;
  state: string | null;
  via: string | null;
  viaType: string | null;
  viaTenantId: string | null;
}

/**
 * An operation's last item outcome, for `operations o`: the waves record each outcome's time, the
 * operation its own at each decision of the engine (waiting.ts waitingOf reads it).
 */
export const LAST_PROGRESS_SQL =
  'greatest(o.progress_at, (SELECT max(w.progress_at) FROM operation_waves w WHERE w.operation_id = o.id))';

/** The unfinished items of a view, per operation version (see `view`), for every reader in this process. */
const unfinishedMemo = memo<Awaited<ReturnType<ReturnType<typeof operationReads>['unfinished']>>>({
  ttlMs: 5_000,
  max: 256,
});

export function operationReads(db: Queryable) {
  const findById = async (id: string) => {
    const r = await db.query('SELECT * FROM operations WHERE id = $1', [id]);
    return r.rows[0] ? fromRow(r.rows[0]) : null;
  };
  const reads = {
    findById,
    /** The operation, or a 404 naming it. */
    get: async (id: string) => {
      const op = await findById(id);
      if (!op) throw new NotFoundError('Operation', id);
      return op;
    },
    findByIdempotencyKey: async (key: string) => (await findByKeyInTx(db, key)) ?? null,
    /**
     * The operation with the approvals of its plan as it stands, as its GET has them: a create's
     * (or replay's) answer said nothing of the approvals a planned operation still needs (a trial).
     */
    withApprovals: async (op: OperationRow): Promise<OperationRow> => {
      if (op.approvals || !op.planHash) return { ...op, approvals: op.approvals ?? [] };
      const r = await db.query<ApprovalRow>(
        `SELECT approver AS id, approver_name AS by, role, created_at AS at FROM approvals
         WHERE operation_id = $1 AND plan_hash = $2 ORDER BY id`,
        [op.id, op.planHash],
      );
      return { ...op, approvals: r.rows };
    },
    items: async (q: {
      operationId: string;
      wave?: number;
      state?: string[];
      cursor?: number;
      limit: number;
      /** The operation is rolling back: a failed restore it will try again reads as restoring. */
      rollingBack?: boolean;
    }) => {
      // The same state as the view's counts give it (waveProgress): ?state=restoring found none of
      // the items the view counted restoring while they waited for their next attempt (a trial).
      const state = shownState('$6', '$7');
      const r = await db.query<ItemRow>(
        `SELECT ${ITEM_COLUMNS.replace('wave, state,', `wave, ${state} AS state,`)} FROM operation_items
         WHERE operation_id = $1 AND ($2::int IS NULL OR wave = $2) AND ($3::text[] IS NULL OR ${state} = ANY($3))
           AND seq > coalesce($4::int, -1)
         ORDER BY seq LIMIT $5`,
        [
          q.operationId,
          q.wave ?? null,
          q.state ?? null,
          q.cursor ?? null,
          q.limit,
          q.rollingBack ?? false,
          RESTORE_ATTEMPTS,
        ],
      );
      return r.rows;
    },
    rejections: async (q: { operationId: string; class?: string; cursor?: number; limit: number }) => {
      const r = await db.query<RejectionRow>(
        `SELECT j.ordinal, j.resource_id AS "resourceId", j.class, j.actual_type AS "actualType",
                j.tenant_id AS "tenantId", j.held_by AS "heldBy", j.purge_after AS "purgeAfter", j.state,
                j.via, v.type AS "viaType", v.tenant_id AS "viaTenantId"
         FROM operation_rejections j LEFT JOIN resources v ON v.id = j.via
         WHERE j.operation_id = $1 AND ($2::text IS NULL OR j.class = $2) AND j.ordinal > coalesce($3::int, -1)
         ORDER BY j.ordinal LIMIT $4`,
        [q.operationId, q.class ?? null, q.cursor ?? null, q.limit],
      );
      return r.rows;
    },
    /**
     * What did not get where the operation's state says it should: failed deletes of a
     * completed_with_failures operation, items not restored by a rollback_incomplete one, the items
     * a restore (or erasure, or purge) that ended short (completed_with_failures, or cancelled) did
     * not do, and what a halted operation has not done so far. A halt waits for a human, who must
     * see which items and why before choosing resume, abort or rollback; the list was computed only
     * for ended operations, so a halted one showed none.
     */
    unfinished: async (op: Pick<Operation, 'id' | 'state' | 'action'>) => {
      // A restore, an erasure or a purge has no rollback to fall back on: every item it did not
      // restore / erase / purge, whether it ended short (failures, or aborted) or halted. A halted
      // delete lists the items that failed: the ones the operator must look at before resuming (which
      // sends them again, and the rest) or rolling back; what the halt kept from being sent is not news.
      const noRollback = op.action === 'restore' || op.action === 'erase' || op.action === 'purge';
      const where =
        noRollback && ['completed_with_failures', 'cancelled', 'halted'].includes(op.state)
          ? `state <> 'done'`
          : op.state === 'halted'
            ? // Failed, or stopped by the halt before a retry (pending with its error: a resume sends
              // it again). Those were left out, and the operator saw fewer errors than a resume retries.
              `(state = 'failed' OR (state = 'pending' AND last_error IS NOT NULL))`
            : op.state === 'completed_with_failures'
              ? `state = 'failed'`
              : op.state === 'rollback_incomplete'
                ? `executed_seq IS NOT NULL AND state <> 'restored' AND NOT ${ownUnsent('operation_items')}`
                : null;
      if (!where) return undefined;
      const [count, rows] = await Promise.all([
        db.query<{ n: number }>(`SELECT count(*)::int AS n FROM operation_items WHERE operation_id = $1 AND ${where}`, [
          op.id,
        ]),
        db.query<ItemRow>(
          // Those with an error first: the first 100 of a halted restore are otherwise mostly items the
          // halt kept from being sent, and the failures that halted it are the ones to read.
          `SELECT ${ITEM_COLUMNS} FROM operation_items WHERE operation_id = $1 AND ${where}
           ORDER BY last_error IS NULL, seq LIMIT $2`,
          [op.id, UNFINISHED_LISTED],
        ),
      ]);
      return {
        count: count.rows[0]!.n,
        items: rows.rows.map((r) => ({
          resourceId: r.resourceId,
          tenantId: r.tenantId,
          state: r.state,
          lastError: r.lastError,
        })),
      };
    },
    /**
     * What a view of the operation shows, in one round trip: the row, its wave counters and drills
     * (a GET polled at hundreds per second while workers load the database). The ledger is read
     * only where the counters cannot tell (see progressOf) and for an ended operation's unfinished items.
     */
    view: async (id: string, o: { drills: boolean }) => {
      const r = await db.query(
        `SELECT o.*,
           ${COUNTERS_JSON_SQL('o.id')} AS wave_counters,
           -- In every state: a restore drill's hold is a move too, while the operation runs.
           ${MOVES_JSON_SQL('o.id')} AS wave_moves,
           CASE WHEN $2 THEN coalesce((SELECT json_agg(json_build_object('wave', d.wave, 'resourceId', d.resource_id,
                       'outcome', d.outcome, 'detail', d.detail, 'itemState', d.item_state,
                       'startedAt', d.started_at, 'finishedAt', d.finished_at) ORDER BY d.id)
                     FROM operation_drills d WHERE d.operation_id = o.id), '[]') END AS drill_rows,
           ${LAST_PROGRESS_SQL} AS last_progress_at,
           (SELECT coalesce(json_agg(json_build_object('id', a.approver, 'by', a.approver_name, 'role', a.role,
                     'at', a.created_at) ORDER BY a.id), '[]')
              FROM approvals a WHERE a.operation_id = o.id AND a.plan_hash = o.plan_hash) AS approval_rows
         FROM operations o WHERE o.id = $1`,
        [id, o.drills],
      );
      const row = r.rows[0];
      if (!row) throw new NotFoundError('Operation', id);
      // A break-glass plan approved once read only `planned`, as if nobody had looked (a trial).
      const op = { ...fromRow(row), approvals: (row.approval_rows ?? []) as ApprovalRow[] };
      const drills = ((row.drill_rows ?? []) as DrillJson[]).map((d) => ({
        ...d,
        startedAt: new Date(d.startedAt).toISOString(),
        finishedAt: d.finishedAt ? new Date(d.finishedAt).toISOString() : null,
      }));
      const progress = await progressOf(
        db,
        op,
        row.wave_counters as WaveCounter[],
        row.wave_moves as WaveMove[] | null,
      );
      // The list's progress too (progress.ts): the same numbers under the same name in both views.
      const summary = progressFrom(
        row.wave_counters as WaveCounter[],
        (row.wave_moves as WaveMove[] | null) ?? [],
        op.state === 'rolling_back',
      );
      const lastProgressAt = (row.last_progress_at as Date | null) ?? null;
      // Reading the unfinished items scans the operation's ledger (no index by state: it would cost
      // every ledger update its HOT update), up to 1M rows for a halted operation that operators
      // poll. Any recorded outcome moves the counters or the progress time, so the key changes
      // with what the list shows; the ttl bounds what a key cannot see.
      const version = `${op.id}|${op.state}|${op.updatedAt.toISOString()}|${lastProgressAt?.toISOString()}|${JSON.stringify(row.wave_counters)}|${JSON.stringify(row.wave_moves)}`;
      const unfinished = await unfinishedMemo.get(version, () => reads.unfinished(op));
      return { op, progress, unfinished, drills, lastProgressAt, summary };
    },
  };
  return reads;
}

/** A drill as json_build_object gives it: the view's shape (dates as JSON text, normalised to ISO below). */
type DrillJson = DrillView;

export type OperationReads = ReturnType<typeof operationReads>;
/** An approval of the plan as it stands, as the view of one operation shows it (`id`: the approver's token). */
export interface ApprovalRow {
  id: string;
  by: string;
  role: string;
  at: string;
}
export type OperationRow = Operation & { approvals?: ApprovalRow[] };

export async function findByKeyInTx(client: Queryable, key: string): Promise<OperationRow | undefined> {
  const r = await client.query('SELECT * FROM operations WHERE idempotency_key = $1', [key]);
  return r.rows[0] && fromRow(r.rows[0]);
}

export async function loadInTx(client: pg.PoolClient, id: string): Promise<OperationRow> {
  const r = await client.query('SELECT * FROM operations WHERE id = $1', [id]);
  return fromRow(r.rows[0]);
}

/**
 * A velocity cap held the operation's items back until `until` (a chunk was deferred): kept for
 * the views. Never moves the time back (two workers deferred in one window write the same).
 */
export async function recordThrottle(db: Queryable, opId: string, cap: string, until: Date): Promise<void> {
  await db.query(
    `UPDATE operations SET throttled_by = $2, throttled_until = $3
     WHERE id = $1 AND (throttled_until IS NULL OR throttled_until < $3)`,
    [opId, cap, until],
  );
}

/** Maps a raw operations row to the Prisma model shape, so views have one input type. */
export function fromRow(r: Record<string, unknown>): OperationRow {
  return {
    id: r.id,
    action: r.action,
    targetType: r.target_type,
    mode: r.mode,
    reason: r.reason,
    ticket: r.ticket,
    state: r.state,
    requestedBy: r.requested_by,
    requestedByName: r.requested_by_name,
    idempotencyKey: r.idempotency_key,
    requestHash: r.request_hash,
    rollout: r.rollout,
    haltPolicy: r.halt_policy,
    plan: r.plan,
    planHash: r.plan_hash,
    rejection: r.rejection,
    itemCount: r.item_count,
    tenantCount: r.tenant_count,
    requiresBreakGlass: r.requires_break_glass,
    autoStart: r.auto_start,
    currentWave: r.current_wave,
    haltReason: r.halt_reason,
    throttledBy: r.throttled_by,
    throttledUntil: r.throttled_until,
    restoreWait: r.restore_wait,
    lastRefusal: r.last_refusal,
    version: r.version,
    bakeUntil: r.bake_until,
    expiresAt: r.expires_at,
    progressAt: r.progress_at,
    waveDeadline: r.wave_deadline,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    scope: r.scope,
    pausedFrom: r.paused_from,
  } as OperationRow;
}
