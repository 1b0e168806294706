// Redis: the connection BullMQ queues use to move work. Postgres stays the source of truth.
import fp from 'fastify-plugin';
import { Redis } from 'ioredis';
import { ConfigError, shownUrl } from '../config.ts';
import { errorsTo, outageLog } from '../lib/outage-log.ts';

declare module 'fastify' {
  interface FastifyInstance {
    redis: Redis;
    /** The rate limiter's client (LIMITS_COMMAND_TIMEOUT_MS). */
    redisLimits: Redis;
    /** Since when the queue's connection (app.redis) has been lost; null while it is up. */
    queueDownSince(): Date | null;
    /** When that connection came back after its last outage; null if it never was lost. */
    queueBackAt(): Date | null;
  }
}

/**
 * A command of the API's client that has no answer after this long fails (ioredis commandTimeout).
 * A Redis that hangs (a frozen host, a partition) keeps its connection open, so ioredis never sees
 * it go: every request waited on the rate limiter's command, the halt button too (a new-user trial:
 * a `start` that never answered). Failing, the rate limit lets the request through (skipOnError)
 * and a command's effects are left to the reconciler. Generous, so that a slow but live Redis (a
 * 2,000-job addBulk under load) is not cut off.
 */
export const API_COMMAND_TIMEOUT_MS = 5_000;

/**
 * The rate limiter's own client gives up sooner: its one small command runs before every request,
 * and a limiter that cannot answer lets the request through anyway (fail open).
 */
export const LIMITS_COMMAND_TIMEOUT_MS = 500;

export function createRedis(url: string, forWorker = false, commandTimeout = API_COMMAND_TIMEOUT_MS): Redis {
  // Workers block on Redis and must retry forever instead of failing a command (BullMQ's rule);
  // their blocking commands wait by design, so no command timeout there.
  // Lazy: the first command (or BullMQ, which connects a client in 'wait') opens the connection,
  // so building the app (npm run openapi) needs no running Redis.
  return forWorker
    ? new Redis(url, { maxRetriesPerRequest: null, lazyConnect: true })
    : new Redis(url, { maxRetriesPerRequest: 3, lazyConnect: true, commandTimeout });
}

/**
 * Whether Redis is reachable over these connections: each is up, or never opened (lazy). One
 * between reconnect attempts means a Redis that is down or restarting: a close that waits for it
 * (QUIT, BullMQ's close) waits for a Redis that may never come back.
 */
export const redisReachable = (conns: readonly Redis[]): boolean =>
  conns.every((r) => r.status === 'ready' || r.status === 'wait');

/**
 * From now on a command on this connection fails instead of waiting for Redis to come back: new
 * ones at once while it is down, queued ones at its next reconnect attempt (ioredis reads both
 * options on each). For a closing worker whose Redis is gone: its jobs in hand record their outcomes
 * in PostgreSQL, then put themselves back in the queue (a rollback's next step), which waited for a
 * Redis that never came back until the shutdown timeout ended the process by force. What such a
 * command would have queued is re-derived from the ledger by the next worker's reconciler.
 * (`disconnect()` does not do it: between reconnect attempts it leaves the queued commands waiting.)
 */
export function failWhileDown(r: Redis): void {
  r.options.enableOfflineQueue = false;
  r.options.maxRetriesPerRequest = 0;
}

/** How long a QUIT may take before the connection is dropped instead. */
const QUIT_WAIT_MS = 1_000;

/**
 * Closes a connection: QUIT when it is up (the replies in flight arrive first), bounded; dropped at
 * once when it is not (a QUIT would sit in the offline queue until Redis came back: a Ctrl-C with
 * Redis gone waited out the whole shutdown timeout). Dropping rejects the commands still queued.
 */
export async function closeRedis(r: Redis): Promise<void> {
  if (r.status !== 'ready') {
    r.disconnect();
    return;
  }
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    r.quit().catch(() => undefined),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, QUIT_WAIT_MS);
    }),
  ]);
  clearTimeout(timer);
  // (Read again: the QUIT above may have ended it.)
  if ((r.status as string) !== 'end') r.disconnect();
}

/** How long a start waits for REDIS_URL's Redis to answer (it may be starting beside us). */
export const REDIS_START_WAIT_MS = 5_000;

/**
 * A ConfigError naming REDIS_URL (never its password) when the Redis it names does not answer
 * within `waitMs`, or refuses us (a wrong password, a database index it does not have); undefined
 * once it answers PING. Checked once at start-up, by the API and the worker: a Redis that goes away
 * later is an outage they ride out (the app's clients reconnect forever), but a REDIS_URL that
 * never led anywhere made the API start, log connection errors forever and move no work.
 */
export async function redisProblem(url: string, waitMs = REDIS_START_WAIT_MS): Promise<ConfigError | undefined> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const probe = new Redis(url, {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      connectTimeout: Math.max(500, Math.min(2_000, waitMs)),
    });
    // The event carries the cause (ECONNREFUSED, ENOTFOUND); the rejection only "Connection is closed".
    let cause: Error | undefined;
    probe.on('error', (e: Error) => (cause ??= e));
    // The TCP connection was made: what then failed is the server's answer, not the network.
    let connected = false;
    probe.on('connect', () => (connected = true));
    let err: Error;
    try {
      await probe.connect();
      // ioredis selects the URL's database on connect but only emits the refusal and carries on
      // in database 0; asked here, it is an answer.
      await probe.select(Number(new URL(url).pathname.slice(1) || 0));
      await probe.ping();
      return undefined;
    } catch (e) {
      err = (e as Error).name === 'ReplyError' ? (e as Error) : (cause ?? (e as Error));
    } finally {
      probe.disconnect();
    }
    // Redis answered, and said no: waiting will not change that.
    if (err.name === 'ReplyError')
      return new ConfigError([
        `REDIS_URL (${shownUrl(url)}) is refused by Redis: ${err.message}; check the password and the database number`,
      ]);
    if (Date.now() >= deadline)
      return new ConfigError([
        connected
          ? // PostgreSQL's port, for one, takes the connection and closes it at the first Redis command
            // ("Connection is closed.": a trial pointed REDIS_URL there).
            `REDIS_URL (${shownUrl(url)}) did not answer as Redis within ${waitMs / 1000} s: a server there takes the connection but closed it without a Redis answer (${err.message}); check the port (is it Redis's?)`
          : `REDIS_URL (${shownUrl(url)}) cannot be reached (waited ${waitMs / 1000} s): ${err.message}; check the host and port, and that Redis runs there`,
      ]);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * When the client last lost its connection, until it is ready again: an operation that does not
 * move while the queue is away says so in its view (a trial saw `running` with nothing moving and
 * no reason). From the connection's events, so a view costs no command; a Redis that hangs with its
 * connection open is not seen here (its commands time out; /readyz reports it).
 */
export function outageClock(
  client: Redis,
  now = () => new Date(),
): { since: () => Date | null; backAt: () => Date | null } {
  let since: Date | null = null;
  let backAt: Date | null = null;
  const lost = () => (since ??= now());
  client.on('close', lost);
  client.on('reconnecting', lost);
  client.on('ready', () => {
    if (since) backAt = now();
    since = null;
  });
  return { since: () => since, backAt: () => backAt };
}

export default fp<{ url: string }>(
  async (app, opts) => {
    const redis = createRedis(opts.url);
    const limits = createRedis(opts.url, false, LIMITS_COMMAND_TIMEOUT_MS);
    app.decorate('redis', redis);
    app.decorate('redisLimits', limits);
    const outage = outageClock(redis);
    app.decorate('queueDownSince', outage.since);
    app.decorate('queueBackAt', outage.backAt);
    // Without a listener ioredis prints every reconnect failure to stderr; /readyz reports it too.
    // Each attempt of each client fails alike while Redis is away: logged once (outage-log.ts).
    const away = outageLog(app.log, 'redis (API)');
    for (const r of [redis, limits]) {
      errorsTo(r, away, (err) => app.log.warn({ err }, 'redis connection error'));
      r.on('ready', () => away.ok());
    }
    app.addHook('onClose', async () => {
      await Promise.all([redis, limits].map(closeRedis));
    });
  },
  { name: 'redis' },
);
