// A dependency that is away fails the same way every second: each Redis connection's reconnect
// attempt, each queue consumer's error event, each webhook dispatch pass. Logged as they came, a
// worker process wrote 84 warnings with the driver's stack for one 6 s Redis outage (a restart
// trial: ~360 lines for two 15 s outages), and an operator paging through its log lost what else
// it said. So a process logs an outage once when it begins (code and message: the stack of a
// refused connection says nothing) and once when it ends, with how long and how many repeats.
import type { Logger } from 'pino';

// The connection itself failed: refused, reset, timed out, cut off (PostgreSQL shut down or
// restarting: SQLSTATE class 08 and 57P01–57P03), pg's own "Connection terminated", or ioredis's
// closed streams and give-ups (retries used up, command timed out). The API answers these 503
// DEPENDENCY_UNAVAILABLE (plugins/db.ts isUnreachable); the loops of a process log them here.
const UNREACHABLE = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);
const SHUTTING_DOWN = new Set(['57P01', '57P02', '57P03']);
// pg's messages for a connection it lost, and ioredis's.
const PG_LOST = /^Connection terminated|^Client has encountered a connection error/;
const REDIS_LOST =
  /Connection is closed|Stream isn't writeable|^Reached the max retries per request limit|^Command timed out$/;

/** A lost or refused connection to PostgreSQL or Redis, however wrapped (`cause`, AggregateError). */
export function isConnectionError(err: unknown, depth = 0): boolean {
  const e = err as { code?: unknown; message?: unknown; cause?: unknown; errors?: unknown[] } | null;
  if (!e || typeof e !== 'object' || depth > 5) return false;
  const { code, message } = e;
  if (typeof code === 'string' && (UNREACHABLE.has(code) || SHUTTING_DOWN.has(code) || /^08...$/.test(code)))
    return true;
  if (PG_LOST.test(String(message)) || REDIS_LOST.test(String(message))) return true;
  // Node's connect to a name with several addresses fails with an AggregateError of each.
  if (Array.isArray(e.errors) && e.errors.some((x) => isConnectionError(x, depth + 1))) return true;
  return isConnectionError(e.cause, depth + 1);
}

export type Dependency = 'postgres' | 'redis';
/** How a message names each. */
export const DEPENDENCY_NAMES: Record<Dependency, string> = { postgres: 'PostgreSQL', redis: 'Redis' };
/** Set on an error by the PostgreSQL client (db-deadline.ts): a refused connect is a plain ECONNREFUSED. */
export const DEPENDENCY = Symbol('blastgate.dependency');

/**
 * Which dependency a lost connection was to, when the error tells (the API's 503 names it): marked
 * by the PostgreSQL client, a SQLSTATE or pg's messages, or ioredis's. Null when it does not.
 */
export function dependencyOf(err: unknown, depth = 0): Dependency | null {
  const e = err as { [DEPENDENCY]?: Dependency; code?: unknown; message?: unknown; cause?: unknown } | null;
  if (!e || typeof e !== 'object' || depth > 5) return null;
  if (e[DEPENDENCY]) return e[DEPENDENCY];
  const { code, message } = e;
  if (typeof code === 'string' && (SHUTTING_DOWN.has(code) || /^08...$/.test(code))) return 'postgres';
  if (PG_LOST.test(String(message))) return 'postgres';
  if (REDIS_LOST.test(String(message))) return 'redis';
  return dependencyOf(e.cause, depth + 1);
}

export interface OutageLog {
  /** A failure: logged if it is the first since the dependency last answered. */
  failed(err: unknown): void;
  /** The dependency answered: an outage that was logged is logged as ended. */
  ok(): void;
  /** A failure of any kind: a lost connection goes to failed(), anything else to `other`. */
  caught(err: unknown, other: (err: unknown) => void): void;
}

export function outageLog(logger: Pick<Logger, 'warn' | 'info'>, what: string, now = Date.now): OutageLog {
  let since: number | null = null;
  let repeats = 0;
  const failed = (err: unknown) => {
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
  };
  return {
    failed,
    ok() {
      if (since === null) return;
      logger.info({ downMs: now() - since, repeats }, `${what}: answers again`);
      since = null;
    },
    caught: (err, other) => (isConnectionError(err) ? failed(err) : other(err)),
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
  emitter.on('error', (err: Error) => (outage ? outage.caught(err, () => other(err)) : other(err)));
}
