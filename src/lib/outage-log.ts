// A dependency that is away fails the same way every second: each Redis connection's reconnect
// attempt, each queue consumer's error event, each webhook dispatch pass. Logged as they came, a
// worker process wrote 84 warnings with the driver's stack for one 6 s Redis outage (a restart
// trial: ~360 lines for two 15 s outages), and an operator paging through its log lost what else
// it said. So a process logs an outage once when it begins (code and message: the stack of a
// refused connection says nothing) and once when it ends, with how long and how many repeats.
import type { Logger } from 'pino';

/** Errors that say a server cannot be reached (ioredis, BullMQ and pg word them so). */
const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  '57P01', // PostgreSQL: terminating connection due to administrator command
  '57P03', // PostgreSQL: the database system is starting up / shutting down
]);
const CONNECTION_MESSAGES =
  /Connection is closed|Stream isn't writeable|connect ECONNREFUSED|Connection terminated|read ECONNRESET|write EPIPE|Reached the max retries per request limit|the database system is (starting up|shutting down)/i;

export function isConnectionError(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown; errors?: unknown[] } | null;
  if (!e) return false;
  if (typeof e.code === 'string' && CONNECTION_CODES.has(e.code)) return true;
  if (typeof e.message === 'string' && CONNECTION_MESSAGES.test(e.message)) return true;
  // Node's connect to a name with several addresses fails with an AggregateError of each.
  return Array.isArray(e.errors) && e.errors.some(isConnectionError);
}

export interface OutageLog {
  /** A failure: logged if it is the first since the dependency last answered. */
  failed(err: unknown): void;
  /** The dependency answered: an outage that was logged is logged as ended. */
  ok(): void;
}

export function outageLog(logger: Pick<Logger, 'warn' | 'info'>, what: string, now = Date.now): OutageLog {
  let since: number | null = null;
  let repeats = 0;
  return {
    failed(err) {
      if (since !== null) {
        repeats++;
        return;
      }
      since = now();
      repeats = 0;
      const e = err as { code?: unknown; message?: unknown } | null;
      logger.warn(
        { code: e?.code, error: typeof e?.message === 'string' ? e.message : String(err) },
        `${what}: failing (further failures are not logged until it answers again)`,
      );
    },
    ok() {
      if (since === null) return;
      logger.info({ downMs: now() - since, repeats }, `${what}: answers again`);
      since = null;
    },
  };
}

/**
 * Routes an emitter's `error` events: a lost connection to the outage's log (once per outage),
 * anything else to the logger as before (a queue consumer's own errors still say all they have).
 */
export function errorsTo(
  emitter: { on(event: 'error', listener: (err: Error) => void): unknown },
  outage: OutageLog | undefined,
  other: (err: Error) => void,
): void {
  emitter.on('error', (err: Error) => (outage && isConnectionError(err) ? outage.failed(err) : other(err)));
}
