// Bad input is a clear 4xx with a code, never a 5xx, and writes nothing. Uploads and idempotency.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import request from 'supertest';
import { gzipSync } from 'node:zlib';
import { readFileSync } from 'node:fs';
import { OPENAPI_FILE } from '../../scripts/openapi.ts';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { appId, query, seedRegistry, siteId } from '../support/seed.ts';

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp();
  await seedRegistry(t.databaseUrl, { sites: 50, appsPerSite: 20 });
});
afterAll(async () => {
  await t?.close();
});

const spec = { targetType: 'app', reason: 'Remove the legacy app', ticket: 'CHG-1' };
const post = () => request(t.app.server).post('/v1/operations').set('authorization', t.auth('requester'));
const counts = async () =>
  (
    await query(
      t.databaseUrl,
      `SELECT (SELECT count(*) FROM operations)::int AS ops, (SELECT count(*) FROM operation_items)::int AS items`,
    )
  )[0];

describe('bad input changes nothing', () => {
  const cases: [string, (r: ReturnType<typeof post>) => request.Test, number, string][] = [
    [
      'malformed JSON',
      (r) => r.set('content-type', 'application/json').send('{"targetType": "app", '),
      400,
      'MALFORMED_BODY',
    ],
    [
      'wrong content type',
      (r) => r.set('content-type', 'application/xml').send('<ids/>'),
      415,
      'UNSUPPORTED_MEDIA_TYPE',
    ],
    ['unknown field', (r) => r.send({ ...spec, ids: [appId(1, 1)], skipBadIds: true }), 400, 'VALIDATION_FAILED'],
    ['empty ID list', (r) => r.send({ ...spec, ids: [] }), 400, 'EMPTY_ID_LIST'],
    ['IDs that are not strings', (r) => r.send({ ...spec, ids: [appId(1, 1), 123] }), 400, 'INVALID_IDS'],
    ['ID with whitespace', (r) => r.send({ ...spec, ids: [appId(1, 1), 'app 1'] }), 400, 'INVALID_IDS'],
    [
      'NDJSON ID with whitespace',
      (r) => r.set('content-type', 'application/x-ndjson').send(`${JSON.stringify(spec)}\n"app 1"\n`),
      400,
      'INVALID_IDS',
    ],
    ['missing reason', (r) => r.send({ targetType: 'app', ticket: 'x', ids: [appId(1, 1)] }), 400, 'VALIDATION_FAILED'],
    [
      'unknown target type',
      (r) => r.send({ ...spec, targetType: 'widget', ids: [appId(1, 1)] }),
      422,
      'UNKNOWN_TARGET_TYPE',
    ],
    [
      'action other than delete',
      (r) => r.send({ ...spec, action: 'purge', ids: [appId(1, 1)] }),
      400,
      'VALIDATION_FAILED',
    ],
    [
      'over 100k inline IDs',
      (r) => r.send({ ...spec, ids: Array.from({ length: 100_001 }, (_, i) => `app_${i}`) }),
      400,
      'VALIDATION_FAILED',
    ],
    [
      'over 1M streamed IDs',
      (r) =>
        r
          .set('content-type', 'application/x-ndjson')
          .send(`${JSON.stringify(spec)}\n${Array.from({ length: 1_000_001 }, (_, i) => `"a${i}"`).join('\n')}\n`),
      413,
      'TOO_MANY_IDS',
    ],
    [
      'spec in the query of a JSON upload',
      (r) => r.query({ targetType: 'site' }).send({ ...spec, ids: [appId(1, 1)] }),
      400,
      'SPEC_IN_QUERY',
    ],
    ['empty NDJSON body', (r) => r.set('content-type', 'application/x-ndjson').send(''), 400, 'EMPTY_BODY'],
    [
      'NDJSON with a bad spec line',
      (r) => r.set('content-type', 'application/x-ndjson').send('{"targetType":"app"}\n"app_00001_01"\n'),
      400,
      'VALIDATION_FAILED',
    ],
    [
      'NDJSON with a broken ID line',
      (r) => r.set('content-type', 'application/x-ndjson').send(`${JSON.stringify(spec)}\n"app_00001_01"\n{oops\n`),
      400,
      'MALFORMED_NDJSON',
    ],
    [
      'NDJSON saved with a byte order mark',
      (r) => r.set('content-type', 'application/x-ndjson').send(`\ufeff${JSON.stringify(spec)}\n"app_00001_01"\n`),
      400,
      'MALFORMED_NDJSON',
    ],
    [
      'NDJSON with a number as ID',
      (r) => r.set('content-type', 'application/x-ndjson').send(`${JSON.stringify(spec)}\n42\n`),
      400,
      'INVALID_ID',
    ],
    [
      'NDJSON spec only, no IDs',
      (r) => r.set('content-type', 'application/x-ndjson').send(`${JSON.stringify(spec)}\n`),
      400,
      'EMPTY_ID_LIST',
    ],
    [
      'a key given twice in a JSON body',
      (r) =>
        r
          .set('content-type', 'application/json')
          .send(`{"targetType":"app","reason":"x","ticket":"T","ids":["app_00001_01"],"targetType":"site"}`),
      400,
      'DUPLICATE_KEY',
    ],
    [
      'a key given twice on the NDJSON spec line',
      (r) =>
        r
          .set('content-type', 'application/x-ndjson')
          .send(`{"targetType":"site","reason":"x","ticket":"T","targetType":"app"}\n"app_00001_01"\n`),
      400,
      'DUPLICATE_KEY',
    ],
    [
      'an NDJSON ID line with "id" twice',
      (r) =>
        r
          .set('content-type', 'application/x-ndjson')
          .send(`${JSON.stringify(spec)}\n"app_00001_01"\n{"id":"app_00001_02","\\u0069d":"app_00001_03"}\n`),
      400,
      'DUPLICATE_KEY',
    ],
    [
      'a __proto__ key in a JSON body (valid JSON, refused as such, not as malformed)',
      (r) =>
        r
          .set('content-type', 'application/json')
          .send(`{"targetType":"app","reason":"x","ticket":"T","ids":["app_00001_01"],"__proto__":{"mode":"hard"}}`),
      400,
      'FORBIDDEN_KEY',
    ],
    [
      'a constructor.prototype key in a JSON body',
      (r) =>
        r
          .set('content-type', 'application/json')
          .send(`{"targetType":"app","reason":"x","ticket":"T","ids":["app_00001_01"],"constructor":{"prototype":{}}}`),
      400,
      'FORBIDDEN_KEY',
    ],
    [
      'canary waves that shrink (a first wave of half the tenants)',
      (r) => r.send({ ...spec, ids: [appId(1, 1)], rollout: { waves: ['50%', '10%', '100%'] } }),
      400,
      'VALIDATION_FAILED',
    ],
    [
      'a wave step after 100%',
      (r) => r.send({ ...spec, ids: [appId(1, 1)], rollout: { waves: ['1', '100%', '5'] } }),
      400,
      'VALIDATION_FAILED',
    ],
    [
      'a gzip-compressed body (Content-Encoding is not decoded here)',
      (r) =>
        r
          .set('content-type', 'application/json')
          .set('content-encoding', 'gzip')
          .send(gzipSync(JSON.stringify({ ...spec, ids: [appId(1, 2)] }))),
      415,
      'UNSUPPORTED_MEDIA_TYPE',
    ],
    [
      'a compressed NDJSON upload',
      (r) =>
        r
          .set('content-type', 'application/x-ndjson')
          .set('content-encoding', 'gzip')
          .send(gzipSync(`${JSON.stringify(spec)}\n"app_00001_02"\n`)),
      415,
      'UNSUPPORTED_MEDIA_TYPE',
    ],
    [
      'a body in another charset (ISO-8859-1)',
      (r) =>
        r
          .set('content-type', 'application/json; charset=iso-8859-1')
          .send(Buffer.from(JSON.stringify({ ...spec, reason: 'Caf\u00e9 app', ids: [appId(1, 2)] }), 'latin1')),
      415,
      'UNSUPPORTED_MEDIA_TYPE',
    ],
    [
      'text upload to the JSON route',
      (r) => r.set('content-type', 'text/plain').send('app_00001_01\n'),
      415,
      'UNSUPPORTED_MEDIA_TYPE',
    ],
  ];
  it.each(cases)('%s → %i %s', async (_name, send, status, code) => {
    const before = await counts();
    const res = await send(post()).expect(status);
    expect(res.body.code).toBe(code);
    expect(typeof res.body.message).toBe('string');
    expect(res.body.requestId).toBeTruthy();
    expect(await counts()).toEqual(before);
  });

  it('says what JSON.parse found wrong in a malformed body, and refuses __proto__ as a key, not as bad JSON', async () => {
    const text = '{"targetType":"app","reason":"x",}';
    let why = '';
    try {
      JSON.parse(text);
    } catch (e) {
      why = (e as Error).message;
    }
    const bad = await post().set('content-type', 'application/json').send(text).expect(400);
    expect(bad.body).toMatchObject({ code: 'MALFORMED_BODY', message: `The body is not valid JSON: ${why}` });
    const proto = await post()
      .set('content-type', 'application/json')
      .send('{"targetType":"app","reason":"x","ticket":"T","ids":["app_00001_01"],"__proto__":{}}')
      .expect(400);
    expect(proto.body.code).toBe('FORBIDDEN_KEY');
    expect(proto.body.message).toContain('"__proto__"');
    expect(proto.body.message).not.toContain('not valid JSON');
  });

  it('names a key given twice and where, in a JSON body and on an NDJSON line', async () => {
    const json = await post()
      .set('content-type', 'application/json')
      .send(`{"targetType":"app","reason":"x","ticket":"T","rollout":{"bakeSeconds":0,"bakeSeconds":600},"ids":["a"]}`)
      .expect(400);
    expect(json.body).toMatchObject({ code: 'DUPLICATE_KEY', details: { field: 'body.rollout', key: 'bakeSeconds' } });
    expect(json.body.message).toContain('body.rollout gives the key "bakeSeconds" more than once');
    const line = await post()
      .set('content-type', 'application/x-ndjson')
      .send(`${JSON.stringify(spec)}\n"${appId(1, 1)}"\n{"id":"${appId(1, 2)}","id":"${siteId(1)}"}\n`)
      .expect(400);
    expect(line.body).toMatchObject({ code: 'DUPLICATE_KEY', details: { line: 3, key: 'id' } });
    expect(line.body.message).toMatch(/^Line 3 gives the key "id" more than once/);
  });

  it('shows an over-long ID by its first 200 characters and its length, not in full', async () => {
    const long = (c: string) => `app_${c.repeat(60_000)}`;
    const lines = [JSON.stringify(spec), `"${appId(1, 1)}"`, ...['a', 'b', 'c'].map((c) => `"${long(c)}"`)];
    const before = await counts();
    const res = await post().set('content-type', 'application/x-ndjson').send(lines.join('\n')).expect(400);
    expect(res.body).toMatchObject({ code: 'INVALID_IDS', details: { invalidCount: 3 } });
    expect(res.body.details.invalid[0]).toEqual({
      index: 1,
      id: long('a').slice(0, 200),
      length: 60_004,
      truncated: true,
      problem: 'is longer than 200 characters',
    });
    expect(res.body.details.invalid.map((x: { index: number }) => x.index)).toEqual([1, 2, 3]);
    expect(JSON.stringify(res.body).length).toBeLessThan(2_000);
    expect(await counts()).toEqual(before);
  });

  it('says so when an NDJSON upload begins with a byte order mark (invisible in an editor)', async () => {
    const res = await post()
      .set('content-type', 'application/x-ndjson')
      .send(`\ufeff${JSON.stringify(spec)}\n"app_00001_01"\n`)
      .expect(400);
    expect(res.body).toMatchObject({ code: 'MALFORMED_NDJSON', details: { line: 1, byteOrderMark: true } });
    expect(res.body.message).toContain('byte order mark (U+FEFF)');
    const plain = await post().set('content-type', 'application/x-ndjson').send('{oops\n').expect(400);
    expect(plain.body.details).toEqual({ line: 1 });
  });

  it('says that an NDJSON body came JSON-quoted, as Swagger UI sends the documented examples (a trial)', async () => {
    const doc = JSON.parse(readFileSync(OPENAPI_FILE, 'utf8')) as {
      paths: Record<string, { post: { requestBody: { content: Record<string, { schema: { example: string } }> } } }>;
    };
    const example = (path: string) => doc.paths[path]!.post.requestBody.content['application/x-ndjson']!.schema.example;
    const before = await counts();
    const ops = await post()
      .set('content-type', 'application/x-ndjson')
      .send(JSON.stringify(example('/v1/operations')));
    expect(ops.status).toBe(400);
    expect(ops.body.code).toBe('VALIDATION_FAILED');
    expect(ops.body.message).toMatch(
      /^Line 1 is one JSON string holding several lines: the NDJSON body was sent JSON-quoted/,
    );
    // As typed, the same example is a dry run that plans.
    const typed = await post().set('content-type', 'application/x-ndjson').send(example('/v1/operations'));
    expect(typed.status, JSON.stringify(typed.body)).not.toBe(500);
    expect(typed.body.message ?? '').not.toMatch(/JSON-quoted/);
    const registry = await request(t.app.server)
      .post('/v1/registry/resources')
      .set('authorization', t.auth('admin'))
      .set('content-type', 'application/x-ndjson')
      .send(JSON.stringify(example('/v1/registry/resources')));
    expect(registry.status).toBe(400);
    expect(registry.body.message).toMatch(
      /^Line 1: the line is one JSON string holding several lines: .*sent JSON-quoted/,
    );
    expect(await counts()).toEqual(before);
  });

  it('says in words what a wave step must be, not the regular expression ("0", "150%": a trial)', async () => {
    for (const step of ['0', '150%']) {
      const res = await post()
        .send({ ...spec, ids: [appId(1, 1)], rollout: { waves: ['1', step] } })
        .expect(400);
      expect(res.body.details).toEqual([
        {
          field: 'body.rollout.waves.1',
          value: step,
          message: 'must be a number of tenants ("1" to "9999999") or a share of them ("0.5%" to "100%")',
        },
      ]);
      expect(res.body.message).not.toMatch(/pattern/);
    }
  });

  it('names the wave step that does not reach more tenants than the one before it', async () => {
    const res = await post()
      .send({ ...spec, ids: [appId(1, 1)], rollout: { waves: ['1', '50%', '10%', '100%'] } })
      .expect(400);
    // Named where it was given, as the schema's own refusals of the same field are (`body.…` in a
    // JSON body, `line 1.…` in an NDJSON spec line): the CLI names its --waves flag from that.
    expect(res.body.details).toEqual([
      {
        field: 'body.rollout.waves.2',
        value: '10%',
        message: 'must reach more tenants than the step before it ("50%"): waves are cumulative',
      },
    ]);
    expect(res.body.message).toContain('body.rollout.waves.2');
    const ndjson = await post()
      .set('content-type', 'application/x-ndjson')
      .send(`${JSON.stringify({ ...spec, rollout: { waves: ['10%', '5%'] } })}\n"${appId(1, 1)}"\n`)
      .expect(400);
    expect(ndjson.body.details).toMatchObject([{ field: 'line 1.rollout.waves.1', value: '5%' }]);
    expect(ndjson.body.message).toContain('Invalid line 1.rollout.waves.1:');
    // A count and a share are not compared (which reaches more depends on the tenants), and a
    // last step below 100% is extended to every tenant, as before.
    await post()
      .send({ ...spec, ids: [appId(40, 1)], dryRun: true, rollout: { waves: ['20', '10%', '50'] } })
      .expect(200);
  });

  it('refuses an empty ID list with one code however it came, naming the field', async () => {
    const json = await post()
      .send({ ...spec, ids: [] })
      .expect(400);
    expect(json.body).toMatchObject({ code: 'EMPTY_ID_LIST', details: { field: 'body.ids' } });
    const ndjson = await post()
      .set('content-type', 'application/x-ndjson')
      .send(`${JSON.stringify(spec)}\n`)
      .expect(400);
    expect(ndjson.body).toMatchObject({ code: 'EMPTY_ID_LIST', details: { field: 'ids' } });
  });

  it('names the offending field and IDs', async () => {
    const unknown = await post()
      .send({ ...spec, ids: [appId(1, 1)], skipBadIds: true })
      .expect(400);
    expect(unknown.body.message).toContain('skipBadIds');
    const notString = await post()
      .send({ ...spec, ids: [appId(1, 1), 123] })
      .expect(400);
    expect(notString.body.details.invalid).toEqual([{ index: 1, id: 123, problem: 'is not a string' }]);
    const ws = await post()
      .send({ ...spec, ids: ['ok_1', 'bad id'] })
      .expect(400);
    expect(ws.body.details.invalid).toEqual([
      expect.objectContaining({ index: 1, id: 'bad id', codePoint: 'U+0020', escaped: 'bad id' }),
    ]);
    const streamed = await post()
      .set('content-type', 'application/x-ndjson')
      .send(`${JSON.stringify(spec)}\n"ok_1"\n"bad id"\n`)
      .expect(400);
    expect(streamed.body.details.invalid).toEqual([
      {
        index: 1,
        id: 'bad id',
        problem: 'contains U+0020 SPACE at position 3',
        codePoint: 'U+0020',
        position: 3,
        escaped: 'bad id',
      },
    ]);
  });
});

describe('uploads', () => {
  it('takes NDJSON: spec line, then IDs as strings or {"id"} objects', async () => {
    const body = [
      JSON.stringify({ ...spec, rollout: { bakeSeconds: 0 } }),
      `"${appId(2, 0)}"`,
      JSON.stringify({ id: appId(2, 1) }),
      `"${appId(3, 0)}"`,
    ].join('\n');
    const res = await post().set('content-type', 'application/x-ndjson').send(body).expect(201);
    expect(res.body).toMatchObject({ state: 'planned', itemCount: 3, tenantCount: 2, rollout: { bakeSeconds: 0 } });
  });

  it('finds a duplicate in an NDJSON upload whatever form each copy came in (string, escaped, {"id"})', async () => {
    // A plain line is read as bytes, the others as decoded strings (id-stream.ts): the copies must
    // still be seen as one ID, or the plan would lock and delete it as two items.
    const dup = appId(7, 1);
    const escaped = `"${dup.replace('_', '\\u005f')}"`;
    for (const copy of [JSON.stringify({ id: dup }), escaped, `"${dup}"`]) {
      const before = await counts();
      const body = [JSON.stringify(spec), `"${appId(7, 0)}"`, `"${dup}"`, `"${appId(7, 2)}"`, copy].join('\n');
      const res = await post().set('content-type', 'application/x-ndjson').send(body).expect(422);
      expect(res.body.details.counts).toMatchObject({ ok: 3, duplicate: 1 });
      expect(res.body.details.offenders.duplicate).toEqual([expect.objectContaining({ id: dup, index: 3 })]);
      expect((await counts())?.items).toBe(before?.items);
    }
  });

  it('answers a JSON body on the text route with the 415 its OpenAPI example shows', async () => {
    const doc = (await request(t.app.server).get('/openapi.json').expect(200)).body;
    const example = doc.paths['/v1/operations/text'].post.responses['415'].content['application/json'].example;
    const res = await request(t.app.server)
      .post('/v1/operations/text?targetType=app&reason=r&ticket=T')
      .set('authorization', t.auth('requester'))
      .set('content-type', 'application/json')
      .send('{}')
      .expect(415);
    const shown = { code: example.code, message: example.message, details: example.details };
    expect({ code: res.body.code, message: res.body.message, details: res.body.details }).toEqual(shown);
    // An ID list labelled JSON is refused for its type too, not as malformed JSON (its parser ran first).
    const list = await request(t.app.server)
      .post('/v1/operations/text?targetType=app&reason=r&ticket=T')
      .set('authorization', t.auth('requester'))
      .set('content-type', 'application/json')
      .send('app_1\napp_2\n')
      .expect(415);
    expect({ code: list.body.code, message: list.body.message, details: list.body.details }).toEqual(shown);
  });

  it('takes plain text with the spec in the query string, and rejects wrong types there too', async () => {
    const text = () => request(t.app.server).post('/v1/operations/text').set('authorization', t.auth('requester'));
    const ok = await text()
      .query({ targetType: 'app', reason: 'cleanup', ticket: 'CHG-9' })
      .set('content-type', 'text/plain')
      .send(`${appId(4, 0)}\r\n${appId(4, 1)}\n\n`)
      .expect(201);
    expect(ok.body.itemCount).toBe(2);
    const bad = await text()
      .query({ targetType: 'app', reason: 'cleanup', ticket: 'CHG-9' })
      .set('content-type', 'text/plain')
      .send(`${appId(5, 0)}\n${siteId(5)}\n`)
      .expect(422);
    expect(bad.body.details.counts.type_mismatch).toBe(1);
    const before = await counts();
    const noSpec = await text()
      .set('content-type', 'text/plain')
      .send(`${appId(6, 0)}\n`)
      .expect(400);
    expect(noSpec.body).toMatchObject({ code: 'VALIDATION_FAILED' });
    expect(noSpec.body.message).toContain('targetType');
    expect(await counts()).toEqual(before);
  });

  it('takes the rollout from the query string too (waves, bake, concurrency, onHalt), and names a bad step there', async () => {
    const text = () =>
      request(t.app.server)
        .post('/v1/operations/text')
        .set('authorization', t.auth('requester'))
        .set('content-type', 'text/plain');
    const spec = { targetType: 'app', reason: 'cleanup', ticket: 'CHG-9' };
    const list = `${appId(7, 0)}\n${appId(8, 0)}\n${appId(9, 0)}\n`;
    const ok = await text()
      .query({ ...spec, waves: '1,100%', bakeSeconds: 0, concurrency: 4, onHalt: 'pause' })
      .send(list)
      .expect(201);
    expect(ok.body.rollout).toMatchObject({ waves: ['1', '100%'], bakeSeconds: 0, concurrency: 4 });
    expect(ok.body.haltPolicy).toMatchObject({ onHalt: 'pause' });
    expect(
      ok.body.plan.waves.filter((w: { kind: string }) => w.kind === 'canary').map((w: { step: string }) => w.step),
    ).toEqual(['1', '100%']);
    const before = await counts();
    const cases: [Record<string, unknown>, string][] = [
      [{ waves: '50%,10%' }, 'querystring.waves.1'],
      [{ waves: '1,,100%' }, 'querystring.waves.1'],
      [{ waves: Array.from({ length: 21 }, (_, k) => k + 1).join(',') }, 'querystring.waves'],
      [{ waves: '1;100%' }, 'querystring.waves.0'],
      [{ waves: '1,200%' }, 'querystring.waves.1'],
      [{ bakeSeconds: -1 }, 'querystring.bakeSeconds'],
      [{ onHalt: 'explode' }, 'querystring.onHalt'],
    ];
    for (const [extra, field] of cases) {
      const bad = await text()
        .query({ ...spec, ...extra })
        .send(`${appId(10, 0)}\n`)
        .expect(400);
      expect(bad.body.code, field).toBe('VALIDATION_FAILED');
      expect(
        bad.body.details.map((d: { field: string }) => d.field),
        JSON.stringify(extra),
      ).toContain(field);
      // Why, in words: the whole list's pattern said nothing of which step or what is wrong (a trial).
      expect(bad.body.message).not.toMatch(/must match pattern/);
    }
    expect(await counts()).toEqual(before);
  });
});

describe('Idempotency-Key', () => {
  it('returns the same operation for the same body, 409 for a different body', async () => {
    const body = { ...spec, ids: [appId(10, 0), appId(10, 1)] };
    const first = await post().set('idempotency-key', 'cleanup-42').send(body).expect(201);
    const again = await post().set('idempotency-key', 'cleanup-42').send(body).expect(200);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.body.id).toBe(first.body.id);
    const other = await post()
      .set('idempotency-key', 'cleanup-42')
      .send({ ...body, ids: [appId(10, 0)] })
      .expect(409);
    expect(other.body).toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED', details: { operationId: first.body.id } });
    const ops = await query(
      t.databaseUrl,
      `SELECT count(*)::int AS n FROM operations WHERE idempotency_key = 'cleanup-42'`,
    );
    expect(ops[0]!.n).toBe(1);
  });

  it("another token's key is refused (409), not answered with that token's operation", async () => {
    const body = { ...spec, ids: [appId(12, 0)] };
    const mine = await post().set('idempotency-key', 'chg-2042').send(body).expect(201);
    // A second pipeline (its own token, scoped to another tenant) that happens to use the same key
    // and list was answered 200 with the first one's operation: a tenant outside its scope, and an
    // outcome that is not its own.
    const other = await t.app.authService.createToken('other-pipeline', 'requester', { tokenId: 'test', name: 'test' });
    const theirs = await request(t.app.server)
      .post('/v1/operations')
      .set('authorization', `Bearer ${other.token}`)
      .set('idempotency-key', 'chg-2042')
      .send(body)
      .expect(409);
    expect(theirs.body).toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED', details: { idempotencyKey: 'chg-2042' } });
    expect(theirs.body.message).toContain('another token');
    expect(JSON.stringify(theirs.body)).not.toContain(mine.body.id);
    // The owner still gets its replay.
    expect((await post().set('idempotency-key', 'chg-2042').send(body).expect(200)).body.id).toBe(mine.body.id);
  });

  it('concurrent submissions with one key create one operation', async () => {
    const body = { ...spec, ids: [appId(11, 0), appId(11, 1)] };
    const results = await Promise.all(
      Array.from({ length: 5 }, () => post().set('idempotency-key', 'race-1').send(body)),
    );
    expect(results.map((r) => r.status).sort()).toEqual([200, 200, 200, 200, 201]);
    expect(new Set(results.map((r) => r.body.id)).size).toBe(1);
  });
});

describe('reading back', () => {
  it('lists operations, pages items, and 404s unknown ones', async () => {
    const created = await post()
      .send({ ...spec, ids: Array.from({ length: 20 }, (_, j) => appId(20, j)) })
      .expect(201);
    const list = await request(t.app.server)
      .get('/v1/operations?limit=200')
      .set('authorization', t.auth('viewer'))
      .expect(200);
    expect(list.body.items.map((o: { id: string }) => o.id)).toContain(created.body.id);
    const page1 = await request(t.app.server)
      .get(`/v1/operations/${created.body.id}/items?limit=15`)
      .set('authorization', t.auth('viewer'))
      .expect(200);
    expect(page1.body.items).toHaveLength(15);
    const page2 = await request(t.app.server)
      .get(`/v1/operations/${created.body.id}/items?limit=15&cursor=${page1.body.nextCursor}`)
      .set('authorization', t.auth('viewer'))
      .expect(200);
    expect(page2.body.items).toHaveLength(5);
    expect(page2.body.nextCursor).toBeNull();
    const got = await request(t.app.server)
      .get(`/v1/operations/${created.body.id}`)
      .set('authorization', t.auth('viewer'))
      .expect(200);
    expect(got.body.waveProgress).toEqual([{ wave: 0, counts: { pending: 20 } }]);
    const missing = await request(t.app.server)
      .get('/v1/operations/op_nope')
      .set('authorization', t.auth('viewer'))
      .expect(404);
    expect(missing.body.code).toBe('NOT_FOUND');
  });

  it('refuses submissions from viewers and approvers', async () => {
    for (const role of ['viewer', 'approver'] as const) {
      const res = await request(t.app.server)
        .post('/v1/operations')
        .set('authorization', t.auth(role))
        .send({ ...spec, ids: [appId(1, 1)] })
        .expect(403);
      expect(res.body.code).toBe('FORBIDDEN');
    }
  });
});
