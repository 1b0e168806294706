// Builders shared by the lifecycle table and property tests: a default state, shorthand events,
// and a compact text form of effects so a table row reads like the rule it checks.
import type { Role } from '../../src/modules/auth/roles.ts';
import type {
  Effect,
  LifecycleEvent,
  Who,
  LifecycleState,
  OpState,
  ProbeOutcome,
  WaveStats,
} from '../../src/modules/operations/lifecycle.ts';
import { DEFAULT_HALT, DEFAULT_ROLLOUT } from '../../src/modules/operations/policy.ts';

export const REQUESTER = 'tok_req';
/** Token names as people see them; events carry the id (identity checks) and the name (reasons, audit). */
const NAMES: Record<string, string> = {
  tok_req: 'ci-pipeline',
  tok_a: 'alice',
  tok_b: 'bob',
  tok_c: 'carol',
  tok_op: 'oncall-operator',
  tok_sig: 'support-bot',
  tok_admin: 'platform-admin',
};
export const who = (id: string): Who => ({ id, name: NAMES[id] ?? `name-of-${id}` });
export const HASH = 'h1';
/** The clock every table row decides at. */
export const NOW = 1_800_000_000_000;

/** Planned, 3 waves, default policies (onHalt rollback, probes required, minSample 20, 5%, 5 in a row). */
export function makeState(over: Partial<LifecycleState> = {}): LifecycleState {
  return {
    state: 'planned',
    kind: 'delete',
    waveCount: 3,
    currentWave: null,
    pausedFrom: null,
    haltReason: null,
    haltCause: null,
    requiresBreakGlass: false,
    planHash: HASH,
    requestedBy: REQUESTER,
    approvals: [],
    autoStart: false,
    frozen: false,
    haltPolicy: { ...DEFAULT_HALT },
    rollout: { ...DEFAULT_ROLLOUT },
    failedBefore: 0,
    bakeUntil: null,
    waveDeadline: null,
    progressAt: null,
    expiresAt: NOW + 86_400_000,
    // Table rows about the drill turn it on; the others are about something else.
    drill: 'off',
    ...over,
  };
}

const NOT_STARTED: OpState[] = ['planned', 'approved', 'rejected', 'cancelled', 'expired'];
/**
 * A state as a stored operation would have it: started states are on wave 1 of 3 by default, made
 * progress a second ago, a running wave's deadline is an hour away and a bake ended just now.
 */
export function at(state: OpState, over: Partial<LifecycleState> = {}): LifecycleState {
  const started = !NOT_STARTED.includes(state);
  const pausedFrom = state === 'paused' ? 'running' : null;
  const stopped = ['paused', 'halted', 'rolling_back', 'rolled_back', 'rollback_incomplete'];
  const haltReason = stopped.includes(state) ? 'earlier reason' : null;
  return makeState({
    state,
    currentWave: started ? 1 : null,
    pausedFrom,
    haltReason,
    expiresAt: started ? null : NOW + 86_400_000,
    progressAt: started ? NOW - 1_000 : null,
    waveDeadline: state === 'running' ? NOW + 3_600_000 : null,
    bakeUntil: state === 'baking' ? NOW - 1 : null,
    ...over,
  });
}

export const stats = (done: number, failed: number, consecutiveFailures = 0, pending = 0): WaveStats => ({
  done,
  failed,
  consecutiveFailures,
  pending,
});
export const probe = (tenantId: string, result: ProbeOutcome['result']): ProbeOutcome => ({ tenantId, result });

export const ev = {
  approve: (by = 'tok_a', role: Role = 'approver', planHash = HASH): LifecycleEvent => ({
    type: 'approve',
    by: who(by),
    role,
    planHash,
  }),
  start: (role: Role = 'operator'): LifecycleEvent => ({ type: 'start', by: who('tok_op'), role }),
  autoStart: (): LifecycleEvent => ({ type: 'auto_start', by: who(REQUESTER) }),
  cancel: (): LifecycleEvent => ({ type: 'cancel', by: who(REQUESTER), reason: 'not needed' }),
  outcomes: (wave: number, s: WaveStats): LifecycleEvent => ({ type: 'item_outcomes', wave, stats: s }),
  settled: (wave: number, s: WaveStats): LifecycleEvent => ({ type: 'wave_settled', wave, stats: s }),
  probes: (wave: number, probes: ProbeOutcome[]): LifecycleEvent => ({ type: 'probes', wave, probes }),
  signal: (tenantId?: string): LifecycleEvent => ({
    type: 'signal',
    kind: 'support_ticket',
    tenantId,
    detail: 'site down',
    by: who('tok_sig'),
  }),
  timer: (): LifecycleEvent => ({ type: 'timer' }),
  pause: (): LifecycleEvent => ({ type: 'pause', by: who('tok_op'), reason: 'lunch' }),
  resume: (): LifecycleEvent => ({ type: 'resume', by: who('tok_op') }),
  abort: (endRollback?: boolean): LifecycleEvent => ({
    type: 'abort',
    by: who('tok_op'),
    reason: 'wrong list',
    ...(endRollback ? { endRollback } : {}),
  }),
  rollback: (): LifecycleEvent => ({ type: 'rollback', by: who('tok_op'), reason: 'customer complaint' }),
  freeze: (): LifecycleEvent => ({ type: 'freeze', by: who('tok_admin'), reason: 'incident 42' }),
  unfreeze: (): LifecycleEvent => ({ type: 'unfreeze', by: who('tok_admin') }),
  rollbackSettled: (restored = 10, failed = 0): LifecycleEvent => ({ type: 'rollback_settled', restored, failed }),
};

/** One example of every event type, for "every event in state X" rows. */
export const ONE_OF_EACH: LifecycleEvent[] = [
  ev.approve(),
  ev.start(),
  ev.autoStart(),
  ev.cancel(),
  ev.outcomes(1, stats(1, 0)),
  ev.settled(1, stats(1, 0)),
  ev.probes(1, [probe('t1', 'healthy')]),
  ev.signal('t1'),
  ev.timer(),
  ev.pause(),
  ev.resume(),
  ev.abort(),
  ev.rollback(),
  ev.freeze(),
  ev.unfreeze(),
  ev.rollbackSettled(),
];

/** 'enqueue_wave:2', 'start_bake:1', 'stop_execution', 'audit', 'enqueue_rollback'. */
export const fx = (effects: Effect[]): string[] =>
  effects.map((e) =>
    e.type === 'enqueue_wave' || e.type === 'start_bake' || e.type === 'run_drill' ? `${e.type}:${e.wave}` : e.type,
  );

export const HALT_ROLLBACK = ['stop_execution', 'audit', 'enqueue_rollback'];
export const HALT_PAUSE = ['stop_execution', 'audit'];
