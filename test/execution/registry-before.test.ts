// A registry chunk's snapshot is each row as it was (applyChunkWithBefore): its times are written by
// PostgreSQL as Date#toISOString writes them, and must be exactly what the row's timestamps give
// through toISOString (what the registry adapter's own snapshot read writes), at any time a row
// can hold: milliseconds, years before 1000, and years past 9999 (which to_char does not write).
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyChunkWithBefore } from '../../src/modules/adapters/registry-apply.ts';
import { createTestDatabase } from '../support/db.ts';
import { appId, query, seedRegistry, tenantId } from '../support/seed.ts';

let url: string;
let pool: pg.Pool;
beforeAll(async () => {
  url = await createTestDatabase();
  await seedRegistry(url, { sites: 1, appsPerSite: 6 });
  pool = new pg.Pool({ connectionString: url, max: 1 });
});
afterAll(async () => {
  await pool?.end();
});

const TIMES: [updatedAt: string, deletedAt: string | null][] = [
  ['2026-12-07T03:04:05.678Z', null],
  ['2026-01-01T00:00:00.000Z', '2025-12-31T23:59:59.999Z'],
  ['0999-03-04T05:06:07.089Z', '0001-01-01T00:00:00.001Z'],
  ['9999-12-31T23:59:59.999Z', '1970-01-01T00:00:00.000Z'],
  ['+012000-06-07T08:09:10.111Z', '+010000-01-01T00:00:00.000Z'],
  ['2026-07-08T09:10:11.120Z', null],
];

describe("a registry chunk's snapshot times", () => {
  it("are the rows' timestamps as toISOString writes them, in and out of the years to_char writes", async () => {
    const ids = TIMES.map((_, k) => appId(0, k));
    for (const [k, [updatedAt, deletedAt]] of TIMES.entries()) {
      await query(
        url,
        `UPDATE resources SET updated_at = $2, deleted_at = $3,
           state = CASE WHEN $3::timestamptz IS NULL THEN 'active' ELSE 'soft_deleted' END WHERE id = $1`,
        [ids[k], new Date(updatedAt), deletedAt && new Date(deletedAt)],
      );
    }
    // What the rows hold, read as the registry adapter reads them (timestamps, then toISOString).
    const rows = await query<{ id: string; updated_at: Date; deleted_at: Date | null }>(
      url,
      'SELECT id, updated_at, deleted_at FROM resources WHERE id = ANY($1::text[]) ORDER BY id',
      [ids],
    );
    const want = new Map(
      rows.map((r) => [
        r.id,
        { updatedAt: r.updated_at.toISOString(), deletedAt: r.deleted_at?.toISOString() ?? null },
      ]),
    );
    expect([...want.values()].map((w) => [w.updatedAt, w.deletedAt])).toEqual(TIMES);

    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      const { before } = await applyChunkWithBefore(
        client,
        'hardDelete',
        ids.map((id) => ({ operationId: 'op_t', resourceId: id, tenantId: tenantId(0), type: 'app' })),
        { approvedTenants: [] },
      );
      expect(before.map((b) => b && { id: b.id, updatedAt: b.updatedAt, deletedAt: b.deletedAt })).toEqual(
        ids.map((id) => ({ id, ...want.get(id)! })),
      );
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
  });
});
