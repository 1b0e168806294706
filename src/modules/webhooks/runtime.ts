// The webhook side of a worker process: the dispatcher loop (audit events → deliveries, see
// dispatch.ts) and the `webhooks` queue consumer that sends them (deliver.ts). Its own queue,
// connection and concurrency, so a slow receiver holds webhook jobs only, never operation work;
// and at most one attempt in flight per endpoint (endpoint-gate.ts), so it holds one of them only.
import { Queue, Worker } from 'bullmq';
import type { FastifyBaseLogger } from 'fastify';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { HostAllowlist } from '../adapters/host-allowlist.ts';
import { createAgents, deliverOnce, throwUnlessDelivered } from './deliver.ts';
import {
  DISPATCH_BATCH,
  dispatchOnce,
  earlierUntried,
  stalePending,
  queueRedeliveries,
  type Queued,
} from './dispatch.ts';
import { endpointGate } from './endpoint-gate.ts';
import { CAPPED_BACKOFF, retryDelayMs, type WebhookSettings } from './settings.ts';
import { errorsTo, outageLog, type OutageLog } from '../../lib/outage-log.ts';

export const WEBHOOK_QUEUE = 'webhooks';
// BullMQ forbids ':' in custom IDs.
export const deliveryJobId = (id: string) => `delivery.${id}`;
/** endpointId is missing on a job queued by a version without the per-endpoint bound. */
export interface DeliveryJob {
  deliveryId: string;
  endpointId?: string;
}

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
  /** The process's log of Redis outages (outage-log.ts). */
  redisOutage?: OutageLog;
}

export async function startWebhooks(
  o: WebhookRuntimeOptions,
): Promise<{ close(o?: { redisReachable?: boolean }): Promise<void>; pass(): Promise<void> }> {
  const s = o.settings;
  const queue = new Queue<DeliveryJob>(WEBHOOK_QUEUE, {
    connection: o.producer,
    prefix: o.prefix,
    defaultJobOptions: {
      // The delivery row is the record; a finished job would only block re-queuing its ID.
      removeOnComplete: true,
      removeOnFail: true,
      attempts: s.attempts,
      backoff: { type: CAPPED_BACKOFF, delay: s.backoffMs },
    },
  });
  queue.on('error', () => undefined);
  const enqueue = async (ds: Queued[]) => {
    for (let i = 0; i < ds.length; i += 1000)
      await queue.addBulk(
        ds.slice(i, i + 1000).map((d) => ({
          name: 'deliver',
          data: { deliveryId: d.id, endpointId: d.endpointId },
          opts: { jobId: deliveryJobId(d.id) },
        })),
      );
  };
  // A parked delivery is woken when the attempt ahead of it ends, within one request deadline: the
  // park delay only matters when that wake is lost.
  const gate = endpointGate({ redis: o.producer, queue, prefix: o.prefix, parkMs: s.timeoutMs });
  const endpointOf = async (deliveryId: string) =>
    (await o.pool.query<{ e: string }>('SELECT endpoint_id AS e FROM webhook_deliveries WHERE id = $1', [deliveryId]))
      .rows[0]?.e;

  const deps = { pool: o.pool, masterKey: o.masterKey, allow: o.allow, timeoutMs: s.timeoutMs, agents: createAgents() };
  const worker = new Worker<DeliveryJob>(
    WEBHOOK_QUEUE,
    async (job, token) => {
      const endpoint = job.data.endpointId ?? (await endpointOf(job.data.deliveryId));
      // No such delivery: nothing to send (deliverOnce skips it).
      if (endpoint === undefined) return;
      const order = Number(job.data.deliveryId);
      // In event order: an earlier delivery of the endpoint not tried yet goes first (endpoint-gate.ts).
      const behind = () => earlierUntried(o.pool, endpoint, job.data.deliveryId);
      if (await behind()) return gate.park(job, token, endpoint, order, behind);
      // Parking uses no attempt of the job (the delivery's own count is what ends it: deliverOnce).
      if (!gate.enter(endpoint)) return gate.park(job, token, endpoint, order);
      try {
        throwUnlessDelivered(await deliverOnce(deps, job.data.deliveryId, s.attempts));
      } finally {
        // A wake that fails is not this attempt's failure: the parked delivery comes back by itself.
        await gate.leave(endpoint).catch((err: unknown) => o.logger.warn({ err }, 'waking a parked webhook failed'));
      }
    },
    {
      connection: o.connection,
      prefix: o.prefix,
      concurrency: s.concurrency,
      // A job is held at most one request deadline (plus two quick queries).
      lockDuration: Math.max(30_000, 3 * s.timeoutMs),
      // Doubling up to backoffMaxMs (settings.ts). A job queued by an older version asks for
      // 'exponential', which BullMQ computes itself.
      settings: { backoffStrategy: (attemptsMade: number) => retryDelayMs(attemptsMade, s) },
    },
  );
  errorsTo(worker, o.redisOutage, (err) => o.logger.warn({ err }, 'webhook worker error'));
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
    // Redeliveries an admin asked for: queued within a poll.
    await queueRedeliveries(o.pool, enqueue);
    if (Date.now() - lastRearm >= REARM_EVERY_MS) {
      lastRearm = Date.now();
      const stale = await stalePending(o.pool, REARM_AFTER_MS);
      if (stale.length) await enqueue(stale);
    }
  };
  let running: Promise<void> | undefined;
  // A pass runs every pollMs: while PostgreSQL or Redis is away each one fails alike.
  const away = outageLog(o.logger, 'webhook dispatch');
  const timer = setInterval(() => {
    if (running) return;
    running = pass()
      .then(
        () => away.ok(),
        (err: unknown) => away.caught(err, () => o.logger.warn({ err }, 'webhook dispatch failed (retried next pass)')),
      )
      .finally(() => {
        running = undefined;
      });
  }, s.pollMs);
  timer.unref();

  return {
    pass,
    async close({ redisReachable = true } = {}) {
      clearInterval(timer);
      // A delivery in hand finishes within its request deadline. With Redis down, BullMQ's close
      // (and an enqueue in a pass) would wait for a reconnect that may never come: bounded, like
      // the operation workers' close (worker-runtime.ts); the caller then drops the connections.
      // Known down: not waited for at all (a delivery cut short stays pending in its row, and is
      // queued again by the next pass: deliveries are at least once).
      const grace = redisReachable ? s.timeoutMs + CLOSE_GRACE_MS : 0;
      const closing = Promise.all([
        running,
        worker.close().catch((err: unknown) => o.logger.warn({ err }, 'closing the webhook worker failed')),
        queue.close().catch(() => undefined),
      ]);
      let graceTimer: NodeJS.Timeout | undefined;
      const closed = await Promise.race([
        closing.then(() => true),
        new Promise<boolean>((resolve) => {
          graceTimer = setTimeout(() => resolve(false), grace);
        }),
      ]);
      clearTimeout(graceTimer);
      if (!closed) o.logger.warn('the webhook worker did not finish closing (Redis unreachable?)');
      deps.agents.http.destroy();
      deps.agents.https.destroy();
    },
  };
}
