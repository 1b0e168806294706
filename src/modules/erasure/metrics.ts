// Erasure metrics, read from the database at scrape time like the other ledger gauges, so /metrics
// on any API process counts what every worker erased (workers may run elsewhere).
import type pg from 'pg';
import { Counter, Gauge } from 'prom-client';
import type { Metrics } from '../../plugins/metrics.ts';

export function registerErasureMetrics(metrics: Pick<Metrics, 'registry'>, pool: pg.Pool) {
  new Gauge({
    name: 'blastgate_erasures',
    help: 'Compliance erasure operations by state',
    labelNames: ['state'],
    registers: [metrics.registry],
    async collect() {
      const r = await pool.query<{ state: string; n: number }>(
        `SELECT state, count(*)::int AS n FROM operations WHERE action = 'erase' GROUP BY state`,
      );
      this.reset();
      for (const row of r.rows) this.set({ state: row.state }, row.n);
    },
  });
  new Gauge({
    name: 'blastgate_erasure_items',
    help: 'Items of compliance erasures by outcome (erased, failed, pending), cascaded descendants included',
    labelNames: ['outcome'],
    registers: [metrics.registry],
    async collect() {
      const r = await pool.query<{ state: string; n: string }>(
        `SELECT i.state, count(*) AS n FROM operations o JOIN operation_items i ON i.operation_id = o.id
         WHERE o.action = 'erase' GROUP BY i.state`,
      );
      const n = (states: string[]) =>
        r.rows.filter((x) => states.includes(x.state)).reduce((a, x) => a + Number(x.n), 0);
      this.set({ outcome: 'erased' }, n(['done']));
      this.set({ outcome: 'failed' }, n(['failed']));
      this.set({ outcome: 'pending' }, n(['pending', 'claimed']));
    },
  });
  // A counter: a destroyed key is never restored (a trigger allows no other change), so the count
  // of erased keys only grows.
  new Counter({
    name: 'blastgate_snapshot_keys_erased_total',
    help: 'Per-resource snapshot keys destroyed by compliance erasures',
    registers: [metrics.registry],
    async collect() {
      const r = await pool.query<{ n: string }>(`SELECT count(*) AS n FROM resource_keys WHERE erased_at IS NOT NULL`);
      this.reset();
      this.inc(Number(r.rows[0]?.n ?? 0));
    },
  });
}
