// The operation lifecycle as one pure function: decide(state, event, now) → next state + effects.
// No I/O and no clock of its own: time is the `now` argument, and the timers (bake end, wave
// deadline, expiry, stall watchdog) live in the state, set and judged here only.
//
// Contract for the engine that carries this out ("collect intent, commit once"):
// 1. Load the state once, under the operation's row lock, and call decide().
// 2. ok:false → refuse with { code, message, status }; nothing is written.
// 3. ok:true → check the guards, then in ONE transaction write `next` and every `audit` effect;
//    after the commit run the other effects in array order. stop_execution is listed first so the
//    halt flag goes up before anything else; enqueue_wave is the only destructive effect.
// 4. A decision whose `next` equals `state` and whose effects are empty is a no-op (a stale or
//    late report): nothing is written. Terminal states refuse every report with 409, which workers
//    treat as "drop", not "retry".
// 5. After enqueue_wave(n) the workers eventually report wave_settled for n; after start_bake(n)
//    they send probe rounds until one lands after bakeUntil.
// 6. Before each destructive call a worker checks mayExecute() on fresh state.
import {
  ENDED_STATES,
  TERMINAL_STATES,
  type Decision,
  type Effect,
  type Guard,
  type LifecycleEvent,
  type LifecycleState,
  type OpState,
  type ProbeOutcome,
  type WaveStats,
} from './lifecycle-types.ts';
import { assessWave } from './wave-health.ts';

export * from './lifecycle-types.ts';

/** What a worker checks right before each destructive call: only a running, unfrozen operation executes. */
export const mayExecute = (s: Pick<LifecycleState, 'state' | 'frozen'>): boolean => s.state === 'running' && !s.frozen;

const BAD_PROBE: readonly ProbeOutcome['result'][] = ['unhealthy', 'error', 'timeout'];
const SYSTEM = 'system'; // actor of decisions taken on worker reports and timers
const STOPPABLE: readonly OpState[] = ['running', 'baking', 'paused', 'halted'];

type Ok = Extract<Decision, { ok: true }>;
const ok = (next: LifecycleState, effects: Effect[], guards: Guard[] = []): Ok => ({ ok: true, next, effects, guards });
const unchanged = (s: LifecycleState): Decision => ok(s, []);
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
const secs = (ms: number) => `${Math.round(ms / 1000)}s`;

/** A halt: raise the flag, then roll back or wait for a human, as the halt policy says. */
function halt(s: LifecycleState, reason: string, actor: string, extra: Record<string, unknown> = {}): Decision {
  const rollback = s.haltPolicy.onHalt === 'rollback';
  const next: LifecycleState = {
    ...s,
    state: rollback ? 'rolling_back' : 'halted',
    pausedFrom: null,
    haltReason: reason,
    waveDeadline: null,
  };
  const effects: Effect[] = [
    stop(reason),
    audit('halted', s, next, actor, { reason, onHalt: s.haltPolicy.onHalt, ...extra }),
  ];
  if (rollback) effects.push({ type: 'enqueue_rollback' });
  return ok(next, effects);
}

function pauseFor(s: LifecycleState, reason: string, actor: string, extra: Record<string, unknown> = {}): Decision {
  const pausedFrom = s.state === 'running' || s.state === 'baking' ? s.state : s.pausedFrom;
  const next: LifecycleState = { ...s, state: 'paused', pausedFrom, haltReason: reason, waveDeadline: null };
  return ok(next, [stop(reason), audit('paused', s, next, actor, { reason, ...extra })]);
}

/** Every path that queues a wave goes through here, so a freeze can never be bypassed. */
function runWave(s: LifecycleState, wave: number, action: string, actor: string, now: number, extra = {}): Decision {
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
  const next: LifecycleState = {
    ...s,
    state: 'running',
    currentWave: wave,
    pausedFrom: null,
    haltReason: null,
    bakeUntil: null,
    expiresAt: null,
    waveDeadline: now + s.rollout.waveDeadlineSeconds * 1000,
  };
  return ok(next, [audit(action, s, next, actor, extra), { type: 'enqueue_wave', wave }]);
}

function bake(s: LifecycleState, wave: number, action: string, now: number, extra = {}): Decision {
  const next: LifecycleState = {
    ...s,
    state: 'baking',
    pausedFrom: null,
    haltReason: null,
    waveDeadline: null,
    bakeUntil: now + s.rollout.bakeSeconds * 1000,
  };
  return ok(next, [audit(action, s, next, SYSTEM, extra), { type: 'start_bake', wave }]);
}

/** The last wave is done: a clean finish only if no item anywhere failed. */
function finish(s: LifecycleState, failedInWave: number, extra: Record<string, unknown> = {}): Decision {
  const failed = s.failedBefore + failedInWave;
  const next: LifecycleState = {
    ...s,
    state: failed > 0 ? 'completed_with_failures' : 'completed',
    pausedFrom: null,
    haltReason: failed > 0 ? `${failed} item(s) failed; see the item ledger` : null,
    waveDeadline: null,
    bakeUntil: null,
  };
  return ok(next, [audit(next.state, s, next, SYSTEM, { failed, ...extra })]);
}

function approvalsReady(s: LifecycleState): boolean {
  const valid = s.approvals.filter((a) => a.planHash === s.planHash);
  const people = new Set(valid.map((a) => a.by));
  if (!s.requiresBreakGlass) return people.size >= 1;
  return people.size >= 2 && valid.some((a) => a.role === 'admin');
}

const expired = (s: LifecycleState, now: number) => s.expiresAt !== null && now >= s.expiresAt;
const expiredRefusal = (s: LifecycleState) =>
  refuse(409, 'OPERATION_EXPIRED', `the plan expired at ${new Date(s.expiresAt!).toISOString()}; submit it again`);

function approve(s: LifecycleState, e: Extract<LifecycleEvent, { type: 'approve' }>, now: number): Decision {
  if (s.state !== 'planned') return invalid(s, 'approve');
  if (expired(s, now)) return expiredRefusal(s);
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
  if (s.autoStart && !s.frozen) {
    const d = runWave(withApproval, 0, 'approved_and_started', e.by, now, detail) as Ok;
    return { ...d, guards: ['plan_fresh'] };
  }
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
  now: number,
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
  if (e.wave >= s.waveCount - 1) return finish(s, e.stats.failed, { stats: e.stats });
  const next: LifecycleState = { ...s, failedBefore: s.failedBefore + e.stats.failed };
  // An empty wave touched nothing, so there is nothing to bake or probe (and an empty probe round
  // would halt as "no data").
  if (e.stats.done + e.stats.failed === 0)
    return runWave(next, e.wave + 1, 'wave_started', SYSTEM, now, { skippedEmptyWave: e.wave });
  return bake(next, e.wave, 'wave_settled', now, { stats: e.stats });
}

function probes(s: LifecycleState, e: Extract<LifecycleEvent, { type: 'probes' }>, now: number): Decision {
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
    return pauseFor(s, `inconclusive: no health probe for ${listTenants(missing)}`, SYSTEM, {
      inconclusive: missing.length,
    });
  }
  if (s.bakeUntil !== null && now < s.bakeUntil) return unchanged(s);
  if (e.wave + 1 >= s.waveCount) return finish(s, 0);
  return runWave(s, e.wave + 1, 'wave_started', SYSTEM, now, { bakedWave: e.wave, probes: e.probes.length });
}

/** The clock: expiry of unstarted plans, wave deadlines, and the stall watchdog. */
function timer(s: LifecycleState, now: number): Decision {
  const stallMs = s.haltPolicy.stallSeconds * 1000;
  const still = s.progressAt === null ? 0 : now - s.progressAt;
  if (s.state === 'planned' || s.state === 'approved') {
    if (!expired(s, now)) return unchanged(s);
    const next: LifecycleState = { ...s, state: 'expired', haltReason: 'the plan expired before it was started' };
    return ok(next, [audit('expired', s, next, SYSTEM, { expiresAt: new Date(s.expiresAt!).toISOString() })]);
  }
  // A freeze whose fan-out did not reach this operation (the API died halfway) is caught here.
  if ((s.state === 'running' || s.state === 'baking') && s.frozen)
    return pauseFor(s, 'global freeze in effect', SYSTEM);
  if (s.state === 'running' && s.waveDeadline !== null && now >= s.waveDeadline) {
    return halt(s, `wave ${s.currentWave} missed its deadline of ${s.rollout.waveDeadlineSeconds}s`, SYSTEM);
  }
  // A bake moves on its own probe rounds; it has stalled when it outlives its end by stallSeconds.
  const stalled =
    s.state === 'baking'
      ? s.bakeUntil !== null && now >= s.bakeUntil + stallMs
      : (s.state === 'running' || s.state === 'rolling_back') && s.progressAt !== null && still >= stallMs;
  if (!stalled) return unchanged(s);
  const reason = `stalled: no progress for ${secs(still)} (limit ${s.haltPolicy.stallSeconds}s)`;
  if (s.state === 'rolling_back') return endRollback(s, reason, SYSTEM, { stalled: true });
  if (s.haltPolicy.onStall === 'pause') return pauseFor(s, reason, SYSTEM, { stalled: true });
  return halt(s, reason, SYSTEM, { stalled: true });
}

function endRollback(s: LifecycleState, reason: string, actor: string, extra: Record<string, unknown>): Decision {
  const next: LifecycleState = { ...s, state: 'rollback_incomplete', haltReason: reason };
  return ok(next, [stop(reason), audit('rollback_incomplete', s, next, actor, { reason, ...extra })]);
}

function resume(s: LifecycleState, by: string, now: number): Decision {
  if (s.state !== 'paused' && s.state !== 'halted') return invalid(s, 'resume');
  if (s.frozen) return frozenRefusal('resume');
  const wave = s.currentWave ?? 0;
  if (s.state === 'paused' && s.pausedFrom === 'baking') {
    const d = bake(s, wave, 'resumed', now) as Ok;
    // bake() audits as the system; a resume is the operator's act.
    return { ...d, effects: [audit('resumed', s, d.next, by), ...d.effects.filter((x) => x.type !== 'audit')] };
  }
  // From a pause in running or a halt: re-queue the wave's pending items; the wave is re-judged.
  return runWave(s, wave, 'resumed', by, now, { previousReason: s.haltReason });
}

function rollback(s: LifecycleState, by: string, reason: string): Decision {
  const fromEnded = ENDED_STATES.includes(s.state);
  if (!fromEnded && !STOPPABLE.includes(s.state)) return invalid(s, 'rollback');
  const why = `rollback by ${by}: ${reason}`;
  const next: LifecycleState = { ...s, state: 'rolling_back', pausedFrom: null, haltReason: why, waveDeadline: null };
  const effects: Effect[] = [
    stop(why),
    audit('rollback_started', s, next, by, { reason }),
    { type: 'enqueue_rollback' },
  ];
  // An ended operation gave its resources back; it must hold them again before restoring them.
  return ok(next, effects, fromEnded ? ['take_locks'] : []);
}

function freeze(s: LifecycleState, e: Extract<LifecycleEvent, { type: 'freeze' | 'unfreeze' }>): Decision {
  if (TERMINAL_STATES.includes(s.state) || ENDED_STATES.includes(s.state)) return unchanged(s);
  if (e.type === 'unfreeze') {
    const next: LifecycleState = { ...s, frozen: false }; // resuming stays a human decision
    return ok(next, [audit('unfrozen', s, next, e.by)]);
  }
  if (s.state === 'running' || s.state === 'baking')
    return pauseFor({ ...s, frozen: true }, `global freeze: ${e.reason}`, e.by, { frozen: true });
  // Not executing: nothing to stop (a freeze stops deletions, not a rollback in progress), but the
  // operation's record says it was frozen.
  const next: LifecycleState = { ...s, frozen: true };
  return ok(next, [audit('frozen', s, next, e.by, { reason: e.reason })]);
}

function withProgress(s: LifecycleState, d: Decision, now: number): Decision {
  if (!d.ok || (d.next === s && d.effects.length === 0)) return d;
  const moved = d.next.state !== s.state || d.next.currentWave !== s.currentWave;
  return moved ? { ...d, next: { ...d.next, progressAt: now } } : d;
}

export function decide(s: LifecycleState, e: LifecycleEvent, now: number): Decision {
  return withProgress(s, decideAt(s, e, now), now);
}

function decideAt(s: LifecycleState, e: LifecycleEvent, now: number): Decision {
  if (e.type === 'timer') return timer(s, now);
  if (e.type === 'freeze' || e.type === 'unfreeze') return freeze(s, e);
  if (TERMINAL_STATES.includes(s.state)) return invalid(s, e.type);
  if (ENDED_STATES.includes(s.state) && e.type !== 'rollback')
    return invalid(s, e.type, '; only a rollback is possible');
  switch (e.type) {
    case 'approve':
      return approve(s, e, now);
    case 'start': {
      if (s.state !== 'approved') return invalid(s, 'start', s.state === 'planned' ? '; it needs approval first' : '');
      if (e.role !== 'operator' && e.role !== 'admin')
        return refuse(403, 'FORBIDDEN', `role ${e.role} cannot start operations`);
      if (s.frozen) return frozenRefusal('start');
      if (expired(s, now)) return expiredRefusal(s);
      const d = runWave(s, 0, 'started', e.by, now) as Ok;
      return { ...d, guards: ['plan_fresh'] };
    }
    case 'cancel':
    case 'abort': {
      if (s.state === 'planned' || s.state === 'approved') {
        const next: LifecycleState = { ...s, state: 'cancelled', haltReason: e.reason };
        return ok(next, [audit('cancelled', s, next, e.by, { reason: e.reason })]);
      }
      if (e.type === 'cancel')
        return invalid(s, 'cancel', STOPPABLE.includes(s.state) ? '; use abort or rollback once it has started' : '');
      // Aborting a rollback is the way out of a rollback that cannot finish: it ends, and says so.
      if (s.state === 'rolling_back') return endRollback(s, `rollback aborted by ${e.by}: ${e.reason}`, e.by, {});
      return STOPPABLE.includes(s.state)
        ? halt(s, `aborted by ${e.by}: ${e.reason}`, e.by, { aborted: true })
        : invalid(s, 'abort');
    }
    case 'item_outcomes':
    case 'wave_settled':
      return waveReport(s, e, now);
    case 'probes':
      return probes(s, e, now);
    case 'signal': {
      const reason = `signal ${e.kind}${e.tenantId ? ` for tenant ${e.tenantId}` : ''}${e.detail ? `: ${e.detail}` : ''}`;
      if (s.state === 'running' || s.state === 'baking' || s.state === 'paused')
        return halt(s, reason, e.by, { signal: e.kind, tenantId: e.tenantId });
      // Nothing to stop (not started, or already stopped), but the report is still worth keeping.
      return ok(s, [audit('signal_recorded', s, s, e.by, { signal: e.kind, tenantId: e.tenantId, detail: e.detail })]);
    }
    case 'pause':
      if (s.state !== 'running' && s.state !== 'baking') return invalid(s, 'pause');
      return pauseFor(s, e.reason, e.by);
    case 'resume':
      return resume(s, e.by, now);
    case 'rollback':
      return rollback(s, e.by, e.reason);
    case 'rollback_settled': {
      if (s.state !== 'rolling_back') return invalid(s, 'settle a rollback of');
      if (![e.restored, e.failed].every((n) => Number.isInteger(n) && n >= 0))
        return refuse(422, 'INVALID_EVENT', 'rollback counts must be non-negative integers');
      if (e.failed > 0) {
        return endRollback(s, `${e.failed} item(s) could not be restored; see the item ledger`, SYSTEM, {
          restored: e.restored,
          failed: e.failed,
        });
      }
      const next: LifecycleState = { ...s, state: 'rolled_back' };
      return ok(next, [audit('rolled_back', s, next, SYSTEM, { restored: e.restored, failed: 0 })]);
    }
    default: {
      // Exhaustiveness: a new event type fails to compile here. At run time, never throw.
      const unknown: never = e;
      return refuse(422, 'INVALID_EVENT', `unknown event ${(unknown as { type?: unknown }).type as string}`);
    }
  }
}
