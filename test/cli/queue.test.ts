// `blastgate submit --via-queue` against a plain BullMQ worker on the intake queue that answers
// as contract §2 says: the job carries { token, operation } under the job ID = idempotency key;
// a plan is exit 0, a PLAN_REJECTED failure exit 10 with its counts, any other refusal exit 1
// with its code.
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { Queue, Worker, UnrecoverableError, type Job } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { jsonError, runCli } from '../support/cli.ts';

const prefix = `bgcli${randomBytes(4).toString('hex')}`;
const redisUrl = inject('redisUrl');
const jobs: Job[] = [];
let worker: Worker;

beforeAll(async () => {
  worker = new Worker(
    'intake',
    async (job: Job<{ token: string; operation: { reason: string; ids: string[] } }>) => {
      jobs.push(job);
      const { token, operation } = job.data;
      // What the intake service answers for a bad rollout field (the route's 400, with its status).
      if (operation.reason === 'From CI, rollout typo')
        throw new UnrecoverableError(
          JSON.stringify({
            code: 'VALIDATION_FAILED',
            message: 'Unknown field "bakeSecond" in operation.rollout',
            status: 400,
            details: [{ field: 'operation.rollout', unknownFields: ['bakeSecond'] }],
          }),
        );
      if (!token.startsWith('good-token'))
        throw new UnrecoverableError(JSON.stringify({ code: 'UNAUTHENTICATED', message: 'Unknown token' }));
      if (operation.ids.includes('app_bad'))
        throw new UnrecoverableError(
          JSON.stringify({
            code: 'PLAN_REJECTED',
            message: 'The operation was rejected: 1 unknown.',
            operationId: 'op_rejected1',
            report: { counts: { ok: 1, unknown: 1 }, offenders: { unknown: [{ id: 'app_bad', index: 1 }] } },
          }),
        );
      return {
        operationId: 'op_queued1',
        state: 'planned',
        planHash: 'a'.repeat(64),
        plan: { itemCount: operation.ids.length, tenantCount: 1, waves: [] },
        links: { self: '/v1/operations/op_queued1', events: '/v1/operations/op_queued1/events' },
      };
    },
    { connection: { url: redisUrl, maxRetriesPerRequest: null }, prefix },
  );
  await worker.waitUntilReady();
});
afterAll(async () => {
  await worker?.close();
});

const submit = (token: string, ids: string, key: string) =>
  runCli(
    ['--json', 'submit', '--via-queue', '--type', 'app', '--reason', 'From CI', '--ticket', 'CI-1'].concat([
      '--idempotency-key',
      key,
      '--queue-prefix',
      prefix,
    ]),
    { token, input: ids, env: { BLASTGATE_REDIS_URL: redisUrl } },
  );

/** A port nothing listens on. */
const closedPort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });

describe('submit --via-queue', () => {
  it('adds a job { token, operation } under the idempotency key and prints the plan (0)', async () => {
    const r = await submit('good-token', 'app_1\n{"id":"app_2"}\n', 'ci-run-1');
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as { operation: { id: string; state: string }; submittedIds: number };
    expect(doc).toMatchObject({ operation: { id: 'op_queued1', state: 'planned' }, submittedIds: 2 });
    const job = jobs.find((j) => j.id === 'ci-run-1')!;
    expect(job.name).toBe('submit');
    expect(job.data).toEqual({
      token: 'good-token',
      operation: { targetType: 'app', reason: 'From CI', ticket: 'CI-1', ids: ['app_1', 'app_2'] },
    });
  });

  it("a key BullMQ still keeps for another body is IDEMPOTENCY_KEY_REUSED (1), not that job's outcome", async () => {
    const first = await submit('good-token', 'app_1\napp_2\n', 'ci-run-reused');
    expect(first.code, first.stderr).toBe(0);
    // Another list under the same key: BullMQ's add returns the kept job, whose outcome is the
    // first list's plan. It used to exit 0 printing that operation as if this list were planned.
    const again = await submit('good-token', 'app_3\n', 'ci-run-reused');
    expect(again.code, again.stdout).toBe(1);
    expect(jsonError(again).error).toMatchObject({
      code: 'IDEMPOTENCY_KEY_REUSED',
      details: { idempotencyKey: 'ci-run-reused', jobState: 'completed' },
    });
    expect(jobs.filter((j) => j.id === 'ci-run-reused')).toHaveLength(1);
    // The same list again is the same job: its outcome, exit 0, said to be a replay.
    const same = await submit('good-token', 'app_1\napp_2\n', 'ci-run-reused');
    expect(same.code, same.stderr).toBe(0);
    expect(JSON.parse(same.stdout)).toMatchObject({ operation: { id: 'op_queued1' }, replayed: true });
  });

  it("another token's job under the key is IDEMPOTENCY_KEY_REUSED (1), never its operation, whatever the body", async () => {
    const first = await submit('good-token', 'app_1\napp_2\n', 'ci-run-two-tokens');
    expect(first.code, first.stderr).toBe(0);
    // Pipeline B, another requester token, the same key and the same body: it got A's operation as
    // a replay (exit 0), where REST answers 409 IDEMPOTENCY_KEY_REUSED (a trial).
    const other = await submit('good-token-b', 'app_1\napp_2\n', 'ci-run-two-tokens');
    expect(other.code, other.stdout).toBe(1);
    expect(other.stdout).toBe('');
    expect(jsonError(other)).toMatchObject({
      exitCode: 1,
      error: { code: 'IDEMPOTENCY_KEY_REUSED', details: { idempotencyKey: 'ci-run-two-tokens' } },
    });
    expect(jsonError(other).error.message).toContain('another token');
    expect(jsonError(other).error.message).not.toContain('op_queued1');
    // The other token's job is not the answer even under --wait, nor with another body.
    const otherBody = await submit('good-token-b', 'app_9\n', 'ci-run-two-tokens');
    expect(jsonError(otherBody).error.code).toBe('IDEMPOTENCY_KEY_REUSED');
    expect(jsonError(otherBody).error.message).toContain('another token');
    expect(jobs.filter((j) => j.id === 'ci-run-two-tokens')).toHaveLength(1);
    // A's re-run is still a replay.
    const again = await submit('good-token', 'app_1\napp_2\n', 'ci-run-two-tokens');
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ operation: { id: 'op_queued1' }, replayed: true });
  });

  it('a replay whose current state cannot be read says it is unknown, never the plan-time state as current', async () => {
    const first = await submit('good-token', 'app_7\n', 'ci-run-stale');
    expect(first.code, first.stderr).toBe(0);
    // The operation may have been cancelled since; the API is not there to say. It used to print
    // "is planned" and "Next: an approver runs blastgate approve …", and "state": "planned".
    const url = `http://127.0.0.1:${await closedPort()}`;
    const args = ['submit', '--via-queue', '--type', 'app', '--reason', 'From CI', '--ticket', 'CI-1'].concat([
      '--idempotency-key',
      'ci-run-stale',
      '--queue-prefix',
      prefix,
    ]);
    const opts = { url, token: 'good-token', input: 'app_7\n', env: { BLASTGATE_REDIS_URL: redisUrl } };
    const json = await runCli(['--json', ...args], opts);
    expect(json.code, json.stderr).toBe(0);
    const doc = JSON.parse(json.stdout);
    expect(doc).toMatchObject({
      replayed: true,
      operation: { id: 'op_queued1', state: null, stateAtPlan: 'planned' },
      stateUnknown: expect.stringContaining('ECONNREFUSED'),
    });
    const human = await runCli(args, opts);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toContain('Operation op_queued1: its current state is unknown');
    expect(human.stdout).toContain('CONNECTION_FAILED');
    expect(human.stdout).toContain('blastgate status op_queued1');
    expect(human.stdout).not.toContain('is planned');
    expect(human.stdout).not.toContain('Next:');
  });

  it('a failed job is not the answer for good: the same key run again after the cause was fixed is added anew', async () => {
    const refused = await submit('bad-token', 'app_5\n', 'ci-run-fixed');
    expect(refused.code).toBe(1);
    expect(jsonError(refused).error.code).toBe('UNAUTHENTICATED');
    // The pipeline's secret fixed, the job re-run: it got the kept failure back ("the bearer token
    // is unknown") for a week, whatever the token (a trial).
    const fixed = await submit('good-token', 'app_5\n', 'ci-run-fixed');
    expect(fixed.code, fixed.stderr).toBe(0);
    expect(JSON.parse(fixed.stdout)).toMatchObject({ operation: { id: 'op_queued1', state: 'planned' } });
    expect(JSON.parse(fixed.stdout).replayed).toBeUndefined();
  });

  it('a rejected plan is exit 10 with its counts; another refusal exit 1 with its code', async () => {
    const rejected = await submit('good-token', 'app_1\napp_bad\n', 'ci-run-2');
    expect(rejected.code, rejected.stderr).toBe(10);
    expect(jsonError(rejected).error).toMatchObject({
      code: 'PLAN_REJECTED',
      details: { operationId: 'op_rejected1', counts: { unknown: 1 }, reportUrl: '/v1/operations/op_rejected1/report' },
    });
    const human = await runCli(
      ['submit', '--via-queue', '--type', 'app', '--reason', 'From CI', '--ticket', 'CI-1', '--queue-prefix', prefix],
      { token: 'good-token', input: 'app_bad\n', env: { BLASTGATE_REDIS_URL: redisUrl } },
    );
    expect(human.code).toBe(10);
    expect(human.stderr).toContain('unknown: 1  e.g. app_bad');
    expect(human.stderr).toContain('blastgate report op_rejected1');
    // Offenders are named by their line in the file too, as over REST (the job names them by index).
    const blank = await submit('good-token', 'app_1\n\napp_bad\n', 'ci-run-2-lines');
    expect(jsonError(blank).error.details).toMatchObject({
      offenders: { unknown: [{ index: 1, line: 3, id: 'app_bad' }] },
    });
    const humanLines = await runCli(
      ['submit', '--via-queue', '--type', 'app', '--reason', 'From CI', '--ticket', 'CI-1', '--queue-prefix', prefix],
      { token: 'good-token', input: 'app_1\n\napp_bad\n', env: { BLASTGATE_REDIS_URL: redisUrl } },
    );
    expect(humanLines.stderr).toContain('e.g. app_bad (line 3)');

    const refused = await submit('bad-token', 'app_1\n', 'ci-run-3');
    expect(refused.code).toBe(1);
    expect(jsonError(refused).error.code).toBe('UNAUTHENTICATED');
    // The CLI never prints the token it sent.
    expect(refused.stderr + refused.stdout).not.toContain('bad-token');
  });

  it('refuses a job ID BullMQ cannot take, and a missing Redis URL, as usage errors (2)', async () => {
    const r = await submit('good-token', 'app_1\n', 'has:colon');
    expect(r.code).toBe(2);
    // A whole number: BullMQ refuses it only once added (QUEUE_FAILED, exit 1).
    const integer = await submit('good-token', 'app_1\n', '12345');
    expect(integer.code, integer.stderr).toBe(2);
    expect(jsonError(integer).error.message).toContain('whole number');
    const none = await runCli(['submit', '--via-queue', '--type', 'app', '--reason', 'x y z', '--ticket', 'T'], {
      token: 'good-token',
      input: 'app_1\n',
    });
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('--redis-url');
  });

  it('a malformed Redis URL is a usage error (2) at once, naming the flag or the variable and why', async () => {
    const run = (env: Record<string, string>, flags: string[] = []) =>
      runCli(
        ['--json', 'submit', '--via-queue', '--type', 'app', '--reason', 'From CI', '--ticket', 'CI-1', ...flags],
        {
          token: 'good-token',
          input: 'app_1\n',
          env,
          timeoutMs: 30_000,
        },
      );
    // They used to be tried for 15 s and end as exit 1 QUEUE_UNREACHABLE "at (invalid URL)".
    const started = Date.now();
    const noColon = await run({}, ['--redis-url', 'redis//127.0.0.1:56917']);
    expect(noColon.code, noColon.stderr).toBe(2);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(jsonError(noColon).error.message).toMatch(/^--redis-url is not a URL/);
    const http = await run({}, ['--redis-url', 'http://127.0.0.1:56917']);
    expect(http.code, http.stderr).toBe(2);
    expect(jsonError(http).error.message).toContain('--redis-url must use redis: or rediss: (got http:)');
    const fromEnv = await run({ BLASTGATE_REDIS_URL: 'http://:secret@127.0.0.1:56917' });
    expect(fromEnv.code, fromEnv.stderr).toBe(2);
    expect(jsonError(fromEnv).error.message).toContain('BLASTGATE_REDIS_URL must use redis: or rediss:');
    expect(fromEnv.stderr).not.toContain('secret');
    const db = await run({}, ['--redis-url', 'redis://127.0.0.1:56917/queue']);
    expect(jsonError(db).error.message).toContain('must name a Redis database by number');
  });

  it("the job's input refused (the route's 400) is a usage error (2) naming the flag, as over REST", async () => {
    const r = await runCli(
      ['submit', '--via-queue', '--type', 'app', '--reason', 'From CI, rollout typo', '--ticket', 'CI-1'].concat([
        '--rollout',
        '{"bakeSecond":5}',
        '--idempotency-key',
        'ci-run-typo',
        '--queue-prefix',
        prefix,
      ]),
      { token: 'good-token', input: 'app_1\n', env: { BLASTGATE_REDIS_URL: redisUrl } },
    );
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain('Unknown field "bakeSecond" in --rollout');
    expect(r.stderr).not.toContain('operation.rollout');
  });

  it('a job no worker picks up: says so while it waits, and on timeout (13) that it stays queued and how to withdraw it', async () => {
    // A prefix no worker consumes. It used to print nothing until TIMED_OUT, and the job was planned later anyway.
    const idle = `${prefix}idle`;
    const args = ['submit', '--via-queue', '--type', 'app', '--reason', 'From CI', '--ticket', 'CI-1'].concat([
      '--queue-prefix',
      idle,
      '--timeout',
      '7s',
    ]);
    const opts = { token: 'good-token', input: 'app_1\n', env: { BLASTGATE_REDIS_URL: redisUrl }, timeoutMs: 60_000 };
    const [human, json, unkeyed] = await Promise.all([
      runCli([...args, '--idempotency-key', 'ci-run-idle'], opts),
      runCli(['--json', ...args, '--idempotency-key', 'ci-run-idle-json'], opts),
      runCli(['--json', ...args], opts),
    ]);
    // Without --idempotency-key the key was made up for the run: the advice names it, since "the
    // same --idempotency-key" sent a re-run off with a new one and a second job (trial Y).
    const made = jsonError(unkeyed).error as unknown as { message: string; details: { jobId: string } };
    expect(made.details.jobId).toMatch(/^cli-/);
    expect(made.message).toContain(`run the same command with --idempotency-key ${made.details.jobId}`);
    expect(human.code, human.stderr).toBe(13);
    // Under a prefix no worker consumes, while this file's worker runs under another: a typo of
    // --queue-prefix waited to its timeout with "is one running on this Redis and prefix?" (a trial).
    expect(human.stderr).toMatch(
      new RegExp(
        `The intake job ci-run-idle is still waiting after \\d+ s: no intake worker is connected under prefix ${idle}, while intake workers are under [^\\n]*\\b${prefix}\\b[^\\n]*\\(is --queue-prefix or BLASTGATE_QUEUE_PREFIX right\\?\\)`,
      ),
    );
    expect(human.stderr).toMatch(/TIMED_OUT.*it is waiting: no intake worker is connected under prefix/);
    expect(human.stderr).toContain('It stays in the queue: a worker that takes it later still plans it');
    expect(human.stderr).toContain("Queue.remove('ci-run-idle')");
    expect(json.code, json.stderr).toBe(13);
    // --json: the one error document on stderr, no notes.
    expect(json.stderr.trim().split('\n')).toHaveLength(1);
    expect(jsonError(json).error).toMatchObject({
      code: 'TIMED_OUT',
      details: { jobId: 'ci-run-idle-json', jobState: 'waiting' },
    });
    const q = new Queue('intake', { connection: { url: redisUrl }, prefix: idle });
    try {
      expect(await (await q.getJob('ci-run-idle'))?.getState()).toBe('waiting');
    } finally {
      await q.obliterate({ force: true });
      await q.close();
    }
  });

  it('a Redis that cannot be reached ends the wait with exit 1 naming it, within --timeout, no stack traces', async () => {
    // A port nothing listens on. It used to wait for ever (--timeout bounded only the wait for the
    // job's outcome, after the job was added), printing ioredis's stack trace for every reconnect.
    const port = await closedPort();
    const started = Date.now();
    const r = await runCli(
      ['--json', 'submit', '--via-queue', '--type', 'app', '--reason', 'From CI', '--ticket', 'CI-1'].concat([
        '--idempotency-key',
        'ci-run-unreachable',
        '--redis-url',
        `redis://127.0.0.1:${port}`,
        '--timeout',
        '3s',
      ]),
      { token: 'good-token', input: 'app_1\n', timeoutMs: 30_000 },
    );
    expect(r.code, r.stderr).toBe(1);
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(jsonError(r).error).toMatchObject({ code: 'QUEUE_UNREACHABLE' });
    expect(jsonError(r).error.message).toContain(`redis://127.0.0.1:${port}`);
    expect(jsonError(r).error.message).toContain('ECONNREFUSED');
    // --json: stderr holds the one error document, nothing else.
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });
});
