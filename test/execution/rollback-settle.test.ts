// A rollback settles only when nothing it may restore is left. Deletes still in flight when an
// abort arrives hold their items (claimed); the rollback restores what is done, then waits for
// them. Here those deletes finish exactly between the rollback's last pick (they were claimed, so
// not picked) and its look at what it still waits for (now done, so no longer waited for): the
// rollback must still restore them and end rolled_back, not settle with them counted as failed
// (rollback_incomplete with every item in fact restorable).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appsOf, command, expectEverythingTouchedRestored, ledger } from '../support/exec-helpers.ts';
import {
  buildExecHarness,
  getOperation,
  submitAndStart,
  until,
  useHttpAdapter,
  waitForState,
  type ExecHarness,
} from '../support/execution.ts';
import { query, seedRegistry } from '../support/seed.ts';

const APPS = 4;

let h: ExecHarness;
beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 12, appsPerSite: APPS, internalTenants: 4 });
  await useHttpAdapter(h);
  // While armed, the rollback's pick that finds nothing to take (zero rows updated) waits until
  // the test releases it: the moment between "nothing to pick" and "what is left to wait for".
  // (A volatile function's queries see what commits meanwhile; the wait is bounded at 20 s.)
  await query(
    h.databaseUrl,
    `CREATE TABLE test_gate (armed boolean NOT NULL, released boolean NOT NULL);
     INSERT INTO test_gate VALUES (false, false);
     CREATE FUNCTION test_gate() RETURNS trigger LANGUAGE plpgsql AS $$
     DECLARE waited int := 0;
     BEGIN
       IF (SELECT armed FROM test_gate) AND current_query() LIKE '%claimed_by = ''rollback''%'
          AND NOT EXISTS (SELECT 1 FROM changed) THEN
         PERFORM set_config('application_name', 'test-gate-held', true);
         WHILE NOT (SELECT released FROM test_gate) AND waited < 400 LOOP
           PERFORM pg_sleep(0.05);
           waited := waited + 1;
         END LOOP;
       END IF;
       RETURN NULL;
     END $$;
     CREATE TRIGGER test_gate AFTER UPDATE ON operation_items REFERENCING NEW TABLE AS changed
       FOR EACH STATEMENT EXECUTE FUNCTION test_gate()`,
  );
});
afterAll(async () => {
  await query(h.databaseUrl, 'DROP TRIGGER IF EXISTS test_gate ON operation_items').catch(() => undefined);
  await h?.close();
});

/** The rollback's empty pick is waiting at the gate. */
const pickHeld = async () =>
  (await query(h.databaseUrl, `SELECT 1 FROM pg_stat_activity WHERE application_name = 'test-gate-held'`)).length > 0;

describe('a rollback whose in-flight deletes finish while it looks', () => {
  it('restores them too and ends rolled_back, not rollback_incomplete', async () => {
    const sites = [0, 4, 5, 6]; // one internal tenant (the canary wave), then three customers
    const ids = appsOf(sites, APPS);
    const wave1 = new Set(appsOf(sites.slice(1), APPS));
    // Wave 1's deletes are held at the downstream until released: in flight when the abort comes.
    let releaseDeletes!: () => void;
    const deletesReleased = new Promise<void>((r) => (releaseDeletes = r));
    let heldDeletes = 0;
    h.downstream.beforeApply(async (c) => {
      if (c.action !== 'softDelete' || !wave1.has(c.resourceId!)) return;
      heldDeletes++;
      await deletesReleased;
    });
    const plan = await submitAndStart(h, {
      ids,
      rollout: { bakeSeconds: 0, concurrency: 2, waves: ['100%'] },
      haltPolicy: { onHalt: 'rollback' },
    });
    await until(() => heldDeletes > 0, 'a wave-1 delete to be in flight');
    await query(h.databaseUrl, 'UPDATE test_gate SET armed = true');

    const aborted = await command(h, 'operator', plan.id, 'abort', { reason: 'wrong list' });
    expect(aborted.status, JSON.stringify(aborted.body)).toBe(200);
    // The rollback restored the canary's items and found nothing more to take: the held deletes'
    // items are claimed.
    await until(pickHeld, "the rollback's empty pick to reach the gate");
    expect((await ledger(h, plan.id)).some((r) => r.state === 'claimed')).toBe(true);

    // Now the deletes finish and are recorded, before the rollback looks at what it waits for.
    releaseDeletes();
    await until(
      async () => (await ledger(h, plan.id)).every((r) => r.state !== 'claimed'),
      'the in-flight deletes to be recorded',
    );
    expect((await ledger(h, plan.id)).some((r) => r.state === 'done')).toBe(true);
    await query(h.databaseUrl, 'UPDATE test_gate SET released = true, armed = false');

    const end = await waitForState(h, plan.id, ['rolled_back', 'rollback_incomplete']);
    expect(end.state, JSON.stringify(await getOperation(h, plan.id))).toBe('rolled_back');
    const { touched } = await expectEverythingTouchedRestored(h, plan.id);
    expect(touched.size).toBeGreaterThan(APPS); // the canary's items and the held deletes'
  });
});
