// PostgreSQL. The API keeps three pg pools, so that no kind of work can take the connections
// another needs (a saturated main pool once starved the operator's pause):
// - main: reads and the set-based hot paths (COPY, unnest, = ANY($1)) — plans, registry;
// - control: authentication and operator commands (pause, resume, abort, rollback, signals,
//   freeze) — nothing else uses it, so a flood of uploads or reads cannot delay a halt;
// - uploads: writing streamed IDs to their staging tables, one short COPY per batch.
// Workers have their own process-wide pool (createDb in worker-runtime).
import { isConnectionError } from '../lib/outage-log.ts';
import fp from 'fastify-plugin';
import pg from 'pg';
import { DatabaseTimeoutError, DeadlineClient } from './db-deadline.ts';

// No Prisma Client at run time: its query compiler cost ~55 MB per process on the first query, and
// every read it served is one plain statement (operations/repository.ts). Prisma keeps the schema
// and the migrations (prisma/), and its generated model types.
export interface Db {
  pool: pg.Pool;
}

export interface ApiDb extends Db {
  /** Authentication and operator commands only. */
  control: Db;
  /** Staging of streamed uploads only. */
  uploads: pg.Pool;
}

declare module 'fastify' {
  interface FastifyInstance {
    db: ApiDb;
  }
}

// Postgres returns bigint/numeric as strings by default; counts we produce fit in a JS number.
pg.types.setTypeParser(20, (v) => Number(v));

export interface PoolOptions {
  max?: number;
  /** application_name, so pg_stat_activity shows which budget a connection belongs to. */
  name?: string;
  /** How long a caller waits for a free connection before failing (0: forever). */
  waitMs?: number;
  /** Connections the pool keeps once opened, however long they sit idle (the rest close after 10 s). */
  keep?: number;
  /** Runs on each new connection before the pool hands it out (its failure is the caller's to swallow). */
  afterConnect?: (client: pg.ClientBase) => Promise<void>;
}

/** How often PostgreSQL checks, while a statement runs, that the client is still there. */
const CONNECTION_CHECK_MS = 1_000;

function createPool(connectionString: string, o: PoolOptions): pg.Pool {
  // pg-pool awaits onConnect before handing the client out; @types/pg still types it as returning void.
  const config: Omit<pg.PoolConfig, 'onConnect'> & { onConnect: (client: pg.ClientBase) => Promise<void> } = {
    connectionString,
    // Bounded by the read deadline of the request (or lookup) that uses it: plugins/db-deadline.ts.
    Client: DeadlineClient,
    max: o.max ?? 20,
    min: o.keep ?? 0,
    application_name: o.name ?? 'blastgate',
    connectionTimeoutMillis: o.waitMs ?? 0,
    // PostgreSQL notices a client that vanished (a killed process) only when it next reads or
    // writes the socket: without this, a running statement — a 1M-ID classification, a chunk's
    // transaction — went on for seconds holding its row locks and a CPU. Set per session, not as a
    // startup option, which connection poolers refuse; awaited by the pool before the client is
    // handed out (a query queued behind it is deprecated by pg). A server without the setting
    // (before PostgreSQL 14) answers an error, which changes nothing.
    onConnect: async (client: pg.ClientBase) => {
      await client.query(`SET client_connection_check_interval = ${CONNECTION_CHECK_MS}`).catch(() => undefined);
      await o.afterConnect?.(client);
    },
  };
  const pool = new pg.Pool(config);
  // A client that loses its connection must not crash the process: the pool handles idle clients,
  // and this listener covers checked-out ones (pg emits 'error' on them too, e.g. when PostgreSQL
  // restarts mid-transaction). The failed query rejects, and the pool discards the broken client.
  pool.on('error', () => undefined);
  pool.on('connect', (client) => client.on('error', () => undefined));
  return pool;
}

export function createDb(connectionString: string, max = 20, o: Omit<PoolOptions, 'max'> = {}): Db {
  return { pool: createPool(connectionString, { ...o, max }) };
}

export async function closeDb(db: Db) {
  await db.pool.end();
}

/** An error and the errors it wraps (`cause`), a few deep at most. */
function causes(err: unknown): { code?: unknown; message?: unknown }[] {
  const out: { code?: unknown; message?: unknown }[] = [];
  for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) out.push(e);
  return out;
}

/** pg's error when no connection became free within the pool's waitMs (any wrapping). */
export function isPoolExhausted(err: unknown): boolean {
  return causes(err).some((e) => String(e.message).includes('timeout exceeded when trying to connect'));
}

/** A failure to reach a dependency (any wrapping), as opposed to a statement it refused. */
export function isUnreachable(err: unknown): boolean {
  // PostgreSQL did not answer a read in time (its connection was dropped), or any lost connection.
  return causes(err).some((e) => e instanceof DatabaseTimeoutError) || isConnectionError(err);
}

export interface DbPluginOptions {
  url: string;
  poolMax: number;
  controlPoolMax: number;
  uploadPoolMax: number;
}

// Waits for a connection, per pool: a request that cannot get one in time is answered 503 (with
// Retry-After) rather than held; commands wait least, since an operator is waiting on them.
const MAIN_WAIT_MS = 30_000;
const CONTROL_WAIT_MS = 10_000;
const UPLOAD_WAIT_MS = 30_000;
// Connections kept open while idle (see below): the plan and the read beside it; a command.
const MAIN_KEEP = 2;
const CONTROL_KEEP = 1;

export default fp<DbPluginOptions>(
  async (app, opts) => {
    // A few connections stay open when idle: a new PostgreSQL backend maps the shared buffers it
    // reads page by page, and plans come now and then. A 100,000-ID plan after 15 s idle took
    // 1.80–2.67 s (median 2.06) on kept connections against 2.51–3.36 s (median 3.00) on new ones
    // (`npm run bench -- plan`, 5 interleaved pairs, 2M-row registry, 4 KB pages, 2026-12-04); an
    // operator's command after a quiet spell skips the connect and its set-up.
    const main = createDb(opts.url, opts.poolMax, { name: 'blastgate', waitMs: MAIN_WAIT_MS, keep: MAIN_KEEP });
    const control = createDb(opts.url, opts.controlPoolMax, {
      name: 'blastgate-control',
      waitMs: CONTROL_WAIT_MS,
      keep: CONTROL_KEEP,
    });
    const uploads = createPool(opts.url, {
      max: opts.uploadPoolMax,
      name: 'blastgate-uploads',
      waitMs: UPLOAD_WAIT_MS,
    });
    app.decorate('db', { ...main, control, uploads });
    app.addHook('onClose', async () => {
      await Promise.all([closeDb(main), closeDb(control), uploads.end()]);
    });
  },
  { name: 'db' },
);
