// Control under load (issue 10 item 5): while one large registry-adapter operation runs at full
// speed (bake 0), GET /v1/operations/{id} is driven at a fixed rate with autocannon, then a pause
// is issued under the same load: its latency, and how many items the ledger records done after
// the pause committed (the halt overshoot). API (and its workers, or a separate worker process)
// compiled, as children; autocannon in this process; all on 127.0.0.1, every loop bounded.
import autocannon from 'autocannon';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import pg from 'pg';
import { launch, seed, waitState } from './execution.ts';
import { cpuSeconds, roleTokens, startApi, startWorkerProcess } from './support.ts';

/** Items in the operation: 1M by default (the issue's size), BENCH_CONTROL_ITEMS to change it. */
const ITEMS = Number(process.env.BENCH_CONTROL_ITEMS ?? 1_000_000);
/**
 * `separate` (the API in one process, the workers in another: how it is deployed, the default) or
 * `in-process` (API and workers in one process, as `npm start` runs them).
 */
const WORKERS = process.env.BENCH_CONTROL_WORKERS === 'in-process' ? 'in-process' : 'separate';
/**
 * The issue's load: 500 GET/s. Connections bound how many are in flight when answers slow down.
 * autocannon's rate is a quota per connection and second (lib/httpClient.js): each connection
 * sends its 10 requests of a second back to back from the second's start, so the 500 arrive as a
 * burst of 50 at a time, not spread over the second — harsher than an even 500/s.
 */
const RATE = 500;
const CONNECTIONS = 50;
/** Seconds of GET load on the running operation; then a shorter load with the pause inside it. */
const LOAD_SECONDS = 10;
const PAUSE_LOAD_SECONDS = 4;
const PAUSE_AFTER_MS = 1_500;
/** autocannon's per-request timeout: a GET not answered within it counts as a timeout. */
const TIMEOUT_S = 10;
/** Sequential GETs before the load, for a figure of one GET alone. */
const SOLO_GETS = 5;
const GOAL = 'p99 ≤ 50 ms';
/** Pause/resume cycles under the GET load, for percentiles of the commands themselves. */
const CYCLES = Number(process.env.BENCH_CONTROL_CYCLES ?? 20);
const CYCLE_RUN_MS = 400;
const CYCLE_PAUSED_MS = 150;

const METRICS_TOKEN = 'bench-control-metrics-token-0000000000';
const DURATION_BUCKET = /^blastgate_http_request_duration_seconds_bucket\{(.*)\} (\d+)$/;

/** What the API's /metrics says of its GET /v1/operations/{id} durations, its event loop and its GC. */
interface ServerSample {
  /** Cumulative counts of the durations (receipt to reply), by bucket (le, in seconds). */
  buckets: Map<string, number>;
  /** The event loop's longest delay since the last scrape (prom-client resets it on each). */
  loopMaxS: number;
  /** GC time and count by kind (major, minor, incremental), cumulative. */
  gc: Map<string, { s: number; n: number }>;
}

async function serverSample(apiUrl: string): Promise<ServerSample> {
  const r = await fetch(`${apiUrl}/metrics`, {
    headers: { authorization: `Bearer ${METRICS_TOKEN}` },
    signal: AbortSignal.timeout(30_000),
  });
  const out: ServerSample = { buckets: new Map(), loopMaxS: 0, gc: new Map() };
  for (const line of (await r.text()).split('\n')) {
    const loop = /^blastgate_nodejs_eventloop_lag_max_seconds (\S+)$/.exec(line);
    if (loop) out.loopMaxS = Number(loop[1]);
    const gc = /^blastgate_nodejs_gc_duration_seconds_(sum|count)\{kind="(\w+)"\} (\S+)$/.exec(line);
    if (gc) {
      const k = out.gc.get(gc[2]!) ?? { s: 0, n: 0 };
      if (gc[1] === 'sum') k.s = Number(gc[3]);
      else k.n = Number(gc[3]);
      out.gc.set(gc[2]!, k);
    }
    const m = DURATION_BUCKET.exec(line);
    if (!m || !m[1]!.includes('method="GET"') || !m[1]!.includes('route="/v1/operations/:id"')) continue;
    const le = /le="([^"]+)"/.exec(m[1]!)?.[1];
    if (le) out.buckets.set(le, Number(m[2]));
  }
  return out;
}

/**
 * The share of a load's GETs the API answered within 20 and 50 ms of receiving them, how many took
 * over 100 ms; the API's longest event-loop delay and its major GCs meanwhile; and the longest
 * delay of this process's own event loop, where autocannon reads the answers (a delay there is
 * latency the API did not cause).
 */
function serverSide(before: ServerSample, after: ServerSample, benchLoopMaxMs: number): string {
  const n = (le: string) => (after.buckets.get(le) ?? 0) - (before.buckets.get(le) ?? 0);
  const all = n('+Inf');
  if (all === 0) return 'server side: none recorded';
  const pct = (le: string) => `${((100 * n(le)) / all).toFixed(1)}%`;
  const major = after.gc.get('major') ?? { s: 0, n: 0 };
  const major0 = before.gc.get('major') ?? { s: 0, n: 0 };
  return (
    `server side (receipt to reply): ${pct('0.02')} ≤ 20 ms, ${pct('0.05')} ≤ 50 ms, ${all - n('0.1')} of ${all} over 100 ms; ` +
    `API event loop delay max ${ms(after.loopMaxS * 1000)}, major GC ${major.n - major0.n}× (${ms((major.s - major0.s) * 1000)}); ` +
    `load generator's event loop delay max ${ms(benchLoopMaxMs)}`
  );
}

const ms = (x: number) => `${Math.round(x)} ms`;
/** p50 / p99 / max of autocannon's latency samples; it reports 0 when it has none. */
// autocannon sets latency.totalCount (lib/aggregateResult.js); @types/autocannon 7.12.7 omits it.
const samples = (r: autocannon.Result) => (r.latency as autocannon.Histogram & { totalCount: number }).totalCount;
const latencies = (r: autocannon.Result) =>
  samples(r) === 0 ? 'none answered' : `${ms(r.latency.p50)} / ${ms(r.latency.p99)} / ${ms(r.latency.max)}`;
const counts = (r: autocannon.Result) =>
  `${r.requests.sent} sent, ${r['2xx']} 2xx, ${r.non2xx} non-2xx, ${r.errors} errors ` +
  `(${r.timeouts} timeouts after ${TIMEOUT_S} s), ${samples(r)} latency samples`;

export async function benchControl(env: { databaseUrl: string; redisUrl: string }) {
  const rows: Record<string, string | number>[] = [];
  const extra = {
    BLASTGATE_WORKER_CONCURRENCY: '4',
    // The default limits (600 requests and 300 commands per minute per token) would answer most of
    // this load with 429: the bench measures the handler, not the limiter.
    BLASTGATE_RATE_LIMIT_MAX: '1000000',
    BLASTGATE_RATE_LIMIT_CONTROL_MAX: '1000000',
    // The API's own request durations (Fastify's elapsed time, receipt to reply), beside
    // autocannon's: what the server took apart from the load generator and the machine's scheduling.
    BLASTGATE_METRICS_TOKEN: METRICS_TOKEN,
  };
  const a = await startApi({
    ...env,
    extra: { ...extra, ...(WORKERS === 'separate' ? { BLASTGATE_WORKERS_IN_PROCESS: 'false' } : {}) },
  });
  const worker = WORKERS === 'separate' ? startWorkerProcess({ ...env, extra }) : undefined;
  const db = new pg.Client({ connectionString: env.databaseUrl });
  await db.connect();
  // From the per-wave counters, written in the transaction that records the outcomes they count:
  // exact, and cheap enough to read every 100 ms without loading the database the bench measures.
  const done = async (id: string) =>
    (
      await db.query<{ n: number }>(
        `SELECT coalesce(sum(done), 0)::int AS n FROM operation_waves WHERE operation_id = $1`,
        [id],
      )
    ).rows[0]!.n;
  const claimed = async (id: string) =>
    (
      await db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM operation_items WHERE operation_id = $1 AND state = 'claimed'`,
        [id],
      )
    ).rows[0]!.n;
  const command = async (id: string, verb: 'pause' | 'resume' | 'rollback', token: string) => {
    const c0 = performance.now();
    const r = await fetch(`${a.url}/v1/operations/${id}/${verb}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ reason: `bench: ${verb} under load` }),
      signal: AbortSignal.timeout(60_000),
    });
    const text = await r.text();
    const took = performance.now() - c0;
    if (r.status !== 200) throw new Error(`${verb} failed ${r.status} ${text.slice(0, 300)}`);
    return took;
  };
  try {
    const tk = await roleTokens(a);
    const t0 = performance.now();
    await seed(env.databaseUrl, 'capp', ITEMS, 500, { kind: 'registry' });
    const seedS = (performance.now() - t0) / 1000;
    const t1 = performance.now();
    const op = await launch(a, tk, 'capp', ITEMS, { bakeSeconds: 0, concurrency: 16 });
    const planS = (op.started - t1) / 1000;
    // Full speed: wait (bounded) until the first items are done.
    const warm = Date.now() + 120_000;
    while ((await done(op.id)) === 0) {
      if (Date.now() > warm) throw new Error('no item done within 120 s of the start');
      await new Promise((res) => setTimeout(res, 200));
    }
    const url = `${a.url}/v1/operations/${op.id}`;
    const headers = { authorization: `Bearer ${tk.viewer}` };
    const solo: number[] = [];
    for (let i = 0; i < SOLO_GETS; i++) {
      const g0 = performance.now();
      const g = await fetch(url, { headers, signal: AbortSignal.timeout(60_000) });
      await g.arrayBuffer();
      solo.push(performance.now() - g0);
    }
    solo.sort((x, y) => x - y);
    rows.push({
      figure: `GET /v1/operations/{id} alone, ${SOLO_GETS} in a row (median / max)`,
      value: `${ms(solo[Math.floor(SOLO_GETS / 2)]!)} / ${ms(solo[SOLO_GETS - 1]!)}`,
      goal: '',
      detail: 'no load, the operation running',
    });
    /** autocannon's result, with the API's own figure for the same GETs in `server`. */
    const cannon = async (duration: number) => {
      const before = await serverSample(a.url);
      const loop = monitorEventLoopDelay({ resolution: 10 });
      loop.enable();
      const cpu0 = cpuSeconds(a.pid);
      const r = await autocannon({
        url,
        headers,
        connections: CONNECTIONS,
        overallRate: RATE,
        duration,
        timeout: TIMEOUT_S,
        // One latency sample per answer. With a rate set, autocannon 8 otherwise "corrects" for
        // coordinated omission with an expected interval of Math.ceil(1 / rate) (lib/run.js): 1 for
        // any per-connection rate, in the histogram's unit, milliseconds, where 1000 / rate (100 ms
        // here) was meant. Every answer of L ms then adds about L made-up samples at L-1, L-2 … 1 ms
        // (173,273 samples for 5,006 answers in a run on 2026-12-03): each answer counts as many
        // times as it took milliseconds, so the p99 printed was not that of the answers. With the
        // right interval it would add nothing here, since no connection falls behind its rate.
        ignoreCoordinatedOmission: true,
      });
      const cpuMs = (1000 * (cpuSeconds(a.pid) - cpu0)) / Math.max(1, r.requests.total);
      loop.disable();
      const server = `${serverSide(before, await serverSample(a.url), loop.max / 1e6)}; API CPU ${cpuMs.toFixed(2)} ms per GET`;
      return Object.assign(r, { server });
    };
    const doneBeforeLoad = await done(op.id);
    const l0 = performance.now();
    const load = await cannon(LOAD_SECONDS);
    const loadS = (performance.now() - l0) / 1000;
    const doneAfterLoad = await done(op.id);
    const after = await fetch(url, { headers, signal: AbortSignal.timeout(60_000) });
    const afterBody = (await after.json()) as { state?: string; code?: string };
    const stateAfterLoad =
      after.status === 200 ? afterBody.state : `unknown (GET answered ${after.status} ${afterBody.code})`;
    rows.push({
      figure: `GET /v1/operations/{id} at ${RATE}/s, ${LOAD_SECONDS} s (p50 / p99 / max)`,
      value: latencies(load),
      goal: GOAL,
      detail: `${CONNECTIONS} connections: ${counts(load)}; ${load.server}`,
    });
    rows.push({
      figure: 'items/s through waves during the GET load',
      value: Math.round((doneAfterLoad - doneBeforeLoad) / loadS).toLocaleString('en'),
      goal: '≥ 20,000 (without load)',
      detail: `${doneAfterLoad.toLocaleString('en')} of ${ITEMS.toLocaleString('en')} done after the load; state ${stateAfterLoad}`,
    });

    // The pause, under the same load. The ledger is counted just before it is sent and just after
    // it answers: the pause commits between the two, so the overshoot lies between the two figures.
    const loadP = cannon(PAUSE_LOAD_SECONDS);
    await new Promise((res) => setTimeout(res, PAUSE_AFTER_MS));
    const doneBeforePause = await done(op.id);
    const pauseMs = await command(op.id, 'pause', tk.operator);
    const doneAtPause = await done(op.id);
    const pauseLoad = await loadP;
    await waitState(a, tk, op.id, ['paused'], 30_000);
    // Workers stopped: no item claimed and the done count steady for 2 s (bounded at 60 s).
    const settle = Date.now() + 60_000;
    let last = await done(op.id);
    let steadySince = Date.now();
    // The claimed count scans the ledger: read once the done count has held still for 2 s.
    while (Date.now() < settle) {
      await new Promise((res) => setTimeout(res, 100));
      const now = await done(op.id);
      if (now !== last) {
        last = now;
        steadySince = Date.now();
      } else if (Date.now() - steadySince >= 2_000) {
        if ((await claimed(op.id)) === 0) break;
        steadySince = Date.now();
      }
    }
    const doneFinal = await done(op.id);
    rows.push({
      figure: 'POST …/pause during the GET load (one command)',
      value: ms(pauseMs),
      goal: GOAL,
      detail:
        `issued ${PAUSE_AFTER_MS / 1000} s into a ${PAUSE_LOAD_SECONDS} s load at ${RATE}/s; its GETs ` +
        `(p50 / p99 / max) ${latencies(pauseLoad)}: ${counts(pauseLoad)}; ${pauseLoad.server}`,
    });
    rows.push({
      figure: 'halt overshoot: items recorded done after the pause committed',
      value: `${doneFinal - doneAtPause} (≤ ${doneFinal - doneBeforePause})`,
      goal: '≤ 1 chunk per worker in flight',
      detail:
        `done ${doneBeforePause.toLocaleString('en')} before the pause was sent, ${doneAtPause.toLocaleString('en')} ` +
        `after it answered, ${doneFinal.toLocaleString('en')} once workers stopped (registry adapter: one statement per chunk)`,
    });

    // Commands as a series under the same GET load: resume, let it run, pause, … (each one is a
    // state change the workers act on), for percentiles rather than one sample.
    const cycleS = Math.ceil((CYCLES * (CYCLE_RUN_MS + CYCLE_PAUSED_MS + 100)) / 1000) + 2;
    const loadC = cannon(cycleS);
    const pauses: number[] = [];
    const resumes: number[] = [];
    for (let i = 0; i < CYCLES; i++) {
      resumes.push(await command(op.id, 'resume', tk.operator));
      await new Promise((res) => setTimeout(res, CYCLE_RUN_MS));
      pauses.push(await command(op.id, 'pause', tk.operator));
      await new Promise((res) => setTimeout(res, CYCLE_PAUSED_MS));
    }
    const cycleLoad = await loadC;
    const pct = (xs: number[]) => {
      const s = [...xs].sort((x, y) => x - y);
      const at = (q: number) => s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!;
      return `${ms(at(0.5))} / ${ms(at(0.99))} / ${ms(s[s.length - 1]!)}`;
    };
    rows.push({
      figure: `POST …/pause, ${CYCLES} times under the GET load (p50 / p99 / max)`,
      value: pct(pauses),
      goal: GOAL,
      detail: `each after ${CYCLE_RUN_MS} ms of running at full speed; resumes ${pct(resumes)}`,
    });
    rows.push({
      figure: `GET /v1/operations/{id} at ${RATE}/s during the pause/resume series (p50 / p99 / max)`,
      value: latencies(cycleLoad),
      goal: GOAL,
      detail: `${CONNECTIONS} connections: ${counts(cycleLoad)}; ${cycleLoad.server}`,
    });

    // A rollback of everything done so far, under the same GET load: what operators poll hardest.
    // The view counts a rolling-back operation's items from the ledger (the wave counters do not
    // count restores), so this is where a GET costs the most.
    const toRestore = await done(op.id);
    const r0 = performance.now();
    const rollbackMs = await command(op.id, 'rollback', tk.operator);
    const loadR = await cannon(LOAD_SECONDS);
    const restored = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM operation_items WHERE operation_id = $1 AND state = 'restored'`,
      [op.id],
    );
    const rS = (performance.now() - r0) / 1000;
    rows.push({
      figure: `GET /v1/operations/{id} at ${RATE}/s, ${LOAD_SECONDS} s of its rollback (p50 / p99 / max)`,
      value: latencies(loadR),
      goal: GOAL,
      detail:
        `POST …/rollback answered in ${ms(rollbackMs)}; ${restored.rows[0]!.n.toLocaleString('en')} of ` +
        `${toRestore.toLocaleString('en')} restored after ${rS.toFixed(1)} s; ${CONNECTIONS} connections: ${counts(loadR)}; ${loadR.server}`,
    });
    rows.push({
      figure: 'setup',
      value: `${ITEMS.toLocaleString('en')} items`,
      goal: '',
      detail: `workers ${WORKERS}${WORKERS === 'separate' ? ` (nice ${process.env.BLASTGATE_WORKER_NICE ?? 10})` : ''}, 4 chunk workers, rollout concurrency 16, bake 0; seed ${seedS.toFixed(1)} s, plan + approve ${planS.toFixed(1)} s, start ${Math.round(op.startMs)} ms`,
    });
  } finally {
    await db.end();
    await worker?.stop();
    await a.stop();
  }
  return rows;
}
