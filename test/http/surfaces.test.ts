// The surfaces outside /v1: /metrics needs its token (or a port of its own), /readyz names what
// fails without saying how, every response carries security headers with a CSP that Swagger UI
// loads under (and keeps no token), and the logs never show tokens or secrets.
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMetrics, serveMetrics } from '../../src/plugins/metrics.ts';
import { readSigningSecrets } from '../../src/modules/adapters/signing-secrets.ts';
import { METRICS_TOKEN, SECRET, buildTestApp, type TestApp } from '../support/app.ts';
import { TEST_SNAPSHOT_KEY_BYTES } from '../support/keys.ts';
import { appId, seedRegistry } from '../support/seed.ts';
import { startOwnRedis, type OwnRedis } from '../support/redis-server.ts';

const logs: string[] = [];
const logger = { level: 'trace', stream: { write: (line: string) => void logs.push(line) } };
let t: TestApp;
let redis: OwnRedis;
beforeAll(async () => {
  redis = await startOwnRedis();
  t = await buildTestApp({ redisUrl: redis.url, logger });
});
afterAll(async () => {
  await redis?.start().catch(() => undefined); // closing the app talks to its Redis
  await t?.close();
  await redis?.destroy();
});

describe('/metrics', () => {
  it('answers 401 without the token or with a wrong one, saying which token it needs', async () => {
    for (const authorization of [undefined, 'Bearer wrong-token', t.auth('admin'), `Basic ${METRICS_TOKEN}`]) {
      const req = request(t.app.server).get('/metrics');
      const r = await (authorization ? req.set('authorization', authorization) : req);
      expect(r.status, authorization).toBe(401);
      expect(r.body).toMatchObject({
        code: 'UNAUTHORIZED',
        message: 'Metrics need Authorization: Bearer <BLASTGATE_METRICS_TOKEN>',
      });
      expect(r.headers['www-authenticate']).toBe('Bearer realm="metrics"');
    }
  });

  it('serves them with the token, every name prefixed once (blastgate_process_cpu_…, not blastgate_process_process_…)', async () => {
    const r = await request(t.app.server).get('/metrics').set('authorization', `Bearer ${METRICS_TOKEN}`).expect(200);
    const names = [...r.text.matchAll(/^# TYPE (\S+)/gm)].map((m) => m[1]!);
    expect(names).toEqual(
      expect.arrayContaining([
        'blastgate_process_cpu_user_seconds_total',
        'blastgate_nodejs_heap_size_total_bytes',
        'blastgate_http_requests_total',
      ]),
    );
    expect(names.filter((n) => !n.startsWith('blastgate_') || /(^|_)(\w+)_\2_/.test(n))).toEqual([]);
  });

  it('is not served on the API port when no token is configured, and says how to turn it on', async () => {
    const open = await buildTestApp({ metricsToken: null });
    try {
      const r = await request(open.app.server).get('/metrics').expect(404);
      expect(r.body.code).toBe('METRICS_NOT_SERVED');
      expect(r.body.message).toMatch(/without BLASTGATE_METRICS_TOKEN: set it .*, or set BLASTGATE_METRICS_PORT/);
    } finally {
      await open.close();
    }
  });

  it('can be served on a port of its own, behind the token when one is set', async () => {
    const metrics = createMetrics();
    const open = await serveMetrics(metrics, { host: '127.0.0.1', port: 0 });
    const guarded = await serveMetrics(metrics, { host: '127.0.0.1', port: 0, token: METRICS_TOKEN });
    const url = (s: typeof open, path = '/metrics') => `http://127.0.0.1:${(s.address() as AddressInfo).port}${path}`;
    try {
      expect((await fetch(url(open))).status).toBe(200);
      expect((await fetch(url(open, '/v1/admin/tokens'))).status).toBe(404);
      const refused = await fetch(url(guarded));
      expect(refused.status).toBe(401);
      expect(await refused.json()).toMatchObject({ code: 'UNAUTHORIZED' });
      const ok = await fetch(url(guarded), { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
      expect(ok.status).toBe(200);
      expect(await ok.text()).toMatch(/^# HELP blastgate_/m);
    } finally {
      open.close();
      guarded.close();
    }
  });
});

describe('/readyz', () => {
  it('names the failing dependency while Redis is down, without the raw error, and logs the error', async () => {
    const up = await request(t.app.server).get('/readyz').expect(200);
    expect(up.body).toEqual({ status: 'ok', failing: [], checks: { postgres: 'ok', redis: 'ok' } });

    await redis.stop('SIGKILL');
    const logged = logs.length;
    const down = await request(t.app.server).get('/readyz').expect(503);
    expect(down.body).toEqual({
      status: 'unavailable',
      failing: ['redis'],
      checks: { postgres: 'ok', redis: expect.stringMatching(/^(error|timeout)$/) },
    });
    // Nothing of the connection: no address, port or error text.
    expect(down.text).not.toMatch(/127\.0\.0\.1|ECONN|closed|Connection|${redis.port}/);
    const readiness = logs.slice(logged).filter((l) => l.includes('readiness: redis'));
    expect(readiness.length).toBeGreaterThan(0);
    expect(JSON.parse(readiness[0]!)).toMatchObject({ dependency: 'redis', level: 40 });
    // Said once per outage, without the driver's stack: probes every few seconds added a warning each.
    expect(readiness.join('\n')).not.toMatch(/"stack"/);
    const before = logs.length;
    await request(t.app.server).get('/readyz').expect(503);
    await request(t.app.server).get('/readyz').expect(503);
    expect(logs.slice(before).filter((l) => l.includes('readiness: redis'))).toEqual([]);
    await redis.start();
    const back = logs.length;
    // Bounded: ioredis reconnects on its own schedule.
    let status = 0;
    for (let i = 0; i < 100 && status !== 200; i++) {
      if (i) await new Promise((r) => setTimeout(r, 100));
      status = (await request(t.app.server).get('/readyz')).status;
    }
    expect(status).toBe(200);
    const again = logs.slice(back).filter((l) => l.includes('readiness: redis'));
    expect(again.map((l) => JSON.parse(l).msg)).toEqual([expect.stringMatching(/^readiness: redis answers again/)]);
  });
});

describe('security headers and Swagger UI', () => {
  const directives = (csp: string) =>
    new Map(
      csp
        .split(';')
        .map((d) => d.trim().split(/\s+/))
        .filter((d) => d[0])
        .map(([name, ...values]) => [name!, values]),
    );

  it('sends helmet headers on API answers, errors included', async () => {
    for (const r of [
      await request(t.app.server).get('/healthz'),
      await request(t.app.server).get('/v1/admin/tokens'),
    ]) {
      expect(r.headers).toMatchObject({
        'x-content-type-options': 'nosniff',
        'x-frame-options': 'DENY',
        'referrer-policy': 'no-referrer',
        'cross-origin-opener-policy': 'same-origin',
        'strict-transport-security': expect.stringMatching(/^max-age=\d+/),
      });
      const csp = directives(r.headers['content-security-policy']!);
      expect(csp.get('default-src')).toEqual(["'self'"]);
      expect(csp.get('frame-ancestors')).toEqual(["'none'"]);
    }
  });

  it('serves /docs under a CSP that allows every script, stylesheet, image and fetch the page uses', async () => {
    const page = await request(t.app.server).get('/docs/').expect(200);
    const csp = directives(page.headers['content-security-policy']!);
    // Scripts: files from this origin only; no inline script, no eval.
    expect(csp.get('script-src')).toEqual(["'self'"]);
    expect(csp.get('script-src-attr')).toEqual(["'none'"]);
    expect(csp.has('upgrade-insecure-requests')).toBe(false); // embedded mode is plain http
    expect(page.text).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>\s*\S/); // every <script> has a src
    expect(page.text).not.toMatch(/\son\w+=/); // no inline event handlers

    const scripts = [...page.text.matchAll(/<script[^>]*\bsrc="([^"]+)"/g)].map((m) => m[1]!);
    const styles = [...page.text.matchAll(/<link[^>]*rel="stylesheet"[^>]*href="([^"]+)"/g)].map((m) => m[1]!);
    expect(scripts.length).toBeGreaterThanOrEqual(3);
    expect(styles.length).toBeGreaterThanOrEqual(1);
    for (const src of [...scripts, ...styles]) {
      // 'self': relative to /docs/, so this origin.
      expect(src, src).toMatch(/^\.\//);
      const asset = await request(t.app.server).get(new URL(src, 'http://x/docs/').pathname).expect(200);
      expect(asset.headers['content-type']).toMatch(scripts.includes(src) ? /javascript/ : /text\/css/);
      if (styles.includes(src)) {
        // Images in the stylesheets are data: URIs or files of this origin: img-src allows both.
        expect(csp.get('img-src')).toEqual(expect.arrayContaining(["'self'", 'data:']));
        for (const [, u] of asset.text.matchAll(/url\(\s*["']?([^"')]+)/g)) expect(u).toMatch(/^(data:|\.|\/)/);
      }
    }
    // The spec is fetched from this origin (connect-src 'self').
    expect(csp.get('connect-src')).toEqual(["'self'"]);
    await request(t.app.server).get('/docs/json').expect(200);
  });

  it('does not persist an entered bearer token (no localStorage) and loads no outside validator', async () => {
    const init = await request(t.app.server).get('/docs/static/swagger-initializer.js').expect(200);
    expect(init.text).toMatch(/"persistAuthorization":\s*false/);
    expect(init.text).toMatch(/validatorUrl: null/);
  });
});

describe('logs', () => {
  it('never show authorization headers, API token secrets, the metrics token, signing secrets or the snapshot key', async () => {
    const created = await request(t.app.server)
      .post('/v1/admin/tokens')
      .set('authorization', t.auth('admin'))
      .send({ name: 'redaction-check', role: 'viewer' })
      .expect(201);
    const secretToken = created.body.token as string;
    await request(t.app.server).get('/v1/admin/tokens').set('authorization', `Bearer ${secretToken}`);
    // What a careless log line could carry: headers, a token answer, the secrets.
    const { secrets } = readSigningSecrets({ BLASTGATE_SIGNING_SECRET: SECRET });
    t.app.log.info(
      {
        req: { headers: { authorization: `Bearer ${secretToken}`, cookie: 'session=abc' } },
        headers: { authorization: t.auth('admin') },
        reply: { token: secretToken },
        config: {
          metricsToken: METRICS_TOKEN,
          signingSecrets: secrets,
          adminToken: t.tokens.admin,
          snapshotKey: TEST_SNAPSHOT_KEY_BYTES,
        },
        adapter: { signingSecret: SECRET },
      },
      'a careless log line',
    );
    const text = logs.join('');
    expect(text).toContain('a careless log line');
    expect(text).toContain('[redacted]');
    for (const secret of [secretToken, t.tokens.admin, t.tokens.viewer, METRICS_TOKEN, SECRET, 'session=abc'])
      expect(text).not.toContain(secret);
    expect(text).not.toContain('"Buffer"');
  });

  it('a plan logs its stage timings with the operation ID it stored, and a dry run none (it stores nothing)', async () => {
    await seedRegistry(t.databaseUrl, { sites: 2, appsPerSite: 1 });
    const plan = (dryRun: boolean) =>
      request(t.app.server)
        .post('/v1/operations')
        .set('authorization', t.auth('requester'))
        .send({ targetType: 'app', reason: 'Log check', ticket: 'CHG-9', ids: [appId(1, 0)], dryRun });
    const finished = () =>
      logs
        .map((l) => JSON.parse(l) as { msg: string; operationId?: string | null })
        .filter((l) => l.msg === 'plan finished');
    const dry = await plan(true).expect(200);
    expect(dry.body).toMatchObject({ dryRun: true });
    expect(dry.body.id).toBeUndefined();
    expect(finished().at(-1)).toMatchObject({ operationId: null, outcome: 'dry_run' });
    const stored = await plan(false).expect(201);
    expect(finished().at(-1)).toMatchObject({ operationId: stored.body.id, outcome: 'planned' });
    // An Idempotency-Key answered again stores nothing: the log names the operation it answered
    // with (it said `planned` under a fresh ID no operation has) and the counter says replayed.
    const keyed = () =>
      request(t.app.server)
        .post('/v1/operations')
        .set('authorization', t.auth('requester'))
        .set('idempotency-key', 'log-check-replay')
        .send({ targetType: 'app', reason: 'Log check', ticket: 'CHG-9', ids: [appId(0, 0)] });
    const first = await keyed().expect(201);
    const again = await keyed().expect(200);
    expect(again.body.id).toBe(first.body.id);
    expect(finished().at(-1)).toMatchObject({ operationId: first.body.id, outcome: 'replayed' });
    const counted = await t.app.metrics.registry.getSingleMetricAsString('blastgate_plans_total');
    expect(counted).toMatch(/blastgate_plans_total\{outcome="replayed"\} 1/);
  });
});
