// Target adapters against real systems: the HTTP adapter against a real downstream HTTP service
// (test/support/downstream.ts), the registry adapter against a real Postgres database.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  createAdapter,
  idempotencyKeyFor,
  isSkipped,
  type AdapterItem,
  type ApplyOptions,
  type TargetAdapter,
} from '../../src/modules/adapters/index.ts';
import { createAgent, sendRequest } from '../../src/modules/adapters/http-transport.ts';
import { allowlistOf } from '../../src/modules/adapters/host-allowlist.ts';
import { SigningSecrets } from '../../src/modules/adapters/signing-secrets.ts';
import { sign } from '../../src/modules/adapters/signing.ts';
import { IDEMPOTENCY_KEY_PATTERN } from '../support/keys.ts';
import { createTestDatabase } from '../support/db.ts';
import { startDownstream, type Downstream } from '../support/downstream.ts';

const SECRET = 'adapter-test-secret-0123456789abcdef';
/** This machine, and SECRET as the default secret. */
const policy = { allow: allowlistOf(['127.0.0.1']), secrets: new SigningSecrets(new Map(), SECRET) };
const noSecret = { allow: allowlistOf(['127.0.0.1']), secrets: new SigningSecrets() };
const items = (n: number, over: Partial<AdapterItem> = {}, prefix = 'app_'): AdapterItem[] =>
  Array.from({ length: n }, (_, i) => ({
    operationId: 'op_1',
    resourceId: `${prefix}${i}`,
    tenantId: `t${i % 3}`,
    type: 'app',
    ...over,
  }));
const opts = (over: Partial<ApplyOptions> = {}): ApplyOptions => ({
  idempotencyKey: idempotencyKeyFor,
  shouldContinue: () => true,
  concurrency: 8,
  ...over,
});

let downstream: Downstream;
let pool: pg.Pool;
const adapters: TargetAdapter[] = [];
const httpConfig = (over: Record<string, unknown> = {}) => ({
  kind: 'http',
  baseUrl: downstream.url,
  snapshot: 'GET /apps/{id}?tenantId={tenantId}',
  softDelete: 'POST /apps/{id}/soft-delete',
  restore: 'POST /apps/{id}/restore',
  hardDelete: 'DELETE /apps/{id}',
  probe: 'GET /tenants/{tenantId}/health',
  timeoutMs: 1_000,
  retries: 3,
  retryBaseMs: 5,
  ...over,
});
const httpAdapter = (over: Record<string, unknown> = {}) => {
  const a = createAdapter(httpConfig(over), { pool, downstream: policy });
  adapters.push(a);
  return a;
};

beforeAll(async () => {
  downstream = await startDownstream({ secret: SECRET });
  pool = new pg.Pool({ connectionString: await createTestDatabase(), max: 4 });
});
afterAll(async () => {
  for (const a of adapters) await a.close?.();
  await downstream.close();
  await pool.end();
});
beforeEach(() => downstream.reset());

describe('createAdapter', () => {
  it('rejects invalid configs with a clear error', () => {
    const deps = { pool, downstream: policy };
    expect(() => createAdapter({ kind: 'ftp' }, deps)).toThrow(/kind "http" or "registry"/);
    expect(() => createAdapter(null, deps)).toThrow(/kind/);
    expect(() => createAdapter(httpConfig({ softDelete: 'POST /apps/{resourceId}/soft-delete' }), deps)).toThrow(
      /\/softDelete/,
    );
    expect(() => createAdapter(httpConfig({ probe: 'GET /apps/{id}/health' }), deps)).toThrow(/\/probe/);
    expect(() => createAdapter(httpConfig({ baseUrl: 'ftp://x' }), deps)).toThrow(/\/baseUrl/);
    expect(() => createAdapter(httpConfig({ retries: -1 }), deps)).toThrow(/\/retries/);
    expect(() => createAdapter({ ...httpConfig(), extra: 1 }, deps)).toThrow(
      expect.objectContaining({ code: 'ADAPTER_CONFIG_INVALID' }),
    );
    expect(() => createAdapter(httpConfig(), { pool, downstream: noSecret })).toThrow(
      expect.objectContaining({ code: 'SIGNING_SECRET_MISSING' }),
    );
    expect(createAdapter({ kind: 'registry' }, { pool, downstream: noSecret }).kind).toBe('registry');
  });
});

describe('http adapter', () => {
  it('snapshots in item order with signed requests', async () => {
    const batch = items(20);
    const results = await httpAdapter().snapshot(batch, { concurrency: 4 });
    expect(results.map((r) => r.ok && (r.data as { id: string }).id)).toEqual(batch.map((i) => i.resourceId));
    expect(downstream.calls).toHaveLength(20);
    expect(
      downstream.calls.every((c) => c.signatureValid && c.action === 'snapshot' && c.idempotencyKey === undefined),
    ).toBe(true);
  });

  it('soft deletes with one signed call per item and a unique Idempotency-Key per (operation, item, action)', async () => {
    const batch = items(30);
    const results = await httpAdapter().apply('softDelete', batch, opts());
    expect(results.every((r) => r.ok)).toBe(true);
    const calls = downstream.destructiveCalls();
    expect(calls).toHaveLength(30);
    expect(calls.every((c) => c.signatureValid && c.status === 200)).toBe(true);
    for (const item of batch) {
      const call = calls.find((c) => c.resourceId === item.resourceId)!;
      expect(call.idempotencyKey).toBe(idempotencyKeyFor(item, 'softDelete'));
      expect(call.idempotencyKey).toMatch(IDEMPOTENCY_KEY_PATTERN);
      expect(call.tenantId).toBe(item.tenantId);
      expect(downstream.state(item.resourceId)).toBe('soft_deleted');
    }
    expect(new Set(calls.map((c) => c.idempotencyKey)).size).toBe(30);
  });

  it('a receiver rejects a request whose body was changed after signing', async () => {
    const agent = createAgent(downstream.url);
    const path = '/apps/app_1/soft-delete';
    const timestamp = Date.now();
    const headers = {
      'x-blastgate-timestamp': String(timestamp),
      'x-blastgate-signature': sign(SECRET, {
        timestamp,
        method: 'POST',
        host: downstream.host,
        path,
        body: '{"id":"app_1"}',
      }),
      'idempotency-key': 'k1',
    };
    const tampered = await sendRequest(agent, new URL(downstream.url), {
      method: 'POST',
      path,
      headers,
      body: '{"id":"app_2"}',
      timeoutMs: 1_000,
    });
    const genuine = await sendRequest(agent, new URL(downstream.url), {
      method: 'POST',
      path,
      headers,
      body: '{"id":"app_1"}',
      timeoutMs: 1_000,
    });
    agent.destroy();
    expect([tampered.status, genuine.status]).toEqual([401, 200]);
    expect(downstream.calls.map((c) => c.signatureValid)).toEqual([false, true]);
  });

  it('retries a 500 with the same key and the downstream applies once', async () => {
    downstream.failNext(2, 500);
    const [item] = items(1);
    const [result] = await httpAdapter().apply('softDelete', [item!], opts());
    expect(result).toEqual({ ok: true });
    const key = idempotencyKeyFor(item!, 'softDelete');
    expect(downstream.calls.map((c) => [c.idempotencyKey, c.status])).toEqual([
      [key, 500],
      [key, 500],
      [key, 200],
    ]);
    expect(downstream.appliedByKey.get(key)).toBe(1);
  });

  it('a retry after a lost response is replayed, not applied again', async () => {
    downstream.failNext(1, 502, { afterApply: true });
    const [item] = items(1);
    const [result] = await httpAdapter().apply('hardDelete', [item!], opts());
    const key = idempotencyKeyFor(item!, 'hardDelete');
    expect(result).toEqual({ ok: true });
    expect([downstream.callsByKey.get(key), downstream.appliedByKey.get(key)]).toEqual([2, 1]);
    expect(downstream.state(item!.resourceId)).toBe('purged');
  });

  it('a 4xx is a permanent failure and is not retried; 429 is retried', async () => {
    downstream.failAll(422);
    const [failed] = await httpAdapter().apply('softDelete', items(1), opts());
    expect(failed).toMatchObject({ ok: false, permanent: true, status: 422 });
    expect(downstream.calls).toHaveLength(1);

    downstream.reset();
    downstream.failNext(1, 429);
    const [ok] = await httpAdapter().apply('softDelete', items(1), opts());
    expect(ok).toEqual({ ok: true });
    expect(downstream.calls).toHaveLength(2);
  });

  it('says a failure changed nothing (unapplied) only when no attempt may have been applied', async () => {
    const a = httpAdapter({ retries: 2 });
    const [item] = items(1);
    const softDelete = async () => (await a.apply('softDelete', [item!], opts()))[0]!;
    // Refused at the first attempt, for good: nothing was applied.
    for (const status of [400, 403, 422]) {
      downstream.reset();
      downstream.failAll(status);
      expect(await softDelete(), String(status)).toMatchObject({ ok: false, permanent: true, status, unapplied: true });
    }
    // "Not there" is also how a system answers a delete an earlier attempt applied: not certain.
    for (const status of [404, 410]) {
      downstream.reset();
      downstream.failAll(status);
      const r = await softDelete();
      expect(r, String(status)).toMatchObject({ ok: false, permanent: true, status });
      expect(r).not.toHaveProperty('unapplied');
    }
    // A refusal after an attempt whose outcome is unknown (a 5xx that may have been applied).
    downstream.reset();
    downstream.failNext(1, 502, { afterApply: true });
    downstream.answer(() => (downstream.destructiveCalls().length > 1 ? 422 : null));
    const after = await softDelete();
    expect(after).toMatchObject({ ok: false, permanent: true, status: 422 });
    expect((after as { error: string }).error).toMatch(/^HTTP 422 .*; earlier attempt: HTTP 502/);
    expect(after).not.toHaveProperty('unapplied');
    expect(downstream.state(item!.resourceId)).toBe('soft_deleted'); // it was applied
    // Retries used up on 5xx: unknown, and not permanent.
    downstream.reset();
    downstream.failAll(503);
    expect(await softDelete()).not.toHaveProperty('unapplied');
    // Never sent: an ID that would address another path.
    downstream.reset();
    const [bad] = await a.apply('softDelete', [{ ...item!, resourceId: '..' }], opts());
    expect(bad).toMatchObject({ ok: false, permanent: true, unapplied: true });
    expect(downstream.calls).toEqual([]);
  });

  it('409 (same Idempotency-Key still in progress) is retried with the same key and applied once', async () => {
    downstream.failNext(1, 409);
    const [ok] = await httpAdapter().apply('softDelete', items(1), opts());
    expect(ok).toEqual({ ok: true });
    const calls = downstream.destructiveCalls();
    expect(calls).toHaveLength(2);
    expect(new Set(calls.map((c) => c.idempotencyKey)).size).toBe(1);
    expect([...downstream.appliedByKey.values()]).toEqual([1]);
  });

  it('a timeout is retried with the same key, then reported as a retryable failure', async () => {
    downstream.hang(30_000);
    const [item] = items(1);
    const [result] = await httpAdapter({ timeoutMs: 100, retries: 2, retryBaseMs: 50 }).apply(
      'softDelete',
      [item!],
      opts(),
    );
    expect(result).toMatchObject({ ok: false, permanent: false });
    expect((result as { error: string }).error).toMatch(/timeout after 100 ms \(after 3 attempts\)/);
    const key = idempotencyKeyFor(item!, 'softDelete');
    expect(downstream.calls.map((c) => c.idempotencyKey)).toEqual([key, key, key]);
    expect(downstream.appliedByKey.get(key)).toBeUndefined();
    expect(downstream.state(item!.resourceId)).toBe('active');
  });

  it('a failing tenant fails only its items, after the retries', async () => {
    downstream.failTenants(['t1'], 503);
    const batch = items(9);
    const results = await httpAdapter({ retries: 1 }).apply('softDelete', batch, opts());
    batch.forEach((item, i) => expect(results[i]!.ok).toBe(item.tenantId !== 't1'));
    expect(downstream.destructiveCalls().filter((c) => c.tenantId === 't1')).toHaveLength(3 * 2);
  });

  it('failAfter(n): the first n destructive calls succeed, later ones fail', async () => {
    downstream.failAfter(5, 500);
    const results = await httpAdapter({ retries: 0 }).apply('softDelete', items(10), opts({ concurrency: 1 }));
    expect(results.map((r) => r.ok)).toEqual([...Array<boolean>(5).fill(true), ...Array<boolean>(5).fill(false)]);
  });

  it('stops sending once shouldContinue() turns false: overshoot bounded by concurrency, skips never sent', async () => {
    const concurrency = 8;
    let callsAtFlip: number | undefined;
    const shouldContinue = () => {
      if (callsAtFlip !== undefined) return true; // flapping back must not resume the batch
      if (downstream.destructiveCalls().length < 40) return true;
      callsAtFlip = downstream.destructiveCalls().length;
      return false;
    };
    downstream.hang(2); // keeps several calls in flight at the moment of the flip
    const batch = items(300);
    const results = await httpAdapter().apply('softDelete', batch, opts({ concurrency, shouldContinue }));
    const calls = downstream.destructiveCalls();
    expect(callsAtFlip).toBeDefined();
    expect(calls.length - callsAtFlip!).toBeLessThanOrEqual(concurrency);
    const sent = new Set(calls.map((c) => c.resourceId));
    batch.forEach((item, i) => {
      const r = results[i]!;
      if (isSkipped(r)) expect(sent.has(item.resourceId)).toBe(false);
      else expect(r.ok && sent.has(item.resourceId) && downstream.state(item.resourceId) === 'soft_deleted').toBe(true);
    });
    expect(results.filter(isSkipped)).toHaveLength(300 - calls.length);
    expect(downstream.peakInProgress).toBeGreaterThan(1);
    expect(downstream.peakInProgress).toBeLessThanOrEqual(concurrency);
  });

  it('an item stopped between retries reports an interrupted failure, not a skip (it may have been applied)', async () => {
    downstream.failAll(500);
    let checks = 0;
    const [result] = await httpAdapter().apply('softDelete', items(1), opts({ shouldContinue: () => ++checks === 1 }));
    expect(result).toMatchObject({ ok: false, permanent: false, status: 500, interrupted: true });
    expect((result as { error: string }).error).toMatch(
      /^stopped before retry \(a halt, a shutdown or the batch's time budget\); last attempt: HTTP 500/,
    );
    expect(downstream.calls).toHaveLength(1);
  });

  // A trial read "HTTP 500 … (after 3 attempts)" against 2 calls in the downstream's log: the count
  // must be the requests actually sent (the message and `attempts` alike).
  it('says how many requests it sent: all of its retries, or those sent before it was stopped', async () => {
    downstream.failAll(500);
    const [spent] = await httpAdapter({ retries: 2 }).apply('softDelete', items(1), opts());
    expect(spent).toMatchObject({ attempts: 3, error: 'HTTP 500 Internal Server Error (after 3 attempts)' });
    expect(downstream.calls).toHaveLength(3);
    downstream.reset();
    downstream.failAll(500);
    let checks = 0;
    const [stopped] = await httpAdapter({ retries: 2 }).apply(
      'softDelete',
      items(1),
      opts({ shouldContinue: () => ++checks <= 2 }),
    );
    expect(downstream.calls).toHaveLength(2);
    expect(stopped).toMatchObject({
      interrupted: true,
      attempts: 2,
      error:
        "stopped before retry (a halt, a shutdown or the batch's time budget); last attempt: HTTP 500 Internal Server Error (after 2 attempts)",
    });
  });

  it('restore sends the stored snapshot back', async () => {
    const batch = items(3);
    const adapter = httpAdapter();
    const snaps = await adapter.snapshot(batch, { concurrency: 2 });
    const snapshots = new Map(batch.map((item, i) => [item.resourceId, (snaps[i] as { data: unknown }).data]));
    for (const item of batch) downstream.resources.get(item.resourceId)!.data = { name: 'changed' };
    await adapter.apply('softDelete', batch, opts());
    const results = await adapter.apply('restore', batch, opts({ snapshots }));
    expect(results.every((r) => r.ok)).toBe(true);
    for (const item of batch)
      expect(downstream.resources.get(item.resourceId)).toMatchObject({
        state: 'active',
        data: { name: `resource ${item.resourceId}` },
      });
  });

  it('probes: healthy, unhealthy, 500, hang (timeout), refused, not configured', async () => {
    const adapter = httpAdapter();
    downstream.probe('t_sick', 'unhealthy');
    downstream.probe('t_err', 'error500');
    downstream.probe('t_hang', 'hang');
    expect(await adapter.probe('t_ok', { timeoutMs: 1_000 })).toEqual({ result: 'healthy' });
    expect(await adapter.probe('t_sick', { timeoutMs: 1_000 })).toMatchObject({ result: 'unhealthy' });
    expect(await adapter.probe('t_err', { timeoutMs: 1_000 })).toMatchObject({
      result: 'unhealthy',
      detail: expect.stringMatching(/^HTTP 500/),
    });
    expect(await adapter.probe('t_hang', { timeoutMs: 100 })).toMatchObject({ result: 'timeout' });
    expect(downstream.calls.filter((c) => c.action === 'probe').map((c) => c.tenantId)).toEqual([
      't_ok',
      't_sick',
      't_err',
      't_hang',
    ]);

    const { probe: _, ...noProbe } = httpConfig();
    const unprobed = createAdapter(noProbe, { pool, downstream: policy });
    adapters.push(unprobed);
    expect(await unprobed.probe('t_ok', { timeoutMs: 1_000 })).toEqual({ result: 'not_configured' });

    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise((resolve) => closed.close(resolve));
    expect(
      await httpAdapter({ baseUrl: `http://127.0.0.1:${port}` }).probe('t_ok', { timeoutMs: 1_000 }),
    ).toMatchObject({ result: 'error', detail: 'ECONNREFUSED' });
  });
});

describe('registry adapter', () => {
  let adapter: TargetAdapter;
  const rows = async (ids: string[]) =>
    (
      await pool.query<{ id: string; state: string; deleted_at: Date | null; updated_at: Date }>(
        'SELECT id, state, deleted_at, updated_at FROM resources WHERE id = ANY($1) ORDER BY id',
        [ids],
      )
    ).rows;

  beforeAll(async () => {
    adapter = createAdapter({ kind: 'registry' }, { pool, downstream: noSecret });
    await pool.query(`INSERT INTO resource_types (name, id_pattern) VALUES ('app', '^app_'), ('site', '^site_')`);
    await pool.query(`INSERT INTO tenants (id, name) VALUES ('t0', 'T0'), ('t1', 'T1'), ('t2', 'T2')`);
    await pool.query(
      `INSERT INTO resources (id, type, tenant_id) SELECT 'app_' || g, 'app', 't' || (g % 3) FROM generate_series(0, 99) g`,
    );
    await pool.query(`INSERT INTO resources (id, type, tenant_id) VALUES ('site_1', 'site', 't1')`);
  });

  it('snapshots rows; a missing row or a row of another type or tenant fails permanently', async () => {
    const batch = [
      ...items(2),
      { ...items(1, {}, 'app_missing')[0]! },
      { operationId: 'op_1', resourceId: 'site_1', tenantId: 't1', type: 'app' },
      { ...items(1)[0]!, tenantId: 't2' },
    ];
    const results = await adapter.snapshot(batch, { concurrency: 1 });
    expect(results[0]).toMatchObject({
      ok: true,
      data: { id: 'app_0', type: 'app', tenantId: 't0', state: 'active', deletedAt: null },
    });
    expect(results.slice(2)).toEqual([
      { ok: false, permanent: true, error: 'resource app_missing0 is not in the registry' },
      { ok: false, permanent: true, error: 'registry has site_1 as type site of tenant t1, not type app of tenant t1' },
      { ok: false, permanent: true, error: 'registry has app_0 as type app of tenant t0, not type app of tenant t2' },
    ]);
  });

  it('soft delete is set-based and idempotent; restore returns the snapshot state', async () => {
    const batch = items(50);
    const ids = batch.map((i) => i.resourceId);
    const snaps = await adapter.snapshot(batch, { concurrency: 1 });
    const first = await adapter.apply('softDelete', batch, opts());
    expect(first.every((r) => r.ok)).toBe(true);
    const afterFirst = await rows(ids);
    expect(afterFirst.every((r) => r.state === 'soft_deleted' && r.deleted_at !== null)).toBe(true);

    const second = await adapter.apply('softDelete', batch, opts());
    expect(second.every((r) => r.ok)).toBe(true);
    expect(await rows(ids)).toEqual(afterFirst); // nothing changed, not even timestamps

    const snapshots = new Map(batch.map((item, i) => [item.resourceId, (snaps[i] as { data: unknown }).data]));
    const restored = await adapter.apply('restore', batch, opts({ snapshots }));
    expect(restored.every((r) => r.ok)).toBe(true);
    expect((await rows(ids)).every((r) => r.state === 'active' && r.deleted_at === null)).toBe(true);
    expect((await adapter.apply('restore', batch, opts({ snapshots }))).every((r) => r.ok)).toBe(true);
  });

  it('never acts on a row of another type; a purged row cannot be restored', async () => {
    const wrongType = { operationId: 'op_2', resourceId: 'site_1', tenantId: 't1', type: 'app' };
    const [r] = await adapter.apply('softDelete', [wrongType], opts());
    expect(r).toMatchObject({ ok: false, permanent: true });
    expect((await rows(['site_1']))[0]!.state).toBe('active');

    const [item] = items(1, { resourceId: 'app_99', tenantId: 't0', operationId: 'op_2' });
    expect(await adapter.apply('hardDelete', [item!], opts())).toEqual([{ ok: true }]);
    expect(await adapter.apply('restore', [item!], opts())).toEqual([
      { ok: false, permanent: true, error: 'cannot restore app_99: it is purged', unapplied: true },
    ]);
  });

  it('cascades in the statement of the parent: all of its descendants or none, and back per resource', async () => {
    await pool.query(
      `INSERT INTO resources (id, type, tenant_id, parent_id) VALUES ('site_2', 'site', 't1', NULL), ('site_3', 'site', 't1', NULL),
         ('app_s2a', 'app', 't1', 'site_2'), ('app_s2b', 'app', 't1', 'site_2'), ('app_s3a', 'app', 't1', 'site_3'), ('app_s3b', 'app', 't1', 'site_3')`,
    );
    const kid = (id: string) => ({ operationId: 'op_5', resourceId: id, tenantId: 't1', type: 'app' });
    const site = (id: string, kids: string[]) => ({
      operationId: 'op_5',
      resourceId: id,
      tenantId: 't1',
      type: 'site',
      descendants: kids.map(kid),
    });
    const all = ['site_2', 'app_s2a', 'app_s2b', 'site_3', 'app_s3a', 'app_s3b'];
    const snaps = await adapter.snapshot(
      all.map((id) => (id.startsWith('site') ? site(id, []) : kid(id))),
      {
        concurrency: 1,
      },
    );
    const snapshots = new Map(all.map((id, k) => [id, (snaps[k] as { data: unknown }).data]));
    // site_3's app moved to another tenant since the plan: site_3 and all of its apps stay as they are.
    await pool.query(`UPDATE resources SET tenant_id = 't2' WHERE id = 'app_s3b'`);
    const deleted = await adapter.apply(
      'softDelete',
      [site('site_2', ['app_s2a', 'app_s2b']), site('site_3', ['app_s3a', 'app_s3b'])],
      opts(),
    );
    expect(deleted).toEqual([
      { ok: true },
      {
        ok: false,
        permanent: true,
        error:
          'cascade of site_3 changed since the plan: registry has app_s3b as type app of tenant t2, not type app of tenant t1; nothing was changed',
        unapplied: true,
      },
    ]);
    const after = await rows(all);
    const at = (id: string) => after.find((r) => r.id === id)!;
    for (const id of ['site_2', 'app_s2a', 'app_s2b']) {
      expect(at(id).state).toBe('soft_deleted');
      expect(at(id).deleted_at).toEqual(at('site_2').deleted_at); // one statement
    }
    for (const id of ['site_3', 'app_s3a', 'app_s3b']) expect(at(id).state).toBe('active');

    // Back per resource: a descendant purged meanwhile cannot come back, its parent and sibling do.
    await pool.query(`UPDATE resources SET state = 'purged' WHERE id = 'app_s2b'`);
    const restored = await adapter.apply('restore', [site('site_2', ['app_s2a', 'app_s2b'])], opts({ snapshots }));
    expect(restored).toEqual([
      {
        ok: true,
        descendants: [
          { ok: true },
          { ok: false, permanent: true, error: 'cannot restore app_s2b: it is purged', unapplied: true },
        ],
      },
    ]);
    expect((await rows(['site_2', 'app_s2a', 'app_s2b'])).map((r) => [r.id, r.state])).toEqual([
      ['app_s2a', 'active'],
      ['app_s2b', 'purged'],
      ['site_2', 'active'],
    ]);
  });

  it('a stop before the statement skips the batch; a failed statement fails it as retryable', async () => {
    const batch = items(5, { operationId: 'op_3' }).map((i, k) => ({
      ...i,
      resourceId: `app_${60 + k}`,
      tenantId: `t${(60 + k) % 3}`,
    }));
    const results = await adapter.apply('softDelete', batch, opts({ shouldContinue: () => false }));
    expect(results.every(isSkipped)).toBe(true);
    expect((await rows(batch.map((i) => i.resourceId))).every((r) => r.state === 'active')).toBe(true);

    const dead = new pg.Pool({
      connectionString: (pool as unknown as { options: { connectionString: string } }).options.connectionString,
    });
    await dead.end();
    const failed = await createAdapter({ kind: 'registry' }, { pool: dead, downstream: noSecret }).apply(
      'softDelete',
      batch,
      opts(),
    );
    expect(
      failed.every((r) => !r.ok && !isSkipped(r) && !r.permanent && /^registry statement failed/.test(r.error)),
    ).toBe(true);
  });

  it('probes: a known tenant is healthy, an unknown one an error, an exhausted pool a timeout', async () => {
    expect(await adapter.probe('t1', { timeoutMs: 1_000 })).toEqual({ result: 'healthy' });
    expect(await adapter.probe('t_unknown', { timeoutMs: 1_000 })).toMatchObject({ result: 'error' });
    const tiny = new pg.Pool({
      connectionString: (pool as unknown as { options: { connectionString: string } }).options.connectionString,
      max: 1,
    });
    const held = await tiny.connect();
    try {
      const busy = createAdapter({ kind: 'registry' }, { pool: tiny, downstream: noSecret });
      expect(await busy.probe('t1', { timeoutMs: 100 })).toMatchObject({ result: 'timeout' });
    } finally {
      held.release();
      await tiny.end();
    }
  });
});
