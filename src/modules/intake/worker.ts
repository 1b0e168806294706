// The consumer of the CI intake queue in the worker process: thin, the service does the work.
// Finished jobs are kept for a while so a pipeline can read the result, then removed by BullMQ; an
// operation's idempotency lives in PostgreSQL (operations.idempotency_key), not in the job.
import { DelayedError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { Metrics } from '../../plugins/metrics.ts';
import type { OperationReads } from '../operations/repository.ts';
import { operationService, type ServiceLog } from '../operations/service.ts';
import { tokenRepository } from '../auth/repository.ts';
import { authService } from '../auth/service.ts';
import { INTAKE_QUEUE, intakeService, type IntakeResult } from './service.ts';
import { intakeSealKey } from './token-seal.ts';
import { errorsTo, type OutageLog } from '../../lib/outage-log.ts';

/** How long and how many finished jobs stay readable: a day of completed, a week of failed. */
export const KEEP_COMPLETED = { age: 86_400, count: 10_000 };
export const KEEP_FAILED = { age: 7 * 86_400, count: 10_000 };

export interface IntakeWorker {
  close(): Promise<void>;
}

export function startIntakeWorker(opts: {
  connection: Redis;
  prefix: string;
  pool: pg.Pool;
  reads: Pick<OperationReads, 'findByIdempotencyKey'>;
  snapshotKey: Buffer;
  metrics: Metrics;
  log: ServiceLog & { error(obj: object, msg: string): void };
  concurrency?: number;
  lockDurationMs?: number;
  /** The process's log of Redis outages (outage-log.ts). */
  redisOutage?: OutageLog;
}): IntakeWorker {
  const tokens = tokenRepository(opts.pool);
  const intake = intakeService({
    pool: opts.pool,
    auth: authService({ lookup: tokens, repo: tokens }),
    // Staging writes share the worker's pool: a worker process has no uploads pool of its own.
    operations: operationService({
      pool: opts.pool,
      uploads: opts.pool,
      reads: opts.reads,
      metrics: opts.metrics,
      log: opts.log,
    }),
    sealKey: intakeSealKey(opts.snapshotKey),
    metrics: opts.metrics,
    log: opts.log,
  });
  const worker = new Worker<unknown, IntakeResult>(
    INTAKE_QUEUE,
    (job: Job, token?: string) =>
      intake.process(job, async (delayMs) => {
        await job.moveToDelayed(Date.now() + delayMs, token);
        throw new DelayedError();
      }),
    {
      connection: opts.connection,
      prefix: opts.prefix,
      concurrency: opts.concurrency ?? 2,
      ...(opts.lockDurationMs ? { lockDuration: opts.lockDurationMs } : {}),
      removeOnComplete: KEEP_COMPLETED,
      removeOnFail: KEEP_FAILED,
    },
  );
  // As the other consumers: ioredis reconnects a dropped connection; a warning, not an error.
  errorsTo(worker, opts.redisOutage, (err) => opts.log.warn({ err }, 'intake worker: redis error'));
  return { close: () => worker.close() };
}
