// Text is valid UTF-8 without NUL, control, bidi-formatting or zero-width characters wherever it
// is stored or shown; path parameters take every ID the registry takes; a request line or path
// segment too long for the server still gets the project's error shape.
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import request from 'supertest';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { changedTables, fingerprint } from '../support/fingerprint.ts';
import { FIXTURE_TYPES, tenantsFor } from '../support/registry-fixtures.ts';

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp();
  const admin = t.auth('admin');
  await request(t.app.server).put('/v1/registry/types').set('authorization', admin).send({ types: FIXTURE_TYPES });
  await request(t.app.server)
    .put('/v1/registry/types')
    .set('authorization', admin)
    .send({ types: [{ name: 'free' }] });
  await request(t.app.server)
    .post('/v1/registry/tenants')
    .set('authorization', admin)
    .send({ tenants: tenantsFor(3) });
  // Listening on a port of its own: one test speaks raw HTTP to it.
  await new Promise<void>((resolve) => t.app.server.listen(0, '127.0.0.1', resolve));
});
afterAll(async () => {
  await t?.close();
});

const admin = () => t.auth('admin');
const bytes = (...parts: (string | number[])[]) =>
  Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))));
const unchanged = async <T>(fn: () => Promise<T>): Promise<T> => {
  const before = await fingerprint(t.app.db.pool);
  const result = await fn();
  expect(changedTables(before, await fingerprint(t.app.db.pool))).toEqual([]);
  return result;
};

describe('invalid UTF-8 is refused, never replaced with U+FFFD', () => {
  it('in an NDJSON registry import, naming the line', async () => {
    const body = bytes(
      '{"id":"r_ok","type":"free","tenantId":"tn_0"}\n',
      '{"id":"r_1',
      [0xff],
      '","type":"free","tenantId":"tn_0"}\n',
    );
    const res = await unchanged(() =>
      request(t.app.server)
        .post('/v1/registry/resources')
        .set('authorization', admin())
        .set('content-type', 'application/x-ndjson')
        .send(body),
    );
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ code: 'INVALID_UTF8', details: { line: 2 } });
    expect(res.body.message).toContain('line 2');
  });

  it('in an NDJSON ID list and in a text/plain ID list', async () => {
    const nd = await unchanged(() =>
      request(t.app.server)
        .post('/v1/operations')
        .set('authorization', t.auth('requester'))
        .set('content-type', 'application/x-ndjson')
        .send(bytes('{"targetType":"free","reason":"cleanup","ticket":"T-1"}\n"a"\n"b', [0xc3, 0x28], '"\n')),
    );
    expect(nd.status).toBe(400);
    expect(nd.body).toMatchObject({ code: 'INVALID_UTF8', details: { line: 3 } });
    const text = await unchanged(() =>
      request(t.app.server)
        .post('/v1/operations/text?targetType=free&reason=cleanup&ticket=T-1')
        .set('authorization', t.auth('requester'))
        .set('content-type', 'text/plain')
        .send(bytes('a\n', [0xed, 0xa0, 0x80], '\n')),
    );
    expect(text.status).toBe(400);
    expect(text.body).toMatchObject({ code: 'INVALID_UTF8', details: { line: 2 } });
  });

  it('in a JSON body, with the byte offset', async () => {
    // inject: supertest would serialise a Buffer sent as application/json as {"type":"Buffer",…}.
    const res = await unchanged(() =>
      t.app.inject({
        method: 'POST',
        url: '/v1/registry/tenants',
        headers: { authorization: admin(), 'content-type': 'application/json' },
        payload: bytes('{"tenants":[{"id":"tn_', [0xc0, 0xaf], '","name":"x"}]}'),
      }),
    );
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ code: 'INVALID_UTF8', details: { byteOffset: 22, line: 1, column: 23 } });
  });

  it('two byte-level IDs can no longer collapse into one', async () => {
    const a = bytes('{"id":"r_', [0xfe], '","type":"free","tenantId":"tn_0"}\n');
    const b = bytes('{"id":"r_', [0xff], '","type":"free","tenantId":"tn_0"}\n');
    for (const body of [a, b]) {
      const res = await request(t.app.server)
        .post('/v1/registry/resources')
        .set('authorization', admin())
        .set('content-type', 'application/x-ndjson')
        .send(body);
      expect(res.body.code).toBe('INVALID_UTF8');
    }
    const stored = await t.app.db.pool.query(`SELECT id FROM resources WHERE id LIKE 'r\\_%'`);
    expect(stored.rows).toEqual([]);
  });
});

describe('invisible and control characters are refused in stored text', () => {
  const hidden: [string, string][] = [
    ['RIGHT-TO-LEFT OVERRIDE', '\u202e'],
    ['ZERO WIDTH SPACE', '\u200b'],
    ['ZERO WIDTH JOINER', '\u200d'],
    ['LEFT-TO-RIGHT ISOLATE', '\u2066'],
    ['ARABIC LETTER MARK', '\u061c'],
    ['BYTE ORDER MARK', '\ufeff'],
    ['WORD JOINER', '\u2060'],
    ['a C1 control', '\u0085'],
    ['ESCAPE', '\u001b'],
  ];

  it.each(hidden)('%s in a tenant ID, a tenant name and a resource ID (JSON and NDJSON)', async (_name, ch) => {
    const cp = `U+${ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
    for (const [field, tenant] of [
      ['body.tenants.0.id', { id: `tn_${ch}x`, name: 'x' }],
      ['body.tenants.0.name', { id: 'tn_y', name: `Acme${ch}` }],
    ] as const) {
      const res = await unchanged(() =>
        request(t.app.server)
          .post('/v1/registry/tenants')
          .set('authorization', admin())
          .send({ tenants: [tenant] }),
      );
      expect(res.status).toBe(400);
      expect(res.body.code).toBe('VALIDATION_FAILED');
      expect(res.body.details[0]).toMatchObject({ field, codePoint: cp });
      expect(res.body.message).toContain(cp);
    }
    const json = await unchanged(() =>
      request(t.app.server)
        .post('/v1/registry/resources')
        .set('authorization', admin())
        .send({ resources: [{ id: `r_${ch}1`, type: 'free', tenantId: 'tn_0' }] }),
    );
    expect(json.status).toBe(400);
    expect(json.body.details[0]).toMatchObject({ field: 'body.resources.0.id', codePoint: cp });
    const nd = await unchanged(() =>
      request(t.app.server)
        .post('/v1/registry/resources')
        .set('authorization', admin())
        .set('content-type', 'application/x-ndjson')
        .send(
          `{"id":"r_ok2","type":"free","tenantId":"tn_0"}\n${JSON.stringify({ id: `r_${ch}1`, type: 'free', tenantId: 'tn_0' })}\n`,
        ),
    );
    expect(nd.status).toBe(400);
    expect(nd.body.details[0]).toMatchObject({ line: 2, field: 'id', codePoint: cp });
  });

  it('in submitted IDs (JSON, NDJSON, text), showing the hidden character escaped', async () => {
    const post = (r: request.Test) => r.set('authorization', t.auth('requester'));
    const json = await unchanged(() =>
      post(request(t.app.server).post('/v1/operations')).send({
        targetType: 'free',
        reason: 'cleanup',
        ticket: 'T-1',
        ids: ['r_a', 'r_b\u200b'],
      }),
    );
    expect(json.status).toBe(400);
    expect(json.body.code).toBe('INVALID_IDS');
    expect(json.body.details.invalid[0]).toMatchObject({ index: 1, codePoint: 'U+200B', escaped: 'r_b\\u200b' });
    const text = await unchanged(() =>
      post(request(t.app.server).post('/v1/operations/text?targetType=free&reason=cleanup&ticket=T-1'))
        .set('content-type', 'text/plain')
        .send('r_a\nr_\u202eb\n'),
    );
    expect(text.status).toBe(400);
    expect(text.body.code).toBe('INVALID_IDS');
    expect(text.body.details.invalid[0]).toMatchObject({ index: 1, codePoint: 'U+202E', escaped: 'r_\\u202eb' });
  });

  it('keeps multi-line free text multi-line, but refuses bidi controls in it', async () => {
    const ok = await request(t.app.server)
      .put('/v1/admin/freeze')
      .set('authorization', admin())
      .send({ frozen: false, reason: 'Line one\nLine two\twith a tab' });
    expect(ok.status).toBe(200);
    const bad = await request(t.app.server)
      .put('/v1/admin/freeze')
      .set('authorization', admin())
      .send({ frozen: false, reason: 'Line one\u202e' });
    expect(bad.status).toBe(400);
    expect(bad.body.details[0]).toMatchObject({ field: 'body.reason', codePoint: 'U+202E' });
  });

  it('refuses free text that is only whitespace (a reason of tabs and a ticket of a space planned a delete)', async () => {
    const plan = (reason: string, ticket: string) =>
      unchanged(() =>
        request(t.app.server)
          .post('/v1/operations')
          .set('authorization', t.auth('requester'))
          .send({ targetType: 'free', reason, ticket, ids: ['r_ok'], dryRun: true }),
      );
    for (const [reason, ticket, field] of [
      ['\t\t\t', 'CHG-1', 'body.reason'],
      ['   ', 'CHG-1', 'body.reason'],
      ['\n\n\n', 'CHG-1', 'body.reason'],
      ['Remove the legacy app', ' ', 'body.ticket'],
      ['Remove the legacy app', '\u3000', 'body.ticket'],
    ] as const) {
      const res = await plan(reason, ticket);
      expect(res.status, JSON.stringify(res.body)).toBe(400);
      expect(res.body.code).toBe('VALIDATION_FAILED');
      expect(res.body.details[0]).toMatchObject({ field, message: expect.stringMatching(/^is only whitespace/) });
    }
    // Whitespace inside text is text.
    const ok = await request(t.app.server)
      .post('/v1/operations')
      .set('authorization', t.auth('requester'))
      .send({ targetType: 'free', reason: ' Remove\tthe app ', ticket: 'CHG 1', ids: ['r_x'], dryRun: true });
    expect(ok.body.code).not.toBe('VALIDATION_FAILED');
    const freeze = await request(t.app.server)
      .put('/v1/admin/freeze')
      .set('authorization', admin())
      .send({ frozen: false, reason: ' \n ' });
    expect(freeze.status).toBe(400);
    expect(freeze.body.details[0]).toMatchObject({
      field: 'body.reason',
      message: expect.stringMatching(/whitespace/),
    });
  });

  it('allows non-ASCII text that shows as what it is (accents, CJK, emoji)', async () => {
    const res = await request(t.app.server)
      .post('/v1/registry/tenants')
      .set('authorization', admin())
      .send({ tenants: [{ id: 'tn_zürich', name: 'Zürich 株式会社 🚀', contact: { note: 'Floor 2\nDesk 4' } }] });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
  });
});

describe('path parameters and long requests', () => {
  it('reads back a resource with a 200-character ID (the longest the registry accepts)', async () => {
    const id = `r_${'x'.repeat(198)}`;
    await request(t.app.server)
      .post('/v1/registry/resources')
      .set('authorization', admin())
      .send({ resources: [{ id, type: 'free', tenantId: 'tn_0' }] })
      .expect(200);
    const got = await request(t.app.server)
      .get(`/v1/registry/resources/${id}`)
      .set('authorization', t.auth('viewer'))
      .expect(200);
    expect(got.body.id).toBe(id);
    // Also when every character is percent-encoded multi-byte UTF-8.
    const wide = 'é'.repeat(200);
    await request(t.app.server)
      .post('/v1/registry/resources')
      .set('authorization', admin())
      .send({ resources: [{ id: wide, type: 'free', tenantId: 'tn_0' }] })
      .expect(200);
    await request(t.app.server)
      .get(`/v1/registry/resources/${encodeURIComponent(wide)}`)
      .set('authorization', t.auth('viewer'))
      .expect(200);
  });

  it('answers a longer path parameter in the project shape', async () => {
    for (const n of [201, 5000]) {
      const res = await request(t.app.server)
        .get(`/v1/registry/resources/${'a'.repeat(n)}`)
        .set('authorization', t.auth('viewer'));
      expect(res.status).toBe(400);
      expect(Object.keys(res.body).sort()).toEqual(['code', 'details', 'message', 'requestId']);
      expect(res.body.code).toBe('VALIDATION_FAILED');
      expect(res.body.message).toContain('200');
    }
  });

  it('answers a documentation path with a NUL byte or a dot segment in the project shape', async () => {
    // Found by the hostile-input suite: the static-file plugin's own code (FST_STATIC_FORBIDDEN_PATH).
    for (const path of ['/docs/static/%00', '/docs/static/..', '/docs/static/%2e%2e/%2e%2e/package.json']) {
      const res = await request(t.app.server).get(path);
      expect(res.status, path).toBe(404);
      expect(Object.keys(res.body).sort()).toEqual(['code', 'details', 'message', 'requestId']);
      expect(res.body.code).toBe('ROUTE_NOT_FOUND');
    }
  });

  it('answers a malformed percent-encoding in the project shape', async () => {
    const res = await request(t.app.server)
      .get('/v1/registry/resources/%E0%A4%A')
      .set('authorization', t.auth('viewer'));
    expect(res.status).toBe(400);
    expect(res.body.code).toBe('BAD_URL');
    expect(res.body.requestId).toBeTruthy();
  });

  it('answers a request line larger than the server takes in the project shape', async () => {
    const { port } = t.app.server.address() as AddressInfo;
    const raw = await new Promise<string>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1');
      let data = '';
      socket.on('data', (d) => (data += d.toString()));
      socket.on('end', () => resolve(data));
      socket.on('error', reject);
      socket.write(`GET /v1/audit?operationId=${'a'.repeat(100_000)} HTTP/1.1\r\nHost: x\r\n\r\n`);
    });
    expect(raw).toMatch(/^HTTP\/1\.1 431 /);
    const body = JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>;
    expect(Object.keys(body).sort()).toEqual(['code', 'details', 'message', 'requestId']);
    expect(body.code).toBe('REQUEST_TOO_LARGE');
    expect(body.message).toContain('16384');
  });

  it('answers a client that is still sending a huge request line and reads late, then closes without a reset', async () => {
    // Closing the socket with bytes of the client's still unread resets the connection (RFC 9112
    // §9.6): a client that read its answer late (here 200 ms, with 4 MB sent) got ECONNRESET and
    // not one byte of the 431 (Node 20); on Node 24 even a 100 kB line read at once ended in a reset.
    const { port } = t.app.server.address() as AddressInfo;
    const raw = await new Promise<string>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1');
      socket.pause();
      let data = '';
      socket.on('end', () => resolve(data));
      socket.on('error', (e) => reject(new Error(`${String(e)} after ${JSON.stringify(data.slice(0, 40))}`)));
      socket.write(`GET /v1/audit?operationId=${'a'.repeat(4_000_000)} HTTP/1.1\r\nHost: x\r\n\r\n`);
      setTimeout(() => {
        socket.on('data', (d: Buffer) => (data += d.toString()));
        socket.resume();
      }, 200);
    });
    expect(raw).toMatch(/^HTTP\/1\.1 431 /);
    expect(JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4))).toMatchObject({ code: 'REQUEST_TOO_LARGE' });
  });

  it('answers it in the project shape on a keep-alive connection that already had an answer', async () => {
    // Found by the hostile-input suite: the second request on a reused connection got its socket
    // closed without an answer (the handler only answered on a socket nothing was written to yet).
    const { port } = t.app.server.address() as AddressInfo;
    const raw = await new Promise<string>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1');
      let data = '';
      let sent = false;
      socket.on('data', (d) => {
        data += d.toString();
        if (!sent && data.includes('"status":"ok"')) {
          sent = true;
          socket.write(`GET /v1/audit?operationId=${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`);
        }
      });
      socket.on('close', () => resolve(data));
      socket.on('error', reject);
      socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n');
    });
    const second = raw.slice(raw.indexOf('HTTP/1.1', 1));
    expect(second).toMatch(/^HTTP\/1\.1 431 /);
    const body = JSON.parse(second.slice(second.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>;
    expect(body).toMatchObject({ code: 'REQUEST_TOO_LARGE', details: { maxBytes: 16384 } });
  });

  it('answers a HEAD request with oversized headers without a body', async () => {
    // Found by the hostile-input suite: the JSON body after a HEAD answer broke the client's parser.
    const res = await new Promise<{ status?: number; error?: string }>((resolve) => {
      const { port } = t.app.server.address() as AddressInfo;
      const req = httpRequest(
        { host: '127.0.0.1', port, method: 'HEAD', path: `/v1/audit?operationId=${'a'.repeat(20_000)}` },
        (r) => {
          r.resume();
          r.on('end', () => resolve({ status: r.statusCode }));
        },
      );
      req.on('error', (e) => resolve({ error: e.message }));
      req.end();
    });
    expect(res).toEqual({ status: 431 });
  });

  // Found by the hostile-input suite: Node answered these itself, with an empty body.
  it('answers an Expect header it cannot meet, and an HTTP/1.1 request without Host, in the project shape', async () => {
    const { port } = t.app.server.address() as AddressInfo;
    const exchange = (text: string) =>
      new Promise<{ status: number; body: Record<string, unknown> }>((resolve, reject) => {
        const socket = connect(port, '127.0.0.1');
        let data = '';
        socket.on('data', (d) => (data += d.toString()));
        socket.on('close', () => {
          const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1]);
          resolve({ status, body: JSON.parse(data.slice(data.indexOf('\r\n\r\n') + 4)) as Record<string, unknown> });
        });
        socket.on('error', reject);
        socket.write(text);
      });
    const viewer = t.auth('viewer');
    const expect417 = await exchange(
      `GET /v1/audit HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nauthorization: ${viewer}\r\nConnection: close\r\n\r\n`,
    );
    expect(expect417.status).toBe(417);
    expect(expect417.body).toMatchObject({ code: 'EXPECTATION_FAILED', details: { allowed: ['100-continue'] } });
    const noHost = await exchange(`GET /v1/audit HTTP/1.1\r\nauthorization: ${viewer}\r\nConnection: close\r\n\r\n`);
    expect(noHost.status).toBe(400);
    expect(noHost.body).toMatchObject({ code: 'MISSING_HOST', details: { header: 'host' } });
    expect(Object.keys(noHost.body).sort()).toEqual(['code', 'details', 'message', 'requestId']);
    // HTTP/1.0 has no Host header to require.
    const old = await exchange(`GET /healthz HTTP/1.0\r\n\r\n`);
    expect(old).toMatchObject({ status: 200, body: { status: 'ok' } });
    // Two credentials, or two content types: Node keeps the first of each and drops the other in
    // silence, so which token acted (or how the body is read) depended on the header order.
    const twoTokens = await exchange(
      `GET /v1/audit HTTP/1.1\r\nHost: x\r\nauthorization: ${viewer}\r\nAuthorization: ${t.auth('admin')}\r\nConnection: close\r\n\r\n`,
    );
    expect(twoTokens.status).toBe(400);
    expect(twoTokens.body).toMatchObject({ code: 'DUPLICATE_HEADER', details: { header: 'authorization', count: 2 } });
    expect(JSON.stringify(twoTokens.body)).not.toContain(viewer.slice(7));
    const twoTypes = await exchange(
      `POST /v1/operations HTTP/1.1\r\nHost: x\r\nauthorization: ${t.auth('requester')}\r\nContent-Type: application/json\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`,
    );
    expect(twoTypes.status).toBe(400);
    expect(twoTypes.body).toMatchObject({ code: 'DUPLICATE_HEADER', details: { header: 'content-type', count: 2 } });
    const twoKeys = await exchange(
      `POST /v1/operations HTTP/1.1\r\nHost: x\r\nauthorization: ${t.auth('requester')}\r\nIdempotency-Key: run-1\r\nIdempotency-Key: run-2\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`,
    );
    expect(twoKeys.status).toBe(400);
    expect(twoKeys.body).toMatchObject({ code: 'DUPLICATE_HEADER', details: { header: 'idempotency-key', count: 2 } });
  });

  it('refuses a streamed upload declared larger than its limit at once, stating the limit', async () => {
    const { port } = t.app.server.address() as AddressInfo;
    for (const [path, type, limit] of [
      ['/v1/operations', 'application/x-ndjson', 256 * 1024 * 1024],
      ['/v1/operations/text?targetType=free&reason=cleanup&ticket=T-1', 'text/plain', 256 * 1024 * 1024],
      ['/v1/registry/resources', 'application/x-ndjson', 300 * 1024 * 1024],
    ] as const) {
      const role = path.startsWith('/v1/registry') ? 'admin' : 'requester';
      // Only the headers and two bytes are sent: the answer must not wait for the rest.
      const raw = await new Promise<string>((resolve, reject) => {
        const socket = connect(port, '127.0.0.1');
        let data = '';
        socket.on('data', (d) => {
          data += d.toString();
          if (data.includes('\r\n\r\n') && data.endsWith('}')) socket.destroy();
        });
        socket.on('close', () => resolve(data));
        socket.on('error', reject);
        socket.write(
          `POST ${path} HTTP/1.1\r\nHost: x\r\nauthorization: ${t.auth(role)}\r\ncontent-type: ${type}\r\ncontent-length: ${limit + 1}\r\n\r\n{}`,
        );
      });
      expect(raw).toMatch(/^HTTP\/1\.1 413 /);
      const body = JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)) as { code: string; details: unknown };
      expect(body).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', details: { maxBytes: limit } });
    }
  });
});

describe('refused commands are audited whatever their path holds', () => {
  it('a NUL in the operation ID of a refused pause: 400, and the refusal is recorded with the ID escaped', async () => {
    const r = await request(t.app.server)
      .post('/v1/operations/op_%00abc/pause')
      .set('authorization', t.auth('operator'))
      .send({ reason: 'Stop it now' });
    expect(r.status).toBe(400);
    // Recorded after the response (onResponse): wait for the row, bounded.
    let rows: { operation_id: string | null; payload: Record<string, unknown> }[] = [];
    for (let i = 0; i < 50 && !rows.length; i++) {
      rows = (
        await t.app.db.pool.query(
          `SELECT operation_id, payload FROM audit_events WHERE outcome = 'refused' AND payload->>'requestId' = $1`,
          [r.body.requestId],
        )
      ).rows;
      if (!rows.length) await new Promise((res) => setTimeout(res, 20));
    }
    expect(rows).toEqual([
      {
        operation_id: null,
        payload: expect.objectContaining({ operationIdGiven: 'op_\\u0000abc', status: 400, code: 'VALIDATION_FAILED' }),
      },
    ]);
  });
});
