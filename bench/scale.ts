// Scale curve (issue 10 item 6): plan IDs/s and items/s through waves at 10k, 100k (and 1M with
// BENCH_SCALE_1M=1), so the growth of cost is visible, and Redis memory while each operation runs
// (INFO memory used_memory: peak during the run minus the figure before it was submitted). One API
// with its workers in one compiled child process; all on 127.0.0.1, bounded.
import { Redis } from 'ioredis';
import { roleTokens, startApi } from './support.ts';
import { planOnce, REGISTRY, requesterToken, seedBigRegistry } from './plan.ts';
import { wavesThroughput } from './execution.ts';

const SIZES = [10_000, 100_000, ...(process.env.BENCH_SCALE_1M === '1' ? [1_000_000] : [])];
/** How often Redis memory is read while an operation runs. */
const SAMPLE_MS = 100;

const planGoal = (n: number) => (n >= 1_000_000 ? '≥ 250,000' : n >= 100_000 ? '≥ 150,000' : '—');

async function usedMemory(redis: Redis) {
  const m = /used_memory:(\d+)/.exec(await redis.info('memory'));
  return m ? Number(m[1]) : NaN;
}

export async function benchScale(env: { databaseUrl: string; redisUrl: string }) {
  const rows: Record<string, string | number>[] = [];
  await seedBigRegistry(env.databaseUrl);
  const a = await startApi({ ...env, extra: { BLASTGATE_WORKER_CONCURRENCY: '4' } });
  const redis = new Redis(env.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 3 });
  await redis.connect();
  try {
    const tk = await roleTokens(a);
    const requester = await requesterToken(a);
    let offset = 0;
    for (const n of SIZES) {
      const plan = await planOnce(a, requester, n, offset);
      offset += n;
      const before = await usedMemory(redis);
      let peak = before;
      let sampling: NodeJS.Timeout | undefined;
      const w = await wavesThroughput(a, tk, env.databaseUrl, `s${n}`, n, () => {
        sampling = setInterval(() => {
          void usedMemory(redis).then((b) => (peak = Math.max(peak, b)));
        }, SAMPLE_MS);
      }).finally(() => clearInterval(sampling));
      const size = n.toLocaleString('en');
      rows.push({
        size,
        'plan IDs/s': Math.round(plan.idsPerSec).toLocaleString('en'),
        'plan goal': planGoal(n),
        'plan s': plan.seconds.toFixed(2),
        'wave items/s': Math.round(w.itemsPerSec).toLocaleString('en'),
        'waves goal': '≥ 20,000',
        'waves s': `${w.seconds.toFixed(2)} (${w.end})`,
        'Redis used_memory Δ (MB)': ((peak - before) / 2 ** 20).toFixed(1),
        'Redis before (MB)': (before / 2 ** 20).toFixed(1),
      });
    }
  } finally {
    redis.disconnect();
    await a.stop();
  }
  console.log(
    `(plans: requester IDs against a ${REGISTRY.toLocaleString('en')}-resource registry; waves: registry adapter, ` +
      `5 waves, bake 0, 4 chunk workers in the API process, rollout concurrency 16)`,
  );
  return rows;
}
