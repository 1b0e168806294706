// The restore drill restores an item of the canary from its delete's snapshot and deletes it again.
// It picked one the registry said had changed since that delete: an app moved to another tenant
// was restored and deleted again under the old tenant (a probe). It drills another item now, as a
// rollback leaves such resources alone (so too one an import said is active again since).
import request from 'supertest';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  buildExecHarness,
  submitAndStart,
  useHttpAdapter,
  waitForState,
  type ExecHarness,
} from '../support/execution.ts';
import { isDrillCall } from '../support/exec-helpers.ts';
import { appId, query, seedRegistry, tenantId } from '../support/seed.ts';

let h: ExecHarness;
beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 20, appsPerSite: 3 });
});
afterAll(async () => {
  await h?.close();
});
beforeEach(async () => {
  h.downstream.reset();
  await useHttpAdapter(h);
});

const ENDED = ['completed', 'completed_with_failures', 'halted', 'rolled_back', 'rollback_incomplete', 'paused'];
const importApp = (id: string, extra: Record<string, unknown>) =>
  request(h.app.server)
    .post('/v1/registry/resources')
    .set('authorization', h.auth('admin'))
    .send({ resources: [{ id, type: 'app', tenantId: extra.tenantId ?? tenantId(Number(id.slice(4, 9))), ...extra }] });

describe('drill after the registry says the canary item changed', () => {
  it('an app moved to another tenant after its delete is not restored under the old tenant and re-deleted by the drill', async () => {
    const s = 3;
    const [x, y] = [appId(s, 0), appId(s, 1)];
    let imported: request.Response | undefined;
    h.downstream.beforeApply(async (c) => {
      if (c.action === 'softDelete' && c.resourceId === y && !isDrillCall(c) && !imported)
        imported = await importApp(x, { tenantId: tenantId(9) });
    });
    const op = await submitAndStart(h, {
      ids: [x, y, appId(4, 0), appId(4, 1), appId(4, 2)],
      rollout: { waves: ['1', '100%'], bakeSeconds: 0, concurrency: 1 },
      haltPolicy: { probe: 'optional', onHalt: 'pause' },
    });
    const end = await waitForState(h, op.id, ENDED);
    expect(imported?.status, JSON.stringify(imported?.body)).toBe(200);
    const drillCalls = h.downstream.calls.filter(isDrillCall).map((c) => c.resourceId);
    expect(drillCalls).not.toContain(x);
    // The other item of the canary was drilled instead, and the rollout went on.
    const drills = await query<{ resource_id: string; outcome: string }>(
      h.databaseUrl,
      'SELECT resource_id, outcome FROM operation_drills WHERE operation_id = $1',
      [op.id],
    );
    expect(drills).toEqual([{ resource_id: y, outcome: 'ok' }]);
    expect(end.state).toBe('completed');
  });
});
