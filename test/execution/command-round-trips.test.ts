// A command under load waits its turn on the API's event loop for every round trip to PostgreSQL
// (a pause under 500 GET/s: ~15 ms each), so the engine's transaction makes as few as it can: the
// audit chain's lock rides on the state update, and the audit INSERT reads the last hash and makes
// the new one itself. Before, the same decision took a lock statement and a SELECT of the last hash
// of its own (7 statements). The chain must verify exactly as before, non-ASCII text included.
import pg from 'pg';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendAudit, AUDIT_CHAIN_LOCK, eventHash } from '../../src/modules/audit/repository.ts';
import { createEngine } from '../../src/modules/execution/engine.ts';
import { pgEngineStore } from '../../src/modules/execution/engine-store.ts';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { appId, query, seedRegistry } from '../support/seed.ts';

let t: TestApp;
let pool: pg.Pool;
beforeAll(async () => {
  t = await buildTestApp();
  await seedRegistry(t.databaseUrl, { sites: 4, appsPerSite: 2 });
  pool = new pg.Pool({ connectionString: t.databaseUrl, max: 2 });
});
afterAll(async () => {
  await pool?.end();
  await t?.close();
});

/** A pool whose clients record every statement they send (the real database answers them). */
function recordingPool(statements: string[]): pg.Pool {
  return {
    connect: async () => {
      const client = await pool.connect();
      const send = client.query.bind(client) as (...a: unknown[]) => unknown;
      return Object.assign(Object.create(client) as pg.PoolClient, {
        query: (...a: unknown[]) => {
          const text = typeof a[0] === 'string' ? a[0] : (a[0] as { text: string }).text;
          statements.push(text.replace(/\s+/g, ' ').trim());
          return send(...a);
        },
        release: (err?: Error | boolean) => client.release(err),
      });
    },
  } as unknown as pg.Pool;
}

const verify = async () =>
  (await request(t.app.server).get('/v1/audit/verify').set('authorization', t.auth('viewer')).expect(200)).body;

interface AuditRowDb {
  at: Date;
  actor: string;
  action: string;
  outcome: string;
  operation_id: string | null;
  payload: Record<string, unknown>;
  prev_hash: string;
  hash: string;
}

describe("a command's transaction", () => {
  it('is BEGIN, the state under lock, one update, one audit INSERT and COMMIT', async () => {
    const planned = await request(t.app.server)
      .post('/v1/operations')
      .set('authorization', t.auth('requester'))
      .send({ targetType: 'app', ids: [appId(1, 0)], reason: 'Remove the legacy app', ticket: 'CHG-9' });
    expect(planned.status, JSON.stringify(planned.body)).toBe(201);
    const statements: string[] = [];
    const engine = createEngine({
      store: pgEngineStore(recordingPool(statements)),
      effects: { publishHalt: async () => {}, enqueueWave: async () => 0, enqueueControl: async () => {} },
      clock: Date.now,
    });
    const reason = 'not needed — “naïve” ✓ 𝄞';
    const applied = await engine.apply(
      planned.body.id,
      { type: 'abort', by: { id: 'tok_x', name: 'Zoë Ångström' }, reason },
      { name: 'Zoë Ångström', tokenId: 'tok_x' },
    );
    expect(applied?.state.state).toBe('cancelled');
    const kinds = statements.map((s) => s.split(' ').slice(0, 2).join(' '));
    expect(kinds).toEqual(['BEGIN', 'SELECT 1', 'UPDATE operations', 'INSERT INTO', 'COMMIT']);
    // The lock, then the read in a statement of its own (its snapshot after the lock), in one trip.
    expect(statements[1]).toMatch(/FOR UPDATE OF o; SELECT o.id,/);
    expect(statements[2]).toContain('pg_advisory_xact_lock');
    expect(statements[3]).toContain('INSERT INTO audit_events');
    expect(await verify()).toMatchObject({ valid: true, brokenAt: null });
    const [row] = await query<AuditRowDb>(
      t.databaseUrl,
      `SELECT actor, payload FROM audit_events WHERE operation_id = $1 ORDER BY seq DESC LIMIT 1`,
      [planned.body.id],
    );
    expect(row).toMatchObject({ actor: 'Zoë Ångström', payload: { reason } });
  });

  it("hashes in PostgreSQL as the chain verifies, text of every plane, after another writer's event", async () => {
    const texts = ['ascii', 'Ωμέγα', 'ключ値', '👩‍🔧 𝄞', 'line\nbreak\ttab "quoted" \\ back', '\u2028\u2029\uFEFF'];
    for (const text of texts) {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        await client.query('SELECT pg_advisory_xact_lock($1)', [AUDIT_CHAIN_LOCK]);
        await appendAudit(
          client,
          { actor: text, action: 'test.text', outcome: 'info', payload: { [text]: text, list: [text, 1.5, null] } },
          { chainLocked: true },
        );
        await client.query('COMMIT');
      } finally {
        client.release();
      }
      // Another writer's event in between (a refused command): the next one chains onto it.
      await request(t.app.server)
        .post('/v1/operations/op_missing/pause')
        .set('authorization', t.auth('operator'))
        .send({ reason: 'checking' })
        .expect(404);
    }
    const rows = await query<AuditRowDb>(
      t.databaseUrl,
      `SELECT at, actor, action, outcome, operation_id, payload, prev_hash, hash
       FROM audit_events WHERE action = 'test.text' ORDER BY seq`,
    );
    expect(rows.map((r) => r.actor)).toEqual(texts);
    for (const r of rows) {
      const e = {
        at: r.at.toISOString(),
        actor: r.actor,
        action: r.action,
        outcome: r.outcome,
        operationId: r.operation_id,
        payload: r.payload,
      };
      expect(r.hash).toBe(eventHash(r.prev_hash, e));
    }
    // The refusals are appended after their answers went out (an onResponse hook).
    await expect.poll(verify, { timeout: 10_000 }).toMatchObject({ valid: true, brokenAt: null });
    const forks = await query<{ n: number }>(
      t.databaseUrl,
      'SELECT count(*)::int AS n FROM (SELECT prev_hash FROM audit_events GROUP BY prev_hash HAVING count(*) > 1) f',
    );
    expect(forks[0]!.n).toBe(0);
    const refusals = await query<{ n: number }>(
      t.databaseUrl,
      `SELECT count(*)::int AS n FROM audit_events WHERE outcome = 'refused' AND seq > (SELECT min(seq) FROM audit_events WHERE action = 'test.text')`,
    );
    expect(refusals[0]!.n).toBeGreaterThanOrEqual(texts.length - 1);
  });
});
