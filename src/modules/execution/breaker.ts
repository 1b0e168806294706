// A chunk judges its own outcomes as they land. Without this, a chunk (up to CHUNK_SIZE items)
// sends every one of its calls before it records and reports, so a downstream that starts failing
// mid-wave gets the whole chunk before decide() can halt: overshoot bounded by the chunk size, not
// by the calls in flight (promise 5). Here each outcome is judged with the same rule decide()
// uses (assessWave), seeded with the wave's counters; once unhealthy, nothing more is sent and the
// unsent items go back to pending. The report that follows lets decide() halt for real.
import { mapPool } from '../adapters/http-adapter.ts';
import {
  isSkipped,
  type AdapterItem,
  type ApplyOptions,
  type DestructiveAction,
  type ItemResult,
  type TargetAdapter,
} from '../adapters/index.ts';
import { assessWave } from '../operations/lifecycle.ts';
import type { HaltPolicy } from '../operations/policy.ts';

export interface WaveCounters {
  done: number;
  failed: number;
  consecutiveFailures: number;
  total: number;
}

export async function applyWithBreaker(
  adapter: TargetAdapter,
  action: DestructiveAction,
  items: AdapterItem[],
  opts: ApplyOptions,
  policy: HaltPolicy,
  wave: WaveCounters,
): Promise<ItemResult[]> {
  // The registry adapter acts on a whole chunk in one statement: there is no per-call overshoot.
  if (adapter.kind !== 'http') return adapter.apply(action, items, opts);
  let done = 0;
  let failed = 0;
  let streak = 0;
  let tripped = false;
  // Sticky, as the adapter's own batch is: once told to stop, nothing more is sent from this chunk.
  const shouldContinue = () => {
    if (!tripped && !opts.shouldContinue()) tripped = true;
    return !tripped;
  };
  return mapPool(items, opts.concurrency, async (item) => {
    const r = (await adapter.apply(action, [item], { ...opts, concurrency: 1, shouldContinue }))[0]!;
    if (r.ok) {
      done++;
      streak = 0;
    } else if (!isSkipped(r)) {
      failed++;
      streak++;
    }
    // A chunk with no success yet extends the streak the wave had, as recordOutcomes counts it.
    const consecutiveFailures = done === 0 ? wave.consecutiveFailures + streak : streak;
    const stats = {
      done: wave.done + done,
      failed: wave.failed + failed,
      consecutiveFailures,
      pending: wave.total - wave.done - wave.failed - done - failed,
    };
    if (!assessWave(stats, policy).healthy) tripped = true;
    return r;
  });
}
