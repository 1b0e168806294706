// The building blocks of decide(): small constructors of decisions (refusals, halts, pauses, a
// wave start, a bake, the finish) shared by every rule, so each rule reads as what it decides.
import {
  rollsBack,
  type Decision,
  type Effect,
  type Guard,
  type LifecycleState,
  type OpState,
  type ProbeOutcome,
  type WaveStats,
} from './lifecycle-types.ts';

export const BAD_PROBE: readonly ProbeOutcome['result'][] = ['unhealthy', 'error', 'timeout'];
export const SYSTEM = 'system'; // actor of decisions taken on worker reports and timers
export const STOPPABLE: readonly OpState[] = ['running', 'baking', 'paused', 'halted'];

export type Ok = Extract<Decision, { ok: true }>;
export const ok = (next: LifecycleState, effects: Effect[], guards: Guard[] = []): Ok => ({
  ok: true,
  next,
  effects,
  guards,
});
export const unchanged = (s: LifecycleState): Decision => ok(s, []);
export const refuse = (status: 409 | 403 | 422, code: string, message: string): Decision => ({
  ok: false,
  code,
  message,
  status,
});
export const invalid = (s: LifecycleState, type: string, hint = ''): Decision =>
  refuse(409, 'INVALID_TRANSITION', `cannot ${type} an operation that is ${s.state}${hint}`);
export const frozenRefusal = (type: string, why?: string) =>
  refuse(409, 'FROZEN', `cannot ${type} while a global freeze is in effect${why ? `: ${why}` : ''}`);
export const audit = (
  action: string,
  from: LifecycleState,
  to: LifecycleState,
  actor: string,
  extra: Record<string, unknown> = {},
): Effect => ({
  type: 'audit',
  action: `operation.${action}`,
  detail: {
    actor,
    from: from.state,
    to: to.state,
    wave: to.currentWave,
    // The event streams' transitions say when a bake ends as it was then (events/frames.ts): a
    // wave_settled → baking said `bakeUntil: null` (a trial).
    ...(to.state === 'baking' && to.bakeUntil !== null ? { bakeUntil: new Date(to.bakeUntil).toISOString() } : {}),
    ...extra,
  },
});
export const stop = (reason: string): Effect => ({ type: 'stop_execution', reason });
export const listTenants = (ps: ProbeOutcome[]) =>
  ps
    .slice(0, 5)
    .map((p) => `${p.tenantId}${p.type ? ` via ${p.type}` : ''} (${p.result}${p.detail ? `: ${p.detail}` : ''})`)
    .join(', ') + (ps.length > 5 ? ` and ${ps.length - 5} more` : '');
export const secs = (ms: number) => `${Math.round(ms / 1000)}s`;

/**
 * A reason for what is done about a stop already there (an operator's rollback, a rollback that
 * ends incomplete, an abort): it says the stop's cause too, once, since haltReason is what the API,
 * the CLI, the live view and the webhooks show. The cause stays as it is.
 */
export const afterStop = (s: LifecycleState, reason: string): Pick<LifecycleState, 'haltReason' | 'haltCause'> => ({
  haltReason: s.haltCause ? `${reason} (${s.haltCause})` : reason,
  haltCause: s.haltCause,
});

/**
 * The operator's rollback a rolling-back operation runs for ("rollback by X: why"), without the
 * stop's cause; null for one the halt policy started. A rollback that ends incomplete keeps it:
 * the operator's "undo site 1" was dropped for "1 item(s) could not be restored" (a trial).
 */
export function operatorRollback(s: LifecycleState): string | null {
  const r = s.haltReason;
  if (!r?.startsWith('rollback by ')) return null;
  const cause = s.haltCause ? ` (${s.haltCause})` : '';
  return cause && r.endsWith(cause) ? r.slice(0, -cause.length) : r;
}

/**
 * A stop with its own reason: it becomes the cause, unless the operation keeps one already — a
 * halt's, or any when `onStopped` (an operator's act on an operation stopped before). A halt
 * outranks a pause: a signal while paused is why it halted.
 */
function stopFor(
  s: LifecycleState,
  word: 'halted' | 'paused',
  reason: string,
  onStopped = false,
): Pick<LifecycleState, 'haltReason' | 'haltCause'> {
  const keep = s.haltCause !== null && (onStopped || word === 'paused' || s.haltCause.startsWith('halted: '));
  return keep ? afterStop(s, reason) : { haltReason: reason, haltCause: `${word}: ${reason}` };
}

/** The audit detail's haltReason, when the reason said more than the event's own `reason`. */
export const toldAs = (reason: string, next: LifecycleState) =>
  next.haltReason !== reason ? { haltReason: next.haltReason } : {};

/**
 * A halt: raise the flag, then roll back or wait for a human, as the halt policy says. A restore
 * always waits (rolling it back would delete again what it restored), and so does an erasure
 * (what it erased cannot come back). `onStopped`: an operator's abort of an operation stopped before.
 */
export function halt(
  s: LifecycleState,
  reason: string,
  actor: string,
  extra: Record<string, unknown> = {},
  onStopped = false,
): Decision {
  const rollback = rollsBack(s.kind) && s.haltPolicy.onHalt === 'rollback';
  const next: LifecycleState = {
    ...s,
    state: rollback ? 'rolling_back' : 'halted',
    pausedFrom: null,
    ...stopFor(s, 'halted', reason, onStopped),
    waveDeadline: null,
  };
  const effects: Effect[] = [
    stop(reason),
    audit('halted', s, next, actor, {
      reason,
      ...toldAs(reason, next),
      onHalt: rollback ? 'rollback' : 'pause',
      ...extra,
    }),
  ];
  if (rollback) effects.push({ type: 'enqueue_rollback' });
  return ok(next, effects);
}

export function pauseFor(
  s: LifecycleState,
  reason: string,
  actor: string,
  extra: Record<string, unknown> = {},
): Decision {
  const pausedFrom = s.state === 'running' || s.state === 'baking' ? s.state : s.pausedFrom;
  const next: LifecycleState = {
    ...s,
    state: 'paused',
    pausedFrom,
    ...stopFor(s, 'paused', reason),
    waveDeadline: null,
  };
  return ok(next, [stop(reason), audit('paused', s, next, actor, { reason, ...toldAs(reason, next), ...extra })]);
}

/** Every path that queues a wave goes through here, so a freeze can never be bypassed. */
export function runWave(
  s: LifecycleState,
  wave: number,
  action: string,
  actor: string,
  now: number,
  extra = {},
): Decision {
  if (s.frozen) {
    // Only reachable from an inconsistent stored state (running/baking are never frozen): park it.
    const reason = 'global freeze in effect';
    const next: LifecycleState = {
      ...s,
      state: 'paused',
      currentWave: wave,
      pausedFrom: 'running',
      ...stopFor(s, 'paused', reason),
    };
    return ok(next, [stop(reason), audit('paused', s, next, actor, { reason })]);
  }
  const next: LifecycleState = {
    ...s,
    state: 'running',
    currentWave: wave,
    pausedFrom: null,
    haltReason: null,
    haltCause: null,
    bakeUntil: null,
    expiresAt: null,
    waveDeadline: now + s.rollout.waveDeadlineSeconds * 1000,
  };
  return ok(next, [audit(action, s, next, actor, extra), { type: 'enqueue_wave', wave }]);
}

export function bake(s: LifecycleState, wave: number, action: string, now: number, extra = {}): Decision {
  const next: LifecycleState = {
    ...s,
    state: 'baking',
    pausedFrom: null,
    haltReason: null,
    haltCause: null,
    waveDeadline: null,
    bakeUntil: now + s.rollout.bakeSeconds * 1000,
  };
  return ok(next, [audit(action, s, next, SYSTEM, extra), { type: 'start_bake', wave }]);
}

export function validStats(st: WaveStats, settled: boolean): string | null {
  const counts = [st.done, st.failed, st.consecutiveFailures, st.pending];
  if (!counts.every((n) => Number.isInteger(n) && n >= 0)) return 'wave stats must be non-negative integers';
  if (settled && st.pending !== 0) return 'wave_settled must report pending 0';
  return null;
}

/** A wave settled healthy (and its drill, if it had one, passed): finish, or bake it, or move past an empty one. */
export function afterSettled(
  s: LifecycleState,
  wave: number,
  stats: WaveStats,
  now: number,
  /** The wave is known to have deleted something (its drill had an item): it bakes whatever the counts say. */
  touched = false,
): Decision {
  if (wave >= s.waveCount - 1) return finish(s, stats.failed, { stats });
  const next: LifecycleState = { ...s, failedBefore: s.failedBefore + stats.failed };
  // An empty wave touched nothing, so there is nothing to bake or probe (and an empty probe round
  // would halt as "no data").
  if (!touched && stats.done + stats.failed === 0)
    return runWave(next, wave + 1, 'wave_started', SYSTEM, now, { skippedEmptyWave: wave });
  return bake(next, wave, 'wave_settled', now, { stats });
}

/** The last wave is done: a clean finish only if no item anywhere failed. */
export function finish(s: LifecycleState, failedInWave: number, extra: Record<string, unknown> = {}): Decision {
  const failed = s.failedBefore + failedInWave;
  const next: LifecycleState = {
    ...s,
    state: failed > 0 ? 'completed_with_failures' : 'completed',
    pausedFrom: null,
    haltReason: failed > 0 ? `${failed} item(s) failed; see the item ledger` : null,
    haltCause: null,
    waveDeadline: null,
    bakeUntil: null,
  };
  return ok(next, [audit(next.state, s, next, SYSTEM, { failed, ...extra })]);
}

export const expired = (s: LifecycleState, now: number) => s.expiresAt !== null && now >= s.expiresAt;
export const expiredRefusal = (s: LifecycleState) =>
  refuse(409, 'OPERATION_EXPIRED', `the plan expired at ${new Date(s.expiresAt!).toISOString()}; submit it again`);

export function endRollback(
  s: LifecycleState,
  reason: string,
  actor: string,
  extra: Record<string, unknown>,
): Decision {
  const next: LifecycleState = { ...s, state: 'rollback_incomplete', ...afterStop(s, reason) };
  return ok(next, [
    stop(reason),
    audit('rollback_incomplete', s, next, actor, { reason, ...toldAs(reason, next), ...extra }),
  ]);
}
