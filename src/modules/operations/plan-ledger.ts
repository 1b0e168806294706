// The plan's ledger: the item rows in wave order (descendants after every wave), the per-wave
// counters, and the plan hash that binds an approval to exactly that ledger.
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { insertDescendants } from './cascade-plan.ts';
import type { WavePlan } from './waves.ts';

/**
 * Writes the item ledger: one row per resolved ID, numbered (seq) in wave order so that a wave is
 * the contiguous range waves[i].fromSeq ≤ seq < waves[i].toSeq. Inserted in key order. The
 * descendants of cascades follow, after the last wave's range.
 */
export async function insertItems(
  client: pg.PoolClient,
  operationId: string,
  waveOf: Map<string, number>,
  submitted: number,
) {
  await client.query(
    `INSERT INTO operation_items (operation_id, seq, resource_id, tenant_id, ordinal, wave)
     SELECT $1, (row_number() OVER (ORDER BY w.wave, c.ord) - 1)::int, c.id, c.tenant_id, c.ord, w.wave
     FROM plan_class c JOIN unnest($2::text[], $3::int[]) AS w(tenant_id, wave) ON w.tenant_id = c.tenant_id
     ORDER BY 2`,
    [operationId, [...waveOf.keys()], [...waveOf.values()]],
  );
  await insertDescendants(client, operationId, submitted);
}

/** Per-wave counters start at zero; the executor keeps them with the item outcomes. */
export async function insertWaves(client: pg.PoolClient, operationId: string, waves: WavePlan[]) {
  await client.query(
    `INSERT INTO operation_waves (operation_id, wave, from_seq, to_seq, tenants)
     SELECT $1, w, f, t, n FROM unnest($2::int[], $3::int[], $4::int[], $5::int[]) AS x(w, f, t, n)`,
    [
      operationId,
      waves.map((w) => w.index),
      waves.map((w) => w.fromSeq),
      waves.map((w) => w.toSeq),
      waves.map((w) => w.tenants),
    ],
  );
}

/**
 * The plan hash binds an approval to exactly what was planned: action, type and mode, every
 * submitted ID in order (hashed while streaming), and which tenants go in which wave with how
 * many items (cascaded descendants included). The ledger written with the plan never changes
 * afterwards, so approving the hash approves the ledger.
 */
export function computePlanHash(
  header: string,
  idsHash: string,
  waves: WavePlan[],
  waveOf: Map<string, number>,
): string {
  const h = createHash('sha256').update(header).update('\n').update(idsHash).update('\n');
  for (const w of waves) h.update(`wave ${w.index} ${w.kind} ${w.tenants} ${w.items}\n`);
  for (const [tenant, wave] of [...waveOf.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)))
    h.update(`${tenant}:${wave}\n`);
  return h.digest('hex');
}
