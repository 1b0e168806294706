// A restore or a purge checks each item against the registry right before its chunk's calls, not
// only at `start` (a trial): a resource brought back between two waves (an import that says it is
// active) is not purged or overwritten by the later wave: its item fails saying why, and counts
// as a failure in its wave, which halts on it (as a resource protected since the plan does). Before the fix the purge hard-deleted the live
// site and ended `completed`, and the restore wrote its snapshot over the app brought back.
import request from 'supertest';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { command, isDrillCall } from '../support/exec-helpers.ts';
import { buildExecHarness, getOperation, until, waitForState, type ExecHarness } from '../support/execution.ts';
import {
  appsOfSite,
  deleteAndComplete,
  postRestore,
  registryStates,
  RESTORE_ENDS,
  restoreItems,
  useHttp,
  useRegistry,
} from '../support/restores.ts';
import { query, seedRegistry, siteId, tenantId } from '../support/seed.ts';

let h: ExecHarness;
let nextSite = 0;
/** Two sites of two tenants; the first is the canary wave's (smallest first, ties by tenant ID). */
const twoSites = () => [nextSite++, nextSite++] as const;
const ROLLOUT = { bakeSeconds: 3, concurrency: 4, waves: ['1', '100%'] };

beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 20, appsPerSite: 3 });
});
afterAll(async () => {
  await h?.close();
});
beforeEach(() => h.downstream.reset());

/** Approves and starts `op`, then runs `meanwhile` while its first wave bakes; returns its end. */
async function runWithChangeInBake(op: { id: string; planHash: string }, meanwhile: () => Promise<void>) {
  await command(h, 'approver', op.id, 'approve', { planHash: op.planHash }).expect(200);
  await command(h, 'operator', op.id, 'start').expect(200);
  await until(async () => {
    const v = await getOperation(h, op.id);
    if (RESTORE_ENDS.includes(v.state)) throw new Error(`ended before its bake: ${JSON.stringify(v)}`);
    return v.state === 'baking' && v.currentWave === 0;
  }, 'the first wave to bake');
  await meanwhile();
  return waitForState(h, op.id, RESTORE_ENDS);
}

/** The first app of two sites deleted, then their restore planned (201): both apps and the plan. */
async function plannedRestoreOfTwoApps() {
  const [a, b] = twoSites();
  const [appA, appB] = [appsOfSite(a)[0]!, appsOfSite(b)[0]!];
  await deleteAndComplete(h, 'app', [appA, appB]);
  const res = await postRestore(h, { targetType: 'app', ids: [appA, appB], rollout: ROLLOUT });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return { b, appA, appB, plan: res.body as { id: string; planHash: string } };
}

const useRegistryFor = (type: string) =>
  query(h.databaseUrl, `UPDATE resource_types SET adapter = '{"kind":"registry"}' WHERE name = $1`, [type]);

const importActive = (resources: { id: string; type: string; tenantId: string }[]) =>
  request(h.app.server)
    .post('/v1/registry/resources')
    .set('authorization', h.auth('admin'))
    .send({ resources: resources.map((r) => ({ ...r, state: 'active' })) })
    .expect(200);

describe('a purge', () => {
  it('does not hard-delete a resource imported as active after its plan: its item fails and its wave halts saying why', async () => {
    await useRegistry(h);
    const [a, b] = twoSites();
    await deleteAndComplete(h, 'site', [siteId(a), siteId(b)]);
    await query(h.databaseUrl, `UPDATE resources SET purge_after = now() - interval '1 day' WHERE id = ANY($1)`, [
      [a, b].flatMap((s) => [siteId(s), ...appsOfSite(s)]),
    ]);
    const res = await request(h.app.server)
      .post('/v1/purges')
      .set('authorization', h.auth('requester'))
      .send({
        reason: 'Retention ended',
        ticket: 'CHG-1',
        targetType: 'site',
        ids: [siteId(a), siteId(b)],
        rollout: ROLLOUT,
      });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    const plan = res.body as { id: string; planHash: string };

    const end = await runWithChangeInBake(plan, () =>
      importActive([{ id: siteId(b), type: 'site', tenantId: tenantId(b) }]).then(() => undefined),
    );
    expect(end.state, JSON.stringify(end)).toBe('halted');
    expect(end.haltReason).toContain(`not purged: ${siteId(b)} is active again since the plan`);
    const states = await registryStates(h, [siteId(a), siteId(b)]);
    expect(states[siteId(a)]).toBe('purged');
    expect(states[siteId(b)]).toBe('active');
    const item = (await restoreItems(h, plan.id)).find((r) => r.resource_id === siteId(b))!;
    expect(item.state).toBe('failed');
    expect(item.last_error).toMatch(new RegExp(`^not purged: ${siteId(b)} is active again since the plan`));
  });
});

describe('a restore', () => {
  it('does not write its snapshot over an app brought back and imported as active after its plan', async () => {
    await useHttp(h);
    try {
      const { b, appA, appB, plan } = await plannedRestoreOfTwoApps();

      const end = await runWithChangeInBake(plan, async () => {
        // Its owner brings app B back by itself and says so to the registry.
        await importActive([{ id: appB, type: 'app', tenantId: tenantId(b) }]);
      });
      expect(end.state, JSON.stringify(end)).toBe('halted');
      expect(end.haltReason).toContain(`not restored: ${appB} is active again since the plan`);
      const restores = h.downstream.calls
        .filter((c) => c.action === 'restore' && !isDrillCall(c))
        .map((c) => c.resourceId);
      expect(restores).toEqual([appA]);
      const item = (await restoreItems(h, plan.id)).find((r) => r.resource_id === appB)!;
      expect(item.last_error).toMatch(new RegExp(`^not restored: ${appB} is active again since the plan`));
    } finally {
      await useRegistry(h);
    }
  });
});

describe('a restore of an app alone', () => {
  it('over HTTP too: the app is not restored, and the error names its deleted site (not "active again")', async () => {
    await useHttp(h);
    try {
      const { b, appB, plan } = await plannedRestoreOfTwoApps();
      // The site is kept in the registry; its delete takes app B's siblings over HTTP.
      await useRegistryFor('site');
      const end = await runWithChangeInBake(plan, () =>
        deleteAndComplete(h, 'site', [siteId(b)]).then(() => undefined),
      );
      expect(end.state, JSON.stringify(end)).toBe('halted');
      expect(end.haltReason).toContain(
        `not restored: the parent of ${appB}, ${siteId(b)}, is soft_deleted since the plan`,
      );
      const restores = h.downstream.calls
        .filter((c) => c.action === 'restore' && !isDrillCall(c))
        .map((c) => c.resourceId);
      expect(restores).not.toContain(appB);
    } finally {
      await useRegistry(h);
    }
  });

  it('does not bring it back under its site when another operation deleted the site after the plan', async () => {
    await useRegistry(h);
    const { b, appA, appB, plan } = await plannedRestoreOfTwoApps();

    // Site B's delete leaves app B out of its cascade (already deleted), and completes.
    const end = await runWithChangeInBake(plan, () => deleteAndComplete(h, 'site', [siteId(b)]).then(() => undefined));
    expect(end.state, JSON.stringify(end)).toBe('halted');
    expect(end.haltReason).toContain(
      `not restored: the parent of ${appB}, ${siteId(b)}, is soft_deleted since the plan`,
    );
    const states = await registryStates(h, [appA, appB, siteId(b)]);
    expect(states).toEqual({ [appA]: 'active', [appB]: 'soft_deleted', [siteId(b)]: 'soft_deleted' });
  });
});
