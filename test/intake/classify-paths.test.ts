// classify() resolves the staged IDs by one of eight statements: grouped by ID or not (an input
// intake proved distinct), and joined to the registry by hash, by hash over parallel workers (a
// large input) or by primary-key lookups (an input small next to the registry), those over parallel
// workers too from 20,000 IDs. Each must classify every ID exactly as the grouped hash join does,
// duplicates included.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACTIVE_ONLY } from '../../src/modules/erasure/states.ts';
import { classify, joinStrategy, type RegistryJoin } from '../../src/modules/operations/planner.ts';
import { createTestDatabase } from '../support/db.ts';
import { appId, query, seedRegistry, siteId } from '../support/seed.ts';
import { stageIds } from '../support/staging.ts';

let pool: pg.Pool;
let url: string;
beforeAll(async () => {
  url = await createTestDatabase();
  await seedRegistry(url, { sites: 40, appsPerSite: 25, protectedApps: [appId(3, 3)] });
  await query(url, `UPDATE resources SET state = 'soft_deleted' WHERE id = ANY($1)`, [[appId(4, 4), appId(5, 5)]]);
  pool = new pg.Pool({ connectionString: url, max: 2 });
});
afterAll(async () => {
  await pool?.end();
});

type Path = { distinct: boolean; join: RegistryJoin };

/** plan_class after classify() over `ids` by one path, in submission order; nothing is kept. */
async function classified(ids: string[], path: Path) {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await stageIds(client, ids, 'UNLOGGED');
    // A small registry never gets a parallel plan by size: let it, so that the parallel path runs
    // (the parallel lookups' own settings allow a small input); and have each statement's plan sent
    // here, to see that it did.
    const plans: string[] = [];
    client.on('notice', (n) => plans.push(`${n.message} ${n.detail ?? ''}`));
    if (path.join === 'parallel') await client.query(`SET LOCAL min_parallel_table_scan_size = 0`);
    if (path.join === 'parallel' || path.join === 'parallel-lookup')
      await client.query(`SET LOCAL client_min_messages = log; SET LOCAL debug_print_plan = on`);
    const type = (await client.query(`SELECT id_pattern FROM resource_types WHERE name = 'app'`)).rows[0];
    const c = await classify(client, 'app', type.id_pattern, [], null, ACTIVE_ONLY, {
      submitted: ids.length,
      distinct: path.distinct,
      join: path.join,
    });
    // The join's settings are this statement's only: the plan's later statements keep PostgreSQL's.
    const after = await client.query(
      `SELECT current_setting('enable_hashjoin') AS h, current_setting('parallel_setup_cost') AS p,
         current_setting('min_parallel_table_scan_size') AS m`,
    );
    expect(after.rows[0]).toEqual({ h: 'on', p: '1000', m: path.join === 'parallel' ? '0' : '8MB' });
    const rows = await client.query(
      `SELECT ord, id, class, actual_type, tenant_id, state, lock_row FROM plan_class ORDER BY ord`,
    );
    const gathered = plans.some((p) => p.includes('{GATHER'));
    return { counts: c.counts, rows: rows.rows, gathered };
  } finally {
    await client.query('ROLLBACK');
    client.release();
  }
}

describe('classify: every path classifies as the grouped serial one', () => {
  const good = Array.from({ length: 40 * 25 }, (_, k) => appId(Math.floor(k / 25), k % 25));
  const odd = [siteId(1), 'app_99999_01', 'usr_1', appId(3, 3), appId(4, 4), appId(5, 5)];

  it('a list without duplicates: the same rows by all four paths', async () => {
    const ids = [...odd, ...good.filter((id) => !odd.includes(id))];
    const want = await classified(ids, { distinct: false, join: 'hash' });
    expect(want.gathered).toBe(false);
    expect(want.counts).toMatchObject({ ok: ids.length - 6, unknown: 1, type_mismatch: 1, pattern_mismatch: 1 });
    expect(want.counts).toMatchObject({ protected: 1, already_deleted: 2, duplicate: 0 });
    for (const path of [
      { distinct: true, join: 'hash' },
      { distinct: false, join: 'parallel' },
      { distinct: true, join: 'parallel' },
      { distinct: false, join: 'lookup' },
      { distinct: true, join: 'lookup' },
      { distinct: false, join: 'parallel-lookup' },
      { distinct: true, join: 'parallel-lookup' },
    ] as const)
      expect(await classified(ids, path), JSON.stringify(path)).toEqual({
        ...want,
        gathered: path.join === 'parallel' || path.join === 'parallel-lookup',
      });
  });

  it('a list with duplicates: grouped, by any join, reports each later copy', async () => {
    const ids = [...good.slice(0, 500), good[7]!, siteId(1), siteId(1), ...good.slice(500), good[999]!];
    const want = await classified(ids, { distinct: false, join: 'hash' });
    expect(want.counts).toMatchObject({ ok: 997, protected: 1, already_deleted: 2, type_mismatch: 1, duplicate: 3 });
    expect(await classified(ids, { distinct: false, join: 'parallel' })).toEqual({ ...want, gathered: true });
    expect(await classified(ids, { distinct: false, join: 'lookup' })).toEqual(want);
    expect(await classified(ids, { distinct: false, join: 'parallel-lookup' })).toEqual({ ...want, gathered: true });
  });

  it('looks IDs up by primary key only when they are few next to the registry, and never for a tenant-scoped token', async () => {
    // The registry: 40 sites and 1,000 apps, analysed (reltuples is ANALYZE's count).
    await query(url, 'ANALYZE resources');
    const client = await pool.connect();
    try {
      const tenantScope = { tenants: ['t1'] };
      expect(await joinStrategy(client, 1, null)).toBe('lookup');
      expect(await joinStrategy(client, 86, null)).toBe('lookup');
      expect(await joinStrategy(client, 87, null)).toBe('hash');
      expect(await joinStrategy(client, 1, tenantScope)).toBe('hash');
      expect(await joinStrategy(client, 1, { resourceTypes: ['app'] })).toBe('lookup');
      expect(await joinStrategy(client, 500_000, null)).toBe('parallel');
      // A registry of 10M rows (its count as ANALYZE left it, set in a transaction rolled back).
      await client.query('BEGIN');
      await client.query(`UPDATE pg_class SET reltuples = 1e7 WHERE oid = 'resources'::regclass`);
      expect(await joinStrategy(client, 19_999, null)).toBe('lookup');
      expect(await joinStrategy(client, 20_000, null)).toBe('parallel-lookup');
      expect(await joinStrategy(client, 20_000, tenantScope)).toBe('hash');
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
  });
});
