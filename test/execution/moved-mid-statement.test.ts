// A registry adapter's delete whose resource an import moves to another tenant while the delete's
// statement waits for its row: the row is left alone (it re-checks the newest version), and the
// item's error says where the resource is now. It named the planned tenant as the one the registry
// has ("of tenant t3, not … of tenant t3"): that part was read from the statement's own snapshot,
// taken before the wait (a probe).
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildExecHarness, submitAndStart, until, waitForState, type ExecHarness } from '../support/execution.ts';
import { lockWaiters } from '../support/crash.ts';
import { useRegistry } from '../support/restores.ts';
import { appId, query, seedRegistry, tenantId } from '../support/seed.ts';

let h: ExecHarness;
beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 6, appsPerSite: 2 });
  await useRegistry(h);
});
afterAll(async () => {
  await h?.close();
});

it('an app moved while its delete statement waited for it: not deleted, and the error names its tenant now', async () => {
  const app = appId(3, 0);
  const mover = new pg.Client({ connectionString: h.databaseUrl });
  await mover.connect();
  try {
    await mover.query('BEGIN');
    // What an import's upsert does to the row, not committed yet: tenant 5.
    await mover.query(`UPDATE resources SET tenant_id = $1, updated_at = now() WHERE id = $2`, [tenantId(5), app]);
    const op = await submitAndStart(h, {
      targetType: 'app',
      ids: [app],
      rollout: { bakeSeconds: 0, concurrency: 1, waves: ['100%'] },
      haltPolicy: { probe: 'optional' },
    });
    // The registry adapter's apply statement (its first CTE is ptenant) waits for the row.
    await until(async () => (await lockWaiters(h.databaseUrl, 'ptenant AS')) > 0, 'the delete to wait for the row');
    await mover.query('COMMIT');
    await waitForState(h, op.id, [
      'completed',
      'completed_with_failures',
      'halted',
      'rolled_back',
      'rollback_incomplete',
    ]);
    const [item] = await query<{ last_error: string; state: string }>(
      h.databaseUrl,
      'SELECT state, last_error FROM operation_items WHERE operation_id = $1',
      [op.id],
    );
    const [row] = await query<{ state: string }>(h.databaseUrl, 'SELECT state FROM resources WHERE id = $1', [app]);
    expect(row!.state).toBe('active');
    expect(item).toMatchObject({ state: 'failed' });
    expect(item!.last_error).toBe(
      `registry has ${app} as type app of tenant ${tenantId(5)}, not type app of tenant ${tenantId(3)}`,
    );
  } finally {
    await mover.end();
  }
});
