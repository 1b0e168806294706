// What a bake round reads and writes in PostgreSQL (bake.ts stays free of SQL, like drill-store.ts).
import type pg from 'pg';
import { escapeText, isStorable } from '../../lib/text.ts';
import type { ProbeOutcome } from '../operations/lifecycle.ts';

export function pgBakeStore(pool: pg.Pool) {
  return {
    /**
     * Tenants with an executed item in the waves up to (not including) seq `toSeq`, with the type
     * of each such item (null: the operation's own). Descendants are numbered after every wave's
     * range and count where their parent is: a site's delete that took another tenant's apps
     * touched that tenant, in that system, and the bake must ask its probe (a trial: the canary's
     * cascade reached two more tenants' apps over HTTP, and only the site's registry was probed).
     */
    async touchedTenants(opId: string, toSeq: number) {
      const res = await pool.query<{ tenant_id: string; resource_type: string | null }>(
        `SELECT DISTINCT tenant_id, resource_type FROM operation_items
         WHERE operation_id = $1 AND executed_seq IS NOT NULL
           AND (seq < $2 OR (parent_seq IS NOT NULL AND parent_seq < $2))`,
        [opId, toSeq],
      );
      return res.rows.map((r) => ({ tenantId: r.tenant_id, type: r.resource_type }));
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
