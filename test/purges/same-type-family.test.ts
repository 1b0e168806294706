// A family within one type. A type that declares no parentType takes a parent of any type, its own
// included: a folder under a folder. A purge's chunk sent the hard deletes of one type side by side,
// so a parent folder was purged beside its child folder in the same chunk, and stayed purged when the
// child's call failed: the child left deleted under a purged parent, never restorable. Within a
// type, an HTTP adapter's calls now go children first, and a parent whose child failed is not sent.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { command } from '../support/exec-helpers.ts';
import { buildExecHarness, waitForState, type ExecHarness } from '../support/execution.ts';
import { ageTwoDays, deleteAndComplete, httpAdapterOn, postPurge, registryStates } from '../support/restores.ts';
import { appId, query, seedRegistry, siteId, tenantId } from '../support/seed.ts';

let h: ExecHarness;
const T = tenantId(0);
/** fold_a ⊃ fold_b ⊃ fold_c, listed parents first; fold_d on its own. */
const CHAIN = ['fold_a', 'fold_b', 'fold_c'];
/** fold_p ⊃ fold_q ⊃ fold_r, all purged. */
const OK_CHAIN = ['fold_p', 'fold_q', 'fold_r'];

beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 2, appsPerSite: 1 });
  await query(
    h.databaseUrl,
    `INSERT INTO resource_types (name, id_pattern, parent_type, cascade_to, adapter) VALUES ('folder', '^fold_[a-z]+$', NULL, ARRAY[]::text[], $1)`,
    [httpAdapterOn(h, 'folders')],
  );
  await query(
    h.databaseUrl,
    `INSERT INTO resources (id, type, tenant_id, parent_id) VALUES
      ('fold_a', 'folder', $1, NULL), ('fold_b', 'folder', $1, 'fold_a'), ('fold_c', 'folder', $1, 'fold_b'),
      ('fold_d', 'folder', $1, NULL),
      ('fold_p', 'folder', $1, NULL), ('fold_q', 'folder', $1, 'fold_p'), ('fold_r', 'folder', $1, 'fold_q'),
      ('fold_u', 'folder', $1, NULL), ('fold_v', 'folder', $1, 'fold_u'), ('fold_w', 'folder', $1, NULL),
      ('fold_x', 'folder', $1, 'fold_w'), ('fold_l', 'folder', $1, NULL), ('fold_m', 'folder', $1, 'fold_l')`,
    [T],
  );
  for (const x of [...CHAIN, 'fold_d', ...OK_CHAIN, 'fold_u', 'fold_v', 'fold_w', 'fold_x', 'fold_l', 'fold_m'])
    h.downstream.resources.set(x, { id: x, tenantId: T, state: 'active', data: {} });
});
afterAll(async () => {
  await h?.close();
});

describe('a purge of a folder chain whose deepest folder is refused', () => {
  it('purges none of the folders above it, and their items name the child that held them', async () => {
    await deleteAndComplete(h, 'folder', [...CHAIN, 'fold_d']);
    await ageTwoDays(h, [...CHAIN, 'fold_d']);
    const order: string[] = [];
    h.downstream.answer((c) => {
      if (c.action !== 'hardDelete') return null;
      order.push(c.resourceId!);
      return c.resourceId === 'fold_c' ? 403 : null;
    });
    const r = await postPurge(h, {
      targetType: 'folder',
      ids: [...CHAIN, 'fold_d'],
      rollout: { bakeSeconds: 0, concurrency: 8, waves: ['100%'] },
      haltPolicy: { maxFailureRate: 1, probe: 'optional' },
    });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    await command(h, 'approver', r.body.id, 'approve', { planHash: r.body.planHash }).expect(200);
    await command(h, 'operator', r.body.id, 'start').expect(200);
    const end = await waitForState(h, r.body.id, ['completed', 'completed_with_failures', 'halted', 'paused']);
    expect(['halted', 'completed_with_failures']).toContain(end.state);
    // Only the unrelated folder and the refused one were called; the refused one stays deleted.
    expect(order.sort()).toEqual(['fold_c', 'fold_d']);
    expect(h.downstream.state('fold_a')).toBe('soft_deleted');
    expect(h.downstream.state('fold_b')).toBe('soft_deleted');
    expect(h.downstream.state('fold_c')).toBe('soft_deleted');
    expect(h.downstream.state('fold_d')).toBe('purged');
    const items = await query<{ resource_id: string; state: string; last_error: string | null }>(
      h.databaseUrl,
      'SELECT resource_id, state, last_error FROM operation_items WHERE operation_id = $1 ORDER BY resource_id',
      [r.body.id],
    );
    const by = Object.fromEntries(items.map((i) => [i.resource_id, i]));
    expect(by.fold_b).toMatchObject({ state: 'failed' });
    expect(by.fold_b!.last_error).toMatch(/its child fold_c was not purged by this purge/);
    expect(by.fold_a).toMatchObject({ state: 'failed' });
    expect(by.fold_a!.last_error).toMatch(/its child fold_b was not purged by this purge/);
  });
});

describe('a purge of a folder chain whose calls all succeed', () => {
  it('purges every folder, each after its child', async () => {
    await deleteAndComplete(h, 'folder', OK_CHAIN);
    await ageTwoDays(h, OK_CHAIN);
    const order: string[] = [];
    h.downstream.answer((c) => {
      if (c.action === 'hardDelete') order.push(c.resourceId!);
      return null;
    });
    const r = await postPurge(h, {
      targetType: 'folder',
      ids: OK_CHAIN,
      rollout: { bakeSeconds: 0, concurrency: 8, waves: ['100%'] },
      haltPolicy: { probe: 'optional' },
    });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    await command(h, 'approver', r.body.id, 'approve', { planHash: r.body.planHash }).expect(200);
    await command(h, 'operator', r.body.id, 'start').expect(200);
    expect((await waitForState(h, r.body.id, ['completed', 'completed_with_failures', 'halted'])).state).toBe(
      'completed',
    );
    expect(order).toEqual(['fold_r', 'fold_q', 'fold_p']);
    for (const x of OK_CHAIN) expect(h.downstream.state(x)).toBe('purged');
  });
});

describe('a folder whose child folder was deleted on its own and is not purged', () => {
  it("is refused by ID (child_not_listed) and left out of its operation's purge, not purged over the child", async () => {
    // The child's registry row stays active (its system holds its state), and its type is no
    // cascade of the parent's: only Blastgate's history says it is deleted.
    await deleteAndComplete(h, 'folder', ['fold_v']);
    const parentDelete = await deleteAndComplete(h, 'folder', ['fold_u']);
    await ageTwoDays(h, ['fold_u', 'fold_v']);
    const listed = await postPurge(h, { targetType: 'folder', ids: ['fold_u'], dryRun: true });
    expect(listed.status, JSON.stringify(listed.body)).toBe(422);
    expect(listed.body.details.offenders.child_not_listed).toEqual([
      expect.objectContaining({ id: 'fold_u', via: expect.objectContaining({ id: 'fold_v' }) }),
    ]);
    const byOp = await postPurge(h, { operationId: parentDelete, dryRun: true });
    expect(byOp.status, JSON.stringify(byOp.body)).toBe(422);
    expect(byOp.body.details.leftOut.items).toEqual([
      expect.objectContaining({ id: 'fold_u', reason: 'children_kept', detail: expect.stringContaining('fold_v') }),
    ]);
    // Both listed: the child goes first, and the parent with it.
    const both = await postPurge(h, { targetType: 'folder', ids: ['fold_u', 'fold_v'], dryRun: true });
    expect(both.status, JSON.stringify(both.body)).toBe(200);
  });

  it('does not hold a parent whose live child folder was never deleted (a child of no cascade type)', async () => {
    await deleteAndComplete(h, 'folder', ['fold_w']);
    await ageTwoDays(h, ['fold_w']);
    const r = await postPurge(h, { targetType: 'folder', ids: ['fold_w'], dryRun: true });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
  });
});

describe('a purge of a registry site with an HTTP folder under it, the folder refused', () => {
  it("keeps the site: the folder goes first, whatever the types' order", async () => {
    // A folder takes a parent of any type: here a site, whose type's cascade does not reach it.
    const T1 = tenantId(1);
    await query(
      h.databaseUrl,
      `INSERT INTO resources (id, type, tenant_id, parent_id) VALUES ('fold_s', 'folder', $1, $2)`,
      [T1, siteId(1)],
    );
    h.downstream.resources.set('fold_s', { id: 'fold_s', tenantId: T1, state: 'active', data: {} });
    await deleteAndComplete(h, 'folder', ['fold_s']);
    await deleteAndComplete(h, 'site', [siteId(1)]);
    await ageTwoDays(h, ['fold_s', siteId(1), appId(1, 0)]);
    h.downstream.answer((c) => (c.action === 'hardDelete' && c.resourceId === 'fold_s' ? 403 : null));
    const r = await postPurge(h, {
      tenantId: T1,
      rollout: { bakeSeconds: 0, concurrency: 8, waves: ['100%'] },
      haltPolicy: { maxFailureRate: 1, probe: 'optional' },
    });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    await command(h, 'approver', r.body.id, 'approve', { planHash: r.body.planHash }).expect(200);
    await command(h, 'operator', r.body.id, 'start').expect(200);
    await waitForState(h, r.body.id, ['completed', 'completed_with_failures', 'halted', 'paused']);
    h.downstream.answer(null);
    expect(h.downstream.state('fold_s')).toBe('soft_deleted');
    expect((await registryStates(h, [siteId(1)]))[siteId(1)]).toBe('soft_deleted');
  });
});

describe('a folder whose live child folder is deleted after its purge was planned', () => {
  it('is not purged over it: its item fails naming the child', async () => {
    await deleteAndComplete(h, 'folder', ['fold_l']);
    await ageTwoDays(h, ['fold_l']);
    const r = await postPurge(h, {
      targetType: 'folder',
      ids: ['fold_l'],
      rollout: { bakeSeconds: 0, concurrency: 8, waves: ['100%'] },
      haltPolicy: { maxFailureRate: 1, probe: 'optional' },
    });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    // Deleted by Blastgate after the plan: its row stays active, only the history says so.
    await deleteAndComplete(h, 'folder', ['fold_m']);
    await command(h, 'approver', r.body.id, 'approve', { planHash: r.body.planHash }).expect(200);
    const started = await command(h, 'operator', r.body.id, 'start');
    expect(started.status, JSON.stringify(started.body)).toBe(200);
    await waitForState(h, r.body.id, ['completed', 'completed_with_failures', 'halted', 'paused']);
    const [item] = await query<{ state: string; last_error: string | null }>(
      h.databaseUrl,
      'SELECT state, last_error FROM operation_items WHERE operation_id = $1',
      [r.body.id],
    );
    expect(item).toMatchObject({ state: 'failed' });
    expect(item!.last_error).toMatch(/has a child fold_m .*acted on since the plan/);
    expect(h.downstream.state('fold_l')).toBe('soft_deleted');
  });
});
