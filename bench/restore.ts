// Mass restore, the Atlassian case (issue 8, item 4): 883 tenants × 20 items deleted by one
// completed operation, then brought back by one restore operation. "Gate time" runs from
// POST /v1/restores {operationId} through both approvals and start to the restore's `completed`;
// the delete before it is set-up, not timed. Once with the registry adapter, once with the HTTP
// adapter against a real downstream on 127.0.0.1 answering every call (snapshot reads too) after
// 5 ms, at rollout concurrency 64. API and workers run in one child process (compiled, as `npm
// start` runs them); bounded: fixed sizes, every wait has a deadline. Besides the seconds, each row
// shows the API process's CPU seconds during the gate time and the machine's 1-minute load: on a
// shared machine the gate time is mostly waiting for a CPU, which those two figures make visible.
import { loadavg } from 'node:os';
import { startDownstream } from '../test/support/downstream.ts';
import { launch, seed } from './execution.ts';
import { api, cpuSeconds, roleTokens, startApi, type ApiProcess } from './support.ts';

const SECRET = 'bench-signing-secret-0123456789abcdef';
const TENANTS = 883;
const PER_TENANT = 20;
const ITEMS = TENANTS * PER_TENANT;
const CONCURRENCY = 64;
const LATENCY_MS = 5;
/** How often the bench asks whether the restore has ended: the figure's resolution, kept coarse so
 * that the polling (each GET counts the ledger by wave) does not slow down what it measures. */
const POLL_MS = 100;
type Tokens = Awaited<ReturnType<typeof roleTokens>>;
interface OpView {
  id: string;
  state: string;
  planHash: string;
  requiresBreakGlass: boolean;
  itemCount: number;
  tenantCount: number;
  counts?: { restored?: number; notRestored?: number };
}

async function until(a: ApiProcess, tk: Tokens, id: string, states: string[], timeoutMs: number) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const r = await api<OpView>(a.url, tk.viewer, 'GET', `/v1/operations/${id}`);
    if (states.includes(r.body.state)) return r.body;
    if (Date.now() > end) throw new Error(`operation ${id} still ${r.body.state} after ${timeoutMs} ms`);
    await new Promise((res) => setTimeout(res, POLL_MS));
  }
}

/** Deletes every item of `type` with one operation and waits for it to complete (set-up, untimed). */
async function deleteAll(a: ApiProcess, tk: Tokens, type: string) {
  const del = await launch(a, tk, type, ITEMS, { waves: ['100%'], bakeSeconds: 0, concurrency: CONCURRENCY });
  const end = await until(a, tk, del.id, ['completed', 'completed_with_failures', 'halted', 'rolled_back'], 600_000);
  if (end.state !== 'completed') throw new Error(`the delete of ${type} ended ${end.state}, not completed`);
  return del.id;
}

/** The timed part: plan, approve (break-glass: two approvers), start, wait for the end. */
async function restore(a: ApiProcess, tk: Tokens, operationId: string) {
  const cpu0 = cpuSeconds(a.pid);
  const began = performance.now();
  const r = await api<OpView>(a.url, tk.requester, 'POST', '/v1/restores', {
    operationId,
    reason: 'bench: bring back what one script deleted',
    ticket: 'BENCH-883',
    rollout: { concurrency: CONCURRENCY },
  });
  if (r.status !== 201) throw new Error(`restore plan failed ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
  const planned = performance.now();
  const op = r.body;
  if (op.itemCount !== ITEMS || op.tenantCount !== TENANTS)
    throw new Error(`restore planned ${op.itemCount} items of ${op.tenantCount} tenants, not ${ITEMS} of ${TENANTS}`);
  for (const role of op.requiresBreakGlass ? (['approver', 'admin'] as const) : (['approver'] as const)) {
    const x = await api(a.url, tk[role], 'POST', `/v1/operations/${op.id}/approve`, { planHash: op.planHash });
    if (x.status !== 200) throw new Error(`approve failed ${x.status} ${JSON.stringify(x.body)}`);
  }
  const s = await api(a.url, tk.operator, 'POST', `/v1/operations/${op.id}/start`, {});
  if (s.status !== 200) throw new Error(`start failed ${s.status} ${JSON.stringify(s.body)}`);
  const started = performance.now();
  const end = await until(
    a,
    tk,
    op.id,
    ['completed', 'completed_with_failures', 'halted', 'paused', 'cancelled'],
    600_000,
  );
  const ended = performance.now();
  if (end.state !== 'completed' || end.counts?.restored !== ITEMS)
    throw new Error(`restore ended ${end.state} with ${end.counts?.restored} of ${ITEMS} restored`);
  return {
    plan: (planned - began) / 1000,
    execute: (ended - started) / 1000,
    gate: (ended - began) / 1000,
    apiCpu: cpuSeconds(a.pid) - cpu0,
  };
}

function row(adapter: string, goalSeconds: number, t: { plan: number; execute: number; gate: number; apiCpu: number }) {
  return {
    adapter,
    items: ITEMS,
    tenants: TENANTS,
    'plan s': t.plan.toFixed(2),
    'execute s': t.execute.toFixed(2),
    'gate s': t.gate.toFixed(2),
    'items/s': Math.round(ITEMS / t.gate).toLocaleString('en'),
    goal: `≤ ${goalSeconds} s`,
    met: t.gate <= goalSeconds ? 'yes' : `no (+${(t.gate - goalSeconds).toFixed(1)} s)`,
    'API CPU s': t.apiCpu.toFixed(1),
    load: loadavg()[0]!.toFixed(1),
  };
}

export async function benchRestore(env: { databaseUrl: string; redisUrl: string }) {
  const rows: Record<string, string | number>[] = [];
  const downstream = await startDownstream({ secret: SECRET, record: false });
  const a = await startApi({
    ...env,
    extra: {
      BLASTGATE_SIGNING_SECRET: SECRET,
      BLASTGATE_DOWNSTREAM_ALLOW: '127.0.0.1',
      BLASTGATE_WORKER_CONCURRENCY: '4',
    },
  });
  try {
    const tk = await roleTokens(a);

    // 1. Registry adapter: the resources live in Blastgate's own registry.
    await seed(env.databaseUrl, 'rsite', ITEMS, TENANTS, { kind: 'registry' });
    const regDelete = await deleteAll(a, tk, 'rsite');
    rows.push(row('registry', 10, await restore(a, tk, regDelete)));

    // 2. HTTP adapter: a downstream that owns the resources. Deleted with no latency (set-up), then
    // restored while every call, snapshot reads included, is answered after 5 ms.
    await seed(env.databaseUrl, 'hsite', ITEMS, TENANTS, {
      kind: 'http',
      baseUrl: downstream.url,
      snapshot: 'GET /sites/{id}?tenantId={tenantId}', // the test downstream learns a resource's tenant from it
      softDelete: 'POST /sites/{id}/soft-delete',
      restore: 'POST /sites/{id}/restore',
      hardDelete: 'DELETE /sites/{id}',
      probe: 'GET /tenants/{tenantId}/health',
      timeoutMs: 5000,
    });
    const httpDelete = await deleteAll(a, tk, 'hsite');
    downstream.latency(LATENCY_MS);
    const http = await restore(a, tk, httpDelete);
    downstream.latency(0);
    const back = [...downstream.resources.values()].filter((r) => r.id.startsWith('hsite_') && r.state === 'active');
    if (back.length !== ITEMS) throw new Error(`the downstream has ${back.length} of ${ITEMS} resources active again`);
    rows.push(row(`HTTP, downstream answering in ${LATENCY_MS} ms, concurrency ${CONCURRENCY}`, 30, http));
  } finally {
    await a.stop();
    await downstream.close();
  }
  return rows;
}
