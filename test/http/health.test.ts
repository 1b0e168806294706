import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import request from 'supertest';
import { buildTestApp, type TestApp } from '../support/app.ts';

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp();
});
afterAll(async () => {
  await t?.close();
});

describe('health and docs', () => {
  it('answers /healthz and /readyz with real Postgres and Redis', async () => {
    await request(t.app.server).get('/healthz').expect(200, { status: 'ok' });
    const r = await request(t.app.server).get('/readyz').expect(200);
    expect(r.body.checks).toEqual({ postgres: 'ok', redis: 'ok' });
  });

  it('serves Swagger UI and the OpenAPI document', async () => {
    const docs = await request(t.app.server).get('/docs/').expect(200);
    expect(docs.text).toContain('swagger');
    const doc = await request(t.app.server).get('/openapi.json').expect(200);
    expect(doc.body.components.securitySchemes.bearerAuth.scheme).toBe('bearer');
  });

  it('answers unknown routes with a coded 404', async () => {
    const r = await request(t.app.server).get('/nope').expect(404);
    expect(r.body.code).toBe('ROUTE_NOT_FOUND');
  });

  // A DELETE of an operation read "No route", as if the URL were mistyped (a trial).
  it('answers a known path under another method with a coded 405 naming the methods it takes', async () => {
    const r = await request(t.app.server)
      .delete('/v1/operations/op_x')
      .set('authorization', t.auth('admin'))
      .expect(405);
    expect(r.headers.allow).toBe('GET, HEAD');
    expect(r.body).toMatchObject({
      code: 'METHOD_NOT_ALLOWED',
      message: 'DELETE is not served on /v1/operations/op_x; it takes GET, HEAD',
      details: { method: 'DELETE', allow: ['GET', 'HEAD'] },
    });
    const put = await request(t.app.server).put('/v1/operations').send({}).expect(405);
    expect(put.body.details.allow).toEqual(['GET', 'HEAD', 'POST']);
    // Its body is beside the point: a malformed one is not what the answer is about (a trial).
    const malformed = await request(t.app.server)
      .put('/v1/operations')
      .set('content-type', 'application/json')
      .send('{bad')
      .expect(405);
    expect(malformed.body.code).toBe('METHOD_NOT_ALLOWED');
    // A path no method serves is still a 404, with nothing to offer.
    const none = await request(t.app.server).delete('/v1/nope/x').expect(404);
    expect(none.body.code).toBe('ROUTE_NOT_FOUND');
    expect(none.headers.allow).toBeUndefined();
  });

  it('refuses /v1 without a token, with a bad token, and for the wrong role', async () => {
    await request(t.app.server).get('/v1/admin/tokens').expect(401);
    const bad = await request(t.app.server).get('/v1/admin/tokens').set('authorization', 'Bearer nope').expect(401);
    expect(bad.body.code).toBe('UNAUTHORIZED');
    const forbidden = await request(t.app.server)
      .get('/v1/admin/tokens')
      .set('authorization', t.auth('viewer'))
      .expect(403);
    expect(forbidden.body.code).toBe('FORBIDDEN');
    await request(t.app.server).get('/v1/admin/tokens').set('authorization', t.auth('admin')).expect(200);
  });
});
