// Invalid IDs in an inline JSON list are refused all together, each by its index (400 INVALID_IDS),
// as the same list streamed as NDJSON or text is: an operator fixing a pasted list of thousands
// learns every bad ID from one answer, not one per attempt. Deletes, restores and purges alike;
// nothing is stored.
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { appId, query, seedRegistry } from '../support/seed.ts';

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp();
  await seedRegistry(t.databaseUrl, { sites: 3, appsPerSite: 3 });
});
afterAll(async () => {
  await t?.close();
});

const stored = async () =>
  (
    await query(
      t.databaseUrl,
      `SELECT (SELECT count(*) FROM operations)::int AS ops, (SELECT count(*) FROM operation_items)::int AS items,
              (SELECT count(*) FROM operation_rejections)::int AS rejections`,
    )
  )[0];

const BAD = [appId(0, 0), 'app 1', 123, appId(0, 1), '', `app_${'x'.repeat(300)}`, 'app_\u200b2'];
const NAMED = [
  { index: 1, id: 'app 1', problem: 'contains U+0020 SPACE at position 3', codePoint: 'U+0020', escaped: 'app 1' },
  { index: 2, id: 123, problem: 'is not a string' },
  { index: 4, id: '', problem: 'is empty' },
  { index: 5, problem: 'is longer than 200 characters', length: 304, truncated: true },
  { index: 6, id: 'app_\u200b2', codePoint: 'U+200B', escaped: 'app_\\u200b2' },
];

describe.each([
  ['POST /v1/operations', '/v1/operations', { targetType: 'app', reason: 'cleanup', ticket: 'CHG-1' }],
  ['POST /v1/restores', '/v1/restores', { targetType: 'app', reason: 'bring back', ticket: 'INC-1' }],
  ['POST /v1/purges', '/v1/purges', { targetType: 'app', reason: 'retention ended', ticket: 'CHG-2' }],
])('%s with inline IDs', (_name, path, spec) => {
  it('refuses every invalid ID at once, each by its index and problem, and stores nothing', async () => {
    const before = await stored();
    const res = await request(t.app.server)
      .post(path)
      .set('authorization', t.auth('requester'))
      .send({ ...spec, ids: BAD });
    expect(res.status, JSON.stringify(res.body)).toBe(400);
    expect(res.body.code).toBe('INVALID_IDS');
    expect(res.body.message).toBe(
      '5 submitted ID(s) are not valid; the first, at index 1, contains U+0020 SPACE at position 3',
    );
    expect(res.body.details.invalidCount).toBe(5);
    expect(res.body.details.invalid).toEqual(NAMED.map((n) => expect.objectContaining(n)));
    expect(res.body.details.invalid[3].id).toHaveLength(200);
    expect(await stored()).toEqual(before);
  });

  it('names an ID PostgreSQL could not store (NUL, a lone surrogate) among the others, not instead of them', async () => {
    const before = await stored();
    const res = await request(t.app.server)
      .post(path)
      .set('authorization', t.auth('requester'))
      .set('content-type', 'application/json')
      .send(`{"ids": ["app_0", " x", "app\\u0000_4", "", "app_\\ud800", [[1]]], ${JSON.stringify(spec).slice(1)}`);
    expect(res.status, JSON.stringify(res.body)).toBe(400);
    expect(res.body.code).toBe('INVALID_IDS');
    expect(res.body.details.invalid.map((i: { index: number }) => i.index)).toEqual([1, 2, 3, 4, 5]);
    expect(res.body.details.invalid[1]).toMatchObject({ codePoint: 'U+0000', escaped: 'app\\u0000_4' });
    // A value that is not a string is named by what it is, never echoed (it may be large or deep).
    expect(res.body.details.invalid[4]).toEqual({ index: 5, id: null, problem: 'is an array, not a string' });
    expect(await stored()).toEqual(before);
  });

  it('names the first 100 of more invalid IDs, and counts them all', async () => {
    const ids = Array.from({ length: 250 }, (_, i) => (i % 2 ? `bad id ${i}` : appId(0, 0)));
    const res = await request(t.app.server)
      .post(path)
      .set('authorization', t.auth('requester'))
      .send({ ...spec, ids });
    expect(res.status).toBe(400);
    expect(res.body.details.invalidCount).toBe(125);
    expect(res.body.details.invalid).toHaveLength(100);
    expect(res.body.details.invalid.at(-1)).toMatchObject({ index: 199, id: 'bad id 199' });
  });

  it('leaves what is not about the IDs to the body schema (VALIDATION_FAILED naming the field)', async () => {
    const tooMany = await request(t.app.server)
      .post(path)
      .set('authorization', t.auth('requester'))
      .send({ ...spec, ids: Array.from({ length: 100_001 }, (_, i) => (i ? `app_${i}` : 'bad id')) });
    expect([tooMany.status, tooMany.body.code]).toEqual([400, 'VALIDATION_FAILED']);
    expect(JSON.stringify(tooMany.body.details)).toContain('body.ids');
    const notAList = await request(t.app.server)
      .post(path)
      .set('authorization', t.auth('requester'))
      .send({ ...spec, ids: 'app_1' });
    expect([notAList.status, notAList.body.code]).toEqual([400, 'VALIDATION_FAILED']);
  });
});
