// A registry adapter's rollback writes the registry row before it records its ledger item, in two
// statements. A restore of the tenant planned in between read its resources as "active again,
// brought back outside Blastgate" (leftOut: active_again) and answered NOTHING_TO_RESTORE, while
// Blastgate's own rollback still held them (a probe). What a live operation holds is in_flight,
// naming it, whatever its registry row says meanwhile.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { command } from '../support/exec-helpers.ts';
import { buildExecHarness, until, waitForState, type ExecHarness } from '../support/execution.ts';
import { appsOfSite, deleteAndComplete, postRestore, registryStates, useRegistry } from '../support/restores.ts';
import { query, seedRegistry, siteId, tenantId } from '../support/seed.ts';

let h: ExecHarness;
beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 3, appsPerSite: 3 });
  await useRegistry(h);
});
afterAll(async () => {
  await query(h.databaseUrl, 'DROP TRIGGER IF EXISTS slow_restored ON operation_items').catch(() => undefined);
  await h?.close();
});

it('a restore planned while a rollback records what it restored: in_flight, naming the rollback', async () => {
  const del = await deleteAndComplete(h, 'site', [siteId(2)]);
  // The rollback's first ledger record waits 4 s, after its registry write has committed.
  await query(h.databaseUrl, `CREATE SEQUENCE slow_restored_once`);
  await query(
    h.databaseUrl,
    `CREATE FUNCTION slow_restored() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN IF nextval('slow_restored_once') = 1 THEN PERFORM pg_sleep(4); END IF; RETURN NEW; END $$`,
  );
  await query(
    h.databaseUrl,
    `CREATE TRIGGER slow_restored BEFORE UPDATE ON operation_items FOR EACH ROW
       WHEN (NEW.state = 'restored' AND OLD.state IS DISTINCT FROM 'restored') EXECUTE FUNCTION slow_restored()`,
  );
  await command(h, 'operator', del, 'rollback', { reason: 'undo site 2' }).expect(200);
  const ids = [siteId(2), ...appsOfSite(2)];
  await until(async () => Object.values(await registryStates(h, ids)).every((s) => s === 'active'), 'registry written');
  const ledger = await query<{ n: number }>(
    h.databaseUrl,
    `SELECT count(*)::int AS n FROM operation_items WHERE operation_id = $1 AND state = 'restored'`,
    [del],
  );
  expect(ledger[0]!.n).toBe(0);

  const r = await postRestore(h, { tenantId: tenantId(2), dryRun: true });
  expect(r.status, JSON.stringify(r.body)).toBe(422);
  expect(r.body).toMatchObject({ code: 'PLAN_REJECTED', details: { counts: { ok: 0, in_flight: ids.length } } });
  expect(r.body.message).not.toMatch(/outside Blastgate/);
  expect(JSON.stringify(r.body.details.offenders.in_flight)).toContain(del);

  expect((await waitForState(h, del, ['rolled_back', 'rollback_incomplete'])).state).toBe('rolled_back');
});
