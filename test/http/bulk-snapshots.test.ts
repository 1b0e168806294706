// The optional bulk snapshot read of the HTTP adapter (snapshotBatch), against a real downstream:
// used instead of per-item reads when declared, an ID absent from the answer or a failed request
// fails its items exactly as a failed single snapshot would, an adapter without it is unchanged,
// and a bad declaration is refused naming the field.
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  adapterConfigProblems,
  createAdapter,
  type AdapterItem,
  type TargetAdapter,
} from '../../src/modules/adapters/index.ts';
import { allowlistOf } from '../../src/modules/adapters/host-allowlist.ts';
import { SigningSecrets } from '../../src/modules/adapters/signing-secrets.ts';
import { createTestDatabase } from '../support/db.ts';
import { startDownstream, type Downstream } from '../support/downstream.ts';

const SECRET = 'bulk-snapshot-test-secret-0123456789';
const policy = { allow: allowlistOf(['127.0.0.1']), secrets: new SigningSecrets(new Map(), SECRET) };
const items = (n: number): AdapterItem[] =>
  Array.from({ length: n }, (_, i) => ({
    operationId: 'op_1',
    resourceId: `app_${i}`,
    tenantId: `t${i}`,
    type: 'app',
  }));

let downstream: Downstream;
let pool: pg.Pool;
const adapters: TargetAdapter[] = [];
const config = (over: Record<string, unknown> = {}) => ({
  kind: 'http',
  baseUrl: downstream.url,
  snapshot: 'GET /apps/{id}?tenantId={tenantId}',
  snapshotBatch: 'POST /apps/snapshots',
  softDelete: 'POST /apps/{id}/soft-delete',
  restore: 'POST /apps/{id}/restore',
  hardDelete: 'DELETE /apps/{id}',
  timeoutMs: 1_000,
  retries: 1,
  retryBaseMs: 1,
  ...over,
});
const adapter = (over: Record<string, unknown> = {}) => {
  const a = createAdapter(config(over), { pool, downstream: policy });
  adapters.push(a);
  return a;
};

beforeAll(async () => {
  downstream = await startDownstream({ secret: SECRET });
  pool = new pg.Pool({ connectionString: await createTestDatabase(), max: 2 });
});
afterAll(async () => {
  for (const a of adapters) await a.close?.();
  await downstream?.close();
  await pool?.end();
});
beforeEach(() => downstream.reset());

describe('snapshotBatch declared', () => {
  it('reads every item in signed bulk requests of at most snapshotBatchSize, never per item', async () => {
    const got = await adapter({ snapshotBatchSize: 2 }).snapshot(items(5), { concurrency: 4 });
    expect(got).toEqual(
      items(5).map((i) => ({
        ok: true,
        data: { id: i.resourceId, tenantId: i.tenantId, state: 'active', data: expect.any(Object) },
      })),
    );
    expect(downstream.calls.map((c) => c.action)).toEqual(['snapshotBatch', 'snapshotBatch', 'snapshotBatch']);
    expect(downstream.calls.every((c) => c.signatureValid && c.method === 'POST' && c.path === '/apps/snapshots')).toBe(
      true,
    );
    expect(downstream.calls.flatMap((c) => c.resourceIds).sort()).toEqual(items(5).map((i) => i.resourceId));
  });

  it('fails an ID absent from the answer for good, like a single snapshot answered 404; the others are read', async () => {
    downstream.snapshotBatchOmits(['app_1']);
    const got = await adapter().snapshot(items(3), { concurrency: 4 });
    expect(got[1]).toEqual({ ok: false, permanent: true, error: 'absent from the snapshotBatch answer' });
    expect(got[0]).toMatchObject({ ok: true, data: { id: 'app_0' } });
    expect(got[2]).toMatchObject({ ok: true, data: { id: 'app_2' } });
  });

  it('fails every item of a request that keeps failing, retryable, after the same retries a single read gets', async () => {
    downstream.snapshotBatchFails(503);
    const bulk = await adapter().snapshot(items(2), { concurrency: 4 });
    expect(bulk).toEqual([
      {
        ok: false,
        permanent: false,
        status: 503,
        attempts: 2,
        error: 'HTTP 503 Service Unavailable (after 2 attempts)',
      },
      {
        ok: false,
        permanent: false,
        status: 503,
        attempts: 2,
        error: 'HTTP 503 Service Unavailable (after 2 attempts)',
      },
    ]);
    expect(downstream.calls.map((c) => c.action)).toEqual(['snapshotBatch', 'snapshotBatch']);
  });

  it('never reads an inherited property for an ID such as "constructor"', async () => {
    downstream.snapshotBatchOmits(['constructor']);
    const [got] = await adapter().snapshot([{ ...items(1)[0]!, resourceId: 'constructor' }], { concurrency: 1 });
    expect(got).toEqual({ ok: false, permanent: true, error: 'absent from the snapshotBatch answer' });
  });
});

describe('snapshotBatch not declared', () => {
  it('reads each item with its own GET, as before', async () => {
    const got = await adapter({ snapshotBatch: undefined }).snapshot(items(3), { concurrency: 4 });
    expect(got.every((r) => r.ok)).toBe(true);
    expect(downstream.calls.map((c) => [c.action, c.path]).sort()).toEqual([
      ['snapshot', '/apps/app_0?tenantId=t0'],
      ['snapshot', '/apps/app_1?tenantId=t1'],
      ['snapshot', '/apps/app_2?tenantId=t2'],
    ]);
  });
});

describe('a bad snapshotBatch declaration', () => {
  const problems = (over: Record<string, unknown>) =>
    adapterConfigProblems(config(over)).map((p) => ({ path: p.path, problem: p.problem }));
  it('is refused naming the field: not POST, a placeholder, a size out of range', () => {
    expect(problems({ snapshotBatch: 'GET /apps/snapshots' })).toEqual([
      { path: ['snapshotBatch'], problem: 'invalid_method' },
    ]);
    expect(problems({ snapshotBatch: 'POST /apps/{id}/snapshot' })).toEqual([
      { path: ['snapshotBatch'], problem: 'unknown_placeholder' },
    ]);
    expect(problems({ snapshotBatchSize: 0 })).toEqual([{ path: ['snapshotBatchSize'], problem: 'out_of_range' }]);
    expect(problems({})).toEqual([]);
  });
});
