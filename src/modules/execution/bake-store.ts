// What a bake round reads and writes in PostgreSQL (bake.ts stays free of SQL, like drill-store.ts).
import type pg from 'pg';
import { escapeText, isStorable } from '../../lib/text.ts';
import type { ProbeOutcome } from '../operations/lifecycle.ts';

export function pgBakeStore(pool: pg.Pool) {
  return {
    /** Tenants with an executed item in the waves up to (not including) seq `toSeq`. */
    async touchedTenants(opId: string, toSeq: number) {
      const res = await pool.query<{ tenant_id: string }>(
        `SELECT DISTINCT tenant_id FROM operation_items WHERE operation_id = $1 AND seq < $2 AND executed_seq IS NOT NULL`,
        [opId, toSeq],
      );
      return res.rows.map((r) => r.tenant_id);
    },
    /** The wave's last probe round, for the live views; a detail PostgreSQL cannot store is kept escaped. */
    async recordProbes(opId: string, wave: number, probes: ProbeOutcome[]) {
      const storable = probes.map((p) =>
        p.detail && !isStorable(p.detail) ? { ...p, detail: escapeText(p.detail) } : p,
      );
      await pool.query(
        `UPDATE operation_waves SET probes = $3, probed_at = now() WHERE operation_id = $1 AND wave = $2`,
        [opId, wave, JSON.stringify(storable)],
      );
    },
  };
}
