// Registry adapter: acts on resources kept in Blastgate's own `resources` table.
//
// Set-based: one statement per chunk of items (arrays through unnest / = ANY, one parameter each),
// never one query per ID. A chunk is one destructive call, so shouldContinue() is checked before
// each chunk; the halt overshoot is at most one chunk.
//
// Every statement matches on (id, type, tenant) together, not on id alone: the registry is where
// "wrong-type IDs never run" (promise 1) would be broken last, so a row whose type or tenant does
// not match the item is a permanent failure, never acted on.
import type pg from 'pg';
import { textArray } from '../../lib/pg-array.ts';
import { applyChunk, type RegistrySnapshot, type State } from './registry-apply.ts';
import { mismatch } from './registry-refusals.ts';
import { SKIPPED, type AdapterItem, type ItemResult, type ProbeResult, type TargetAdapter } from './types.ts';

export type { RegistrySnapshot } from './registry-apply.ts';

// Rows locked and updated by one statement: big enough to stay set-based and fast, small enough
// that row locks are held briefly and a halt stops within one chunk.
const CHUNK = 5_000;

type Pool = Pick<pg.Pool, 'query'>;

interface ResourceRow {
  id: string;
  type: string;
  tenant_id: string;
  parent_id: string | null;
  state: State;
  protected: boolean;
  deleted_at: Date | null;
  updated_at: Date;
}

function chunks<T>(items: readonly T[]): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += CHUNK) out.push(items.slice(i, i + CHUNK));
  return out;
}

/**
 * A statement that failed (connection lost, lock timeout) fails its chunk as retryable, like a 5xx
 * from an HTTP system: one statement is atomic, and the caller decides about retries uniformly.
 */
const chunkFailed =
  (part: AdapterItem[]) =>
  (err: unknown): ItemResult[] =>
    part.map(() => ({ ok: false, permanent: false, error: `registry statement failed: ${(err as Error).message}` }));

export function createRegistryAdapter(pool: Pool): TargetAdapter {
  return {
    kind: 'registry',
    // Descendants live in the same database: they change state with their parent, in one statement.
    cascade: 'same_transaction',
    system: 'registry',
    // The row's own write time: a restore sets it, so a drill's read-back never matches it.
    volatileFields: ['updatedAt'],

    async snapshot(items) {
      const out: ItemResult[] = [];
      for (const part of chunks(items)) {
        let rows: ResourceRow[];
        try {
          ({ rows } = await pool.query<ResourceRow>(
            'SELECT id, type, tenant_id, parent_id, state, protected, deleted_at, updated_at FROM resources WHERE id = ANY($1::text[])',
            [part.map((i) => i.resourceId)],
          ));
        } catch (err) {
          out.push(...chunkFailed(part)(err));
          continue;
        }
        const byId = new Map(rows.map((r) => [r.id, r]));
        for (const item of part) {
          const r = byId.get(item.resourceId);
          if (!r || r.type !== item.type || r.tenant_id !== item.tenantId) {
            const error = mismatch(item, { type: r?.type ?? null, tenant: r?.tenant_id ?? null });
            out.push({ ok: false, permanent: true, error });
            continue;
          }
          const data: RegistrySnapshot = {
            id: r.id,
            type: r.type,
            tenantId: r.tenant_id,
            parentId: r.parent_id,
            state: r.state,
            protected: r.protected,
            deletedAt: r.deleted_at?.toISOString() ?? null,
            updatedAt: r.updated_at.toISOString(),
          };
          out.push({ ok: true, data });
        }
      }
      return out;
    },

    async apply(action, items, opts) {
      const out: ItemResult[] = [];
      let halted = false;
      for (const part of chunks(items)) {
        halted ||= !opts.shouldContinue();
        if (halted) out.push(...part.map(() => SKIPPED));
        else out.push(...(await applyChunk(pool, action, part, opts).catch(chunkFailed(part))));
      }
      return out;
    },

    async probe(tenantId, opts): Promise<ProbeResult> {
      return (await probeTenants(pool, [tenantId], opts.timeoutMs))[0]!;
    },

    probeMany: (tenantIds, opts) => probeTenants(pool, tenantIds, opts.timeoutMs),
  };
}

/**
 * The registry's health for these tenants, in one query: healthy for each it has, an error for one
 * it does not; a timeout or a failed query is every tenant's outcome (fail closed).
 */
async function probeTenants(
  pool: Pick<pg.Pool, 'query'>,
  tenantIds: string[],
  timeoutMs: number,
): Promise<ProbeResult[]> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  const all = (r: ProbeResult) => tenantIds.map(() => r);
  try {
    const res = await Promise.race([
      pool.query<{ id: string }>('SELECT id FROM tenants WHERE id = ANY($1::text[])', [textArray(tenantIds)]),
      timeout,
    ]);
    if (res === 'timeout') return all({ result: 'timeout', detail: `database did not answer within ${timeoutMs} ms` });
    const found = new Set(res.rows.map((r) => r.id));
    return tenantIds.map((id) =>
      found.has(id) ? { result: 'healthy' } : { result: 'error', detail: `tenant ${id} is not in the registry` },
    );
  } catch (err) {
    return all({ result: 'error', detail: (err as Error).message });
  } finally {
    clearTimeout(timer);
  }
}
