// One adapter per resource type per worker process, rebuilt when the type's config changes.
import type pg from 'pg';
import { createAdapter, type DownstreamPolicy, type TargetAdapter } from '../adapters/index.ts';

export class AdapterCache {
  private byType = new Map<string, { json: string; adapter: TargetAdapter }>();
  constructor(
    private readonly pool: pg.Pool,
    /** This process's hosts and signing secrets: a stored row is checked against them again. */
    private readonly downstream: DownstreamPolicy,
  ) {}

  async get(type: string): Promise<{ adapter: TargetAdapter; hasProbe: boolean }> {
    const r = await this.pool.query<{ adapter: Record<string, unknown> }>(
      'SELECT adapter FROM resource_types WHERE name = $1',
      [type],
    );
    const config = r.rows[0]?.adapter ?? { kind: 'registry' };
    const json = JSON.stringify(config);
    let entry = this.byType.get(type);
    if (!entry || entry.json !== json) {
      await entry?.adapter.close?.();
      entry = { json, adapter: createAdapter(config, { pool: this.pool, downstream: this.downstream }) };
      this.byType.set(type, entry);
    }
    // The registry adapter can always answer for a tenant; an http adapter only with a probe URL.
    return { adapter: entry.adapter, hasProbe: config.kind === 'registry' || typeof config.probe === 'string' };
  }

  async close() {
    for (const e of this.byType.values()) await e.adapter.close?.();
    this.byType.clear();
  }
}
