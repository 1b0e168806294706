// Control jobs: bake probe rounds, wave deadlines, settle checks and rollback. Each re-reads the
// committed state first and does nothing when the operation has moved on (stale jobs are harmless).
import type { Job } from 'bullmq';
import { AppError } from '../../lib/errors.ts';
import { idempotencyKeyFor, type AdapterItem } from '../adapters/index.ts';
import type { ProbeOutcome } from '../operations/lifecycle.ts';
import { settleCheck, type WorkerDeps } from './chunk.ts';
import type { ControlJob } from './queues.ts';
import { loadOperation, loadWave } from './state.ts';
import { applyEvent } from './transitions.ts';

const SYSTEM = { name: 'system' };
/** Seconds between probe rounds during a bake. */
const PROBE_INTERVAL_MS = 5_000;
const PROBE_CONCURRENCY = 16;
/** Restores per rollback batch, newest first. */
const ROLLBACK_BATCH = 200;

export async function processControl(deps: WorkerDeps, job: Job<ControlJob>): Promise<void> {
  const j = job.data;
  switch (j.kind) {
    case 'bake':
      return bakeRound(deps, j);
    case 'deadline':
      return deadline(deps, j);
    case 'settle':
      return settleCheck(deps, j.opId, j.wave);
    case 'rollback':
      return rollback(deps, j.opId, job.id!);
  }
}

async function tolerate409(p: Promise<unknown>) {
  try {
    await p;
  } catch (err) {
    if (!(err instanceof AppError && err.statusCode === 409)) throw err;
  }
}

/** Probes every tenant touched so far; silence and errors count as unhealthy (fail closed). */
async function bakeRound(deps: WorkerDeps, j: Extract<ControlJob, { kind: 'bake' }>) {
  const op = await loadOperation(deps.pool, j.opId, false);
  if (!op || op.state !== 'baking' || op.currentWave !== j.wave) return;
  const wave = await loadWave(deps.pool, j.opId, j.wave);
  if (!wave) return;
  const tenants = await deps.pool.query<{ tenant_id: string }>(
    `SELECT DISTINCT tenant_id FROM operation_items WHERE operation_id = $1 AND seq < $2 AND executed_seq IS NOT NULL`,
    [j.opId, wave.toSeq],
  );
  const { adapter, hasProbe } = await deps.adapters.get(op.targetType);
  const timeoutMs = op.lifecycle.haltPolicy.probeTimeoutMs;
  const ids = tenants.rows.map((r) => r.tenant_id);
  const probes: ProbeOutcome[] = new Array(ids.length);
  let next = 0;
  const lane = async () => {
    for (let k = next++; k < ids.length; k = next++) {
      if (!hasProbe) {
        probes[k] = { tenantId: ids[k]!, result: 'not_configured' };
        continue;
      }
      // The adapter enforces the timeout; this race is the backstop for a probe that never settles.
      const r = await Promise.race([
        adapter.probe(ids[k]!, { timeoutMs }),
        new Promise<{ result: 'timeout'; detail: string }>((res) =>
          setTimeout(() => res({ result: 'timeout', detail: 'no answer' }), timeoutMs + 500).unref(),
        ),
      ]).catch((e: unknown) => ({ result: 'error' as const, detail: String(e) }));
      probes[k] = { tenantId: ids[k]!, result: r.result, ...(r.detail ? { detail: r.detail } : {}) };
    }
  };
  await Promise.all(Array.from({ length: Math.min(PROBE_CONCURRENCY, ids.length) }, lane));
  const remaining = op.bakeUntil ? op.bakeUntil.getTime() - Date.now() : 0;
  await tolerate409(
    applyEvent(deps.engine, j.opId, { type: 'probes', wave: j.wave, probes, bakeElapsed: remaining <= 0 }, SYSTEM),
  );
  const after = await loadOperation(deps.pool, j.opId, false);
  if (after?.state === 'baking' && after.currentWave === j.wave) {
    const next = nextBakeRound(op.bakeUntil, op.lifecycle.rollout.bakeSeconds, Date.now(), j.round);
    await deps.engine.queues.enqueueControl({ ...j, round: next.round }, next.delayMs);
  }
}

/**
 * Probe rounds fall on fixed slots of the bake: every PROBE_INTERVAL_MS from its start, and its
 * end. A round is named by its slot, so a second chain of rounds (the reconciler re-arming a bake
 * whose job it cannot see) gets the job ID of the chain already waiting and merges into it,
 * instead of probing alongside it — one more chain per sweep, for as long as the bake lasts.
 */
export function nextBakeRound(
  bakeUntil: Date | null,
  bakeSeconds: number,
  now: number,
  after = -1,
): { round: number; delayMs: number } {
  const end = bakeUntil ? bakeUntil.getTime() : now;
  const start = end - bakeSeconds * 1000;
  const last = Math.ceil((bakeSeconds * 1000) / PROBE_INTERVAL_MS);
  const round = Math.max(after + 1, Math.min(last, Math.floor((now - start) / PROBE_INTERVAL_MS) + 1));
  return { round, delayMs: Math.max(0, Math.min(start + round * PROBE_INTERVAL_MS, end) - now) };
}

async function deadline(deps: WorkerDeps, j: Extract<ControlJob, { kind: 'deadline' }>) {
  const r = await deps.pool.query<{ state: string; current_wave: number; late: boolean }>(
    `SELECT state, current_wave, wave_deadline <= now() AS late FROM operations WHERE id = $1`,
    [j.opId],
  );
  const op = r.rows[0];
  if (!op || op.state !== 'running' || op.current_wave !== j.wave) return;
  if (!op.late) {
    // Re-armed by a later enqueue of the same wave; the newer deadline job will judge it.
    return;
  }
  await tolerate409(applyEvent(deps.engine, j.opId, { type: 'deadline_passed', wave: j.wave }, SYSTEM));
}

/**
 * Restores every item this operation may have executed (write-ahead mark set), newest first,
 * through the same adapter, then reports rollback_settled. Items still in flight elsewhere are
 * waited for (bounded by the claim lease), so a straggler's delete is restored too.
 */
async function rollback(deps: WorkerDeps, opId: string, claimer: string) {
  const op = await loadOperation(deps.pool, opId, false);
  if (!op || op.state !== 'rolling_back') return;
  const { adapter } = await deps.adapters.get(op.targetType);
  const deadlineAt = Date.now() + 2 * 60_000;
  for (;;) {
    const batch = await deps.pool.query<{
      seq: number;
      resource_id: string;
      tenant_id: string;
      executed_seq: number;
      data: unknown;
    }>(
      `UPDATE operation_items i SET state = 'restoring', claimed_by = $2, claimed_at = now(), updated_at = now()
       FROM (SELECT seq FROM operation_items
             WHERE operation_id = $1 AND executed_seq IS NOT NULL
               AND (state IN ('done', 'failed') OR (state = 'restoring' AND claimed_by = $2)
                    OR (state IN ('claimed', 'restoring') AND claimed_at < now() - interval '60 seconds'))
             ORDER BY executed_seq DESC LIMIT $3 FOR UPDATE SKIP LOCKED) pick
       WHERE i.operation_id = $1 AND i.seq = pick.seq
       RETURNING i.seq, i.resource_id, i.tenant_id, i.executed_seq, (SELECT data FROM snapshots s WHERE s.id = i.snapshot_id) AS data`,
      [opId, claimer, ROLLBACK_BATCH],
    );
    if (batch.rows.length === 0) {
      const inFlight = await deps.pool.query(
        `SELECT 1 FROM operation_items WHERE operation_id = $1 AND state = 'claimed' LIMIT 1`,
        [opId],
      );
      if (inFlight.rowCount && Date.now() < deadlineAt) {
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      break;
    }
    const rows = batch.rows.sort((a, b) => b.executed_seq - a.executed_seq);
    const items: AdapterItem[] = rows.map((r) => ({
      operationId: opId,
      resourceId: r.resource_id,
      tenantId: r.tenant_id,
      type: op.targetType,
    }));
    const results = await adapter.apply('restore', items, {
      idempotencyKey: idempotencyKeyFor,
      shouldContinue: () => true,
      concurrency: op.lifecycle.rollout.concurrency,
      snapshots: new Map(rows.map((r) => [r.resource_id, r.data])),
    });
    const states = results.map((r) => (r.ok ? 'restored' : 'restore_failed'));
    await deps.pool.query(
      `UPDATE operation_items i SET state = u.state, last_error = u.err, claimed_by = NULL, claimed_at = NULL, updated_at = now()
       FROM unnest($2::int[], $3::text[], $4::text[]) AS u(seq, state, err)
       WHERE i.operation_id = $1 AND i.seq = u.seq AND i.claimed_by = $5`,
      [opId, rows.map((r) => r.seq), states, results.map((r) => (r.ok ? null : r.error.slice(0, 500))), claimer],
    );
    deps.metrics?.items.inc({ outcome: 'restored' }, states.filter((s) => s === 'restored').length);
  }
  // Counted from the ledger, so a rollback resumed after a crash reports the whole of it.
  const c = await deps.pool.query<{ restored: number; failed: number }>(
    `SELECT count(*) FILTER (WHERE state = 'restored')::int AS restored, count(*) FILTER (WHERE state = 'restore_failed')::int AS failed
     FROM operation_items WHERE operation_id = $1`,
    [opId],
  );
  await tolerate409(
    applyEvent(
      deps.engine,
      opId,
      { type: 'rollback_settled', restored: c.rows[0]!.restored, failed: c.rows[0]!.failed },
      SYSTEM,
    ),
  );
}
