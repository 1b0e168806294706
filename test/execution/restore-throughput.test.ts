// Rollbacks measure how fast each type's adapter restores, and later plans estimate their time to
// restore from that measurement instead of the conservative default.
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appsOf, command, range } from '../support/exec-helpers.ts';
import {
  buildExecHarness,
  submitAndStart,
  useHttpAdapter,
  waitForState,
  type ExecHarness,
} from '../support/execution.ts';
import { query, seedRegistry, siteId } from '../support/seed.ts';
import { runRestore } from '../support/restores.ts';
import { DEFAULT_RESTORE_ITEMS_PER_SECOND, measuredRate } from '../../src/modules/operations/restore-estimate.ts';

let h: ExecHarness;
beforeAll(async () => {
  h = await buildExecHarness();
  await seedRegistry(h.databaseUrl, { sites: 12, appsPerSite: 5 });
});
afterAll(async () => {
  await h?.close();
});

const dryRun = async (body: Record<string, unknown>) => {
  const r = await request(h.app.server)
    .post('/v1/operations')
    .set('authorization', h.auth('requester'))
    .send({ targetType: 'app', reason: 'How long would it take?', ticket: 'CHG-9', dryRun: true, ...body })
    .expect(200);
  return r.body.plan as {
    estimatedRestore: { seconds: number; items: number; itemsPerSecond: number; basis: string; byType: unknown[] };
  };
};

interface Measured {
  items: number;
  elapsed_ms: number;
  batches: number;
}
const measured = async (type: string, kind: string) =>
  (
    await query<Measured>(
      h.databaseUrl,
      'SELECT items, elapsed_ms, batches FROM restore_throughput WHERE resource_type = $1 AND adapter_kind = $2',
      [type, kind],
    )
  )[0];
const rateOf = (m: Measured, kind = 'registry') =>
  Math.round(measuredRate(m.items, m.elapsed_ms, DEFAULT_RESTORE_ITEMS_PER_SECOND[kind]!) * 10) / 10;

/** Deletes the apps of `sites` to completion, then rolls the operation back. */
async function deleteAndRollBack(sites: number[]) {
  const op = await submitAndStart(h, { ids: appsOf(sites, 5), rollout: { bakeSeconds: 0 } });
  expect((await waitForState(h, op.id, ['completed', 'halted', 'rolled_back'])).state).toBe('completed');
  expect((await command(h, 'operator', op.id, 'rollback', { reason: 'measure the way back' })).status).toBe(200);
  expect((await waitForState(h, op.id, ['rolled_back', 'rollback_incomplete'])).state).toBe('rolled_back');
}

describe('restore throughput', () => {
  it('is measured per type and adapter by rollbacks, and later plans use it', async () => {
    expect((await dryRun({ ids: appsOf([10], 5) })).estimatedRestore).toMatchObject({
      basis: 'default',
      itemsPerSecond: 500,
    });

    await deleteAndRollBack(range(0, 4));
    const registry = (await measured('app', 'registry'))!;
    expect(registry.items).toBeGreaterThan(0);
    expect(registry.batches).toBeGreaterThanOrEqual(1);
    const after = (await dryRun({ ids: appsOf([10, 11], 5) })).estimatedRestore;
    expect(after).toMatchObject({ basis: 'measured', items: 10, itemsPerSecond: rateOf(registry) });
    expect(after.seconds).toBe(Math.ceil(10 / measuredRate(registry.items, registry.elapsed_ms, 500)));

    // A site delete counts its apps (measured) and the sites (never restored: default), so the
    // estimate as a whole is not a measured one.
    const sites = await request(h.app.server)
      .post('/v1/operations')
      .set('authorization', h.auth('requester'))
      .send({ targetType: 'site', reason: 'How long?', ticket: 'CHG-9', dryRun: true, ids: [siteId(10)] })
      .expect(200);
    expect(sites.body.plan.estimatedRestore).toMatchObject({
      basis: 'default',
      byType: [
        { type: 'site', items: 1, itemsPerSecond: 500, basis: 'default' },
        { type: 'app', items: 5, itemsPerSecond: rateOf(registry), basis: 'measured' },
      ],
    });

    // Another adapter kind for the type: the registry's speed says nothing about it.
    await useHttpAdapter(h);
    expect((await dryRun({ ids: appsOf([10], 5) })).estimatedRestore).toMatchObject({
      basis: 'default',
      itemsPerSecond: 20,
    });
    await deleteAndRollBack(range(4, 8));
    const http = (await measured('app', 'http'))!;
    expect(http.items).toBeGreaterThan(0);
    expect((await dryRun({ ids: appsOf([10], 5) })).estimatedRestore).toMatchObject({
      basis: 'measured',
      itemsPerSecond: rateOf(http, 'http'),
    });
    // The registry measurement is kept for when the type goes back to it.
    expect(await measured('app', 'registry')).toEqual(registry);
  });

  it('is not measured by a rollback that sends nothing (a restore brought everything back first)', async () => {
    await useHttpAdapter(h);
    const op = await submitAndStart(h, { ids: appsOf([8, 9], 5), rollout: { bakeSeconds: 0 } });
    expect((await waitForState(h, op.id, ['completed', 'halted', 'rolled_back'])).state).toBe('completed');
    const restore = await runRestore(h, { operationId: op.id });
    expect(restore.state).toBe('completed');
    const before = await measured('app', 'http');
    const calls = h.downstream.calls.length;
    // Each rollback of what a restore already brought back sends nothing; it counted as a batch
    // of 10 restored in almost no time, and three of them nearly tripled the measured speed, so a
    // plan over maxRestoreMinutes stopped needing break-glass (a trial).
    expect((await command(h, 'operator', op.id, 'rollback', { reason: 'already restored' })).status).toBe(200);
    expect((await waitForState(h, op.id, ['rolled_back', 'rollback_incomplete'])).state).toBe('rolled_back');
    expect(h.downstream.calls.filter((c) => c.action === 'restore').length).toBe(
      h.downstream.calls.slice(0, calls).filter((c) => c.action === 'restore').length,
    );
    expect(await measured('app', 'http')).toEqual(before);
  });
});
