// What an operator reads after a halt, on the real stack (real workers, a real downstream over
// HTTP): the reason of a halt that comes again on resume, and the errors items keep.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  buildExecHarness,
  submitAndStart,
  until,
  useHttpAdapter,
  waitForState,
  type ExecHarness,
} from '../support/execution.ts';
import { idempotencyKeyFor } from '../../src/modules/adapters/signing.ts';
import { appsOf, command } from '../support/exec-helpers.ts';
import { query, seedRegistry } from '../support/seed.ts';

const APPS = 4;
let nextSite = 1;
/** Sites no other test in this file uses (resource locks would make overlaps another test). */
const freshSites = (n: number) => Array.from({ length: n }, () => nextSite++);

let h: ExecHarness;
beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 40, appsPerSite: APPS });
  await useHttpAdapter(h, false);
});
afterAll(async () => {
  await h?.close();
});
beforeEach(() => h.downstream.reset());

const halts = (opId: string) =>
  query<{ reason: string }>(
    h.databaseUrl,
    `SELECT payload->>'reason' AS reason FROM audit_events WHERE operation_id = $1 AND action = 'operation.halted' ORDER BY seq`,
    [opId],
  );

describe('a wave that halts again on resume', () => {
  it('quotes the error of the failures it still counts, not only the rate', async () => {
    // One wave of 24 items: 2 refused for good (422), 6 failing for a while (500). The wave is
    // judged once every item has an outcome (minSample above the wave's size), so the first halt
    // counts all 8; a resume sends the 6 again, they succeed, and the 2 refusals alone still pass
    // the 5% threshold: the wave halts again. That second halt said only "item failure rate
    // 8.33% over 5% (2/24)" (a trial: the 422 and the 404 were visible only in `unfinished`).
    const ids = appsOf(freshSites(6), APPS);
    const refused = new Set([ids[3]!, ids[17]!]);
    const flaky = new Set([ids[1]!, ids[5]!, ids[9]!, ids[13]!, ids[20]!, ids[22]!]);
    let flaking = true;
    h.downstream.answer((c) => {
      if (c.action !== 'softDelete') return null;
      if (refused.has(c.resourceId!)) return 422;
      return flaking && flaky.has(c.resourceId!) ? 500 : null;
    });
    const op = await submitAndStart(h, {
      ids,
      rollout: { bakeSeconds: 0, concurrency: 4, waves: ['100%'], restoreDrill: false },
      haltPolicy: { probe: 'optional', onHalt: 'pause', minSample: 1000, maxConsecutiveFailures: 1000 },
    });
    const first = await waitForState(h, op.id, ['halted', 'completed', 'completed_with_failures']);
    expect(first.state).toBe('halted');
    expect(first.haltReason).toMatch(/item failure rate .* \(8\/24\); last error: HTTP (422|500)/);

    flaking = false;
    await command(h, 'operator', op.id, 'resume', { reason: 'downstream fixed' }).expect(200);
    await until(async () => (await halts(op.id)).length === 2, 'the second halt', 30_000);
    const again = await waitForState(h, op.id, ['halted']);
    expect(again.haltReason).toMatch(/^wave 1 of 1: item failure rate 8\.33% over 5% \(2\/24\)/);
    // The failures it still counts are the refusals: their error, not the 500 the resume got past.
    expect(again.haltReason).toContain('; last error: HTTP 422 Unprocessable Entity');
  });
});

describe('the error of an item whose rollback could not restore it', () => {
  it('says it is the restore that failed, and how many restore requests were sent in all', async () => {
    // A trial: items read "HTTP 500 … (after 3 attempts)" while the downstream had 2 soft-delete
    // calls for each. The error was the rollback's restore (it replaces the delete's), counting only
    // its last round's requests, after 15 had been sent over 5 rounds under the restore's own key.
    // Here each restore fails 3 times (a 500: one round of 3 requests), then is refused (422).
    const ids = appsOf(freshSites(3), APPS);
    const restores = new Map<string, number>();
    h.downstream.answer((c) => {
      if (c.action === 'softDelete') return 500;
      if (c.action !== 'restore') return null;
      const n = (restores.get(c.idempotencyKey!) ?? 0) + 1;
      restores.set(c.idempotencyKey!, n);
      return n <= 3 ? 500 : 422;
    });
    const op = await submitAndStart(h, {
      ids,
      rollout: { bakeSeconds: 0, concurrency: 2, waves: ['100%'], restoreDrill: false },
      haltPolicy: { probe: 'optional', maxConsecutiveFailures: 2 },
    });
    const end = await waitForState(h, op.id, ['rollback_incomplete', 'rolled_back'], 60_000);
    expect(end.state).toBe('rollback_incomplete');
    const rows = await query<{ resource_id: string; state: string; last_error: string }>(
      h.databaseUrl,
      `SELECT resource_id, state, last_error FROM operation_items WHERE operation_id = $1 AND state = 'restore_failed'`,
      [op.id],
    );
    expect(rows.length).toBeGreaterThan(0);
    for (const r of rows) {
      const sent = restores.get(idempotencyKeyFor({ operationId: op.id, resourceId: r.resource_id }, 'restore'));
      expect(sent, r.resource_id).toBe(4);
      expect(r.last_error, r.resource_id).toBe('HTTP 422 Unprocessable Entity (after 4 restore requests)');
    }
  });
});
