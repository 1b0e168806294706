// A deadline on reads from PostgreSQL, so that a GET answers when the database does not. A frozen
// server (a hung host, a partition: the connection stays open and nothing answers) held every GET
// for as long as the freeze lasted: a statement sent on a pooled connection had no deadline, and
// the kernel still accepts new connections, whose startup then waits unanswered.
//
// Not statement_timeout: the server enforces it, and a frozen server enforces nothing. Not pg's
// query_timeout: it fails the query but leaves it on the wire, and the client still looks healthy,
// so a client released without an error (inTransaction does) goes back to the pool and every later
// query on it waits behind the unanswered one (brianc/node-postgres#3399). Here the connection is
// destroyed at the deadline instead: every query on it fails with DatabaseTimeoutError, the client
// is no longer queryable, and the pool discards it when it is released.
//
// Scoped to the async context (GET and HEAD requests, token lookups), not to a pool: the main pool
// also runs long legitimate statements (a 1M-ID plan classifies for seconds, uploads).
import { AsyncLocalStorage } from 'node:async_hooks';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { RetryLaterError } from '../lib/errors.ts';
import { isReadRequest } from '../lib/route-kinds.ts';
import { DEPENDENCY, type Dependency } from '../lib/outage-log.ts';

const RETRY_AFTER_S = 5;

/** The deadline of each statement (and connection start-up) in this async context, in ms. */
const deadline = new AsyncLocalStorage<number>();

/** PostgreSQL did not answer within the read deadline: the connection was dropped. */
export class DatabaseTimeoutError extends RetryLaterError {
  constructor(limitMs: number) {
    super(
      503,
      'DEPENDENCY_UNAVAILABLE',
      `PostgreSQL did not answer within ${limitMs} ms (BLASTGATE_DB_READ_TIMEOUT_MS); retry later. GET /readyz says when it answers again`,
      RETRY_AFTER_S,
      { dependency: 'postgres', limitMs },
    );
  }
}

/** Runs `fn`, and everything it starts, with each statement bounded to `ms`. */
export function withReadDeadline<T>(ms: number, fn: () => T): T {
  return deadline.run(ms, fn);
}

/** Every statement a GET or HEAD request runs, however deep, gets `ms` to be answered. */
export function installReadDeadline(app: FastifyInstance, ms: number) {
  // A callback hook, so that the rest of the request (hooks, handler) runs inside the context.
  app.addHook('onRequest', (request, _reply, done) => {
    if (isReadRequest(request)) withReadDeadline(ms, done);
    else done();
  });
}

type Callback = (err: Error | null, result?: unknown) => void;

/**
 * A failure of this client is PostgreSQL's: said on the error, since a refused connect is a plain
 * ECONNREFUSED like Redis's and the API's 503 names the dependency (outage-log.ts dependencyOf).
 */
function markPostgres(err: unknown) {
  if (err && typeof err === 'object') (err as { [DEPENDENCY]?: Dependency })[DEPENDENCY] ??= 'postgres';
}
type Method = (...args: unknown[]) => unknown;
type Submittable = { handleError?: (err: unknown, ...rest: unknown[]) => unknown };

/**
 * A streamed query's failure is PostgreSQL's too. pg hands a lost connection to the query's
 * handleError, and a COPY stream emits it as a plain ECONNRESET: an import cut off that way was
 * answered "PostgreSQL or Redis could not be reached" with no dependency named (a trial).
 */
function markStreamFailures(q: Submittable) {
  const handle = q.handleError;
  if (typeof handle !== 'function') return;
  q.handleError = function (this: unknown, err: unknown, ...rest: unknown[]) {
    markPostgres(err);
    return handle.call(this, err, ...rest);
  };
}

/**
 * pg's Client, with connect() and query() bounded by the deadline of the context they are called
 * in (unbounded outside one). Given to the pools as their `Client`.
 */
export class DeadlineClient extends pg.Client {
  constructor(config?: string | pg.ClientConfig) {
    super(config);
    const connect = this.connect.bind(this) as Method;
    const query = this.query.bind(this) as Method;
    this.connect = ((...args: unknown[]) => this.bounded(connect, args)) as pg.Client['connect'];
    this.query = ((...args: unknown[]) => this.bounded(query, args)) as pg.Client['query'];
  }

  private bounded(method: Method, args: unknown[]): unknown {
    const ms = deadline.getStore();
    // A streamed query (a cursor, COPY) ends when its consumer does, not when the server answers.
    const streamed = typeof (args[0] as { submit?: unknown } | undefined)?.submit === 'function';
    if (streamed) markStreamFailures(args[0] as Submittable);
    const timer =
      ms === undefined || streamed
        ? undefined
        : setTimeout(() => this.connection.stream.destroy(new DatabaseTimeoutError(ms)), ms);
    const settle = (err?: unknown) => {
      clearTimeout(timer);
      markPostgres(err);
    };
    const last = args.length - 1;
    if (typeof args[last] === 'function') {
      const cb = args[last] as Callback;
      args[last] = (err: Error | null, result?: unknown) => {
        settle(err);
        cb(err, result);
      };
      return method(...args);
    }
    const result = method(...args) as Promise<unknown> | undefined;
    // A query given its callback inside its config returns nothing: it is left unbounded.
    if (typeof result?.then !== 'function') settle();
    else result.then(() => settle(), settle);
    return result;
  }
}
