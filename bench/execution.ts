// Execution figures: items/s through waves (registry adapter), efficiency against the unsafe
// plain loop on the same HTTP downstream, and halt overshoot/latency. API and workers run in one
// child process (compiled), the downstream in this process; all on 127.0.0.1, bounded.
import pg from 'pg';
import { startDownstream } from '../test/support/downstream.ts';
import { benchEfficiency } from './efficiency.ts';
import {
  api,
  cpuPerItem,
  cpuSnapshot,
  roleTokens,
  sql,
  startApi,
  startWorkerProcess,
  streamPost,
  type ApiProcess,
} from './support.ts';

const SECRET = 'bench-signing-secret-0123456789abcdef';
export type Tokens = Awaited<ReturnType<typeof roleTokens>>;

export async function seed(databaseUrl: string, type: string, n: number, tenants: number, adapter: object) {
  await sql(
    databaseUrl,
    `INSERT INTO resource_types (name, id_pattern, adapter) VALUES ($1, NULL, $2) ON CONFLICT (name) DO UPDATE SET adapter = $2`,
    [type, JSON.stringify(adapter)],
  );
  await sql(
    databaseUrl,
    `INSERT INTO tenants (id, name, internal) SELECT 'bt' || i, 'Bench ' || i, i = 0 FROM generate_series(0, $1 - 1) i ON CONFLICT DO NOTHING`,
    [tenants],
  );
  await sql(
    databaseUrl,
    `INSERT INTO resources (id, type, tenant_id) SELECT $1 || '_' || i, $1, 'bt' || (i % $3) FROM generate_series(0, $2 - 1) i ON CONFLICT DO NOTHING`,
    [type, n, tenants],
  );
  // A registry is imported long before it is deleted from, not seconds before: vacuumed (hint bits
  // and visibility set) and written back. Without this the waves bench measured the seed's aftermath too —
  // autovacuum of the 100k fresh rows and the seed's checkpoint beside the chunks: machine CPU per
  // item 156-197 µs against 136-138 (2 interleaved pairs, 2026-12-04).
  await sql(databaseUrl, 'VACUUM ANALYZE resources');
  await sql(databaseUrl, 'CHECKPOINT');
}

function* idLines(spec: object, type: string, n: number) {
  yield `${JSON.stringify(spec)}\n`;
  for (let i = 0; i < n; i += 10_000) {
    let s = '';
    for (let j = i; j < Math.min(n, i + 10_000); j++) s += `"${type}_${j}"\n`;
    yield s;
  }
}

/** On a busy (shared) machine the API may shed load (503 OVERLOADED): ask again, as a client would. */
async function notShed<R extends { status: number }>(call: () => Promise<R>): Promise<R> {
  for (let k = 0; ; k++) {
    const r = await call();
    if (r.status !== 503 || k >= 10) return r;
    await new Promise((res) => setTimeout(res, 1_000));
  }
}

/** Submits, approves and starts; returns the operation id and when it was started. */
export async function launch(
  a: ApiProcess,
  tk: Tokens,
  type: string,
  n: number,
  rollout: object,
  haltPolicy: object = {},
) {
  const res = await streamPost(
    `${a.url}/v1/operations`,
    { authorization: `Bearer ${tk.requester}`, 'content-type': 'application/x-ndjson' },
    idLines({ targetType: type, reason: 'bench', ticket: 'BENCH', rollout, haltPolicy }, type, n),
  );
  if (res.status !== 201) throw new Error(`submit failed ${res.status} ${res.body.slice(0, 300)}`);
  const op = JSON.parse(res.body) as { id: string; planHash: string; requiresBreakGlass: boolean };
  for (const role of op.requiresBreakGlass ? (['approver', 'admin'] as const) : (['approver'] as const)) {
    const r = await notShed(() =>
      api(a.url, tk[role], 'POST', `/v1/operations/${op.id}/approve`, { planHash: op.planHash }),
    );
    if (r.status !== 200) throw new Error(`approve failed ${r.status} ${JSON.stringify(r.body)}`);
  }
  const cpu = cpuSnapshot();
  const started = performance.now();
  const s = await notShed(() => api(a.url, tk.operator, 'POST', `/v1/operations/${op.id}/start`, {}));
  if (s.status !== 200) throw new Error(`start failed ${s.status} ${JSON.stringify(s.body)}`);
  // The start command's own answer time: it checks the plan is still fresh before anything runs.
  return { id: op.id, started, cpu, startMs: performance.now() - started };
}

/**
 * Items/s through waves: `n` registry-adapter resources of `type` seeded over 500 tenants, one
 * operation with the default waves, bake 0, start → terminal state. `during` runs while it does.
 * The end is read with plain SQL (not GET /v1/operations/{id}), so polling costs the run nothing.
 */
export async function wavesThroughput(
  a: ApiProcess,
  tk: Tokens,
  databaseUrl: string,
  type: string,
  n: number,
  during?: (id: string) => void,
) {
  await seed(databaseUrl, type, n, 500, { kind: 'registry' });
  const r = await launch(a, tk, type, n, { bakeSeconds: 0, concurrency: 16 });
  during?.(r.id);
  const end = await waitStateSql(databaseUrl, r.id, ['completed', 'rolled_back', 'paused', 'halted'], 600_000);
  const seconds = (performance.now() - r.started) / 1000;
  // BENCH_WAVE_TIMELINE=1: when each wave started and settled (ms after the start), to see the
  // time between waves (the bake's probe round, the next wave's enqueue) beside the waves' own.
  if (process.env.BENCH_WAVE_TIMELINE) {
    const t = await sql(
      databaseUrl,
      `SELECT w.wave, w.to_seq - w.from_seq AS items,
         round(extract(epoch FROM w.started_at - o.started_at) * 1000) AS started_ms,
         round(extract(epoch FROM w.settled_at - o.started_at) * 1000) AS settled_ms
       FROM operation_waves w JOIN operations o ON o.id = w.operation_id WHERE w.operation_id = $1 ORDER BY w.wave`,
      [r.id],
    );
    console.table(t.rows);
    // The operation's audited steps on the same clock (wave settled, probe rounds, next wave).
    const steps = await sql(
      databaseUrl,
      `SELECT a.action, a.payload->>'to' AS "to", a.payload->>'wave' AS wave,
         round(extract(epoch FROM a.at - o.started_at) * 1000) AS at_ms
       FROM audit_events a JOIN operations o ON o.id = a.operation_id WHERE a.operation_id = $1 ORDER BY a.seq`,
      [r.id],
    );
    console.table(steps.rows);
  }
  return { id: r.id, seconds, itemsPerSec: n / seconds, end, cpu: cpuPerItem(r.cpu, n), startMs: r.startMs };
}

/** The operation's state from its row, every 25 ms, on one connection. */
export async function waitStateSql(databaseUrl: string, id: string, states: string[], timeoutMs: number) {
  const c = new pg.Client({ connectionString: databaseUrl });
  await c.connect();
  try {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const r = await c.query<{ state: string }>(`SELECT state FROM operations WHERE id = $1`, [id]);
      const state = r.rows[0]?.state ?? 'missing';
      if (states.includes(state)) return state;
      if (Date.now() > end) throw new Error(`operation ${id} still ${state} after ${timeoutMs} ms`);
      await new Promise((res) => setTimeout(res, 25));
    }
  } finally {
    await c.end();
  }
}

/** What the bench's PostgreSQL runs with: the figures depend on it. */
export async function durabilityOf(databaseUrl: string) {
  const r = await sql(
    databaseUrl,
    `SELECT current_setting('fsync') AS fsync, current_setting('synchronous_commit') AS sc`,
  );
  const { fsync, sc } = r.rows[0] as { fsync: string; sc: string };
  return `PostgreSQL fsync ${fsync}, synchronous_commit ${sc}`;
}

/** Chunk workers per process in the waves runs (BLASTGATE_WORKER_CONCURRENCY; the default is 4). */
const WAVE_WORKERS = process.env.BENCH_WORKER_CONCURRENCY ?? '4';
/** BENCH_WAVES_ITEMS: a smaller size while iterating; the figure is for 100k. */
const WAVE_ITEMS = Number(process.env.BENCH_WAVES_ITEMS ?? 100_000);

/**
 * Chunk workers per process in the 2-process run: the one-process run's split between the two
 * (BENCH_PROC_WORKER_CONCURRENCY to choose). The same chunks in flight as that run, so the figure
 * compares the layouts, not the concurrency: 2 × 4 on this 2-core machine cost PostgreSQL 93–98
 * µs per item against 80 for 2 × 2 (more transactions queueing on the same wave row and pages),
 * 11,257–11,545 items/s against 12,620–12,824 (2 interleaved pairs, 2026-12-05).
 */
const PROC_WORKERS =
  process.env.BENCH_PROC_WORKER_CONCURRENCY ?? String(Math.max(1, Math.round(Number(WAVE_WORKERS) / 2)));

/**
 * The same run with the API not running workers and 2 separate worker processes over the shared
 * PostgreSQL and Redis, as a scaled-out deployment runs.
 */
async function wavesOverWorkerProcesses(env: { databaseUrl: string; redisUrl: string }, tk: Tokens, n: number) {
  const extra = { BLASTGATE_WORKER_CONCURRENCY: PROC_WORKERS, BLASTGATE_QUEUE_PREFIX: 'bench-procs' };
  const a = await startApi({ ...env, extra: { ...extra, BLASTGATE_WORKERS_IN_PROCESS: 'false' } });
  const workers = [startWorkerProcess({ ...env, extra }), startWorkerProcess({ ...env, extra })];
  try {
    // Both consumers are up before the operation starts (a worker reconciles on start, then listens).
    await new Promise((res) => setTimeout(res, 3_000));
    return await wavesThroughput(a, tk, env.databaseUrl, 'rapp2', n);
  } finally {
    await Promise.all([a.stop(), ...workers.map((w) => w.stop())]);
  }
}

export async function waitState(a: ApiProcess, tk: Tokens, id: string, states: string[], timeoutMs: number) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const r = await api<{ state: string }>(a.url, tk.viewer, 'GET', `/v1/operations/${id}`);
    if (states.includes(r.body.state)) return r.body.state;
    if (Date.now() > end) throw new Error(`operation ${id} still ${r.body.state} after ${timeoutMs} ms`);
    await new Promise((res) => setTimeout(res, 20));
  }
}

const haltAdapter = (baseUrl: string) => ({
  kind: 'http',
  baseUrl,
  // The tenant travels with the read, so the restore drill's read-back matches the snapshot.
  snapshot: 'GET /apps/{id}?tenantId={tenantId}',
  softDelete: 'POST /apps/{id}/soft-delete',
  restore: 'POST /apps/{id}/restore',
  hardDelete: 'DELETE /apps/{id}',
  probe: 'GET /tenants/{tenantId}/health',
  timeoutMs: 2000,
});

export type ExecutionSection = 'waves' | 'efficiency' | 'halt';

export async function benchExecution(
  env: { databaseUrl: string; redisUrl: string },
  sections: ExecutionSection[] = ['waves', 'efficiency', 'halt'],
) {
  const rows: Record<string, string | number>[] = [];
  const downstream = await startDownstream({ secret: SECRET, strict: false, record: true });
  const a = await startApi({
    ...env,
    extra: {
      BLASTGATE_SIGNING_SECRET: SECRET,
      BLASTGATE_DOWNSTREAM_ALLOW: '127.0.0.1',
      BLASTGATE_WORKER_CONCURRENCY: WAVE_WORKERS,
      ...(process.env.BENCH_API_PROF ? { NODE_OPTIONS: `--require ${process.env.BENCH_API_PROF}` } : {}),
    },
  });
  const durability = await durabilityOf(env.databaseUrl);
  const size = `${WAVE_ITEMS / 1000}k`;
  try {
    const tk = await roleTokens(a);

    // 1. Registry adapter, 100k items, default waves, bake 0.
    if (sections.includes('waves')) {
      const w = await wavesThroughput(a, tk, env.databaseUrl, 'rapp', WAVE_ITEMS);
      rows.push({
        figure: `items/s through waves (registry adapter, ${size}, bake 0)`,
        value: Math.round(w.itemsPerSec).toLocaleString('en'),
        goal: '≥ 20,000',
        detail: `${w.seconds.toFixed(2)} s (POST …/start answered in ${Math.round(w.startMs)} ms), ${w.end}, 5 waves, API + workers in 1 process, ${WAVE_WORKERS} chunk workers; ${durability}; ${w.cpu}`,
      });
      // 1b. The same run over 2 worker processes under an API of their own (a queue prefix of their
      // own: the API above takes none of their jobs).
      const procs = await wavesOverWorkerProcesses(env, tk, WAVE_ITEMS);
      rows.push({
        figure: `items/s through waves, 2 worker processes (registry adapter, ${size}, bake 0)`,
        value: Math.round(procs.itemsPerSec).toLocaleString('en'),
        goal: '≥ 20,000',
        detail: `${procs.seconds.toFixed(2)} s (start ${Math.round(procs.startMs)} ms), ${procs.end}, 5 waves, API (no workers) + 2 worker processes × ${PROC_WORKERS} chunk workers; ${durability}; ${procs.cpu}`,
      });
    }

    // 2. Efficiency against the plain loop on the same HTTP downstream: bench/efficiency.ts.
    if (sections.includes('efficiency'))
      rows.push(...(await benchEfficiency(a, tk, env.databaseUrl, downstream, { secret: SECRET })));

    // 3. Halt overshoot and latency: a slow downstream, an external signal mid-wave.
    if (!sections.includes('halt')) return rows;
    downstream.hang(20);
    const trials = 20;
    const overshoots: number[] = [];
    const latencies: number[] = [];
    for (let t = 0; t < trials; t++) {
      // Resources of their own per trial: a halted (paused) operation keeps holding its resources.
      const type = `halt${t}`;
      await seed(env.databaseUrl, type, 2_000, 200, haltAdapter(downstream.url));
      downstream.reset();
      downstream.hang(20);
      const r = await launch(
        a,
        tk,
        type,
        2_000,
        // 16 calls in flight: the operation's budget in this process, shared by its chunks.
        { bakeSeconds: 0, concurrency: 16, waves: ['100%'] },
        { onHalt: 'pause' },
      );
      const deletesOf = () =>
        downstream.calls.filter((c) => c.action === 'softDelete' && c.resourceId?.startsWith(`${type}_`));
      const deadline = Date.now() + 60_000;
      while (deletesOf().length < 200 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 5));
      // Calls move in bursts (every lane waits the same 20 ms), so signal at a random point of
      // the burst cycle rather than right after a burst, which would flatter the overshoot.
      await new Promise((res) => setTimeout(res, Math.random() * 25));
      const sent = Date.now();
      const sig = await api(a.url, tk.operator, 'POST', `/v1/operations/${r.id}/signals`, {
        kind: 'bench',
        detail: 'halt now',
      });
      const committed = Date.now();
      if (sig.status !== 200) throw new Error(`signal failed ${sig.status}`);
      await waitState(a, tk, r.id, ['halted'], 30_000);
      // Let in-flight calls land (bounded), then count what arrived after the halt committed.
      const settle = Date.now() + 2_000;
      while (Date.now() < settle) await new Promise((res) => setTimeout(res, 50));
      const after = deletesOf().filter((c) => c.at > committed);
      overshoots.push(after.length);
      // Latency: signal sent → the last delete that arrived after it (0 when none did).
      const last = Math.max(sent, ...deletesOf().map((c) => c.at));
      latencies.push(last - sent);
    }
    downstream.hang(0);
    const sorted = [...latencies].sort((x, y) => x - y);
    const p = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
    rows.push({
      figure: 'halt overshoot: deletes arriving after the halt committed (max of 20)',
      value: Math.max(...overshoots),
      goal: '≤ 16 (1 per slot: the rollout concurrency)',
      detail: `per trial: ${overshoots.join(' ')}`,
    });
    rows.push({
      figure: 'halt latency: signal sent → last delete arrived (p50 / p99 ms)',
      value: `${p(0.5)} / ${p(0.99)}`,
      goal: 'p99 ≤ 250 ms',
      detail: `downstream answers in 20 ms; ${trials} trials, signal at a random point of the burst cycle`,
    });
  } finally {
    await a.stop();
    await downstream.close();
  }
  return rows;
}
