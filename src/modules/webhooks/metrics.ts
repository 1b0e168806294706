// blastgate_webhook_deliveries_total{outcome}: deliveries by status, read from the delivery log at
// scrape time, so any API process shows what every worker delivered.
import type pg from 'pg';
import { Counter } from 'prom-client';
import type { Metrics } from '../../plugins/metrics.ts';

const OUTCOMES = ['delivered', 'failed', 'pending', 'cancelled'];

export function registerWebhookMetrics(metrics: Metrics, pool: pg.Pool) {
  new Counter({
    name: 'blastgate_webhook_deliveries_total',
    help: 'Webhook deliveries by outcome (delivered, failed after every retry, pending, cancelled), from the delivery log',
    labelNames: ['outcome'],
    registers: [metrics.registry],
    async collect() {
      const r = await pool.query<{ status: string; n: number }>(
        'SELECT status, count(*)::int AS n FROM webhook_deliveries GROUP BY status',
      );
      this.reset();
      for (const o of OUTCOMES) this.inc({ outcome: o }, 0);
      for (const row of r.rows) this.inc({ outcome: row.status }, row.n);
    },
  });
}
