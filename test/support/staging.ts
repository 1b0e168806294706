// The staged input classify() reads (plan_input), for tests that call it directly.
import type pg from 'pg';

/**
 * Stages `ids` in their order as the plan_input view over a table of this transaction (its
 * rollback drops both). Parallel workers cannot read a temporary table, so a test of the parallel
 * joins stages into an unlogged one, as intake does.
 */
export async function stageIds(client: pg.PoolClient, ids: string[], table: 'TEMP' | 'UNLOGGED' = 'TEMP') {
  await client.query(`CREATE ${table} TABLE staged (ord int, id text)`);
  await client.query(`INSERT INTO staged SELECT o - 1, id FROM unnest($1::text[]) WITH ORDINALITY AS u(id, o)`, [ids]);
  await client.query(`ANALYZE staged`);
  await client.query(`CREATE TEMP VIEW plan_input AS SELECT ord, id FROM staged`);
}
