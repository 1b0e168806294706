// The one loop every job and command goes through: load the state once (under the operation's
// row lock) → decide(state, event, now) → check the decision's guards → persist what changed with
// its audit events in ONE transaction → after the commit, carry out the effects. A crash between
// commit and effects is repaired by the reconciler, which re-derives queued work from the ledger.
//
// Dependencies are narrow interfaces (the store, the effect ports, the clock) so the loop is
// unit-tested without a database or a queue; src/modules/execution/engine-store.ts is the
// PostgreSQL store.
import { isDeepStrictEqual } from 'node:util';
import { AppError, NotFoundError } from '../../lib/errors.ts';
import type { Metrics } from '../../plugins/metrics.ts';
import { decide, type Effect, type Guard, type LifecycleEvent, type LifecycleState } from '../operations/lifecycle.ts';
import type { ControlJob } from './queues.ts';
import type { OperationRecord, WaveRange } from './state.ts';

export interface Actor {
  name: string;
  tokenId?: string;
}

/** What a committed (or no-op) decision left behind; callers use `state` instead of reading again. */
export interface Applied {
  record: OperationRecord;
  state: LifecycleState;
  effects: Effect[];
  changed: boolean;
  version: number;
  /** Set when a worker report was refused (stale): nothing was written for it. */
  refused?: { code: string; message: string };
}

export interface Change {
  event: LifecycleEvent;
  effects: Effect[];
  actor: Actor;
  now: number;
}

export interface EngineStore<Tx> {
  transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T>;
  /** The operation under its row lock, or undefined. */
  load(tx: Tx, opId: string): Promise<OperationRecord | undefined>;
  /** null when the guard holds; otherwise the 4xx that refuses the decision. */
  guard(tx: Tx, record: OperationRecord, guard: Guard): Promise<AppError | null>;
  /** Writes `next`, the event's own rows (approval, signal) and the audit effects; returns the new version. */
  persist(tx: Tx, record: OperationRecord, next: LifecycleState, change: Change): Promise<number>;
  /**
   * A guard refused the decision (its transaction rolled back): kept on the operation, outside that
   * transaction, so that its view says why it cannot move until its next transition (persist clears it).
   */
  refused?(opId: string, refusal: GuardRefusal): Promise<void>;
}

/** A decision a guard refused: the operation stays where it was, and this says why. */
export interface GuardRefusal {
  /** The command (event type) that was refused. */
  command: string;
  /** The state it was refused in: the view shows the refusal only while the operation is still there. */
  state: string;
  code: string;
  message: string;
  by: string;
  at: number;
}

export interface EffectPorts {
  publishHalt(opId: string): Promise<void>;
  enqueueWave(job: { opId: string; epoch: number; wave: number }, range: WaveRange): Promise<number>;
  enqueueControl(job: ControlJob, delayMs?: number): Promise<void>;
}

export interface EngineDeps<Tx> {
  store: EngineStore<Tx>;
  effects: EffectPorts;
  clock: () => number;
  metrics?: Pick<Metrics, 'transitions' | 'halts'>;
  log?: { warn(obj: object, msg: string): void };
  /**
   * How long apply() waits for the effects before it returns (default EFFECTS_WAIT_MS). They go on
   * in the background; the decision is committed either way.
   */
  effectsWaitMs?: number;
}

/**
 * Effects only wait on Redis. During a Redis outage each of its commands waits for reconnects, and
 * an operator's `start` answered after ~20 s (a new-user trial). Past this wait the command answers
 * with its committed state; the effects finish when Redis is back, or the reconciler re-derives them.
 */
export const EFFECTS_WAIT_MS = 2_000;

/** An event, or a step inside the transaction that yields one (or null: nothing to decide). */
export type EventSource<Tx> = LifecycleEvent | ((tx: Tx) => Promise<LifecycleEvent | null>);

export interface ApplyOptions {
  /** A worker's report: a refusal means it is stale, so it is returned instead of thrown. */
  report?: boolean;
  /**
   * An HTTP command: true once its request was answered without it (503 HANDLER_TIMEOUT). Asked
   * just before the commit, which it then rolls back: the caller was told it did not happen.
   */
  abandoned?: () => boolean;
  /**
   * Called once the decision is committed, before its effects are waited for: an HTTP command
   * starts reading the view it answers with here, so that read and the effects' Redis calls run
   * at once instead of one after the other (each waits its turn on a busy event loop).
   */
  committed?: () => void;
}

export interface Engine<Tx> {
  apply(opId: string, source: EventSource<Tx>, actor: Actor, opts?: ApplyOptions): Promise<Applied | null>;
}

const abandonedCommand = () =>
  new Error('the request was answered on its time limit before the command committed: rolled back');

export function createEngine<Tx>(deps: EngineDeps<Tx>): Engine<Tx> {
  const { store, clock } = deps;
  return {
    async apply(opId, source, actor, opts = {}) {
      let refusal: GuardRefusal | undefined;
      const result = await store
        .transaction(async (tx): Promise<Applied | null> => {
          const event = typeof source === 'function' ? await source(tx) : source;
          if (!event) return null;
          const record = await store.load(tx, opId);
          if (!record) throw new NotFoundError('Operation', opId);
          const now = clock();
          const d = decide(record.lifecycle, event, now);
          const base = { record, state: record.lifecycle, effects: [], changed: false, version: record.version };
          if (!d.ok) {
            // The pure decision names its operation's routes with {id}; a client was handed the
            // template itself ("GET /v1/operations/{id} shows it": a trial).
            const message = d.message.replaceAll('/v1/operations/{id}', `/v1/operations/${opId}`);
            if (opts.report) return { ...base, refused: { code: d.code, message } };
            throw new AppError(d.status, d.code, message, { operationId: opId, state: record.lifecycle.state });
          }
          const changed = d.effects.length > 0 || !isDeepStrictEqual(d.next, record.lifecycle);
          if (!changed) return base;
          for (const g of d.guards) {
            const problem = await store.guard(tx, record, g);
            if (!problem) continue;
            const { code, message } = problem;
            refusal = { command: event.type, state: record.lifecycle.state, code, message, by: actor.name, at: now };
            throw problem;
          }
          const version = await store.persist(tx, record, d.next, { event, effects: d.effects, actor, now });
          if (opts.abandoned?.()) throw abandonedCommand();
          return { record, state: d.next, effects: d.effects, changed, version };
        })
        .catch(async (err: unknown) => {
          // An approved plan refused PLAN_STALE stayed `approved`, its view silent about why it
          // could never start (a trial). Best effort: the refusal itself is the answer either way.
          if (refusal && store.refused)
            await store
              .refused(opId, refusal)
              .catch((e: unknown) => deps.log?.warn({ err: e, operationId: opId }, 'could not keep the refusal'));
          throw err;
        });
      if (result) opts.committed?.();
      if (result?.changed) {
        deps.metrics?.transitions.inc({ state: result.state.state });
        if (result.effects.some((e) => e.type === 'stop_execution')) {
          const event = typeof source === 'function' ? 'report' : source.type;
          deps.metrics?.halts.inc({ reason: event });
        }
        // The decision is committed: it stands even if Redis is unreachable right now. Queued work
        // is re-derived from the ledger by the reconciler, and workers poll Postgres for halts.
        const effects = runEffects(deps.effects, result).then(
          () => 'done' as const,
          (err: unknown) =>
            deps.log?.warn({ err, operationId: opId }, 'effects not carried out now; the reconciler will'),
        );
        let timer: NodeJS.Timeout | undefined;
        const waited = await Promise.race([
          effects,
          new Promise<'waiting'>(
            (r) => (timer = setTimeout(() => r('waiting'), deps.effectsWaitMs ?? EFFECTS_WAIT_MS)),
          ),
        ]);
        clearTimeout(timer);
        if (waited === 'waiting')
          deps.log?.warn(
            { operationId: opId, waitedMs: deps.effectsWaitMs ?? EFFECTS_WAIT_MS },
            'effects still waiting on Redis; answering now, they finish when it is back (or the reconciler re-derives them)',
          );
      }
      return result;
    },
  };
}

/** Effects after the commit. Each is idempotent (deterministic job IDs), so re-running is safe. */
export async function runEffects(ports: EffectPorts, a: Applied) {
  const opId = a.record.id;
  for (const e of a.effects) {
    switch (e.type) {
      case 'stop_execution':
        await ports.publishHalt(opId);
        break;
      case 'enqueue_wave': {
        const range = a.record.waves.find((w) => w.wave === e.wave);
        if (!range) break;
        const n = await ports.enqueueWave({ opId, epoch: a.version, wave: e.wave }, range);
        // A wave with nothing left to run must still be settled.
        if (n === 0) await ports.enqueueControl({ kind: 'settle', opId, epoch: a.version, wave: e.wave });
        break;
      }
      case 'start_bake':
        await ports.enqueueControl({ kind: 'bake', opId, epoch: a.version, wave: e.wave, round: 0 });
        break;
      case 'run_drill':
        await ports.enqueueControl({ kind: 'drill', opId, epoch: a.version, wave: e.wave });
        break;
      case 'enqueue_rollback':
        await ports.enqueueControl({ kind: 'rollback', opId, epoch: a.version });
        break;
      case 'audit':
        break;
    }
  }
}
