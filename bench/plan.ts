// Plan throughput: IDs/s from request to plan committed, for 100k and 1M IDs against a registry
// of 2M resources, the API process's peak RSS during the 1M plan, and beside each figure the
// time of each stage as the API measured it (its Server-Timing header).
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { peakRssMb, rssMb, startApi, streamPost, type ApiProcess } from './support.ts';

export const REGISTRY = 2_000_000;
const APPS_PER_TENANT = 200;

export async function seedBigRegistry(databaseUrl: string, resources = REGISTRY) {
  const c = new pg.Client({ connectionString: databaseUrl });
  await c.connect();
  const tenants = Math.ceil(resources / APPS_PER_TENANT);
  // BENCH_PLAN_ADAPTER=http: the type lives in another system (an HTTP adapter; no call is made to
  // plan), so a plan also asks the ledger whether Blastgate already deleted each resource.
  const adapter =
    process.env.BENCH_PLAN_ADAPTER === 'http'
      ? {
          kind: 'http',
          baseUrl: 'http://127.0.0.1:9',
          snapshot: 'GET /apps/{id}',
          softDelete: 'POST /apps/{id}/soft-delete',
        }
      : { kind: 'registry' };
  await c.query(
    `INSERT INTO resource_types (name, id_pattern, adapter) VALUES ('app', '^app_[0-9]+$', $1) ON CONFLICT DO NOTHING`,
    [JSON.stringify(adapter)],
  );
  await c.query(
    `INSERT INTO tenants (id, name, internal) SELECT 't' || i, 'Tenant ' || i, i < 3 FROM generate_series(0, $1 - 1) i ON CONFLICT DO NOTHING`,
    [tenants],
  );
  await c.query(
    `INSERT INTO resources (id, type, tenant_id) SELECT 'app_' || i, 'app', 't' || (i / ${APPS_PER_TENANT}) FROM generate_series(0, $1 - 1) i ON CONFLICT DO NOTHING`,
    [resources],
  );
  await c.query('VACUUM ANALYZE resources');
  // The seed (and its VACUUM, which sets every page's hint bits and visibility) leaves ~300 MB of
  // dirty pages and WAL for the checkpointer: without this, the first plans ran beside that
  // write-back (and evicted dirty buffers themselves) and measured the seed's I/O, not the gate —
  // the same 100k-ID registry join took 0.9-1.2 s right after the seed and 0.4-0.5 s once it ended.
  await c.query('CHECKPOINT');
  await c.end();
}

/**
 * BENCH_PLAN_ORDER=shuffled: the same IDs in a scrambled order (j -> j * 7919 + 13 mod n, a
 * permutation: 7919 is a prime that divides no power of ten), as a list pulled from another system
 * arrives, instead of in registry order, which flatters every index the plan writes.
 */
export const PLAN_ORDER = process.env.BENCH_PLAN_ORDER === 'shuffled' ? 'shuffled' : 'in registry order';

function* ndjson(n: number, offset: number) {
  yield `${JSON.stringify({ targetType: 'app', reason: 'bench', ticket: 'BENCH-1', rollout: { bakeSeconds: 0 } })}\n`;
  const batch = 10_000;
  const at = PLAN_ORDER === 'shuffled' ? (j: number) => (j * 7919 + 13) % n : (j: number) => j;
  for (let i = 0; i < n; i += batch) {
    let s = '';
    for (let j = i; j < Math.min(n, i + batch); j++) s += `"app_${offset + at(j)}"\n`;
    yield s;
  }
}

/** A requester token, created through the admin API. */
export async function requesterToken(api: ApiProcess) {
  const r = await fetch(`${api.url}/v1/admin/tokens`, {
    method: 'POST',
    headers: { authorization: `Bearer ${api.adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: `bench-${randomUUID()}`, role: 'requester' }),
  }).then((r) => r.json() as Promise<{ token: string }>);
  return r.token;
}

/** One plan of `n` registry IDs (app_<offset>…), request → plan committed. */
export async function planOnce(api: ApiProcess, token: string, n: number, offset: number) {
  const t0 = performance.now();
  const res = await streamPost(
    `${api.url}/v1/operations`,
    { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' },
    ndjson(n, offset),
  );
  const seconds = (performance.now() - t0) / 1000;
  if (res.status !== 201) throw new Error(`plan of ${n} failed: ${res.status} ${res.body.slice(0, 500)}`);
  const plan = JSON.parse(res.body) as { itemCount: number; tenantCount: number };
  const stages = parseServerTiming(String(res.headers['server-timing'] ?? ''));
  return { seconds, idsPerSec: n / seconds, itemCount: plan.itemCount, tenantCount: plan.tenantCount, stages };
}

/** `intake;dur=299, classify;dur=3399` → { intake: 299, classify: 3399 } (the API's stage timings). */
export function parseServerTiming(header: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const part of header.split(',')) {
    const [name, ...params] = part.trim().split(';');
    const dur = params.map((p) => /^\s*dur=([\d.]+)\s*$/.exec(p)?.[1]).find((d) => d !== undefined);
    if (name && dur !== undefined) out[name] = Number(dur);
  }
  return out;
}

/** Where the time went, as the API measured it (Server-Timing), in the order the stages ran. */
const STAGES = ['intake', 'classify', 'lock', 'plan', 'ledger', 'commit'] as const;

export async function benchPlans(env: { databaseUrl: string; redisUrl: string }) {
  await seedBigRegistry(env.databaseUrl);
  const api = await startApi({ ...env, extra: { BLASTGATE_WORKERS_IN_PROCESS: 'false' } });
  const rows: Record<string, string | number>[] = [];
  try {
    const requester = await requesterToken(api);
    // The API's first plan pays once for what a running API has already done (its pooled
    // connections' first statements, code not yet optimised): ~0.7-1 s of a 100k plan's ~2.3 s, so
    // a second 100k plan on other IDs shows the steady state beside it.
    // The third comes after 15 s without a request, as plans come in practice: past the pool's
    // idle timeout, so it shows whether the connections it needs are still the warm ones (db.ts).
    // It runs before the 1M plan, whose ~300 MB of writes evict the registry from the shared buffers
    // and whose parallel workers, not the pooled backend, read most of it: after it, that row
    // measured the 1M plan's leftovers as much as the idle time (2026-12-05).
    for (const [n, offset, goal, when, idleS] of [
      [100_000, 0, 150_000, ', first plan after start', 0],
      [100_000, 200_000, 150_000, ', second plan', 0],
      [100_000, 1_600_000, 150_000, ', after 15 s idle', 15],
      [1_000_000, 500_000, 250_000, '', 0],
    ] as const) {
      if (idleS) await new Promise((r) => setTimeout(r, idleS * 1000));
      const rssBefore = rssMb(api.pid);
      const plan = await planOnce(api, requester, n, offset);
      rows.push({
        case: `plan ${n.toLocaleString('en')} IDs ${PLAN_ORDER} (registry ${REGISTRY.toLocaleString('en')}${process.env.BENCH_PLAN_ADAPTER === 'http' ? ', HTTP adapter' : ''}${when})`,
        seconds: plan.seconds.toFixed(2),
        'IDs/s': Math.round(plan.idsPerSec).toLocaleString('en'),
        goal: `≥ ${goal.toLocaleString('en')} IDs/s`,
        'API RSS before (MB)': rssBefore.toFixed(0),
        'API peak RSS (MB)': peakRssMb(api.pid).toFixed(0),
        ...Object.fromEntries(STAGES.map((s) => [`${s} ms`, plan.stages[s] ?? '-'])),
        items: plan.itemCount,
        tenants: plan.tenantCount,
      });
    }
  } finally {
    await api.stop();
  }
  return rows;
}
