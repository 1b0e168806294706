// Submitting an operation: resolve every ID, then either record a rejection with its per-ID
// report or record a plan and its item ledger — all in one transaction, so nothing is half-written.
import { createHash, randomBytes } from 'node:crypto';
import type pg from 'pg';
import { canonicalJson } from '../../lib/canonical-json.ts';
import { ConflictError, UnprocessableError } from '../../lib/errors.ts';
import { inTransaction } from '../../lib/sql.ts';
import type { Metrics } from '../../plugins/metrics.ts';
import type { Principal } from '../auth/roles.ts';
import { appendAudit } from '../audit/repository.ts';
import { copyIds, createStaging, type IdBatches } from './intake.ts';
import { computePlanHash, insertItems, insertWaves } from './plan-ledger.ts';
import { lockPlanned } from './resource-locks.ts';
import {
  buildPlan,
  classify,
  markLockedByOthers,
  storeRejections,
  type Classification,
  type PlanSummary,
} from './planner.ts';
import { DEFAULT_BUDGETS, DEFAULT_PLAN_TTL_SECONDS, withHaltDefaults, withRolloutDefaults } from './policy.ts';
import {
  getBudgets,
  getPlanTtlSeconds,
  getResourceType,
  insertOperation,
  type OperationReads,
  type OperationRow,
} from './repository.ts';
import type { OperationSpec } from './schemas.ts';

export interface Submission {
  spec: OperationSpec;
  ids: IdBatches;
  maxIds: number;
  idempotencyKey: string | null;
  principal: Principal;
}

export type SubmitResult =
  | { kind: 'planned' | 'rejected'; operation: OperationRow; replayed: boolean }
  | { kind: 'dry_run'; plan: PlanSummary }
  | { kind: 'dry_run_rejected'; classification: Classification };

const newOperationId = () => `op_${Date.now().toString(36)}${randomBytes(8).toString('hex')}`;

export interface ServiceLog {
  info(obj: object, msg: string): void;
}

export function operationService(deps: {
  pool: pg.Pool;
  reads: Pick<OperationReads, 'findByIdempotencyKey'>;
  metrics: Metrics;
  log: ServiceLog;
}) {
  const { pool, reads, metrics, log } = deps;

  async function replay(key: string, requestHash: string): Promise<SubmitResult> {
    const existing = await reads.findByIdempotencyKey(key);
    if (!existing) throw new Error(`idempotency key ${key} vanished`);
    if (existing.requestHash !== requestHash) {
      throw new ConflictError('IDEMPOTENCY_KEY_REUSED', 'This Idempotency-Key was used with a different request body', {
        idempotencyKey: key,
        operationId: existing.id,
      });
    }
    return { kind: existing.state === 'rejected' ? 'rejected' : 'planned', operation: existing, replayed: true };
  }

  async function submit(s: Submission): Promise<SubmitResult> {
    const { spec, principal } = s;
    const dryRun = spec.dryRun ?? false;
    const rollout = withRolloutDefaults(spec.rollout);
    const haltPolicy = withHaltDefaults(spec.haltPolicy);
    const mode = spec.mode ?? 'soft';
    const normalizedSpec = {
      action: 'delete',
      targetType: spec.targetType,
      mode,
      reason: spec.reason,
      ticket: spec.ticket,
      rollout,
      haltPolicy,
      autoStart: spec.autoStart ?? false,
    };
    // The request hash covers the effective spec and every ID in order.
    const hash = createHash('sha256').update(canonicalJson(normalizedSpec)).update('\n');
    let requestHash = '';
    const operationId = newOperationId();
    // Stage timings go to the log: where a slow plan spends its time (intake, resolve, ledger).
    const timings: Record<string, number> = {};
    let mark = performance.now();
    const lap = (stage: string) => {
      const now = performance.now();
      timings[stage] = Math.round(now - mark);
      mark = now;
    };
    try {
      return await inTransaction(pool, async (client): Promise<SubmitResult> => {
        const type = await getResourceType(client, spec.targetType);
        if (!type)
          throw new UnprocessableError(
            'UNKNOWN_TARGET_TYPE',
            `Resource type "${spec.targetType}" is not declared in the registry`,
            { field: 'targetType', targetType: spec.targetType },
          );
        await createStaging(client);
        const intake = await copyIds(client, s.ids, s.maxIds, hash);
        requestHash = intake.idsHash;
        lap('intakeMs');
        if (s.idempotencyKey && !dryRun) {
          const existing = await client.query('SELECT 1 FROM operations WHERE idempotency_key = $1', [
            s.idempotencyKey,
          ]);
          if (existing.rowCount) return replay(s.idempotencyKey, requestHash);
        }
        let cls = await classify(client, type.name, type.id_pattern, type.cascade_to ?? []);
        // A resource is in at most one live operation — the descendants a cascade takes too: take
        // them all, or learn who got there first.
        if (!cls.rejected && !dryRun && !(await lockPlanned(client, operationId, cls.counts.ok + cls.descendants))) {
          cls = await markLockedByOthers(client, operationId);
        }
        lap('classifyMs');
        for (const [c, n] of Object.entries(cls.counts)) if (n) metrics.planIds.inc({ class: c }, n);
        const base = {
          id: operationId,
          action: 'delete',
          targetType: type.name,
          mode,
          reason: spec.reason,
          ticket: spec.ticket,
          requestedBy: principal.tokenId,
          requestedByName: principal.name,
          idempotencyKey: s.idempotencyKey,
          requestHash,
          rollout,
          haltPolicy,
          autoStart: spec.autoStart ?? false,
        };
        if (cls.rejected) {
          if (dryRun) return { kind: 'dry_run_rejected', classification: cls };
          const rejection = { counts: cls.counts, offenders: cls.samples };
          await insertOperation(client, {
            ...base,
            state: 'rejected',
            plan: null,
            planHash: null,
            rejection,
            expiresAt: null,
            itemCount: 0,
            tenantCount: 0,
            requiresBreakGlass: false,
          });
          await storeRejections(client, operationId);
          await appendAudit(client, {
            actor: principal.name,
            action: 'operation.rejected',
            outcome: 'refused',
            operationId,
            payload: {
              tokenId: principal.tokenId,
              targetType: type.name,
              counts: cls.counts,
              ticket: spec.ticket,
              reason: spec.reason,
            },
          });
          return { kind: 'rejected', operation: await loadInTx(client, operationId), replayed: false };
        }
        const budgets = { ...DEFAULT_BUDGETS, ...(await getBudgets(client)) };
        const ttlSeconds = (await getPlanTtlSeconds(client)) ?? DEFAULT_PLAN_TTL_SECONDS;
        const { summary, waveOf } = await buildPlan(client, {
          targetType: type.name,
          budgets,
          steps: rollout.waves,
        });
        if (mode === 'hard') {
          summary.breakGlassReasons.push('mode "hard" deletes permanently, with no retention window');
          summary.requiresBreakGlass = true;
        }
        lap('planMs');
        const planHash = computePlanHash(`${base.action}|${type.name}|${mode}`, requestHash, summary.waves, waveOf);
        const plan: PlanSummary = { ...summary, planHash };
        if (dryRun) return { kind: 'dry_run', plan };
        await insertOperation(client, {
          ...base,
          state: 'planned',
          plan,
          planHash,
          rejection: null,
          expiresAt: new Date(Date.now() + ttlSeconds * 1000),
          itemCount: summary.itemCount,
          tenantCount: summary.tenantCount,
          requiresBreakGlass: summary.requiresBreakGlass,
        });
        await insertItems(client, operationId, waveOf, cls.counts.ok);
        await insertWaves(client, operationId, summary.waves);
        lap('ledgerMs');
        // Last, so the audit chain lock is held for as short a time as possible.
        await appendAudit(client, {
          actor: principal.name,
          action: 'operation.planned',
          outcome: 'accepted',
          operationId,
          payload: {
            tokenId: principal.tokenId,
            targetType: type.name,
            mode,
            items: summary.itemCount,
            tenants: summary.tenantCount,
            planHash,
            requiresBreakGlass: summary.requiresBreakGlass,
            ticket: spec.ticket,
            reason: spec.reason,
          },
        });
        return { kind: 'planned', operation: await loadInTx(client, operationId), replayed: false };
      }).then((r) => {
        lap('commitMs');
        metrics.plans.inc({ outcome: r.kind === 'dry_run_rejected' ? 'rejected' : r.kind });
        log.info({ operationId, outcome: r.kind, ...timings }, 'plan finished');
        return r;
      });
    } catch (err) {
      // Two concurrent requests with one Idempotency-Key: the loser replays the winner.
      if (
        s.idempotencyKey &&
        requestHash &&
        (err as { code?: string }).code === '23505' &&
        String((err as { constraint?: string }).constraint).includes('idempotency')
      ) {
        return replay(s.idempotencyKey, requestHash);
      }
      throw err;
    }
  }

  return { submit };
}

async function loadInTx(client: pg.PoolClient, id: string): Promise<OperationRow> {
  const r = await client.query('SELECT * FROM operations WHERE id = $1', [id]);
  return fromRow(r.rows[0]);
}

/** Maps a raw operations row to the Prisma model shape, so views have one input type. */
export function fromRow(r: Record<string, unknown>): OperationRow {
  return {
    id: r.id,
    action: r.action,
    targetType: r.target_type,
    mode: r.mode,
    reason: r.reason,
    ticket: r.ticket,
    state: r.state,
    requestedBy: r.requested_by,
    requestedByName: r.requested_by_name,
    idempotencyKey: r.idempotency_key,
    requestHash: r.request_hash,
    rollout: r.rollout,
    haltPolicy: r.halt_policy,
    plan: r.plan,
    planHash: r.plan_hash,
    rejection: r.rejection,
    itemCount: r.item_count,
    tenantCount: r.tenant_count,
    requiresBreakGlass: r.requires_break_glass,
    autoStart: r.auto_start,
    currentWave: r.current_wave,
    haltReason: r.halt_reason,
    version: r.version,
    bakeUntil: r.bake_until,
    expiresAt: r.expires_at,
    progressAt: r.progress_at,
    waveDeadline: r.wave_deadline,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    scope: r.scope,
  } as OperationRow;
}

export type OperationService = ReturnType<typeof operationService>;
