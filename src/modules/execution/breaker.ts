// A chunk judges its own outcomes as they land. Without this, a chunk (up to CHUNK_SIZE items)
// sends every one of its calls before it records and reports, so a downstream that starts failing
// mid-wave gets the whole chunk before decide() can halt: overshoot bounded by the chunk size, not
// by the calls in flight (promise 5). Each outcome is folded into the wave's counters and judged
// with the same rule decide() uses (wave-health.ts); once unhealthy, nothing more is sent and the
// unsent items go back to pending. The report that follows lets decide() halt for real.
import { mapPool } from '../adapters/http-transport.ts';
import {
  isSkipped,
  type AdapterItem,
  type ApplyOptions,
  type DestructiveAction,
  type ItemResult,
  type TargetAdapter,
} from '../adapters/index.ts';
import type { HaltPolicy } from '../operations/policy.ts';
import { assessWave, foldOutcomes, type WaveStats } from '../operations/wave-health.ts';

export interface BreakerResult {
  results: ItemResult[];
  /** Per item of `items`: its outcome's place among every outcome of the chunk (arrivalOrder). */
  arrived: number[];
}

/** Indices of the items in the order their outcomes arrived (what the wave's streak counts). */
export const arrivalOrder = (arrived: readonly number[]): number[] =>
  arrived.map((_, k) => k).sort((a, b) => arrived[a]! - arrived[b]!);

/**
 * The judgement of one chunk, shared by every batch of calls it sends (a chunk sends its first
 * items while it prepares the rest: chunk-execute.ts), so that they trip together and count one
 * streak, in the order outcomes arrive.
 */
export interface Breaker {
  /** Sticky, as the adapter's own batch is: once false, nothing more is sent from this chunk. */
  shouldContinue(): boolean;
  /** Folds one outcome in; returns its place in the chunk's arrival order. */
  arrive(r: ItemResult): number;
  /**
   * Folds in items that failed before their call (a snapshot read refused, protected since the
   * plan): the wave counts them as any failure once recorded, and a downstream whose reads failed
   * while its deletes worked got a whole chunk of deletes before the halt (448 after 117 failed
   * reads, in a trial).
   */
  failedBeforeCall(n: number): void;
  /** Sends nothing more (a later step of the chunk failed). */
  trip(): void;
}

export function chunkBreaker(policy: HaltPolicy, wave: WaveStats, go: () => boolean): Breaker {
  let stats = wave;
  let tripped = false;
  let arrivals = 0;
  return {
    shouldContinue() {
      if (!tripped && !go()) tripped = true;
      return !tripped;
    },
    arrive(r) {
      if (!isSkipped(r)) {
        stats = foldOutcomes(stats, [r.ok ? 'done' : 'failed']);
        if (!assessWave(stats, policy).healthy) tripped = true;
      }
      return arrivals++;
    },
    failedBeforeCall(n) {
      if (n === 0) return;
      stats = foldOutcomes(stats, new Array<'failed'>(n).fill('failed'));
      if (!assessWave(stats, policy).healthy) tripped = true;
    },
    trip() {
      tripped = true;
    },
  };
}

export async function applyWithBreaker(
  adapter: TargetAdapter,
  action: DestructiveAction,
  items: AdapterItem[],
  opts: Omit<ApplyOptions, 'shouldContinue'>,
  breaker: Breaker,
  /** Holds a slot of the operation's in-flight budget around each call (call-slots.ts). */
  slot: <T>(call: () => Promise<T>) => Promise<T> = (call) => call(),
  /** Each call's result as it lands (HTTP adapters; `k`: its place in `items`). */
  landed?: (k: number, r: ItemResult) => void,
): Promise<BreakerResult> {
  const arrived = new Array<number>(items.length).fill(-1);
  const shouldContinue = () => breaker.shouldContinue();
  // The registry adapter acts on a whole chunk in one statement: there is no per-call overshoot.
  if (adapter.kind !== 'http') {
    const results = await adapter.apply(action, items, { ...opts, shouldContinue });
    results.forEach((r, k) => (arrived[k] = breaker.arrive(r)));
    return { results, arrived };
  }
  const results = await mapPool(items, opts.concurrency, async (item, k) => {
    // The halt check (shouldContinue) runs inside the slot, just before the call is sent.
    const r = (await slot(() => adapter.apply(action, [item], { ...opts, concurrency: 1, shouldContinue })))[0]!;
    arrived[k] = breaker.arrive(r);
    landed?.(k, r);
    return r;
  });
  return { results, arrived };
}
