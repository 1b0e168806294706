// The restore drill at the canary (rollout.restoreDrill): when the first wave that deleted anything
// settles healthy, one of its items is restored, read back, compared with its pre-delete snapshot
// and deleted again before the rollout goes on. A delete that cannot be undone must stop where it
// has done the least harm: a drill that fails, differs or never answers halts the operation.
import type { Decision, LifecycleEvent, LifecycleState, WaveStats } from './lifecycle-types.ts';
import {
  afterSettled,
  audit,
  halt,
  ok,
  refuse,
  secs,
  SYSTEM,
  unchanged,
  validStats,
  type Ok,
} from './lifecycle-steps.ts';

export const DRILL_FAILED = 'restore_drill_failed';

/**
 * Called when a wave settles healthy in a running operation: null when no drill is due (the rollout
 * carries on as before); otherwise the decision that starts it, or waits for the one already out.
 */
export function drillGate(s: LifecycleState, wave: number, stats: WaveStats): Decision | null {
  if (s.kind !== 'delete' || s.drill === 'off' || s.drill === 'passed') return null;
  // The reconciler settles a wave again while its drill is out: wait, the job is re-armed apart.
  if (s.drill === 'waiting') return unchanged(s);
  // Nothing deleted in this wave (an empty internal wave): nothing to drill yet, the next one is.
  // A drill already due in this wave (failed, or out at a resume) runs whatever the counts say.
  if (stats.done === 0 && s.drill === 'pending') return null;
  const next: LifecycleState = { ...s, drill: 'waiting' };
  return ok(next, [audit('drill_started', s, next, SYSTEM, { wave, stats }), { type: 'run_drill', wave }]);
}

export function drillResult(
  s: LifecycleState,
  e: Extract<LifecycleEvent, { type: 'drill_result' }>,
  now: number,
): Decision {
  const problem = validStats(e.stats, true);
  if (problem) return refuse(422, 'INVALID_EVENT', problem);
  const executing = s.state === 'running' || (s.state === 'paused' && s.pausedFrom === 'running');
  const detail = { outcome: e.outcome, resourceId: e.resourceId ?? null, detail: e.detail ?? null };
  // Late (the wave moved on, or a halt, a rollback or a resume came first): it decides nothing, and
  // is audited as every drill is (a trial found drills that ended during a rollback in the drill
  // table only), with its own wave.
  if (s.drill !== 'waiting' || e.wave !== s.currentWave || !executing)
    return ok(s, [audit('drill', s, s, SYSTEM, { ...detail, wave: e.wave, late: true })]);
  if (e.outcome === 'failed') {
    const failed: LifecycleState = { ...s, drill: 'failed' };
    const d = halt(failed, `${DRILL_FAILED}: ${e.detail ?? 'no detail'}`, SYSTEM, { drill: detail }) as Ok;
    const [stop, ...rest] = d.effects;
    return { ...d, effects: [stop!, audit('drill', s, d.next, SYSTEM, detail), ...rest] };
  }
  const passed: LifecycleState = { ...s, drill: 'passed' };
  const record = audit('drill', s, passed, SYSTEM, detail);
  // Paused meanwhile: the result is kept; a resume settles the wave again and carries on.
  if (s.state !== 'running') return ok(passed, [record]);
  // A drilled wave deleted something: it bakes, never passes as empty, whatever the counts say.
  const d = afterSettled(passed, e.wave, e.stats, now, true) as Ok;
  return { ...d, effects: [record, ...d.effects] };
}

/** The clock's part: a drill still out at the wave deadline, or for the stall limit, has failed. */
export function drillLate(s: LifecycleState, now: number): Decision | null {
  if (s.state !== 'running' || s.drill !== 'waiting') return null;
  const still = s.progressAt === null ? 0 : now - s.progressAt;
  const why =
    s.waveDeadline !== null && now >= s.waveDeadline
      ? `within the wave deadline of ${s.rollout.waveDeadlineSeconds}s`
      : s.progressAt !== null && still >= s.haltPolicy.stallSeconds * 1000
        ? `for ${secs(still)} (stall limit ${s.haltPolicy.stallSeconds}s)`
        : null;
  if (!why) return null;
  return halt({ ...s, drill: 'failed' }, `${DRILL_FAILED}: no drill result ${why}`, SYSTEM, { drillTimedOut: true });
}
