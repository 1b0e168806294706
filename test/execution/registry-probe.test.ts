// The registry adapter's health probe, one tenant or many at once (a bake round probes every
// tenant touched so far in one query): healthy for a tenant the registry has, an error naming one
// it does not, each in the order asked; and when the registry does not answer in time, every
// tenant's outcome is a timeout (fail closed), never healthy.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRegistryAdapter } from '../../src/modules/adapters/registry-adapter.ts';
import { createTestDatabase } from '../support/db.ts';

let pool: pg.Pool;
beforeAll(async () => {
  pool = new pg.Pool({ connectionString: await createTestDatabase(), max: 4 });
  await pool.query(`INSERT INTO tenants (id, name) VALUES ('t_a', 'A'), ('t_b', 'B'), ('t "q", {x}', 'Odd')`);
});
afterAll(async () => {
  await pool?.end();
});

describe('registry probe', () => {
  it('answers for each tenant asked, in order, one query for many', async () => {
    const a = createRegistryAdapter(pool);
    const got = await a.probeMany!(['t_b', 'nope', 't "q", {x}', 't_a', 't_b'], { timeoutMs: 2_000 });
    expect(got).toEqual([
      { result: 'healthy' },
      { result: 'error', detail: 'tenant nope is not in the registry' },
      { result: 'healthy' },
      { result: 'healthy' },
      { result: 'healthy' },
    ]);
    expect(await a.probe('t_a', { timeoutMs: 2_000 })).toEqual({ result: 'healthy' });
    expect(await a.probe('gone', { timeoutMs: 2_000 })).toEqual({
      result: 'error',
      detail: 'tenant gone is not in the registry',
    });
    expect(await a.probeMany!([], { timeoutMs: 2_000 })).toEqual([]);
  });

  it('a registry that does not answer in time is a timeout for every tenant, not healthy', async () => {
    const locker = await pool.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE tenants IN ACCESS EXCLUSIVE MODE');
      const got = await createRegistryAdapter(pool).probeMany!(['t_a', 't_b'], { timeoutMs: 200 });
      expect(got).toEqual([
        { result: 'timeout', detail: 'database did not answer within 200 ms' },
        { result: 'timeout', detail: 'database did not answer within 200 ms' },
      ]);
    } finally {
      await locker.query('ROLLBACK');
      locker.release();
    }
  });

  it('a failed query is an error for every tenant', async () => {
    const broken = new pg.Pool({ connectionString: 'postgres://nobody@127.0.0.1:1/none', max: 1 });
    try {
      const got = await createRegistryAdapter(broken).probeMany!(['t_a', 't_b'], { timeoutMs: 2_000 });
      expect(got.map((r) => r.result)).toEqual(['error', 'error']);
      expect(got[0]!.detail).toMatch(/ECONNREFUSED/);
    } finally {
      await broken.end();
    }
  });
});
