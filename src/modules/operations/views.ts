// How an operation row is shown to clients.
import type { OperationRow } from './repository.ts';
import type { Role } from '../auth/roles.ts';
import { approvalsMissing } from './lifecycle.ts';
import type { LifecycleState } from './lifecycle-types.ts';
import type { ProgressView } from './progress.ts';
import { bakeUntilOf, NO_HOLDS, throttleOf, waitingOf, type QueueHolds } from './waiting.ts';
import type { GuardRefusal } from '../execution/engine.ts';

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
  /** What the queue holds it on, as this process sees it: app.queueHolds(state). */
  holds: QueueHolds = NO_HOLDS,
  /** The list's progress of the same operation (progress.ts). */
  summary?: ProgressView,
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
    bakeUntil: bakeUntilOf(op),
    throttled: throttleOf(op),
    waiting: waitingOf(op, holds),
    refused: refusalOf(op),
    ...(summary ? { progress: summary } : {}),
    ...(waveProgress ? { waveProgress, counts: countsOf(op, waveProgress) } : {}),
    ...(unfinished ? { unfinished } : {}),
    ...(drills?.length ? { drills } : {}),
    ...(op.approvals
      ? {
          approvals: op.approvals.map((a) => ({ by: a.by, role: a.role, at: new Date(a.at).toISOString() })),
          approvalsNeeded:
            op.state === 'planned'
              ? approvalsMissing({
                  approvals: op.approvals.map((a) => ({ by: a.id, role: a.role as Role, planHash: op.planHash ?? '' })),
                  planHash: op.planHash ?? '',
                  requiresBreakGlass: op.requiresBreakGlass,
                  kind: op.action as LifecycleState['kind'],
                })
              : null,
        }
      : {}),
    // Kept once it expired: when it did is what an operator asks of an expired plan (a trial saw null).
    expiresAt:
      op.expiresAt && ['planned', 'approved', 'expired'].includes(op.state) ? op.expiresAt.toISOString() : null,
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

/** What engine-store.ts keeps of a GuardRefusal: its time as JSON text. */
type Refusal = Omit<GuardRefusal, 'at'> & { at: string };

/** The last guard refusal (engine-store.ts refused), while the operation is in the state it was refused in. */
export function refusalOf(op: Pick<OperationRow, 'state' | 'lastRefusal'>) {
  const r = op.lastRefusal as Refusal | null;
  if (!r || typeof r !== 'object' || r.state !== op.state) return null;
  return { command: r.command, code: r.code, message: r.message, by: r.by, at: r.at };
}

/** Items by ledger state over every wave (cascaded descendants included); a restore's `done` is restored, an erasure's erased, a purge's purged. */
function countsOf(op: OperationRow, waveProgress: { counts: Record<string, number> }[]) {
  const byState: Record<string, number> = {};
  for (const w of waveProgress) for (const [k, n] of Object.entries(w.counts)) byState[k] = (byState[k] ?? 0) + n;
  const items = Object.values(byState).reduce((a, n) => a + n, 0);
  const done = byState.done ?? 0;
  // Not settled yet: while it runs, part of notRestored (notPurged, notErased) is these, not failures
  // (a trial read "notPurged: 40" mid-run as forty failed purges).
  const pending = (byState.pending ?? 0) + (byState.claimed ?? 0);
  if (op.action === 'restore') return { items, byState, pending, restored: done, notRestored: items - done };
  if (op.action === 'erase') return { items, byState, pending, erased: done, notErased: items - done };
  if (op.action === 'purge') return { items, byState, pending, purged: done, notPurged: items - done };
  return { items, byState, pending };
}
