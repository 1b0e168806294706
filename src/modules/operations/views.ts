// How an operation row is shown to clients.
import type { OperationRow } from './repository.ts';

export interface Unfinished {
  count: number;
  items: { resourceId: string; tenantId: string; state: string; lastError: string | null }[];
}

export interface DrillView {
  wave: number;
  resourceId: string | null;
  outcome: string;
  detail: string | null;
  itemState: string | null;
  startedAt: string;
  finishedAt: string | null;
}

export function operationView(
  op: OperationRow,
  waveProgress?: { wave: number; counts: Record<string, number> }[],
  unfinished?: Unfinished,
  drills?: DrillView[],
  /** Since when this process has lost the queue (Redis): app.queueDownSince(). */
  queueDownSince: Date | null = null,
) {
  const self = `/v1/operations/${op.id}`;
  return {
    id: op.id,
    kind: op.action,
    action: op.action,
    scope: (op.scope ?? null) as never,
    targetType: op.targetType,
    mode: op.mode,
    reason: op.reason,
    ticket: op.ticket,
    state: op.state,
    requestedBy: op.requestedByName,
    idempotencyKey: op.idempotencyKey,
    itemCount: op.itemCount,
    tenantCount: op.tenantCount,
    requiresBreakGlass: op.requiresBreakGlass,
    planHash: op.planHash,
    plan: (op.plan ?? null) as never,
    rejection: op.rejection ?? null,
    rollout: op.rollout,
    haltPolicy: op.haltPolicy,
    currentWave: op.currentWave,
    haltReason: op.haltReason,
    throttled: throttleOf(op),
    waiting: waitingOf(op, queueDownSince),
    ...(waveProgress ? { waveProgress, counts: countsOf(op, waveProgress) } : {}),
    ...(unfinished ? { unfinished } : {}),
    ...(drills?.length ? { drills } : {}),
    expiresAt: op.expiresAt && ['planned', 'approved'].includes(op.state) ? op.expiresAt.toISOString() : null,
    finishedAt: op.finishedAt?.toISOString() ?? null,
    createdAt: op.createdAt.toISOString(),
    updatedAt: op.updatedAt.toISOString(),
    links: {
      self,
      items: `${self}/items`,
      tenants: `${self}/tenants`,
      report: op.state === 'rejected' ? `${self}/report` : null,
    },
  };
}

type HeldFields = Pick<OperationRow, 'state' | 'throttledBy' | 'throttledUntil'>;

/** The velocity cap holding a running operation's items back right now, if one is. */
export function throttleOf(op: HeldFields, now = Date.now()) {
  if (!op.throttledUntil || !op.throttledBy || op.throttledUntil.getTime() <= now) return null;
  if (op.state !== 'running') return null;
  return { cap: op.throttledBy, until: op.throttledUntil.toISOString() };
}

/** States in which an operation moves only through queued jobs. */
const QUEUED_STATES = new Set(['running', 'baking', 'rolling_back']);

/**
 * Why an operation that should be moving is not: the queue it moves through is unreachable. Nothing
 * is lost meanwhile (the workers re-derive queued work from the ledger once Redis is back), but
 * without this the view read as `running` with nothing moving and no reason.
 */
export function waitingOf(op: Pick<OperationRow, 'state'>, queueDownSince: Date | null) {
  if (!queueDownSince || !QUEUED_STATES.has(op.state)) return null;
  return {
    on: 'redis' as const,
    since: queueDownSince.toISOString(),
    detail:
      'The work queue (Redis) cannot be reached: no new work is picked up until it is back. Nothing is lost; queued work is re-derived from the ledger when it returns.',
  };
}

/** Items by ledger state over every wave (cascaded descendants included); a restore's `done` is restored, an erasure's erased, a purge's purged. */
function countsOf(op: OperationRow, waveProgress: { counts: Record<string, number> }[]) {
  const byState: Record<string, number> = {};
  for (const w of waveProgress) for (const [k, n] of Object.entries(w.counts)) byState[k] = (byState[k] ?? 0) + n;
  const items = Object.values(byState).reduce((a, n) => a + n, 0);
  const done = byState.done ?? 0;
  if (op.action === 'restore') return { items, byState, restored: done, notRestored: items - done };
  if (op.action === 'erase') return { items, byState, erased: done, notErased: items - done };
  if (op.action === 'purge') return { items, byState, purged: done, notPurged: items - done };
  return { items, byState };
}
