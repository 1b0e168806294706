// Prometheus metrics. One registry per app instance (tests build many apps in one process).
// They say how much is being deleted, for whom, and how the process is doing: not public. On the
// API port /metrics needs BLASTGATE_METRICS_TOKEN as a bearer token (and is not served without
// one); BLASTGATE_METRICS_PORT / BLASTGATE_WORKER_METRICS_PORT serve them on a listener of their
// own (behind the same token when it is set), for a network that only Prometheus reaches.
import fp from 'fastify-plugin';
import { timingSafeEqual } from 'node:crypto';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type pg from 'pg';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { AppError, UnauthorizedError } from '../lib/errors.ts';
import { ENDED_STATES, TERMINAL_STATES } from '../modules/operations/lifecycle-types.ts';

/**
 * Operations whose pending items will never run (cancelled, expired, ended…): not counted pending.
 * A restore cancelled before it ran kept its items pending for good, and an alert on them fired
 * forever (a trial).
 */
const NO_MORE_RUNS = [...TERMINAL_STATES, ...ENDED_STATES];

export function createMetrics() {
  const registry = new Registry();
  // prom-client's own names already say what they are (process_cpu_…, nodejs_heap_…): the prefix
  // is the product name only, not blastgate_process_process_cpu_….
  collectDefaultMetrics({ register: registry, prefix: 'blastgate_' });
  return {
    registry,
    httpRequests: new Counter({
      name: 'blastgate_http_requests_total',
      help: 'HTTP requests by route and status',
      labelNames: ['method', 'route', 'status'],
      registers: [registry],
    }),
    httpDuration: new Histogram({
      name: 'blastgate_http_request_duration_seconds',
      help: 'HTTP request duration',
      labelNames: ['method', 'route'],
      // 0.05: the control commands' and a GET's p99 goal under load (issue 10).
      buckets: [0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 2, 10, 60],
      registers: [registry],
    }),
    plans: new Counter({
      name: 'blastgate_plans_total',
      help: 'Operation plans by outcome (planned, rejected, dry_run, replayed: an Idempotency-Key answered again)',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    restorePlans: new Counter({
      name: 'blastgate_restore_plans_total',
      help: 'Restore plans (POST /v1/restores) by outcome (planned, rejected, dry_run, replayed)',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    purgePlans: new Counter({
      name: 'blastgate_purge_plans_total',
      help: 'Purge plans (POST /v1/purges and the scheduled proposal) by outcome (planned, rejected, dry_run, skipped, replayed)',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    intakeJobs: new Counter({
      name: 'blastgate_intake_jobs_total',
      help: 'CI intake queue jobs by outcome (planned, replayed, dry_run, rejected, refused, retried, failed)',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    planIds: new Counter({
      name: 'blastgate_plan_ids_total',
      help: 'IDs resolved by plans, by class',
      labelNames: ['class'],
      registers: [registry],
    }),
    registryRows: new Counter({
      name: 'blastgate_registry_rows_imported_total',
      help: 'Registry rows upserted, by kind',
      labelNames: ['kind'],
      registers: [registry],
    }),
    items: new Counter({
      name: 'blastgate_items_total',
      help: 'Operation items by outcome, cascaded descendants included (counted by the worker that recorded them)',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    halts: new Counter({
      name: 'blastgate_halts_total',
      help: 'Operation halts by reason kind',
      labelNames: ['reason'],
      registers: [registry],
    }),
    transitions: new Counter({
      name: 'blastgate_operation_transitions_total',
      help: 'Lifecycle transitions by target state',
      labelNames: ['state'],
      registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

/**
 * Gauges read from the ledger at scrape time, so /metrics on any API process shows what every
 * worker process did (workers may run elsewhere). Cheap: per-wave counters, not the item ledger.
 */
export function registerLedgerGauges(metrics: Metrics, pool: pg.Pool) {
  new Gauge({
    name: 'blastgate_ledger_items',
    help: 'Items by outcome across all operations (from per-wave counters)',
    labelNames: ['outcome'],
    registers: [metrics.registry],
    async collect() {
      const r = await pool.query<{ done: number; failed: number }>(
        'SELECT coalesce(sum(done), 0)::bigint AS done, coalesce(sum(failed), 0)::bigint AS failed FROM operation_waves',
      );
      this.set({ outcome: 'done' }, Number(r.rows[0]?.done ?? 0));
      this.set({ outcome: 'failed' }, Number(r.rows[0]?.failed ?? 0));
    },
  });
  new Gauge({
    name: 'blastgate_operations',
    help: 'Operations by state',
    labelNames: ['state'],
    registers: [metrics.registry],
    async collect() {
      const r = await pool.query<{ state: string; n: number }>(
        'SELECT state, count(*)::int AS n FROM operations GROUP BY state',
      );
      this.reset();
      for (const row of r.rows) this.set({ state: row.state }, row.n);
    },
  });
  new Gauge({
    name: 'blastgate_restore_items',
    help: 'Items of restore operations by outcome (restored, failed, pending), cascaded descendants included, from the ledger',
    labelNames: ['outcome'],
    registers: [metrics.registry],
    async collect() {
      // Restore operations only: each ledger is read through its primary key (operation_id, seq).
      const r = await pool.query<{ state: string; n: string; live: string }>(
        `SELECT i.state, count(*) AS n, count(*) FILTER (WHERE o.state <> ALL($1::text[])) AS live
         FROM operations o JOIN operation_items i ON i.operation_id = o.id
         WHERE o.action = 'restore' GROUP BY i.state`,
        [NO_MORE_RUNS],
      );
      const n = (states: string[], col: 'n' | 'live' = 'n') =>
        r.rows.filter((x) => states.includes(x.state)).reduce((a, x) => a + Number(x[col]), 0);
      this.set({ outcome: 'restored' }, n(['done']));
      this.set({ outcome: 'failed' }, n(['failed']));
      this.set({ outcome: 'pending' }, n(['pending', 'claimed'], 'live'));
    },
  });
  new Counter({
    name: 'blastgate_restore_drills_total',
    help: 'Restore drills at the canary by outcome (ok, failed, running, abandoned), from operation_drills',
    labelNames: ['outcome'],
    registers: [metrics.registry],
    async collect() {
      const r = await pool.query<{ outcome: string; n: number }>(
        'SELECT outcome, count(*)::int AS n FROM operation_drills GROUP BY outcome',
      );
      this.reset();
      for (const o of ['ok', 'failed']) this.inc({ outcome: o }, 0);
      for (const row of r.rows) this.inc({ outcome: row.outcome }, row.n);
    },
  });
  new Gauge({
    name: 'blastgate_purge_items',
    help: 'Items of purge operations by outcome (purged, failed, pending), from the ledger',
    labelNames: ['outcome'],
    registers: [metrics.registry],
    async collect() {
      const r = await pool.query<{ state: string; n: string; live: string }>(
        `SELECT i.state, count(*) AS n, count(*) FILTER (WHERE o.state <> ALL($1::text[])) AS live
         FROM operations o JOIN operation_items i ON i.operation_id = o.id
         WHERE o.action = 'purge' GROUP BY i.state`,
        [NO_MORE_RUNS],
      );
      const n = (states: string[], col: 'n' | 'live' = 'n') =>
        r.rows.filter((x) => states.includes(x.state)).reduce((a, x) => a + Number(x[col]), 0);
      this.set({ outcome: 'purged' }, n(['done']));
      this.set({ outcome: 'failed' }, n(['failed']));
      this.set({ outcome: 'pending' }, n(['pending', 'claimed'], 'live'));
    },
  });
  new Gauge({
    name: 'blastgate_operations_halted',
    help: 'Operations that were halted (automatically or by an operator), from the audit log',
    registers: [metrics.registry],
    async collect() {
      const r = await pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM audit_events WHERE action = 'operation.halted'`,
      );
      this.set(r.rows[0]?.n ?? 0);
    },
  });
}

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics;
  }
}

/** The Authorization header carries `Bearer <token>` (constant-time comparison). */
export function hasMetricsToken(authorization: string | undefined, token: string): boolean {
  const given = Buffer.from(/^Bearer (.+)$/i.exec(authorization ?? '')?.[1] ?? '');
  const expected = Buffer.from(token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

const TOKEN_MESSAGE = 'Metrics need Authorization: Bearer <BLASTGATE_METRICS_TOKEN>';

/**
 * Serves `GET /metrics` on a listener of its own (BLASTGATE_METRICS_PORT on the API,
 * BLASTGATE_WORKER_METRICS_PORT on a worker). With a token, it is required here too.
 */
export async function serveMetrics(
  metrics: Pick<Metrics, 'registry'>,
  o: { host: string; port: number; token?: string | undefined },
): Promise<Server> {
  const answer = (res: ServerResponse, status: number, body: object) =>
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || req.url?.split('?')[0] !== '/metrics')
      return answer(res, 404, { code: 'ROUTE_NOT_FOUND', message: 'Only GET /metrics is served on this port' });
    if (o.token && !hasMetricsToken(req.headers.authorization, o.token)) {
      res.setHeader('www-authenticate', 'Bearer realm="metrics"');
      return answer(res, 401, { code: 'UNAUTHORIZED', message: TOKEN_MESSAGE });
    }
    metrics.registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
      () => answer(res, 500, { code: 'INTERNAL', message: 'Metrics could not be collected' }),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => resolve());
  });
  return server;
}

export default fp<{ metrics: Metrics; token?: string | undefined }>(
  async (app, opts) => {
    app.decorate('metrics', opts.metrics);
    app.addHook('onResponse', async (request, reply) => {
      const route = request.routeOptions.url ?? 'unmatched';
      opts.metrics.httpRequests.inc({ method: request.method, route, status: reply.statusCode });
      opts.metrics.httpDuration.observe({ method: request.method, route }, reply.elapsedTime / 1000);
    });
    app.get('/metrics', { schema: { hide: true } }, async (req, reply) => {
      if (!opts.token)
        throw new AppError(
          404,
          'METRICS_NOT_SERVED',
          'Metrics are not served on the API port without BLASTGATE_METRICS_TOKEN: set it and scrape with that bearer token, or set BLASTGATE_METRICS_PORT to serve them on a port of their own',
        );
      if (!hasMetricsToken(req.headers.authorization, opts.token)) {
        reply.header('www-authenticate', 'Bearer realm="metrics"');
        throw new UnauthorizedError(TOKEN_MESSAGE);
      }
      reply.type(opts.metrics.registry.contentType);
      return opts.metrics.registry.metrics();
    });
  },
  { name: 'metrics' },
);
