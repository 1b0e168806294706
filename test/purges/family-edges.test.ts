// Purge families at their edges (family-waves.test.ts has the plain cases).
//
// A cascade declared on the top type only: corp cascades to dept and user, and dept to nothing, so
// deleting corp_1 takes dept_1 and the user under it. A probe's purge of everything due took dept_1
// (and corp_1) while user_1 was still within its retention: user_1 was left deleted under a purged
// dept, never restorable (parent_deleted naming a purged parent), and so was the tenant's restore.
// A deleted child keeps its parent back whichever cascade took it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildExecHarness, waitForState, type ExecHarness } from '../support/execution.ts';
import { deleteAndComplete, postPurge, postRestore, registryStates } from '../support/restores.ts';
import { query } from '../support/seed.ts';
import { command } from '../support/exec-helpers.ts';

let h: ExecHarness;

beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await query(
    h.databaseUrl,
    `INSERT INTO resource_types (name, parent_type, cascade_to) VALUES
       ('corp', NULL, ARRAY['dept', 'user']), ('dept', 'corp', ARRAY[]::text[]), ('user', 'dept', ARRAY[]::text[])`,
  );
  await query(h.databaseUrl, `INSERT INTO tenants (id, name) VALUES ('tc_1', 'Corp one')`);
  await query(
    h.databaseUrl,
    `INSERT INTO resources (id, type, tenant_id, parent_id) VALUES
       ('corp_1', 'corp', 'tc_1', NULL), ('dept_1', 'dept', 'tc_1', 'corp_1'), ('user_1', 'user', 'tc_1', 'dept_1')`,
  );
});
afterAll(async () => {
  await h?.close();
});

describe("a child the top type's cascade took, still within its retention", () => {
  it('keeps its parent (and that one its own) out of everything due; the tenant restores whole', async () => {
    await deleteAndComplete(h, 'corp', ['corp_1']);
    expect(await registryStates(h, ['corp_1', 'dept_1', 'user_1'])).toEqual({
      corp_1: 'soft_deleted',
      dept_1: 'soft_deleted',
      user_1: 'soft_deleted',
    });
    await query(
      h.databaseUrl,
      `UPDATE resources SET purge_after = now() - interval '1 day' WHERE id IN ('corp_1', 'dept_1')`,
    );
    const r = await postPurge(h, { dueBefore: new Date().toISOString(), dryRun: true });
    expect(r.status, JSON.stringify(r.body)).toBe(422);
    expect(r.body).toMatchObject({ code: 'NOTHING_TO_PURGE', details: { leftOut: { childrenKept: 2 } } });
    expect(r.body.details.leftOut.items).toEqual([
      expect.objectContaining({ id: 'corp_1', reason: 'children_kept', detail: expect.stringContaining('dept_1') }),
      expect.objectContaining({ id: 'dept_1', reason: 'children_kept', detail: expect.stringContaining('user_1') }),
    ]);
    // Listed by ID, dept_1 is refused through user_1 (when its retention ends is named).
    const listed = await postPurge(h, { targetType: 'dept', ids: ['dept_1'], dryRun: true });
    expect(listed.status, JSON.stringify(listed.body)).toBe(422);
    expect(listed.body.details.offenders.within_retention).toEqual([
      expect.objectContaining({ id: 'dept_1', via: expect.objectContaining({ id: 'user_1' }) }),
    ]);
    const restore = await postRestore(h, { tenantId: 'tc_1', dryRun: true });
    expect(restore.status, JSON.stringify(restore.body)).toBe(200);
    expect(restore.body.plan.itemCount).toBe(3);
  });
});

describe('parents that each take another round of waves to keep back', () => {
  // Tenant ta has nine sites, each with its app in another tenant (tz: 10 items, tb_i: 9 - i):
  // leaving one site out makes ta lighter, and it moves ahead of the next tenant, whose app is then
  // in a later wave than its site. A cap of 8 rounds planned site_r8 ahead of its app (a probe).
  it('leaves every such parent out, however many rounds it takes: no child in a later wave than its parent', async () => {
    const bs = Array.from({ length: 8 }, (_, k) => k + 1);
    await query(h.databaseUrl, `INSERT INTO tenants (id, name) SELECT id, id FROM unnest($1::text[]) AS t(id)`, [
      ['ta', 'tz', ...bs.map((i) => `tb${i}`)],
    ]);
    const rows: [string, string, string, string | null][] = [
      ['site_p1', 'site', 'ta', null],
      ['app_p1', 'app', 'tz', 'site_p1'],
      ...Array.from({ length: 9 }, (_, k): [string, string, string, null] => [`app_z${k}`, 'app', 'tz', null]),
      ...bs.flatMap((i): [string, string, string, string | null][] => [
        [`site_r${i}`, 'site', 'ta', null],
        [`app_r${i}`, 'app', `tb${i}`, `site_r${i}`],
        ...Array.from({ length: 8 - i }, (_, k): [string, string, string, null] => [
          `app_b${i}_${k}`,
          'app',
          `tb${i}`,
          null,
        ]),
      ]),
    ];
    await query(
      h.databaseUrl,
      `INSERT INTO resource_types (name, cascade_to) VALUES ('site', ARRAY['app']), ('app', '{}')`,
    );
    await query(
      h.databaseUrl,
      `INSERT INTO resources (id, type, tenant_id, parent_id, state, deleted_at, purge_after)
       SELECT id, type, tenant_id, parent_id, 'soft_deleted', now() - interval '40 days', now() - interval '1 day'
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS r(id, type, tenant_id, parent_id)`,
      [rows.map((r) => r[0]), rows.map((r) => r[1]), rows.map((r) => r[2]), rows.map((r) => r[3])],
    );
    const waves = ['1', '2', '3', '4', '5', '6', '7', '8', '9', '100%'];
    const r = await postPurge(h, { dueBefore: new Date().toISOString(), rollout: { bakeSeconds: 0, waves } });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body.plan.leftOut.childrenKept).toBeGreaterThanOrEqual(9);
    const ahead = await query<{ parent: string; child: string }>(
      h.databaseUrl,
      `SELECT p.resource_id AS parent, c.resource_id AS child
       FROM operation_items p JOIN resources ch ON ch.parent_id = p.resource_id
       JOIN operation_items c ON c.operation_id = p.operation_id AND c.resource_id = ch.id
       WHERE p.operation_id = $1 AND c.wave > p.wave`,
      [r.body.id],
    );
    expect(ahead).toEqual([]);
    await command(h, 'operator', r.body.id, 'abort', { reason: 'plan checked' }).expect(200);
  });
});

describe('a listed parent refused for a taken child whose own child goes in a later wave', () => {
  it('names that grandchild in via (child_later), not the taken child', async () => {
    // corp_3 (tx1, with dept_3b) → dept_3 (tx2) → user_3 (tx3): tx2 is wave 0, tx3 wave 1, tx1 wave 2.
    await query(h.databaseUrl, `INSERT INTO tenants (id, name) VALUES ('tx1', 'x1'), ('tx2', 'x2'), ('tx3', 'x3')`);
    await query(
      h.databaseUrl,
      `INSERT INTO resources (id, type, tenant_id, parent_id) VALUES ('corp_3', 'corp', 'tx1', NULL),
         ('dept_3b', 'dept', 'tx1', 'corp_3'), ('dept_3', 'dept', 'tx2', 'corp_3'), ('user_3', 'user', 'tx3', 'dept_3')`,
    );
    await deleteAndComplete(h, 'corp', ['corp_3']);
    await query(
      h.databaseUrl,
      `UPDATE resources SET purge_after = now() - interval '1 day' WHERE id IN ('corp_3', 'dept_3b', 'dept_3', 'user_3')`,
    );
    const r = await postPurge(h, {
      targetType: 'corp',
      ids: ['corp_3'],
      dryRun: true,
      rollout: { bakeSeconds: 0, waves: ['1', '2', '100%'] },
    });
    expect(r.status, JSON.stringify(r.body)).toBe(422);
    expect(r.body.details.offenders.child_later).toEqual([
      expect.objectContaining({ id: 'corp_3', via: expect.objectContaining({ id: 'user_3' }) }),
    ]);
  });
});

describe('a listed parent whose soft-deleted child is due too but not in the purge', () => {
  it('is refused as child_not_listed naming the child (not within_retention, with a retention end already past)', async () => {
    // user_2 deleted on its own, then dept_2 (which cascades to nothing): both due.
    await query(
      h.databaseUrl,
      `INSERT INTO resources (id, type, tenant_id, parent_id) VALUES
         ('dept_2', 'dept', 'tc_1', NULL), ('user_2', 'user', 'tc_1', 'dept_2')`,
    );
    await deleteAndComplete(h, 'user', ['user_2']);
    await deleteAndComplete(h, 'dept', ['dept_2']);
    await query(
      h.databaseUrl,
      `UPDATE resources SET purge_after = now() - interval '1 day' WHERE id IN ('dept_2', 'user_2')`,
    );
    const listed = await postPurge(h, { targetType: 'dept', ids: ['dept_2'], dryRun: true });
    expect(listed.status, JSON.stringify(listed.body)).toBe(422);
    expect(listed.body.details.counts).toMatchObject({ child_not_listed: 1 });
    expect(listed.body.details.offenders.child_not_listed).toEqual([
      expect.objectContaining({ id: 'dept_2', via: expect.objectContaining({ id: 'user_2' }) }),
    ]);
    expect(listed.body.message).toContain('child_not_listed');
    // Purged first on its own, the child no longer holds the parent back.
    const child = await postPurge(h, { targetType: 'user', ids: ['user_2'] });
    expect(child.status, JSON.stringify(child.body)).toBe(201);
    await command(h, 'approver', child.body.id, 'approve', { planHash: child.body.planHash }).expect(200);
    await command(h, 'operator', child.body.id, 'start').expect(200);
    await waitForState(h, child.body.id, ['completed']);
    const again = await postPurge(h, { targetType: 'dept', ids: ['dept_2'], dryRun: true });
    expect(again.status, JSON.stringify(again.body)).toBe(200);
  });
});

describe('a mid-level parent listed by ID (corp → dept → user, the delete made on the corp)', () => {
  it('takes along what the same delete took under it, instead of refusing it through those', async () => {
    await query(
      h.databaseUrl,
      `INSERT INTO resources (id, type, tenant_id, parent_id) VALUES
         ('corp_m1', 'corp', 'tc_1', NULL), ('dept_m1', 'dept', 'tc_1', 'corp_m1'), ('user_m1', 'user', 'tc_1', 'dept_m1'),
         ('dept_m2', 'dept', 'tc_1', 'corp_m1'), ('user_m2', 'user', 'tc_1', 'dept_m2')`,
    );
    await deleteAndComplete(h, 'corp', ['corp_m1']);
    await query(
      h.databaseUrl,
      `UPDATE resources SET purge_after = now() - interval '1 day' WHERE id IN ('corp_m1', 'dept_m1', 'user_m1', 'dept_m2', 'user_m2')`,
    );
    const r = await postPurge(h, { targetType: 'dept', ids: ['dept_m1'], dryRun: true });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    // dept_m1 and its user; not its sibling's family nor the corp.
    expect(r.body.plan.itemCount).toBe(2);
  });
});
