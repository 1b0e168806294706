// Request deadlines, over real sockets: a body that trickles is cut off with 408 at the limit (in
// the project's error shape, naming the limit) and leaves nothing behind — no operation, no lock,
// no staging table; headers that never end get the same 408 from the server's backstop; a request
// not answered within the handler timeout gets 503 with Retry-After, and its plan rolls back.
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { holdLock } from '../support/crash.ts';
import { until } from '../support/execution.ts';
import { appId, query, seedRegistry } from '../support/seed.ts';
import { trickleUpload } from '../support/uploads.ts';

const REQUEST_TIMEOUT_MS = 1_000;
const HANDLER_TIMEOUT_MS = 3_000;
// How late a deadline may answer on a loaded 2-core machine (timers, the backstop's 1 s checks).
const SLACK_MS = 2_500;

let t: TestApp;
let port: number;
beforeAll(async () => {
  t = await buildTestApp({
    limits: { requestTimeoutMs: REQUEST_TIMEOUT_MS, handlerTimeoutMs: HANDLER_TIMEOUT_MS },
  });
  await seedRegistry(t.databaseUrl, { sites: 50, appsPerSite: 4 });
  await t.app.listen({ host: '127.0.0.1', port: 0 });
  port = (t.app.server.address() as AddressInfo).port;
});
afterAll(async () => {
  await t?.close();
});

/** Nothing of the request survived: no operation with its ticket, no resource lock, no staging table. */
async function expectNothingLeft(ticket: string) {
  await until(
    async () =>
      (await query(t.databaseUrl, `SELECT 1 FROM pg_tables WHERE schemaname = 'upload_staging'`)).length === 0,
    'staging tables to be dropped',
    10_000,
  );
  expect(await query(t.databaseUrl, 'SELECT id FROM operations WHERE ticket = $1', [ticket])).toEqual([]);
  expect(await query(t.databaseUrl, 'SELECT resource_id FROM resource_locks')).toEqual([]);
  const verify = await request(t.app.server).get('/v1/audit/verify').set('authorization', t.auth('viewer'));
  expect(verify.body).toMatchObject({ valid: true });
}

function expectTimeoutBody(status: number, body: unknown) {
  expect(status).toBe(408);
  expect(body).toMatchObject({
    code: 'REQUEST_TIMEOUT',
    message: expect.stringContaining(`${REQUEST_TIMEOUT_MS} ms (BLASTGATE_REQUEST_TIMEOUT_MS)`),
    details: { limitMs: REQUEST_TIMEOUT_MS },
    requestId: expect.any(String),
  });
}

describe('a body that trickles', () => {
  for (const contentType of ['application/x-ndjson', 'application/json'] as const) {
    it(`${contentType}: 408 at the limit, connection closed, nothing half-written`, async () => {
      const started = Date.now();
      const upload = trickleUpload({
        port,
        token: t.tokens.requester,
        contentType,
        // Real IDs, a full first batch: these are staged before the deadline hits.
        burst: Array.from({ length: 10_001 }, (_, i) => appId(i % 50, i % 4)),
        everyMs: 100,
      });
      try {
        const res = await upload.response;
        const elapsed = Date.now() - started;
        expectTimeoutBody(res.status, JSON.parse(res.body));
        expect(res.headers.connection).toBe('close');
        expect(elapsed).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_MS - 50);
        expect(elapsed).toBeLessThan(REQUEST_TIMEOUT_MS + SLACK_MS);
      } finally {
        upload.stop();
      }
      await expectNothingLeft('CHG-SLOW');
    });
  }
});

it('headers that never end: the server backstop answers 408 in the same shape', async () => {
  const started = Date.now();
  const socket = net.connect(port, '127.0.0.1');
  socket.write(`POST /v1/operations HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${t.tokens.requester}\r\n`);
  let raw = '';
  socket.setEncoding('utf8');
  socket.on('data', (c: string) => (raw += c));
  await new Promise<void>((resolve) => {
    socket.on('close', () => resolve());
    socket.on('error', () => resolve());
  });
  // Backstop: the limit + 2 s, checked every second.
  expect(Date.now() - started).toBeLessThan(REQUEST_TIMEOUT_MS + 3_000 + SLACK_MS);
  const [head, body] = raw.split('\r\n\r\n');
  expect(head).toMatch(/^HTTP\/1\.1 408 /);
  expect(head).toMatch(/content-type: application\/json/i);
  expectTimeoutBody(408, JSON.parse(body!));
});

it('a request not answered within the handler timeout: 503 with Retry-After, and its plan rolls back', async () => {
  // The plan reaches its insert into operations and waits there, past the handler timeout.
  const lock = await holdLock(t.databaseUrl, 'LOCK TABLE operations IN SHARE MODE');
  let res: request.Response;
  try {
    res = await request(t.app.server)
      .post('/v1/operations')
      .set('authorization', t.auth('requester'))
      .send({ targetType: 'app', reason: 'Remove the legacy app', ticket: 'CHG-LATE', ids: [appId(1, 0)] });
  } finally {
    await lock.release();
  }
  expect(res.status).toBe(503);
  expect(res.headers['retry-after']).toMatch(/^\d+$/);
  expect(res.body).toMatchObject({
    code: 'HANDLER_TIMEOUT',
    message: expect.stringContaining(`${HANDLER_TIMEOUT_MS} ms`),
    requestId: expect.any(String),
  });
  // Released, the plan runs on to its commit, finds the request answered, and rolls back.
  await expectNothingLeft('CHG-LATE');
  const again = await request(t.app.server)
    .post('/v1/operations')
    .set('authorization', t.auth('requester'))
    .send({ targetType: 'app', reason: 'Remove the legacy app', ticket: 'CHG-LATE', ids: [appId(1, 0)] });
  expect(again.status, JSON.stringify(again.body)).toBe(201);
});

it('an operator command not answered within the handler timeout: 503, and it never commits afterwards', async () => {
  const op = await request(t.app.server)
    .post('/v1/operations')
    .set('authorization', t.auth('requester'))
    .send({ targetType: 'app', reason: 'Remove the legacy app', ticket: 'CHG-SLOWCMD', ids: [appId(2, 0)] })
    .expect(201);
  // The approval reaches its insert and waits there, past the handler timeout. It used to commit
  // once released: the operator was told "retry later" about an approval (or a start) that stood.
  const lock = await holdLock(t.databaseUrl, 'LOCK TABLE approvals IN SHARE MODE');
  let res: request.Response;
  try {
    res = await request(t.app.server)
      .post(`/v1/operations/${op.body.id}/approve`)
      .set('authorization', t.auth('approver'))
      .send({ planHash: op.body.planHash });
  } finally {
    await lock.release();
  }
  expect(res.status).toBe(503);
  expect(res.body).toMatchObject({ code: 'HANDLER_TIMEOUT', message: expect.stringContaining('rolled back') });
  // Released, the command runs on to its commit, finds the request answered, and rolls back. Asked
  // again, the approval waits for the first one's transaction (the operation's row lock), so by its
  // answer the first has ended: this one is the approval that applies, and the only one recorded.
  const again = await request(t.app.server)
    .post(`/v1/operations/${op.body.id}/approve`)
    .set('authorization', t.auth('approver'))
    .send({ planHash: op.body.planHash });
  expect(again.status, JSON.stringify(again.body)).toBe(200);
  expect(again.body.command).toMatchObject({ from: 'planned', to: 'approved', changed: true });
  expect(await query(t.databaseUrl, 'SELECT 1 FROM approvals WHERE operation_id = $1', [op.body.id])).toHaveLength(1);
  const verify = await request(t.app.server).get('/v1/audit/verify').set('authorization', t.auth('viewer'));
  expect(verify.body).toMatchObject({ valid: true });
});
