// Submitting a restore: check the scope, resolve and classify every resource it names, then record
// either a rejection with its per-ID report or a plan with its ledger — in one transaction, like a
// delete (operations/service.ts), whose plan, lock, report and approval machinery it reuses.
import { createHash, randomBytes } from 'node:crypto';
import type pg from 'pg';
import { canonicalJson } from '../../lib/canonical-json.ts';
import { AppError } from '../../lib/errors.ts';
import { inTransaction } from '../../lib/sql.ts';
import type { Metrics } from '../../plugins/metrics.ts';
import type { Principal } from '../auth/roles.ts';
import { appendAudit } from '../audit/repository.ts';
import { readFreeze } from '../execution/state.ts';
import type { Engine } from '../execution/engine.ts';
import { finished } from 'node:stream/promises';
import { from as copyFrom } from 'pg-copy-streams';
import { inlineBatches, MAX_INLINE_IDS, readIds } from '../operations/intake.ts';
import { markLockedByOthers, storeRejections, summarize, type Classification } from '../operations/planner.ts';
import { buildPlan, computePlanHash, insertWaves, type PlanSummary } from '../operations/plan-build.ts';
import {
  DEFAULT_BUDGETS,
  DEFAULT_PLAN_TTL_SECONDS,
  withHaltDefaults,
  checkWaveSteps,
  withRolloutDefaults,
} from '../operations/policy.ts';
import { loadInTx, type OperationReads, type OperationRow } from '../operations/repository.ts';
import { insertOperation } from '../operations/insert.ts';
import {
  getBudgets,
  getPlanTtlSeconds,
  getResourceType,
  getRestoreApproval,
  unknownTargetType,
} from '../operations/settings-reads.ts';
import { lockPlanned } from '../operations/resource-locks.ts';
import type { ServiceLog } from '../operations/service.ts';
import {
  foldTakenIntoRoots,
  insertRestoreItems,
  liveAtAsOf,
  resolveRestore,
  restoreDigestInput,
  rootTypes,
  splitDescendants,
} from './resolve.ts';
import { checkSource, checkTenant, nothingToRestore, scopeOf } from './scope.ts';
import { markOutOfScope } from './token-scope.ts';
import { scopeReport, type ScopeReport } from '../operations/scope.ts';
import {
  RESTORE_CLASSES,
  RESTORE_HALT,
  RESTORE_ROLLOUT,
  type CreateRestoreBody,
  type RestoreClass,
} from './schemas.ts';
import { replayByKey } from './replay.ts';
import { metricOutcome, planOutcome } from '../../lib/plan-outcome.ts';

export type RestoreResult =
  | { kind: 'planned' | 'rejected'; operation: OperationRow; replayed: boolean }
  | { kind: 'dry_run'; plan: PlanSummary }
  | { kind: 'dry_run_rejected'; classification: Classification<RestoreClass>; tokenScope: ScopeReport | null };

const newOperationId = () => `op_${Date.now().toString(36)}${randomBytes(8).toString('hex')}`;

export interface RestoreSubmission {
  body: CreateRestoreBody;
  idempotencyKey: string | null;
  principal: Principal;
}

export function restoreService(deps: {
  pool: pg.Pool;
  reads: Pick<OperationReads, 'findByIdempotencyKey' | 'get'>;
  engine: Pick<Engine<pg.PoolClient>, 'apply'>;
  metrics: Metrics;
  log: ServiceLog & { warn(obj: object, msg: string): void };
}) {
  const { pool, reads, metrics, log } = deps;

  const replay = (key: string, requestHash: string, tokenId: string) => replayByKey(reads, key, requestHash, tokenId);

  async function submit(s: RestoreSubmission): Promise<RestoreResult> {
    const { body, principal } = s;
    const scope = scopeOf(body);
    const dryRun = body.dryRun ?? false;
    const rollout = withRolloutDefaults({ ...RESTORE_ROLLOUT, ...body.rollout });
    checkWaveSteps(rollout.waves, 'body.rollout.waves');
    const haltPolicy = withHaltDefaults({ ...RESTORE_HALT, ...body.haltPolicy, onHalt: 'pause' });
    const autoStart = body.autoStart ?? false;
    const spec = { action: 'restore', scope, reason: body.reason, ticket: body.ticket, rollout, haltPolicy, autoStart };
    const hash = createHash('sha256').update(canonicalJson(spec)).update('\n');
    const operationId = newOperationId();
    let requestHash = '';
    try {
      const result = await inTransaction(pool, async (client): Promise<RestoreResult> => {
        // What the resolver reads (operations/planner.ts): the named IDs, or those resolve.ts finds.
        await client.query('CREATE TEMP TABLE plan_input (ord int NOT NULL, id text NOT NULL) ON COMMIT DROP');
        if (scope.kind === 'ids') {
          if (!(await getResourceType(client, scope.targetType)))
            throw await unknownTargetType(client, scope.targetType);
          // At most MAX_INLINE_IDS, inline: small enough to copy inside the plan's transaction.
          const sink = async (rows: Buffer) => {
            const copy = client.query(copyFrom('COPY plan_input (ord, id) FROM STDIN'));
            copy.end(rows);
            await finished(copy);
          };
          requestHash = (await readIds(inlineBatches(body.ids!), MAX_INLINE_IDS, sink, hash)).idsHash;
        } else {
          requestHash = hash.digest('hex');
          if (scope.kind === 'operation') await checkSource(client, scope.operationId);
          if (scope.kind === 'tenant') await checkTenant(client, scope.tenantId);
        }
        if (s.idempotencyKey && !dryRun) {
          const existing = await client.query('SELECT 1 FROM operations WHERE idempotency_key = $1', [
            s.idempotencyKey,
          ]);
          if (existing.rowCount) return replay(s.idempotencyKey, requestHash, s.principal.tokenId);
        }
        // It could not start by itself: it sat approved, saying nothing but a line in the server's
        // log, and did not start when the freeze lifted either (a trial). Refused, nothing planned.
        if (autoStart && !dryRun) {
          const freeze = await readFreeze(client);
          if (freeze.frozen)
            throw new AppError(
              409,
              'FROZEN',
              `a global freeze is in effect${freeze.reason ? ` (${freeze.reason})` : ''}: a restore with autoStart cannot start; submit it without autoStart and start it once the freeze is lifted, or submit it then`,
              { field: 'autoStart' },
            );
        }
        const leftOut = await resolveRestore(client, scope);
        await markOutOfScope(client, principal.scope);
        if (scope.kind !== 'ids' && (await client.query('SELECT 1 FROM plan_input LIMIT 1')).rowCount === 0)
          throw nothingToRestore(scope, leftOut);
        await foldTakenIntoRoots(client);
        let cls = await summarize(client, RESTORE_CLASSES);
        // A restore holds its resources like a delete does: take them all, or learn who has them.
        if (!cls.rejected && !dryRun && !(await lockPlanned(client, operationId, cls.counts.ok)))
          cls = await markLockedByOthers(client, operationId, RESTORE_CLASSES);
        if (cls.rejected && (await foldTakenIntoRoots(client))) cls = await summarize(client, RESTORE_CLASSES);
        const base = {
          id: operationId,
          action: 'restore',
          mode: 'restore',
          reason: body.reason,
          ticket: body.ticket,
          requestedBy: principal.tokenId,
          requestedByName: principal.name,
          idempotencyKey: s.idempotencyKey,
          requestHash,
          rollout,
          haltPolicy,
          autoStart,
          scope,
        };
        const audit = { tokenId: principal.tokenId, scope, reason: body.reason, ticket: body.ticket };
        if (cls.rejected) {
          const tokenScope = cls.counts.out_of_scope > 0 ? scopeReport(principal) : null;
          if (dryRun) return { kind: 'dry_run_rejected', classification: cls, tokenScope };
          await insertOperation(client, {
            ...base,
            targetType: scope.kind === 'ids' ? scope.targetType : ((await rootTypes(client))[0]?.type ?? 'unknown'),
            state: 'rejected',
            plan: null,
            planHash: null,
            rejection: { counts: cls.counts, offenders: cls.samples, ...(tokenScope ? { scope: tokenScope } : {}) },
            expiresAt: null,
            itemCount: 0,
            tenantCount: 0,
            requiresBreakGlass: false,
          });
          await storeRejections(client, operationId);
          await appendAudit(client, {
            actor: principal.name,
            action: 'restore.rejected',
            outcome: 'refused',
            operationId,
            payload: { ...audit, counts: cls.counts },
          });
          return { kind: 'rejected', operation: await loadInTx(client, operationId), replayed: false };
        }

        const descendants = await splitDescendants(client);
        const types = await rootTypes(client);
        const targetType = scope.kind === 'ids' ? scope.targetType : types[0]!.type;
        const budgets = { ...DEFAULT_BUDGETS, ...(await getBudgets(client)) };
        const { summary, waveOf } = await buildPlan(client, {
          targetType,
          budgets,
          steps: rollout.waves,
          rootTypes: types,
          restoreBudget: false,
          guardProtected: false,
        });
        // The approval binds to every resource, its type and the snapshot it goes back to, and the waves.
        const digest = createHash('sha256')
          .update(requestHash)
          .update('\n')
          .update(await restoreDigestInput(client));
        const planHash = computePlanHash(
          `restore|${targetType}|${scope.asOf ?? 'latest'}`,
          digest.digest('hex'),
          summary.waves,
          waveOf,
        );
        const live = scope.asOf ? await liveAtAsOf(client, scope.asOf) : null;
        const plan: PlanSummary = {
          ...summary,
          ...(leftOut ? { leftOut } : {}),
          ...(live ? { liveAtAsOf: live } : {}),
          planHash,
        };
        if (dryRun) return { kind: 'dry_run', plan };
        const approved = (await getRestoreApproval(client)) === 'none' && !summary.requiresBreakGlass;
        const ttlSeconds = (await getPlanTtlSeconds(client)) ?? DEFAULT_PLAN_TTL_SECONDS;
        await insertOperation(client, {
          ...base,
          targetType,
          state: approved ? 'approved' : 'planned',
          plan,
          planHash,
          rejection: null,
          expiresAt: new Date(Date.now() + ttlSeconds * 1000),
          itemCount: summary.itemCount,
          tenantCount: summary.tenantCount,
          requiresBreakGlass: summary.requiresBreakGlass,
        });
        await insertRestoreItems(client, operationId, waveOf);
        await insertWaves(client, operationId, summary.waves);
        await appendAudit(client, {
          actor: principal.name,
          action: 'restore.planned',
          outcome: 'accepted',
          operationId,
          payload: {
            ...audit,
            items: summary.itemCount,
            descendants,
            tenants: summary.tenantCount,
            planHash,
            requiresBreakGlass: summary.requiresBreakGlass,
            approval: approved ? 'not required (policy restoreApproval: none)' : 'required',
          },
        });
        return { kind: 'planned', operation: await loadInTx(client, operationId), replayed: false };
      });
      const done = planOutcome(result, operationId);
      metrics.restorePlans.inc({ outcome: metricOutcome(done) });
      log.info({ ...done, scope: scope.kind }, 'restore plan finished');
      if (result.kind === 'planned' && !result.replayed && result.operation.state === 'approved' && autoStart)
        return { ...result, operation: await startNow(result.operation, principal) };
      return result;
    } catch (err) {
      // Two concurrent requests with one Idempotency-Key: the loser replays the winner.
      if (
        s.idempotencyKey &&
        requestHash &&
        (err as { code?: string }).code === '23505' &&
        String((err as { constraint?: string }).constraint).includes('idempotency')
      )
        return replay(s.idempotencyKey, requestHash, s.principal.tokenId);
      throw err;
    }
  }

  /** A restore the policy lets run unapproved, with autoStart: started now, or left approved saying why. */
  async function startNow(op: OperationRow, principal: Principal): Promise<OperationRow> {
    try {
      await deps.engine.apply(
        op.id,
        { type: 'auto_start', by: { id: principal.tokenId, name: principal.name } },
        { name: principal.name, tokenId: principal.tokenId },
      );
    } catch (err) {
      if (!(err instanceof AppError)) throw err;
      log.warn({ err, operationId: op.id }, 'restore not started at once; it stays approved');
    }
    return reads.get(op.id);
  }

  return { submit };
}
