// The operation lifecycle as one pure function: decide(state, event) → next state + effects.
// No I/O, no clock, no randomness: time arrives as events (deadline_passed, probes.bakeElapsed).
//
// Contract for the workers that carry this out ("collect intent, commit once"):
// 1. Load the operation under a lock, build a LifecycleState, call decide().
// 2. ok:false → answer/drop with { code, message, status }; nothing is written.
// 3. ok:true → in ONE transaction write `next` and every `audit` effect; then run the other
//    effects in array order. stop_execution is always listed first so the halt flag goes up before
//    anything else; enqueue_wave is the only destructive effect (see isDestructive).
// 4. A decision whose `next` equals `state` and whose effects are empty is a no-op (stale or late
//    worker report): skip the write. Terminal states answer every report with 409 INVALID_TRANSITION,
//    which workers should treat as "drop", not retry.
// 5. After enqueue_wave(n) the wave worker must eventually report wave_settled for n, even when no
//    item is left pending (a resume re-queues a wave that may already be finished), and should
//    (re)arm the wave deadline; after start_bake(n) it sends probe rounds until one has bakeElapsed.
// 6. Before each destructive call a worker re-reads the state and proceeds only if mayExecute().
import type { Role } from '../auth/roles.ts';
import type { HaltPolicy, RolloutPolicy } from './policy.ts';

export type OpState =
  | 'planned'
  | 'rejected'
  | 'approved'
  | 'running'
  | 'baking'
  | 'paused'
  | 'halted'
  | 'rolling_back'
  | 'rolled_back'
  | 'completed'
  | 'cancelled'
  | 'failed';
export interface Approval {
  by: string;
  role: Role;
  planHash: string;
}
export interface LifecycleState {
  state: OpState;
  waveCount: number; // waves in the plan (>= 1)
  currentWave: number | null; // wave being run or baked; null before start
  pausedFrom: 'running' | 'baking' | null;
  haltReason: string | null; // why the operation is stopped (halt, pause, freeze, rollback); null while it runs
  requiresBreakGlass: boolean;
  planHash: string;
  requestedBy: string; // token id of the requester
  approvals: Approval[];
  autoStart: boolean;
  frozen: boolean; // a global freeze is in effect
  haltPolicy: HaltPolicy;
  rollout: RolloutPolicy;
}
export type ProbeResult = 'healthy' | 'unhealthy' | 'error' | 'timeout' | 'not_configured';
export interface ProbeOutcome {
  tenantId: string;
  result: ProbeResult;
  detail?: string;
}
export interface WaveStats {
  done: number;
  failed: number;
  consecutiveFailures: number;
  pending: number;
}
export type LifecycleEvent =
  | { type: 'approve'; by: string; role: Role; planHash: string }
  | { type: 'start'; by: string; role: Role }
  | { type: 'cancel'; by: string; reason: string }
  | { type: 'item_outcomes'; wave: number; stats: WaveStats } // progress during a wave
  | { type: 'wave_settled'; wave: number; stats: WaveStats } // every item of the wave finished (pending 0)
  | { type: 'probes'; wave: number; probes: ProbeOutcome[]; bakeElapsed: boolean } // one outcome per touched tenant
  | { type: 'signal'; kind: string; tenantId?: string; detail?: string; by: string }
  | { type: 'deadline_passed'; wave: number }
  | { type: 'pause'; by: string; reason: string }
  | { type: 'resume'; by: string }
  | { type: 'abort'; by: string; reason: string }
  | { type: 'rollback'; by: string; reason: string }
  | { type: 'freeze'; by: string; reason: string }
  | { type: 'unfreeze'; by: string }
  | { type: 'rollback_settled'; restored: number; failed: number };
export type Effect =
  | { type: 'enqueue_wave'; wave: number } // DESTRUCTIVE: queue the wave's pending items
  | { type: 'start_bake'; wave: number; bakeSeconds: number } // schedule probe rounds until the bake is over
  | { type: 'stop_execution'; reason: string } // raise the halt flag: workers stop before their next destructive call
  | { type: 'enqueue_rollback' } // queue restores of every item this operation executed, newest first
  | { type: 'audit'; action: string; detail: Record<string, unknown> };
export type Decision =
  | { ok: true; next: LifecycleState; effects: Effect[] }
  | { ok: false; code: string; message: string; status: 409 | 403 | 422 };

/** Only enqueue_wave starts deletions; restores (enqueue_rollback) are the undo direction. */
export const isDestructive = (effect: Effect): boolean => effect.type === 'enqueue_wave';
/** States reached by a halt (automatic or operator abort/rollback). */
export const isHaltState = (state: OpState): boolean =>
  state === 'halted' || state === 'rolling_back' || state === 'rolled_back';
/** What a worker checks right before each destructive call: only a running, unfrozen operation executes. */
export const mayExecute = (s: Pick<LifecycleState, 'state' | 'frozen'>): boolean => s.state === 'running' && !s.frozen;

/**
 * Health of a wave from item outcomes. Small-sample rule: the rate is judged once `minSample`
 * items finished, or earlier when nothing is pending any more (the whole wave is smaller than
 * minSample, so what we have is all there will be). A wave with nothing finished is healthy:
 * nothing was touched, so there is nothing to be unhealthy about.
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

// Rejected, cancelled, rolled_back and failed end the story; completed can still be rolled back.
const TERMINAL: readonly OpState[] = ['rejected', 'cancelled', 'rolled_back', 'failed'];
const BAD_PROBE: readonly ProbeResult[] = ['unhealthy', 'error', 'timeout'];
const SYSTEM = 'system'; // actor of decisions taken on worker reports

const pct = (x: number) => `${Math.round(x * 10_000) / 100}%`;
const ok = (next: LifecycleState, effects: Effect[]): Decision => ({ ok: true, next, effects });
const unchanged = (s: LifecycleState): Decision => ({ ok: true, next: s, effects: [] });
const refuse = (status: 409 | 403 | 422, code: string, message: string): Decision => ({
  ok: false,
  code,
  message,
  status,
});
const invalid = (s: LifecycleState, type: string, hint = ''): Decision =>
  refuse(409, 'INVALID_TRANSITION', `cannot ${type} an operation that is ${s.state}${hint}`);
const frozenRefusal = (type: string) => refuse(409, 'FROZEN', `cannot ${type} while a global freeze is in effect`);
const audit = (
  action: string,
  from: LifecycleState,
  to: LifecycleState,
  actor: string,
  extra: Record<string, unknown> = {},
): Effect => ({
  type: 'audit',
  action: `operation.${action}`,
  detail: { actor, from: from.state, to: to.state, wave: to.currentWave, ...extra },
});
const stop = (reason: string): Effect => ({ type: 'stop_execution', reason });
const listTenants = (ps: ProbeOutcome[]) =>
  ps
    .slice(0, 5)
    .map((p) => `${p.tenantId} (${p.result}${p.detail ? `: ${p.detail}` : ''})`)
    .join(', ') + (ps.length > 5 ? ` and ${ps.length - 5} more` : '');

/** A halt: raise the flag, then roll back or wait for a human, as the halt policy says. */
function halt(s: LifecycleState, reason: string, actor: string, extra: Record<string, unknown> = {}): Decision {
  const rollback = s.haltPolicy.onHalt === 'rollback';
  const next: LifecycleState = {
    ...s,
    state: rollback ? 'rolling_back' : 'halted',
    pausedFrom: null,
    haltReason: reason,
  };
  const effects: Effect[] = [
    stop(reason),
    audit('halted', s, next, actor, { reason, onHalt: s.haltPolicy.onHalt, ...extra }),
  ];
  if (rollback) effects.push({ type: 'enqueue_rollback' });
  return ok(next, effects);
}

/** Every path that queues a wave goes through here, so a freeze can never be bypassed. */
function runWave(
  s: LifecycleState,
  wave: number,
  action: string,
  actor: string,
  extra: Record<string, unknown> = {},
): Decision {
  if (s.frozen) {
    // Only reachable from an inconsistent stored state (running/baking are never frozen): park it.
    const reason = 'global freeze in effect';
    const next: LifecycleState = {
      ...s,
      state: 'paused',
      currentWave: wave,
      pausedFrom: 'running',
      haltReason: reason,
    };
    return ok(next, [stop(reason), audit('paused', s, next, actor, { reason })]);
  }
  const next: LifecycleState = { ...s, state: 'running', currentWave: wave, pausedFrom: null, haltReason: null };
  return ok(next, [audit(action, s, next, actor, extra), { type: 'enqueue_wave', wave }]);
}

function approvalsReady(s: LifecycleState): boolean {
  const valid = s.approvals.filter((a) => a.planHash === s.planHash);
  const people = new Set(valid.map((a) => a.by));
  if (!s.requiresBreakGlass) return people.size >= 1;
  return people.size >= 2 && valid.some((a) => a.role === 'admin');
}

function approve(s: LifecycleState, e: Extract<LifecycleEvent, { type: 'approve' }>): Decision {
  if (s.state !== 'planned') return invalid(s, 'approve');
  if (e.by === s.requestedBy) return refuse(403, 'SELF_APPROVAL', 'the requester cannot approve their own operation');
  if (e.role !== 'approver' && e.role !== 'admin')
    return refuse(403, 'FORBIDDEN', `role ${e.role} cannot approve operations`);
  if (e.planHash !== s.planHash)
    return refuse(
      409,
      'PLAN_HASH_MISMATCH',
      'the approval is for a different plan than the current one; review the plan again',
    );
  if (s.approvals.some((a) => a.by === e.by))
    return refuse(409, 'DUPLICATE_APPROVAL', `${e.by} has already approved this operation`);
  const withApproval: LifecycleState = {
    ...s,
    approvals: [...s.approvals, { by: e.by, role: e.role, planHash: e.planHash }],
  };
  const detail = { approver: e.by, role: e.role, planHash: e.planHash, breakGlass: s.requiresBreakGlass };
  if (!approvalsReady(withApproval))
    return ok(withApproval, [audit('approval_recorded', s, withApproval, e.by, { ...detail, ready: false })]);
  if (s.autoStart && !s.frozen) return runWave(withApproval, 0, 'approved_and_started', e.by, detail);
  const next: LifecycleState = { ...withApproval, state: 'approved' };
  return ok(next, [audit('approved', s, next, e.by, detail)]);
}

function validStats(st: WaveStats, settled: boolean): string | null {
  const counts = [st.done, st.failed, st.consecutiveFailures, st.pending];
  if (!counts.every((n) => Number.isInteger(n) && n >= 0)) return 'wave stats must be non-negative integers';
  if (settled && st.pending !== 0) return 'wave_settled must report pending 0';
  return null;
}

function waveReport(
  s: LifecycleState,
  e: Extract<LifecycleEvent, { type: 'item_outcomes' | 'wave_settled' }>,
): Decision {
  const problem = validStats(e.stats, e.type === 'wave_settled');
  if (problem) return refuse(422, 'INVALID_EVENT', problem);
  // Reports for another wave, or arriving after the wave left running, are late and harmless.
  const executing = s.state === 'running' || (s.state === 'paused' && s.pausedFrom === 'running');
  if (e.wave !== s.currentWave || !executing) return unchanged(s);
  const verdict = assessWave(e.stats, s.haltPolicy);
  // A pause must not hide damage done by items that were in flight: unhealthy still halts.
  if (!verdict.healthy) return halt(s, `wave ${e.wave}: ${verdict.reason}`, SYSTEM, { stats: e.stats });
  if (e.type === 'item_outcomes' || s.state !== 'running') return unchanged(s);
  if (e.wave >= s.waveCount - 1) {
    const next: LifecycleState = { ...s, state: 'completed', pausedFrom: null, haltReason: null };
    return ok(next, [audit('completed', s, next, SYSTEM, { stats: e.stats })]);
  }
  // An empty wave touched nothing, so there is nothing to bake or probe (and an empty probe round
  // would halt as "no data").
  if (e.stats.done + e.stats.failed === 0)
    return runWave(s, e.wave + 1, 'wave_started', SYSTEM, { skippedEmptyWave: e.wave });
  const next: LifecycleState = { ...s, state: 'baking' };
  return ok(next, [
    audit('wave_settled', s, next, SYSTEM, { stats: e.stats }),
    { type: 'start_bake', wave: e.wave, bakeSeconds: s.rollout.bakeSeconds },
  ]);
}

function probes(s: LifecycleState, e: Extract<LifecycleEvent, { type: 'probes' }>): Decision {
  const active = s.state === 'running' || s.state === 'baking' || s.state === 'paused';
  if (e.wave !== s.currentWave || !active) return unchanged(s);
  // Fail closed in every active state: no data, an error or a timeout all count as unhealthy.
  if (e.probes.length === 0) return halt(s, `wave ${e.wave}: no probe data`, SYSTEM);
  const bad = e.probes.filter((p) => BAD_PROBE.includes(p.result));
  if (bad.length > 0)
    return halt(s, `wave ${e.wave}: unhealthy probes: ${listTenants(bad)}`, SYSTEM, { unhealthy: bad.length });
  if (s.state !== 'baking') return unchanged(s); // only a bake moves the rollout forward
  const missing = e.probes.filter((p) => p.result === 'not_configured');
  if (missing.length > 0 && s.haltPolicy.probe === 'required') {
    // Inconclusive (Argo's term): neither healthy nor failing, so a human decides.
    const reason = `inconclusive: no health probe for ${listTenants(missing)}`;
    const next: LifecycleState = { ...s, state: 'paused', pausedFrom: 'baking', haltReason: reason };
    return ok(next, [stop(reason), audit('paused', s, next, SYSTEM, { reason, inconclusive: missing.length })]);
  }
  if (!e.bakeElapsed) return unchanged(s);
  const wave = e.wave + 1;
  if (wave >= s.waveCount) {
    const next: LifecycleState = { ...s, state: 'completed' };
    return ok(next, [audit('completed', s, next, SYSTEM)]);
  }
  return runWave(s, wave, 'wave_started', SYSTEM, { bakedWave: e.wave, probes: e.probes.length });
}

function resume(s: LifecycleState, by: string): Decision {
  if (s.state !== 'paused' && s.state !== 'halted') return invalid(s, 'resume');
  if (s.frozen) return frozenRefusal('resume');
  const wave = s.currentWave ?? 0;
  if (s.state === 'paused' && s.pausedFrom === 'baking') {
    const next: LifecycleState = { ...s, state: 'baking', pausedFrom: null, haltReason: null };
    return ok(next, [audit('resumed', s, next, by), { type: 'start_bake', wave, bakeSeconds: s.rollout.bakeSeconds }]);
  }
  // From a pause in running or a halt: re-queue the wave's pending items; the wave is re-judged.
  return runWave(s, wave, 'resumed', by, { previousReason: s.haltReason });
}

function stopWith(
  s: LifecycleState,
  state: 'paused' | 'rolling_back',
  reason: string,
  by: string,
  frozen = s.frozen,
): Decision {
  const pausedFrom = state === 'paused' && (s.state === 'running' || s.state === 'baking') ? s.state : null;
  const next: LifecycleState = { ...s, state, pausedFrom, haltReason: reason, frozen };
  const effects: Effect[] = [
    stop(reason),
    audit(state === 'paused' ? 'paused' : 'rollback_started', s, next, by, { reason }),
  ];
  if (state === 'rolling_back') effects.push({ type: 'enqueue_rollback' });
  return ok(next, effects);
}

export function decide(s: LifecycleState, e: LifecycleEvent): Decision {
  const always = e.type === 'freeze' || e.type === 'unfreeze';
  if (!always && TERMINAL.includes(s.state)) return invalid(s, e.type);
  if (!always && s.state === 'completed' && e.type !== 'rollback')
    return invalid(s, e.type, '; only a rollback is possible');
  switch (e.type) {
    case 'approve':
      return approve(s, e);
    case 'start':
      if (s.state !== 'approved') return invalid(s, 'start', s.state === 'planned' ? '; it needs approval first' : '');
      if (e.role !== 'operator' && e.role !== 'admin')
        return refuse(403, 'FORBIDDEN', `role ${e.role} cannot start operations`);
      if (s.frozen) return frozenRefusal('start');
      return runWave(s, 0, 'started', e.by);
    case 'cancel':
    case 'abort': {
      if (s.state === 'planned' || s.state === 'approved') {
        const next: LifecycleState = { ...s, state: 'cancelled', haltReason: e.reason };
        return ok(next, [audit('cancelled', s, next, e.by, { reason: e.reason })]);
      }
      const abortable = ['running', 'baking', 'paused', 'halted'].includes(s.state);
      if (e.type === 'cancel')
        return invalid(s, 'cancel', abortable ? '; use abort or rollback once it has started' : '');
      return abortable ? halt(s, `aborted by ${e.by}: ${e.reason}`, e.by, { aborted: true }) : invalid(s, 'abort');
    }
    case 'item_outcomes':
    case 'wave_settled':
      return waveReport(s, e);
    case 'probes':
      return probes(s, e);
    case 'signal': {
      const reason = `signal ${e.kind}${e.tenantId ? ` for tenant ${e.tenantId}` : ''}${e.detail ? `: ${e.detail}` : ''}`;
      if (s.state === 'running' || s.state === 'baking' || s.state === 'paused')
        return halt(s, reason, e.by, { signal: e.kind, tenantId: e.tenantId });
      // Nothing to stop (not started, or already stopped), but the report is still worth keeping.
      return ok(s, [audit('signal_recorded', s, s, e.by, { signal: e.kind, tenantId: e.tenantId, detail: e.detail })]);
    }
    case 'deadline_passed':
      // The deadline covers executing a wave only: a bake has its own clock and a pause waits for a human.
      if (s.state !== 'running' || e.wave !== s.currentWave) return unchanged(s);
      return halt(s, `wave ${e.wave} missed its deadline of ${s.rollout.waveDeadlineSeconds}s`, SYSTEM);
    case 'pause':
      if (s.state !== 'running' && s.state !== 'baking') return invalid(s, 'pause');
      return stopWith(s, 'paused', e.reason, e.by);
    case 'resume':
      return resume(s, e.by);
    case 'rollback':
      if (!['running', 'baking', 'paused', 'halted', 'completed'].includes(s.state)) return invalid(s, 'rollback');
      return stopWith(s, 'rolling_back', `rollback by ${e.by}: ${e.reason}`, e.by);
    case 'freeze': {
      if (s.state === 'running' || s.state === 'baking')
        return stopWith(s, 'paused', `global freeze: ${e.reason}`, e.by, true);
      if (s.frozen) return unchanged(s);
      // A freeze stops deletions, not restores: a rollback in progress carries on.
      const next: LifecycleState = { ...s, frozen: true };
      return ok(next, [audit('frozen', s, next, e.by, { reason: e.reason })]);
    }
    case 'unfreeze': {
      if (!s.frozen) return unchanged(s);
      const next: LifecycleState = { ...s, frozen: false }; // resuming stays a human decision
      return ok(next, [audit('unfrozen', s, next, e.by)]);
    }
    case 'rollback_settled': {
      if (s.state !== 'rolling_back') return invalid(s, 'settle a rollback of');
      if (![e.restored, e.failed].every((n) => Number.isInteger(n) && n >= 0))
        return refuse(422, 'INVALID_EVENT', 'rollback counts must be non-negative integers');
      const next: LifecycleState = { ...s, state: 'rolled_back' };
      const extra =
        e.failed > 0
          ? {
              restored: e.restored,
              failed: e.failed,
              failedRestores: `${e.failed} item(s) could not be restored; see the item ledger`,
            }
          : { restored: e.restored, failed: 0 };
      return ok(next, [audit('rolled_back', s, next, SYSTEM, extra)]);
    }
    default: {
      // Exhaustiveness: a new event type fails to compile here. At run time, never throw.
      const unknown: never = e;
      return refuse(422, 'INVALID_EVENT', `unknown event ${(unknown as { type?: unknown }).type as string}`);
    }
  }
}
