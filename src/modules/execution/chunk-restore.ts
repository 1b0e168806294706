// A restore operation's chunk: the same claim, snapshot, write-ahead mark and record as a delete's,
// with the adapter's `restore` as the destructive call. Before it, what each resource looks like
// now (its deleted state) is stored like any pre-call snapshot (promise 4: what a restore overwrites
// is kept too); then each item is restored to the snapshot it was planned with (a delete's, read and
// verified right before the call: one that fails verification is never restored — the item fails
// snapshot_corrupt or erased), with the descendants its cascade took (rollback-batch.ts: in the
// same statement for the registry, one call each after their parent for HTTP).
//
// Every resource has its own outcome in the ledger (a descendant whose snapshot fails verification
// fails while its parent comes back), but a submitted item counts for its wave as a success only
// when it and every descendant came back: the halt policy and the operation's end state (completed
// vs completed_with_failures) never read as success while a child is still deleted.
import { AppError } from '../../lib/errors.ts';
import type { SnapshotRead } from '../snapshots/store.ts';
import type { ChunkDeps } from './chunk.ts';
import { refuseChanged } from './changed-since-plan.ts';
import { keepLease, markWriteAhead, releaseUnsent, type Executed, type RecordLanded } from './chunk-execute.ts';
import { takeSnapshots } from './chunk-snapshots.ts';
import type { Fence } from './exclusive.ts';
import type { ClaimedItem, DescendantOutcome, Outcome, Range, Snap } from './ledger.ts';
import type { ChunkJob } from './queues.ts';
import { FIRST_BATCH, nextBatchSize, PROGRESS_EVERY_MS } from './chunk-progress.ts';
import { restoreBatch } from './rollback-batch.ts';
import type { RestoreCandidate, RestoreResult } from './rollback-ledger.ts';
import type { OperationRecord } from './state.ts';
import { TERMINAL_STATES } from '../operations/lifecycle-types.ts';

/** Snapshot reads may run this many times the destructive concurrency (as for deletes). */
const SNAPSHOT_FANOUT = 4;
/** Descendants named in a parent's error; the items route lists every one. */
const NAMED_DESCENDANTS = 3;

export interface RestoreReader {
  /** Reads and verifies snapshots (the snapshot store's get). */
  readSnapshots(ids: number[]): Promise<Map<number, SnapshotRead>>;
}

export async function executeRestore<Tx>(
  deps: ChunkDeps<Tx>,
  op: OperationRecord,
  j: ChunkJob,
  range: Range,
  token: string,
  items: ClaimedItem[],
  fence: Fence,
  /** Records landed outcomes while the chunk's other restores are to come (chunk-progress.ts). */
  recordLanded?: RecordLanded,
): Promise<Executed> {
  if (!deps.readSnapshots) throw new Error('a restore chunk needs the snapshot store (readSnapshots)');
  const readSnapshots = deps.readSnapshots;
  const { rollout } = op.lifecycle;
  const typeOf = (i: ClaimedItem) => i.type ?? op.targetType;
  const outcomes: Outcome[] = [];
  const lease = keepLease(deps, j, range, token);
  const since = deps.clock();
  let calling = false;
  let ended = false;
  await deps.watch.track(j.opId);
  try {
    // Changed in the registry since the plan (active again, purged, gone): never sent.
    const { refused, unchanged } = await refuseChanged(deps, j.opId, items, 'restored');
    outcomes.push(...refused);
    // What each resource looks like before the restore overwrites it, through its own type's adapter.
    const snaps: Snap[] = [];
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
    let unsent = notMarked.length;
    let requeue = 0;
    // In parts sized to take about PROGRESS_EVERY_MS each (a part is recorded when its last restore
    // lands, through restoreBatch's cascade order): against a slow downstream the restores of a
    // 500-item chunk were invisible until it ended. A part's outcomes are recorded before the next
    // part is sent when PROGRESS_EVERY_MS has passed since the last record; its other items stay claimed.
    const every = deps.progressEveryMs ?? PROGRESS_EVERY_MS;
    let lastRecord = deps.clock();
    let size = FIRST_BATCH;
    for (let at = 0; at < toRun.length;) {
      let part = toRun.slice(at, at + size);
      // Asked again before each part after the first (the chunk asked before its snapshots): a
      // resource brought back while the parts before went out got this restore's snapshot written
      // over it, as a purge's hard delete took one (chunk-purge.ts asks before every call).
      if (at > 0) {
        const again = await refuseChanged(deps, j.opId, part, 'restored');
        outcomes.push(...again.refused);
        at += part.length - again.unchanged.length;
        part = again.unchanged;
        if (part.length === 0) continue;
      }
      at += part.length;
      const t0 = performance.now();
      const results = new Map(
        (
          await restoreBatch(
            {
              opId: j.opId,
              targetType: op.targetType,
              concurrency: rollout.concurrency,
              adapters: deps.adapters,
              readSnapshots,
              ...(deps.parentsOf ? { parentsOf: (ids: string[]) => deps.parentsOf!(ids) } : {}),
              shouldContinue: () => !fence.lost && !lease.lost() && deps.watch.canRun(j.opId, j.wave, since),
            },
            part.flatMap(candidates),
          )
        ).map((r) => [r.seq, r]),
      );
      size = nextBatchSize(size, part.length, performance.now() - t0);
      // Stopped with restores of unknown or partial outcome: kept to be sent again while the operation
      // may still run (a pause), recorded as far as they got once it never will (an abort).
      if (!ended && [...results.values()].some((r) => r.skipped || r.interrupted)) ended = await hasEnded(deps, j.opId);
      const got = part.map((item) => outcomeOf(item, results, ended));
      for (const o of got)
        if (o.state === 'pending') {
          if (o.sent) requeue++;
          else unsent++;
        }
      const landed = got.filter((o) => o.state !== 'pending');
      let early = false;
      if (recordLanded && landed.length && at < toRun.length && deps.clock() - lastRecord >= every) {
        // Not recorded now (a lost connection): the chunk's last record has them, still claimed.
        early = await recordLanded(landed, marked).then(
          () => true,
          () => false,
        );
        lastRecord = deps.clock();
      }
      outcomes.push(...(early ? got.filter((o) => o.state === 'pending') : got));
    }
    return { outcomes, marked, unsent, requeue, stillRunning: deps.watch.runs(j.opId, j.wave, since) };
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
 * The item and its descendants as restoreBatch takes them. restoreBatch goes newest execution
 * first (a rollback's order); a restore goes in ledger order (newest deletion first, as planned),
 * so the rank it is given is the negated seq.
 */
function candidates(i: ClaimedItem): RestoreCandidate[] {
  const root: RestoreCandidate = {
    seq: i.seq,
    resourceId: i.resourceId,
    tenantId: i.tenantId,
    state: 'claimed',
    executedSeq: -i.seq,
    parentSeq: null,
    depth: 0,
    type: i.type,
    snapshotId: i.sourceSnapshotId,
  };
  return [
    root,
    ...i.descendants.map((d): RestoreCandidate => ({
      seq: d.seq,
      resourceId: d.resourceId,
      tenantId: d.tenantId,
      state: 'claimed',
      executedSeq: -d.seq,
      parentSeq: i.seq,
      depth: d.depth,
      type: d.type,
      snapshotId: d.sourceSnapshotId,
    })),
  ];
}

/**
 * Never sent → handed back unsent. Sent with an unknown outcome (stopped between retries, or the
 * parent came back but a descendant was not sent yet) → handed back to be sent again with the same
 * keys, which the owning system applies once — unless the operation has `ended` (aborted): nothing
 * sends them again, so each resource is recorded as far as it got (a trial's aborted restore left a
 * site that was back recorded pending, and every later restore of its apps refused parent_deleted).
 * Otherwise each resource's outcome, and the item a failure for its wave unless everything came back.
 */
function outcomeOf(item: ClaimedItem, results: Map<number, RestoreResult>, ended: boolean): Outcome {
  const own = results.get(item.seq)!;
  const kids = item.descendants.map((d) => ({ d, r: results.get(d.seq)! }));
  const pendingKids = (): DescendantOutcome[] => kids.map(({ d }) => ({ seq: d.seq, state: 'pending', error: null }));
  if (own.skipped) return { seq: item.seq, state: 'pending', error: null, descendants: pendingKids() };
  const unknown = own.interrupted || (own.ok && kids.some(({ r }) => r.skipped || r.interrupted));
  // Handed back whole (the run that sends it again sends the item and every descendant, under the
  // same keys), with the descendants that came back recorded so: if the operation is aborted before
  // that run, they say how far it got (settle-aborted.ts), where the item alone said nothing of it.
  if (unknown && !ended)
    return {
      seq: item.seq,
      state: 'pending',
      error: own.error ?? PARENT_BACK,
      sent: true,
      descendants: kids.map(({ d, r }) =>
        r.ok ? { seq: d.seq, state: 'done', error: null } : { seq: d.seq, state: 'pending', error: null },
      ),
    };
  const descendants = kids.map(({ d, r }) => settled(d.seq, r));
  if (own.interrupted) return { ...settled(item.seq, own), descendants };
  if (!own.ok)
    return {
      seq: item.seq,
      state: 'failed',
      error: own.error,
      permanent: own.permanent,
      // Refused, or never sent (a snapshot that failed verification): its mark goes if this run set it,
      // and its descendants', which were not sent without it (rollback-batch.ts).
      ...(own.permanent && own.unapplied ? { unapplied: true } : {}),
      descendants,
    };
  const missing = kids.filter(({ r }) => !r.ok);
  if (missing.length === 0) return { seq: item.seq, state: 'done', error: null, descendants };
  const named = missing
    .slice(0, NAMED_DESCENDANTS)
    .map(({ d, r }) => `${d.resourceId} (${descendants.find((x) => x.seq === d.seq)?.error ?? r.error})`)
    .join('; ');
  const more = missing.length > NAMED_DESCENDANTS ? ` and ${missing.length - NAMED_DESCENDANTS} more` : '';
  return {
    seq: item.seq,
    state: 'done',
    verdict: 'failed',
    error: `restored, but ${missing.length} of the ${kids.length} it took were not: ${named}${more}`.slice(0, 500),
    descendants,
  };
}

/**
 * The error an item handed back keeps when it came back itself and a descendant was not sent yet
 * (the descendants that came back are recorded done): what an abort before its next run records it by.
 */
export const PARENT_BACK = 'restored; a descendant was not sent yet';

/** A restore of an aborted operation that was never sent: nothing sends it now. */
export const ABORTED_UNSENT = 'restore not sent: the operation was aborted first; nothing was applied';

/**
 * A descendant's own outcome; once the operation ended, also one never sent (it fails, unapplied:
 * it loses the mark its parent's run set) or sent with no answer (it fails keeping its mark: it may
 * be back, and a purge takes it for restore_uncertain until a restore settles it).
 */
function settled(seq: number, r: RestoreResult): DescendantOutcome {
  if (r.ok) return { seq, state: 'done', error: null };
  if (r.skipped) return { seq, state: 'failed', error: ABORTED_UNSENT, permanent: true, unapplied: true };
  if (r.interrupted) return { seq, state: 'failed', error: outcomeUnknown('restore', r.error), permanent: true };
  return { seq, state: 'failed', error: r.error, permanent: r.permanent };
}

/** The error of an item whose call went out and whose operation was aborted before its answer. */
export const outcomeUnknown = (
  action: string,
  error: string | null,
  ended = 'the operation was aborted',
  /** false: its run stopped holding it, and it may or may not have sent it. */
  sent = true,
) =>
  `outcome unknown: its ${action} ${sent ? 'was' : 'may have been'} sent and ${ended} before an answer${error ? ` (${error})` : ''}; it may have been applied: ${action === 'restore' ? 'restore it again to settle it' : 'look at the resource before acting on it'}`.slice(
    0,
    500,
  );

/** The operation has ended (aborted: cancelled): nothing of it is sent again. */
async function hasEnded<Tx>(deps: ChunkDeps<Tx>, opId: string): Promise<boolean> {
  const op = await deps.load(opId).catch(() => undefined);
  return op !== undefined && TERMINAL_STATES.includes(op.lifecycle.state);
}
