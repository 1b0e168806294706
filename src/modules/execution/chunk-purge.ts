// A purge operation's chunk: the delete chunk's claim, snapshot, write-ahead mark and record, with
// the adapter's `hardDelete` as the destructive call — per resource type, because a purge of a
// tenant or of everything due spans types, each through its own adapter. The snapshot of the
// deleted state is stored like any pre-call snapshot (no snapshot, no call), and it stays: a later
// restore of the resource still finds it and reports `purged` (restores/resolve.ts).
import { AppError } from '../../lib/errors.ts';
import { idempotencyKeyFor, isSkipped, type AdapterItem, type TargetAdapter } from '../adapters/index.ts';
import { applyWithBreaker, arrivalOrder, chunkBreaker } from './breaker.ts';
import type { ChunkDeps } from './chunk.ts';
import { recheckingChanges, refuseChanged } from './changed-since-plan.ts';
import {
  keepLease,
  markWriteAhead,
  outcomesOf,
  releaseUnsent,
  type Executed,
  type RecordLanded,
} from './chunk-execute.ts';
import { takeSnapshots } from './chunk-snapshots.ts';
import { awaitChildren, childrenFirst, childrenWaitMs, orphanRefusal } from './purge-children.ts';
import { chunkProgress } from './chunk-progress.ts';
import type { Fence } from './exclusive.ts';
import type { ClaimedItem, Outcome, Range, Snap } from './ledger.ts';
import type { ChunkJob } from './queues.ts';
import type { OperationRecord } from './state.ts';

/** Snapshot reads may run this many times the destructive concurrency (as for deletes). */
const SNAPSHOT_FANOUT = 4;

export async function executePurge<Tx>(
  deps: ChunkDeps<Tx>,
  op: OperationRecord,
  j: ChunkJob,
  range: Range,
  token: string,
  items: ClaimedItem[],
  fence: Fence,
  /** Records landed outcomes while the chunk's other calls are out (chunk-progress.ts). */
  recordLanded?: RecordLanded,
): Promise<Executed> {
  const { rollout, haltPolicy } = op.lifecycle;
  const typeOf = (i: ClaimedItem) => i.type ?? op.targetType;
  const outcomes: Outcome[] = [];
  const lease = keepLease(deps, j, range, token);
  const since = deps.clock();
  // This chunk's calls wait behind those of chunks that came before it (call-slots.ts).
  const slot = deps.slots.forChunk(j.opId, op.lifecycle.rollout.concurrency);
  let calling = false;
  await deps.watch.track(j.opId);
  try {
    // Changed in the registry since the plan (active again, purged, gone): never sent.
    const { refused, unchanged: fresh } = await refuseChanged(deps, j.opId, items, 'purged');
    outcomes.push(...refused);
    const { held: heldBack, part: unheld } = await refuseHeldBack(deps, j.opId, fresh, typeOf);
    outcomes.push(...heldBack);
    // Children in the chunks before this one go first, whatever runs beside it.
    const family = await awaitChildren(deps, j.opId, j.wave, unheld, items);
    outcomes.push(...family.held, ...family.waiting);
    const unchanged = family.part;
    const snaps: Snap[] = [];
    const adapters = new Map<string, TargetAdapter>();
    for (const type of [...new Set(unchanged.map(typeOf))]) {
      const part = unchanged.filter((i) => typeOf(i) === type);
      const got = await deps.adapters.get(type).catch((err: unknown) => {
        if (err instanceof AppError) return err; // will not fix itself: fail, saying why
        throw err;
      });
      if (got instanceof AppError) {
        const error = `adapter for type ${type} unavailable: ${got.message}`.slice(0, 500);
        outcomes.push(...part.map((i): Outcome => ({ seq: i.seq, state: 'failed', error, permanent: true })));
        continue;
      }
      adapters.set(type, got.adapter);
      const phase = await takeSnapshots(
        {
          operationId: j.opId,
          adapter: got.adapter,
          targetType: type,
          adapters: deps.adapters,
          concurrency: rollout.concurrency * SNAPSHOT_FANOUT,
        },
        part,
      );
      snaps.push(...phase.snaps);
      outcomes.push(...phase.failures);
    }
    const failed = new Set(outcomes.map((o) => o.seq));
    const wanted = items.filter((i) => !failed.has(i.seq));
    const { toRun, marked, notMarked } = await markWriteAhead(deps, j, range, token, snaps, wanted);
    outcomes.push(...notMarked.map((i): Outcome => ({ seq: i.seq, state: 'pending', error: null })));

    calling = true;
    let unsent = notMarked.length + family.waiting.length;
    let requeue = 0;
    const breaker = chunkBreaker(
      haltPolicy,
      op.wave!,
      () => !fence.lost && !lease.lost() && deps.watch.canRun(j.opId, j.wave, since),
    );
    // Failed before any call (an adapter that cannot be built, a refused snapshot read): they
    // count in the wave as failed deletes do, before the deletes go out (breaker.ts).
    breaker.failedBeforeCall(outcomes.filter((o) => o.state === 'failed').length);
    const progress = chunkProgress(deps, recordLanded && ((landed) => recordLanded(landed, marked)));
    const seqOf = new Map(items.map((i) => [i.resourceId, i.seq]));
    const resourceOf = new Map(items.map((i) => [i.seq, i.resourceId]));
    const sentBefore = new Set(items.filter((i) => i.executedSeq !== null).map((i) => i.seq));
    // A child in this chunk that is not purged holds its parent back: the types go children first
    // (resolve.ts insertPurgeItems), and a site was purged after its app's hard delete failed,
    // leaving the app deleted under a purged site, never restorable (a probe).
    const notPurged = new Set(outcomes.filter((o) => o.state === 'failed').map((o) => resourceOf.get(o.seq)!));
    // Children first across the chunk, in rounds (a type with no parentType takes a parent of any
    // type, its own included: the types' order alone sent a site's statement before the hard delete
    // of a folder under it, which then failed: a probe); within a round, type by type.
    // The chunk's parent links, asked once: its rounds and the parents held by a failed child go by them.
    const parents = deps.parentsOf ? await deps.parentsOf(items.map((i) => i.resourceId)) : new Map<string, string>();
    for (const everyType of childrenFirst(toRun, parents))
      for (const [type, adapter] of adapters) {
        const round = everyType.filter((i) => typeOf(i) === type);
        if (round.length === 0) continue;
        const { held, part } = holdParents(round, notPurged, parents);
        outcomes.push(...held);
        if (part.length === 0) continue;
        const { results, arrived } = await applyWithBreaker(
          // An HTTP adapter's calls go out one by one, each after the registry is asked again; the
          // registry's statement acts on them all at once, right after the chunk's own look.
          adapter.kind === 'http' ? recheckingChanges(adapter, deps, j.opId, seqOf, sentBefore) : adapter,
          'hardDelete',
          part.map((i): AdapterItem => ({ operationId: j.opId, resourceId: i.resourceId, tenantId: i.tenantId, type })),
          { idempotencyKey: idempotencyKeyFor, concurrency: rollout.concurrency },
          breaker,
          slot,
          // HTTP adapters' calls land one by one (the registry's all at once: nothing to record early).
          adapter.kind === 'http' ? progress && ((k, r) => progress.arrive(part[k]!, r)) : undefined,
        );
        // Recorded while the calls were out: not recorded again (their rows are no longer claimed).
        const early = (await progress?.settle()) ?? new Set<number>();
        // Failed for good or to be retried; not one never sent (a halt stops its parent's call too).
        results.forEach((r, k) => {
          if (!r.ok && !isSkipped(r) && !r.interrupted) notPurged.add(part[k]!.resourceId);
        });
        const sent = outcomesOf(part, results, arrivalOrder(arrived));
        outcomes.push(...sent.outcomes.filter((o) => !early.has(o.seq)));
        unsent += sent.unsent;
        requeue += sent.requeue;
      }
    return {
      outcomes,
      marked,
      unsent,
      requeue,
      stillRunning: deps.watch.runs(j.opId, j.wave, since),
      ...(family.waiting.length ? { retryInMs: childrenWaitMs(j.waits) } : {}),
    };
  } catch (err) {
    // As for deletes: before any call went out, hand the items back saying why; after, the claim's
    // lease decides who sends them again (with the same keys).
    if (!calling) await releaseUnsent(deps, j, range, token, items, outcomes, err);
    throw err;
  } finally {
    lease.stop();
    deps.watch.untrack(j.opId);
  }
}

/**
 * Splits `items` into those whose resource is the registry parent of one in `notPurged` (failed for
 * good, nothing sent, naming the child; they join `notPurged` for their own parents) and the rest.
 */
function holdParents(
  items: ClaimedItem[],
  notPurged: Set<string>,
  parents: ReadonlyMap<string, string>,
): { held: Outcome[]; part: ClaimedItem[] } {
  if (notPurged.size === 0 || items.length === 0) return { held: [], part: items };
  const childOf = new Map<string, string>();
  for (const child of notPurged) {
    const parent = parents.get(child);
    if (parent !== undefined) childOf.set(parent, child);
  }
  const held: Outcome[] = [];
  const part = items.filter((i) => {
    const child = childOf.get(i.resourceId);
    if (child === undefined) return true;
    notPurged.add(i.resourceId);
    held.push(orphanRefusal(i.seq, child, 'its item failed'));
    return false;
  });
  return { held, part };
}

/**
 * Splits a purge chunk's items into those with a child that holds them back (created, moved in or
 * made active since the plan: changed-since-plan.ts childrenHoldingBack), failed for good with
 * nothing sent, and the rest. Not an item an earlier run may have sent: it is sent again with its key.
 */
async function refuseHeldBack<Tx>(
  deps: Pick<ChunkDeps<Tx>, 'childrenHoldingBack'>,
  opId: string,
  items: ClaimedItem[],
  typeOf: (i: ClaimedItem) => string,
): Promise<{ held: Outcome[]; part: ClaimedItem[] }> {
  const fresh = items.filter((i) => i.executedSeq === null);
  if (!deps.childrenHoldingBack || fresh.length === 0) return { held: [], part: items };
  const why = await deps.childrenHoldingBack(
    opId,
    fresh.map((i) => ({ resourceId: i.resourceId, type: typeOf(i) })),
  );
  if (why.size === 0) return { held: [], part: items };
  const held = fresh
    .filter((i) => why.has(i.resourceId))
    .map((i): Outcome => ({
      seq: i.seq,
      state: 'failed',
      error: `not purged: ${why.get(i.resourceId)}; plan a new one if it is still wanted`.slice(0, 500),
      permanent: true,
      unapplied: true,
    }));
  return { held, part: items.filter((i) => !why.has(i.resourceId) || i.executedSeq !== null) };
}
