// An open event stream while PostgreSQL is away: it said nothing, and `watch` showed its last line
// for the whole outage while GETs answered 503 (a trial). It now says so once (`unavailable`),
// stays open, and says when it reads again (`available`) before the frames of what changed.
import { PassThrough } from 'node:stream';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readLive } from '../../src/modules/events/feed.ts';
import { POLL_MS, streamOperation } from '../../src/modules/events/stream.ts';
import type { Queryable } from '../../src/lib/sql.ts';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { seedRegistry } from '../support/seed.ts';

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp();
  await seedRegistry(t.databaseUrl, { sites: 2, appsPerSite: 2 });
});
afterAll(async () => {
  await t?.close();
});

const until = async (what: () => boolean, ms = 10_000) => {
  for (const end = Date.now() + ms; Date.now() < end;) {
    if (what()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('timed out');
};

describe('an event stream while the database is away', () => {
  it('says unavailable once, stays open, then available when it reads again', async () => {
    const op = await request(t.app.server)
      .post('/v1/operations')
      .set('authorization', t.auth('requester'))
      .send({ targetType: 'app', reason: 'Remove the legacy app', ticket: 'CHG-1', ids: ['app_00000_00'] })
      .expect(201);
    let down = false;
    // The real database, failing as a stopped PostgreSQL does while `down`.
    const pool = t.app.db.pool;
    const db = {
      query: (text: string, values?: unknown[]) =>
        down
          ? Promise.reject(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }))
          : pool.query(text, values),
    } as unknown as Queryable;
    const out = new PassThrough();
    let text = '';
    out.on('data', (c: Buffer) => (text += c.toString()));
    const ctl = new AbortController();
    const first = (await readLive(db, op.body.id))!;
    const warned: string[] = [];
    const done = streamOperation({
      db,
      first,
      cursor: 0,
      out,
      signal: ctl.signal,
      heartbeatMs: 60_000,
      renew: async () => undefined,
      log: { warn: (_o, m) => warned.push(m) },
    });
    try {
      await until(() => text.includes('event: progress'));
      down = true;
      await until(() => text.includes('event: unavailable'));
      // Once per outage, however many polls fail.
      await new Promise((r) => setTimeout(r, POLL_MS * 3));
      expect(text.match(/event: unavailable/g)).toHaveLength(1);
      expect(text).toMatch(/"detail":"The operation cannot be read \(the database does not answer\)/);
      expect(warned).toEqual(['event stream cannot read the operation; retrying']);
      down = false;
      await until(() => text.includes('event: available'));
      expect(text.indexOf('event: available')).toBeGreaterThan(text.indexOf('event: unavailable'));
    } finally {
      ctl.abort();
      await done;
    }
  });
});
