// The restore drill job (lifecycle-drill.ts decides when): take one item the wave deleted, restore
// it through its adapter from its verified pre-delete snapshot, read it back through the adapter,
// compare the two (canonical JSON), and delete it again, with keys of the drill's own. The answer
// goes to decide() as drill_result; any failure or difference halts the operation.
//
// Whatever happens, the ledger ends up saying where the item is: done when it is deleted again (or
// was never restored), failed when it may be live (restored, and the re-delete not confirmed).
import { canonicalJson } from '../../lib/canonical-json.ts';
import type { Queryable } from '../../lib/sql.ts';
import { drillKeyFor, isSkipped, type AdapterItem, type ItemResult, type TargetAdapter } from '../adapters/index.ts';
import { mayExecute } from '../operations/lifecycle.ts';
import type { SnapshotRead } from '../snapshots/store.ts';
import type { AdapterCache } from './adapters-cache.ts';
import type { DrillItemState, DrillRow, DrillStore } from './drill-store.ts';
import type { Engine } from './engine.ts';
import type { Fence } from './exclusive.ts';
import type { ControlJob } from './queues.ts';
import { deletingThroughOwnAdapters, ownAdapters } from './cascade-own.ts';
import { restoreBatch } from './rollback-batch.ts';
import type { RestoreCandidate } from './rollback-ledger.ts';
import type { OperationRecord } from './state.ts';

const SYSTEM = { name: 'system' };

export interface DrillDeps<Tx = Queryable> {
  load(opId: string): Promise<OperationRecord | undefined>;
  store: DrillStore;
  engine: Pick<Engine<Tx>, 'apply'>;
  adapters: Pick<AdapterCache, 'get'>;
  readSnapshots: (ids: number[]) => Promise<Map<number, SnapshotRead>>;
}

interface Verdict {
  outcome: 'ok' | 'failed';
  detail: string | null;
  itemState: DrillItemState;
  /** Live, with every row the drill restored (DrillFinish.unmark). */
  unmark?: boolean;
}

export async function processDrill<Tx>(
  deps: DrillDeps<Tx>,
  j: Extract<ControlJob, { kind: 'drill' }>,
  fence: Fence,
): Promise<void> {
  const op = await deps.load(j.opId);
  const drill = await deps.store.latest(j.opId);
  if (!op || !drill) return;
  const s = op.lifecycle;
  const waiting =
    s.drill === 'waiting' && (s.state === 'running' || (s.state === 'paused' && s.pausedFrom === 'running'));
  if (drill.outcome !== 'running') {
    // Finished, and its answer did not reach decide() (the job failed after recording it): again.
    if (waiting && (drill.outcome === 'ok' || drill.outcome === 'failed'))
      await report(deps, j.opId, drill, { outcome: drill.outcome, detail: drill.detail }, drill.resourceId);
    return;
  }
  // A drill restores and deletes: it begins only while the operation may execute (not paused,
  // not frozen; a resume runs it again). Once its item is picked it is finished whatever the
  // operation does meanwhile, so that the item is deleted again (the claim holds a rollback off)
  // and the ledger tells the truth.
  if (drill.seq === null && !(waiting && mayExecute(s)))
    return deps.store.abandon(drill.id, `not begun: the operation is ${s.frozen ? 'frozen' : s.state}`);
  const range = op.waves.find((w) => w.wave === drill.wave);
  const candidates = range ? await deps.store.claim(j.opId, drill, range) : [];
  const verdict: Verdict =
    candidates.length > 0
      ? await runDrill(deps, op, drill, candidates, fence)
      : drill.seq === null
        ? {
            outcome: 'failed',
            detail: `no item deleted by wave ${drill.wave + 1} is left to drill`,
            itemState: 'deleted',
          }
        : // A rerun whose item a rollback took over after the hold: where the first run left it is unknown.
          {
            outcome: 'failed',
            detail: `${drill.resourceId} was taken over before the drill finished`,
            itemState: 'unknown',
          };
  await deps.store.finish(j.opId, drill, candidates, verdict);
  const root = candidates.find((c) => c.parentSeq === null);
  await report(deps, j.opId, drill, verdict, root?.resourceId ?? null);
}

async function report<Tx>(
  deps: DrillDeps<Tx>,
  opId: string,
  drill: DrillRow,
  verdict: Pick<Verdict, 'outcome' | 'detail'>,
  resourceId: string | null,
) {
  // The wave's counters as they are now (a drilled item left live is counted failed).
  const after = await deps.load(opId);
  const counted = after?.wave?.wave === drill.wave ? after.wave : undefined;
  await deps.engine.apply(
    opId,
    {
      type: 'drill_result',
      wave: drill.wave,
      outcome: verdict.outcome,
      ...(resourceId ? { resourceId } : {}),
      ...(verdict.detail ? { detail: verdict.detail } : {}),
      stats: {
        done: counted?.done ?? 0,
        failed: counted?.failed ?? 0,
        consecutiveFailures: counted?.consecutiveFailures ?? 0,
        pending: 0,
      },
    },
    SYSTEM,
    { report: true },
  );
}

async function runDrill<Tx>(
  deps: DrillDeps<Tx>,
  op: OperationRecord,
  drill: DrillRow,
  rows: RestoreCandidate[],
  fence: Fence,
): Promise<Verdict> {
  const key = (item: Pick<AdapterItem, 'operationId' | 'resourceId'>, action: Parameters<typeof drillKeyFor>[1]) =>
    drillKeyFor(item, action, drill.id);
  const typeOf = (r: RestoreCandidate) => r.type ?? op.targetType;
  const item = (r: RestoreCandidate): AdapterItem => ({
    operationId: op.id,
    resourceId: r.resourceId,
    tenantId: r.tenantId,
    type: typeOf(r),
  });
  const root = rows.find((r) => r.parentSeq === null)!;
  const concurrency = op.lifecycle.rollout.concurrency;

  // 1. Restore, from snapshots verified on read (a corrupt or missing one restores nothing).
  const restored = await restoreBatch(
    {
      opId: op.id,
      targetType: op.targetType,
      concurrency,
      adapters: deps.adapters,
      readSnapshots: deps.readSnapshots,
      shouldContinue: () => !fence.lost,
      idempotencyKey: key,
    },
    rows,
  );
  const failedRestore = restored.find((r) => !r.ok);
  // Sent and not refused for good: the restore may have applied, so the item must be deleted again.
  const maybeLive = restored.some((r) => r.ok || (!r.permanent && !r.skipped));
  let problem: string | null = failedRestore
    ? `restore of ${rows.find((r) => r.seq === failedRestore.seq)!.resourceId} failed: ${failedRestore.error}`
    : null;

  // 2. Read back and compare with the pre-delete snapshot.
  if (!problem) problem = await compare(deps, rows, typeOf, item, concurrency);
  if (!maybeLive) return { outcome: 'failed', detail: problem, itemState: 'deleted' };

  // 3. Delete again, as the operation did: its descendants as they went, those of the root's system
  // with it (one statement, or the downstream's own cascade), the others through their own
  // adapters first (cascade-own.ts).
  const adapter = await adapterOf(deps, op.targetType);
  const kids = rows.filter((r) => r.parentSeq === root.seq);
  const target = {
    ...item(root),
    ...(kids.length ? { descendants: kids.map((r) => ({ ...item(r), depth: r.depth })) } : {}),
  };
  const deleter = adapter instanceof Error ? adapter : await throughOwnAdapters(deps, adapter, target);
  const [del]: ItemResult[] =
    deleter instanceof Error
      ? [{ ok: false, permanent: false, error: deleter.message }]
      : await deleter.apply('softDelete', [target], {
          idempotencyKey: key,
          // The re-delete is sent even after a halt: it puts the item back where the ledger says.
          shouldContinue: () => !fence.lost,
          concurrency: 1,
        });
  if (del!.ok) return { outcome: problem ? 'failed' : 'ok', detail: problem, itemState: 'deleted' };
  const why = isSkipped(del!) ? 'not sent (the run lost its lock)' : del!.error;
  const rootBack = restored.find((r) => r.seq === root.seq)?.ok === true;
  // Live only when the re-delete certainly changed nothing: a 404 after a try that timed out says
  // "already gone", and that try may be what deleted it.
  const live = rootBack && !isSkipped(del!) && del!.permanent && del!.unapplied === true;
  return {
    outcome: 'failed',
    detail: `${problem ? `${problem}; ` : ''}the re-delete of ${root.resourceId} failed: ${why}`,
    itemState: live ? 'live' : 'unknown',
    unmark: live && restored.every((r) => r.ok),
  };
}

/**
 * The root's adapter, sending the target's descendants of other adapters through theirs
 * (cascade-own.ts); an Error (the re-delete fails, retryable) when their types cannot be looked up now.
 */
const throughOwnAdapters = (
  deps: Pick<DrillDeps, 'adapters'>,
  adapter: TargetAdapter,
  target: AdapterItem,
): Promise<TargetAdapter | Error> =>
  ownAdapters(
    deps.adapters,
    adapter,
    (target.descendants ?? []).map((d) => d.type),
  ).then(
    (own) => deletingThroughOwnAdapters(adapter, own),
    (err: unknown) => new Error(`adapter lookup failed: ${(err as Error).message}`),
  );

const adapterOf = (deps: Pick<DrillDeps, 'adapters'>, type: string): Promise<TargetAdapter | Error> =>
  deps.adapters.get(type).then(
    (a) => a.adapter,
    (err: unknown) => new Error(`adapter for type ${type} unavailable: ${(err as Error).message}`),
  );

/** null when every drilled resource reads back as its pre-delete snapshot; else what differs. */
async function compare(
  deps: Pick<DrillDeps, 'adapters' | 'readSnapshots'>,
  rows: RestoreCandidate[],
  typeOf: (r: RestoreCandidate) => string,
  item: (r: RestoreCandidate) => AdapterItem,
  concurrency: number,
): Promise<string | null> {
  const reads = await deps.readSnapshots(rows.flatMap((r) => (r.snapshotId === null ? [] : [r.snapshotId])));
  for (const type of [...new Set(rows.map(typeOf))]) {
    const part = rows.filter((r) => typeOf(r) === type);
    const adapter = await adapterOf(deps, type);
    if (adapter instanceof Error) return adapter.message;
    const now = await adapter.snapshot(part.map(item), { concurrency });
    for (const [k, r] of part.entries()) {
      const before = reads.get(r.snapshotId!);
      const after = now[k]!;
      if (!before?.ok) return `${r.resourceId}: pre-delete snapshot unreadable`;
      if (!after.ok) return `${r.resourceId} could not be read back: ${isSkipped(after) ? 'halted' : after.error}`;
      const differs = differingFields(before.data, after.data, adapter.volatileFields ?? []);
      if (differs !== null)
        return `${r.resourceId} read back differs from its pre-delete snapshot${differs.length ? ` (${differs.join(', ')})` : ''}`;
    }
  }
  return null;
}

/** null when equal (canonical JSON, volatile fields left out); else the top-level fields that differ. */
export function differingFields(before: unknown, after: unknown, volatile: readonly string[]): string[] | null {
  const strip = (v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).filter(([k]) => !volatile.includes(k)))
      : v;
  const a = strip(before);
  const b = strip(after);
  if (canonicalJson(a) === canonicalJson(b)) return null;
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return [];
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
  const rec = (o: object, k: string) => (o as Record<string, unknown>)[k];
  return keys.filter((k) => canonicalJson(rec(a, k)) !== canonicalJson(rec(b, k))).slice(0, 10);
}
