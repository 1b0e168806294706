// The chunk job: load the state once → claim a seq range of the wave under a fresh claim token →
// snapshot → mark write-ahead (only while the operation still runs this wave) → act through the
// adapter, checking the halt watch and the claim before every call → record the outcomes AND
// decide on them in one transaction → effects. Thin: every decision is decide()'s.
import { randomUUID } from 'node:crypto';
import type { Queryable } from '../../lib/sql.ts';
import type { Metrics } from '../../plugins/metrics.ts';
import { mayExecute, type LifecycleEvent } from '../operations/lifecycle.ts';
import { assessWave, type WaveStats } from '../operations/wave-health.ts';
import type { ErasedKeys } from '../erasure/keys.ts';
import type { AdapterCache } from './adapters-cache.ts';
import type { CallSlots } from './call-slots.ts';
import { runSameDbChunk, sameDbEligible, type SameDb } from './chunk-same-db.ts';
import { execute } from './chunk-execute.ts';
import type { RestoreReader } from './chunk-restore.ts';
import type { Engine } from './engine.ts';
import { runToken, type Fence } from './exclusive.ts';
import type { HaltWatch } from './halt-watch.ts';
import type { Ledger, Outcome, Range } from './ledger.ts';
import type { PlannedParent } from './new-children.ts';
import type { ProtectionLook } from './protected-now.ts';
import type { OutstandingChild } from './purge-children.ts';
import type { ChunkJob } from './queues.ts';
import type { OperationRecord } from './state.ts';
import { REQUEUE_DELAY_MS, deferForCap, type VelocityGrant, type VelocityLimiter } from './velocity.ts';

/** Claims of one item before it fails for good with its last error (never retried forever in silence). */
export const ITEM_ATTEMPTS = 5;
const SYSTEM = { name: 'system' };

export interface ChunkDeps<Tx = Queryable> {
  load(opId: string): Promise<OperationRecord | undefined>;
  ledger: Pick<Ledger<Tx>, 'claim' | 'extend' | 'release' | 'prepare' | 'record' | 'waveStats'>;
  engine: Pick<Engine<Tx>, 'apply'>;
  adapters: Pick<AdapterCache, 'get'>;
  watch: Pick<HaltWatch, 'track' | 'untrack' | 'canRun' | 'runs'>;
  velocity: Pick<VelocityLimiter, 'reserve' | 'refund'>;
  /**
   * Says on the operation that a velocity cap held items back until `until` (the views show it
   * while it lasts: a running operation that does not move says why). Optional: tests' fakes.
   */
  throttled?(opId: string, cap: string, until: Date): Promise<void>;
  /** This process's in-flight budget per operation, shared by its chunks (call-slots.ts). */
  slots: Pick<CallSlots, 'forChunk' | 'inFlight'>;
  requeue(job: ChunkJob, delayMs: number): Promise<void>;
  clock(): number;
  /** How long a claim stays exclusive; the run renews it at a third of that. */
  leaseMs: number;
  /** How often, at most, a chunk records what has landed while its calls are out (default PROGRESS_EVERY_MS). */
  progressEveryMs?: number;
  metrics?: Pick<Metrics, 'items'>;
  /** Restore operations: reads and verifies the snapshots items are restored to. */
  readSnapshots?: RestoreReader['readSnapshots'];
  /**
   * Erasures: destroys the snapshot keys of the items just recorded done (and their descendants),
   * in the transaction that records them (erasure/keys.ts). Required for an erasure to record.
   */
  eraseKeys?(tx: Tx, opId: string, doneSeqs: number[]): Promise<ErasedKeys>;
  /**
   * What the registry row records of an outcome whatever the adapter, in the transaction that
   * records it: retention after a soft delete, none after a restore, purged after a purge.
   */
  registryFollows?: (tx: Tx, op: OperationRecord, doneSeqs: number[]) => Promise<void>;
  /** Delete chunks on the registry adapter run in one transaction (chunk-same-db.ts). */
  sameDb?: SameDb<Tx>;
  /**
   * Of these resources, those the registry marks protected now, or whose tenant it does (unless
   * among `approvedTenants`: registry-apply.ts DeleteGuard), each with why. A delete's chunk leaves them
   * (an import that protects a resource or tenant while the operation runs is honoured before its call).
   */
  protectedNow?(resourceIds: string[], approvedTenants: string[]): Promise<ProtectionLook>;
  /** Whether protection may have changed since a look (protected-now.ts): the per-call look then reads it again. */
  protectionChangedSince?(seen: string): Promise<boolean>;
  /**
   * A restore's or purge's ledger seqs whose resource changed in the registry since the plan, each
   * with what it is now (changed-since-plan.ts): their chunk leaves them.
   */
  changedSincePlan?(opId: string, seqs: number[]): Promise<Map<number, string>>;
  /** A purge's items with a child that holds them back, each with why (changed-since-plan.ts childrenHoldingBack). */
  childrenHoldingBack?(
    opId: string,
    items: readonly { resourceId: string; type: string }[],
  ): Promise<Map<string, string>>;
  /** A purge's parents with a child it holds in another chunk, not purged yet (purge-children.ts). */
  childrenOutstanding?(
    opId: string,
    parents: string[],
    inChunk: string[],
    wave: number,
  ): Promise<Map<string, OutstandingChild>>;
  /** The registry parent of each of these resources that has one (a purge holds back a failed child's parent). */
  parentsOf?(resourceIds: string[]): Promise<Map<string, string>>;
  /** Of these resources of `type`, those with a child their cascade would take that `known` does not list (new-children.ts). */
  newChildren?(
    opId: string,
    type: string,
    roots: string[],
    known: string[],
    under?: PlannedParent[],
  ): Promise<Map<string, string>>;
}

const waveEvent = (
  wave: number,
  stats: WaveStats,
  policy: OperationRecord['lifecycle']['haltPolicy'],
  outcomes: readonly Outcome[] = [],
  lastError = outcomes.findLast((o) => o.state === 'failed')?.error,
): LifecycleEvent | null => {
  const cause = lastError ? { lastError } : {};
  if (stats.pending === 0) return { type: 'wave_settled', wave, stats, ...cause };
  // Healthy progress changes nothing (decide() would answer "unchanged"): no operation lock for it.
  return assessWave(stats, policy).healthy ? null : { type: 'item_outcomes', wave, stats, ...cause };
};

export async function processChunk<Tx>(deps: ChunkDeps<Tx>, jobId: string, j: ChunkJob, fence: Fence): Promise<void> {
  const op = await deps.load(j.opId);
  // Not running this wave (paused, halted, frozen, finished, or a stale job): items stay as they are.
  if (!op || !mayExecute(op.lifecycle) || op.lifecycle.currentWave !== j.wave || !op.wave) return;
  // Looked up once: its kind picks the path, and the general path below reuses it.
  const got =
    deps.sameDb && sameDbEligible(op) ? await deps.adapters.get(op.targetType).catch(() => undefined) : undefined;
  if (deps.sameDb && got?.adapter.kind === 'registry') {
    const r = await runSameDbChunk({ ...deps, sameDb: deps.sameDb }, op, j, fence, ITEM_ATTEMPTS, (stats, lastError) =>
      waveEvent(j.wave, stats, op.lifecycle.haltPolicy, [], lastError),
    );
    if (r.handled) {
      await noteThrottle(deps, j.opId, r.grant);
      if (r.requeueMs > 0 && r.running) await deps.requeue({ ...j, epoch: r.epoch }, r.requeueMs);
      return;
    }
  }
  const range: Range = { from: j.from, to: j.to };
  const token = runToken(fence);
  const claimed = await deps.ledger.claim(j.opId, range, jobId, token);
  if (claimed.length === 0) return settleIfDone(deps, j.opId, j.wave);

  const outcomes: Outcome[] = [];
  // Items whose attempts are used up fail now, carrying the error that kept them from finishing.
  for (const i of claimed.filter((x) => x.attempts > ITEM_ATTEMPTS)) {
    const last = i.lastError ? `; last error: ${i.lastError}` : '';
    outcomes.push({
      seq: i.seq,
      state: 'failed',
      error: `gave up after ${i.attempts - 1} attempts${last}`.slice(0, 500),
      permanent: true,
    });
  }
  let items = claimed.filter((x) => x.attempts <= ITEM_ATTEMPTS);
  let deferMs = 0;
  let grant: VelocityGrant | undefined;
  if (items.length) {
    grant = await deps.velocity.reserve(
      j.opId,
      items.map((i) => i.tenantId),
      op.lifecycle.rollout,
    );
    if (grant.granted < items.length) {
      await deps.ledger.release(j.opId, range, token, items.slice(grant.granted), null, true);
      items = items.slice(0, grant.granted);
      deferMs = deferForCap(grant);
    }
  }
  // Records a batch of outcomes and decides on them in one transaction: the chunk's last batch,
  // and before it what landed while its other calls were out (chunk-progress.ts).
  const recordBatch = (batch: Outcome[], marks: ReadonlySet<number>) => {
    const now = deps.clock();
    return deps.engine.apply(
      j.opId,
      async (tx) => {
        // What the outcomes change besides the ledger is written before the wave's counters (and
        // their row lock) in the same transaction: see Ledger.record.
        const follow = async (rec: { doneSeqs: number[]; recordedDone: number; descendantsDone: number }) => {
          if (op.action === 'erase' && rec.doneSeqs.length) {
            // Done and keys destroyed commit together, or neither does (the transaction fails and the
            // items are sent again under the same idempotency key).
            if (!deps.eraseKeys) throw new Error(`erasure ${j.opId}: no key eraser wired; nothing recorded`);
            const erased = await deps.eraseKeys(tx, j.opId, rec.doneSeqs);
            deps.metrics?.items.inc({ outcome: 'erased' }, erased.items + erased.descendants);
          }
          // With the items done, the failed ones that have descendants done (deleted through their
          // own adapter beside a sibling that was refused: cascade-own.ts).
          if (deps.registryFollows && rec.recordedDone + rec.descendantsDone > 0)
            await deps.registryFollows(
              tx,
              op,
              batch
                .filter((o) => o.state === 'done' || o.descendants?.some((d) => d.state === 'done'))
                .map((o) => o.seq),
            );
        };
        const rec = await deps.ledger.record(tx, j.opId, j.wave, token, batch, marks, now, follow);
        if (op.action === 'restore') {
          deps.metrics?.items.inc({ outcome: 'restored' }, rec.recordedDone + rec.descendantsDone);
          deps.metrics?.items.inc({ outcome: 'restore_failed' }, rec.recordedFailed);
        } else if (op.action === 'purge') {
          // A cascade's descendants count, as they do for restores and erasures.
          deps.metrics?.items.inc({ outcome: 'purged' }, rec.recordedDone + rec.descendantsDone);
          deps.metrics?.items.inc({ outcome: 'purge_failed' }, rec.recordedFailed);
        } else if (op.action === 'erase') {
          // Its done items are counted `erased` where their keys are destroyed (follow): one outcome per item.
          deps.metrics?.items.inc({ outcome: 'erase_failed' }, rec.recordedFailed);
        } else {
          deps.metrics?.items.inc({ outcome: 'done' }, rec.recordedDone + rec.descendantsDone);
          deps.metrics?.items.inc({ outcome: 'failed' }, rec.recordedFailed);
        }
        // The wave's last error, not only this batch's: a batch without failures that leaves the
        // wave over its threshold (a resume's retries succeeding) halts quoting the failures it kept.
        return waveEvent(j.wave, rec.stats, op.lifecycle.haltPolicy, batch, rec.lastError);
      },
      SYSTEM,
      { report: true },
    );
  };
  const marks = new Set<number>();
  let unsent = 0;
  let handedBack = 0;
  let stillRunning = false;
  let retryInMs = 0;
  if (items.length) {
    const r = await execute(deps, op, j, range, token, items, fence, got, async (landed, marked) => {
      await recordBatch(landed, marked);
    });
    outcomes.push(...r.outcomes);
    r.marked.forEach((s) => marks.add(s));
    unsent = r.unsent;
    handedBack = r.unsent + r.requeue;
    stillRunning = r.stillRunning;
    retryInMs = r.retryInMs ?? 0;
  }
  // Caps charge executed items only: what was reserved but never sent is given back.
  if (grant && unsent > 0) await deps.velocity.refund(grant, unsent);
  const applied = await recordBatch(outcomes, marks);
  // Items handed back unsent while the operation still runs this wave (a pause and a quick resume,
  // a velocity wait) are queued again now instead of at the reconciler's next sweep.
  const running = applied?.changed
    ? mayExecute(applied.state) && applied.state.currentWave === j.wave
    : stillRunning || deferMs > 0;
  await noteThrottle(deps, j.opId, grant);
  if ((handedBack > 0 || deferMs > 0) && running) {
    const { waits, ...job } = j;
    await deps.requeue(
      { ...job, epoch: applied?.version ?? j.epoch, ...(retryInMs ? { waits: (waits ?? 0) + 1 } : {}) },
      deferMs || retryInMs || REQUEUE_DELAY_MS,
    );
  }
}

/** A cap that cut a grant short is recorded on the operation; a failure to record it changes nothing else. */
async function noteThrottle<Tx>(
  deps: Pick<ChunkDeps<Tx>, 'throttled' | 'clock'>,
  opId: string,
  grant: VelocityGrant | undefined,
) {
  if (!deps.throttled || !grant?.limitedBy || grant.granted >= grant.requested) return;
  const cap = grant.limitedBy === 'items' ? 'maxItemsPerMinute' : 'maxTenantsPerMinute';
  await deps.throttled(opId, cap, new Date(deps.clock() + grant.waitMs)).catch(() => undefined);
}

/** A wave whose items all have an outcome is settled, even if the report that said so was lost. */
export async function settleIfDone<Tx>(deps: Pick<ChunkDeps<Tx>, 'engine' | 'ledger'>, opId: string, wave: number) {
  await deps.engine.apply(
    opId,
    async (tx) => {
      const w = await deps.ledger.waveStats(tx, opId, wave);
      if (!w || w.pending > 0) return null;
      // The wave's last error goes with it: a wave judged again here (after a resume) that halts
      // says why, as the chunk that failed its items did.
      const { lastError, ...stats } = w;
      return { type: 'wave_settled', wave, stats, ...(lastError && stats.failed > 0 ? { lastError } : {}) };
    },
    SYSTEM,
    { report: true },
  );
}

/**
 * A chunk job that failed every one of its attempts for a reason of its own is quarantined: the
 * open items of its range (not held by a live run) fail with that reason, which counts toward the
 * halt policy and shows in the ledger, instead of the reconciler queueing it again forever.
 */
export async function quarantineChunk<Tx>(
  deps: Pick<ChunkDeps<Tx>, 'load' | 'ledger' | 'engine' | 'clock'>,
  jobId: string,
  j: ChunkJob,
  reason: string,
): Promise<void> {
  const op = await deps.load(j.opId);
  if (!op || op.lifecycle.currentWave !== j.wave) return;
  const token = randomUUID();
  const claimed = await deps.ledger.claim(j.opId, { from: j.from, to: j.to }, jobId, token);
  if (claimed.length === 0) return;
  const error = `quarantined: its chunk job failed ${claimed[0]!.attempts} time(s): ${reason}`.slice(0, 500);
  const outcomes = claimed.map((i): Outcome => ({ seq: i.seq, state: 'failed', error, permanent: true }));
  const now = deps.clock();
  await deps.engine.apply(
    j.opId,
    async (tx) => {
      const rec = await deps.ledger.record(tx, j.opId, j.wave, token, outcomes, new Set(), now);
      return waveEvent(j.wave, rec.stats, op.lifecycle.haltPolicy, outcomes, rec.lastError);
    },
    SYSTEM,
    { report: true },
  );
}
