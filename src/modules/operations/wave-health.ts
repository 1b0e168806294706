// How a wave is doing, judged from its item outcomes. One rule, used by decide() (the halt
// decision), by the chunk job's in-flight breaker (stop sending the moment the wave turns bad) and
// by the ledger (the counters it stores): every caller folds outcomes with foldOutcomes() and
// judges with assessWave(), so the three can never disagree about what "unhealthy" means.
import type { HaltPolicy } from './policy.ts';

export interface WaveStats {
  done: number;
  failed: number;
  consecutiveFailures: number;
  /** Items of the wave without an outcome yet. */
  pending: number;
}

export type ItemVerdict = 'done' | 'failed';

const pct = (x: number) => `${Math.round(x * 10_000) / 100}%`;

/**
 * Folds outcomes, in the order they happened, into the wave's counters. A failure extends the
 * streak, a success ends it, whichever chunk either came from.
 */
export function foldOutcomes(wave: WaveStats, outcomes: readonly ItemVerdict[]): WaveStats {
  let { done, failed, consecutiveFailures } = wave;
  for (const o of outcomes) {
    if (o === 'done') {
      done++;
      consecutiveFailures = 0;
    } else {
      failed++;
      consecutiveFailures++;
    }
  }
  return { done, failed, consecutiveFailures, pending: Math.max(0, wave.pending - outcomes.length) };
}

/**
 * Health of a wave. Small-sample rule: the rate is judged once `minSample` items finished, or
 * earlier when nothing is pending any more (the whole wave is smaller than minSample, so what we
 * have is all there will be). A wave with nothing finished is healthy: nothing was touched.
 */
export function assessWave(stats: WaveStats, policy: HaltPolicy): { healthy: boolean; reason?: string } {
  if (stats.consecutiveFailures >= policy.maxConsecutiveFailures) {
    return {
      healthy: false,
      reason: `${stats.consecutiveFailures} consecutive item failures (limit ${policy.maxConsecutiveFailures})`,
    };
  }
  const finished = stats.done + stats.failed;
  if (finished === 0) return { healthy: true };
  const rate = stats.failed / finished;
  const judged = finished >= policy.minSample || stats.pending === 0;
  if (judged && rate > policy.maxFailureRate) {
    return {
      healthy: false,
      reason: `item failure rate ${pct(rate)} over ${pct(policy.maxFailureRate)} (${stats.failed}/${finished})`,
    };
  }
  return { healthy: true };
}
