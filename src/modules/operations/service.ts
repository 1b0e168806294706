// Submitting an operation: stage every ID (staging.ts: no transaction is open while the body
// arrives), then in one short transaction resolve them and either record a rejection with its
// per-ID report or record a plan and its item ledger — so nothing is half-written.
import { createHash, randomBytes } from 'node:crypto';
import type pg from 'pg';
import { canonicalJson } from '../../lib/canonical-json.ts';
import { UnprocessableError } from '../../lib/errors.ts';
import { inTransaction } from '../../lib/sql.ts';
import type { Metrics } from '../../plugins/metrics.ts';
import type { Principal } from '../auth/roles.ts';
import { appendAudit } from '../audit/repository.ts';
import { statesActedOn } from '../erasure/states.ts';
import { readIds, type IdBatches } from './intake.ts';
import { cascadeLeftOut } from './cascade-plan.ts';
import { lockPlanned } from './resource-locks.ts';
import { buildPlan, computePlanHash, insertItems, insertWaves, type PlanSummary } from './plan-build.ts';
import { classify, markLockedByOthers, storeRejections, type Classification } from './planner.ts';
import { snapshotNow } from '../execution/protected-now.ts';
import { applyRollingBudgets, insertOperationTenants } from './rolling-budgets.ts';
import { scopeReport, type ScopeReport } from './scope.ts';
import { DEFAULT_BUDGETS, DEFAULT_PLAN_TTL_SECONDS, withHaltDefaults, withRolloutDefaults } from './policy.ts';
import { findByKeyInTx, loadInTx, type OperationReads, type OperationRow } from './repository.ts';
import { insertOperation } from './insert.ts';
import { getBudgets, getPlanTtlSeconds, getResourceType, unknownTargetType } from './settings-reads.ts';
import type { OperationSpec } from './schemas.ts';
import { replayOf } from '../restores/replay.ts';
import { metricOutcome, planOutcome } from '../../lib/plan-outcome.ts';
import {
  abandonedError,
  analyzeStaging,
  copyToStaging,
  createStagingTable,
  dropStagingTable,
  newStagingTable,
  withPlanInput,
} from './staging.ts';

export interface Submission {
  spec: OperationSpec;
  ids: IdBatches;
  maxIds: number;
  idempotencyKey: string | null;
  principal: Principal;
  /**
   * True once the request was answered without us (it ran out of time, BLASTGATE_HANDLER_TIMEOUT_MS):
   * the plan then rolls back instead of committing an operation the client was told failed.
   */
  abandoned?: () => boolean;
  /** How it arrived when not over HTTP (the CI intake queue and its job), for the audit log. */
  via?: { via: 'intake'; jobId: string };
}

/**
 * Where the request's time went, in ms per stage, in order: intake (body read and staged), classify,
 * lock (resource locks), plan, ledger (items, tenants, waves), commit. Sent as Server-Timing.
 */
export type StageTimings = Record<string, number>;

export type SubmitResult = (
  | { kind: 'planned' | 'rejected'; operation: OperationRow; replayed: boolean }
  | { kind: 'dry_run'; plan: PlanSummary }
  | { kind: 'dry_run_rejected'; classification: Classification; scope: ScopeReport | null }
) & { timings?: StageTimings };

/** The Server-Timing header value of a plan's stage timings (`intake;dur=12, classify;dur=40, …`). */
export const serverTiming = (t: StageTimings) =>
  Object.entries(t)
    .map(([stage, ms]) => `${stage};dur=${ms}`)
    .join(', ');

/** Why every erasure plan needs break-glass approval (an admin and a second approver). */
export const ERASURE_REASON = 'compliance erasure: permanent, destroys snapshots';

const newOperationId = () => `op_${Date.now().toString(36)}${randomBytes(8).toString('hex')}`;

export interface ServiceLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export function operationService(deps: {
  pool: pg.Pool;
  /** The uploads pool: staging writes, one short COPY per batch. */
  uploads: pg.Pool;
  reads: Pick<OperationReads, 'findByIdempotencyKey'>;
  metrics: Metrics;
  log: ServiceLog;
}) {
  const { pool, uploads, reads, metrics, log } = deps;

  /**
   * The operation an Idempotency-Key already made. Inside the submission's transaction it reads on
   * that transaction's connection: a second connection per waiting request would let a burst of
   * retries hold the whole pool while each waits for one more (and nobody gets it).
   */
  async function replay(key: string, requestHash: string, tokenId: string, client?: pg.PoolClient) {
    const existing = client ? await findByKeyInTx(client, key) : await reads.findByIdempotencyKey(key);
    return replayOf(existing, key, requestHash, tokenId);
  }

  async function submit(s: Submission): Promise<SubmitResult> {
    const { spec, principal } = s;
    const dryRun = spec.dryRun ?? false;
    const rollout = withRolloutDefaults(spec.rollout);
    const haltPolicy = withHaltDefaults(spec.haltPolicy);
    // A delete is soft; the one permanent path is a compliance erasure, which says so by name
    // (and needs an admin and a second approver), not a mode flag that quietly skips retention.
    // Beside erasure: true, "hard" only repeats it (a trial was told to use erasure: true, which it
    // had sent).
    if (spec.mode === 'hard' && spec.erasure !== true)
      throw new UnprocessableError(
        'HARD_MODE_REPLACED',
        'mode "hard" is no longer accepted: a delete is soft (restorable during retention). To delete permanently ' +
          'within retention and destroy the snapshots, submit a compliance erasure with erasure: true (it needs an ' +
          'admin approval and a second approver); past retention, a purge removes soft-deleted items',
        { field: 'mode', value: 'hard', use: { erasure: true } },
      );
    const erasure = spec.erasure ?? false;
    // The other contradiction: an erasure is permanent whatever mode says, so "soft" is a mistake
    // to name, not a flag to drop (a trial's soft erasure was planned as the permanent one).
    if (erasure && spec.mode === 'soft')
      throw new UnprocessableError(
        'MODE_CONFLICT',
        'mode "soft" contradicts erasure: true: a compliance erasure deletes permanently and destroys the snapshots. ' +
          'Leave mode out for an erasure, or leave erasure out for a (soft) delete',
        { field: 'mode', value: 'soft', erasure: true },
      );
    const action = erasure ? 'erase' : 'delete';
    const mode = erasure ? 'hard' : 'soft';
    const normalizedSpec = {
      action,
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
    // Stage timings go to the log and the response (Server-Timing): where a slow plan spends its time.
    const timings: StageTimings = {};
    let mark = performance.now();
    const lap = (stage: string) => {
      const now = performance.now();
      timings[stage] = Math.round(now - mark);
      mark = now;
    };
    // Before anything the plan is checked against is read (the type's definition included): a change
    // committed after it is one the plan may not have seen (chunks' protection, start's staleness).
    const protectionSeen = await snapshotNow(pool);
    const type = await getResourceType(pool, spec.targetType);
    if (!type) throw await unknownTargetType(pool, spec.targetType);
    const staged = newStagingTable();
    try {
      await createStagingTable(uploads, staged);
      const intake = await readIds(s.ids, s.maxIds, (rows) => copyToStaging(uploads, staged, rows), hash);
      requestHash = intake.idsHash;
      await analyzeStaging(uploads, staged);
      lap('intake');
      if (s.abandoned?.()) throw abandonedError();
      const plan = async (client: pg.PoolClient): Promise<SubmitResult> => {
        if (s.idempotencyKey && !dryRun) {
          const existing = await client.query('SELECT 1 FROM operations WHERE idempotency_key = $1', [
            s.idempotencyKey,
          ]);
          if (existing.rowCount) return replay(s.idempotencyKey, requestHash, s.principal.tokenId, client);
        }
        let cls = await classify(
          client,
          type.name,
          type.id_pattern,
          type.cascade_to ?? [],
          principal.scope,
          statesActedOn(action),
          { submitted: intake.count, distinct: intake.distinct, lockStage: !dryRun },
          type.external,
        );
        lap('classify');
        // A resource is in at most one live operation — the descendants a cascade takes too: take
        // them all, or learn who got there first.
        if (
          !cls.rejected &&
          !dryRun &&
          !(await lockPlanned(client, operationId, cls.counts.ok + cls.descendants, cls.unlocked))
        ) {
          cls = await markLockedByOthers(client, operationId, undefined, cls.counts.ok + cls.descendants);
        }
        lap('lock');
        for (const [c, n] of Object.entries(cls.counts)) if (n) metrics.planIds.inc({ class: c }, n);
        const base = {
          id: operationId,
          action,
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
          // The scope it was judged against, when that is why: the token's scope may change later.
          const scope = cls.counts.out_of_scope > 0 ? scopeReport(principal) : null;
          if (dryRun) return { kind: 'dry_run_rejected', classification: cls, scope };
          const rejection = { counts: cls.counts, offenders: cls.samples, ...(scope ? { scope } : {}) };
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
              ...s.via,
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
        const { summary, waveOf, loads, protectedTenants } = await buildPlan(client, {
          targetType: type.name,
          budgets,
          steps: rollout.waves,
        });
        const leftOut = await cascadeLeftOut(client, type.cascade_to ?? []);
        if (leftOut.length) summary.cascadeLeftOut = leftOut;
        await applyRollingBudgets(client, summary, {
          requestedBy: principal.tokenId,
          requesterName: principal.name,
          tenants: loads.map((l) => l.tenantId),
          lock: !dryRun,
        });
        if (erasure) {
          summary.breakGlassReasons.push(ERASURE_REASON);
          summary.requiresBreakGlass = true;
        }
        lap('plan');
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
          protectedTenants,
          protectionSeen,
        });
        await insertItems(client, operationId, waveOf, cls.counts.ok, cls.descendants);
        await insertOperationTenants(client, operationId, loads);
        await insertWaves(client, operationId, summary.waves);
        lap('ledger');
        // Last, so the audit chain lock is held for as short a time as possible.
        await appendAudit(client, {
          actor: principal.name,
          action: 'operation.planned',
          outcome: 'accepted',
          operationId,
          payload: {
            tokenId: principal.tokenId,
            ...s.via,
            targetType: type.name,
            kind: action,
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
      };
      return await inTransaction(pool, (client) => withPlanInput(client, staged, () => plan(client), s.abandoned)).then(
        (r) => {
          lap('commit');
          const done = planOutcome(r, operationId);
          metrics.plans.inc({ outcome: metricOutcome(done) });
          const ms = Object.fromEntries(Object.entries(timings).map(([stage, v]) => [`${stage}Ms`, v]));
          log.info({ ...done, ...ms }, 'plan finished');
          return { ...r, timings };
        },
      );
    } catch (err) {
      // Two concurrent requests with one Idempotency-Key: the loser replays the winner.
      if (
        s.idempotencyKey &&
        requestHash &&
        (err as { code?: string }).code === '23505' &&
        String((err as { constraint?: string }).constraint).includes('idempotency')
      ) {
        // Awaited here: the finally below must not leave its rejection unobserved meanwhile.
        return await replay(s.idempotencyKey, requestHash, s.principal.tokenId);
      }
      throw err;
    } finally {
      await dropStagingTable(uploads, staged).catch((err: unknown) =>
        log.warn({ err, table: staged.name }, 'could not drop a staging table; the sweeper will'),
      );
    }
  }

  return { submit };
}

export type OperationService = ReturnType<typeof operationService>;
