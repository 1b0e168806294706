// Calls to downstream systems, against real HTTP services on 127.0.0.1: each adapter signs with its
// own secret, the v2 signature binds the host (a receiver refuses one made for another host), a
// stored config whose host or secret this process does not allow is refused before any call, an
// ID that would render another path is never sent, and a failure keeps the status and a short
// reason, never the downstream's words.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  createAdapter,
  idempotencyKeyFor,
  type AdapterItem,
  type DownstreamPolicy,
  type TargetAdapter,
} from '../../src/modules/adapters/index.ts';
import { createAgent, sendRequest } from '../../src/modules/adapters/http-transport.ts';
import { sign } from '../../src/modules/adapters/signing.ts';
import { createTestDatabase } from '../support/db.ts';
import { startDownstream, type Downstream } from '../support/downstream.ts';
import { APPS_PROD_SECRET, SECRET, testDownstream } from '../support/secrets.ts';

let shared: Downstream; // default secret
let appsProd: Downstream; // apps-prod secret
let pool: pg.Pool;
const adapters: TargetAdapter[] = [];
const item = (resourceId: string, tenantId = 't1'): AdapterItem => ({
  operationId: 'op_1',
  resourceId,
  tenantId,
  type: 'app',
});
const apply = { idempotencyKey: idempotencyKeyFor, shouldContinue: () => true, concurrency: 4 };
const config = (baseUrl: string, over: Record<string, unknown> = {}) => ({
  kind: 'http',
  baseUrl,
  snapshot: 'GET /apps/{id}?tenantId={tenantId}',
  softDelete: 'POST /apps/{id}/soft-delete',
  restore: 'POST /apps/{id}/restore',
  hardDelete: 'DELETE /apps/{id}',
  probe: 'GET /tenants/{tenantId}/health',
  timeoutMs: 1_000,
  retries: 1,
  retryBaseMs: 1,
  ...over,
});
const adapter = (c: Record<string, unknown>, downstream: DownstreamPolicy = testDownstream()) => {
  const a = createAdapter(c, { pool, downstream });
  adapters.push(a);
  return a;
};

beforeAll(async () => {
  shared = await startDownstream({ secret: SECRET });
  appsProd = await startDownstream({ secret: APPS_PROD_SECRET });
  pool = new pg.Pool({ connectionString: await createTestDatabase(), max: 2 });
});
afterAll(async () => {
  for (const a of adapters) await a.close?.();
  await shared?.close();
  await appsProd?.close();
  await pool?.end();
});
beforeEach(() => {
  shared.reset();
  appsProd.reset();
});

describe('signing', () => {
  it('signs with the secret the adapter names; a receiver holding another secret refuses the call', async () => {
    const named = adapter(config(appsProd.url, { signingSecret: 'apps-prod' }));
    expect(await named.apply('softDelete', [item('app_1')], apply)).toEqual([{ ok: true }]);
    expect(appsProd.calls.map((c) => [c.action, c.signatureValid, c.status])).toEqual([['softDelete', true, 200]]);

    // The same receiver, reached by an adapter that signs with the default secret: refused.
    const byDefault = adapter(config(appsProd.url));
    const [refused] = await byDefault.apply('softDelete', [item('app_2')], apply);
    expect(refused).toMatchObject({ ok: false, permanent: true, status: 401, error: 'HTTP 401 Unauthorized' });
    expect(appsProd.state('app_2')).toBeUndefined();
  });

  it('binds the host: a receiver refuses a signature made for another host', async () => {
    // The receiver knows itself as apps.internal:80 (say, behind a proxy); this adapter's requests
    // are signed for 127.0.0.1:<port>, the host it calls. A request signed for one system cannot
    // be replayed to another that shares the secret.
    const own = shared.host;
    shared.expectHost('apps.internal:80');
    try {
      const [r] = await adapter(config(shared.url)).apply('softDelete', [item('app_3')], apply);
      expect(r).toMatchObject({ ok: false, permanent: true, status: 401 });
    } finally {
      shared.expectHost(own);
    }
    expect(shared.calls.map((c) => c.signatureValid)).toEqual([false]);
    expect(shared.state('app_3')).toBeUndefined();

    // Called by a name (resolved through the guarded lookup), the signature is for that name.
    shared.expectHost(`localhost:${new URL(shared.url).port}`);
    try {
      const byName = adapter(config(`http://localhost:${new URL(shared.url).port}`));
      expect(await byName.apply('softDelete', [item('app_3')], apply)).toEqual([{ ok: true }]);
    } finally {
      shared.expectHost(own);
    }

    // By hand: a genuine v2 signature, valid for 127.0.0.1 on another port, is refused here; the
    // same request signed for this receiver's host is served.
    const agent = createAgent(shared.url);
    const send = (host: string) => {
      const timestamp = Date.now();
      const path = '/apps/app_4/soft-delete';
      const body = '{"id":"app_4"}';
      return sendRequest(agent, new URL(shared.url), {
        method: 'POST',
        path,
        body,
        timeoutMs: 1_000,
        headers: {
          'x-blastgate-timestamp': String(timestamp),
          'x-blastgate-signature': sign(SECRET, { timestamp, method: 'POST', host, path, body }),
          'idempotency-key': 'k-host',
        },
      });
    };
    const replayed = await send('127.0.0.1:1');
    const genuine = await send(shared.host);
    agent.destroy();
    expect([replayed.status, genuine.status]).toEqual([401, 200]);
    expect(shared.calls.slice(2).map((c) => c.signatureValid)).toEqual([false, true]);
  });
});

describe('a stored config this process does not allow', () => {
  it('is refused before any call: a host outside the allowlist, a metadata address, an unresolvable secret', () => {
    const tryBuild = (c: Record<string, unknown>) => {
      try {
        adapter(c);
        return null;
      } catch (err) {
        return err as { code: string; message: string; details: unknown };
      }
    };
    expect(tryBuild(config('https://billing.example.com'))).toMatchObject({
      code: 'DOWNSTREAM_NOT_ALLOWED',
      message:
        'baseUrl host billing.example.com is not in BLASTGATE_DOWNSTREAM_ALLOW (BLASTGATE_DOWNSTREAM_ALLOW lists: 127.0.0.1, localhost, *.internal)',
      details: [expect.objectContaining({ field: '/baseUrl', problem: 'host_not_allowed' })],
    });
    expect(tryBuild(config('http://169.254.169.254'))).toMatchObject({
      code: 'DOWNSTREAM_NOT_ALLOWED',
      message: expect.stringMatching(/^baseUrl host 169\.254\.169\.254 is a link-local address/),
    });
    expect(tryBuild(config(shared.url, { signingSecret: 'billing' }))).toMatchObject({
      code: 'SIGNING_SECRET_MISSING',
      message: expect.stringMatching(
        /^signing secret "billing" is not set on this server: set BLASTGATE_SECRET_BILLING or BLASTGATE_SECRET_BILLING_FILE/,
      ),
      details: [expect.objectContaining({ field: '/signingSecret', value: 'billing' })],
    });
    expect(shared.calls).toEqual([]);
  });
});

describe('rendered paths', () => {
  it('never sends an item whose ID or tenant would address another path; each fails for good, saying why', async () => {
    const a = adapter(config(shared.url, { snapshot: 'GET /tenants/{tenantId}/apps/{id}' }));
    const bad: [AdapterItem, RegExp][] = [
      [item('..'), /^refused before sending: \{id\} "\.\." is a dot segment, so it would address another path$/],
      [item('.'), /\{id\} "\." is a dot segment/],
      [item('a/b'), /\{id\} "a\/b" contains a path separator \(\/, \\, \? or #\)/],
      [item('a\\b'), /contains a path separator/],
      [item('a?admin=1'), /contains a path separator/],
      [item('a#b'), /contains a path separator/],
      [item('%2e%2e'), /\{id\} "%2e%2e" percent-decodes to a dot segment or a path separator/],
      [item('x%2Fy'), /percent-decodes to a dot segment or a path separator/],
      [item(''), /\{id\} "" is empty/],
      [item('app_5', '..'), /\{tenantId\} "\.\." is a dot segment/],
      [item('app_\ud800'), /not valid Unicode and cannot be URL-encoded/],
    ];
    const items = bad.map(([i]) => i);
    const snaps = await a.snapshot(items, { concurrency: 4 });
    const deletes = await a.apply('softDelete', items, apply);
    for (const [k, [, reason]] of bad.entries()) {
      expect(snaps[k], JSON.stringify(items[k])).toMatchObject({
        ok: false,
        permanent: true,
        error: expect.stringMatching(reason),
      });
      // softDelete has {id} only in its path: a bad tenant does not stop it.
      if (items[k]!.resourceId !== 'app_5')
        expect(deletes[k]).toMatchObject({
          ok: false,
          permanent: true,
          error: expect.stringMatching(/^refused before sending/),
        });
    }
    expect(shared.calls.map((c) => c.path)).toEqual(['/apps/app_5/soft-delete']);
    expect(await a.probe('..', { timeoutMs: 500 })).toEqual({
      result: 'error',
      detail: 'refused before sending: {tenantId} ".." is a dot segment, so it would address another path',
    });
  });

  it('encodes values in the query part without refusing them', async () => {
    const a = adapter(config(shared.url));
    const [snap] = await a.snapshot([item('app_6', 'tenants/../admin')], { concurrency: 1 });
    expect(snap).toMatchObject({ ok: true });
    expect(shared.calls.map((c) => c.path)).toEqual(['/apps/app_6?tenantId=tenants%2F..%2Fadmin']);
  });
});

describe('failure reasons (lastError)', () => {
  let leaky: http.Server;
  let leakyUrl = '';
  const LEAK = 'token=bg_live_0123456789 at https://admin:hunter2@billing.internal/ (db 10.0.0.7:5432)';
  beforeAll(async () => {
    // An owning system that echoes secrets and internals in its error bodies, for every status.
    leaky = http.createServer((req, res) => {
      const status = Number(/\/status\/(\d+)/.exec(req.url ?? '')?.[1] ?? 200);
      res.writeHead(status, { 'content-type': 'text/html' }).end(`<html><body>${LEAK}</body></html>`);
    });
    await new Promise<void>((resolve) => leaky.listen(0, '127.0.0.1', resolve));
    leakyUrl = `http://127.0.0.1:${(leaky.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => leaky.close(resolve));
  });

  it('keep the status and a short reason, never the response body', async () => {
    const a = adapter(
      config(leakyUrl, {
        snapshot: 'GET /status/200/{id}', // 200 but HTML: not a snapshot
        softDelete: 'POST /status/400/{id}',
        restore: 'POST /status/503/{id}',
        probe: 'GET /status/500/{tenantId}',
      }),
    );
    const [snap] = await a.snapshot([item('app_7')], { concurrency: 1 });
    const [del] = await a.apply('softDelete', [item('app_7')], apply);
    const [restore] = await a.apply('restore', [item('app_7')], apply);
    const probe = await a.probe('t1', { timeoutMs: 1_000 });
    expect(snap).toMatchObject({ ok: false, permanent: true, error: 'snapshot answer is not JSON (HTTP 200 OK)' });
    expect(del).toMatchObject({ ok: false, permanent: true, status: 400, error: 'HTTP 400 Bad Request' });
    expect(restore).toMatchObject({
      ok: false,
      permanent: false,
      status: 503,
      error: 'HTTP 503 Service Unavailable (after 2 attempts)',
    });
    expect(probe).toEqual({ result: 'unhealthy', detail: 'HTTP 500 Internal Server Error' });
    expect(JSON.stringify([snap, del, restore, probe])).not.toMatch(/hunter2|bg_live|10\.0\.0\.7|<html/);
  });

  it('name a refused connection by its code, without host or port', async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise((resolve) => closed.close(resolve));
    const [r] = await adapter(config(`http://127.0.0.1:${port}`)).apply('softDelete', [item('app_8')], apply);
    expect(r).toMatchObject({
      ok: false,
      permanent: false,
      error: 'connection error: ECONNREFUSED (after 2 attempts)',
    });
  });
});
