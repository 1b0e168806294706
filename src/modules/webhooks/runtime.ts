// The webhook side of a worker process: the dispatcher loop (audit events → deliveries, see
// dispatch.ts) and the `webhooks` queue consumer that sends them (deliver.ts). Its own queue,
// connection and concurrency, so a slow receiver holds webhook jobs only, never operation work.
import { Queue, Worker } from 'bullmq';
import type { FastifyBaseLogger } from 'fastify';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { HostAllowlist } from '../adapters/host-allowlist.ts';
import { createAgents, deliverOnce, throwUnlessDelivered } from './deliver.ts';
import { DISPATCH_BATCH, dispatchOnce, stalePending } from './dispatch.ts';
import type { WebhookSettings } from './settings.ts';

export const WEBHOOK_QUEUE = 'webhooks';
// BullMQ forbids ':' in custom IDs.
export const deliveryJobId = (id: string) => `delivery.${id}`;

/** A pending delivery untouched this long may have lost its job: queued again (a no-op if not). */
const REARM_AFTER_MS = 60_000;
const REARM_EVERY_MS = 30_000;
/** How long close() waits past a request deadline for BullMQ to let go. */
const CLOSE_GRACE_MS = 2_000;

export interface WebhookRuntimeOptions {
  pool: pg.Pool;
  /** For adding jobs (shared with the other producers of the process). */
  producer: Redis;
  /** The consumer's own blocking connection. */
  connection: Redis;
  prefix: string;
  masterKey: Buffer;
  allow: HostAllowlist;
  settings: WebhookSettings;
  logger: FastifyBaseLogger;
}

export async function startWebhooks(
  o: WebhookRuntimeOptions,
): Promise<{ close(): Promise<void>; pass(): Promise<void> }> {
  const s = o.settings;
  const queue = new Queue<{ deliveryId: string }>(WEBHOOK_QUEUE, {
    connection: o.producer,
    prefix: o.prefix,
    defaultJobOptions: {
      // The delivery row is the record; a finished job would only block re-queuing its ID.
      removeOnComplete: true,
      removeOnFail: true,
      attempts: s.attempts,
      backoff: { type: 'exponential', delay: s.backoffMs },
    },
  });
  queue.on('error', () => undefined);
  const enqueue = async (ids: string[]) => {
    for (let i = 0; i < ids.length; i += 1000)
      await queue.addBulk(
        ids
          .slice(i, i + 1000)
          .map((id) => ({ name: 'deliver', data: { deliveryId: id }, opts: { jobId: deliveryJobId(id) } })),
      );
  };

  const deps = { pool: o.pool, masterKey: o.masterKey, allow: o.allow, timeoutMs: s.timeoutMs, agents: createAgents() };
  const worker = new Worker<{ deliveryId: string }>(
    WEBHOOK_QUEUE,
    async (job) => {
      const final = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      throwUnlessDelivered(await deliverOnce(deps, job.data.deliveryId, final));
    },
    {
      connection: o.connection,
      prefix: o.prefix,
      concurrency: s.concurrency,
      // A job is held at most one request deadline (plus two quick queries).
      lockDuration: Math.max(30_000, 3 * s.timeoutMs),
    },
  );
  worker.on('error', (err) => o.logger.warn({ err }, 'webhook worker error'));
  worker.on('failed', (job, err) => {
    if (job)
      o.logger.info(
        { err: err.message, jobId: job.id, attemptsMade: job.attemptsMade },
        'webhook delivery attempt failed',
      );
  });

  let lastRearm = 0;
  const pass = async () => {
    // A backlog drains batch after batch within one pass.
    for (;;) {
      const d = await dispatchOnce(o.pool);
      if (d.deliveries.length) await enqueue(d.deliveries);
      if (d.read < DISPATCH_BATCH) break;
    }
    if (Date.now() - lastRearm >= REARM_EVERY_MS) {
      lastRearm = Date.now();
      const stale = await stalePending(o.pool, REARM_AFTER_MS);
      if (stale.length) await enqueue(stale);
    }
  };
  let running: Promise<void> | undefined;
  const timer = setInterval(() => {
    if (running) return;
    running = pass()
      .catch((err: unknown) => o.logger.warn({ err }, 'webhook dispatch failed (retried next pass)'))
      .finally(() => {
        running = undefined;
      });
  }, s.pollMs);
  timer.unref();

  return {
    pass,
    async close() {
      clearInterval(timer);
      // A delivery in hand finishes within its request deadline. With Redis down, BullMQ's close
      // (and an enqueue in a pass) would wait for a reconnect that may never come: bounded, like
      // the operation workers' close (worker-runtime.ts); the caller then drops the connections.
      const closing = Promise.all([
        running,
        worker.close().catch((err: unknown) => o.logger.warn({ err }, 'closing the webhook worker failed')),
        queue.close().catch(() => undefined),
      ]);
      let graceTimer: NodeJS.Timeout | undefined;
      const closed = await Promise.race([
        closing.then(() => true),
        new Promise<boolean>((resolve) => {
          graceTimer = setTimeout(() => resolve(false), s.timeoutMs + CLOSE_GRACE_MS);
        }),
      ]);
      clearTimeout(graceTimer);
      if (!closed) o.logger.warn('the webhook worker did not finish closing (Redis unreachable?)');
      deps.agents.http.destroy();
      deps.agents.https.destroy();
    },
  };
}
