// Data access for operations. Writes take the transaction's client; reads use Prisma.
import type pg from 'pg';
import type { Queryable } from '../../lib/sql.ts';
import { NotFoundError } from '../../lib/errors.ts';
import type { PrismaClient } from '../../generated/prisma/client.ts';
import type { Operation } from '../../generated/prisma/client.ts';
import { DEFAULT_RESTORE_APPROVAL, type Budgets, type RestoreApproval } from './policy.ts';

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
}

export async function insertOperation(client: pg.PoolClient, o: NewOperation) {
  await client.query(
    `INSERT INTO operations (id, action, target_type, mode, reason, ticket, state, requested_by, requested_by_name,
       idempotency_key, request_hash, rollout, halt_policy, plan, plan_hash, rejection, item_count, tenant_count,
       requires_break_glass, auto_start, expires_at, scope)
     VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22)`,
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
    ],
  );
}

/** Items listed in an operation's `unfinished` summary; the items route pages through all of them. */
const UNFINISHED_LISTED = 100;

export function operationReads(prisma: PrismaClient) {
  return {
    findById: (id: string) => prisma.operation.findUnique({ where: { id } }),
    /** The operation, or a 404 naming it. */
    get: async (id: string) => {
      const op = await prisma.operation.findUnique({ where: { id } });
      if (!op) throw new NotFoundError('Operation', id);
      return op;
    },
    findByIdempotencyKey: (key: string) => prisma.operation.findUnique({ where: { idempotencyKey: key } }),
    list: (q: { state?: string; cursor?: string; limit: number }) =>
      prisma.operation.findMany({
        where: { ...(q.state ? { state: q.state } : {}), ...(q.cursor ? { id: { lt: q.cursor } } : {}) },
        orderBy: { id: 'desc' },
        take: q.limit,
      }),
    items: (q: { operationId: string; wave?: number; state?: string[]; cursor?: number; limit: number }) =>
      prisma.operationItem.findMany({
        where: {
          operationId: q.operationId,
          ...(q.wave !== undefined ? { wave: q.wave } : {}),
          ...(q.state ? { state: { in: q.state } } : {}),
          ...(q.cursor !== undefined ? { seq: { gt: q.cursor } } : {}),
        },
        orderBy: { seq: 'asc' },
        take: q.limit,
      }),
    rejections: (q: { operationId: string; class?: string; cursor?: number; limit: number }) =>
      prisma.operationRejection.findMany({
        where: {
          operationId: q.operationId,
          ...(q.class ? { class: q.class } : {}),
          ...(q.cursor !== undefined ? { ordinal: { gt: q.cursor } } : {}),
        },
        orderBy: { ordinal: 'asc' },
        take: q.limit,
      }),
    /**
     * What did not get where the operation's end state says it should: failed deletes of a
     * completed_with_failures operation, items not restored by a rollback_incomplete one, and the
     * items a restore (or erasure) that ended short (completed_with_failures, or cancelled) did not do.
     */
    unfinished: async (op: Pick<Operation, 'id' | 'state' | 'action'>) => {
      // A restore, an erasure or a purge that ended short of success (failures, or aborted): every
      // item it did not restore / erase / purge (none has a rollback to fall back on).
      const restoreShort =
        (op.action === 'restore' || op.action === 'erase' || op.action === 'purge') &&
        ['completed_with_failures', 'cancelled'].includes(op.state);
      const where = restoreShort
        ? { operationId: op.id, state: { not: 'done' } }
        : op.state === 'completed_with_failures'
          ? { operationId: op.id, state: 'failed' }
          : op.state === 'rollback_incomplete'
            ? { operationId: op.id, executedSeq: { not: null }, state: { not: 'restored' } }
            : null;
      if (!where) return undefined;
      const [count, rows] = await Promise.all([
        prisma.operationItem.count({ where }),
        prisma.operationItem.findMany({ where, orderBy: { seq: 'asc' }, take: UNFINISHED_LISTED }),
      ]);
      return {
        count,
        items: rows.map((r) => ({
          resourceId: r.resourceId,
          tenantId: r.tenantId,
          state: r.state,
          lastError: r.lastError,
        })),
      };
    },
    drills: async (operationId: string) => {
      const rows = await prisma.operationDrill.findMany({ where: { operationId }, orderBy: { id: 'asc' } });
      return rows.map((r) => ({
        wave: r.wave,
        resourceId: r.resourceId,
        outcome: r.outcome,
        detail: r.detail,
        itemState: r.itemState,
        startedAt: r.startedAt.toISOString(),
        finishedAt: r.finishedAt?.toISOString() ?? null,
      }));
    },
    waveProgress: async (operationId: string) => {
      const rows = await prisma.operationItem.groupBy({
        by: ['wave', 'state'],
        where: { operationId },
        _count: { _all: true },
      });
      const byWave = new Map<number, Record<string, number>>();
      for (const r of rows) {
        const counts = byWave.get(r.wave) ?? {};
        counts[r.state] = r._count._all;
        byWave.set(r.wave, counts);
      }
      return [...byWave.entries()].sort((a, b) => a[0] - b[0]).map(([wave, counts]) => ({ wave, counts }));
    },
  };
}

export type OperationReads = ReturnType<typeof operationReads>;
export type OperationRow = Operation;

export async function getResourceType(client: pg.PoolClient | pg.Pool, name: string) {
  const res = await client.query<{ name: string; id_pattern: string | null; cascade_to: string[] | null }>(
    'SELECT name, id_pattern, cascade_to FROM resource_types WHERE name = $1',
    [name],
  );
  return res.rows[0];
}

export async function getBudgets(client: Queryable) {
  const res = await client.query<{ value: Partial<Budgets> }>(`SELECT value FROM settings WHERE key = 'budgets'`);
  return res.rows[0]?.value;
}

/** Whether a restore needs an approval (policy restoreApproval; default required). */
export async function getRestoreApproval(client: Queryable): Promise<RestoreApproval> {
  const res = await client.query<{ value: { approval?: RestoreApproval } }>(
    `SELECT value FROM settings WHERE key = 'restores'`,
  );
  return res.rows[0]?.value.approval ?? DEFAULT_RESTORE_APPROVAL;
}

export async function getPlanTtlSeconds(client: Queryable): Promise<number | undefined> {
  const res = await client.query<{ value: { planTtlSeconds?: number } }>(
    `SELECT value FROM settings WHERE key = 'plans'`,
  );
  return res.rows[0]?.value.planTtlSeconds;
}

export async function findByKeyInTx(client: pg.PoolClient, key: string): Promise<OperationRow | undefined> {
  const r = await client.query('SELECT * FROM operations WHERE idempotency_key = $1', [key]);
  return r.rows[0] && fromRow(r.rows[0]);
}

export async function loadInTx(client: pg.PoolClient, id: string): Promise<OperationRow> {
  const r = await client.query('SELECT * FROM operations WHERE id = $1', [id]);
  return fromRow(r.rows[0]);
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
