// Purge throughput: 10,000 soft-deleted resources past their retention (registry adapter),
// purged by one purge operation through the engine (snapshot of the deleted state, write-ahead
// mark, hard delete, record) — timed from start to completed. API and workers in one child
// process (compiled), as for the execution figures.
import { api, roleTokens, sql, startApi } from './support.ts';

const N = 10_000;
const TENANTS = 100;

export async function benchPurge(env: { databaseUrl: string; redisUrl: string }) {
  await sql(env.databaseUrl, `INSERT INTO resource_types (name) VALUES ('papp') ON CONFLICT DO NOTHING`);
  await sql(
    env.databaseUrl,
    `INSERT INTO tenants (id, name) SELECT 'pt' || i, 'Purge bench ' || i FROM generate_series(0, $1 - 1) i
     ON CONFLICT DO NOTHING`,
    [TENANTS],
  );
  // Soft-deleted a month and a day ago: due today under the default 30-day retention.
  await sql(
    env.databaseUrl,
    `INSERT INTO resources (id, type, tenant_id, state, deleted_at, purge_after)
     SELECT 'papp_' || i, 'papp', 'pt' || (i % $2), 'soft_deleted', now() - interval '31 days', now() - interval '1 day'
     FROM generate_series(0, $1 - 1) i ON CONFLICT DO NOTHING`,
    [N, TENANTS],
  );
  const a = await startApi({ ...env, extra: { BLASTGATE_WORKER_CONCURRENCY: '4' } });
  try {
    const tk = await roleTokens(a);
    const rows = [];
    for (const waves of [['1', '1%', '10%', '50%', '100%'], ['100%']]) {
      // Due again: soft-deleted a month and a day ago (the previous run purged them).
      await sql(
        env.databaseUrl,
        `UPDATE resources SET state = 'soft_deleted', purge_after = now() - interval '1 day' WHERE type = 'papp'`,
      );
      rows.push(await purgeOnce(a, tk, env.databaseUrl, waves));
    }
    return rows;
  } finally {
    await a.stop();
  }
}

type Tokens = Awaited<ReturnType<typeof roleTokens>>;

async function purgeOnce(a: Awaited<ReturnType<typeof startApi>>, tk: Tokens, databaseUrl: string, waves: string[]) {
  const planStart = performance.now();
  const p = await api<{ id: string; planHash: string; requiresBreakGlass: boolean; itemCount: number }>(
    a.url,
    tk.requester,
    'POST',
    '/v1/purges',
    {
      dueBefore: new Date().toISOString(),
      reason: 'bench: retention ended',
      ticket: 'BENCH',
      rollout: { bakeSeconds: 0, concurrency: 16, waves },
    },
  );
  if (p.status !== 201) throw new Error(`purge plan failed ${p.status} ${JSON.stringify(p.body).slice(0, 300)}`);
  const planSeconds = (performance.now() - planStart) / 1000;
  for (const role of p.body.requiresBreakGlass ? (['approver', 'admin'] as const) : (['approver'] as const)) {
    let r = await api(a.url, tk[role], 'POST', `/v1/operations/${p.body.id}/approve`, { planHash: p.body.planHash });
    // Load shedding right after a large plan answers 503 with Retry-After: wait, as a client would.
    for (let k = 0; r.status === 503 && k < 20; k++) {
      await new Promise((res) => setTimeout(res, 500));
      r = await api(a.url, tk[role], 'POST', `/v1/operations/${p.body.id}/approve`, { planHash: p.body.planHash });
    }
    if (r.status !== 200) throw new Error(`approve failed ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
  }
  const started = performance.now();
  const s = await api(a.url, tk.operator, 'POST', `/v1/operations/${p.body.id}/start`, {});
  if (s.status !== 200) throw new Error(`start failed ${s.status} ${JSON.stringify(s.body)}`);
  let state = '';
  for (const end = Date.now() + 600_000; Date.now() < end;) {
    state = (await api<{ state: string }>(a.url, tk.viewer, 'GET', `/v1/operations/${p.body.id}`)).body.state;
    if (['completed', 'completed_with_failures', 'halted', 'paused', 'cancelled'].includes(state)) break;
    await new Promise((res) => setTimeout(res, 20));
  }
  const seconds = (performance.now() - started) / 1000;
  const purged = await sql(
    databaseUrl,
    `SELECT count(*)::int AS n FROM resources WHERE type = 'papp' AND state = 'purged'`,
  );
  return {
    figure: `purge items/s (registry adapter, ${N.toLocaleString('en')} due, ${waves.length} wave(s), bake 0)`,
    value: Math.round(N / seconds).toLocaleString('en'),
    detail: `${seconds.toFixed(2)} s start → ${state}; ${purged.rows[0].n} purged; plan ${planSeconds.toFixed(2)} s`,
  };
}
