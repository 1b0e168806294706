// README (CI intake queue): `replayed` is true "when the key had made the operation before
// ... and nothing new was planned"; the CLI: "a kept job that succeeded is a replay". A re-run
// after `--timeout` (exit 13: "run the same command again to wait for it") waits for the same
// job, which is planned only now, for the first time: it must not say it is a replay.
import { randomBytes } from 'node:crypto';
import { Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, expect, inject, it } from 'vitest';
import { runCli } from '../support/cli.ts';

const prefix = `bgrr${randomBytes(4).toString('hex')}`;
const redisUrl = inject('redisUrl');
let worker: Worker | undefined;
const planned: string[] = [];
afterAll(async () => {
  await worker?.close();
});
const submit = (timeout: string) =>
  runCli(
    [
      '--json',
      'submit',
      '--via-queue',
      '--type',
      'app',
      '--reason',
      'From CI',
      '--ticket',
      'CI-1',
      '--idempotency-key',
      'ci-rerun-1',
      '--queue-prefix',
      prefix,
      '--timeout',
      timeout,
    ],
    {
      token: 'good-token',
      input: 'app_1\n',
      env: { BLASTGATE_REDIS_URL: redisUrl, BLASTGATE_URL: 'http://127.0.0.1:9' },
    },
  );

/** Until a client of this Redis is blocked reading a stream: the re-run's QueueEvents, waiting for the job. */
async function rerunWaiting(redis: Redis) {
  for (let i = 0; i < 400; i++) {
    const clients = String(await redis.client('LIST'));
    if (/cmd=xread/.test(clients)) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('the re-run never waited for the job');
}

it('a re-run that waits for the job the timed-out run left queued is not reported as a replay', async () => {
  const first = await submit('1500ms');
  expect(first.code, first.stderr).toBe(13);
  // A worker comes only now, and takes the job; it plans it once the re-run waits for it (the
  // re-run found it active, not done: nothing had been planned yet).
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  worker = new Worker(
    'intake',
    async (job: Job) => {
      planned.push(job.id!);
      await gate;
      return {
        operationId: 'op_new1',
        state: 'planned',
        planHash: 'a'.repeat(64),
        plan: { itemCount: 1, tenantCount: 1, waves: [] },
        links: { self: '/v1/operations/op_new1', events: '/v1/operations/op_new1/events' },
        replayed: false, // what the real worker says for a first plan
      };
    },
    { connection: { url: redisUrl, maxRetriesPerRequest: null }, prefix },
  );
  const redis = new Redis(redisUrl);
  try {
    for (let i = 0; i < 400 && planned.length === 0; i++) await new Promise((r) => setTimeout(r, 25));
    expect(planned).toEqual(['ci-rerun-1']);
    const second = submit('20s');
    await rerunWaiting(redis);
    await new Promise((r) => setTimeout(r, 200));
    release();
    const done = await second;
    expect(done.code, done.stderr).toBe(0);
    const doc = JSON.parse(done.stdout) as { replayed?: boolean };
    expect(doc.replayed).toBeUndefined();
  } finally {
    release();
    redis.disconnect();
  }
});
