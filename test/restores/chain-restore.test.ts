// A cascade several levels deep, brought back with a resource in the middle refused. A rollback or a
// restore restores a delete's descendants shallowest first, and passed a failure on only from the
// submitted item to its own children: a probe's dir chain d_1 > d_2 > … had d_2's restore refused
// (403), and d_3 and d_4 came back anyway, live under a parent still deleted. Nothing is restored
// under a parent that did not come back, however deep.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { command } from '../support/exec-helpers.ts';
import { buildExecHarness, waitForState, type ExecHarness } from '../support/execution.ts';
import { deleteAndComplete, httpAdapterOn, restoreItems, runRestore } from '../support/restores.ts';
import { query, seedRegistry, tenantId } from '../support/seed.ts';

let h: ExecHarness;
const T = tenantId(0);
const FOLDERS = ['fold_3', 'fold_2', 'fold_1'];
const chain = (p: string) => [1, 2, 3, 4].map((k) => `dir_${p}${k}`);

beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 1, appsPerSite: 1 });
  // A dir takes the dirs under it (no parentType: a dir under a dir).
  await query(
    h.databaseUrl,
    `INSERT INTO resource_types (name, id_pattern, parent_type, cascade_to, adapter) VALUES ('dir', '^dir_[a-z0-9]+$', NULL, ARRAY['dir'], $1)`,
    [httpAdapterOn(h, 'dirs')],
  );
  // A folder takes nothing with it: a folder under a folder is listed on its own.
  await query(
    h.databaseUrl,
    `INSERT INTO resource_types (name, id_pattern, parent_type, cascade_to, adapter) VALUES ('folder', '^fold_[a-z0-9]+$', NULL, ARRAY[]::text[], $1)`,
    [httpAdapterOn(h, 'folders')],
  );
  await query(
    h.databaseUrl,
    `INSERT INTO resources (id, type, tenant_id, parent_id) VALUES
       ('fold_1', 'folder', $1, NULL), ('fold_2', 'folder', $1, 'fold_1'), ('fold_3', 'folder', $1, 'fold_2')`,
    [T],
  );
  for (const x of FOLDERS) h.downstream.resources.set(x, { id: x, tenantId: T, state: 'active', data: {} });
  for (const p of ['a', 'b']) {
    const ids = chain(p);
    await query(
      h.databaseUrl,
      `INSERT INTO resources (id, type, tenant_id, parent_id)
       SELECT id, 'dir', $2, CASE WHEN k = 1 THEN NULL ELSE ($1::text[])[k - 1] END FROM unnest($1::text[]) WITH ORDINALITY AS x(id, k)`,
      [ids, T],
    );
    for (const x of ids) h.downstream.resources.set(x, { id: x, tenantId: T, state: 'active', data: {} });
    // The dirs' system owns its cascade: a dir's delete takes the dir under it.
    ids.slice(1).forEach((x, k) => h.downstream.cascade(ids[k]!, [x]));
  }
});
afterAll(async () => {
  await h?.close();
});

/** Refuses (403) the restore of `id`; records the order of restore calls. */
function refuseRestoreOf(id: string) {
  const order: string[] = [];
  h.downstream.answer((c) => {
    if (c.action !== 'restore') return null;
    order.push(c.resourceId!);
    return c.resourceId === id ? 403 : null;
  });
  return order;
}

describe('a rollback of a dir chain whose second dir is refused', () => {
  it('brings back the top only: the dirs under the refused one stay deleted, failing naming their parent', async () => {
    const [d1, d2, d3, d4] = chain('a') as [string, string, string, string];
    const opId = await deleteAndComplete(h, 'dir', [d1]);
    for (const x of chain('a')) expect(h.downstream.state(x)).not.toBe('active');
    const order = refuseRestoreOf(d2);
    await command(h, 'operator', opId, 'rollback', { reason: 'wrong dir' }).expect(200);
    expect((await waitForState(h, opId, ['rolled_back', 'rollback_incomplete'])).state).toBe('rollback_incomplete');
    expect(h.downstream.state(d1)).toBe('active');
    for (const x of [d2, d3, d4]) expect(h.downstream.state(x), x).not.toBe('active');
    expect(order).not.toContain(d3);
    expect(order).not.toContain(d4);
    const rows = await query<{ resource_id: string; state: string; last_error: string | null }>(
      h.databaseUrl,
      'SELECT resource_id, state, last_error FROM operation_items WHERE operation_id = $1',
      [opId],
    );
    const by = Object.fromEntries(rows.map((r) => [r.resource_id, r]));
    expect(by[d3]!.last_error).toMatch(new RegExp(`not restored: ${d2} was not`));
    expect(by[d4]!.last_error).toMatch(new RegExp(`not restored: ${d3} was not`));
  });
});

describe('a restore of a dir chain whose second dir is refused', () => {
  it('brings back the top only, as a rollback does', async () => {
    const [d1, d2, d3, d4] = chain('b') as [string, string, string, string];
    await deleteAndComplete(h, 'dir', [d1]);
    const order = refuseRestoreOf(d2);
    const v = await runRestore(h, { targetType: 'dir', ids: [d1] });
    expect(['completed_with_failures', 'halted']).toContain(v.state);
    expect(h.downstream.state(d1)).toBe('active');
    for (const x of [d2, d3, d4]) expect(h.downstream.state(x), x).not.toBe('active');
    expect(order).not.toContain(d3);
    const by = Object.fromEntries((await restoreItems(h, v.id)).map((r) => [r.resource_id, r]));
    expect(by[d3]).toMatchObject({ state: 'failed' });
    expect(by[d3]!.last_error).toMatch(new RegExp(`not restored: ${d2} was not`));
    expect(by[d4]).toMatchObject({ state: 'failed' });
  });
});

describe('a rollback of a delete that listed a folder and the folders under it, the top one refused', () => {
  it('restores parents first, and none under the refused one', async () => {
    const opId = await deleteAndComplete(h, 'folder', FOLDERS);
    const order = refuseRestoreOf('fold_1');
    await command(h, 'operator', opId, 'rollback', { reason: 'wrong folders' }).expect(200);
    expect((await waitForState(h, opId, ['rolled_back', 'rollback_incomplete'])).state).toBe('rollback_incomplete');
    expect(order).toEqual(['fold_1']);
    for (const x of FOLDERS) expect(h.downstream.state(x), x).not.toBe('active');
    const rows = await query<{ resource_id: string; last_error: string | null }>(
      h.databaseUrl,
      'SELECT resource_id, last_error FROM operation_items WHERE operation_id = $1',
      [opId],
    );
    const by = Object.fromEntries(rows.map((r) => [r.resource_id, r.last_error]));
    expect(by.fold_2).toMatch(/not restored: fold_1 was not/);
    expect(by.fold_3).toMatch(/not restored: fold_2 was not/);
  });
});
