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
  /** Indices of `items` in the order their outcomes arrived (what the wave's streak counts). */
  order: number[];
}

export async function applyWithBreaker(
  adapter: TargetAdapter,
  action: DestructiveAction,
  items: AdapterItem[],
  opts: ApplyOptions,
  policy: HaltPolicy,
  wave: WaveStats,
  /** Holds a slot of the operation's in-flight budget around each call (call-slots.ts). */
  slot: <T>(call: () => Promise<T>) => Promise<T> = (call) => call(),
): Promise<BreakerResult> {
  // The registry adapter acts on a whole chunk in one statement: there is no per-call overshoot.
  if (adapter.kind !== 'http') {
    const results = await adapter.apply(action, items, opts);
    return { results, order: results.map((_, k) => k) };
  }
  let stats = wave;
  let tripped = false;
  const order: number[] = [];
  // Sticky, as the adapter's own batch is: once told to stop, nothing more is sent from this chunk.
  const shouldContinue = () => {
    if (!tripped && !opts.shouldContinue()) tripped = true;
    return !tripped;
  };
  const results = await mapPool(items, opts.concurrency, async (item, k) => {
    // The halt check (shouldContinue) runs inside the slot, just before the call is sent.
    const r = (await slot(() => adapter.apply(action, [item], { ...opts, concurrency: 1, shouldContinue })))[0]!;
    order.push(k);
    if (!isSkipped(r)) {
      stats = foldOutcomes(stats, [r.ok ? 'done' : 'failed']);
      if (!assessWave(stats, policy).healthy) tripped = true;
    }
    return r;
  });
  return { results, order };
}
