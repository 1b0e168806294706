// The part of a chunk job that touches the owning system: build the adapter, snapshot what has no
// snapshot yet (and the descendants a cascade takes), mark write-ahead (only while the operation
// still runs the wave), then send the destructive calls through the in-flight breaker while the
// claim, the fence and the halt watch all say go. Returns the outcomes for the caller to record;
// never records anything itself. A restore operation's chunk is chunk-restore.ts.
import { AppError } from '../../lib/errors.ts';
import {
  idempotencyKeyFor,
  isSkipped,
  type AdapterItem,
  type ItemResult,
  type TargetAdapter,
} from '../adapters/index.ts';
import { deletingThroughOwnAdapters, ownAdapters } from './cascade-own.ts';
import { takeSnapshots } from './chunk-snapshots.ts';
import { chunkProgress, landedItemOutcome } from './chunk-progress.ts';
import { applyWithBreaker, arrivalOrder, chunkBreaker, type BreakerResult } from './breaker.ts';
import { executePurge } from './chunk-purge.ts';
import { executeRestore } from './chunk-restore.ts';
import type { ChunkDeps } from './chunk.ts';
import { protectionRechecked, refuseNewChildren, refuseProtected, unguarded } from './chunk-guards.ts';
import type { Fence } from './exclusive.ts';
import type { ClaimedItem, Outcome, Range, Snap } from './ledger.ts';
import type { ChunkJob } from './queues.ts';
import type { OperationRecord } from './state.ts';

/** Snapshot reads may run this many times the destructive concurrency. */
const SNAPSHOT_FANOUT = 4;

/**
 * Records outcomes that landed while the chunk's other calls are out (chunk-progress.ts), with the
 * items this run marked so far (`marked` of Executed: a failure that changed nothing loses its mark).
 */
export type RecordLanded = (outcomes: Outcome[], marked: ReadonlySet<number>) => Promise<void>;

export interface Executed {
  outcomes: Outcome[];
  /**
   * Items this run marked write-ahead that had no mark before: their mark is cleared if they were
   * never sent, or failed without any try changing anything (Outcome.unapplied).
   */
  marked: Set<number>;
  /** Items never sent (velocity refunds them). */
  unsent: number;
  /** Items handed back with an unknown outcome, to be sent again. */
  requeue: number;
  stillRunning: boolean;
  /** Handed back to wait for other chunks (a purge's parent for its children): run again after this long. */
  retryInMs?: number;
}

export async function execute<Tx>(
  deps: ChunkDeps<Tx>,
  op: OperationRecord,
  j: ChunkJob,
  range: Range,
  token: string,
  items: ClaimedItem[],
  fence: Fence,
  /** The type's adapter when the caller already looked it up for this chunk. */
  found?: { adapter: TargetAdapter },
  /** Records landed outcomes while the chunk's other calls are out (chunk-progress.ts). */
  recordLanded?: RecordLanded,
): Promise<Executed> {
  const { rollout, haltPolicy } = op.lifecycle;
  const asAdapterItem = (i: ClaimedItem): AdapterItem => ({
    operationId: j.opId,
    resourceId: i.resourceId,
    tenantId: i.tenantId,
    type: op.targetType,
    ...(i.descendants.length
      ? {
          descendants: i.descendants.map((d) => ({
            operationId: j.opId,
            resourceId: d.resourceId,
            tenantId: d.tenantId,
            type: d.type,
            depth: d.depth,
          })),
        }
      : {}),
  });
  if (op.action === 'restore') return executeRestore(deps, op, j, range, token, items, fence, recordLanded);
  if (op.action === 'purge') return executePurge(deps, op, j, range, token, items, fence, recordLanded);
  const outcomes: Outcome[] = [];
  const lease = keepLease(deps, j, range, token);
  const since = deps.clock();
  // This chunk's calls wait behind those of chunks that came before it (call-slots.ts).
  const slot = deps.slots.forChunk(j.opId, op.lifecycle.rollout.concurrency);
  let calling = false;
  await deps.watch.track(j.opId);
  try {
    const got =
      found ??
      (await deps.adapters.get(op.targetType).catch((err: unknown) => {
        // A type whose adapter cannot be built (a stored config that no longer validates, no signing
        // secret) will not fix itself by retrying: its items fail now, saying why, and the halt
        // policy takes it from there. Anything else is retried (below).
        if (err instanceof AppError) return err;
        throw err;
      }));
    if (got instanceof AppError) {
      const error = `adapter for type ${op.targetType} unavailable: ${got.message}`.slice(0, 500);
      outcomes.push(...items.map((i): Outcome => ({ seq: i.seq, state: 'failed', error, permanent: true })));
      return {
        outcomes,
        marked: new Set(),
        unsent: 0,
        requeue: 0,
        stillRunning: deps.watch.runs(j.opId, j.wave, since),
      };
    }
    const { adapter } = got;
    // Descendants the root's adapter cannot change itself (an HTTP app under a registry site) are
    // deleted through their own type's adapters, before their parent (cascade-own.ts).
    const own = await ownAdapters(
      deps.adapters,
      adapter,
      items.flatMap((i) => i.descendants.map((d) => d.type)),
    );
    // Snapshot first, for every item (and descendant) not yet snapshotted: no snapshot, no call;
    // then the write-ahead mark. A function of its own so that nothing holds the snapshots'
    // contents (a chunk's worth of resource records) once they are stored, while the calls go out.
    const prepare = async (part: ClaimedItem[]) => {
      // Protection is asked while the snapshots are read (not before: that put a registry query in
      // front of every part's first call); a refused item is neither marked nor sent.
      const [{ refused: protectedNow, first }, grown, { snaps: taken, failures: unsnapped }] = await Promise.all([
        refuseProtected(deps, op, part, adapter, own),
        refuseNewChildren(deps, op, part),
        takeSnapshots(
          {
            operationId: j.opId,
            adapter,
            targetType: op.targetType,
            adapters: deps.adapters,
            concurrency: rollout.concurrency * SNAPSHOT_FANOUT,
          },
          part,
        ),
      ]);
      const guarded = new Set(protectedNow.map((f) => f.seq));
      const refused = [...protectedNow, ...grown.filter((g) => !guarded.has(g.seq))];
      const refusedSeqs = new Set(refused.map((f) => f.seq));
      const failures = [...refused, ...unsnapped.filter((f) => !refusedSeqs.has(f.seq))];
      const out = new Set(failures.map((f) => f.seq));
      const snaps = taken.filter((x) => !out.has(x.parentSeq ?? x.seq));
      const wanted = part.filter((i) => !out.has(i.seq));
      return { failures, first, ...(await markWriteAhead(deps, j, range, token, snaps, wanted)) };
    };
    const breaker = chunkBreaker(
      haltPolicy,
      op.wave!,
      () => !fence.lost && !lease.lost() && deps.watch.canRun(j.opId, j.wave, since),
    );
    // Filled before each part's calls go out, so a landed outcome is recorded with its item's mark.
    const marked = new Set<number>();
    // Only calls that land one by one (HTTP): the registry adapter's land all at once, at the end.
    const progress = chunkProgress(
      deps,
      adapter.kind === 'http' && recordLanded ? (landed) => recordLanded(landed, marked) : undefined,
    );
    const sending: Promise<Sent>[] = [];
    let notMarkedCount = 0;
    // With calls of the operation out here already (other chunks), they keep the slots busy while
    // this one prepares: only a chunk that starts with none (a wave's start) sends a lead.
    const idle = deps.slots.inFlight(j.opId).active === 0;
    for (const part of idle ? leadAndRest(items) : [items]) {
      // Tripped already (the lead's outcomes, its failed reads, a halt): the rest is not read or marked.
      if (sending.length > 0 && !breaker.shouldContinue()) {
        outcomes.push(...part.map((i): Outcome => ({ seq: i.seq, state: 'pending', error: null })));
        notMarkedCount += part.length;
        continue;
      }
      let prepared;
      try {
        prepared = await prepare(part);
      } catch (err) {
        // The lead's calls may be out: send no more of them and let them land before the chunk
        // fails (the claim's lease then decides who sends what is left, with the same keys).
        breaker.trip();
        await Promise.allSettled(sending);
        throw err;
      }
      const { failures, toRun, notMarked } = prepared;
      outcomes.push(...failures);
      progress?.refused(failures);
      breaker.failedBeforeCall(failures.length);
      // Not marked: the operation stopped running this wave before the mark. Nothing is sent.
      outcomes.push(...notMarked.map((i): Outcome => ({ seq: i.seq, state: 'pending', error: null })));
      notMarkedCount += notMarked.length;
      prepared.marked.forEach((s) => marked.add(s));
      calling = true;
      const sendItems = toRun.map(asAdapterItem);
      const call = applyWithBreaker(
        // Under an HTTP parent, its descendants' calls go inside the parent's slot (taken per item
        // below): each taking one of its own would wait on the slots its parents hold.
        protectionRechecked(
          deps,
          op,
          deletingThroughOwnAdapters(adapter, own, adapter.kind === 'http' ? undefined : slot),
          sendItems,
          unguarded(adapter, own),
          prepared.first,
        ),
        op.mode === 'hard' ? 'hardDelete' : 'softDelete',
        sendItems,
        {
          idempotencyKey: idempotencyKeyFor,
          concurrency: rollout.concurrency,
          guard: { approvedTenants: op.approvedTenants },
        },
        breaker,
        slot,
        progress && ((k, r) => progress.arrive(toRun[k]!, r)),
      ).then((r) => ({ items: toRun, ...r }));
      // A part that throws stops the other from sending; each is awaited below (or above).
      call.catch(() => breaker.trip());
      sending.push(call);
    }
    // Every part has landed before the chunk returns or fails: nothing is sent after it.
    const settled = await Promise.allSettled(sending);
    // Recorded while the calls were out: not recorded again (their rows are no longer claimed).
    const early = (await progress?.settle()) ?? new Set<number>();
    const thrown = settled.find((x) => x.status === 'rejected');
    if (thrown) throw thrown.reason;
    const sent = outcomesOf(...mergeSent(settled.map((x) => (x as PromiseFulfilledResult<Sent>).value)));
    outcomes.push(...sent.outcomes);
    // What was recorded while the calls were out (landed, or refused before them) is left out.
    const left = early.size ? outcomes.filter((o) => !early.has(o.seq)) : outcomes;
    const unsent = notMarkedCount + sent.unsent;
    const requeue = sent.requeue;
    const stillRunning = deps.watch.runs(j.opId, j.wave, since);
    return { outcomes: left, marked, unsent, requeue, stillRunning };
  } catch (err) {
    if (!calling) await releaseUnsent(deps, j, range, token, items, outcomes, err);
    throw err;
  } finally {
    lease.stop();
    deps.watch.untrack(j.opId);
  }
}

/**
 * A chunk's first LEAD items are prepared and sent on their own, and the rest are prepared while
 * their calls go out: at a wave's start every chunk of a process prepares at once and no call is
 * out, and the first delete came only after the chunks' whole snapshot and mark phases (~170 ms
 * for 4 chunks of 500 items over HTTP, in the efficiency bench's timeline). A small chunk is one
 * part (one snapshot round and one mark for it).
 */
export const LEAD = 100;
export function leadAndRest<T>(items: T[]): T[][] {
  return items.length > 2 * LEAD ? [items.slice(0, LEAD), items.slice(LEAD)] : [items];
}

type Sent = BreakerResult & { items: ClaimedItem[] };

/** The parts' calls as one list, in the order their outcomes arrived across the parts. */
function mergeSent(parts: Sent[]): [ClaimedItem[], ItemResult[], number[]] {
  return [
    parts.flatMap((p) => p.items),
    parts.flatMap((p) => p.results),
    arrivalOrder(parts.flatMap((p) => p.arrived)),
  ];
}

/**
 * The outcomes of the calls, in the order they arrived: done, failed, never sent (`unsent`: pending,
 * no attempt), or stopped between retries (`requeue`: pending, sent again later with the same key).
 */
export function outcomesOf(
  items: { seq: number; descendants?: { seq: number }[] }[],
  results: ItemResult[],
  order: number[],
): { outcomes: Outcome[]; unsent: number; requeue: number } {
  const outcomes: Outcome[] = [];
  let unsent = 0;
  let requeue = 0;
  for (const k of order) {
    const { seq } = items[k]!;
    const r = results[k]!;
    // A cascade through several adapters: a descendant may be deleted while its parent is not.
    const landed = landedItemOutcome(items[k]!, r);
    if (landed) outcomes.push(landed);
    else if (isSkipped(r)) {
      unsent++;
      outcomes.push({ seq, state: 'pending', error: null });
    } else if (!r.ok && r.interrupted) {
      requeue++;
      const own = r.ownUnsent ? { ownUnsent: true as const } : {};
      outcomes.push({ seq, state: 'pending', error: r.error.slice(0, 500), sent: true, ...own });
    }
  }
  return { outcomes, unsent, requeue };
}

export interface Lease {
  /** The claim may no longer be ours: send nothing more. */
  lost(): boolean;
  stop(): void;
}

/** Renews the chunk's claim at a third of the lease while it runs. */
export function keepLease<Tx>(
  deps: Pick<ChunkDeps<Tx>, 'ledger' | 'leaseMs'>,
  j: ChunkJob,
  range: Range,
  token: string,
): Lease {
  let lost = false;
  const renew = setInterval(
    () => {
      deps.ledger.extend(j.opId, range, token).then(
        (held) => {
          if (held === 0) lost = true;
        },
        () => {
          lost = true; // cannot prove the claim is still ours: stop sending
        },
      );
    },
    Math.max(100, Math.floor(deps.leaseMs / 3)),
  );
  return { lost: () => lost, stop: () => clearInterval(renew) };
}

/**
 * Before any call went out (adapter config, snapshot store, a lost connection): hands the items
 * without an outcome back with the reason, so lastError says why; their attempts still count.
 * Once calls may have gone out, nothing is released: the claim's lease decides who retries them.
 */
export async function releaseUnsent<Tx>(
  deps: Pick<ChunkDeps<Tx>, 'ledger'>,
  j: ChunkJob,
  range: Range,
  token: string,
  items: ClaimedItem[],
  outcomes: Outcome[],
  err: unknown,
): Promise<void> {
  const done = new Set(outcomes.map((o) => o.seq));
  const reason = `${(err as Error).message ?? String(err)}`.slice(0, 500);
  await deps.ledger
    .release(
      j.opId,
      range,
      token,
      items.filter((i) => !done.has(i.seq)),
      reason,
      false,
    )
    .catch(() => undefined);
}

/**
 * Sets the write-ahead mark (only while the operation runs this wave) with the snapshots: `toRun`
 * may be sent, `marked` were marked now (not on an earlier attempt), `notMarked` were not (the
 * operation stopped running the wave first: nothing is sent for them).
 */
export async function markWriteAhead<Tx>(
  deps: Pick<ChunkDeps<Tx>, 'ledger'>,
  j: ChunkJob,
  range: Range,
  token: string,
  snaps: Snap[],
  wanted: ClaimedItem[],
): Promise<{ toRun: ClaimedItem[]; marked: Set<number>; notMarked: ClaimedItem[] }> {
  const ready = wanted.length
    ? await deps.ledger.prepare(
        j.opId,
        j.wave,
        range,
        token,
        snaps,
        wanted.map((i) => i.seq),
      )
    : new Set<number>();
  const toRun = wanted.filter((i) => ready.has(i.seq));
  return {
    toRun,
    marked: new Set(toRun.filter((i) => i.executedSeq === null).map((i) => i.seq)),
    notMarked: wanted.filter((i) => !ready.has(i.seq)),
  };
}
