// The CI intake queue (README "CI intake queue"): jobs added by a plain BullMQ client, as a
// pipeline adds them, are planned by the worker runtime exactly as POST /v1/operations plans.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Queue, QueueEvents, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import pino from 'pino';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/plugins/metrics.ts';
import { startWorkers, type RunningWorkers } from '../../src/worker-runtime.ts';
import { buildTestApp, testDownstream, type TestApp } from '../support/app.ts';
import { TEST_SNAPSHOT_KEY_BYTES } from '../support/keys.ts';
import { intakeTokenFingerprint } from '../../src/cli/token-fingerprint.ts';
import { hashToken } from '../../src/modules/auth/secrets.ts';
import { appId, query, seedRegistry, siteId } from '../support/seed.ts';

let t: TestApp;
let workers: RunningWorkers;
let redis: Redis;
let eventsConn: Redis;
let queue: Queue;
let events: QueueEvents;
const metrics = createMetrics();
const prefix = `bgi${randomBytes(4).toString('hex')}`;
const spec = { targetType: 'app', reason: 'Remove the legacy app', ticket: 'CHG-9' };

beforeAll(async () => {
  t = await buildTestApp({ queuePrefix: prefix });
  await seedRegistry(t.databaseUrl, { sites: 20, appsPerSite: 5 });
  workers = await startWorkers({
    databaseUrl: t.databaseUrl,
    redisUrl: t.redisUrl,
    queuePrefix: prefix,
    concurrency: 2,
    downstream: testDownstream(),
    snapshotKey: TEST_SNAPSHOT_KEY_BYTES,
    logger: pino({ level: 'silent' }),
    lockDurationMs: 5_000,
    metrics,
  });
  // What a pipeline holds: a plain BullMQ client on the queue named in the contract.
  redis = new Redis(t.redisUrl, { maxRetriesPerRequest: null });
  queue = new Queue('intake', { connection: redis, prefix });
  eventsConn = redis.duplicate();
  events = new QueueEvents('intake', { connection: eventsConn, prefix });
  await events.waitUntilReady();
});
afterAll(async () => {
  await events?.close();
  await queue?.close();
  redis?.disconnect();
  eventsConn?.disconnect();
  await workers?.close();
  await t?.close();
});

/** A return value or a failedReason, read as JSON. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON read back from Redis
type Reply = any;
const add = (jobId: string, data: unknown) => queue.add('submit', data, { jobId });
/** The job's return value, or its failedReason parsed (a refusal is JSON). */
async function outcome(job: Job): Promise<{ ok: true; value: Reply } | { ok: false; reason: Reply }> {
  try {
    return { ok: true, value: await job.waitUntilFinished(events, 30_000) };
  } catch (err) {
    return { ok: false, reason: JSON.parse((err as Error).message) };
  }
}
async function refusal(jobId: string, data: unknown) {
  const r = await outcome(await add(jobId, data));
  if (r.ok) throw new Error(`job ${jobId} was not refused: ${JSON.stringify(r.value)}`);
  return r.reason;
}

/** Every place in Redis that holds `text`: keys, strings, hashes, lists, sets, sorted sets, streams. */
async function whereInRedis(text: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'COUNT', 500);
    cursor = next;
    for (const key of keys) {
      if (key.includes(text)) found.push(`key ${key}`);
      const type = await redis.type(key);
      let values: string[] = [];
      if (type === 'string') values = [(await redis.get(key)) ?? ''];
      else if (type === 'hash') values = Object.entries(await redis.hgetall(key)).flat();
      else if (type === 'list') values = await redis.lrange(key, 0, -1);
      else if (type === 'set') values = await redis.smembers(key);
      else if (type === 'zset') values = await redis.zrange(key, '0', '-1');
      else if (type === 'stream')
        values = (await redis.xrange(key, '-', '+')).flatMap(([id, fields]) => [id, ...fields]);
      if (values.some((v) => v.includes(text))) found.push(`${type} ${key}`);
    }
  } while (cursor !== '0');
  return found;
}

const getOp = (id: string) =>
  request(t.app.server).get(`/v1/operations/${id}`).set('authorization', t.auth('viewer')).expect(200);

describe('the CI intake queue', () => {
  it('plans a valid job: the return value names the operation, which the API shows planned, and the token is gone', async () => {
    const job = await add('ci-valid-1', {
      token: t.tokens.requester,
      operation: { ...spec, ids: [appId(1, 0), appId(1, 1)] },
    });
    const r = await outcome(job);
    if (!r.ok) throw new Error(JSON.stringify(r.reason));
    expect(r.value).toMatchObject({
      operationId: expect.stringMatching(/^op_/),
      state: 'planned',
      planHash: expect.any(String),
      plan: { itemCount: 2 },
    });
    const id = r.value.operationId as string;
    expect(r.value.links).toEqual({ self: `/v1/operations/${id}`, events: `/v1/operations/${id}/events` });
    const op = await getOp(id);
    expect(op.body).toMatchObject({ state: 'planned', planHash: r.value.planHash, idempotencyKey: 'ci-valid-1' });
    expect(op.body.requestedBy).toBe('test-requester');
    // Audited like a REST submission, by the token's name, and saying it came through the queue.
    const audit = await query(t.databaseUrl, `SELECT actor, payload FROM audit_events WHERE operation_id = $1`, [id]);
    expect(audit).toContainEqual({
      actor: 'test-requester',
      payload: expect.objectContaining({ via: 'intake', jobId: 'ci-valid-1' }),
    });
    // Neither the token nor its seal stays in the job's data (or anywhere in Redis).
    // What stays is whose job it is: a fingerprint of the token, not the token.
    const data = (await queue.getJob('ci-valid-1'))!.data;
    expect(Object.keys(data).sort()).toEqual(['operation', 'tokenFingerprint']);
    expect(data.tokenFingerprint).toBe(intakeTokenFingerprint('ci-valid-1', t.tokens.requester));
    expect(data.tokenFingerprint).not.toBe(hashToken(t.tokens.requester));
    expect(await whereInRedis(t.tokens.requester)).toEqual([]);
  });

  it('fails a job with a bad token as UNAUTHENTICATED, audits it, and no trace of the token remains in Redis', async () => {
    const bogus = `bg_bogus_${randomBytes(12).toString('hex')}`;
    // The search finds a token that is there: a job on a queue nobody consumes keeps it.
    const idle = new Queue('intake-idle', { connection: redis, prefix });
    await idle.add('submit', { token: bogus }, { jobId: 'idle-1' });
    expect(await whereInRedis(bogus)).toEqual([`hash ${prefix}:intake-idle:idle-1`]);
    await idle.obliterate({ force: true });
    await idle.close();
    const reason = await refusal('ci-bad-token', { token: bogus, operation: { ...spec, ids: [appId(2, 0)] } });
    expect(reason).toMatchObject({ code: 'UNAUTHENTICATED', details: { reason: 'UNAUTHORIZED' } });
    expect(await whereInRedis(bogus)).toEqual([]);
    const audit = await query(
      t.databaseUrl,
      `SELECT actor, outcome, payload FROM audit_events WHERE action = 'intake.refused'`,
    );
    expect(audit).toContainEqual({
      actor: 'anonymous',
      outcome: 'refused',
      payload: expect.objectContaining({ jobId: 'ci-bad-token', code: 'UNAUTHENTICATED' }),
    });
    // No token at all, and a revoked one: refused the same way, saying why.
    expect(await refusal('ci-no-token', { operation: { ...spec, ids: [appId(2, 0)] } })).toMatchObject({
      code: 'UNAUTHENTICATED',
      message: 'The job data has no bearer token (data.token)',
    });
    // Data that is no object says so (null read as a missing token field: trial L).
    expect(await refusal('ci-null-data', null)).toMatchObject({
      code: 'UNAUTHENTICATED',
      message: 'The job data is null, not an object {token, operation}: it has no bearer token (data.token)',
    });
    // A token that is there but not text is not "no token" (a trial read that and looked for a missing field).
    expect(
      await refusal('ci-number-token', { token: 12345, operation: { ...spec, ids: [appId(2, 0)] } }),
    ).toMatchObject({
      code: 'UNAUTHENTICATED',
      message: expect.stringContaining('data.token must be the bearer token, as text'),
    });
    const created = await request(t.app.server)
      .post('/v1/admin/tokens')
      .set('authorization', t.auth('admin'))
      .send({ name: 'ci-revoked', role: 'requester' })
      .expect(201);
    await request(t.app.server)
      .delete(`/v1/admin/tokens/${created.body.id}`)
      .set('authorization', t.auth('admin'))
      .expect((res) => expect(res.status).toBeLessThan(300));
    const revoked = await refusal('ci-revoked-token', {
      token: created.body.token,
      operation: { ...spec, ids: [appId(2, 0)] },
    });
    expect(revoked).toMatchObject({ code: 'UNAUTHENTICATED', details: { reason: 'TOKEN_REVOKED' } });
    expect(await whereInRedis(created.body.token)).toEqual([]);
    expect(await query(t.databaseUrl, `SELECT 1 FROM operations WHERE idempotency_key LIKE 'ci-%token'`)).toEqual([]);
  });

  it('gives one operation for one job ID: added again after it completed, and after it was removed', async () => {
    const data = { token: t.tokens.requester, operation: { ...spec, ids: [appId(3, 0), appId(3, 1)] } };
    const first = await outcome(await add('ci-dup-1', data));
    const again = await outcome(await add('ci-dup-1', data)); // BullMQ keeps the finished job
    await (await queue.getJob('ci-dup-1'))!.remove();
    expect(await queue.getJob('ci-dup-1')).toBeUndefined();
    const afterRemoval = await outcome(await add('ci-dup-1', data)); // a new job, planned again: a replay
    if (!first.ok || !again.ok || !afterRemoval.ok) throw new Error('a repeat was refused');
    expect(again.value.operationId).toBe(first.value.operationId);
    // The job that planned says so; the one added after the first was removed says it planned nothing new.
    expect(first.value.replayed).toBe(false);
    expect(afterRemoval.value).toMatchObject({
      operationId: first.value.operationId,
      state: 'planned',
      replayed: true,
    });
    const ops = await query(t.databaseUrl, `SELECT id FROM operations WHERE idempotency_key = 'ci-dup-1'`);
    expect(ops).toHaveLength(1);

    // Another body under that key: the refusal REST gives for that Idempotency-Key.
    await (await queue.getJob('ci-dup-1'))!.remove();
    const other = { ...spec, ids: [appId(3, 2)] };
    const viaQueue = await refusal('ci-dup-1', { token: t.tokens.requester, operation: other });
    const viaRest = await request(t.app.server)
      .post('/v1/operations')
      .set('authorization', t.auth('requester'))
      .set('idempotency-key', 'ci-dup-1')
      .send(other)
      .expect(409);
    expect(viaQueue).toEqual({
      code: viaRest.body.code,
      message: viaRest.body.message,
      details: viaRest.body.details,
      status: viaRest.status,
    });
    expect(viaQueue.code).toBe('IDEMPOTENCY_KEY_REUSED');
  });

  it('fails a plan with an ID of the wrong type as PLAN_REJECTED, with the report and where to read all of it', async () => {
    const reason = await refusal('ci-wrong-type', {
      token: t.tokens.requester,
      operation: { ...spec, ids: [appId(4, 0), siteId(4)] },
    });
    expect(reason).toMatchObject({
      code: 'PLAN_REJECTED',
      operationId: expect.stringMatching(/^op_/),
      report: {
        counts: { ok: 1, type_mismatch: 1 },
        offenders: { type_mismatch: [expect.objectContaining({ id: siteId(4), actualType: 'site' })] },
      },
    });
    expect(reason.report.reportUrl).toBe(`/v1/operations/${reason.operationId}/report`);
    expect((await getOp(reason.operationId)).body.state).toBe('rejected');

    // A dry run stores nothing: its plan is the return value, its rejection has no operation.
    const dry = await outcome(
      await add('ci-dry-1', { token: t.tokens.requester, operation: { ...spec, dryRun: true, ids: [appId(4, 1)] } }),
    );
    expect(dry).toMatchObject({ ok: true, value: { operationId: null, state: 'dry_run', plan: { itemCount: 1 } } });
    const dryRejected = await refusal('ci-dry-2', {
      token: t.tokens.requester,
      operation: { ...spec, dryRun: true, ids: [siteId(4)] },
    });
    expect(dryRejected).toMatchObject({ code: 'PLAN_REJECTED', operationId: null, report: { dryRun: true } });
    expect(await query(t.databaseUrl, `SELECT 1 FROM operations WHERE idempotency_key LIKE 'ci-dry-%'`)).toEqual([]);
  });

  it('refuses a bad body with the very error the route gives (one validation)', async () => {
    /** The route's refusal as a job's: `body` → `operation`. */
    const asJob = (x: unknown) => JSON.parse(JSON.stringify(x).replace(/\bbody\b/g, 'operation')) as unknown;
    const bad = [
      [{ ...spec, ids: [123] }, 'INVALID_IDS'],
      [{ ...spec, ids: [appId(5, 0), 'a\u0000b', ' x', [[1]]] }, 'INVALID_IDS'],
      [{ ...spec, tiket: 'CHG-1', ids: [appId(5, 0)] }, 'VALIDATION_FAILED'],
      [{ targetType: 'app', reason: 'Remove', ids: [appId(5, 0)] }, 'VALIDATION_FAILED'],
      [{ ...spec, ids: [] }, 'EMPTY_ID_LIST'],
      [{ ...spec, mode: 'purge', ids: [appId(5, 0)] }, 'VALIDATION_FAILED'],
    ] as const;
    for (const [i, [body, code]] of bad.entries()) {
      const rest = await request(t.app.server)
        .post('/v1/operations')
        .set('authorization', t.auth('requester'))
        .send(body)
        .expect(400);
      const viaQueue = await refusal(`ci-bad-body-${i}`, { token: t.tokens.requester, operation: body });
      // With the route's status: a 400 is the job's input (the CLI exits 2 for it, as for REST's);
      // the fields named where the job has them (its `operation`), not in a body it does not have.
      expect(viaQueue).toEqual(
        asJob({
          code: rest.body.code,
          message: rest.body.message,
          details: rest.body.details,
          status: 400,
        }),
      );
      expect(JSON.stringify(viaQueue)).not.toMatch(/\bbody\b/);
      expect(viaQueue.code).toBe(code);
    }
    // The job's own envelope: a job ID must be given (BullMQ numbers the others), and the data has two fields.
    const unnamed = await queue.add('submit', {
      token: t.tokens.requester,
      operation: { ...spec, ids: [appId(5, 1)] },
    });
    const numeric = await outcome(unnamed);
    expect(numeric.ok).toBe(false);
    expect(!numeric.ok && numeric.reason).toMatchObject({
      code: 'VALIDATION_FAILED',
      details: [expect.objectContaining({ field: 'jobId' })],
    });
    const extra = await refusal('ci-extra-field', {
      token: t.tokens.requester,
      operation: { ...spec, ids: [appId(5, 1)] },
      Token: t.tokens.requester,
    });
    expect(extra).toMatchObject({ code: 'VALIDATION_FAILED', details: [{ field: 'data', unknownFields: ['Token'] }] });
    expect(Object.keys((await queue.getJob('ci-extra-field'))!.data).sort()).toEqual(['operation', 'tokenFingerprint']);
  });

  it('refuses a viewer token as FORBIDDEN, like the route', async () => {
    const reason = await refusal('ci-viewer', { token: t.tokens.viewer, operation: { ...spec, ids: [appId(6, 0)] } });
    const rest = await request(t.app.server)
      .post('/v1/operations')
      .set('authorization', t.auth('viewer'))
      .send({ ...spec, ids: [appId(6, 0)] })
      .expect(403);
    expect(reason).toEqual({ code: 'FORBIDDEN', message: rest.body.message, details: rest.body.details, status: 403 });
    const audit = await query(t.databaseUrl, `SELECT actor, payload FROM audit_events WHERE action = 'intake.refused'`);
    expect(audit).toContainEqual({
      actor: 'test-viewer',
      payload: expect.objectContaining({ jobId: 'ci-viewer', code: 'FORBIDDEN', status: 403 }),
    });
    expect(await whereInRedis(t.tokens.viewer)).toEqual([]);
  });

  it('the example pipeline script plans (exit 0) and reports a rejected plan (exit 10)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bg-intake-'));
    const run = async (ids: string[], key: string, token = t.tokens.requester) => {
      const file = join(dir, `${key}.json`);
      writeFileSync(file, JSON.stringify({ ...spec, ids }));
      try {
        const { stdout } = await promisify(execFile)('node', ['scripts/ci-intake-example.mjs', file, key], {
          env: {
            ...process.env,
            REDIS_URL: t.redisUrl,
            BLASTGATE_TOKEN: token,
            BLASTGATE_QUEUE_PREFIX: prefix,
          },
        });
        return { code: 0, out: JSON.parse(stdout) };
      } catch (err) {
        const e = err as { code: number; stdout: string; stderr: string };
        return { code: e.code, out: e.stdout ? JSON.parse(e.stdout) : e.stderr };
      }
    };
    const planned = await run([appId(7, 0)], 'ci-script-1');
    expect(planned).toMatchObject({ code: 0, out: { state: 'planned', operationId: expect.stringMatching(/^op_/) } });
    const rejected = await run([siteId(7)], 'ci-script-2');
    expect(rejected).toMatchObject({ code: 10, out: { code: 'PLAN_REJECTED' } });
    expect(await run([appId(7, 1)], 'bad:key')).toMatchObject({ code: 2 });
    // A wrong token, then the run again with the right one under the same key (README: the key
    // stays the same when a run is re-run): the failed job goes, and this one plans. It answered
    // IDEMPOTENCY_KEY_REUSED "used by another token" with nothing planned (trial Y).
    const wrong = await run([appId(7, 2)], 'ci-script-token', 'bg_not_a_token_0000000000000000');
    expect(wrong).toMatchObject({ code: 1, out: { code: 'UNAUTHENTICATED' } });
    const fixed = await run([appId(7, 2)], 'ci-script-token');
    expect(fixed).toMatchObject({ code: 0, out: { state: 'planned', operationId: expect.stringMatching(/^op_/) } });
  });

  it("the example script: another token's kept job under the key is IDEMPOTENCY_KEY_REUSED (1), as REST's 409", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bg-intake-'));
    const body = { ...spec, ids: [appId(8, 0)] };
    const file = join(dir, 'op.json');
    writeFileSync(file, JSON.stringify(body));
    const run = async (token: string) => {
      try {
        const { stdout } = await promisify(execFile)('node', ['scripts/ci-intake-example.mjs', file, 'ci-two-tokens'], {
          env: { ...process.env, REDIS_URL: t.redisUrl, BLASTGATE_TOKEN: token, BLASTGATE_QUEUE_PREFIX: prefix },
        });
        return { code: 0, out: JSON.parse(stdout) };
      } catch (err) {
        const e = err as { code: number; stdout: string; stderr: string };
        return { code: e.code, out: e.stdout ? JSON.parse(e.stdout) : e.stderr };
      }
    };
    const planned = await run(t.tokens.requester);
    expect(planned).toMatchObject({ code: 0, out: { state: 'planned' } });
    // Another token that may submit (admin), the same key and body: the worker has replaced the
    // token by its fingerprint, and the kept job's outcome (the requester's operation) was printed
    // as this token's, exit 0.
    const other = await run(t.tokens.admin);
    const viaRest = await request(t.app.server)
      .post('/v1/operations')
      .set('authorization', t.auth('admin'))
      .set('idempotency-key', 'ci-two-tokens')
      .send(body)
      .expect(409);
    expect(other).toMatchObject({
      code: 1,
      out: { code: 'IDEMPOTENCY_KEY_REUSED', details: { idempotencyKey: 'ci-two-tokens' } },
    });
    expect(viaRest.body.code).toBe('IDEMPOTENCY_KEY_REUSED');
    expect(JSON.stringify(other.out)).not.toContain(planned.out.operationId);
    // The requester's re-run is still its operation.
    expect(await run(t.tokens.requester)).toMatchObject({ code: 0, out: { operationId: planned.out.operationId } });
  });

  it('counts jobs by outcome in blastgate_intake_jobs_total', async () => {
    const values = (await metrics.intakeJobs.get()).values;
    const n = (outcome: string) => values.find((v) => v.labels.outcome === outcome)?.value ?? 0;
    expect(n('planned')).toBeGreaterThanOrEqual(2);
    expect(n('replayed')).toBeGreaterThanOrEqual(1);
    expect(n('rejected')).toBeGreaterThanOrEqual(2);
    expect(n('refused')).toBeGreaterThanOrEqual(5);
  });
});
