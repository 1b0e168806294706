// The vocabulary of the operation lifecycle: states, what decide() reads, the events it takes and
// the effects it asks for. Kept apart from the rules so that workers, the engine and the tests
// import the shapes without the logic.
import type { Role } from '../auth/roles.ts';
import type { HaltPolicy, RolloutPolicy } from './policy.ts';
import type { WaveStats } from './wave-health.ts';

export type { WaveStats } from './wave-health.ts';

export const OP_STATES = [
  'planned',
  'rejected',
  'approved',
  'running',
  'baking',
  'paused',
  'halted',
  'rolling_back',
  'rolled_back',
  'rollback_incomplete',
  'completed',
  'completed_with_failures',
  'cancelled',
  'failed',
  'expired',
] as const;
export type OpState = (typeof OP_STATES)[number];

/** Nothing more happens to these (a freeze or unfreeze changes nothing either). */
export const TERMINAL_STATES: readonly OpState[] = ['rejected', 'cancelled', 'rolled_back', 'failed', 'expired'];
/** Finished, but the operator may still roll them back. */
export const ENDED_STATES: readonly OpState[] = ['completed', 'completed_with_failures', 'rollback_incomplete'];
/** States that hold their resources: no other operation may plan on them (promise 7). */
export const LIVE_STATES: readonly OpState[] = OP_STATES.filter(
  (s) => !TERMINAL_STATES.includes(s) && !ENDED_STATES.includes(s),
);

/**
 * SQL: operation `o` holds its resources: in one of the states bound to `live` (LIVE_STATES), or
 * ended by an abort (a restore, purge or erasure: cancelled; a rollback an operator ended:
 * rollback_incomplete) with its run not settled yet (execution/settle-aborted.ts): a call it sent
 * may still land. Released at once, a hard delete an abort left in flight landed after a restore
 * of the same resource had been planned, run and reported completed, and a second purge sent a
 * second hard delete under another key (a probe). The same rule as operations_unsettled.
 */
export const holdsResources = (o: string, live: string) =>
  `(${o}.state = ANY(${live}::text[]) OR (${o}.state IN ('cancelled', 'rollback_incomplete')
     AND ${o}.settled_at IS NULL AND ${o}.started_at IS NOT NULL))`;

/**
 * SQL: resource `id` is held by an operation that holds its resources (holdsResources), with the
 * live states inlined: for statements whose parameters are taken by other things.
 */
export const heldByLive = (id: string) =>
  `EXISTS (SELECT 1 FROM resource_locks hk JOIN operations ho ON ho.id = hk.operation_id
     WHERE hk.resource_id = ${id} AND ${holdsResources('ho', `'{${LIVE_STATES.join(',')}}'`)})`;

/**
 * Who sent an event: the token id decides identity (self-approval, one approval per person) and
 * the name is what people read (halt reasons, audit details) — a UUID in a reason helps nobody.
 */
export interface Who {
  id: string;
  name: string;
}

/**
 * What an operation does to its items. A restore brings back what deletes took; it is never rolled
 * back (that would delete again what it restored), so it halts to wait for a human instead. An
 * erase (compliance erasure) hard-deletes and destroys the snapshot keys, and a purge hard-deletes
 * what is past its retention: there is nothing to roll back to, so they too halt to wait for a
 * human. An erasure needs an admin and a second approver.
 */
export type OperationKind = 'delete' | 'restore' | 'erase' | 'purge';

/** Only a delete can be undone by its own rollback: a restore would delete again, an erasure or a purge has nothing left. */
export const rollsBack = (kind: OperationKind): boolean => kind === 'delete';

/** Kinds that are never rolled back: a halt waits for a human and an abort ends the operation. */
export const irreversible = (k: OperationKind): boolean => !rollsBack(k);

/**
 * The restore drill of a soft delete (rollout.restoreDrill): off (not asked for, or not a soft
 * delete), pending (due at the first wave that deletes something), waiting (its job is out; the
 * rollout does not move on until it answers), due (it was out when the operation was resumed: the
 * wave's re-settle runs it again), passed, failed (the operation halted; a resume runs it again).
 */
export type DrillStatus = 'off' | 'pending' | 'waiting' | 'due' | 'passed' | 'failed';

export interface Approval {
  by: string; // token id
  role: Role;
  planHash: string;
}

export interface LifecycleState {
  state: OpState;
  kind: OperationKind;
  waveCount: number; // waves in the plan (>= 1)
  currentWave: number | null; // wave being run or baked; null before start
  pausedFrom: 'running' | 'baking' | null;
  haltReason: string | null; // why the operation is stopped (halt, pause, freeze, rollback); null while it runs
  /**
   * Why it stopped running, with the word for how ("halted: …", "paused: …"), kept while it stays
   * stopped: a later reason (an operator's rollback or abort, a rollback that cannot finish) says it
   * too, so the cause of a halt is not left only in the audit. A halt outranks a pause as the cause.
   * Null while it runs, and for an operation that never stopped (a rollback of a completed one).
   */
  haltCause: string | null;
  requiresBreakGlass: boolean;
  planHash: string;
  requestedBy: string; // token id of the requester
  approvals: Approval[];
  autoStart: boolean;
  frozen: boolean; // a global freeze is in effect (an input: the engine reads the setting)
  haltPolicy: HaltPolicy;
  rollout: RolloutPolicy;
  /** Items that failed in the waves before the current one: a last wave with none is a clean finish. */
  failedBefore: number;
  // Timers, as epoch milliseconds. decide() sets them and judges them against its `now`.
  bakeUntil: number | null;
  waveDeadline: number | null;
  /** Last time the operation moved: a transition, or an item outcome recorded in its current wave. */
  progressAt: number | null;
  /** A planned or approved operation expires at this time (policy TTL). */
  expiresAt: number | null;
  drill: DrillStatus;
}

export type ProbeResult = 'healthy' | 'unhealthy' | 'error' | 'timeout' | 'not_configured';
export interface ProbeOutcome {
  tenantId: string;
  /** The type whose adapter was asked, when not the operation's own (a cascade's descendants' system). */
  type?: string;
  result: ProbeResult;
  detail?: string;
}

export type LifecycleEvent =
  | { type: 'approve'; by: Who; role: Role; planHash: string; comment?: string }
  | { type: 'start'; by: Who; role: Role; reason?: string }
  | { type: 'auto_start'; by: Who } // an approved operation that asked to start by itself (autoStart)
  | { type: 'cancel'; by: Who; reason: string }
  // progress during a wave; lastError: the error of the report's last failed item, for the halt reason
  | { type: 'item_outcomes'; wave: number; stats: WaveStats; lastError?: string }
  | { type: 'wave_settled'; wave: number; stats: WaveStats; lastError?: string } // every item of the wave finished (pending 0)
  | { type: 'probes'; wave: number; probes: ProbeOutcome[] } // one outcome per touched tenant
  | { type: 'signal'; kind: string; tenantId?: string; detail?: string; by: Who }
  | { type: 'timer' } // "look at the clock": deadlines, expiry and the stall watchdog
  | { type: 'pause'; by: Who; reason: string }
  | { type: 'resume'; by: Who; reason?: string }
  /** endRollback: end a rollback in progress (rollback_incomplete); a plain abort never does. */
  | { type: 'abort'; by: Who; reason: string; endRollback?: boolean }
  | { type: 'rollback'; by: Who; reason: string }
  | { type: 'freeze'; by: Who; reason: string }
  | { type: 'unfreeze'; by: Who; reason?: string }
  | { type: 'rollback_settled'; restored: number; failed: number }
  /** The restore drill's answer; `stats` are the drilled wave's (settled) counters, to carry on with. */
  | {
      type: 'drill_result';
      wave: number;
      outcome: 'ok' | 'failed';
      resourceId?: string;
      detail?: string;
      stats: WaveStats;
    };

export type Effect =
  | { type: 'enqueue_wave'; wave: number } // DESTRUCTIVE: queue the wave's pending items
  | { type: 'start_bake'; wave: number } // schedule probe rounds until the bake is over
  | { type: 'stop_execution'; reason: string } // raise the halt flag: workers stop before their next call
  | { type: 'run_drill'; wave: number } // restore one deleted item of the wave, compare it, delete it again
  | { type: 'enqueue_rollback' } // queue restores of every item this operation executed, newest first
  | { type: 'audit'; action: string; detail: Record<string, unknown> };

/**
 * Conditions on the world outside the state that the engine checks inside the transaction that
 * commits the decision; one that fails refuses the whole decision (409) and nothing is written.
 * - plan_fresh: every planned resource still has the type, tenant, state and protection it had.
 * - take_locks: the operation can take its resources back from whoever holds them now.
 * - same_adapters: each type it acted on still reaches, through its adapter, the system it was
 *   planned against: a rollback's and a resume's (plan_fresh checks it too).
 */
export type Guard = 'plan_fresh' | 'take_locks' | 'same_adapters';

export type Decision =
  | { ok: true; next: LifecycleState; effects: Effect[]; guards: Guard[] }
  | { ok: false; code: string; message: string; status: 409 | 403 | 422 };
