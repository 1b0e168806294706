// Error answers say what is allowed: the values of an enum, the unknown field next to the missing
// one (with a guess), the size limit, the accepted content types, what a dry-run rejection stored,
// the hidden characters of look-alike IDs, and what to do after reusing the key of a rejected
// operation. Approval comments are kept.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import request from 'supertest';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { appId, query, seedRegistry, siteId } from '../support/seed.ts';

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp();
  await seedRegistry(t.databaseUrl, { sites: 10, appsPerSite: 3 });
});
afterAll(async () => {
  await t?.close();
});

const spec = { targetType: 'app', reason: 'Remove the legacy app', ticket: 'CHG-1' };
const submit = (body: unknown, key?: string) => {
  const r = request(t.app.server).post('/v1/operations').set('authorization', t.auth('requester'));
  return (key ? r.set('idempotency-key', key) : r).send(body as object);
};

describe('validation messages say what is allowed', () => {
  it('a command sent without a body is told what to send', async () => {
    const none = await request(t.app.server)
      .post('/v1/operations/op_lx2k9a1b2c3d4e5f6/pause')
      .set('authorization', t.auth('operator'))
      .expect(400);
    expect(none.body.message).toBe('Invalid body: must be a JSON object with "reason"; got no body (or null)');
    expect(none.body.details).toEqual([
      { field: 'body', message: 'must be a JSON object with "reason"; got no body (or null)', required: ['reason'] },
    ]);
    const nil = await request(t.app.server)
      .post('/v1/operations/op_lx2k9a1b2c3d4e5f6/pause')
      .set('authorization', t.auth('operator'))
      .set('content-type', 'application/json')
      .send('null')
      .expect(400);
    expect(nil.body.message).toBe('Invalid body: must be a JSON object with "reason"; got no body (or null)');
    // The JSON content type with no body at all says the same (it said "Body cannot be empty").
    const empty = await request(t.app.server)
      .post('/v1/operations/op_lx2k9a1b2c3d4e5f6/pause')
      .set('authorization', t.auth('operator'))
      .set('content-type', 'application/json')
      .send('')
      .expect(400);
    expect(empty.body.message).toBe('Invalid body: must be a JSON object with "reason"; got no body (or null)');
    // Any other type mismatch reads as before.
    const wrong = await submit({ ...spec, ids: 'app_1' }).expect(400);
    expect(wrong.body.message).toMatch(/^Invalid body\.ids: must be/);
  });

  it('an enum lists its values', async () => {
    const res = await submit({ ...spec, mode: 'medium', ids: [appId(1, 0)] }).expect(400);
    expect(res.body.message).toBe('Invalid body.mode: must be one of "soft", "hard"');
    expect(res.body.details).toEqual([
      { field: 'body.mode', message: 'must be one of "soft", "hard"', allowed: ['soft', 'hard'] },
    ]);
    const role = await request(t.app.server)
      .post('/v1/admin/tokens')
      .set('authorization', t.auth('admin'))
      .send({ name: 'x', role: 'superuser' })
      .expect(400);
    expect(role.body.details[0].allowed).toEqual(['viewer', 'requester', 'approver', 'operator', 'admin']);
    const state = await request(t.app.server)
      .get('/v1/operations?state=bogus')
      .set('authorization', t.auth('viewer'))
      .expect(400);
    expect(state.body.details[0].allowed).toContain('planned');
  });

  it('a misspelled top-level field is named next to the missing one, with a guess', async () => {
    const res = await submit({ targetTyp: 'app', reason: 'abc', ticket: 'x', ids: [appId(1, 0)] }).expect(400);
    expect(res.body.message).toBe(
      'Unknown field "targetTyp" in body (did you mean "targetType"?); missing required field "targetType"',
    );
    expect(res.body.details).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ field: 'body', unknownField: 'targetTyp', didYouMean: 'targetType' }),
        expect.objectContaining({ field: 'body', missingField: 'targetType' }),
      ]),
    );
    const optional = await submit({ ...spec, dryrun: true, ids: [appId(1, 0)] }).expect(400);
    expect(optional.body.message).toBe('Unknown field "dryrun" in body (did you mean "dryRun"?)');
    // A signal takes `detail` where every command takes `reason`: no spelling is near, and
    // `{kind, reason}` was refused without a hint (a trial). Refused before anything is looked up.
    const signal = await request(t.app.server)
      .post('/v1/operations/op_lx2k9a1b2c3d4e5f6/signals')
      .set('authorization', t.auth('operator'))
      .send({ kind: 'support_ticket', reason: 'ZD-1: apps missing' })
      .expect(400);
    expect(signal.body.message).toBe('Unknown field "reason" in body (did you mean "detail"?)');
    // A field that is there already is no guess.
    const both = await request(t.app.server)
      .post('/v1/operations/op_lx2k9a1b2c3d4e5f6/signals')
      .set('authorization', t.auth('operator'))
      .send({ kind: 'support_ticket', detail: 'ZD-1', reason: 'ZD-1: apps missing' })
      .expect(400);
    expect(both.body.message).toBe('Unknown field "reason" in body');
  });

  it('413 states the limit', async () => {
    const res = await request(t.app.server)
      .put('/v1/admin/policy')
      .set('authorization', t.auth('admin'))
      .set('content-type', 'application/json')
      .send(`{"x":"${'a'.repeat(9 * 1024 * 1024)}"}`)
      .expect(413);
    expect(res.body).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', details: { maxBytes: 8 * 1024 * 1024 } });
    expect(res.body.message).toContain('8388608 bytes');
  });

  it('415 lists the accepted content types of the route', async () => {
    const xml = await submit('<ids/>').set('content-type', 'application/xml').expect(415);
    expect(xml.body).toMatchObject({
      code: 'UNSUPPORTED_MEDIA_TYPE',
      details: { contentType: 'application/xml', accepted: ['application/json', 'application/x-ndjson'] },
    });
    expect(xml.body.message).toContain('application/json or application/x-ndjson');
    // A type the app can parse, sent to a route that does not take it.
    const text = await request(t.app.server)
      .post('/v1/admin/tokens')
      .set('authorization', t.auth('admin'))
      .set('content-type', 'text/plain')
      .send('hello')
      .expect(415);
    expect(text.body.details).toEqual({ contentType: 'text/plain', accepted: ['application/json'] });
    const plainOnOps = await submit('app_1\n').set('content-type', 'text/plain').expect(415);
    expect(plainOnOps.body.message).toContain('/v1/operations/text');
  });
});

describe('operations', () => {
  it('a dry-run rejection says nothing was stored and how to get the full report', async () => {
    const res = await submit({ ...spec, dryRun: true, ids: [appId(1, 0), siteId(1)] }).expect(422);
    expect(res.body.code).toBe('PLAN_REJECTED');
    expect(res.body.details).toMatchObject({
      operationId: null,
      dryRun: true,
      reportUrl: null,
      offendersComplete: true,
      counts: { type_mismatch: 1 },
    });
    expect(res.body.message).toContain('dry run');
    expect(res.body.message).toContain('without dryRun');
    const ops = await query(t.databaseUrl, 'SELECT count(*)::int AS n FROM operations');
    expect(ops[0]!.n).toBe(0);
  });

  it('look-alike IDs show their hidden characters', async () => {
    // A Cyrillic "а" (U+0430) in place of the Latin "a".
    const lookalike = `\u0430pp_00001_00`;
    const res = await submit({ ...spec, ids: [appId(2, 0), lookalike] }).expect(422);
    const [offender] = res.body.details.offenders.pattern_mismatch;
    expect(offender).toMatchObject({ id: lookalike, escaped: '\\u0430pp_00001_00' });
    const report = await request(t.app.server)
      .get(res.body.details.reportUrl)
      .set('authorization', t.auth('viewer'))
      .expect(200);
    expect(report.body.items[0]).toMatchObject({ id: lookalike, escaped: '\\u0430pp_00001_00' });
    const missing = await request(t.app.server)
      .get(`/v1/registry/resources/${encodeURIComponent(lookalike)}`)
      .set('authorization', t.auth('viewer'))
      .expect(404);
    expect(missing.body.message).toContain('\\u0430pp_00001_00');
  });

  it('reusing the Idempotency-Key of a rejected operation says so, and asks for a new key', async () => {
    const first = await submit({ ...spec, ids: [appId(3, 0), siteId(3)] }, 'chg-77').expect(422);
    const res = await submit({ ...spec, ids: [appId(3, 0)] }, 'chg-77').expect(409);
    expect(res.body.code).toBe('IDEMPOTENCY_KEY_REUSED');
    expect(res.body.details).toMatchObject({
      idempotencyKey: 'chg-77',
      operationId: first.body.details.operationId,
      state: 'rejected',
      reportUrl: first.body.details.reportUrl,
    });
    expect(res.body.message).toContain('rejected');
    expect(res.body.message).toContain('new Idempotency-Key');
  });

  it('keeps the approval comment and shows it in the audit log', async () => {
    const op = await submit({ ...spec, ids: [appId(4, 0)] }).expect(201);
    await request(t.app.server)
      .post(`/v1/operations/${op.body.id}/approve`)
      .set('authorization', t.auth('approver'))
      .send({ planHash: op.body.planHash, comment: 'Checked with the app team' })
      .expect(200);
    const rows = await query(t.databaseUrl, 'SELECT comment FROM approvals WHERE operation_id = $1', [op.body.id]);
    expect(rows).toEqual([{ comment: 'Checked with the app team' }]);
    const audit = await request(t.app.server)
      .get(`/v1/audit?operationId=${op.body.id}`)
      .set('authorization', t.auth('viewer'))
      .expect(200);
    const approved = audit.body.items.find((e: { action: string }) => e.action === 'operation.approved');
    expect(approved.payload.comment).toBe('Checked with the app team');
  });
});

describe('a submission without a body', () => {
  it('is 415 naming the accepted types, not a 5xx', async () => {
    for (const path of ['/v1/operations', '/v1/operations/text?targetType=app&reason=abc&ticket=x']) {
      const res = await request(t.app.server).post(path).set('authorization', t.auth('requester'));
      expect(res.status, JSON.stringify(res.body)).toBe(415);
      expect(res.body.code).toBe('UNSUPPORTED_MEDIA_TYPE');
      expect(res.body.details.contentType).toBeNull();
    }
  });
});
