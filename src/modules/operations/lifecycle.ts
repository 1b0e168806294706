// The operation lifecycle as one pure function: decide(state, event, now) → next state + effects.
// No I/O and no clock of its own: time is the `now` argument, and the timers (bake end, wave
// deadline, expiry, stall watchdog) live in the state, set and judged here only.
//
// Contract for the engine that carries this out ("collect intent, commit once"):
// 1. Load the state once, under the operation's row lock, and call decide().
// 2. ok:false → refuse with { code, message, status }; nothing is written.
// 3. ok:true → check the guards, then in ONE transaction write `next` and every `audit` effect;
//    after the commit run the other effects in array order. stop_execution is listed first so the
//    halt flag goes up before anything else; enqueue_wave is the only destructive effect besides
//    run_drill (which restores one deleted item and deletes it again; see lifecycle-drill.ts).
// 4. A decision whose `next` equals `state` and whose effects are empty is a no-op (a stale or
//    late report): nothing is written. Terminal states refuse every report with 409, which workers
//    treat as "drop", not "retry".
// 5. After enqueue_wave(n) the workers eventually report wave_settled for n; after start_bake(n)
//    they send probe rounds until one lands after bakeUntil.
// 6. Before each destructive call a worker checks mayExecute() on fresh state.
import {
  ENDED_STATES,
  rollsBack,
  TERMINAL_STATES,
  type Decision,
  type Effect,
  type LifecycleEvent,
  type LifecycleState,
} from './lifecycle-types.ts';
import {
  afterStop,
  audit,
  bake,
  endRollback,
  operatorRollback,
  expired,
  expiredRefusal,
  frozenRefusal,
  halt,
  invalid,
  ok,
  pauseFor,
  refuse,
  runWave,
  stop,
  STOPPABLE,
  SYSTEM,
  toldAs,
  unchanged,
  type Ok,
} from './lifecycle-steps.ts';
import { probes, timer, waveReport } from './lifecycle-waves.ts';
import { drillResult } from './lifecycle-drill.ts';

export * from './lifecycle-types.ts';

/** What a worker checks right before each destructive call: only a running, unfrozen operation executes. */
export const mayExecute = (s: Pick<LifecycleState, 'state' | 'frozen'>): boolean => s.state === 'running' && !s.frozen;

/**
 * One approval by someone other than the requester; break-glass needs two people, one an admin. An
 * erasure always needs that (whatever its plan says): it destroys what every other path can undo.
 */
function approvalsReady(s: Pick<LifecycleState, 'approvals' | 'planHash' | 'requiresBreakGlass' | 'kind'>) {
  const valid = s.approvals.filter((a) => a.planHash === s.planHash);
  const people = new Set(valid.map((a) => a.by));
  if (!s.requiresBreakGlass && s.kind !== 'erase') return people.size >= 1;
  return people.size >= 2 && valid.some((a) => a.role === 'admin');
}

/**
 * What approvals a planned operation still needs, in words (null: none): the start refusal and the
 * approve answer say it, so a break-glass plan approved once does not read as approved.
 */
export function approvalsMissing(
  s: Pick<LifecycleState, 'approvals' | 'planHash' | 'requiresBreakGlass' | 'kind'>,
): string | null {
  if (approvalsReady(s)) return null;
  if (!s.requiresBreakGlass && s.kind !== 'erase') return 'an approval by someone other than the requester';
  const valid = s.approvals.filter((a) => a.planHash === s.planHash);
  const people = new Set(valid.map((a) => a.by)).size;
  const why = s.kind === 'erase' ? 'a compliance erasure' : 'break-glass';
  if (people === 0) return `two approvals by different people, one of them an admin (${why})`;
  return valid.some((a) => a.role === 'admin')
    ? `a second approval, by another approver or admin (${why} needs two; ${people} in)`
    : `an admin's approval (${why} needs one of its two approvals by an admin; ${people} in, none by an admin)`;
}

function approve(s: LifecycleState, e: Extract<LifecycleEvent, { type: 'approve' }>, now: number): Decision {
  // A retried approval says what it is in any state: once the operation had moved on (approved,
  // started) the same approver's retry was INVALID_TRANSITION, which read as a failure (a trial
  // sent 20 at once). DUPLICATE_APPROVAL tells a client its approval is in.
  if (s.approvals.some((a) => a.by === e.by.id && a.planHash === e.planHash))
    return refuse(409, 'DUPLICATE_APPROVAL', `${e.by.name} has already approved this operation`);
  if (s.state !== 'planned') return invalid(s, 'approve');
  if (expired(s, now)) return expiredRefusal(s);
  if (e.by.id === s.requestedBy)
    return refuse(403, 'SELF_APPROVAL', 'the requester cannot approve their own operation');
  if (e.role !== 'approver' && e.role !== 'admin')
    return refuse(403, 'FORBIDDEN', `role ${e.role} cannot approve operations`);
  if (e.planHash !== s.planHash)
    return refuse(
      409,
      'PLAN_HASH_MISMATCH',
      // Says where the plan and its hash are (a Swagger UI user executing the example's hash had
      // only "review the plan again"), but not the hash itself: an approval must follow a review.
      `the approval is for a different plan than the current one (planHash ${e.planHash.slice(0, 12)}…); review the plan again: GET /v1/operations/{id} shows it and the planHash to approve`,
    );
  if (s.approvals.some((a) => a.by === e.by.id))
    return refuse(409, 'DUPLICATE_APPROVAL', `${e.by.name} has already approved this operation`);
  const withApproval: LifecycleState = {
    ...s,
    approvals: [...s.approvals, { by: e.by.id, role: e.role, planHash: e.planHash }],
  };
  const detail = {
    approver: e.by.name,
    role: e.role,
    planHash: e.planHash,
    breakGlass: s.requiresBreakGlass || s.kind === 'erase',
    ...(e.comment ? { comment: e.comment } : {}),
  };
  if (!approvalsReady(withApproval))
    return ok(withApproval, [audit('approval_recorded', s, withApproval, e.by.name, { ...detail, ready: false })]);
  // It would start now, and cannot: approved, it sat still with no reason given and did not start
  // when the freeze lifted either (a trial). Refused; the approval can be given after the freeze.
  if (s.autoStart && s.frozen)
    return frozenRefusal(
      'approve',
      'this operation starts itself once approved (autoStart); approve it after the freeze is lifted',
    );
  if (s.autoStart) {
    const d = runWave(withApproval, 0, 'approved_and_started', e.by.name, now, detail) as Ok;
    return { ...d, guards: ['plan_fresh'] };
  }
  const next: LifecycleState = { ...withApproval, state: 'approved' };
  return ok(next, [audit('approved', s, next, e.by.name, detail)]);
}

/** `by` is the operator's token name, for the audit. */
function resume(from: LifecycleState, by: string, now: number, reason?: string): Decision {
  if (from.state !== 'paused' && from.state !== 'halted') return invalid(from, 'resume');
  if (from.frozen) return frozenRefusal('resume');
  // A drill that was out when the operation stopped may never answer: the wave's re-settle runs it again.
  const s: LifecycleState = from.drill === 'waiting' ? { ...from, drill: 'due' } : from;
  const wave = s.currentWave ?? 0;
  const withReason = reason ? { reason } : {};
  if (s.state === 'paused' && s.pausedFrom === 'baking') {
    const d = bake(s, wave, 'resumed', now) as Ok;
    // bake() audits as the system; a resume is the operator's act.
    return {
      ...d,
      effects: [audit('resumed', s, d.next, by, withReason), ...d.effects.filter((x) => x.type !== 'audit')],
      guards: ['same_adapters'],
    };
  }
  // From a pause in running or a halt: re-queue the wave's pending items; the wave is re-judged.
  // Its calls go on through the adapters declared now: only into the systems it was planned against.
  const d = runWave(s, wave, 'resumed', by, now, { previousReason: s.haltReason, ...withReason }) as Ok;
  return { ...d, guards: ['same_adapters'] };
}

/** `by` is the operator's token name: it goes into the halt reason people read. */
function rollback(s: LifecycleState, by: string, reason: string): Decision {
  if (s.kind === 'restore')
    return refuse(
      409,
      'ROLLBACK_NOT_SUPPORTED',
      'a restore is never rolled back: that would delete again what it restored. To remove what it brought back, submit a delete operation for those resources',
    );
  if (s.kind === 'erase')
    return refuse(
      409,
      'ROLLBACK_NOT_SUPPORTED',
      'a compliance erasure is never rolled back: what it erased was hard-deleted and its snapshot keys destroyed, so there is nothing to restore',
    );
  if (s.kind === 'purge')
    return refuse(
      409,
      'ROLLBACK_NOT_SUPPORTED',
      'a purge is never rolled back: what it hard-deleted cannot be restored. A halted purge waits: resume it, or abort it to stop purging',
    );
  const fromEnded = ENDED_STATES.includes(s.state);
  if (!fromEnded && !STOPPABLE.includes(s.state)) return invalid(s, 'rollback');
  const why = `rollback by ${by}: ${reason}`;
  // What the operator did, and why it had stopped (a halt's cause): the halt is not left to the audit.
  const next: LifecycleState = {
    ...s,
    state: 'rolling_back',
    pausedFrom: null,
    ...afterStop(s, why),
    waveDeadline: null,
  };
  const effects: Effect[] = [
    stop(why),
    audit('rollback_started', s, next, by, { reason, haltReason: next.haltReason }),
    { type: 'enqueue_rollback' },
  ];
  // Its restores go through the adapters declared now: only into the systems it deleted from. An
  // ended operation gave its resources back; it must hold them again before restoring them.
  return ok(next, effects, fromEnded ? ['same_adapters', 'take_locks'] : ['same_adapters']);
}

function freeze(s: LifecycleState, e: Extract<LifecycleEvent, { type: 'freeze' | 'unfreeze' }>): Decision {
  if (TERMINAL_STATES.includes(s.state) || ENDED_STATES.includes(s.state)) return unchanged(s);
  if (e.type === 'unfreeze') {
    const next: LifecycleState = { ...s, frozen: false }; // resuming stays a human decision
    return ok(next, [audit('unfrozen', s, next, e.by.name, e.reason ? { reason: e.reason } : {})]);
  }
  if (s.state === 'running' || s.state === 'baking')
    return pauseFor({ ...s, frozen: true }, `global freeze: ${e.reason}`, e.by.name, { frozen: true });
  // Not executing: nothing to stop (a freeze stops deletions, not a rollback in progress), but the
  // operation's record says it was frozen.
  const next: LifecycleState = { ...s, frozen: true };
  return ok(next, [audit('frozen', s, next, e.by.name, { reason: e.reason })]);
}

function withProgress(s: LifecycleState, d: Decision, now: number): Decision {
  if (!d.ok || (d.next === s && d.effects.length === 0)) return d;
  const moved = d.next.state !== s.state || d.next.currentWave !== s.currentWave;
  return moved ? { ...d, next: { ...d.next, progressAt: now } } : d;
}

const signalRecorded = (s: LifecycleState, e: Extract<LifecycleEvent, { type: 'signal' }>) =>
  ok(s, [audit('signal_recorded', s, s, e.by.name, { signal: e.kind, tenantId: e.tenantId, detail: e.detail })]);

export function decide(s: LifecycleState, e: LifecycleEvent, now: number): Decision {
  return withProgress(s, decideAt(s, e, now), now);
}

function decideAt(s: LifecycleState, e: LifecycleEvent, now: number): Decision {
  if (e.type === 'timer') return timer(s, now);
  if (e.type === 'freeze' || e.type === 'unfreeze') return freeze(s, e);
  // A report that comes after the end (the first support ticket often does) is kept all the same:
  // nothing is left to halt, and the operator who reads it decides on a rollback.
  if (e.type === 'signal' && (TERMINAL_STATES.includes(s.state) || ENDED_STATES.includes(s.state)))
    return signalRecorded(s, e);
  if (TERMINAL_STATES.includes(s.state)) return invalid(s, e.type);
  if (ENDED_STATES.includes(s.state) && e.type !== 'rollback')
    return invalid(s, e.type, rollsBack(s.kind) ? '; only a rollback is possible' : '');
  switch (e.type) {
    case 'approve':
      return approve(s, e, now);
    case 'start': {
      if (s.state !== 'approved')
        return invalid(
          s,
          'start',
          s.state === 'planned' ? `; it needs ${approvalsMissing(s) ?? 'approval'} first` : '',
        );
      if (e.role !== 'operator' && e.role !== 'admin')
        return refuse(403, 'FORBIDDEN', `role ${e.role} cannot start operations`);
      if (s.frozen) return frozenRefusal('start');
      if (expired(s, now)) return expiredRefusal(s);
      const d = runWave(s, 0, 'started', e.by.name, now, e.reason ? { reason: e.reason } : {}) as Ok;
      return { ...d, guards: ['plan_fresh'] };
    }
    case 'auto_start': {
      // What approve() does for autoStart when the approvals come in, for an operation that needs
      // none (a restore under restoreApproval "none") or was approved during a freeze.
      if (s.state !== 'approved' || !s.autoStart) return invalid(s, 'auto-start', s.autoStart ? '' : ' (no autoStart)');
      if (s.frozen) return frozenRefusal('start');
      if (expired(s, now)) return expiredRefusal(s);
      const d = runWave(s, 0, 'started', e.by.name, now, { autoStart: true }) as Ok;
      return { ...d, guards: ['plan_fresh'] };
    }
    case 'cancel':
    case 'abort': {
      if (s.state === 'planned' || s.state === 'approved') {
        const next: LifecycleState = { ...s, state: 'cancelled', haltReason: e.reason };
        return ok(next, [audit('cancelled', s, next, e.by.name, { reason: e.reason })]);
      }
      if (e.type === 'cancel')
        return invalid(s, 'cancel', STOPPABLE.includes(s.state) ? '; use abort or rollback once it has started' : '');
      // Ending a rollback is the way out of a rollback that cannot finish: it ends, and says so. It
      // takes an abort that asks for it (endRollback): a plain abort while rolling back is most often
      // the second of two (a double click, a retried request, two operators), and ending the rollback
      // the first one started would leave deleted everything it had not restored yet.
      if (s.state === 'rolling_back') {
        if (e.type === 'abort' && e.endRollback)
          return endRollback(s, `rollback aborted by ${e.by.name}: ${e.reason}`, e.by.name, {});
        return invalid(
          s,
          'abort',
          '; it is already rolling back (an abort, a halt or a rollback started that). To end the rollback and leave what it has not restored yet deleted, abort with endRollback: true',
        );
      }
      if (e.type === 'abort' && e.endRollback)
        return invalid(
          s,
          'end the rollback of',
          ' (endRollback: true applies only to an operation that is rolling_back)',
        );
      // A restore, an erasure or a purge has no rollback to fall back on: aborting one ends it. What it did
      // not do is listed with the operation (state cancelled never reads as success).
      if (!rollsBack(s.kind) && STOPPABLE.includes(s.state)) {
        const reason = `${s.kind === 'erase' ? 'erasure' : s.kind} aborted by ${e.by.name}: ${e.reason}`;
        const next: LifecycleState = {
          ...s,
          state: 'cancelled',
          pausedFrom: null,
          ...afterStop(s, reason),
          waveDeadline: null,
        };
        return ok(next, [
          stop(reason),
          audit('cancelled', s, next, e.by.name, { reason, ...toldAs(reason, next), started: true }),
        ]);
      }
      // Halted and waiting for a human (onHalt: pause): an abort would halt it again and change
      // nothing but the reason, while answering changed (a new-user trial). Say what the ways out are.
      if (s.state === 'halted' && !(rollsBack(s.kind) && s.haltPolicy.onHalt === 'rollback'))
        return invalid(
          s,
          'abort',
          ' (stopped already, waiting for a human): rollback restores what it deleted, resume continues it',
        );
      // Of an operation stopped already (paused, halted), the abort is what was done after: the
      // reason it stopped stays the cause.
      return STOPPABLE.includes(s.state)
        ? halt(s, `aborted by ${e.by.name}: ${e.reason}`, e.by.name, { aborted: true }, s.haltCause !== null)
        : invalid(s, 'abort');
    }
    case 'item_outcomes':
    case 'wave_settled':
      return waveReport(s, e, now);
    case 'probes':
      return probes(s, e, now);
    case 'drill_result':
      return drillResult(s, e, now);
    case 'signal': {
      const reason = `signal ${e.kind}${e.tenantId ? ` for tenant ${e.tenantId}` : ''}${e.detail ? `: ${e.detail}` : ''}`;
      if (s.state === 'running' || s.state === 'baking' || s.state === 'paused')
        return halt(s, reason, e.by.name, { signal: e.kind, tenantId: e.tenantId });
      // Nothing to stop (not started, or already stopped), but the report is still worth keeping.
      return signalRecorded(s, e);
    }
    case 'pause':
      if (s.state !== 'running' && s.state !== 'baking') return invalid(s, 'pause');
      return pauseFor(s, e.reason, e.by.name);
    case 'resume':
      return resume(s, e.by.name, now, e.reason);
    case 'rollback':
      return rollback(s, e.by.name, e.reason);
    case 'rollback_settled': {
      if (s.state !== 'rolling_back') return invalid(s, 'settle a rollback of');
      if (![e.restored, e.failed].every((n) => Number.isInteger(n) && n >= 0))
        return refuse(422, 'INVALID_EVENT', 'rollback counts must be non-negative integers');
      if (e.failed > 0) {
        const own = operatorRollback(s);
        const why = `${own ? `${own}: ` : ''}${e.failed} item(s) could not be restored; see the item ledger`;
        return endRollback(s, why, SYSTEM, {
          restored: e.restored,
          failed: e.failed,
        });
      }
      const next: LifecycleState = { ...s, state: 'rolled_back' };
      const said = next.haltReason ? { haltReason: next.haltReason } : {};
      return ok(next, [audit('rolled_back', s, next, SYSTEM, { restored: e.restored, failed: 0, ...said })]);
    }
    default: {
      // Exhaustiveness: a new event type fails to compile here. At run time, never throw.
      const unknown: never = e;
      return refuse(422, 'INVALID_EVENT', `unknown event ${(unknown as { type?: unknown }).type as string}`);
    }
  }
}
