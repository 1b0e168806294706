// What a worker process logs while Redis is away. A restart trial counted ~360 log lines, each
// with the driver's stack, for two 15 s Redis outages: every connection's every reconnect attempt
// and every consumer's error event, so an operator paging through the log lost what else it said.
// An outage is now logged once when it begins (code and message, no stack) and once when it ends.
//
// Runs on a redis-server of its own: the suite's shared Redis must not be stopped under other files.
import { Writable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorkers, type RunningWorkers } from '../../src/worker-runtime.ts';
import { testDownstream } from '../support/app.ts';
import { pollUntil } from '../support/crash.ts';
import { startOwnPostgres } from '../support/pg-server.ts';
import { startOwnRedis, type OwnRedis } from '../support/redis-server.ts';
import { TEST_SNAPSHOT_KEY_BYTES } from '../support/keys.ts';
import { createTestDatabase } from '../support/db.ts';

const OUTAGE_MS = 6_000;

let redis: OwnRedis;
let workers: RunningWorkers | undefined;
const lines: Line[] = [];

type Line = { level: number; msg: string; err?: { stack?: string }; code?: string };

/** A worker runtime whose log lines land in `into`, parsed. */
function capturedWorkers(
  into: Line[],
  o: { databaseUrl: string; reconcileEveryMs: number; purgeProposalCron?: string },
) {
  let rest = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      const parts = (rest + chunk.toString()).split('\n');
      rest = parts.pop()!;
      for (const l of parts) if (l.trim()) into.push(JSON.parse(l) as Line);
      done();
    },
  });
  return startWorkers({
    ...o,
    redisUrl: redis.url,
    queuePrefix: `bgo${randomBytes(4).toString('hex')}`,
    concurrency: 2,
    downstream: testDownstream(),
    snapshotKey: TEST_SNAPSHOT_KEY_BYTES,
    logger: pino({ level: 'info' }, sink),
  });
}

beforeAll(async () => {
  redis = await startOwnRedis();
  workers = await capturedWorkers(lines, {
    databaseUrl: await createTestDatabase(),
    reconcileEveryMs: 500,
    // As `npm start` runs them: the retention scheduler's consumer too (a trial's 16 stacks).
    purgeProposalCron: '0 3 * * *',
  });
});
afterAll(async () => {
  try {
    await redis?.start().catch(() => undefined);
    await workers?.close();
  } finally {
    await redis?.destroy();
  }
});

const saidBack = () =>
  pollUntil(
    () => lines.some((l) => /^redis \(workers\): answers again/.test(l.msg)),
    'the log to say Redis is back',
    15_000,
    50,
  );

describe("a worker process's log while Redis is away", () => {
  it('says the outage once when it begins, without a stack, and once when it ends', async () => {
    lines.length = 0;
    await redis.stop('SIGTERM');
    await new Promise((f) => setTimeout(f, OUTAGE_MS));
    const during = lines.filter((l) => l.level >= 40);
    await redis.start();
    await saidBack();
    const shown = JSON.stringify(lines.map((l) => l.msg));
    expect(during.length, shown).toBe(1);
    expect(during[0]!.msg).toMatch(/^redis \(workers\): failing/);
    expect(during[0]!.err?.stack, shown).toBeUndefined();
    expect(lines.filter((l) => /^redis \(workers\): answers again/.test(l.msg)).length, shown).toBe(1);
    // The next outage is said again: the log re-arms once Redis answered.
    lines.length = 0;
    await redis.stop('SIGKILL');
    await pollUntil(
      () => lines.some((l) => /^redis \(workers\): failing/.test(l.msg)),
      'the second outage to be logged',
      10_000,
      50,
    );
    await redis.start();
    await saidBack();
    expect(lines.filter((l) => l.level >= 40).length, JSON.stringify(lines.map((l) => l.msg))).toBe(1);
  }, 60_000);
});

// The same for PostgreSQL: the reconcile loop (every 200 ms here, 10 s by default) and the webhook
// dispatch pass each failed every round with the driver's stack (a trial: `reconcile failed`).
describe("a worker process's log while PostgreSQL is away", () => {
  let pgs: Awaited<ReturnType<typeof startOwnPostgres>> | undefined;
  let w: RunningWorkers | undefined;
  const seen: Line[] = [];
  beforeAll(async () => {
    pgs = await startOwnPostgres();
    w = await capturedWorkers(seen, { databaseUrl: pgs.url, reconcileEveryMs: 200 });
  }, 120_000);
  afterAll(async () => {
    await pgs?.server.start().catch(() => undefined);
    await w?.close();
    pgs?.destroy();
  });

  it('says each failing loop once, without a stack, and says when it answers again', async () => {
    await redis.start().catch(() => undefined); // up, whatever the test before left
    seen.length = 0;
    pgs!.server.stopSync();
    await new Promise((f) => setTimeout(f, 3_000));
    const during = seen.filter((l) => l.level >= 40);
    await pgs!.server.start();
    await pollUntil(
      () => seen.some((l) => l.msg === 'reconcile: answers again'),
      'the reconcile loop to recover',
      20_000,
      50,
    );
    const shown = JSON.stringify(seen.map((l) => l.msg));
    expect(
      during.map((l) => l.msg),
      shown,
    ).toContain('reconcile: failing (further failures are not logged until it answers again)');
    expect(new Set(during.map((l) => l.msg)).size, shown).toBe(during.length); // no line twice
    expect(
      during.filter((l) => l.err?.stack),
      shown,
    ).toEqual([]);
  }, 60_000);
});
