// The engine's PostgreSQL store: one transaction per decision, the state loaded under the
// operation's row lock, guards checked against the registry and the resource locks, and the
// decision written with its audit events before the commit.
import type { Redis } from 'ioredis';
import type pg from 'pg';
import { ConflictError, type AppError } from '../../lib/errors.ts';
import { inTransaction } from '../../lib/sql.ts';
import { appendAudit, AUDIT_CHAIN_LOCK } from '../audit/repository.ts';
import type { Guard, LifecycleState } from '../operations/lifecycle.ts';
import { ENDED_STATES, TERMINAL_STATES } from '../operations/lifecycle.ts';
import { relockTouched } from '../operations/resource-locks.ts';
import { TYPE_SYSTEMS_LOCK } from '../registry/adapter-in-use.ts';
import { actsOnType, adapterSystem, plannedElsewhere } from '../restores/history.ts';
import { restoreStale } from '../restores/stale.ts';
import type { Metrics } from '../../plugins/metrics.ts';
import { erasureAuditDetail } from '../erasure/keys.ts';
import { createEngine, type Change, type Engine, type EngineStore } from './engine.ts';
import type { Queues } from './queues.ts';
import { freshRestoreAttempts } from './rollback-ledger.ts';
import { retryFailedOnResume } from './resume-retry.ts';
import { planStale, STALE_LISTED } from './plan-stale.ts';
import { loadOperation, type OperationRecord } from './state.ts';

const date = (ms: number | null) => (ms === null ? null : new Date(ms));

export function pgEngineStore(pool: pg.Pool): EngineStore<pg.PoolClient> {
  return {
    transaction: (fn) => inTransaction(pool, fn),
    load: (tx, opId) => loadOperation(tx, opId, true),
    guard: (tx, record, guard) => checkGuard(tx, record, guard),
    persist,
    // Only while it is still where it was refused: a command that moved it meanwhile wins.
    refused: async (opId, r) => {
      const refusal = { ...r, at: new Date(r.at).toISOString() };
      await pool.query(`UPDATE operations SET last_refusal = $2, updated_at = now() WHERE id = $1 AND state = $3`, [
        opId,
        refusal,
        r.state,
      ]);
    },
  };
}

async function checkGuard(tx: pg.PoolClient, record: OperationRecord, guard: Guard): Promise<AppError | null> {
  // Before the rest: neither a plan's freshness nor its locks matter through another system. A
  // rollback's take_locks follows its own same_adapters guard, which asked already.
  if (guard !== 'take_locks') {
    const changed = await adaptersChanged(tx, record.id);
    if (changed || guard === 'same_adapters') return changed;
  }
  if (guard === 'take_locks') {
    const held = await relockTouched(tx, record.id);
    if (held.length === 0) {
      // Only a rollback of an ended operation takes its locks back: a new attempt at its restores.
      await freshRestoreAttempts(tx, record.id);
      return null;
    }
    return new ConflictError(
      'RESOURCES_IN_FLIGHT',
      `${held.length === STALE_LISTED ? 'At least ' : ''}${held.length} resource(s) of this operation are now part of another live operation; finish or abort that one first`,
      { heldBy: held },
    );
  }
  if (record.action === 'purge') return restoreStale(tx, record.id, 'purge');
  return record.action === 'restore' ? restoreStale(tx, record.id) : planStale(tx, record);
}

async function persist(tx: pg.PoolClient, record: OperationRecord, n: LifecycleState, c: Change): Promise<number> {
  const opId = record.id;
  const { event, actor } = c;
  if (event.type === 'approve') {
    await tx.query(
      `INSERT INTO approvals (operation_id, approver, approver_name, role, plan_hash, break_glass, comment)
       VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      [
        opId,
        event.by.id,
        event.by.name,
        event.role,
        event.planHash,
        record.lifecycle.requiresBreakGlass && event.role === 'admin',
        event.comment ?? null,
      ],
    );
  }
  if (event.type === 'signal') {
    await tx.query(`INSERT INTO signals (operation_id, kind, tenant_id, detail, source) VALUES ($1, $2, $3, $4, $5)`, [
      opId,
      event.kind,
      event.tenantId ?? null,
      event.detail ?? null,
      actor.name,
    ]);
  }
  if (event.type === 'resume' && record.lifecycle.state === 'halted' && n.currentWave !== null)
    await retryFailedOnResume(tx, opId, n.currentWave);
  const ended = TERMINAL_STATES.includes(n.state) || ENDED_STATES.includes(n.state);
  // The audit chain's lock is taken by this statement when events follow: one round trip less for
  // every command (see appendAudit). The order is the same as before: the operation's row, then the chain.
  const audited = c.effects.some((e) => e.type === 'audit');
  const upd = await tx.query<{ version: number }>(
    `UPDATE operations SET state = $2, current_wave = $3, halt_reason = $4, paused_from = $5, version = version + 1,
       updated_at = now(), bake_until = $6, wave_deadline = $7, progress_at = $8, expires_at = $9,
       started_at = CASE WHEN started_at IS NULL AND $2 = 'running' THEN now() ELSE started_at END,
       finished_at = CASE WHEN $10 THEN now() ELSE NULL END, drill_state = $11, halt_cause = $12, last_refusal = NULL,
       settled_at = CASE WHEN $13 THEN now() ELSE NULL END
     WHERE id = $1 RETURNING version${audited ? `, pg_advisory_xact_lock(${AUDIT_CHAIN_LOCK})::text AS chain` : ''}`,
    [
      opId,
      n.state,
      n.currentWave,
      n.haltReason,
      n.pausedFrom,
      date(n.bakeUntil),
      date(n.waveDeadline),
      date(n.progressAt),
      date(n.expiresAt),
      ended,
      n.drill === 'off' || n.drill === 'pending' ? null : n.drill,
      n.haltCause,
      // A rollback that ended by itself (its run reports when no item is left to try) holds no call
      // out: settled, so it does not hold its resources as an operator-ended one does until its run
      // is settled (holdsResources).
      event.type === 'rollback_settled',
    ],
  );
  for (const e of c.effects) {
    // The drill's row, written with the decision that asks for it: its job finds it by operation.
    if (e.type === 'run_drill')
      await tx.query(`INSERT INTO operation_drills (operation_id, wave) VALUES ($1, $2)`, [opId, e.wave]);
    if (e.type === 'enqueue_wave') {
      await tx.query(
        `UPDATE operation_waves SET started_at = coalesce(started_at, now()) WHERE operation_id = $1 AND wave = $2`,
        [opId, e.wave],
      );
    }
  }
  if (event.type === 'wave_settled') {
    await tx.query(
      `UPDATE operation_waves SET settled_at = coalesce(settled_at, now()) WHERE operation_id = $1 AND wave = $2`,
      [opId, event.wave],
    );
  }
  // A restore's (a purge's) events say so, and the one that ends it says how many items came back
  // (were purged). An erasure's likewise, with the snapshot keys it destroyed.
  const restore =
    record.action === 'restore'
      ? { kind: 'restore', ...(ended ? await restoreCounts(tx, opId) : {}) }
      : record.action === 'purge'
        ? { kind: 'purge', ...(ended ? await purgeCounts(tx, opId) : {}) }
        : record.action === 'erase'
          ? await erasureAuditDetail(tx, opId, ended)
          : {};
  for (const e of c.effects) {
    if (e.type !== 'audit') continue;
    await appendAudit(
      tx,
      {
        actor: actor.name,
        action: e.action,
        outcome: 'accepted',
        operationId: opId,
        payload: { ...e.detail, ...restore, tokenId: actor.tokenId ?? null },
      },
      { chainLocked: true },
    );
  }
  return upd.rows[0]!.version;
}

/** Items of a restore (cascaded descendants included) restored and not, from the ledger. */
async function restoreCounts(tx: pg.PoolClient, opId: string) {
  const r = await tx.query<{ items: number; restored: number }>(
    `SELECT count(*)::int AS items, count(*) FILTER (WHERE state = 'done')::int AS restored
     FROM operation_items WHERE operation_id = $1`,
    [opId],
  );
  const { items, restored } = r.rows[0]!;
  return { items, restored, notRestored: items - restored };
}

/** Items of a purge purged and not, from the ledger. */
async function purgeCounts(tx: pg.PoolClient, opId: string) {
  const { items, restored } = await restoreCounts(tx, opId);
  return { items, purged: restored, notPurged: items - restored };
}

export interface PgEngineOptions {
  pool: pg.Pool;
  queues: Pick<Queues, 'enqueueWave' | 'enqueueControl'>;
  /** Publishes halt notices to workers (Redis pub/sub). */
  publisher: Pick<Redis, 'publish'>;
  channel: string;
  clock?: () => number;
  metrics?: Pick<Metrics, 'transitions' | 'halts'>;
  log?: { warn(obj: object, msg: string): void };
}

/** The engine as the API and the workers run it: PostgreSQL store, BullMQ and Redis pub/sub effects. */
export function pgEngine(o: PgEngineOptions): Engine<pg.PoolClient> {
  return createEngine({
    store: pgEngineStore(o.pool),
    effects: {
      publishHalt: async (opId) => {
        await o.publisher.publish(o.channel, opId);
      },
      enqueueWave: (job, range) => o.queues.enqueueWave(job, { from: range.fromSeq, to: range.toSeq }),
      enqueueControl: (job, delayMs) => o.queues.enqueueControl(job, delayMs),
    },
    clock: o.clock ?? Date.now,
    metrics: o.metrics,
    log: o.log,
  });
}

/**
 * An operation whose types' adapters reach another system than when it was planned (adapterSystem:
 * the kind, an HTTP adapter's base URL) is not started or rolled back: its calls would go through
 * the system declared now. A type re-declared from HTTP to the registry "restored"
 * rows the HTTP delete had left active, sent nothing, and read rolled_back, its resources still
 * deleted in their system; re-pointed at another URL, it restored into a system the delete never
 * called (a probe). Only the types the operation acted on: its target and its descendants' types.
 */
async function adaptersChanged(tx: pg.PoolClient, opId: string): Promise<AppError | null> {
  await tx.query('SELECT pg_advisory_xact_lock_shared($1)', [TYPE_SYSTEMS_LOCK]);
  const r = await tx.query<{ type: string; was: string; now: string }>(
    `SELECT t.name AS type, o.adapter_systems->>t.name AS was, ${adapterSystem('t')} AS now
     FROM operations o JOIN resource_types t ON ${plannedElsewhere('o', 't.name', adapterSystem('t'))}
     WHERE o.id = $1 AND ${actsOnType('o', 't.name')}
     ORDER BY t.name`,
    [opId],
  );
  if (r.rows.length === 0) return null;
  const first = r.rows[0]!;
  return new ConflictError(
    'ADAPTER_CHANGED',
    `Type ${first.type} was planned against ${first.was} and is declared with ${first.now} now: its calls would go to the system declared now, not the one this operation was planned (or deleted) in. Declare the adapter as it was; a start can also plan the operation again, and a rollback that cannot go through that system any more leaves the restores to that system's own tools`,
    { changed: r.rows },
  );
}
