// The downstream policy on the real stack (API, an in-process worker, a real downstream): a worker
// that cannot resolve a type's signing secret, or that refuses its stored host, fails the items
// at once saying why and sends nothing; an item whose ID would render `..` into the request path
// fails for good with the reason, while the rest of the operation goes on.
import request from 'supertest';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { allowlistOf } from '../../src/modules/adapters/host-allowlist.ts';
import { SigningSecrets } from '../../src/modules/adapters/signing-secrets.ts';
import { appsOf, isDrillCall } from '../support/exec-helpers.ts';
import {
  buildExecHarness,
  submitAndStart,
  useHttpAdapter,
  waitForState,
  type ExecHarness,
} from '../support/execution.ts';
import { SECRET } from '../support/secrets.ts';
import { query, seedRegistry, tenantId } from '../support/seed.ts';

const APPS = 4;
const ROLLOUT = { bakeSeconds: 0, concurrency: 2, waves: ['100%'] };
const HALT = { probe: 'optional' };
const ENDED = ['completed', 'completed_with_failures', 'rolled_back', 'rollback_incomplete', 'halted', 'paused'];

let h: ExecHarness;
beforeAll(async () => {
  // The API holds `apps-prod` (test/support/secrets.ts); this worker holds the default secret only.
  h = await buildExecHarness({
    workers: 1,
    workerDownstream: { allow: allowlistOf(['127.0.0.1']), secrets: new SigningSecrets(new Map(), SECRET) },
  });
  await seedRegistry(h.databaseUrl, { sites: 10, appsPerSite: APPS });
});
afterAll(async () => {
  await h?.close();
});
beforeEach(() => h.downstream.reset());

const itemsOf = (opId: string) =>
  query<{ resource_id: string; state: string; last_error: string | null }>(
    h.databaseUrl,
    'SELECT resource_id, state, last_error FROM operation_items WHERE operation_id = $1 ORDER BY seq',
    [opId],
  );
const run = async (ids: string[], targetType = 'app', haltPolicy: Record<string, unknown> = HALT) => {
  const op = await submitAndStart(h, { ids, targetType, rollout: ROLLOUT, haltPolicy });
  const end = await waitForState(h, op.id, ENDED, 60_000);
  return { op, end, items: await itemsOf(op.id) };
};
const adapterFor = (over: Record<string, unknown> = {}) => ({
  kind: 'http',
  baseUrl: h.downstream.url,
  snapshot: 'GET /apps/{id}',
  softDelete: 'POST /apps/{id}/soft-delete',
  restore: 'POST /apps/{id}/restore',
  hardDelete: 'DELETE /apps/{id}',
  timeoutMs: 5_000,
  retries: 1,
  retryBaseMs: 10,
  ...over,
});

describe('a worker whose policy refuses the stored adapter', () => {
  it('fails the items of a type whose signing secret it cannot resolve, naming the variable, and sends nothing', async () => {
    // Declared through the API, which holds apps-prod: accepted.
    const declared = await request(h.app.server)
      .put('/v1/registry/types')
      .set('authorization', h.auth('admin'))
      .send({
        types: [
          {
            name: 'app',
            idPattern: '^app_[0-9_]+$',
            parentType: 'site',
            adapter: adapterFor({ signingSecret: 'apps-prod' }),
          },
        ],
      });
    expect(declared.status, JSON.stringify(declared.body)).toBe(200);

    const { end, items } = await run(appsOf([0, 1], APPS));
    expect(end.state).toBe('rolled_back'); // nothing was sent, so nothing to restore
    const failed = items.filter((i) => i.state === 'failed');
    expect(failed.length).toBeGreaterThan(0);
    for (const i of failed)
      expect(i.last_error).toBe(
        'adapter for type app unavailable: signing secret "apps-prod" is not set on this server: set BLASTGATE_SECRET_APPS_PROD or BLASTGATE_SECRET_APPS_PROD_FILE (secrets this server has: none)',
      );
    expect(h.downstream.calls).toEqual([]);
  });

  it('fails the items of a type whose stored host it does not allow (a row stored before the allowlist)', async () => {
    await query(h.databaseUrl, `UPDATE resource_types SET adapter = $1 WHERE name = 'app'`, [
      JSON.stringify(adapterFor({ baseUrl: 'http://169.254.169.254/latest' })),
    ]);
    const { end, items } = await run(appsOf([2, 3], APPS));
    expect(end.state).toBe('rolled_back');
    const failed = items.filter((i) => i.state === 'failed');
    expect(failed.length).toBeGreaterThan(0);
    for (const i of failed)
      expect(i.last_error).toMatch(
        /^adapter for type app unavailable: baseUrl host 169\.254\.169\.254 is a link-local address \(cloud metadata endpoints answer there\): never allowed unless BLASTGATE_DOWNSTREAM_ALLOW lists it explicitly/,
      );
  });
});

describe('an ID that would render another path', () => {
  it('fails that item for good with the reason, never sending it, and carries on with the others', async () => {
    await useHttpAdapter(h, false);
    await query(h.databaseUrl, `INSERT INTO resource_types (name) VALUES ('doc') ON CONFLICT DO NOTHING`);
    await query(
      h.databaseUrl,
      `UPDATE resource_types SET adapter = (SELECT adapter FROM resource_types WHERE name = 'app') WHERE name = 'doc'`,
    );
    await query(
      h.databaseUrl,
      `INSERT INTO resources (id, type, tenant_id) VALUES ('..', 'doc', $1), ('doc_1', 'doc', $1), ('doc_2', 'doc', $1)`,
      [tenantId(5)],
    );
    // One failure in three is under this policy's threshold: the wave finishes with it.
    const { end, items } = await run(['..', 'doc_1', 'doc_2'], 'doc', { ...HALT, maxFailureRate: 0.5 });
    expect(end.state).toBe('completed_with_failures');
    expect(items.find((i) => i.resource_id === '..')).toEqual({
      resource_id: '..',
      state: 'failed',
      last_error:
        'snapshot failed: refused before sending: {id} ".." is a dot segment, so it would address another path',
    });
    expect(items.filter((i) => i.resource_id !== '..').map((i) => i.state)).toEqual(['done', 'done']);
    // Only the other two reached the downstream, on their own paths (the restore drill's calls aside).
    expect([...new Set(h.downstream.calls.filter((c) => !isDrillCall(c)).map((c) => c.path))].sort()).toEqual([
      '/apps/doc_1/soft-delete',
      `/apps/doc_1?tenantId=${tenantId(5)}`,
      '/apps/doc_2/soft-delete',
      `/apps/doc_2?tenantId=${tenantId(5)}`,
    ]);
  });
});
