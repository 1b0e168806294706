// Execution harness: a real app and real in-process workers over the test's own database and a
// queue prefix of its own on the shared Redis, plus a real downstream HTTP service.
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import request from 'supertest';
import { expect } from 'vitest';
import type { DownstreamPolicy } from '../../src/modules/adapters/index.ts';
import type { Limits } from '../../src/config.ts';
import { startWorkers, type RunningWorkers } from '../../src/worker-runtime.ts';
import type { Metrics } from '../../src/plugins/metrics.ts';
import type { WebhookSettings } from '../../src/modules/webhooks/settings.ts';
import { SECRET, buildTestApp, testDownstream, type TestApp } from './app.ts';
import { startDownstream, type Downstream } from './downstream.ts';
import { TEST_SNAPSHOT_KEY_BYTES } from './keys.ts';
import { query } from './seed.ts';
import { waveMoveMismatches } from './wave-moves.ts';

export { SECRET };

export interface ExecHarness extends TestApp {
  prefix: string;
  downstream: Downstream;
  workers: RunningWorkers[];
  startWorker(opts?: { concurrency?: number }): Promise<RunningWorkers>;
}

export async function buildExecHarness(
  opts: {
    workers?: number;
    lockDurationMs?: number;
    redisUrl?: string;
    databaseUrl?: string;
    clock?: () => number;
    /** The workers' hosts and secrets, when they differ from the API's (a worker missing a secret). */
    workerDownstream?: DownstreamPolicy;
    limits?: Partial<Limits>;
    /** The workers' webhook delivery settings (tests retry fast). */
    webhooks?: WebhookSettings;
    /** The workers' metrics (counters a test reads); none by default. */
    workerMetrics?: Metrics;
  } = {},
): Promise<ExecHarness> {
  const prefix = `bgt${randomBytes(4).toString('hex')}`;
  const t = await buildTestApp({
    queuePrefix: prefix,
    ...(opts.redisUrl ? { redisUrl: opts.redisUrl } : {}),
    ...(opts.databaseUrl ? { databaseUrl: opts.databaseUrl } : {}),
    ...(opts.limits ? { limits: opts.limits } : {}),
  });
  const downstream = await startDownstream({ secret: SECRET });
  const workers: RunningWorkers[] = [];
  const startWorker = async (o: { concurrency?: number } = {}) => {
    const w = await startWorkers({
      databaseUrl: t.databaseUrl,
      redisUrl: t.redisUrl,
      queuePrefix: prefix,
      concurrency: o.concurrency ?? 2,
      downstream: opts.workerDownstream ?? testDownstream(),
      snapshotKey: TEST_SNAPSHOT_KEY_BYTES,
      logger: pino({ level: 'silent' }),
      lockDurationMs: opts.lockDurationMs ?? 2_000,
      reconcileEveryMs: 500,
      ...(opts.clock ? { clock: opts.clock } : {}),
      ...(opts.webhooks ? { webhooks: opts.webhooks } : {}),
      ...(opts.workerMetrics ? { metrics: opts.workerMetrics } : {}),
    });
    workers.push(w);
    return w;
  };
  for (let i = 0; i < (opts.workers ?? 1); i++) await startWorker();
  return {
    ...t,
    prefix,
    downstream,
    workers,
    startWorker,
    async close() {
      for (const w of workers) await w.close();
      // With the workers stopped, nothing moves: the counted moves must match the ledger.
      const drift = await waveMoveMismatches(t.databaseUrl).catch(() => []);
      await t.close();
      await downstream.close();
      if (drift.length)
        throw new Error(`wave moves differ from the ledger (count path missed a move): ${JSON.stringify(drift)}`);
    },
  };
}

/** Registers `app` as an http-adapter type that acts on the downstream, with a tenant probe. */
export async function useHttpAdapter(
  h: Pick<ExecHarness, 'databaseUrl' | 'downstream'>,
  withProbe = true,
  extra: Record<string, unknown> = {},
) {
  const adapter = {
    kind: 'http',
    baseUrl: h.downstream.url,
    // With the tenant, so the downstream knows it from the first read (a drill compares reads).
    snapshot: 'GET /apps/{id}?tenantId={tenantId}',
    softDelete: 'POST /apps/{id}/soft-delete',
    restore: 'POST /apps/{id}/restore',
    hardDelete: 'DELETE /apps/{id}',
    ...(withProbe ? { probe: 'GET /tenants/{tenantId}/health' } : {}),
    // Generous: a loaded 2-core CI box must not turn slow answers into item failures (tests that
    // want timeouts set the probe timeout in the halt policy or hang the downstream).
    timeoutMs: 5_000,
    retries: 2,
    retryBaseMs: 10,
    ...extra,
  };
  await query(h.databaseUrl, `UPDATE resource_types SET adapter = $1 WHERE name = 'app'`, [JSON.stringify(adapter)]);
}

export interface Submitted {
  id: string;
  planHash: string;
  waves: { index: number; tenants: number; items: number; fromSeq: number; toSeq: number }[];
}

/**
 * Sends a request again while the API sheds load (503 OVERLOADED), after its Retry-After, as a
 * well-behaved client does: a test that turns load shedding on runs on a machine whose load is
 * not only its own. Bounded: the tenth answer is returned whatever it is.
 */
async function unlessShed(send: () => request.Test): Promise<request.Response> {
  for (let i = 1; ; i++) {
    const res = await send();
    if (res.status !== 503 || res.body?.code !== 'OVERLOADED' || i === 10) return res;
    await new Promise((r) => setTimeout(r, Number(res.headers['retry-after'] ?? 1) * 1000));
  }
}

/** requester submits → approver approves → operator starts. */
export async function submitAndStart(h: ExecHarness, body: Record<string, unknown>, start = true): Promise<Submitted> {
  const created = await unlessShed(() =>
    request(h.app.server)
      .post('/v1/operations')
      .set('authorization', h.auth('requester'))
      .send({ targetType: 'app', reason: 'Remove the legacy app', ticket: 'CHG-1', ...body }),
  );
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  const { id, planHash } = created.body as { id: string; planHash: string };
  const approveAs = created.body.requiresBreakGlass ? (['approver', 'admin'] as const) : (['approver'] as const);
  for (const role of approveAs) {
    const a = await unlessShed(() =>
      request(h.app.server).post(`/v1/operations/${id}/approve`).set('authorization', h.auth(role)).send({ planHash }),
    );
    expect(a.status, JSON.stringify(a.body)).toBe(200);
  }
  if (start) {
    const s = await unlessShed(() =>
      request(h.app.server).post(`/v1/operations/${id}/start`).set('authorization', h.auth('operator')).send({}),
    );
    expect(s.status, JSON.stringify(s.body)).toBe(200);
  }
  return { id, planHash, waves: created.body.plan.waves };
}

export async function getOperation(h: ExecHarness, id: string) {
  const r = await request(h.app.server).get(`/v1/operations/${id}`).set('authorization', h.auth('viewer'));
  return r.body as {
    state: string;
    currentWave: number | null;
    haltReason: string | null;
    throttled?: { cap: string; until: string } | null;
    refused?: { command: string; code: string; message: string; by: string; at: string } | null;
    waveProgress: { wave: number; counts: Record<string, number> }[];
    counts?: { items: number; byState: Record<string, number>; pending: number };
  };
}

/** Polls until the operation reaches one of `states` (no sleeps in assertions: a bounded poll). */
export async function waitForState(h: ExecHarness, id: string, states: string[], timeoutMs = 60_000) {
  const end = Date.now() + timeoutMs;
  let last: Awaited<ReturnType<typeof getOperation>> | undefined;
  while (Date.now() < end) {
    last = await getOperation(h, id);
    if (states.includes(last.state)) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(
    `operation ${id} did not reach ${states.join('|')} within ${timeoutMs} ms; last: ${JSON.stringify(last)}`,
  );
}

export async function until(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 30_000) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/**
 * Until an aborted operation's run is settled (settled_at, two claim leases after it ended at the
 * earliest): it holds its resources until then (holdsResources), as a call it sent may still land.
 */
export async function waitSettled(h: ExecHarness, opId: string, timeoutMs = 30_000) {
  await until(
    async () =>
      (await query(h.databaseUrl, `SELECT 1 FROM operations WHERE id = $1 AND settled_at IS NOT NULL`, [opId])).length >
      0,
    `${opId} to be settled`,
    timeoutMs,
  );
}
