// The retention scheduler: a BullMQ job scheduler in the worker process that, on its cron (daily
// by default), proposes a purge of everything due — it plans, never approves and never starts.
// One scheduler id for every worker process: BullMQ keeps one schedule and produces one job per
// slot, however many workers upsert it. A proposal is made only when something is due and no
// earlier proposal still waits (planned or approved): the audit log says why one was skipped.
import { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import { errorsTo, type OutageLog } from '../../lib/outage-log.ts';
import { inTransaction } from '../../lib/sql.ts';
import type { Metrics } from '../../plugins/metrics.ts';
import { appendAudit } from '../audit/repository.ts';
import type { OperationReads } from '../operations/repository.ts';
import type { ServiceLog } from '../operations/service.ts';
import { purgeService, type PurgeResult } from './service.ts';

import { nextFiring } from './cron.ts';

export { DEFAULT_PURGE_PROPOSAL_CRON, parsePurgeCron } from './cron.ts';

export const PURGE_SCHEDULER_ID = 'purge-proposal';
export const RETENTION_QUEUE = 'retention';
/** Who requests the scheduled proposals (never a token: nobody can approve as it). */
export const RETENTION_SCHEDULER = { tokenId: 'retention-scheduler', name: 'retention-scheduler' };
// One proposal at a time across processes, also when it is called directly.
const PROPOSAL_LOCK = 7_342_088;

export interface ProposalDeps {
  pool: pg.Pool;
  reads: Pick<OperationReads, 'findByIdempotencyKey'>;
  metrics?: Pick<Metrics, 'purgePlans'>;
  log: ServiceLog;
}

export type Proposal =
  | { outcome: 'skipped'; why: 'nothing_due' | 'proposal_pending'; pending?: string }
  | { outcome: PurgeResult['kind']; operationId: string | null };

/** Proposes a purge of what is due at `now`, unless nothing is or an earlier proposal still waits. */
export async function proposeDuePurge(deps: ProposalDeps, now: Date): Promise<Proposal> {
  const client = await deps.pool.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [PROPOSAL_LOCK]);
    try {
      return await propose(deps, now);
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [PROPOSAL_LOCK]);
    }
  } finally {
    client.release();
  }
}

async function propose(deps: ProposalDeps, now: Date): Promise<Proposal> {
  const pending = await deps.pool.query<{ id: string; state: string }>(
    `SELECT id, state FROM operations WHERE action = 'purge' AND requested_by = $1 AND state IN ('planned', 'approved')
     ORDER BY created_at LIMIT 1`,
    [RETENTION_SCHEDULER.tokenId],
  );
  const due = await deps.pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM resources WHERE purge_after <= $1 AND state <> 'purged'`,
    [now],
  );
  const waiting = pending.rows[0];
  const skip = waiting
    ? ({ why: 'proposal_pending', pending: waiting.id } as const)
    : due.rows[0]!.n === 0
      ? ({ why: 'nothing_due' } as const)
      : null;
  if (skip) {
    await inTransaction(deps.pool, (tx) =>
      appendAudit(tx, {
        actor: RETENTION_SCHEDULER.name,
        action: 'purge.proposal_skipped',
        outcome: 'info',
        operationId: skip.pending ?? null,
        payload: {
          why: skip.why,
          detail: waiting
            ? `purge ${waiting.id} proposed earlier is still ${waiting.state}: approve and start it, or cancel it, before another is proposed`
            : `nothing is due at ${now.toISOString()}`,
          due: due.rows[0]!.n,
        },
      }),
    );
    deps.metrics?.purgePlans.inc({ outcome: 'skipped' });
    deps.log.info({ ...skip }, 'purge proposal skipped');
    return { outcome: 'skipped', ...skip };
  }
  const result = await purgeService(deps).submit({
    body: {
      dueBefore: now.toISOString(),
      reason: `Scheduled proposal: ${due.rows[0]!.n} soft-deleted resource(s) past their retention at ${now.toISOString()}`,
      ticket: 'retention-scheduler',
    },
    // One proposal per slot even if two schedulers fire at once.
    idempotencyKey: `purge-proposal.${now.toISOString()}`,
    principal: RETENTION_SCHEDULER,
    now,
  });
  return { outcome: result.kind, operationId: 'operation' in result ? result.operation.id : null };
}

export interface PurgeScheduler {
  close(): Promise<void>;
}

/** Upserts the job scheduler (or removes it when off) and runs its jobs in this process. */
export async function startPurgeScheduler(opts: {
  connection: Redis;
  workerConnection: Redis;
  prefix: string;
  cron: string | null;
  deps: ProposalDeps;
  log: ServiceLog & { error(obj: object, msg: string): void };
  /** The process's log of Redis outages (outage-log.ts). */
  redisOutage?: OutageLog;
}): Promise<PurgeScheduler> {
  const queue = new Queue(RETENTION_QUEUE, { connection: opts.connection, prefix: opts.prefix });
  queue.on('error', () => undefined); // the connection's owner logs its errors
  if (opts.cron === null) {
    await queue.removeJobScheduler(PURGE_SCHEDULER_ID);
    await queue.close();
    opts.log.info({ cron: null }, 'retention scheduler: off (BLASTGATE_PURGE_PROPOSAL_CRON=off), no purge proposals');
    return { close: async () => undefined };
  }
  await queue.upsertJobScheduler(
    PURGE_SCHEDULER_ID,
    { pattern: opts.cron, tz: 'UTC' },
    { name: 'propose-purge', opts: { removeOnComplete: true, removeOnFail: 100 } },
  );
  // What the schedule resolved to, so an operator can see it is the one meant.
  const next = nextFiring(opts.cron).toISOString();
  opts.log.info(
    { cron: opts.cron, next },
    `retention scheduler: purge proposals on "${opts.cron}" (UTC), next at ${next}`,
  );
  const worker = new Worker(
    RETENTION_QUEUE,
    async () => {
      await proposeDuePurge(opts.deps, new Date());
    },
    { connection: opts.workerConnection, prefix: opts.prefix, concurrency: 1 },
  );
  // A dropped Redis connection is reconnected by ioredis (and closing one at shutdown says so too): a warning, not an error.
  errorsTo(worker, opts.redisOutage, (err) => opts.log.warn({ err }, 'retention scheduler: redis error'));
  return {
    async close() {
      await worker.close();
      await queue.close();
    },
  };
}
