// Carries the lifecycle out: load under a row lock, decide (pure), then write the next state, the
// approval or signal, and the audit events in ONE transaction; only after the commit run the
// effects (queue work, raise the halt flag). A crash between commit and effects is repaired by the
// reconciler, which re-derives the missing work from the committed state.
import type pg from 'pg';
import type { Redis } from 'ioredis';
import { AppError, NotFoundError } from '../../lib/errors.ts';
import { inTransaction } from '../../lib/sql.ts';
import type { Metrics } from '../../plugins/metrics.ts';
import { appendAudit } from '../audit/repository.ts';
import { decide, type Effect, type LifecycleEvent, type LifecycleState } from '../operations/lifecycle.ts';
import type { Queues } from './queues.ts';
import { loadOperation, loadWave } from './state.ts';

export interface EngineDeps {
  pool: pg.Pool;
  queues: Queues;
  /** Publishes halt notices to workers (Redis pub/sub). */
  publisher: Redis;
  channel: string;
  metrics?: Metrics;
  log?: { warn(obj: object, msg: string): void };
}

export interface Actor {
  name: string;
  tokenId?: string;
}

export interface Applied {
  state: LifecycleState;
  effects: Effect[];
  changed: boolean;
}

/** Applies one event. Refusals become AppErrors (4xx) and write nothing. */
export async function applyEvent(
  deps: EngineDeps,
  opId: string,
  event: LifecycleEvent,
  actor: Actor,
  extra?: (client: pg.PoolClient) => Promise<void>,
): Promise<Applied> {
  const result = await inTransaction(deps.pool, async (client) => {
    const op = await loadOperation(client, opId, true);
    if (!op) throw new NotFoundError('Operation', opId);
    const d = decide(op.lifecycle, event);
    if (!d.ok) throw new AppError(d.status, d.code, d.message, { operationId: opId, state: op.state });
    const changed = d.effects.length > 0 || JSON.stringify(d.next) !== JSON.stringify(op.lifecycle);
    if (!changed) return { state: d.next, effects: d.effects, changed, version: op.version };
    if (event.type === 'approve') {
      await client.query(
        `INSERT INTO approvals (operation_id, approver, approver_name, role, plan_hash, break_glass) VALUES ($1, $2, $3, $4, $5, $6)`,
        [
          opId,
          event.by,
          actor.name,
          event.role,
          event.planHash,
          op.lifecycle.requiresBreakGlass && event.role === 'admin',
        ],
      );
    }
    if (event.type === 'signal') {
      await client.query(
        `INSERT INTO signals (operation_id, kind, tenant_id, detail, source) VALUES ($1, $2, $3, $4, $5)`,
        [opId, event.kind, event.tenantId ?? null, event.detail ?? null, actor.name],
      );
    }
    await extra?.(client);
    const n = d.next;
    const bakeEffect = d.effects.find((e) => e.type === 'start_bake');
    const waveEffect = d.effects.find((e) => e.type === 'enqueue_wave');
    const terminal = ['completed', 'rolled_back', 'cancelled', 'failed'].includes(n.state);
    const upd = await client.query<{ version: number }>(
      `UPDATE operations SET state = $2, current_wave = $3, halt_reason = $4, paused_from = $5, version = version + 1, updated_at = now(),
         started_at = CASE WHEN started_at IS NULL AND $2 = 'running' THEN now() ELSE started_at END,
         finished_at = CASE WHEN $6 THEN now() ELSE finished_at END,
         bake_until = CASE WHEN $7::int IS NOT NULL THEN now() + make_interval(secs => $7::int) ELSE bake_until END,
         wave_deadline = CASE WHEN $8::boolean THEN now() + make_interval(secs => $9::int) ELSE wave_deadline END
       WHERE id = $1 RETURNING version`,
      [
        opId,
        n.state,
        n.currentWave,
        n.haltReason,
        n.pausedFrom,
        terminal,
        bakeEffect ? bakeEffect.bakeSeconds : null,
        !!waveEffect,
        n.rollout.waveDeadlineSeconds,
      ],
    );
    if (waveEffect) {
      await client.query(
        `UPDATE operation_waves SET started_at = coalesce(started_at, now()) WHERE operation_id = $1 AND wave = $2`,
        [opId, waveEffect.wave],
      );
    }
    if (event.type === 'wave_settled') {
      await client.query(`UPDATE operation_waves SET settled_at = now() WHERE operation_id = $1 AND wave = $2`, [
        opId,
        event.wave,
      ]);
    }
    for (const e of d.effects) {
      if (e.type !== 'audit') continue;
      await appendAudit(client, {
        actor: actor.name,
        action: e.action,
        outcome: 'accepted',
        operationId: opId,
        payload: { ...e.detail, tokenId: actor.tokenId ?? null },
      });
    }
    return { state: n, effects: d.effects, changed, version: upd.rows[0]!.version };
  });
  if (result.changed) {
    deps.metrics?.transitions.inc({ state: result.state.state });
    if (result.effects.some((e) => e.type === 'stop_execution')) deps.metrics?.halts.inc({ reason: event.type });
    // The decision is committed: it stands even if Redis is unreachable right now. Queued work is
    // re-derived from the ledger by the reconciler, and workers poll Postgres for halts.
    await runEffects(deps, opId, result.version, result.state, result.effects).catch((err: unknown) =>
      deps.log?.warn({ err, operationId: opId }, 'effects not carried out now; the reconciler will'),
    );
  }
  return { state: result.state, effects: result.effects, changed: result.changed };
}

/** Effects after the commit. Each is idempotent (deterministic job IDs), so re-running is safe. */
export async function runEffects(
  deps: EngineDeps,
  opId: string,
  epoch: number,
  state: LifecycleState,
  effects: Effect[],
) {
  for (const e of effects) {
    switch (e.type) {
      case 'stop_execution':
        await deps.publisher.publish(deps.channel, opId);
        break;
      case 'enqueue_wave': {
        const wave = await loadWave(deps.pool, opId, e.wave);
        if (!wave) break;
        const n = await deps.queues.enqueueWave({ opId, epoch, wave: e.wave }, { from: wave.fromSeq, to: wave.toSeq });
        // A wave with nothing left to run must still be settled, and a deadline armed.
        await deps.queues.enqueueControl(
          { kind: 'deadline', opId, epoch, wave: e.wave },
          state.rollout.waveDeadlineSeconds * 1000,
        );
        if (n === 0) await deps.queues.enqueueControl({ kind: 'settle', opId, epoch, wave: e.wave });
        break;
      }
      case 'start_bake':
        await deps.queues.enqueueControl({ kind: 'bake', opId, epoch, wave: e.wave, round: 0 });
        break;
      case 'enqueue_rollback':
        await deps.queues.enqueueControl({ kind: 'rollback', opId, epoch });
        break;
      case 'audit':
        break;
    }
  }
}
