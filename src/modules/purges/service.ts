// Submitting a purge: check the scope, resolve and classify every resource it names, then record
// either a rejection with its per-ID report or a plan with its ledger — in one transaction, with
// the delete's and the restore's plan, lock, report and idempotency machinery. A purge always
// needs an approval (it is irreversible), and never starts by itself.
import { createHash, randomBytes } from 'node:crypto';
import { finished } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { canonicalJson } from '../../lib/canonical-json.ts';
import { UnprocessableError } from '../../lib/errors.ts';
import { inTransaction } from '../../lib/sql.ts';
import type { Metrics } from '../../plugins/metrics.ts';
import { appendAudit } from '../audit/repository.ts';
import { inlineBatches, MAX_INLINE_IDS, readIds } from '../operations/intake.ts';
import { buildPlan, computePlanHash, insertWaves, type PlanSummary } from '../operations/plan-build.ts';
import { markLockedByOthers, summarize, type Classification } from '../operations/planner.ts';
import {
  DEFAULT_BUDGETS,
  DEFAULT_PLAN_TTL_SECONDS,
  DEFAULT_ROLLOUT,
  withHaltDefaults,
  checkWaveSteps,
  withRolloutDefaults,
} from '../operations/policy.ts';
import { loadInTx, type OperationReads, type OperationRow } from '../operations/repository.ts';
import { insertOperation } from '../operations/insert.ts';
import { summarizeLeftOut } from '../restores/left-out.ts';
import { holdParentsBehindChildren } from './family-waves.ts';
import { getBudgets, getPlanTtlSeconds, getResourceType, unknownTargetType } from '../operations/settings-reads.ts';
import { lockPlanned } from '../operations/resource-locks.ts';
import type { ServiceLog } from '../operations/service.ts';
import { foldTakenIntoRoots, rootTypes } from '../restores/resolve.ts';
import { checkSource, checkTenant, CLOCK_SKEW_MS, scopeOf } from '../restores/scope.ts';
import {
  insertPurgeItems,
  nothingToPurge,
  purgeDigestInput,
  resolvePurge,
  retentionEnds,
  storePurgeRejections,
} from './resolve.ts';
import { PURGE_CLASSES, PURGE_HALT, type CreatePurgeBody, type PurgeClass, type PurgeScope } from './schemas.ts';
import { replayByKey } from '../restores/replay.ts';
import { metricOutcome, planOutcome } from '../../lib/plan-outcome.ts';

export type PurgeResult =
  | { kind: 'planned' | 'rejected'; operation: OperationRow; replayed: boolean }
  | { kind: 'dry_run'; plan: PlanSummary }
  | { kind: 'dry_run_rejected'; classification: Classification<PurgeClass> };

/** Who asks for a purge: a person's token, or the retention scheduler (scheduler.ts). */
export interface Requester {
  tokenId: string;
  name: string;
}

export interface PurgeSubmission {
  body: CreatePurgeBody;
  idempotencyKey: string | null;
  principal: Requester;
  /** The time retention is judged against (tests and the scheduler pass theirs). */
  now?: Date;
}

const newOperationId = () => `op_${Date.now().toString(36)}${randomBytes(8).toString('hex')}`;

/** Exactly one scope; dueBefore is a scope of its own next to the restore's three. */
export function purgeScopeOf(b: CreatePurgeBody, now = new Date()): PurgeScope {
  if (b.dueBefore === undefined) return scopeOf(b, 'purge');
  const others = (['tenantId', 'deletedSince', 'operationId', 'targetType', 'ids'] as const).filter(
    (f) => b[f] !== undefined,
  );
  if (others.length)
    throw new UnprocessableError(
      'SCOPE_CONFLICT',
      `A purge takes exactly one scope, got dueBefore and ${others.join(', ')}: purge what is due, a tenant, an operation, or a list of IDs`,
      {
        fields: ['dueBefore', ...others],
        allowed: ['tenantId [+ deletedSince]', 'operationId', 'targetType [+ ids]', 'dueBefore'],
      },
    );
  // What is due later is still within its retention: a future dueBefore can only be refused item by
  // item (a trial got "PLAN_REJECTED: 1,626 IDs still within their retention"). Said once instead.
  if (Date.parse(b.dueBefore) > now.getTime() + CLOCK_SKEW_MS)
    throw new UnprocessableError(
      'DUE_BEFORE_IN_FUTURE',
      `dueBefore ${b.dueBefore} is in the future (it is ${now.toISOString()} here): only what is past its retention can be purged; give now or an earlier time`,
      { field: 'body.dueBefore', dueBefore: b.dueBefore, now: now.toISOString() },
    );
  return { kind: 'due', dueBefore: new Date(b.dueBefore).toISOString(), asOf: null };
}

export function purgeService(deps: {
  pool: pg.Pool;
  reads: Pick<OperationReads, 'findByIdempotencyKey'>;
  metrics?: Pick<Metrics, 'purgePlans'>;
  log: ServiceLog;
}) {
  const { pool, reads, metrics, log } = deps;

  const replay = (key: string, requestHash: string, tokenId: string) => replayByKey(reads, key, requestHash, tokenId);

  async function submit(s: PurgeSubmission): Promise<PurgeResult> {
    const { body, principal } = s;
    const now = s.now ?? new Date();
    const scope = purgeScopeOf(body, now);
    const dryRun = body.dryRun ?? false;
    const rollout = withRolloutDefaults({ ...DEFAULT_ROLLOUT, ...body.rollout });
    checkWaveSteps(rollout.waves, 'body.rollout.waves');
    const haltPolicy = withHaltDefaults({ ...PURGE_HALT, ...body.haltPolicy, onHalt: 'pause' });
    const spec = { action: 'purge', scope, reason: body.reason, ticket: body.ticket, rollout, haltPolicy };
    const hash = createHash('sha256').update(canonicalJson(spec)).update('\n');
    const operationId = newOperationId();
    let requestHash = '';
    try {
      const result = await inTransaction(pool, async (client): Promise<PurgeResult> => {
        await client.query('CREATE TEMP TABLE plan_input (ord int NOT NULL, id text NOT NULL) ON COMMIT DROP');
        if (scope.kind === 'ids') {
          if (!(await getResourceType(client, scope.targetType)))
            throw await unknownTargetType(client, scope.targetType);
          const sink = async (rows: Buffer) => {
            const copy = client.query(copyFrom('COPY plan_input (ord, id) FROM STDIN'));
            copy.end(rows);
            await finished(copy);
          };
          requestHash = (await readIds(inlineBatches(body.ids!), MAX_INLINE_IDS, sink, hash)).idsHash;
        } else {
          requestHash = hash.digest('hex');
          if (scope.kind === 'operation') await checkSource(client, scope.operationId, 'purge');
          if (scope.kind === 'tenant') await checkTenant(client, scope.tenantId);
        }
        if (s.idempotencyKey && !dryRun) {
          const existing = await client.query('SELECT 1 FROM operations WHERE idempotency_key = $1', [
            s.idempotencyKey,
          ]);
          if (existing.rowCount) return replay(s.idempotencyKey, requestHash, s.principal.tokenId);
        }
        let leftOut = await resolvePurge(client, scope, now);
        if (scope.kind !== 'ids' && (await client.query('SELECT 1 FROM plan_input LIMIT 1')).rowCount === 0)
          throw await nothingToPurge(client, scope, leftOut);
        if ((await holdParentsBehindChildren(client, scope, rollout.waves)) && scope.kind !== 'ids')
          leftOut = await summarizeLeftOut(client);
        await foldTakenIntoRoots(client);
        let cls = await summarize(client, PURGE_CLASSES);
        if (!cls.rejected && !dryRun && !(await lockPlanned(client, operationId, cls.counts.ok)))
          cls = await markLockedByOthers(client, operationId, PURGE_CLASSES);
        if (cls.rejected && (await foldTakenIntoRoots(client))) cls = await summarize(client, PURGE_CLASSES);
        if (cls.rejected) await nameRetentionEnds(client, cls);
        const base = {
          id: operationId,
          action: 'purge',
          mode: 'hard',
          reason: body.reason,
          ticket: body.ticket,
          requestedBy: principal.tokenId,
          requestedByName: principal.name,
          idempotencyKey: s.idempotencyKey,
          requestHash,
          rollout,
          haltPolicy,
          autoStart: false,
          scope,
        };
        const audit = { tokenId: principal.tokenId, scope, reason: body.reason, ticket: body.ticket };
        const types = await rootTypes(client);
        const targetType = scope.kind === 'ids' ? scope.targetType : (types[0]?.type ?? 'unknown');
        if (cls.rejected) {
          if (dryRun) return { kind: 'dry_run_rejected', classification: cls };
          await insertOperation(client, {
            ...base,
            targetType,
            state: 'rejected',
            plan: null,
            planHash: null,
            rejection: { counts: cls.counts, offenders: cls.samples },
            expiresAt: null,
            itemCount: 0,
            tenantCount: 0,
            requiresBreakGlass: false,
          });
          await storePurgeRejections(client, operationId);
          await appendAudit(client, {
            actor: principal.name,
            action: 'purge.rejected',
            outcome: 'refused',
            operationId,
            payload: { ...audit, counts: cls.counts },
          });
          return { kind: 'rejected', operation: await loadInTx(client, operationId), replayed: false };
        }

        const budgets = { ...DEFAULT_BUDGETS, ...(await getBudgets(client)) };
        const { summary, waveOf } = await buildPlan(client, {
          targetType,
          budgets,
          steps: rollout.waves,
          rootTypes: types,
          restoreBudget: false,
        });
        // The approval binds to every resource and its type, and the waves.
        const digest = createHash('sha256')
          .update(requestHash)
          .update('\n')
          .update(await purgeDigestInput(client));
        const planHash = computePlanHash(`purge|${targetType}`, digest.digest('hex'), summary.waves, waveOf);
        const plan: PlanSummary = { ...summary, ...(leftOut ? { leftOut } : {}), planHash };
        if (dryRun) return { kind: 'dry_run', plan };
        const ttlSeconds = (await getPlanTtlSeconds(client)) ?? DEFAULT_PLAN_TTL_SECONDS;
        await insertOperation(client, {
          ...base,
          targetType,
          // Irreversible: always a human's approval (never the requester's own), whatever the policy.
          state: 'planned',
          plan,
          planHash,
          rejection: null,
          expiresAt: new Date(Date.now() + ttlSeconds * 1000),
          itemCount: summary.itemCount,
          tenantCount: summary.tenantCount,
          requiresBreakGlass: summary.requiresBreakGlass,
        });
        await insertPurgeItems(client, operationId, waveOf);
        await insertWaves(client, operationId, summary.waves);
        await appendAudit(client, {
          actor: principal.name,
          action: 'purge.planned',
          outcome: 'accepted',
          operationId,
          payload: {
            ...audit,
            items: summary.itemCount,
            tenants: summary.tenantCount,
            byType: types,
            planHash,
            requiresBreakGlass: summary.requiresBreakGlass,
            approval: 'required (a purge is irreversible)',
          },
        });
        return { kind: 'planned', operation: await loadInTx(client, operationId), replayed: false };
      });
      const done = planOutcome(result, operationId);
      metrics?.purgePlans.inc({ outcome: metricOutcome(done) });
      log.info({ ...done, scope: scope.kind }, 'purge plan finished');
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

  return { submit };
}

/** The report names when each within_retention resource's retention ends. */
async function nameRetentionEnds(client: pg.PoolClient, cls: Classification<PurgeClass>): Promise<void> {
  const within = cls.samples.within_retention;
  if (!within?.length) return;
  const ends = await retentionEnds(client);
  for (const o of within) (o as { purgeAfter?: string }).purgeAfter = ends.get(o.id);
}
